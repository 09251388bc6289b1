"""Seeded procedural MIDI: scales, chords, arpeggios, melodies, bass lines and drum patterns across the GM families.

`generate(seed)` is a pure function of the seed: the same seed gives the same `mido.MidiFile` (and, through
`midi_bytes`, the same bytes) on every machine. It draws from `random.Random(seed)`, whose integer and float
streams are stable across Python versions, and never from global state.

What the pieces cover, because a corpus of scores lacks it (training-notes.md): every register of each instrument
(a part's register centre is drawn uniformly inside the instrument's range), velocities 20..127 drawn uniformly
(flat, ramped, accented or per-note random dynamics), 1..8 melodic notes held at once, the sustain pedal (CC64) on
half of the parts played by a pedal-friendly instrument (about one piece in seven), tempos 60..180 bpm, 4/4 and 3/4,
pieces 10..40 s, and a drum kit on channel 10 in about a quarter of the pieces.

Programs: the Slakh class programs (the ones the published model knows, `SLAKH_CLASS_PROGRAMS`) are drawn three times
as often as the others, so that a trainer that folds programs the Slakh way loses little; the others add timbres
(vibraphone, harpsichord, accordion, pizzicato, ...) that a trainer keeping all 128 programs can learn.
"""

from __future__ import annotations

import hashlib
import io
import random
from collections.abc import Callable
from dataclasses import dataclass, field

import mido

from live_synth.midi.codec import SLAKH_CLASS_PROGRAMS

TICKS_PER_BEAT = 480
MIN_SECONDS, MAX_SECONDS = 10.0, 40.0
MIN_BPM, MAX_BPM = 60, 180
MIN_VELOCITY, MAX_VELOCITY = 20, 127
MAX_POLYPHONY = 8
DRUM_CHANNEL = 9  # channel 10 in MIDI's 1-based numbering

GM_FAMILIES = (
    "piano", "chromatic percussion", "organ", "guitar", "bass", "strings", "ensemble", "brass",
    "reed", "pipe", "synth lead", "synth pad", "synth effects", "ethnic", "percussive", "sound effects",
)  # fmt: skip


