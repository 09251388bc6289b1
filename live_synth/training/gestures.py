"""Seeded MIDI of what a player's hands produce: notes after silence, and expression (bends, mod wheel, volume).

The procedural pieces (`procedural.py`) and the corpus are dense music: only 0.63 % of their onsets start 0.4 s or
more after silence (causal-model.md), so a model trained on them has rarely seen a lone note and plays one at a
level its sampling noise decides. Two more kinds of piece fill that gap; both are pure functions of their seed
(`random.Random(seed)`, no global state), like `procedural.generate`.

- `generate_sparse(seed)`: gestures separated by rests of 0.3-3 s: a single note, a small chord, a short phrase, a
  repeated note, a drum hit or fill. Every General MIDI family (programs drawn uniformly per family, so the four
  families the procedural table lacks are here too) and drums; velocities 1-127 uniform; registers uniform over the
  instrument's range; note lengths 50 ms - 3 s; the sustain pedal on some gestures.
- `generate_expression(seed)`: held notes, lines and chords moved by the controllers a keyboard and a DAW send:
  pitch bend (slides, hand vibrato, dives; bend range set by RPN 0 to 1, 2, 7 or 12 semitones, or left at the
  General MIDI default of 2), modulation wheel (CC1) sweeps, volume (CC7) and expression (CC11) steps and ramps.
  Controllers move at 100 events/s while they move, as a hardware wheel does.
- `generate_levels(seed)`: one instrument (one in seventeen a drum kit) played as lone notes and short velocity
  runs (one pitch struck at rising or falling velocities), each after silence, over the instrument's whole range
  and the velocities 1-127 in layers, with channel volume (CC7) and expression (CC11) set while nothing sounds, at
  many values, before the notes that follow: what a DAW's track volume does, and the level a velocity gives alone.
  Issue 20 measured the model's velocity curve 8 dB too flat and a CC7 set before a note barely heard: the dense
  pieces hold few lone notes, and the expression pieces move CC7/CC11 under held notes only.

All reset the controllers of every channel they use at time 0 (bend centre, CC1 0, CC7 100, CC11 127: the
General MIDI power-on values), so a renderer and our features agree on the state before the first event.
"""

from __future__ import annotations

import math
import random

import mido

from live_synth.training.procedural import BY_PROGRAM, DRUM_CHANNEL, GM_FAMILIES, TICKS_PER_BEAT, midi_bytes

__all__ = ["generate_sparse", "generate_expression", "generate_levels", "midi_bytes", "program_range"]

BPM = 120  # one beat = 0.5 s; all times below are in seconds and converted at this tempo
CONTROL_RATE = 100.0  # controller events per second while a controller moves
MIN_SECONDS, MAX_SECONDS = 15.0, 40.0
DRUM_NOTES = tuple(range(35, 82))  # the General MIDI percussion key map


def program_range(program: int) -> tuple[int, int]:
    """The pitch range a program is played in: the procedural table's where it has one, else by family."""
    if program in BY_PROGRAM:
        instrument = BY_PROGRAM[program]
        return instrument.low, instrument.high
    family = program // 8
    if family in (4,):  # bass
        return 28, 60
    if family in (12, 15):  # synth effects, sound effects: anywhere in the middle
        return 36, 96
    return 36, 96


def _seconds_to_tick(t: float) -> int:
    return round(t * BPM / 60.0 * TICKS_PER_BEAT)


