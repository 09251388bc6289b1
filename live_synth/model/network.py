"""The whole Spectrogram Diffusion network: two encoders and the FiLM decoder, with one config."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from live_synth.model.config import ModelConfig
from live_synth.model.decoder import CrossMemory, FilmDecoder
from live_synth.model.encoders import ContextEncoder, NotesEncoder


class SpectrogramDiffusion(nn.Module):
    """Notes encoder + context encoder + FiLM decoder (spec §3). Samplers live elsewhere (`live_synth.sampling`)."""

    def __init__(self, cfg: ModelConfig, seed: int = 0):
        super().__init__()
        self.config = cfg
        gen = torch.Generator().manual_seed(seed)  # the fixed position tables of a fresh model
        self.notes_encoder = NotesEncoder(cfg, gen)
        self.context_encoder = ContextEncoder(cfg, gen)
        self.decoder = FilmDecoder(cfg, gen)

    def encode(self, tokens: Tensor, context: Tensor, context_mask: Tensor, roll: Tensor | None = None) -> CrossMemory:
        """Cross-attention memory for one window: tokens [B, L], context [B, S, 128] scaled, mask [B, S], and the
        window's piano roll [B, T, ROLL_FEATURES] for models built with `pianoroll`."""
        notes = self.notes_encoder(tokens)
        ctx = self.context_encoder(context, context_mask)
        return self.decoder.memory([notes, ctx], roll)

    def forward(self, z: Tensor, tau: Tensor, memory: CrossMemory) -> Tensor:
        """Predicted noise for noisy frames `z` at noise times `tau`."""
        return self.decoder(z, tau, memory)

    def parameter_counts(self) -> dict[str, int]:
        """Parameters per network, counting the frozen position tables too (as the published sizes do)."""
        counts = {}
        for name in ("notes_encoder", "context_encoder", "decoder"):
            module = getattr(self, name)
            counts[name] = sum(t.numel() for t in module.state_dict().values())
        counts["total"] = sum(counts.values())
        return counts
