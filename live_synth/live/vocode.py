"""Streaming vocoding for the live path: committed log-mel frames [n, 128] in, 16 kHz samples [n * 320] out.

Each stream declares `delay_samples`: its output is the offline vocoding of the same frames shifted by that much.
- `NeuralStream`: the project's streaming vocoder (`StreamingVocoder.step` with explicit state); exact.
- `GriffinLimStream`: the weight-free fallback. Griffin-Lim needs whole spectrograms, so each call re-vocodes the
  new frames with `context` frames before them and crossfades one held-back frame (20 ms) with its new rendering,
  which hides the phase jump at chunk boundaries; an approximation of offline Griffin-Lim, not equal to it.
- `ExcitedStream` (in `audio.excited_vocoder`): the excited vocoder, told the notes (`events`) at every call.
All keep their state as values: `snapshot()` returns it and `restore(state)` puts it back, so the live loop can
rewind the vocoder to an earlier frame (rollback) for the cost of keeping a reference (the neural stream's `step`
never modifies a state) or a small copy (Griffin-Lim's few frames).
Thread: the generation worker only.
"""

from __future__ import annotations

import numpy as np
import torch

from live_synth.audio.vocoders import GriffinLimVocoder, Vocoder
from live_synth.constants import HOP, N_MELS


class NeuralStream:
    def __init__(self, vocoder) -> None:
        self.model = getattr(vocoder, "model", vocoder)  # a NeuralVocoder wrapper or the StreamingVocoder itself
        self.state = self.model.initial_state(1)
        self.delay_samples = int(self.model.delay_samples)
        self.name = f"neural stream (delay {self.delay_samples} samples)"

    @torch.inference_mode()
    def __call__(self, frames: np.ndarray, events=None) -> np.ndarray:
        audio, self.state = self.model.step(torch.from_numpy(np.ascontiguousarray(frames, np.float32))[None],
                                            self.state)
        return audio[0].numpy()

    def snapshot(self):
        return self.state

    def restore(self, state) -> None:
        self.state = state


class GriffinLimStream:
    def __init__(self, vocoder: GriffinLimVocoder | None = None, context: int = 8) -> None:
        self.vocoder = vocoder or GriffinLimVocoder(n_iter=16)
        self.context = context
        self.history = np.zeros((0, N_MELS), np.float32)
        self.held = np.zeros(0, np.float32)  # last frame's samples, not yet output
        self.delay_samples = HOP
        ramp = (np.arange(HOP, dtype=np.float32) + 0.5) / HOP
        self.fade_in, self.fade_out = ramp, 1.0 - ramp
        self.name = f"griffin-lim stream (context {context} frames, delay {HOP} samples)"

    def __call__(self, frames: np.ndarray, events=None) -> np.ndarray:
        n = len(frames)
        ctx = self.history[-self.context :]
        audio = self.vocoder(np.concatenate([ctx, frames]).astype(np.float32))
        self.history = np.concatenate([ctx, frames])[-self.context :]
        fresh = audio[(len(ctx) - 1) * HOP :] if len(ctx) else np.concatenate([np.zeros(HOP, np.float32), audio])
        # fresh = [re-rendering of the held frame][n new frames]; crossfade the first with what was held back.
        if len(self.held):
            fresh[:HOP] = self.held * self.fade_out + fresh[:HOP] * self.fade_in
        out, self.held = fresh[: n * HOP], fresh[n * HOP :].copy()
        return out

    def snapshot(self):
        return self.history.copy(), self.held.copy()

    def restore(self, state) -> None:
        self.history, self.held = state[0].copy(), state[1].copy()


class OrtNeuralStream:
    """`NeuralStream` with the step graph (`neural_vocoder.export_step_onnx`) run by ONNX Runtime: the same
    output within float tolerance, several times cheaper per frame (BENCHMARKS.md). The graph is exported once per
    weights into the engines cache. State: the graph's state arrays (new arrays each step: snapshots are free)."""

    def __init__(self, vocoder, threads: int | None = None) -> None:
        from live_synth.audio.neural_vocoder import export_step_onnx, onnx_state_names
        from live_synth.engine_cache import cached_ort_session

        model = getattr(vocoder, "model", vocoder)
        self.session = cached_ort_session(model, "vocoder-step.onnx",
                                          lambda m, path: export_step_onnx(m.float().eval(), path), threads)
        names = onnx_state_names(model)
        self.inputs, self.outputs = ["mel", *names], ["audio", *[f"next_{n}" for n in names]]
        initial = model.initial_state(1)
        self.state = tuple(t.detach().float().numpy() for t in (*initial.caches, initial.tail))
        self.delay_samples = int(model.delay_samples)
        self.name = f"neural stream, onnxruntime (delay {self.delay_samples} samples)"

    def __call__(self, frames: np.ndarray, events=None) -> np.ndarray:
        mel = np.ascontiguousarray(frames, np.float32)[None]
        out = self.session.run(self.outputs, dict(zip(self.inputs, (mel, *self.state))))
        self.state = tuple(out[1:])
        return out[0][0]

    def snapshot(self):
        return self.state

    def restore(self, state) -> None:
        self.state = state


def streaming_vocoder(vocoder: Vocoder, engine: str = "torch"):
    """The live stream for a vocoder: exact streaming when it has one (in ONNX Runtime with `engine="onnx"`),
    chunked Griffin-Lim otherwise. `events` passed to a stream's call are used by the excited vocoder only."""
    from live_synth.audio.excited_vocoder import ExcitedStream, ExcitedVocoder

    if isinstance(vocoder, ExcitedVocoder):
        return ExcitedStream(vocoder, "onnx" if engine == "onnx" else "torch")
    if hasattr(getattr(vocoder, "model", vocoder), "initial_state"):
        return OrtNeuralStream(vocoder) if engine == "onnx" else NeuralStream(vocoder)
    if isinstance(vocoder, GriffinLimVocoder):
        return GriffinLimStream(GriffinLimVocoder(n_iter=min(vocoder.n_iter, 16)))
    raise ValueError(f"vocoder {vocoder.name} cannot stream; use the neural vocoder or griffin-lim")
