"""The window family's live stream, the twin of `causal_stream.py`: committed frames + live notes → the next `hop`
frames, one tick at a time (what `WindowSynth.live_stream` returns to the live worker).

Two strategies (architecture.md), chosen per model:
- "continuation" (models trained on short targets, e.g. the `live` preset): generate the window that starts at the
  next uncommitted frame, with up to `context_length` committed frames as context; commit its first `hop` frames.
  Cost per tick is one window of `target_length` frames, whatever the song length.
- "inpaint" (the published weights, trained on full 256-frame targets): generate the window that *ends* `hop`
  frames past the committed ones; its committed part is held fixed while sampling (`sample(known=...)`), the
  context is what came before the window; commit the newest `hop` frames.
Held notes sound to the end of the window being generated (`NoteState.snapshot(horizon=...)`).

Thread: the generation worker only. State is explicit in the object (committed frames, frame counter, RNG).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from engines.base import Engine
from live_synth.audio.features import scale_features, unscale_features
from live_synth.constants import FRAME_RATE, N_MELS
from live_synth.errors import LiveSynthError
from live_synth.midi import NoteSequence
from live_synth.midi.pianoroll import note_arrays, pianoroll
from live_synth.midi.tokenize import EventIndex
from live_synth.render import context_window, guided_model_fn, tokenizer_config
from live_synth.sampling.samplers import make_sampler, sample

STRATEGIES = ("continuation", "inpaint")


@dataclass(frozen=True)
class LivePolicy:
    hop: int = 16  # frames committed per tick (16 frames = 320 ms)
    steps: int = 4
    sampler: str = "ddim"
    strategy: str = "continuation"
    guidance: float = 1.0


@dataclass
class TickReport:
    frame: int  # first frame committed by this tick
    steps: int
    compute_ms: float
    cache_hit: bool


class LiveGenerator:
    """The window family's `synth.LiveStream`: `hop` frames per call, no rewind (events are stamped instead)."""

    can_rewind = False

    def __init__(self, engine: Engine, policy: LivePolicy, seed: int = 0):
        cfg = engine.config
        if policy.strategy not in STRATEGIES:
            raise LiveSynthError(f"unknown live strategy {policy.strategy!r}; choose one of {STRATEGIES}")
        if not 1 <= policy.hop <= cfg.target_length:
            raise LiveSynthError(f"hop must be 1..{cfg.target_length} frames for this model, got {policy.hop}")
        self.engine, self.policy, self.cfg = engine, policy, cfg
        self.steps = policy.steps  # lowered by the worker when ticks run late
        self.max_steps, self.hop = policy.steps, policy.hop
        self.tok_cfg = tokenizer_config(cfg)
        self.committed = torch.zeros(0, N_MELS)  # the tail of the committed frames, bounded (see _trim)
        self.dropped = 0  # committed frames no longer kept
        self.generator = torch.Generator().manual_seed(seed)

    @property
    def frame(self) -> int:
        """The next frame to commit (frames since the session started)."""
        return self.dropped + self.committed.shape[0]

    def _frames(self, start: int, stop: int | None = None) -> torch.Tensor:
        """Committed frames [start, stop) in session frames (only the kept tail is addressable)."""
        lo = start - self.dropped
        hi = None if stop is None else stop - self.dropped
        return self.committed[max(lo, 0) : hi]

    def _trim(self) -> None:
        keep = self.cfg.target_length + self.cfg.context_length
        if self.committed.shape[0] > 2 * keep:
            self.dropped += self.committed.shape[0] - keep
            self.committed = self.committed[-keep:].clone()

    def horizon_s(self) -> float:
        """Time (s) up to which the next tick needs to know the notes: the end of the window it generates."""
        return (self._window_start() + self.cfg.target_length) / FRAME_RATE

    def _window_start(self) -> int:
        if self.policy.strategy == "continuation":
            return self.frame
        return max(0, self.frame + self.policy.hop - self.cfg.target_length)

    def generate(self, notes) -> np.ndarray:
        """The next `hop` frames from a `live.notes.NoteState` (held notes sound to the window's end)."""
        return self.tick(notes.snapshot(now=self.frame / FRAME_RATE, horizon=self.horizon_s()))[0]

    def rewind(self, frame: int) -> None:
        raise NotImplementedError("the window family cannot rewind: its windows see the future")

    def earliest(self) -> int:
        return self.frame

    def lookahead_frames(self) -> int:
        return self.cfg.target_length

    def tick(self, notes: NoteSequence) -> tuple[np.ndarray, TickReport]:
        """Generate and commit the next `hop` log-mel frames [hop, 128] for `notes` (times in session seconds)."""
        start_time = time.perf_counter()
        cfg, hop, window = self.cfg, self.policy.hop, self.cfg.target_length
        start = self._window_start()
        tokens, _ = EventIndex(notes, self.tok_cfg).window(start, window)
        roll = torch.from_numpy(pianoroll(note_arrays(notes), start, window))[None] if cfg.pianoroll else None
        context, mask = context_window(self._frames(start - cfg.context_length, start), cfg.context_length)
        hits = getattr(self.engine, "cache_hits", 0)
        memory = self.engine.encode(torch.tensor([tokens]), scale_features(context, clip=True), mask, roll=roll,
                                    guided=self.policy.guidance != 1.0)
        known = None
        if self.policy.strategy == "inpaint" and self.frame > start:
            x0 = torch.zeros(1, window, N_MELS)
            x0[0, : self.frame - start] = scale_features(self._frames(start), clip=True)
            keep = torch.zeros(1, window, 1, dtype=torch.bool)
            keep[0, : self.frame - start] = True
            known = (x0, keep)
        sampler = make_sampler(self.policy.sampler, self.steps)
        x = sample(sampler, guided_model_fn(self.engine, memory, self.policy.guidance), (1, window, N_MELS),
                   self.generator, device=getattr(self.engine, "device", "cpu"), known=known,
                   prediction=self.engine.config.prediction)
        offset = self.frame - start
        new = unscale_features(x.float().cpu())[0, offset : offset + hop]
        first = self.frame
        self.committed = torch.cat([self.committed, new])
        self._trim()
        report = TickReport(first, self.steps, (time.perf_counter() - start_time) * 1e3,
                            getattr(self.engine, "cache_hits", 0) > hits)
        return new.numpy(), report
