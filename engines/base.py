"""The engine contract: load, warm up, run with explicit inputs and state, report timings.

An engine owns a model's weights on some device in some precision and exposes the two operations every sampler
needs. State is explicit: `encode` returns the window's cross-attention memory, and every `denoise` call takes it.

Threads: an engine belongs to one thread (the render loop or the live generation worker); it is not thread-safe.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from live_synth.model.config import ModelConfig


@dataclass
class EngineTimings:
    """Wall-clock milliseconds per operation, appended by the engine on every call."""

    ms: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))

    def add(self, op: str, start: float) -> None:
        self.ms[op].append((time.perf_counter() - start) * 1e3)

    def median(self, op: str) -> float:
        values = self.ms.get(op)
        return float(np.median(values)) if values else float("nan")

    def summary(self) -> dict[str, dict[str, float]]:
        return {op: {"n": len(v), "median_ms": float(np.median(v)), "total_ms": float(np.sum(v))}
                for op, v in self.ms.items() if v}


class Engine(ABC):
    """One inference back end. Inputs and outputs are torch tensors on `self.device` in float32 at the boundary."""

    name: str
    config: ModelConfig  # the model's shapes and token language
    timings: EngineTimings

    @abstractmethod
    def encode(self, tokens, context, context_mask, roll=None, guided: bool = False):
        """Memory for one window: tokens [1, L] (real tokens only), context [1, S, 128] scaled, mask [1, S], and the
        piano roll [1, T, ROLL_FEATURES] for models that take one.

        With `guided`, the memory also holds the unconditional branch (all conditioning masked) for
        classifier-free guidance, stacked on the batch axis.
        """

    @abstractmethod
    def denoise(self, z, tau: float, memory):
        """Predicted ε for noisy frames z [B, T, 128] at noise time tau; doubles the batch when memory is guided."""

    _notes_cache = None  # the last window's tokens and notes-encoder output (engines that keep it set it)

    def forget_notes(self) -> None:
        """Drop the cached notes-encoder output, so that the next `encode` runs the notes encoder (benchmarks)."""
        self._notes_cache = None

    def warm_up(self, frames: int = 256, tokens: int = 64) -> None:
        """Run each operation once on random inputs so that the first real call is not the slow one."""
        import torch

        gen = torch.Generator().manual_seed(1234)
        tok = torch.randint(3, 1000, (1, tokens), generator=gen)
        ctx = torch.rand(1, frames, 128, generator=gen) * 2 - 1
        cfg = self.config
        frames = min(frames, cfg.target_length)
        roll = None
        if cfg.pianoroll:
            from live_synth.midi.pianoroll import ROLL_FEATURES

            roll = torch.rand(1, frames, ROLL_FEATURES, generator=gen)
        ctx = ctx[:, : cfg.context_length]
        mem = self.encode(tok, ctx, torch.ones(1, ctx.shape[1], dtype=torch.bool), roll=roll)
        self.denoise(torch.randn(1, frames, 128, generator=gen), 0.5, mem)
        self.timings = EngineTimings()


def key_bucket(keys: int, max_keys: int, step: int = 128) -> int:
    """The padded key count a CUDA graph is captured for: the next multiple of `step`, at most `max_keys`.

    Cross-attention memories differ in length from window to window (tokens + context frames); a captured graph has
    fixed shapes, so each engine keeps one graph per (batch, bucket) and pads a memory into its bucket."""
    return min(max_keys, -(-keys // step) * step)


def copy_padded(dst, src) -> None:
    """Copy CrossMemory `src` into the first keys of `dst` (a bucket-sized CrossMemory of static buffers); the keys
    beyond get the masked bias, so they contribute exactly nothing after the softmax."""
    import torch

    from live_synth.model.decoder import CROSS_MASK_VALUE

    k = src.bias.shape[-1]
    for (dk, dv), (sk, sv) in zip(dst.kv, src.kv):
        dk[:, :, :k].copy_(sk)
        dv[:, :, :k].copy_(sv)
    dst.bias.fill_(-3.0e4 if dst.bias.dtype == torch.float16 else CROSS_MASK_VALUE)
    dst.bias[..., :k].copy_(src.bias)
    if src.frame_bias is not None:
        dst.frame_bias.copy_(src.frame_bias)


def padded_like(memory, keys: int):
    """A CrossMemory of zeros shaped like `memory` but with `keys` keys (static buffers for a CUDA graph)."""
    from live_synth.model.decoder import CrossMemory

    kv = [(k.new_zeros(*k.shape[:2], keys, k.shape[3]), v.new_zeros(*v.shape[:2], keys, v.shape[3]))
          for k, v in memory.kv]
    bias = memory.bias.new_zeros(*memory.bias.shape[:3], keys)
    frame = None if memory.frame_bias is None else memory.frame_bias.clone()
    padded = CrossMemory(kv, bias, frame)
    copy_padded(padded, memory)
    return padded
