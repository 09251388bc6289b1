"""Generation makes way for the audio graph (live/priority.py): thread counts and per-thread priorities."""

from __future__ import annotations

import os
import sys
import threading

import pytest

from live_synth.live.priority import compute_threads, lower_threads, priority_of


def test_generation_leaves_a_core_to_the_audio_side():
    assert compute_threads(2) == 1 and compute_threads(1) == 1 and compute_threads(8) == 7


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread priorities are Linux's")
def test_lowering_threads_leaves_the_excluded_ones_alone():
    """The generation process lowers its compute threads and not its JACK MIDI client's (the graph waits on those)."""
    ready, done = threading.Event(), threading.Event()
    ids = {}

    def spin(name):
        ids[name] = threading.get_native_id()
        ready.set() if len(ids) == 2 else None
        done.wait(5)

    threads = [threading.Thread(target=spin, args=(n,)) for n in ("compute", "midi")]
    for t in threads:
        t.start()
    ready.wait(5)
    try:
        before = priority_of(ids["midi"])
        assert lower_threads(7, exclude={ids["midi"]}, tids={ids["compute"], ids["midi"]}) is None
        assert priority_of(ids["compute"]) == (os.SCHED_BATCH, max(7, before[1]))
        assert priority_of(ids["midi"]) == before
    finally:
        done.set()
        for t in threads:
            t.join()


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE is Linux's")
def test_the_worker_idles_while_it_keeps_up_and_claims_the_cpu_while_starved(monkeypatch):
    """The worker thread runs SCHED_IDLE (the graph's threads take its core at once); three starved ticks among the
    last 50 (late, or waiting to run a quarter of their budget) raise it to SCHED_BATCH, ten calm seconds lower it."""
    from live_synth.live import priority as module

    if not module.idle_can_be_left():
        pytest.skip("leaving SCHED_IDLE is not permitted here (no CAP_SYS_NICE, RLIMIT_NICE < 20)")
    now = [0.0]
    control = module.WorkerPriority("auto", clock=lambda: now[0])
    assert control.resolve() == "idle" and control.note == ""
    seen = []

    def worker():
        control.enter()
        policy = lambda: os.sched_getscheduler(0)  # noqa: E731
        seen.append(policy())  # idle
        for _ in range(40):  # ticks well within budget, one starved one now and then: no raise
            control.observe(6.0, 5.9, 20.0)
        control.observe(12.0, 5.9, 20.0)  # waited 6.1 ms of 20: starved
        control.observe(6.0, 5.9, 20.0)
        control.observe(21.0, 20.5, 20.0)  # late
        seen.append((policy(), control.raises))
        control.observe(8.0, 2.0, 20.0)  # the third starved tick within 50
        seen.append((policy(), control.raises))
        now[0] += 9.0
        control.observe(6.0, 5.9, 20.0)
        seen.append(policy())  # still raised: 9 s calm
        now[0] += 1.5
        control.observe(6.0, 5.9, 20.0)
        seen.append(policy())

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert seen == [os.SCHED_IDLE, (os.SCHED_IDLE, 0), (os.SCHED_BATCH, 1), os.SCHED_BATCH, os.SCHED_IDLE], seen
    assert control.raises == 1


def test_without_permission_to_leave_idle_auto_stays_at_batch_and_says_why(monkeypatch):
    from live_synth.live import priority as module

    monkeypatch.setattr(module, "idle_can_be_left", lambda: False)
    control = module.WorkerPriority("auto")
    assert control.resolve() == "batch" and control.policy == "SCHED_BATCH"
    assert "CAP_SYS_NICE or RLIMIT_NICE 20" in control.note
    asked = module.WorkerPriority("idle")
    assert asked.resolve() == "idle" and "cannot be raised" in asked.note
    with pytest.raises(ValueError):
        module.WorkerPriority("fifo")
