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