def derive_seed(*parts: object) -> int:
    """A 64-bit seed from any values, stable across processes and Python versions (unlike `hash`)."""
    digest = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def gm_family(program: int, is_drum: bool = False) -> str:
    """General MIDI family of a program ("drums" for channel-10 notes, whatever their program)."""
    return "drums" if is_drum else GM_FAMILIES[program // 8]


@dataclass(frozen=True)
class GMInstrument:
    """A General MIDI program with the pitch range it plays well in, and how it is used."""

    program: int
    low: int
    high: int
    poly: bool = True  # can play chords (False: a solo wind, voice or bowed line)
    pedal: bool = False  # the sustain pedal makes sense on it


_I = GMInstrument
INSTRUMENTS: tuple[GMInstrument, ...] = (
    _I(0, 21, 108, pedal=True), _I(1, 21, 108, pedal=True), _I(4, 28, 103, pedal=True), _I(6, 29, 89),
    _I(8, 60, 108, pedal=True), _I(11, 53, 89, pedal=True), _I(12, 45, 96), _I(13, 65, 108),
    _I(16, 36, 96), _I(19, 24, 96), _I(21, 53, 89),
    _I(24, 40, 84), _I(25, 40, 84), _I(26, 40, 86), _I(29, 40, 86),
    _I(32, 28, 55, poly=False), _I(33, 28, 60, poly=False), _I(38, 24, 60, poly=False),
    _I(40, 55, 100, poly=False), _I(41, 48, 88, poly=False), _I(42, 36, 76, poly=False),
    _I(43, 28, 55, poly=False), _I(45, 28, 96), _I(46, 24, 103, pedal=True), _I(47, 40, 57, poly=False),
    _I(48, 28, 96), _I(50, 36, 96), _I(52, 48, 79),
    _I(56, 54, 86, poly=False), _I(57, 40, 72, poly=False), _I(58, 28, 58, poly=False),
    _I(60, 41, 77, poly=False), _I(61, 40, 84),
    _I(64, 56, 87, poly=False), _I(65, 49, 81, poly=False), _I(66, 44, 76, poly=False),
    _I(67, 36, 69, poly=False), _I(68, 58, 91, poly=False), _I(69, 52, 81, poly=False),
    _I(70, 34, 75, poly=False), _I(71, 50, 91, poly=False),
    _I(72, 74, 108, poly=False), _I(73, 60, 96, poly=False), _I(75, 60, 96, poly=False),
    _I(80, 36, 96, poly=False), _I(81, 36, 96, poly=False),
    _I(88, 36, 96, pedal=True), _I(89, 36, 96, pedal=True),
)  # fmt: skip
BY_PROGRAM = {instrument.program: instrument for instrument in INSTRUMENTS}
BASS_PROGRAMS = (32, 33, 38, 43, 58, 70)  # what plays a bass line (basses, contrabass, tuba, bassoon)

SCALES = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "harmonic minor": (0, 2, 3, 5, 7, 8, 11),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
    "major pentatonic": (0, 2, 4, 7, 9),
    "minor pentatonic": (0, 3, 5, 7, 10),
    "blues": (0, 3, 5, 6, 7, 10),
    "whole tone": (0, 2, 4, 6, 8, 10),
    "chromatic": tuple(range(12)),
}
# Chord roots per bar, as scale degrees (I-V-vi-IV, ii-V-I, ...); "random" pieces draw their own.
PROGRESSIONS = ((0, 4, 5, 3), (0, 3, 4, 0), (0, 5, 3, 4), (1, 4, 0, 0), (0, 0, 3, 4), (5, 3, 0, 4), (0, 6, 5, 4))
STYLES = ("scale", "chords", "arpeggio", "melody", "drums", "band")

# GM drum notes by role.
KICK, SNARE, CLOSED_HAT, OPEN_HAT, PEDAL_HAT, RIDE, CRASH, CLAP, RIM = 36, 38, 42, 46, 44, 51, 49, 39, 37
TOMS = (50, 48, 47, 45, 43, 41)
LATIN = (60, 61, 62, 63, 64, 54, 56, 70, 75, 76, 77)  # bongos, congas, tambourine, cowbell, maracas, claves, blocks


@dataclass
class Part:
    """One track of a piece: its notes in beats, its program (None for drums) and sustain-pedal events."""

    program: int | None
    notes: list[tuple[float, float, int, int]] = field(default_factory=list)  # (start, length, pitch, velocity)
    pedal: list[tuple[float, int]] = field(default_factory=list)  # (beat, CC64 value)

    @property
    def is_drum(self) -> bool:
        return self.program is None


