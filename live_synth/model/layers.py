"""Building blocks shared by the three networks (spec §3.1).

T5 conventions that matter for loading the published weights: no biases anywhere, RMSNorm with eps 1e-6 computed in
fp32, attention logits NOT scaled by 1/sqrt(d_kv) (T5 folds that into the query initialisation), gated GELU (tanh
approximation) feed-forward, pre-norm residual blocks.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class RMSNorm(nn.Module):
    """T5 LayerNorm: scale only, no mean subtraction, no bias; statistics in fp32 for half-precision inputs."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        variance = x.float().pow(2).mean(-1, keepdim=True)
        x = x * torch.rsqrt(variance + self.eps)
        if self.weight.dtype in (torch.float16, torch.bfloat16):
            x = x.to(self.weight.dtype)
        return self.weight * x


def key_padding_bias(mask: Tensor, dtype: torch.dtype, masked_value: float | None = None) -> Tensor:
    """Additive attention bias [B, 1, 1, S] from a key mask [B, S] (True = attend).

    A finite large negative value instead of -inf keeps rows whose keys are all masked finite (uniform weights),
    as the reference does; -inf would turn them into NaN, and NaN times a zero attention weight downstream is still
    NaN. fp16 cannot hold finfo.min plus a logit, so it gets a smaller (still decisive) value.
    """
    if masked_value is None:
        masked_value = -3.0e4 if dtype == torch.float16 else torch.finfo(dtype).min
    bias = torch.zeros(mask.shape, dtype=dtype, device=mask.device)
    bias = bias.masked_fill(~mask.bool(), masked_value)
    return bias[:, None, None, :]


class Attention(nn.Module):
    """Multi-head attention without biases and without logit scaling (T5)."""

    def __init__(self, d_model: int, num_heads: int, d_kv: int, dropout: float = 0.0):
        super().__init__()
        inner = num_heads * d_kv
        self.num_heads, self.d_kv = num_heads, d_kv
        self.q = nn.Linear(d_model, inner, bias=False)
        self.k = nn.Linear(d_model, inner, bias=False)
        self.v = nn.Linear(d_model, inner, bias=False)
        self.o = nn.Linear(inner, d_model, bias=False)
        self.dropout = dropout

    def split_heads(self, x: Tensor) -> Tensor:
        b, s, _ = x.shape
        return x.view(b, s, self.num_heads, self.d_kv).transpose(1, 2)

    def project_kv(self, memory: Tensor) -> tuple[Tensor, Tensor]:
        """Keys and values [B, H, S, d_kv] for `memory`; cacheable when the memory does not change."""
        return self.split_heads(self.k(memory)), self.split_heads(self.v(memory))

    def forward(
        self,
        x: Tensor,
        kv: tuple[Tensor, Tensor] | None = None,
        bias: Tensor | None = None,
    ) -> Tensor:
        """Self-attention when `kv` is None, else attention to precomputed keys/values. `bias` is additive."""
        q = self.split_heads(self.q(x))
        k, v = kv if kv is not None else self.project_kv(x)
        p = self.dropout if self.training else 0.0
        if bias is not None:
            bias = bias.to(q.dtype)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=p, scale=1.0)
        b, _, s, _ = out.shape
        return self.o(out.transpose(1, 2).reshape(b, s, self.num_heads * self.d_kv))


def gelu_tanh(x: Tensor) -> Tensor:
    """GELU, tanh approximation, written as the reference writes it (bit-for-bit parity)."""
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


class GatedFFN(nn.Module):
    """wo(gelu(wi_0 x) * wi_1 x), dropout after the product."""

    def __init__(self, d_model: int, d_ff: int, dropout: float = 0.0):
        super().__init__()
        self.wi_0 = nn.Linear(d_model, d_ff, bias=False)
        self.wi_1 = nn.Linear(d_model, d_ff, bias=False)
        self.wo = nn.Linear(d_ff, d_model, bias=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.wo(self.dropout(gelu_tanh(self.wi_0(x)) * self.wi_1(x)))


def film(x: Tensor, scale_shift: Tensor) -> Tensor:
    """FiLM: x * (1 + scale) + shift, with scale and shift the two halves of `scale_shift` (scale first)."""
    scale, shift = scale_shift.chunk(2, dim=-1)
    return x * (1 + scale) + shift


def timestep_embedding(tau: Tensor, dim: int, max_period: float) -> Tensor:
    """Sinusoidal embedding of noise time tau in [0, 1), scaled by `max_period` (spec §3.5 step 1).

    Same operation order as diffusers' get_timestep_embedding(tau * max_period, dim, flip_sin_to_cos=False,
    downscale_freq_shift=1, max_period=max_period), sin half first.
    """
    half = dim // 2
    exponent = -math.log(max_period) * torch.arange(0, half, dtype=torch.float32, device=tau.device)
    freqs = torch.exp(exponent / (half - 1))
    args = (tau * max_period)[:, None].float() * freqs[None, :]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=-1)


def permuted_sinusoid_table(length: int, dim: int, generator: torch.Generator | None = None) -> Tensor:
    """A fresh `fixed_permuted_offset` position table (spec §3.2): sinusoids with random phases, columns permuted.

    Only for new models: the published tables came from JAX's PRNG and must be loaded from the checkpoint.
    """
    half = dim // 2
    k = torch.arange(half, dtype=torch.float64)
    freqs = torch.exp(-k * math.log(1e4) / max(half - 1, 1))
    pos = torch.arange(length, dtype=torch.float64)[:, None]
    phases = torch.rand(2, half, generator=generator, dtype=torch.float64) * 2 * math.pi
    table = torch.cat([torch.sin(pos * freqs + phases[0]), torch.cos(pos * freqs + phases[1])], dim=-1)
    if table.shape[1] < dim:  # odd dim: pad one zero column
        table = F.pad(table, (0, dim - table.shape[1]))
    perm = torch.randperm(dim, generator=generator)
    return table[:, perm].float()
