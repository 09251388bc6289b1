"""Timbre morph of the causal family: the model's instrument embeddings interpolated from one GM program to another.

A note's instrument reaches the causal model in four learned tables, all indexed by its program or its GM family
(`model/causal.py`): the program and family embeddings of the slot encoder, and the note prior's per-family
spectral template (130 pitch rows) and level coefficients. A morph from program A to program B at weight `w` gives
program A's notes, in each of those tables, the row `(1 - w) * A's + w * B's` (and A's family's rows the same mix
of the two families'), frame by frame along a curve: at w = 0 the model plays A exactly, at w = 1 it plays B's rows
(with A's program number everywhere else, which no table reads). Everything else (pitch, velocity, ages, the
backbone's state) is untouched, so the notes and their timing stay as they are while the timbre moves.

Offline only, with the torch engine, one frame after another (`render --morph`, `engines/morph.py`): the rows are
rewritten before each frame's step, which the ONNX graphs (weights baked in) and chunked batches (one weight set
for frames of different times) cannot do. Thread: the one rendering.

Curve syntax: "A>B:T" (A to B linearly over the first T seconds, e.g. "0>48:8s"), or "A>B:T0-T1" (held at A until T0,
at B from T1).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from live_synth.errors import LiveSynthError
from live_synth.model.frame_features import DRUM_FAMILY

_CURVE = re.compile(r"^\s*(\d+)\s*>\s*(\d+)\s*:\s*(\d+(?:\.\d+)?)\s*s?\s*(?:-\s*(\d+(?:\.\d+)?)\s*s?)?\s*$")
PITCH_ROWS = 130


@dataclass(frozen=True)
class MorphCurve:
    start_program: int
    end_program: int
    t0: float  # seconds: the weight is 0 until t0, 1 from t1, linear between
    t1: float

    @classmethod
    def parse(cls, text: str) -> MorphCurve:
        match = _CURVE.match(text or "")
        if not match:
            raise LiveSynthError(f"--morph {text!r}: expected A>B:SECONDS or A>B:START-END, e.g. 0>48:8s")
        a, b = int(match.group(1)), int(match.group(2))
        if not (0 <= a <= 127 and 0 <= b <= 127):
            raise LiveSynthError(f"--morph {text!r}: programs are 0..127 (General MIDI, counted from 0)")
        if match.group(4) is None:
            t0, t1 = 0.0, float(match.group(3))
        else:
            t0, t1 = float(match.group(3)), float(match.group(4))
        if t1 <= t0:
            raise LiveSynthError(f"--morph {text!r}: the morph must end after it starts")
        return cls(a, b, t0, t1)

    def weight(self, seconds: float) -> float:
        return float(np.clip((seconds - self.t0) / (self.t1 - self.t0), 0.0, 1.0))


class InstrumentMorph:
    """Rewrites program A's (and its family's) rows of a `CausalModel` in place; `restore()` puts them back."""

    def __init__(self, model, start_program: int, end_program: int):
        import torch

        self.model, self.a, self.b = model, start_program, end_program
        fa, fb = start_program // 8, end_program // 8
        slots, prior = model.slots, model.prior
        ra, rb = slice(fa * PITCH_ROWS, (fa + 1) * PITCH_ROWS), slice(fb * PITCH_ROWS, (fb + 1) * PITCH_ROWS)
        with torch.no_grad():
            # (table, row of A, A's values, B's values)
            self.rows = [(slots.program.weight, start_program, slots.program.weight[start_program].clone(),
                          slots.program.weight[end_program].clone()),
                         (slots.family.weight, fa, slots.family.weight[fa].clone(), slots.family.weight[fb].clone()),
                         (prior.family_table, ra, prior.family_table[ra].clone(), prior.family_table[rb].clone()),
                         (prior.level, fa, prior.level[fa].clone(), prior.level[fb].clone())]
        assert fa != DRUM_FAMILY and fb != DRUM_FAMILY  # programs 0..127 are never the drum family
        self.weight = 0.0

    def set(self, weight: float) -> None:
        import torch

        if weight == self.weight:
            return
        with torch.no_grad():
            for table, row, a, b in self.rows:
                table[row] = a + weight * (b - a)
        self.weight = weight

    def restore(self) -> None:
        self.set(0.0)
