"""A frame-aligned piano roll: the notes as the decoder's frames see them (our own models only).

The published model learns where each note falls in time from token cross-attention alone, which took 500 k steps
at batch 256; a small model trained here did not learn it (training-notes.md). So our models also get, per 20 ms
frame, a multi-hot vector of what sounds there, projected and added to the decoder input:
- melodic notes: per GM family (program // 8, 16 families) and pitch, an "onset" feature carrying velocity/127 on
  the note's first frame and an "active" feature of 1 on every frame it sounds;
- drums: an onset feature per drum pitch carrying velocity/127.
Every note gets at least one frame (a note shorter than a frame is still heard: the live path's latch relies on
this). Frames are on the token time grid: frame = round(t * 100) // 2.
"""

from __future__ import annotations

import numpy as np

from live_synth.constants import STEPS_PER_SECOND
from live_synth.midi.notes import NoteSequence

N_FAMILIES = 16
N_PITCHES = 128
ONSET, ACTIVE = 0, 1
DRUM_OFFSET = N_FAMILIES * N_PITCHES * 2
ROLL_FEATURES = DRUM_OFFSET + N_PITCHES  # 4224


def note_arrays(ns: NoteSequence) -> np.ndarray:
    """Notes as float64 [K, 6]: start frame, end frame (exclusive, ≥ start + 1), pitch, velocity, program, is_drum."""
    if not ns.notes:
        return np.zeros((0, 6))
    raw = np.array([(n.start, n.end, n.pitch, n.velocity, n.program, n.is_drum) for n in ns.notes], dtype=np.float64)
    steps_per_frame = STEPS_PER_SECOND // 50
    start = np.round(raw[:, 0] * STEPS_PER_SECOND) // steps_per_frame
    end = np.maximum(np.round(raw[:, 1] * STEPS_PER_SECOND) // steps_per_frame, start + 1)
    return np.column_stack([start, end, raw[:, 2:]])


def pianoroll(notes: np.ndarray, start_frame: int, num_frames: int) -> np.ndarray:
    """Roll float32 [num_frames, ROLL_FEATURES] of frames [start, start + n) from `note_arrays` output."""
    roll = np.zeros((num_frames, ROLL_FEATURES), np.float32)
    if len(notes) == 0:
        return roll
    stop = start_frame + num_frames
    hit = notes[(notes[:, 1] > start_frame) & (notes[:, 0] < stop)]
    for f0, f1, pitch, velocity, program, is_drum in hit:
        pitch, lo, hi = int(pitch), int(max(f0, start_frame)) - start_frame, int(min(f1, stop)) - start_frame
        onset = int(f0) - start_frame
        if is_drum:
            if onset >= 0:
                roll[onset, DRUM_OFFSET + pitch] = max(roll[onset, DRUM_OFFSET + pitch], velocity / 127)
            continue
        base = (int(program) // 8 * N_PITCHES + pitch) * 2
        roll[lo:hi, base + ACTIVE] = 1.0
        if onset >= 0:
            roll[onset, base + ONSET] = max(roll[onset, base + ONSET], velocity / 127)
    return roll