class _Piece:
    """The shared frame of one piece: tempo, metre, length, key and chord progression, and its random stream."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.bpm = rng.randint(MIN_BPM, MAX_BPM)
        self.bar_beats = rng.choice((4, 4, 4, 3))
        bar_s = self.bar_beats * 60.0 / self.bpm
        low_bars, high_bars = -int(-MIN_SECONDS // bar_s), int(MAX_SECONDS // bar_s)  # ceil, floor
        self.bars = rng.randint(max(1, low_bars), max(1, high_bars))
        self.beats = self.bars * self.bar_beats
        tonic, mode = rng.randrange(12), rng.choice(tuple(SCALES))
        self.scale = [p for p in range(128) if (p - tonic) % 12 in SCALES[mode]]
        self.period = len(SCALES[mode])  # scale steps per octave
        self.tonic_index = self.scale.index(60 + (tonic if tonic < 6 else tonic - 12))
        self.chords = self._progression()

    def _progression(self) -> list[int]:
        rng = self.rng
        pattern = rng.choice(PROGRESSIONS) if rng.random() < 0.7 else [rng.randrange(7) for _ in range(4)]
        per_bar = rng.choice((1, 1, 2))  # chord changes per bar
        return [pattern[i % len(pattern)] for i in range(self.bars * per_bar)]

    def chord_root(self, beat: float) -> int:
        """Scale index (into self.scale) of the root of the chord sounding at `beat`, near middle C."""
        slot = min(int(beat / self.beats * len(self.chords)), len(self.chords) - 1)
        return self.tonic_index + self.chords[slot]

    def chord_changes(self) -> list[float]:
        """Beats where the chord changes (first beat included)."""
        step = self.beats / len(self.chords)
        return [i * step for i in range(len(self.chords))]

    def index_near(self, pitch: int) -> int:
        """Index into self.scale of the scale pitch nearest to `pitch` (the lower one on a tie)."""
        return min(range(len(self.scale)), key=lambda i: (abs(self.scale[i] - pitch), i))

    def voicing(self, beat: float, count: int, bottom: int, stacked: bool = False) -> list[int]:
        """`count` tones of the chord at `beat` from its first root at or above `bottom`: the triad repeated in
        octaves, or (stacked) thirds piled up (7ths, 9ths, ...). Tones beyond the MIDI range are dropped."""
        root, m = self.chord_root(beat), self.period
        first = root + m * -((root - self.index_near(bottom)) // m)  # ceil division: at or above bottom
        if stacked:
            indices = [first + 2 * j for j in range(count)]
        else:
            indices = [first + m * (j // 3) + (0, 2, 4)[j % 3] for j in range(count)]
        return [self.scale[i] for i in indices if 0 <= i < len(self.scale)]

    def chord_pitches(self, beat: float) -> list[int]:
        """Every MIDI pitch of the triad at `beat` (for melodies to lean on)."""
        return sorted(set(self.voicing(beat, 3 * 12, 0)))

    def register(self, instrument: GMInstrument, span: int = 12) -> int:
        """A register centre drawn uniformly where a `span`-semitone figure fits the instrument's range."""
        half = min(span // 2, (instrument.high - instrument.low) // 2)
        return self.rng.randint(instrument.low + half, instrument.high - half)

    def step_beats(self, fastest_s: float = 0.07) -> float:
        """A note grid (16ths, triplets, 8ths, quarters, halves) no faster than `fastest_s` seconds per note."""
        options = [s for s in (0.25, 1 / 3, 0.5, 0.5, 1.0, 1.0, 2.0) if s * 60.0 / self.bpm >= fastest_s]
        return self.rng.choice(options)

    def dynamics(self) -> Callable[[float, bool], int]:
        """A velocity curve for one part: velocity(beat, accented) in 20..127, drawn uniformly overall."""
        rng, beats = self.rng, self.beats
        kind = rng.choice(("flat", "ramp", "accent", "random"))
        a, b = rng.randint(MIN_VELOCITY, MAX_VELOCITY), rng.randint(MIN_VELOCITY, MAX_VELOCITY)

        def velocity(beat: float, accented: bool) -> int:
            if kind == "random":
                return rng.randint(MIN_VELOCITY, MAX_VELOCITY)
            base = a + (b - a) * beat / beats if kind == "ramp" else a
            if kind == "accent" and accented:
                base += 18
            return max(MIN_VELOCITY, min(MAX_VELOCITY, round(base) + rng.randint(-4, 4)))

        return velocity

    def pick(self, poly: bool | None = None, programs: tuple[int, ...] | None = None) -> GMInstrument:
        """A random instrument; Slakh class programs weigh three times as much as the others."""
        pool = [i for i in INSTRUMENTS
                if (poly is None or i.poly == poly) and (programs is None or i.program in programs)]  # fmt: skip
        weights = [3 if i.program in SLAKH_CLASS_PROGRAMS else 1 for i in pool]
        return self.rng.choices(pool, weights)[0]


def _fit(pitch: int, instrument: GMInstrument) -> int | None:
    """Fold a pitch by octaves into the instrument's range (None if the range is narrower than that allows)."""
    while pitch < instrument.low:
        pitch += 12
    while pitch > instrument.high:
        pitch -= 12
    return pitch if pitch >= instrument.low else None


def _add(part: Part, instrument: GMInstrument, start: float, length: float, pitches: list[int], velocity: int) -> None:
    for pitch in dict.fromkeys(p for p in (_fit(p, instrument) for p in pitches) if p is not None):
        part.notes.append((start, length, pitch, velocity))


# --- the figures -----------------------------------------------------------------------------------------------------


def _scale_part(piece: _Piece, instrument: GMInstrument, voices: int) -> Part:
    """Runs up and down the scale across the register, in `voices` parallel voices (thirds, fifths or octaves)."""
    rng, part, velocity = piece.rng, Part(instrument.program), piece.dynamics()
    step, articulation = piece.step_beats(), rng.uniform(0.4, 0.97)
    interval = rng.choice((2, 4, piece.period)) if voices <= 3 else rng.choice((2, 2, 3))
    span = rng.randint(7, 30)
    low = piece.index_near(piece.register(instrument, span) - span // 2)
    high = piece.index_near(piece.scale[low] + span)
    index, direction, beat = low, 1, 0.0
    while beat < piece.beats - 1e-9:
        pitches = [piece.scale[min(index + interval * k, len(piece.scale) - 1)] for k in range(voices)]
        _add(part, instrument, beat, step * articulation, pitches, velocity(beat, beat % piece.bar_beats == 0))
        if not low <= index + direction <= high:
            direction = -direction
        index += direction
        beat += step
    return part


def _chord_part(piece: _Piece, instrument: GMInstrument, voices: int) -> Part:
    """Block chords of `voices` notes on a rhythm pattern repeated every bar."""
    rng, part, velocity = piece.rng, Part(instrument.program), piece.dynamics()
    n = piece.bar_beats
    patterns = ([(0.0, n)], [(0.0, n / 2), (n / 2, n / 2)], [(float(b), 1.0) for b in range(n)],
                [(0.0, 1.5), (1.5, n - 1.5)], [(b + 0.5, 0.5) for b in range(n)])  # fmt: skip
    pattern, articulation = rng.choice(patterns), rng.uniform(0.5, 0.97)
    stacked = voices > 3 and rng.random() < 0.3
    span = 4 * voices + 4
    bottom = piece.register(instrument, span) - span // 2
    for bar in range(piece.bars):
        for onset, length in pattern:
            beat = bar * n + onset
            pitches = piece.voicing(beat, voices, bottom, stacked)
            _add(part, instrument, beat, length * articulation, pitches, velocity(beat, onset == 0))
    return part


def _arpeggio_part(piece: _Piece, instrument: GMInstrument, hold: int) -> Part:
    """Broken chords over one to three octaves; each note rings for `hold` grid steps (so `hold` notes overlap)."""
    rng, part, velocity = piece.rng, Part(instrument.program), piece.dynamics()
    step, octaves = piece.step_beats(), rng.randint(1, 3)
    shape = rng.choice(("up", "down", "updown", "random"))
    bottom = piece.register(instrument, 12 * octaves) - 6 * octaves
    beat, k = 0.0, 0
    while beat < piece.beats - 1e-9:
        tones = piece.voicing(beat, 3 * octaves + 1, bottom)
        cycle = tones + tones[-2:0:-1] if shape == "updown" else tones
        if shape == "random":
            pitch = rng.choice(tones)
        else:
            pitch = cycle[-1 - k % len(cycle)] if shape == "down" else cycle[k % len(cycle)]
        length = min(step * hold * 0.97, piece.beats - beat)
        _add(part, instrument, beat, length, [pitch], velocity(beat, beat % piece.bar_beats == 0))
        beat, k = beat + step, k + 1
    return part


def _melody_part(piece: _Piece, instrument: GMInstrument) -> Part:
    """A random walk on the scale with mixed note values and rests, drawn to chord tones on the beat."""
    rng, part, velocity = piece.rng, Part(instrument.program), piece.dynamics()
    values = [v for v in (0.25, 0.5, 0.5, 1.0, 1.0, 1.5, 2.0) if v * 60.0 / piece.bpm >= 0.08]
    center = piece.register(instrument, span=18)
    low, high = piece.index_near(center - 9), piece.index_near(center + 9)
    index, beat, articulation = piece.index_near(center), 0.0, rng.uniform(0.6, 0.97)
    while beat < piece.beats - 1e-9:
        length = min(rng.choice(values), piece.beats - beat)
        if beat % 1 == 0 and rng.random() < 0.5:
            index = piece.index_near(min(piece.chord_pitches(beat), key=lambda p: abs(p - piece.scale[index])))
        if rng.random() > 0.1:  # otherwise a rest
            _add(part, instrument, beat, length * articulation, [piece.scale[index]], velocity(beat, beat % 1 == 0))
        index = max(low, min(high, index + rng.choice((-3, -2, -1, -1, 0, 1, 1, 2, 3))))
        beat += length
    return part


def _bass_part(piece: _Piece, instrument: GMInstrument) -> Part:
    """Chord roots (walking to fifths and neighbours in some pieces) on a per-bar rhythm."""
    rng, part, velocity = piece.rng, Part(instrument.program), piece.dynamics()
    n = piece.bar_beats
    pattern = rng.choice(([0.0], [0.0, n / 2], [float(b) for b in range(n)], [0.0, 1.5, 2.0, 3.0][:n]))
    walk = rng.random() < 0.5
    bottom = piece.register(instrument, span=12) - 6
    for bar in range(piece.bars):
        for j, onset in enumerate(pattern):
            beat = bar * n + onset
            end = pattern[j + 1] if j + 1 < len(pattern) else n
            pitch = piece.voicing(beat, 1, bottom)[0] + (rng.choice((0, 7, 5, 2, -1)) if walk and j else 0)
            _add(part, instrument, beat, (end - onset) * 0.9, [pitch], velocity(beat, onset == 0))
    return part


def _drum_part(piece: _Piece) -> Part:
    """A groove on a 16th grid (rock, disco, half-time, latin), a crash every four bars, tom fills."""
    rng, part, velocity = piece.rng, Part(None), piece.dynamics()
    steps = 4 * piece.bar_beats
    groove = rng.choice(("rock", "disco", "halftime", "latin", "ride"))
    hats = [s for s in range(steps) if s % (1 if groove == "halftime" else 2) == 0]
    kicks = {"rock": [0, steps // 2] + ([10] if steps == 16 and rng.random() < 0.5 else []),
             "disco": list(range(0, steps, 4)), "halftime": [0, 10 % steps], "latin": [0, 6, 8],
             "ride": [0, steps // 2]}[groove]  # fmt: skip
    snares = [s for s in range(4, steps, 8)] if groove != "halftime" else [steps // 2]
    cymbal = {"disco": OPEN_HAT, "ride": RIDE}.get(groove, CLOSED_HAT)
    latin = rng.sample(LATIN, 3)
    for bar in range(piece.bars):
        fill = bar % 4 == 3 and rng.random() < 0.5
        for s in range(steps):
            beat = bar * piece.bar_beats + s / 4
            hits = _drum_hits(s, kicks, snares, hats, cymbal, groove, latin, steps)
            if bar % 4 == 0 and s == 0:
                hits.append(CRASH)
            if fill and s >= steps - 4:
                hits = [TOMS[(s - steps + 4) % len(TOMS)]] + ([KICK] if s % 2 == 0 else [])
            for pitch in hits:
                accent = s % 4 == 0 and pitch != cymbal
                v = velocity(beat, accent) - (15 if pitch == cymbal else 0)
                part.notes.append((beat, 0.125, pitch, max(MIN_VELOCITY, v)))
    return part


def _drum_hits(s: int, kicks, snares, hats, cymbal: int, groove: str, latin: list[int], steps: int) -> list[int]:
    hits = ([KICK] if s in kicks else []) + ([SNARE if groove != "latin" else RIM] if s in snares else [])
    if s in hats and groove != "latin":
        hits.append(cymbal)
    if groove == "latin" and s % 2 == 0:
        hits.append(latin[(s // 2) % 3] if s % 4 else latin[0])
    if groove == "disco" and s % 4 == 0 and steps == 16:
        hits.append(PEDAL_HAT)
    return hits


# --- pieces ----------------------------------------------------------------------------------------------------------


def _parts(piece: _Piece, style: str, voices: int) -> list[Part]:
    """The parts of one piece; melodic parts hold at most `voices` notes at once in total."""
    rng = piece.rng
    if style == "scale":
        if 1 < voices <= 4 and rng.random() < 0.4:  # a section: the same run on several solo instruments
            base, interval = _scale_part(piece, piece.pick(poly=False), 1), rng.choice((2, 4))
            return [base] + [_shifted(base, interval * k, piece) for k in range(1, voices)]
        return [_scale_part(piece, piece.pick(poly=voices > 1 or None), voices)]
    if style == "chords":
        return [_chord_part(piece, piece.pick(poly=voices > 1 or None), voices)]
    if style == "arpeggio":
        return [_arpeggio_part(piece, piece.pick(poly=voices > 1 or None), voices)]
    if style == "melody":
        parts = [_melody_part(piece, piece.pick(poly=False if rng.random() < 0.6 else None))]
        if voices > 1:
            parts.append(_chord_part(piece, piece.pick(poly=True), voices - 1))
        return parts
    if style == "drums":
        parts = [_drum_part(piece)]
        if voices > 1 or rng.random() < 0.5:
            parts.append(_bass_part(piece, piece.pick(programs=BASS_PROGRAMS)))
        if voices > 2:
            parts.append(_arpeggio_part(piece, piece.pick(poly=True), voices - 1) if rng.random() < 0.5
                         else _chord_part(piece, piece.pick(poly=True), voices - 1))  # fmt: skip
        return parts
    parts = [_drum_part(piece), _melody_part(piece, piece.pick(poly=False if rng.random() < 0.6 else None))]
    if voices > 1:
        parts.append(_bass_part(piece, piece.pick(programs=BASS_PROGRAMS)))
    if voices > 2:
        parts.append(_chord_part(piece, piece.pick(poly=True), voices - 2))
    return parts


def _shifted(part: Part, steps: int, piece: _Piece) -> Part:
    """The same line `steps` scale steps higher, on another solo instrument (a section playing in parallel)."""
    other = piece.pick(poly=False)
    shifted = Part(other.program)
    for start, length, pitch, velocity in part.notes:
        index = min(piece.index_near(pitch) + steps, len(piece.scale) - 1)
        _add(shifted, other, start, length, [piece.scale[index]], velocity)
    return shifted


def _add_pedal(piece: _Piece, part: Part) -> None:
    """Pedal down just after each chord change and up just before the next; or held for whole phrases."""
    changes = piece.chord_changes()
    if piece.rng.random() < 0.7:
        for start, end in zip(changes, changes[1:] + [piece.beats]):
            part.pedal += [(start + 0.125, 127), (max(start + 0.25, end - 0.0625), 0)]
    else:
        phrase = 4 * piece.bar_beats
        for start in range(0, piece.beats, phrase):
            part.pedal += [(start + 0.0625, piece.rng.randint(64, 127)), (min(start + phrase, piece.beats) - 0.5, 0)]


def _no_overlaps(part: Part) -> None:
    """A note struck again before its previous instance ends: end the previous one there (MIDI cannot overlap them)."""
    by_pitch: dict[int, list[int]] = {}
    notes = sorted(part.notes)
    for i, (_, _, pitch, _) in enumerate(notes):
        by_pitch.setdefault(pitch, []).append(i)
    for indices in by_pitch.values():
        for i, j in zip(indices, indices[1:]):
            start, length, pitch, velocity = notes[i]
            notes[i] = (start, min(length, notes[j][0] - start), pitch, velocity)
    part.notes = [n for n in notes if n[1] > 0]


def compose(seed: int) -> tuple[list[Part], dict]:
    """The parts of piece `seed` and a description (style, tempo, polyphony, ...): what `generate` writes."""
    rng = random.Random(seed)
    piece = _Piece(rng)
    style = rng.choice(STYLES)
    voices = rng.randint(1, MAX_POLYPHONY)
    parts = _parts(piece, style, voices)
    for part in parts:
        _no_overlaps(part)
        pedal_ok = part.program is not None and BY_PROGRAM[part.program].pedal
        if pedal_ok and rng.random() < 0.5:
            _add_pedal(piece, part)
    info = {"style": style, "voices": voices, "bpm": piece.bpm, "bars": piece.bars, "bar_beats": piece.bar_beats,
            "seconds": piece.beats * 60.0 / piece.bpm}  # fmt: skip
    return parts, info


def generate(seed: int) -> mido.MidiFile:
    """The procedural piece of `seed` as a type-1 MIDI file: a tempo track, then one track per part."""
    parts, info = compose(seed)
    midi = mido.MidiFile(type=1, ticks_per_beat=TICKS_PER_BEAT)
    end = round(info["bars"] * info["bar_beats"] * TICKS_PER_BEAT)
    label = f"live-synth procedural seed={seed} style={info['style']} voices={info['voices']}"
    conductor = [(0, mido.MetaMessage("track_name", name=label)),
                 (0, mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(info["bpm"]))),
                 (0, mido.MetaMessage("time_signature", numerator=info["bar_beats"], denominator=4))]  # fmt: skip
    midi.tracks.append(_track(conductor, end))
    melodic_channels = iter(c for c in range(16) if c != DRUM_CHANNEL)
    for part in parts:
        channel = DRUM_CHANNEL if part.is_drum else next(melodic_channels)
        midi.tracks.append(_track(_part_events(part, channel), end))
    return midi


def _part_events(part: Part, channel: int) -> list[tuple[int, mido.Message]]:
    events = [(0, mido.Message("program_change", channel=channel, program=part.program or 0))]
    for start, length, pitch, velocity in part.notes:
        on, off = _tick(start), max(_tick(start + length), _tick(start) + 1)
        events.append((on, mido.Message("note_on", channel=channel, note=pitch, velocity=velocity)))
        events.append((off, mido.Message("note_off", channel=channel, note=pitch, velocity=0)))
    for beat, value in part.pedal:
        events.append((_tick(beat), mido.Message("control_change", channel=channel, control=64, value=value)))
    return events


def _tick(beat: float) -> int:
    return round(beat * TICKS_PER_BEAT)


_ORDER = {"track_name": 0, "set_tempo": 1, "time_signature": 2, "program_change": 3, "note_off": 4,
          "control_change": 5, "note_on": 6}  # fmt: skip


def _track(events: list[tuple[int, mido.Message | mido.MetaMessage]], end: int) -> mido.MidiTrack:
    """Absolute-tick events -> a track; at one tick: meta, program, note-offs, pedal, note-ons (re-strikes work)."""
    events = sorted(events, key=lambda e: (e[0], _ORDER[e[1].type], getattr(e[1], "note", 0)))
    track, now = mido.MidiTrack(), 0
    for tick, message in events:
        track.append(message.copy(time=tick - now))
        now = tick
    track.append(mido.MetaMessage("end_of_track", time=max(0, end - now)))
    return track


def midi_bytes(midi: mido.MidiFile) -> bytes:
    """The bytes of a Standard MIDI File (deterministic: same MidiFile, same bytes)."""
    buffer = io.BytesIO()
    midi.save(file=buffer)
    return buffer.getvalue()
