"""The FiLM-conditioned T5 decoder that predicts the diffusion noise ε (spec §3.5), or v for our own models.

Input: the noisy scaled mel z_t [B, T, 128] and the noise time tau ∈ [0, 1) [B]. The decoder self-attends over the
target frames (no mask), cross-attends to the concatenated encoder outputs, and is told the noise level through FiLM
(scale/shift from an MLP on a sinusoidal embedding of tau) before its self-attention and its feed-forward block.

The cross-attention keys and values depend only on the encoders, so `memory()` computes them once per window and
every sampling step reuses them (the reference recomputes them at every step).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from live_synth.midi.pianoroll import DRUM_OFFSET, N_FAMILIES, N_PITCHES, ROLL_FEATURES
from live_synth.model.config import ModelConfig
from live_synth.model.layers import (
    Attention,
    GatedFFN,
    RMSNorm,
    film,
    key_padding_bias,
    permuted_sinusoid_table,
    timestep_embedding,
)
from live_synth.sampling.schedules import cosine_alpha_sigma

# The reference masks cross-attention keys with -1e10 (not finfo.min); kept for bit-level parity in fp32.
CROSS_MASK_VALUE = -1e10


@dataclass
class CrossMemory:
    """Per-layer cross-attention keys/values [B, H, S, d_kv] and the additive key mask [B, 1, 1, S]."""

    kv: list[tuple[Tensor, Tensor]]
    bias: Tensor
    frame_bias: Tensor | None = None  # [B, T, d] projected piano roll, added to the decoder input (our models)

    def to(self, dtype: torch.dtype) -> CrossMemory:
        frame = self.frame_bias.to(dtype) if self.frame_bias is not None else None
        return CrossMemory([(k.to(dtype), v.to(dtype)) for k, v in self.kv], self.bias.to(dtype), frame)


class NoiseLevel(nn.Module):
    """(alpha, sigma) [B] of the cosine schedule at noise times tau [B], in fp32. A module so that the exported graph
    names its nodes ("noise_level"): TensorRT keeps them in fp32 (tan near pi/2 overflows in fp16)."""

    def forward(self, tau: Tensor) -> tuple[Tensor, Tensor]:
        return cosine_alpha_sigma(tau)


class DecoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d, cond = cfg.d_model, 4 * cfg.d_model
        self.self_norm = RMSNorm(d)
        self.self_film = nn.Linear(cond, 2 * d, bias=False)
        self.self_attn = Attention(d, cfg.num_heads, cfg.d_kv)
        self.cross_norm = RMSNorm(d)
        self.cross_attn = Attention(d, cfg.num_heads, cfg.d_kv)
        self.ff_norm = RMSNorm(d)
        self.ff_film = nn.Linear(cond, 2 * d, bias=False)
        self.ff = GatedFFN(d, cfg.d_ff, cfg.dropout)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, y: Tensor, cond: Tensor, kv: tuple[Tensor, Tensor], bias: Tensor) -> Tensor:
        h = film(self.self_norm(y), self.self_film(cond))
        y = y + self.dropout(self.self_attn(h))
        y = y + self.dropout(self.cross_attn(self.cross_norm(y), kv=kv, bias=bias))
        h = film(self.ff_norm(y), self.ff_film(cond))
        return y + self.dropout(self.ff(h))


class FilmDecoder(nn.Module):
    def __init__(self, cfg: ModelConfig, generator: torch.Generator | None = None):
        super().__init__()
        d = cfg.d_model
        self.max_noise_time = cfg.max_decoder_noise_time
        self.noise_level = NoiseLevel()
        self.time_mlp = nn.Sequential(
            nn.Linear(d, 4 * d, bias=False), nn.SiLU(), nn.Linear(4 * d, 4 * d, bias=False), nn.SiLU()
        )
        self.register_buffer("pos_embed", permuted_sinusoid_table(cfg.target_length, d, generator))
        self.input_proj = nn.Linear(cfg.input_dims, d, bias=False)
        self.roll_proj = nn.Linear(ROLL_FEATURES, d, bias=False) if cfg.pianoroll else None
        shared = cfg.pianoroll and cfg.roll_pitch_shared
        self.roll_pitch_proj = nn.Linear(2 * N_PITCHES, d, bias=False) if shared else None
        self.roll_prior = nn.Linear(d, cfg.input_dims) if cfg.roll_prior else None
        if self.roll_prior is not None:  # starts at "no prior": a warm start from a run without it is unchanged
            nn.init.zeros_(self.roll_prior.weight)
            nn.init.zeros_(self.roll_prior.bias)
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.decoder_layers))
        self.final_norm = RMSNorm(d)
        self.output_proj = nn.Linear(d, cfg.input_dims, bias=False)
        self.dropout = nn.Dropout(cfg.dropout)

    def memory(self, encodings: list[tuple[Tensor, Tensor]], roll: Tensor | None = None) -> CrossMemory:
        """Concatenate (hidden, mask) pairs along time ("concat_encodings") and project them for every layer.

        `roll` [B, T, ROLL_FEATURES] is the window's piano roll, for models built with `pianoroll`.
        """
        hidden = torch.cat([h for h, _ in encodings], dim=1)
        mask = torch.cat([m.bool() for _, m in encodings], dim=1)
        masked_value = CROSS_MASK_VALUE if hidden.dtype != torch.float16 else None
        bias = key_padding_bias(mask, hidden.dtype, masked_value)
        frame_bias = None
        if self.roll_proj is not None:
            if roll is None:
                raise ValueError("this model needs the window's piano roll")
            roll = roll.to(hidden.dtype)
            frame_bias = self.roll_proj(roll)
            if self.roll_pitch_proj is not None:  # (onset, active) per pitch, summed over the 16 families
                b, t = roll.shape[:2]
                melodic = roll[..., :DRUM_OFFSET].reshape(b, t, N_FAMILIES, 2 * N_PITCHES).sum(dim=2)
                frame_bias = frame_bias + self.roll_pitch_proj(melodic)
        return CrossMemory([layer.cross_attn.project_kv(hidden) for layer in self.layers], bias, frame_bias)

    def conditioning(self, tau: Tensor) -> Tensor:
        """Noise-time conditioning [B, 1, 4d] shared by every FiLM layer."""
        emb = timestep_embedding(tau, self.input_proj.out_features, self.max_noise_time)
        return self.time_mlp(emb.to(self.input_proj.weight.dtype)).unsqueeze(1)

    def forward(self, z: Tensor, tau: Tensor, memory: CrossMemory) -> Tensor:
        """The prediction [B, T, 128] for noisy frames `z` [B, T, 128] at noise times `tau` [B]: the noise ε, or
        v = alpha ε − sigma x0 for v-models (`config.prediction`; the samplers take either)."""
        cond = self.conditioning(tau)
        y = self.input_proj(z) + self.pos_embed[: z.shape[1]]
        if memory.frame_bias is not None:
            y = y + memory.frame_bias
        y = self.dropout(y)
        for layer, kv in zip(self.layers, memory.kv):
            y = layer(y, cond, kv, memory.bias)
        out = self.output_proj(self.dropout(self.final_norm(y)))
        if self.roll_prior is not None:  # v = alpha eps - sigma x0: the roll's linear x0 estimate enters as -sigma x0
            sigma = self.noise_level(tau)[1].to(out.dtype)
            out = out - sigma[:, None, None] * self.roll_prior(memory.frame_bias)
        return out
