"""`play --morph A>B`: the timbre morph (`model/morph.py`) played live from a MIDI controller (default CC74, the
page's slider sends it too).

The controller's value is part of the note state: `MorphNoteState` records each CC at the time the worker places
it (arrival + D, like a note), so a morph move is placed, rolled back into and regenerated exactly as a note is.
`MorphLiveStream` wraps the causal live stream: before each frame it sets the model's instrument rows to the
weight the controller had at that frame's time. One frame per tick (hop 1) and the torch engine (the ONNX graphs
bake the weights in). Thread: the generation worker.
"""

from __future__ import annotations

import bisect
import re

from live_synth.constants import FRAME_RATE
from live_synth.errors import LiveSynthError
from live_synth.live.notes import NoteState
from live_synth.live.wrapped_stream import WrappedStream
from live_synth.model.morph import InstrumentMorph

KEEP = 512  # controller moves kept (more than the rollback horizon needs)


def parse_programs(text: str) -> tuple[int, int]:
    """"A>B" -> (A, B), General MIDI programs counted from 0. A bad value is one LiveSynthError line."""
    match = re.match(r"^\s*(\d+)\s*>\s*(\d+)\s*$", text or "")
    if not match or not all(0 <= int(g) <= 127 for g in match.groups()):
        raise LiveSynthError(f"--morph {text!r}: expected A>B with General MIDI programs 0..127, e.g. 0>48")
    return int(match.group(1)), int(match.group(2))


class MorphNoteState(NoteState):
    """A NoteState that also keeps the timeline of one controller (any channel) as morph weights 0..1."""

    def __init__(self, cc: int = 74, **kwargs):
        super().__init__(**kwargs)
        self.cc = cc
        self.times: list[float] = []
        self.weights: list[float] = []

    def apply(self, t: float, message) -> None:
        if len(message) >= 3 and message[0] & 0xF0 == 0xB0 and message[1] == self.cc:
            k = bisect.bisect_right(self.times, t)
            self.times.insert(k, t)
            self.weights.insert(k, message[2] / 127.0)
            if len(self.times) > KEEP:
                del self.times[0], self.weights[0]
        super().apply(t, message)

    def weight_at(self, t: float) -> float:
        k = bisect.bisect_right(self.times, t)
        return self.weights[k - 1] if k else 0.0


class MorphLiveStream(WrappedStream):
    """The causal live stream with program A's rows morphed to B's at each frame's controller weight."""

    def __init__(self, stream, engine, start_program: int, end_program: int):
        if getattr(engine, "name", "") != "torch" or not hasattr(engine, "model"):
            raise LiveSynthError("--morph rewrites the model's weights frame by frame: play it with --engine torch")
        if getattr(stream, "hop", 1) != 1:
            raise LiveSynthError("--morph plays one frame per tick (--hop 1)")
        super().__init__(stream)
        self.morph = InstrumentMorph(engine.model, start_program, end_program)

    def generate(self, notes):
        weight = notes.weight_at(self.inner.frame / FRAME_RATE) if hasattr(notes, "weight_at") else 0.0
        self.morph.set(weight)
        return self.inner.generate(notes)
