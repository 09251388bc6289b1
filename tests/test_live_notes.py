"""Live note state from raw MIDI messages: what a GM synth would play."""

from __future__ import annotations

import numpy as np
import pytest

from live_synth.live.notes import NoteState
from live_synth.midi.tokenize import EventIndex


def on(ch, pitch, vel=100):
    return [0x90 | ch, pitch, vel]


def off(ch, pitch):
    return [0x80 | ch, pitch, 0]


def cc(ch, number, value):
    return [0xB0 | ch, number, value]


def notes(state, now=6.0, horizon=20.0):
    return sorted((n.pitch, n.start, n.end, n.program, n.is_drum, n.velocity)
                  for n in state.snapshot(now, horizon).notes)


def test_note_on_off_and_velocity_zero_note_off():
    s = NoteState()
    s.apply(1.0, on(0, 60, 90))
    s.apply(1.5, off(0, 60))
    s.apply(2.0, on(0, 62, 70))
    s.apply(2.5, on(0, 62, 0))  # running-status style note-off
    assert notes(s) == [(60, 1.0, 1.5, 0, False, 90), (62, 2.0, 2.5, 0, False, 70)]


def test_held_notes_sound_to_the_horizon():
    s = NoteState()
    s.apply(1.0, on(0, 60))
    assert notes(s, now=3.0, horizon=4.0) == [(60, 1.0, 4.0, 0, False, 100)]


def test_sustain_pedal_holds_released_keys_until_it_goes_up():
    s = NoteState()
    s.apply(0.0, cc(0, 64, 127))
    s.apply(1.0, on(0, 60))
    s.apply(1.2, off(0, 60))
    assert notes(s, horizon=9.0) == [(60, 1.0, 9.0, 0, False, 100)]
    s.apply(3.0, cc(0, 64, 0))
    assert notes(s) == [(60, 1.0, 3.0, 0, False, 100)]


def test_restrike_under_pedal_ends_the_sustained_copy():
    s = NoteState()
    s.apply(0.0, cc(0, 64, 100))
    s.apply(1.0, on(0, 60))
    s.apply(1.1, off(0, 60))
    s.apply(2.0, on(0, 60, 50))
    got = notes(s, horizon=5.0)
    assert got == [(60, 1.0, 2.0, 0, False, 100), (60, 2.0, 5.0, 0, False, 50)]


def test_pedal_is_per_channel():
    s = NoteState()
    s.apply(0.0, cc(1, 64, 127))
    s.apply(1.0, on(0, 60))
    s.apply(1.5, off(0, 60))
    assert notes(s) == [(60, 1.0, 1.5, 0, False, 100)]


def test_all_notes_off_respects_the_pedal_and_all_sound_off_does_not():
    s = NoteState()
    s.apply(0.0, on(0, 60))
    s.apply(0.0, on(0, 64))
    s.apply(1.0, cc(0, 123, 0))
    assert notes(s) == [(60, 0.0, 1.0, 0, False, 100), (64, 0.0, 1.0, 0, False, 100)]
    s.apply(2.0, cc(0, 64, 127))
    s.apply(2.0, on(0, 67))
    s.apply(2.5, cc(0, 123, 0))
    assert (67, 2.0, 20.0, 0, False, 100) in notes(s)  # pedal-held
    s.apply(3.0, cc(0, 120, 0))
    assert (67, 2.0, 3.0, 0, False, 100) in notes(s)
    assert s.sounding() == []


def test_program_change_per_channel_and_drums_on_channel_10():
    s = NoteState()
    s.apply(0.0, [0xC0 | 2, 40])
    s.apply(1.0, on(2, 69))
    s.apply(1.0, on(9, 36, 120))
    got = notes(s, horizon=2.0)
    assert (69, 1.0, 2.0, 40, False, 100) in got
    assert (36, 1.0, 1.02, 0, True, 120) in got  # a drum is an onset: no note-off needed


def test_latch_keeps_a_note_shorter_than_a_frame():
    s = NoteState()
    s.apply(1.000, on(0, 72))
    s.apply(1.001, off(0, 72))
    (pitch, start, end, *_), = notes(s)
    assert end - start == pytest.approx(0.02)
    tokens, _ = EventIndex(s.snapshot(2.0, 2.0)).window(start_frame=0, num_frames=100)
    assert tokens.count(1004 + 72) == 2, "onset and offset both tokenized, on different steps"


def test_garbage_and_unused_messages_are_counted_not_fatal():
    s = NoteState()
    for msg in ([], [0xF8], [0xD0, 64], [0x80, 60, 0], [0xB0, 74, 64], [0x90]):
        s.apply(0.0, msg)
    assert s.stats.messages == 6 and s.stats.ignored == 6 and s.sounding() == []


def test_old_finished_notes_are_pruned():
    s = NoteState(keep_s=5.0)
    s.apply(0.0, on(0, 60))
    s.apply(1.0, off(0, 60))
    s.apply(9.0, on(0, 62))
    assert [n[0] for n in notes(s, now=10.0)] == [62]


def test_controllers_reach_the_causal_features_as_a_midi_file_would():
    """Live messages go through the same controller interpretation as a file: RPN 0 bend range, bend, CC7."""
    from live_synth.midi.events import BEND, VOLUME

    s = NoteState()
    for t, msg in [(0.0, [0xB1, 101, 0]), (0.0, [0xB1, 100, 0]), (0.0, [0xB1, 6, 12]), (0.1, [0x91, 60, 100]),
                   (0.5, [0xE1, 0x7F, 0x7F]), (0.6, [0xB1, 7, 64]), (0.7, [0xE0, 0, 0])]:
        s.apply(t, msg)
    events = s.events()
    assert events.notes.shape == (1, 7) and events.notes[0, 1] == float("inf") and events.notes[0, 6] == 1
    values = events.values_at(1, np.array([0.2, 0.55, 0.65]))
    assert values[0, BEND] == 0 and values[1, BEND] == pytest.approx(12 * 8191 / 8192)
    assert values[2, VOLUME] == pytest.approx(64 / 127)
    assert events.values_at(0, np.array([0.8]))[0, BEND] == pytest.approx(-2.0)  # channel 0 kept the default range
