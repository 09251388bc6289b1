"""`play --midi-file`: events come due on the session clock with the times they were due."""

from __future__ import annotations

import pytest

from live_synth.synth import packaged_path
from live_synth.errors import MidiError
from live_synth.live.midi_file import MidiFileSource, midi_file_events


class FakeClock:
    def __init__(self):
        self.now = 50.0

    def __call__(self):
        return self.now


def test_events_come_due_in_order_with_their_due_times():
    clock = FakeClock()
    source = MidiFileSource(packaged_path("demo.mid"), clock=clock, speed=2.0)
    at_zero = [m for t, m in midi_file_events(packaged_path("demo.mid")) if t == 0]
    assert [m for _, m in source.drain()] == at_zero and at_zero  # the first call fixes the start time
    clock.now += 1.0  # 1 s at double speed = the file's first 2 s
    due = source.drain()
    assert due and all(50.0 <= t <= 51.0 for t, _ in due)
    assert [t for t, _ in due] == sorted(t for t, _ in due)
    clock.now += 100
    source.drain()
    assert source.finished
    assert source.duration == pytest.approx(midi_file_events(packaged_path("demo.mid"))[-1][0] / 2)


def test_bad_files_are_one_line_errors(tmp_path):
    bad = tmp_path / "bad.mid"
    bad.write_bytes(b"MThd garbage")
    with pytest.raises(MidiError, match="not a readable MIDI file"):
        MidiFileSource(bad)
    with pytest.raises(MidiError, match="no such file"):
        MidiFileSource(tmp_path / "missing.mid")
