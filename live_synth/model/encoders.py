"""The two encoders: MIDI tokens (spec §3.3) and the previous window's spectrogram (spec §3.4).

Both are T5 encoder stacks (pre-norm self-attention + gated FFN) that differ only in how their input is embedded.
Each returns its hidden states and the key mask the decoder must use when it cross-attends to them.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from live_synth.model.config import ModelConfig
from live_synth.model.layers import Attention, GatedFFN, RMSNorm, key_padding_bias, permuted_sinusoid_table


class EncoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.attn_norm = RMSNorm(cfg.d_model)
        self.attn = Attention(cfg.d_model, cfg.num_heads, cfg.d_kv)
        self.ff_norm = RMSNorm(cfg.d_model)
        self.ff = GatedFFN(cfg.d_model, cfg.d_ff, cfg.dropout)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor, bias: Tensor) -> Tensor:
        x = x + self.dropout(self.attn(self.attn_norm(x), bias=bias))
        return x + self.dropout(self.ff(self.ff_norm(x)))


class EncoderStack(nn.Module):
    """Layers + final norm, shared by both encoders."""

    def __init__(self, cfg: ModelConfig, num_layers: int):
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(num_layers))
        self.final_norm = RMSNorm(cfg.d_model)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        bias = key_padding_bias(mask, x.dtype)
        x = self.dropout(x)
        for layer in self.layers:
            x = layer(x, bias)
        return self.dropout(self.final_norm(x))


class NotesEncoder(nn.Module):
    """Token ids [B, L] (0 = PAD) → hidden states [B, L, d].

    L may be shorter than `max_tokens`: padding keys are masked, so running only the real tokens (up to and
    including EOS) gives the same hidden states for those rows, at a fraction of the cost.
    """

    def __init__(self, cfg: ModelConfig, generator: torch.Generator | None = None):
        super().__init__()
        self.token_embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.register_buffer("pos_embed", permuted_sinusoid_table(cfg.max_tokens, cfg.d_model, generator))
        self.stack = EncoderStack(cfg, cfg.notes_layers)

    def forward(self, tokens: Tensor) -> tuple[Tensor, Tensor]:
        mask = tokens > 0
        x = self.token_embed(tokens) + self.pos_embed[: tokens.shape[1]]
        return self.stack(x, mask), mask


def terminal_relative_positions(mask: Tensor, table_length: int) -> Tensor:
    """Positions [B, S] that give the last valid context frame the table's last row, next to the target (spec §3.4).

    Valid frames must come first (left-aligned). With S = table_length, position[i] = (i - L) mod S for valid length
    L, i.e. roll(arange(S), L); for L = 0 or L = S that is the identity. A context shorter than the table (a live
    variant) is shifted so that its last valid frame still lands on row table_length - 1. (diffusers rolls along the
    batch axis, a no-op, so its partial contexts get plain positions; the original code and this one do not.)
    """
    s = mask.shape[1]
    lengths = mask.sum(dim=1, keepdim=True)
    return (torch.arange(s, device=mask.device)[None, :] - lengths) % s + (table_length - s)


class ContextEncoder(nn.Module):
    """Previous frames scaled to [-1, 1], [B, S, 128], plus a bool mask [B, S] → hidden states [B, S, d]."""

    def __init__(self, cfg: ModelConfig, generator: torch.Generator | None = None):
        super().__init__()
        self.input_proj = nn.Linear(cfg.input_dims, cfg.d_model, bias=False)
        self.register_buffer("pos_embed", permuted_sinusoid_table(cfg.context_length, cfg.d_model, generator))
        self.stack = EncoderStack(cfg, cfg.context_layers)

    def forward(self, frames: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        mask = mask.bool()
        x = self.input_proj(frames) + self.pos_embed[terminal_relative_positions(mask, self.pos_embed.shape[0])]
        return self.stack(x, mask), mask
