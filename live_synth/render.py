"""Offline rendering: a song's windows → engine + sampler per window → log-mel → vocoder → audio.

Windows are generated one after another; each sees the frames generated before it as context (left-aligned, up to
the model's context length, masked beyond; the first window sees an empty, fully masked context). For the published
geometry (256-frame windows, 256-frame context) that is exactly what diffusers' pipeline does (spec §4.3) and the
windows are the reference tokenizer's 5.12 s segments. Models with shorter windows (chunked continuation) get
`EventIndex` windows and, when they take one, a piano roll per window. The vocoder runs once over the whole mel.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from engines.base import Engine
from live_synth.audio.features import scale_features, unscale_features
from live_synth.constants import HOP, N_MELS, SAMPLE_RATE, SEGMENT_FRAMES
from live_synth.midi import NoteSequence, TokenizerConfig, tokenize
from live_synth.midi.pianoroll import note_arrays, pianoroll
from live_synth.midi.tokenize import EventIndex
from live_synth.model.config import ModelConfig
from live_synth.sampling.samplers import Sampler, sample

SegmentCallback = Callable[[int, int], None]  # (windows done, windows total)


@dataclass(frozen=True)
class RenderSettings:
    sampler: str = "dpmpp"
    steps: int = 8
    guidance: float = 1.0  # classifier-free guidance weight w; 1 = no guidance (one decoder pass per step)
    seed: int = 0


@dataclass
class SongWindows:
    """What the model sees for a whole song: token ids per window (padded), piano rolls (or None), overflow."""

    segments: list[list[int]]
    rolls: list[np.ndarray] | None
    dropped_tokens: int
    overflowed_segments: int


def tokenizer_config(cfg: ModelConfig) -> TokenizerConfig:
    return TokenizerConfig(cfg.num_velocity_bins, cfg.slakh_programs, cfg.max_tokens)


def song_windows(ns: NoteSequence, cfg: ModelConfig) -> SongWindows:
    """Tokens (and rolls) for every window of a song, in the model's geometry. `ns` has its sustain applied."""
    tok_cfg = tokenizer_config(cfg)
    window = cfg.target_length
    if window == SEGMENT_FRAMES and not cfg.pianoroll:
        song = tokenize(ns, tok_cfg)  # the reference's segments, bit for bit
        return SongWindows(song.segments, None, song.dropped_tokens, song.overflowed_segments)
    num_frames = int(ns.total_time * SAMPLE_RATE) // HOP + 1  # the reference's frame count
    index = EventIndex(ns, tok_cfg)
    segments, dropped = [], []
    for k in range(-(-num_frames // window)):
        tokens, lost = index.window(k * window, window)
        segments.append(tokens + [0] * (cfg.max_tokens - len(tokens)))
        dropped.append(lost)
    rolls = None
    if cfg.pianoroll:
        notes = note_arrays(ns)
        rolls = [pianoroll(notes, k * window, window) for k in range(len(segments))]
    return SongWindows(segments, rolls, sum(dropped), sum(1 for d in dropped if d))


def real_length(tokens: Sequence[int]) -> int:
    """Tokens up to and including EOS: the notes encoder's masked padding changes nothing, so it is not run."""
    nonzero = np.flatnonzero(np.asarray(tokens))
    return int(nonzero[-1]) + 1 if nonzero.size else 1


def guided_model_fn(engine: Engine, memory, guidance: float):
    """The model's prediction (ε or v) at (x, tau), with classifier-free guidance w·cond + (1 − w)·uncond when
    w ≠ 1 (linear, so the same for either prediction)."""
    if guidance == 1.0:
        return lambda x, tau: engine.denoise(x, tau, memory)

    def guided(x, tau):
        cond, uncond = engine.denoise(x, tau, memory).chunk(2)
        return guidance * cond + (1.0 - guidance) * uncond

    return guided


def context_window(history: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The last `length` generated log-mel frames, left-aligned in a [1, length, 128] buffer (zeros after), and
    their mask. Zeros (not silence) as padding, as the pipeline feeds its first segment: masked values never count."""
    valid = min(length, history.shape[0])
    context = torch.zeros(1, length, N_MELS)
    mask = torch.zeros(1, length, dtype=torch.bool)
    if valid:
        context[0, :valid] = history[-valid:]
        mask[0, :valid] = True
    return context, mask


@torch.no_grad()
def render_mel(
    engine: Engine,
    segments: Sequence[Sequence[int]],
    sampler: Sampler,
    guidance: float = 1.0,
    generator: torch.Generator | None = None,
    on_segment: SegmentCallback | None = None,
    rolls: Sequence[np.ndarray] | None = None,
) -> np.ndarray:
    """Generate the log-mel [n_windows * window, 128] (natural log, unscaled) for tokenized windows."""
    cfg = engine.config
    history = torch.zeros(0, N_MELS)
    for i, tokens in enumerate(segments):
        ids = torch.tensor([list(tokens[: real_length(tokens)])], dtype=torch.long)
        context, mask = context_window(history, cfg.context_length)
        roll = torch.from_numpy(rolls[i])[None] if rolls is not None else None
        memory = engine.encode(ids, scale_features(context, clip=True), mask, roll=roll, guided=guidance != 1.0)
        shape = (1, cfg.target_length, N_MELS)
        x = sample(sampler, guided_model_fn(engine, memory, guidance), shape, generator,
                   device=getattr(engine, "device", "cpu"), prediction=cfg.prediction)
        history = torch.cat([history, unscale_features(x.float().cpu())[0]])
        if on_segment is not None:
            on_segment(i + 1, len(segments))
    return history.numpy().astype(np.float32)
