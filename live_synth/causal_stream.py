"""The causal family's frame loop: the one computation behind `render`, `play` and the training probes.

`CausalStream` generates frames [frame, frame + n) from the notes known now (a `NoteEvents`), one engine step per
frame, and keeps the state of every recent frame, so that the live loop can rewind to any of them (`rewind`) and
regenerate with notes that arrived later (rollback): a step never modifies a state, so keeping them costs no copy.

Sampling noise is a function of (seed, frame) only (`frame_noise`), so a frame regenerated after a rollback that
brought no new note is bit-identical to the first try, and a live session fed a MIDI file in time renders exactly
what `render` renders (tested).

`render_events` is the offline loop: the whole song's features at once, then the frames in order; with `chunks` > 1
the song is cut into that many pieces rendered side by side as one batch, each starting `warmup` frames early from
silence (its own history then holds the notes sounding before it), which makes offline several times faster at batch
1's per-step cost; the seams are measured by tools/seam_check.py (`CausalSynth.render` cites the numbers).
"""

from __future__ import annotations

from collections import deque

import numpy as np

from live_synth.constants import LOG_MEL_MAX, LOG_MEL_MIN, N_MELS
from live_synth.midi.events import NoteEvents
from live_synth.model.frame_features import frame_features

SILENCE = -1.0  # the scaled value of ln(1e-5)


def frame_noise(seed: int, frames: np.ndarray) -> np.ndarray:
    """float32 [len(frames), 2, 128]: the sampling noise and the context noise of each frame, from (seed, frame)."""
    return np.stack([np.random.default_rng([seed, int(t) & 0xFFFFFFFF]).standard_normal((2, N_MELS), np.float32)
                     for t in frames])


def _engine(model_or_engine):
    from engines.frame import FrameEngine, TorchFrameEngine

    if isinstance(model_or_engine, FrameEngine):
        return model_or_engine
    # on the model's own device: a model training on a GPU must not be moved off it by a probe's render
    return TorchFrameEngine(model_or_engine, device=str(next(model_or_engine.parameters()).device))


class CausalStream:
    """Frames from one engine, in order, with rewind. Thread: the one that owns the engine."""

    def __init__(self, engine, steps: int, seed: int = 0, keep: int = 64):
        self.engine = _engine(engine)
        self.steps, self.seed = steps, seed
        self.frame = 0  # the next frame to generate
        self.state = self.engine.initial_state(1)
        self.prev = np.full((1, N_MELS), SILENCE, np.float32)
        self.slots = self.engine.config.slots
        self.history: deque = deque(maxlen=keep)  # (frame, state, prev) before each recent frame

    def generate(self, events: NoteEvents, count: int) -> np.ndarray:
        """Log-mel frames [count, 128] (natural log) for frames [frame, frame + count)."""
        feats = frame_features(events, self.frame, count, self.slots)
        out = np.empty((count, N_MELS), np.float32)
        noise = frame_noise(self.seed, np.arange(self.frame, self.frame + count))
        for i in range(count):
            self.history.append((self.frame, self.state, self.prev))
            x, self.state = self.engine.step(feats[i : i + 1], self.prev, self.state, noise[i : i + 1], self.steps)
            self.prev = x
            out[i] = x[0]
            self.frame += 1
        return unscale(out)

    def earliest(self) -> int:
        """The oldest frame `rewind` can go back to."""
        return self.history[0][0] if self.history else self.frame

    def rewind(self, frame: int) -> None:
        """Go back to just before `frame` (earliest() <= frame <= self.frame): it is generated next."""
        if frame == self.frame:
            return
        if not self.history or not self.history[0][0] <= frame < self.frame:
            raise ValueError(f"cannot rewind to frame {frame} (kept {self.earliest()}..{self.frame})")
        while self.history and self.history[-1][0] > frame:
            self.history.pop()
        self.frame, self.state, self.prev = self.history.pop()


def unscale(frames: np.ndarray) -> np.ndarray:
    """Scaled [-1, 1] frames -> natural-log mel (`features.unscale_features` in NumPy)."""
    return ((frames + 1.0) / 2.0 * (LOG_MEL_MAX - LOG_MEL_MIN) + LOG_MEL_MIN).astype(np.float32)


def render_events(model_or_engine, events: NoteEvents, frames: int, steps: int, seed: int = 0,
                  chunks: int = 1, warmup: int | None = None, progress=None) -> np.ndarray:
    """Natural-log mel [frames, 128] of `events` rendered from silence, frame by frame (see the module docstring)."""
    engine = _engine(model_or_engine)
    if chunks <= 1 or frames < 2 * chunks:
        stream = CausalStream(engine, steps, seed)
        out, block = [], 256
        for start in range(0, frames, block):
            out.append(stream.generate(events, min(block, frames - start)))
            if progress:
                progress(min(start + block, frames), frames)
        return np.concatenate(out) if out else np.zeros((0, N_MELS), np.float32)
    warmup = engine.config.receptive_frames if warmup is None else warmup
    size = -(-frames // chunks)
    starts = np.arange(chunks) * size - warmup  # each row renders [start, start + warmup + size)
    length = warmup + size
    slots = engine.config.slots
    feats = np.stack([frame_features(events, int(s), length, slots) for s in starts])  # [B, L, S, F]
    state = engine.initial_state(chunks)
    prev = np.full((chunks, N_MELS), SILENCE, np.float32)
    out = np.empty((chunks, length, N_MELS), np.float32)
    for i in range(length):
        noise = frame_noise(seed, starts + i)
        prev, state = engine.step(feats[:, i], prev, state, noise, steps)
        out[:, i] = prev
        if progress and i % 256 == 0:
            progress(i, length)
    mel = out[:, warmup:].reshape(-1, N_MELS)[:frames]
    return unscale(mel)


class CausalLiveStream:
    """The live worker's view of a `CausalStream` (`synth.LiveStream`): `hop` frames per call from the note state."""

    can_rewind = True

    def __init__(self, engine, steps: int, seed: int = 0, hop: int = 1, keep: int = 256):
        from live_synth.model.frame_features import LOOKAHEAD_FRAMES

        self.stream = CausalStream(engine, steps, seed, keep=keep)
        self.hop, self.max_steps = hop, steps
        self._lookahead = LOOKAHEAD_FRAMES

    @property
    def frame(self) -> int:
        return self.stream.frame

    @property
    def steps(self) -> int:
        return self.stream.steps

    @steps.setter
    def steps(self, value: int) -> None:
        self.stream.steps = value

    def generate(self, notes) -> np.ndarray:
        return self.stream.generate(notes.events(), self.hop)

    def rewind(self, frame: int) -> None:
        self.stream.rewind(frame)

    def earliest(self) -> int:
        return self.stream.earliest()

    def lookahead_frames(self) -> int:
        return self._lookahead