class _Writer:
    """Absolute-time MIDI events per channel -> a type-1 file (one track per channel, tempo track first)."""

    def __init__(self) -> None:
        self.events: dict[int, list[tuple[float, int, mido.Message]]] = {}

    def add(self, channel: int, t: float, message: mido.Message, order: int) -> None:
        self.events.setdefault(channel, []).append((t, order, message.copy(channel=channel)))

    def note(self, channel: int, start: float, length: float, pitch: int, velocity: int) -> None:
        pitch, velocity = max(0, min(127, pitch)), max(1, min(127, velocity))
        self.add(channel, start, mido.Message("note_on", note=pitch, velocity=velocity), 6)
        self.add(channel, start + max(length, 0.01), mido.Message("note_off", note=pitch, velocity=0), 4)

    def control(self, channel: int, t: float, number: int, value: int) -> None:
        self.add(channel, t, mido.Message("control_change", control=number, value=max(0, min(127, value))), 5)

    def bend(self, channel: int, t: float, semitones: float, bend_range: float) -> None:
        value = round(max(-1.0, min(1.0, semitones / bend_range)) * 8191)
        self.add(channel, t, mido.Message("pitchwheel", pitch=max(-8192, min(8191, value))), 5)

    def program(self, channel: int, program: int) -> None:
        self.add(channel, 0.0, mido.Message("program_change", program=program), 1)

    def reset(self, channel: int, bend_range: int | None = None) -> None:
        """General MIDI power-on controller values at time 0, and the bend range through RPN 0 when given."""
        for number, value in ((1, 0), (7, 100), (11, 127)):
            self.add(channel, 0.0, mido.Message("control_change", control=number, value=value), 2)
        self.add(channel, 0.0, mido.Message("pitchwheel", pitch=0), 2)
        if bend_range is not None:
            for number, value in ((101, 0), (100, 0), (6, bend_range), (38, 0), (101, 127), (100, 127)):
                self.add(channel, 0.0, mido.Message("control_change", control=number, value=value), 3)

    def midi(self, end_s: float, label: str) -> mido.MidiFile:
        midi = mido.MidiFile(type=1, ticks_per_beat=TICKS_PER_BEAT)
        conductor = mido.MidiTrack([mido.MetaMessage("track_name", name=label),
                                    mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(BPM))])
        conductor.append(mido.MetaMessage("end_of_track", time=_seconds_to_tick(end_s)))
        midi.tracks.append(conductor)
        end = _seconds_to_tick(end_s)
        for channel in sorted(self.events):
            # At one tick: program, resets, RPN, note-offs, controllers, note-ons (a re-strike after its note-off).
            events = sorted(self.events[channel], key=lambda e: (_seconds_to_tick(e[0]), e[1]))
            track, now = mido.MidiTrack(), 0
            for t, _, message in events:
                tick = _seconds_to_tick(t)
                track.append(message.copy(time=tick - now))
                now = tick
            track.append(mido.MetaMessage("end_of_track", time=max(0, end - now)))
            midi.tracks.append(track)
        return midi


def _draw_program(rng: random.Random) -> int:
    """A program drawn uniformly over the 16 families, then uniformly inside the family."""
    return rng.randrange(len(GM_FAMILIES)) * 8 + rng.randrange(8)


def _velocity(rng: random.Random) -> int:
    return rng.randint(1, 127)


def _length(rng: random.Random) -> float:
    """A note length, log-uniform over 50 ms .. 3 s."""
    return math.exp(rng.uniform(math.log(0.05), math.log(3.0)))


def _sparse_gesture(rng: random.Random, out: _Writer, channel: int, program: int, t: float) -> float:
    """One gesture on a melodic channel starting at t; returns when it ends."""
    low, high = program_range(program)
    kind = rng.choice(("note", "note", "note", "chord", "phrase", "repeat"))
    velocity = _velocity(rng)
    if kind == "note":
        length = _length(rng)
        out.note(channel, t, length, rng.randint(low, high), velocity)
        return t + length
    if kind == "chord":
        root, length = rng.randint(low, max(low, high - 12)), _length(rng)
        intervals = rng.choice(((0, 4, 7), (0, 3, 7), (0, 7), (0, 5, 9), (0, 4, 7, 11), (0, 12)))
        for interval in intervals:
            if root + interval <= high:
                out.note(channel, t + rng.uniform(0, 0.03), length, root + interval, max(1, velocity + rng.randint(-8, 8)))
        return t + length
    count, step = rng.randint(2, 6), rng.uniform(0.1, 0.6)
    legato = rng.uniform(0.3, 1.0)
    pitch = rng.randint(low, high)
    for k in range(count):
        if kind == "phrase" and k:
            pitch = max(low, min(high, pitch + rng.choice((-5, -3, -2, -1, 1, 2, 3, 4, 7))))
        v = velocity if rng.random() < 0.5 else _velocity(rng)
        out.note(channel, t + k * step, step * legato, pitch, v)
    return t + count * step


def _drum_gesture(rng: random.Random, out: _Writer, t: float) -> float:
    kind = rng.choice(("hit", "hit", "pair", "fill"))
    if kind == "hit":
        out.note(DRUM_CHANNEL, t, 0.1, rng.choice(DRUM_NOTES), _velocity(rng))
        return t + 0.1
    if kind == "pair":  # e.g. kick + crash together
        for pitch in rng.sample(DRUM_NOTES, 2):
            out.note(DRUM_CHANNEL, t, 0.1, pitch, _velocity(rng))
        return t + 0.1
    count, step = rng.randint(3, 8), rng.choice((0.08, 0.125, 0.167, 0.25))
    notes, velocity = rng.sample(DRUM_NOTES, 3), _velocity(rng)
    for k in range(count):
        out.note(DRUM_CHANNEL, t + k * step, 0.1, rng.choice(notes), max(1, min(127, velocity + rng.randint(-15, 15))))
    return t + count * step


