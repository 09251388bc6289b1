"""Frame-aligned note features of the causal family: what mel frame t may know of the notes, one function for
training, offline render and live play.

What frame t may see. Mel frame t is computed from samples [320 t, 320 t + 640): a 40 ms window starting at its
hop. An event at time s changes that window's audio iff s < (t + 2) * 20 ms, so frame t sees every event before the
end of its window (`LOOKAHEAD_FRAMES` = 2): a note at s is seen first by frame floor(s / 20 ms) - 1, whose window's
second half holds the onset. Live, this means frame t can be final only once the events up to (t + 2) * 20 ms are
known; the live loop generates it earlier on speculation and regenerates it when an event for it arrives in time
(`live/rollback.py`). Controllers are read at the window's centre, (t + 1) * 20 ms.

The representation: up to `SLOTS` notes per frame (those still sounding first, then the most recent onsets), each
a vector of `FEATURES` values (`COLUMNS`). A note stays in the frame's slots while held and for
`RELEASE_FRAMES` after its release (the release tail), a drum hit for `RELEASE_FRAMES` after its onset. Ages are
in frames and continuous: `age = t - onset / 20 ms`, so the onset's position inside the frame is its fractional
part, and a note is never rounded to the 20 ms grid. Every note of a song gets frames with it (a note shorter than a
frame is seen by at least two frames). A frame with more than `SLOTS` notes drops the oldest released ones.
"""

from __future__ import annotations

import numpy as np

from live_synth.constants import FRAME_RATE
from live_synth.midi.events import BEND, EXPRESSION, MOD, VOLUME, NoteEvents

SLOTS = 32
RELEASE_FRAMES = 150  # 3 s of release tail (or of a drum hit) in the features
LOOKAHEAD_FRAMES = 2  # frame t sees events before (t + LOOKAHEAD_FRAMES) / FRAME_RATE seconds
DRUM_FAMILY = 16
DRUM_PROGRAM = 128
ONSET_TAUS = (3.0, 12.0, 50.0)  # frames
RELEASE_TAUS = (2.0, 8.0, 30.0)
MIN_GAIN_DB = -60.0
COLUMNS = (
    "valid", "pitch", "velocity", "velocity_db", "onset_ramp", "onset_3", "onset_12", "onset_50", "log_age",
    "held", "release_ramp", "release_2", "release_8", "release_30", "mod", "gain_db", "bend",
    "program", "family",
)  # fmt: skip
FEATURES = len(COLUMNS)
COL = {name: i for i, name in enumerate(COLUMNS)}
CONTINUOUS = tuple(i for i, name in enumerate(COLUMNS) if name not in ("valid", "program", "family"))


