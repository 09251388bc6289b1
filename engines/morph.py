"""`render --morph`: a torch frame engine whose model's instrument rows are morphed before each frame's step
(`live_synth/model/morph.py` says what is interpolated). Batch 1, frames in order (`render_events` with chunks=1)."""

from __future__ import annotations

from engines.frame import FrameEngine, State
from live_synth.constants import FRAME_RATE
from live_synth.errors import LiveSynthError
from live_synth.model.morph import InstrumentMorph, MorphCurve


class MorphEngine(FrameEngine):
    name = "torch"

    def __init__(self, engine: FrameEngine, curve: MorphCurve):
        if getattr(engine, "name", "") != "torch" or not hasattr(engine, "model"):
            raise LiveSynthError("--morph rewrites the model's weights frame by frame: it needs --engine torch")
        self.engine, self.curve = engine, curve
        self.morph = InstrumentMorph(engine.model, curve.start_program, curve.end_program)
        self.config, self.timings = engine.config, engine.timings
        self.frame = 0
        self.weights: list[float] = []  # the weight each frame was made with (reports)

    def initial_state(self, batch: int = 1) -> State:
        return self.engine.initial_state(batch)

    def step(self, slots, prev, state, noise, steps):
        if len(slots) != 1:
            raise LiveSynthError("--morph renders one frame after another (chunks = 1)")
        weight = self.curve.weight(self.frame / FRAME_RATE)
        self.morph.set(weight)
        self.weights.append(weight)
        self.frame += 1
        return self.engine.step(slots, prev, state, noise, steps)

    def close(self) -> None:
        """Put the model's rows back."""
        self.morph.restore()
