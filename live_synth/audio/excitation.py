"""The note excitation: what the synth knows of the notes, as a signal the excited vocoder can shape.

For every pitched note a band-limited sawtooth at its pitch (with the lane's pitch bends), from its onset sample to
`TAIL_S` after its release, at an amplitude that follows its velocity; for every drum hit a short decaying noise burst.
A speech vocoder must infer pitch and attack times from a 20 ms mel frame; here they are given to the sample.

`excitation(events, n0, n1)` is a pure function of the notes and the sample range: the same samples come out whether
a song is rendered in one piece, in blocks, or live a frame at a time, and after a rollback (no state to rewind).
- Phase: the integral of the note's frequency from its onset, exact for the piecewise-constant bends of
  `NoteEvents` (a sum over the bend steps since the onset), so a bent note stays phase-continuous.
- Band limit: one wavetable per MIDI pitch (harmonics up to 0.95 x Nyquist), read at the instantaneous pitch's
  table, rounded up (a bent-up note never aliases), with linear interpolation.
- Polyphony: `VOICES` notes at most; a note stops exciting when the `VOICES`-th later note starts (`_steal_voices`).
- Drums: one of `NOISE_BANK` fixed noise bursts chosen by a hash of (onset sample, pitch), decaying with `DRUM_TAU_S`.

Cost: one numpy pass per note over its own samples only (a block of a song pays for the notes it holds, not for
every note times every sample). Thread: any (no shared mutable state; the tables are built once and never written).
"""

from __future__ import annotations

import functools

import numpy as np

from live_synth.constants import SAMPLE_RATE
from live_synth.midi.events import BEND, NoteEvents

TABLE = 2048  # samples per wavetable period
TAIL_S = 0.25  # a pitched note's excitation fades out over this long after its release
ATTACK_S = 0.001  # a 1 ms ramp at the onset (a step would put a click at every onset)
DRUM_S = 0.12  # how long a drum hit's burst lasts
DRUM_TAU_S = 0.03
NOISE_BANK = 16
VOICES = 32  # at most this many notes excite at once (the frame features' slot count): a flood stays bounded
_ONSET, _RELEASE, _PITCH, _VELOCITY, _PROGRAM, _DRUM, _LANE = range(7)