def frame_times(start: int, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(frame indices, window ends, window centres) in frames and seconds for frames [start, start + count)."""
    t = np.arange(start, start + count, dtype=np.float64)
    return t, (t + LOOKAHEAD_FRAMES) / FRAME_RATE, (t + 1) / FRAME_RATE


def _candidates(notes: np.ndarray, start: int, count: int) -> np.ndarray:
    """Indices of the notes that can be in any of the frames (a cheap superset)."""
    if not len(notes):
        return np.zeros(0, np.int64)
    first_s, last_end_s = start / FRAME_RATE, (start + count + LOOKAHEAD_FRAMES) / FRAME_RATE
    tail_s = RELEASE_FRAMES / FRAME_RATE
    alive_until = np.where(notes[:, 5] > 0, notes[:, 0], notes[:, 1]) + tail_s + LOOKAHEAD_FRAMES / FRAME_RATE
    return np.flatnonzero((notes[:, 0] < last_end_s) & (alive_until > first_s))


def frame_features(events: NoteEvents, start: int, count: int, slots: int = SLOTS) -> np.ndarray:
    """float32 [count, slots, FEATURES] for frames [start, start + count); empty slots are all zero."""
    out = np.zeros((count, slots, FEATURES), np.float32)
    idx = _candidates(events.notes, start, count)
    if not len(idx) or count == 0:
        return out
    notes = events.notes[idx]
    t, _, centres = frame_times(start, count)
    onset_f, release_f = notes[:, 0] * FRAME_RATE, notes[:, 1] * FRAME_RATE
    drum = notes[:, 5] > 0
    a_on = t[:, None] - onset_f[None, :]  # [count, K]
    with np.errstate(invalid="ignore"):
        a_off = t[:, None] - release_f[None, :]  # -inf while held (release = inf)
    visible = a_on > -LOOKAHEAD_FRAMES
    released = (a_off > -LOOKAHEAD_FRAMES) & ~drum[None, :]
    inside = visible & np.where(drum[None, :], a_on < RELEASE_FRAMES, ~released | (a_off < RELEASE_FRAMES))
    held = inside & ~released & ~drum[None, :]
    # Priority: held notes first, then the most recent onset; take the best `slots` per frame.
    priority = np.where(inside, held * 1e7 + onset_f[None, :], -np.inf)
    order = np.argsort(-priority, axis=1, kind="stable")[:, :slots]
    chosen = np.take_along_axis(inside, order, axis=1)
    rows, cols = np.nonzero(chosen)
    k = order[rows, cols]  # candidate index per filled slot

    # Controllers per lane at the window centres, gathered per filled slot.
    lanes = notes[:, 6].astype(np.int64)
    ctrl = np.zeros((len(k), 4))
    for lane in np.unique(lanes[k]):
        values = events.values_at(int(lane), centres)  # [count, 4]
        sel = lanes[k] == lane
        ctrl[sel] = values[rows[sel]]
    bend = np.where(drum[k], 0.0, ctrl[:, BEND])
    gain_db = 40.0 * (np.log10(np.maximum(ctrl[:, VOLUME], 1e-6)) + np.log10(np.maximum(ctrl[:, EXPRESSION], 1e-6)))
    velocity = notes[k, 3]
    age = a_on[rows, k]
    off = a_off[rows, k]
    is_released = released[rows, k]
    f = out[rows, cols]  # a copy; written back below
    f[:, COL["valid"]] = 1.0
    f[:, COL["pitch"]] = notes[k, 2] + bend
    f[:, COL["velocity"]] = velocity / 127.0
    f[:, COL["velocity_db"]] = np.maximum(40.0 * np.log10(np.maximum(velocity, 1.0) / 127.0), MIN_GAIN_DB) / 40.0
    f[:, COL["onset_ramp"]] = np.clip((age + LOOKAHEAD_FRAMES) / LOOKAHEAD_FRAMES, 0.0, 1.0)
    for tau, name in zip(ONSET_TAUS, ("onset_3", "onset_12", "onset_50")):
        f[:, COL[name]] = np.exp(-np.maximum(age, 0.0) / tau)
    f[:, COL["log_age"]] = np.log1p(np.maximum(age, 0.0)) / np.log1p(1000.0)
    f[:, COL["held"]] = held[rows, k]
    f[:, COL["release_ramp"]] = np.where(is_released, np.clip((off + LOOKAHEAD_FRAMES) / LOOKAHEAD_FRAMES, 0, 1), 0)
    for tau, name in zip(RELEASE_TAUS, ("release_2", "release_8", "release_30")):
        f[:, COL[name]] = np.where(is_released, np.exp(-np.maximum(off, 0.0) / tau), 0.0)
    f[:, COL["mod"]] = ctrl[:, MOD]
    f[:, COL["gain_db"]] = np.maximum(gain_db, MIN_GAIN_DB) / 40.0
    f[:, COL["bend"]] = bend / 12.0
    f[:, COL["program"]] = np.where(drum[k], DRUM_PROGRAM, notes[k, 4])
    f[:, COL["family"]] = np.where(drum[k], DRUM_FAMILY, notes[k, 4] // 8)
    out[rows, cols] = f
    return out


def dropped_notes(events: NoteEvents, start: int, count: int, slots: int = SLOTS) -> int:
    """Note-frames beyond `slots` in frames [start, start + count) (left out of the features; for reports)."""
    full = frame_features(events, start, count, slots=4 * slots)
    return int(np.maximum(full[:, :, COL["valid"]].sum(axis=1) - slots, 0).sum())