def generate_sparse(seed: int) -> mido.MidiFile:
    """Gestures after silence on one to three instruments (one in five a drum kit); see the module docstring."""
    rng = random.Random(seed)
    out = _Writer()
    seconds = rng.uniform(MIN_SECONDS, MAX_SECONDS)
    voices = rng.randint(1, 3)
    programs: dict[int, int | None] = {}  # channel -> program (None: the drum kit)
    for channel in range(voices):
        if rng.random() < 0.2 and DRUM_CHANNEL not in programs:
            programs[DRUM_CHANNEL] = None
            continue
        programs[channel] = _draw_program(rng)
        out.program(channel, programs[channel])
        out.reset(channel)
    channels = sorted(programs)
    t = rng.uniform(0.2, 1.5)
    while t < seconds - 0.5:
        channel = rng.choice(channels)
        pedal = channel != DRUM_CHANNEL and rng.random() < 0.15
        if pedal:
            out.control(channel, t - 0.05, 64, 127)
        if channel == DRUM_CHANNEL:
            end = _drum_gesture(rng, out, t)
        else:
            end = _sparse_gesture(rng, out, channel, programs[channel], t)
        if pedal:
            end += rng.uniform(0.3, 2.0)
            out.control(channel, end, 64, 0)
        t = end + rng.uniform(0.3, 3.0)  # a rest: the next gesture starts after silence (or a release tail)
    return out.midi(max(t, seconds), f"live-synth sparse seed={seed}")


# --- expression ------------------------------------------------------------------------------------------------------


def _ramp(out: _Writer, channel: int, t0: float, t1: float, fn, emit) -> None:
    """Controller values fn(u), u in [0, 1], at CONTROL_RATE between t0 and t1 (both ends included)."""
    n = max(1, int((t1 - t0) * CONTROL_RATE))
    for k in range(n + 1):
        u = k / n
        emit(channel, t0 + u * (t1 - t0), fn(u))


def _expression_gesture(rng: random.Random, out: _Writer, channel: int, program: int, bend_range: float,
                        t: float) -> float:
    low, high = program_range(program)
    length = rng.uniform(0.8, 3.5)
    pitch = rng.randint(low + 2, max(low + 2, high - 2))
    velocity = rng.randint(30, 127)
    kind = rng.choice(("slide", "vibrato", "dive", "mod", "volume", "expression", "line"))
    bend = lambda ch, tt, st: out.bend(ch, tt, st, bend_range)  # noqa: E731
    if kind == "line":  # a few notes, each moved a little: the bend or a controller between them
        count, step = rng.randint(2, 5), rng.uniform(0.2, 0.6)
        for k in range(count):
            out.note(channel, t + k * step, step * 0.9, max(low, min(high, pitch + rng.randint(-4, 4))), velocity)
        target = rng.uniform(-bend_range, bend_range)
        _ramp(out, channel, t, t + count * step, lambda u: target * u, bend)
        out.bend(channel, t + count * step + 0.3, 0.0, bend_range)
        return t + count * step + 0.3
    chord = rng.random() < 0.25 and kind in ("mod", "volume", "expression")
    for p in ([pitch, pitch + 4, pitch + 7] if chord else [pitch]):
        out.note(channel, t, length, min(p, 127), velocity)
    a, b = t + rng.uniform(0.1, 0.4), t + length - rng.uniform(0.0, 0.3)
    if kind == "slide":  # to a target and back, or to a target and held
        target = rng.choice((-1, 1)) * rng.uniform(0.5, bend_range)
        _ramp(out, channel, a, a + rng.uniform(0.05, 0.6), lambda u: target * u, bend)
    elif kind == "vibrato":
        rate, depth = rng.uniform(4.0, 7.0), rng.uniform(0.1, min(1.0, bend_range))
        _ramp(out, channel, a, b, lambda u: depth * math.sin(2 * math.pi * rate * u * (b - a)), bend)
    elif kind == "dive":
        target = -rng.uniform(1.0, bend_range)
        _ramp(out, channel, a, b, lambda u: target * u * u, bend)
    elif kind == "mod":
        top = rng.randint(40, 127)
        _ramp(out, channel, a, b, lambda u: round(top * min(1.0, 2 * u)), lambda ch, tt, v: out.control(ch, tt, 1, v))
        out.control(channel, b + 0.01, 1, 0)
    else:  # volume (CC7) or expression (CC11): a step or a ramp, then back to the power-on value
        number, home = (7, 100) if kind == "volume" else (11, 127)
        lo = rng.randint(20, 127)
        if rng.random() < 0.5:
            out.control(channel, a, number, lo)
        else:
            start = rng.randint(20, 127)
            _ramp(out, channel, a, b, lambda u: round(start + (lo - start) * u),
                  lambda ch, tt, v: out.control(ch, tt, number, v))
        out.control(channel, t + length + rng.uniform(0.5, 1.0), number, home)
    out.bend(channel, t + length + 0.4, 0.0, bend_range)
    return t + length + 0.4