@functools.lru_cache(maxsize=1)
def saw_tables() -> np.ndarray:
    """float32 [128, TABLE]: one period of a band-limited sawtooth per MIDI pitch, peak about 1."""
    tables = np.zeros((128, TABLE), np.float32)
    for pitch in range(128):
        f0 = 440.0 * 2.0 ** ((pitch - 69) / 12.0)
        harmonics = max(1, min(TABLE // 2 - 1, int(0.95 * SAMPLE_RATE / 2 / f0)))
        spectrum = np.zeros(TABLE // 2 + 1, np.complex128)
        k = np.arange(1, harmonics + 1)
        spectrum[k] = -1j / k  # sum_k sin(k phi) / k
        wave = np.fft.irfft(spectrum, TABLE) * TABLE / 2
        tables[pitch] = wave / np.abs(wave).max()
    return tables


@functools.lru_cache(maxsize=1)
def noise_bank() -> np.ndarray:
    """float32 [NOISE_BANK, DRUM_S samples]: fixed decaying noise bursts (seeded, the same on every machine)."""
    n = int(DRUM_S * SAMPLE_RATE)
    noise = np.random.default_rng(20261204).standard_normal((NOISE_BANK, n)).astype(np.float32)
    envelope = np.exp(-np.arange(n) / (DRUM_TAU_S * SAMPLE_RATE)).astype(np.float32)
    return noise * envelope / 3.0


def _bend_rows(events: NoteEvents, lane: int) -> np.ndarray | None:
    rows = events.controls.get(int(lane))
    if rows is None or not len(rows):
        return None
    bends = rows[rows[:, 1] == BEND]
    return bends[:, [0, 2]] if len(bends) else None


def _cycles(onset: float, times: np.ndarray, f0: float, bends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(periods since the onset, bend in semitones) at `times` for a note whose lane bends by `bends` [E, 2]."""
    before = np.searchsorted(bends[:, 0], onset, side="right") - 1
    start_bend = bends[before, 1] if before >= 0 else 0.0
    later = bends[bends[:, 0] > onset]
    knots = np.concatenate([[onset], later[:, 0]])
    values = np.concatenate([[start_bend], later[:, 1]])
    freqs = f0 * 2.0 ** (values / 12.0)
    cumulative = np.concatenate([[0.0], np.cumsum(freqs[:-1] * np.diff(knots))])
    index = np.clip(np.searchsorted(knots, times, side="right") - 1, 0, None)
    return cumulative[index] + freqs[index] * (times - knots[index]), values[index]


def _read(tables: np.ndarray, pitch: np.ndarray, cycles: np.ndarray) -> np.ndarray:
    """Wavetable lookup with linear interpolation; `pitch` picks the table (rounded up), `cycles` the position."""
    row = np.clip(np.ceil(pitch - 1e-6), 0, 127).astype(np.int64)
    position = (cycles - np.floor(cycles)) * TABLE
    left = position.astype(np.int64) % TABLE
    frac = (position - np.floor(position)).astype(np.float32)
    return tables[row, left] * (1.0 - frac) + tables[row, (left + 1) % TABLE] * frac


def _envelope(times: np.ndarray, onset: np.ndarray, release: np.ndarray) -> np.ndarray:
    attack = np.clip((times - onset) / ATTACK_S, 0.0, 1.0)
    with np.errstate(invalid="ignore"):
        fade = np.where(np.isfinite(release), np.clip(1.0 - (times - release) / TAIL_S, 0.0, 1.0), 1.0)
    return attack * fade


def excitation(events: NoteEvents, n0: int, n1: int) -> np.ndarray:
    """float32 [n1 - n0]: the excitation at samples [n0, n1) of the events' clock (sample 0 = time 0)."""
    out = np.zeros(max(n1 - n0, 0), np.float32)
    notes = events.notes
    if not len(notes) or n1 <= n0:
        return out
    t0, t1 = n0 / SAMPLE_RATE, n1 / SAMPLE_RATE
    drum = notes[:, _DRUM] > 0
    end = np.where(drum, notes[:, _ONSET] + DRUM_S, notes[:, _RELEASE] + TAIL_S)
    active = np.flatnonzero((notes[:, _ONSET] < t1) & (end > t0))
    if len(active) > VOICES:
        end, active = _steal_voices(notes, end, active, t0, t1)
    tables = saw_tables()
    plain = []
    for k in active:
        note = notes[k]
        if drum[k]:
            _add_drum(out, n0, note, note[_VELOCITY] / 127.0)
            continue
        bends = _bend_rows(events, note[_LANE])
        if bends is None:
            plain.append(k)
            continue
        a, b = _span(note[_ONSET], end[k], n0, n1)
        if a >= b:
            continue
        times = np.arange(a, b, dtype=np.float64) / SAMPLE_RATE
        f0 = 440.0 * 2.0 ** ((note[_PITCH] - 69) / 12.0)
        cycles, bend = _cycles(note[_ONSET], times, f0, bends)
        wave = _read(tables, note[_PITCH] + bend, cycles)
        out[a - n0 : b - n0] += (note[_VELOCITY] / 127.0 * _envelope(times, note[_ONSET], note[_RELEASE]) *
                                 wave).astype(np.float32)
    if plain:
        _add_plain(out, n0, n1, notes[plain], end[plain], tables)
    return out


def _span(onset: float, end: float, n0: int, n1: int) -> tuple[int, int]:
    """A note's own samples within [n0, n1): from its onset (rounded up) to the end of its tail."""
    a = max(n0, int(np.ceil(onset * SAMPLE_RATE)))
    return a, (n1 if not np.isfinite(end) else min(n1, int(np.ceil(end * SAMPLE_RATE))))


def _add_plain(out: np.ndarray, n0: int, n1: int, notes: np.ndarray, end: np.ndarray, tables: np.ndarray) -> None:
    """Notes without bends, all in one numpy pass over the concatenation of their own samples."""
    spans = np.array([_span(note[_ONSET], e, n0, n1) for note, e in zip(notes, end)], np.int64).reshape(-1, 2)
    lengths = np.maximum(spans[:, 1] - spans[:, 0], 0)
    if not lengths.sum():
        return
    which = np.repeat(np.arange(len(notes)), lengths)
    offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    sample = spans[which, 0] + offsets
    times = sample / SAMPLE_RATE
    onset, note = notes[which, _ONSET], notes[which]
    cycles = 440.0 * 2.0 ** ((note[:, _PITCH] - 69) / 12.0) * (times - onset)
    wave = _read(tables, note[:, _PITCH], cycles)
    value = note[:, _VELOCITY] / 127.0 * _envelope(times, onset, note[:, _RELEASE]) * wave
    out += np.bincount(sample - n0, weights=value, minlength=len(out))[: len(out)].astype(np.float32)


def _steal_voices(notes: np.ndarray, end: np.ndarray, active: np.ndarray, t0: float, t1: float):
    """Voice stealing, as a synth with `VOICES` voices does: a note's excitation ends when the `VOICES`-th note after
    it starts. A property of the notes alone (not of the range asked for), so blocks, frames and rollbacks agree; it
    bounds the work of a flood (thousands of notes inside one tail) to `VOICES` notes per sample."""
    first = notes[active, _ONSET].min()
    later = np.sort(notes[(notes[:, _ONSET] >= first) & (notes[:, _ONSET] < t1), _ONSET])
    rank = np.searchsorted(later, notes[active, _ONSET], side="right")  # notes starting at or before each
    stolen = rank - 1 + VOICES < len(later)
    end = end.copy()
    end[active[stolen]] = np.minimum(end[active[stolen]], later[np.minimum(rank[stolen] - 1 + VOICES,
                                                                           len(later) - 1)])
    return end, active[end[active] > t0]


def _add_drum(out: np.ndarray, n0: int, note: np.ndarray, amplitude: float) -> None:
    bank = noise_bank()
    start = int(round(note[_ONSET] * SAMPLE_RATE))
    burst = bank[(start * 31 + int(note[_PITCH])) % NOISE_BANK]
    a, b = max(start, n0), min(start + len(burst), n0 + len(out))
    if a < b:
        out[a - n0 : b - n0] += amplitude * burst[a - start : b - start]
