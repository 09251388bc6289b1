"""The generation worker's logic with in-process stand-ins for MIDI and audio (the JACK tests cover the real I/O)."""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from engines.torch_engine import TorchEngine
from live_synth.live.generator import LiveGenerator, LivePolicy
from live_synth.live.ring import SpscRing
from live_synth.live.worker import GenerationWorker
from live_synth.model.config import preset
from live_synth.model.network import SpectrogramDiffusion

CFG = dataclasses.replace(preset("tiny"), target_length=16, context_length=16, max_tokens=64, pianoroll=True,
                          num_velocity_bins=16, slakh_programs=False)


class ListSource:
    def __init__(self):
        self.pending: list = []

    def drain(self):
        out, self.pending = self.pending, []
        return out


def make_worker(lead_s=0.4, steps=2):
    model = SpectrogramDiffusion(CFG).eval()
    gen = LiveGenerator(TorchEngine(model), LivePolicy(hop=8, steps=steps), seed=0)
    ring = SpscRing(16000)
    written = []

    def push(audio):
        n = ring.write(audio)
        written.append(audio[:n])
        return n

    worker = GenerationWorker(gen, ListSource(), vocode=lambda f: np.full(len(f) * 320, 0.1, np.float32),
                              ring=ring, push=push, lead_s=lead_s, ring_rate=16000, clock=lambda: 100.0)
    worker.start_time = 100.0
    return worker, ring, written


def test_worker_fills_the_ring_to_the_lead_target_and_stops_cleanly():
    worker, ring, written = make_worker(lead_s=0.4)
    worker.start()
    deadline = time.monotonic() + 20
    while ring.available() < 0.4 * 16000 and time.monotonic() < deadline:
        time.sleep(0.01)
    worker.stop()
    assert not worker.is_alive() and worker.stats.error == ""
    assert 0.4 * 16000 <= ring.available() < 0.4 * 16000 + 8 * 320 + 1  # at most one hop past the target
    assert sum(len(a) for a in written) == ring.available()


def test_an_event_for_already_committed_audio_is_moved_to_the_committed_end():
    worker, _, _ = make_worker()
    worker.tick()
    worker.tick()  # 16 frames = 0.32 s committed
    worker.midi.pending = [(100.05, [0x90, 60, 100])]  # arrived at audio time 0.05 s
    worker.apply_midi()
    (note,) = worker.notes.sounding()
    assert note.start == 16 / 50 and worker.stats.late_events == 1 and worker.stats.active_notes == 1


def test_release_all_ends_every_sounding_note():
    worker, _, _ = make_worker()
    worker.midi.pending = [(100.0, [0x90, 60, 100]), (100.0, [0x99, 36, 100]), (100.0, [0x91, 64, 90])]
    worker.apply_midi()
    assert worker.stats.active_notes == 2
    worker.release_all.set()
    worker.apply_midi()
    assert worker.notes.sounding() == [] and not worker.release_all.is_set()


def test_late_ticks_lower_the_steps_and_on_time_ticks_give_them_back():
    worker, _, _ = make_worker(steps=4)
    for _ in range(3):
        worker._account(compute_ms=200.0, budget_ms=160.0)
    assert worker.generator.steps == 1 and worker.stats.late_ticks == 3
    worker._account(compute_ms=10.0, budget_ms=160.0)
    assert worker.generator.steps == 1
    for _ in range(worker.recover_after):
        worker._account(compute_ms=10.0, budget_ms=160.0)
    assert worker.generator.steps == 2 and worker.stats.steps == 2