def generate_expression(seed: int) -> mido.MidiFile:
    """Held notes, lines and chords moved by pitch bend, CC1, CC7 and CC11 on one or two instruments."""
    rng = random.Random(seed)
    out = _Writer()
    seconds = rng.uniform(MIN_SECONDS, MAX_SECONDS)
    channels: dict[int, tuple[int, float]] = {}
    for channel in range(rng.randint(1, 2)):
        program = _draw_program(rng) if rng.random() < 0.5 else rng.choice(sorted(BY_PROGRAM))
        bend_range = rng.choice((None, None, 1, 2, 7, 12))
        out.program(channel, program)
        out.reset(channel, bend_range)
        channels[channel] = (program, float(bend_range or 2))
    t = rng.uniform(0.2, 1.0)
    while t < seconds - 1.0:
        channel = rng.choice(sorted(channels))
        program, bend_range = channels[channel]
        t = _expression_gesture(rng, out, channel, program, bend_range, t) + rng.uniform(0.1, 2.0)
    return out.midi(max(t, seconds) + 1.0, f"live-synth expression seed={seed}")


# --- levels ----------------------------------------------------------------------------------------------------------

VELOCITY_LAYERS = (8, 20, 32, 45, 58, 70, 83, 95, 108, 120, 127)  # the layers a piece cycles through (shuffled)
LEVEL_VALUES = (20, 32, 45, 58, 64, 70, 83, 95, 100, 108, 115, 127)  # CC7 / CC11 values set in silence


def _levels_cell(rng: random.Random, out: _Writer, channel: int, low: int, high: int, t: float, velocities: list[int],
                 drums: bool) -> float:
    """A lone note, or one pitch struck at rising or falling velocities, from t; returns when the sound has gone."""
    pitch = rng.choice(DRUM_NOTES) if drums else rng.randint(low, high)
    length = 0.1 if drums else rng.uniform(0.25, 1.2)
    count = 1 if rng.random() < 0.5 else rng.randint(3, 5)
    layer = [velocities.pop() if velocities else rng.randint(1, 127) for _ in range(count)]
    if count > 1:
        layer.sort(reverse=rng.random() < 0.5)
    step = length + (0.15 if drums else rng.uniform(0.5, 1.5))  # each strike's release heard before the next
    for k, velocity in enumerate(layer):
        out.note(channel, t + k * step, length, pitch, max(1, min(127, velocity + rng.randint(-3, 3))))
    return t + (count - 1) * step + length


def generate_levels(seed: int) -> mido.MidiFile:
    """Lone notes and velocity runs after silence, with CC7 / CC11 set before them; see the module docstring."""
    rng = random.Random(seed)
    out = _Writer()
    seconds = rng.uniform(MIN_SECONDS, MAX_SECONDS)
    drums = rng.randrange(len(GM_FAMILIES) + 1) == len(GM_FAMILIES)
    channel = DRUM_CHANNEL if drums else 0
    if drums:
        low, high = DRUM_NOTES[0], DRUM_NOTES[-1]
    else:
        program = _draw_program(rng)
        out.program(channel, program)
        low, high = program_range(program)
    out.reset(channel)
    velocities: list[int] = []
    volume, expression = 100, 127
    t = rng.uniform(0.3, 1.0)
    while t < seconds - 1.0:
        if not velocities:
            velocities = list(VELOCITY_LAYERS)
            rng.shuffle(velocities)
        # CC7 / CC11 while nothing sounds, 0.2 s before the next note: a third of the cells at the power-on values
        choice = rng.random()
        new = (100, 127) if choice < 0.33 else (rng.choice(LEVEL_VALUES), 127) if choice < 0.55 else \
            (100, rng.choice(LEVEL_VALUES)) if choice < 0.77 else (rng.choice(LEVEL_VALUES), rng.choice(LEVEL_VALUES))
        if new[0] != volume:
            out.control(channel, t - 0.2, 7, new[0])
        if new[1] != expression:
            out.control(channel, t - 0.2, 11, new[1])
        volume, expression = new
        end = _levels_cell(rng, out, channel, low, high, t, velocities, drums)
        t = end + rng.uniform(1.0, 2.5)  # the release tail (a cymbal's too) dies away before the next cell
    return out.midi(max(t, seconds), f"live-synth levels seed={seed}")
