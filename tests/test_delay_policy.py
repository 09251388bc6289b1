"""The declared delay under load (live/delay.py): white box, no audio."""

from __future__ import annotations

import pytest

from live_synth.live.delay import DelayPolicy


def policy(**kw) -> DelayPolicy:
    return DelayPolicy(**{"delay_ms": 40.0, "base_ms": 12.7, "frames": 3, "min_ticks": 10, "window": 100, **kw})


def test_d_grows_to_cover_the_slow_ticks_measured_while_playing():
    p = policy()
    for _ in range(100):
        p.observe(12.0)  # 3 frames x 12 ms + 12.7 = 48.7 ms > 40
    assert p.proposal() == pytest.approx(48.7)
    assert p.at_silence(10.0) == pytest.approx(48.7)
    assert p.delay_ms == pytest.approx(48.7) and p.changes == 1


def test_d_shrinks_only_on_a_full_window_without_late_events_and_small_moves_are_not_announced():
    p = policy()
    for _ in range(99):
        p.observe(5.0)  # asks for 27.7 ms: less than the D in force, but the window is not full yet
    assert p.at_silence(10.0) is None and p.delay_ms == 40.0
    p.observe(5.0)
    p.late(0.5)  # a late event since the last change: no shrinking (it raises D instead)
    assert p.at_silence(20.0) == pytest.approx(41.5)
    for _ in range(100):
        p.observe(5.0)
    assert p.at_silence(30.0) == pytest.approx(27.7)  # a full window, no late event: D comes down
    for _ in range(100):
        p.observe(4.0)  # asks for 24.7 ms: within the 5 ms shrink hysteresis
    assert p.at_silence(40.0) is None
    for _ in range(100):
        p.observe(5.1)  # asks for 28.0 ms: under the 1 ms growth step
    assert p.at_silence(50.0) is None and p.changes == 2


def test_a_late_event_raises_d_by_at_least_how_late_it_was():
    p = policy()
    p.late(6.0)
    assert p.at_silence(5.0) == pytest.approx(47.0)  # 40 + 6 + the 1 ms step


def test_d_changes_at_most_once_per_interval_and_up_to_its_cap():
    p = policy(max_ms=60.0)
    for _ in range(100):
        p.observe(30.0)  # asks for 102.7 ms
    assert p.at_silence(1.0) == 60.0
    p.late(10.0)
    assert p.at_silence(1.5) is None  # within the 1 s interval
    assert p.at_silence(3.0) is None and p.delay_ms == 60.0  # at the cap already


def test_too_few_ticks_say_nothing():
    p = policy(min_ticks=50)
    for _ in range(49):
        p.observe(100.0)
    assert p.at_silence(10.0) is None


def test_a_worker_changes_d_only_while_no_note_sounds():
    """The worker adopts a new D only in silence: a note held across the change keeps the D of its note-on."""
    from live_synth.live.worker import GenerationWorker

    calls = []

    class Notes:
        held = True

        def sounding(self):
            return [60] if self.held else []

    class Worker:  # just what `_declare` touches
        _declare = GenerationWorker._declare
        delay_s, lead_s, clock = 0.040, 0.120, staticmethod(lambda: 100.0)
        notes = Notes()
        delay_policy = policy()

    worker = Worker()
    for _ in range(100):
        worker.delay_policy.observe(12.0)
    worker._declare()
    assert worker.delay_s == 0.040  # a note is held: no change
    worker.notes.held = False
    worker._declare()
    assert worker.delay_s == pytest.approx(0.0487) and worker.lead_s == pytest.approx(0.1287)
    calls.append(worker.delay_policy.changes)
    assert calls == [1]
