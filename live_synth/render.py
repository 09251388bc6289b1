"""Offline rendering: segment tokens → engine + sampler per 5.12 s segment → log-mel → vocoder → audio.

Segments are generated one after another; each sees the previous segment's generated mel as context (the first one
sees an empty, fully masked context), exactly as the published pipeline does (spec §4.3). The vocoder runs once
over the concatenated mel.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from engines.base import Engine
from live_synth.audio.features import scale_features, unscale_features
from live_synth.constants import N_MELS, SEGMENT_FRAMES
from live_synth.sampling.samplers import Sampler, sample

SegmentCallback = Callable[[int, int], None]  # (segments done, segments total)


@dataclass(frozen=True)
class RenderSettings:
    sampler: str = "dpmpp"
    steps: int = 8
    guidance: float = 1.0  # classifier-free guidance weight w; 1 = no guidance (one decoder pass per step)
    seed: int = 0


def real_length(tokens: Sequence[int]) -> int:
    """Tokens up to and including EOS: the notes encoder's masked padding changes nothing, so it is not run."""
    arr = np.asarray(tokens)
    nonzero = np.flatnonzero(arr)
    return int(nonzero[-1]) + 1 if nonzero.size else 1


def guided_eps_fn(engine: Engine, memory, guidance: float):
    """ε(x, tau), with classifier-free guidance w·ε_cond + (1 − w)·ε_uncond when w ≠ 1."""
    if guidance == 1.0:
        return lambda x, tau: engine.denoise(x, tau, memory)

    def eps(x, tau):
        both = engine.denoise(x, tau, memory)
        cond, uncond = both.chunk(2)
        return guidance * cond + (1.0 - guidance) * uncond

    return eps


@torch.no_grad()
def render_mel(
    engine: Engine,
    segments: Sequence[Sequence[int]],
    sampler: Sampler,
    guidance: float = 1.0,
    generator: torch.Generator | None = None,
    on_segment: SegmentCallback | None = None,
) -> np.ndarray:
    """Generate the log-mel [n_segments * 256, 128] (natural log, unscaled) for tokenized segments."""
    frames = SEGMENT_FRAMES
    context = torch.zeros(1, frames, N_MELS)  # log-mel zeros, as the pipeline feeds the first segment
    context_mask = torch.zeros(1, frames, dtype=torch.bool)
    out = []
    for i, tokens in enumerate(segments):
        ids = torch.tensor([list(tokens[: real_length(tokens)])], dtype=torch.long)
        memory = engine.encode(ids, scale_features(context, clip=True), context_mask, guided=guidance != 1.0)
        eps_fn = guided_eps_fn(engine, memory, guidance)
        x = sample(sampler, eps_fn, (1, frames, N_MELS), generator, device=getattr(engine, "device", "cpu"))
        context = unscale_features(x.float().cpu())
        context_mask = torch.ones(1, frames, dtype=torch.bool)
        out.append(context[0].numpy())
        if on_segment is not None:
            on_segment(i + 1, len(segments))
    if not out:
        return np.zeros((0, N_MELS), np.float32)
    return np.concatenate(out, axis=0).astype(np.float32)
