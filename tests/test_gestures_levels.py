"""The levels pieces (training/gestures.py, issue 20 item 3): lone notes and velocity runs over every layer and
register, with CC7 / CC11 set while nothing sounds, on every family and on drums."""

from __future__ import annotations

import collections

import mido

from live_synth.training.gestures import VELOCITY_LAYERS, generate_levels, midi_bytes, program_range


def _events(midi: mido.MidiFile):
    """(seconds, channel, message) in time order, note-offs before note-ons at one time (as the file orders them)."""
    out = []
    for track in midi.tracks:
        tick = 0
        for message in track:
            tick += message.time
            if not message.is_meta:
                out.append((mido.tick2second(tick, midi.ticks_per_beat, 500000), message))
    return sorted(out, key=lambda e: e[0])


def test_levels_set_cc7_and_cc11_only_in_silence_and_cover_velocities_and_range():
    seen_values, families, drums, all_velocities = collections.defaultdict(set), set(), 0, []
    for seed in range(40):
        midi = generate_levels(seed)
        assert midi_bytes(midi) == midi_bytes(generate_levels(seed))  # a pure function of its seed
        sounding, last_off, program, velocities, pitches = set(), -10.0, None, [], []
        for t, message in _events(midi):
            if message.type == "program_change":
                program = message.program
            elif message.type == "note_on" and message.velocity > 0:
                assert not sounding, (seed, t)  # one strike at a time: every note after silence
                sounding.add(message.note)
                velocities.append(message.velocity)
                pitches.append(message.note)
            elif message.type in ("note_off", "note_on"):
                sounding.discard(message.note)
                last_off = t
            elif message.type == "control_change" and message.control in (7, 11) and t > 0:
                assert not sounding and t - last_off >= 0.5, (seed, t, message)  # set while nothing sounds
                seen_values[message.control].add(message.value)
        assert len(velocities) >= 5, seed
        all_velocities += velocities
        if program is None:
            drums += 1
        else:
            families.add(program // 8)
            low, high = program_range(program)
            assert low <= min(pitches) and max(pitches) <= high
    for layer in VELOCITY_LAYERS:  # every layer struck, each piece cycling through them
        assert sum(abs(v - layer) <= 3 for v in all_velocities) >= 20, (layer, collections.Counter(all_velocities))
    assert len(seen_values[7]) >= 8 and len(seen_values[11]) >= 8, seen_values
    assert len(families) >= 12 and drums >= 1, (families, drums)
