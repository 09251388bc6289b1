"""The generation worker's logic with in-process stand-ins for MIDI and the device (the JACK tests cover real I/O):
the window family's stamping, and the causal family's rollback against an offline render of the same notes."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest
import torch

from engines.frame import TorchFrameEngine
from engines.torch_engine import TorchEngine
from live_synth.causal_stream import CausalLiveStream, render_events
from live_synth.constants import HOP
from live_synth.live.audio_out import OutputFeed, Resampler
from live_synth.window_stream import LiveGenerator, LivePolicy
from live_synth.live.ring import SpscRing
from live_synth.live.worker import GenerationWorker
from live_synth.midi.events import NoteEvents
from live_synth.model.causal import CAUSAL_PRESETS, CausalModel
from live_synth.model.config import preset
from live_synth.model.network import SpectrogramDiffusion

CFG = dataclasses.replace(preset("tiny"), target_length=16, context_length=16, max_tokens=64, pianoroll=True,
                          num_velocity_bins=16, slakh_programs=False)
RATE = 16000


class ListSource:
    wake_fd = None

    def __init__(self):
        self.pending: list = []

    def drain(self):
        out, self.pending = self.pending, []
        return out

    def next_due(self):
        return None


class MelVocoder:
    """A stand-in streaming vocoder with a look-ahead of one frame and a state: frame f's samples carry the mean
    of frame f - 1 plus a running count, so a wrong restore shows."""

    delay_samples = HOP

    def __init__(self):
        self.state = (np.zeros(1, np.float32) - 11.5, 0)

    def __call__(self, frames, events=None):
        held, count = self.state
        means = np.concatenate([held, frames.mean(axis=1)])
        out = np.repeat(means[:-1], HOP).astype(np.float32) / 100 + count * 1e-6
        self.state = (means[-1:], count + len(frames))
        return out

    def snapshot(self):
        return self.state

    def restore(self, state):
        self.state = state


def window_worker(lead_s=0.4, steps=2):
    model = SpectrogramDiffusion(CFG).eval()
    gen = LiveGenerator(TorchEngine(model), LivePolicy(hop=8, steps=steps), seed=0)
    ring = SpscRing(16000)
    worker = GenerationWorker(gen, ListSource(), MelVocoder(), OutputFeed(ring, Resampler(RATE)), lead_s=lead_s,
                              clock=lambda: 100.0)
    worker.start_time = 100.0
    return worker, ring


def causal_worker(delay_s=0.06, lead_s=0.16, guard=320, vocoder=None):
    model = CausalModel(CAUSAL_PRESETS["causal-tiny"], seed=5).eval()
    stream = CausalLiveStream(TorchFrameEngine(model), steps=1, seed=3)
    ring = SpscRing(1 << 15, guard=guard)
    worker = GenerationWorker(stream, ListSource(), vocoder or MelVocoder(),
                              OutputFeed(ring, Resampler(RATE), crossfade=0),
                              lead_s=lead_s, delay_s=delay_s, clock=lambda: 100.0)
    worker.start_time = 100.0
    return worker, ring, model


def consume(ring: SpscRing, samples: int) -> np.ndarray:
    out = np.empty((samples, 1), np.float32)
    ring.read_into(out)
    return out[:, 0]


def test_window_worker_fills_the_ring_to_the_lead_target_and_stops_cleanly():
    worker, ring = window_worker(lead_s=0.4)
    worker.start()
    deadline = time.monotonic() + 20
    while ring.available() < 0.4 * RATE and time.monotonic() < deadline:
        time.sleep(0.01)
    worker.stop()
    assert not worker.is_alive() and worker.stats.error == ""
    assert 0.4 * RATE <= ring.available() < 0.4 * RATE + 8 * 320 + 1  # at most one hop past the target


def test_window_family_moves_an_event_for_committed_audio_to_the_committed_end():
    worker, _ = window_worker()
    worker.tick()
    worker.tick()  # 16 frames = 0.32 s committed
    worker.midi.pending = [(100.05, [0x90, 60, 100])]  # arrived at audio time 0.05 s
    worker.apply_midi()
    (note,) = worker.notes.sounding()
    assert note.start == 16 / 50 and worker.stats.late_events == 1 and worker.stats.active_notes == 1
    assert worker.stats.rollbacks == 0


def test_release_all_ends_every_sounding_note():
    worker, _ = window_worker()
    worker.midi.pending = [(100.0, [0x90, 60, 100]), (100.0, [0x99, 36, 100]), (100.0, [0x91, 64, 90])]
    worker.apply_midi()
    assert worker.stats.active_notes == 2
    worker.release_all.set()
    worker.apply_midi()
    assert worker.notes.sounding() == [] and not worker.release_all.is_set()


def test_late_ticks_lower_the_steps_and_on_time_ticks_give_them_back():
    worker, _ = window_worker(steps=4)
    for _ in range(3):
        worker._account(compute_ms=200.0, budget_ms=160.0)
    assert worker.stream.steps == 1 and worker.stats.late_ticks == 3
    worker._account(compute_ms=10.0, budget_ms=160.0)
    assert worker.stream.steps == 1
    for _ in range(worker.recover_after):
        worker._account(compute_ms=10.0, budget_ms=160.0)
    assert worker.stream.steps == 2 and worker.stats.steps == 2


def fill(worker, ring):
    while worker.ahead_s() < worker.lead_s:
        worker.tick()


def _neural_stream():
    from live_synth.audio.neural_vocoder import NeuralVocoder, StreamingVocoder
    from live_synth.live.vocode import NeuralStream

    torch.manual_seed(0)
    vocoder = NeuralVocoder(StreamingVocoder())  # random weights: the state and its snapshots are the real ones
    return lambda: NeuralStream(vocoder)


def _excited_stream():
    from live_synth.audio.excited_vocoder import ExcitedNet, ExcitedStream, ExcitedVocoder

    torch.manual_seed(0)
    vocoder = ExcitedVocoder(ExcitedNet())  # told the notes, as the shipped vocoder is
    return lambda: ExcitedStream(vocoder, "torch")


# (a new stream of the vocoder, the tolerance): the stand-in is exact; the real vocoders' convolutions run on one
# frame at a time offline and on a rollback's several at once live (float sums in another order)
VOCODERS = {"stand-in": (lambda: MelVocoder, 1e-6), "neural": (_neural_stream, 1e-4), "excited": (_excited_stream, 1e-4)}


@pytest.mark.parametrize("kind", ["stand-in", "neural", "excited"])
def test_rollback_keeps_what_it_cannot_rewrite_and_the_rest_is_exactly_the_offline_render(kind):
    """The worker's rollback restores the vocoder's snapshot (the real vocoders' too) and the resampler's. What the
    ring holds past the playhead splits in two: up to `keep_until` (its guard plus the rollback deadline: audio the
    device may take before regenerated frames could be ready) the speculative audio stays as it was, sample for
    sample; from there on it is the offline render of the note at its placed time through the same stream.

    The split is what makes the comparison exact for every vocoder: a note reaches back before its onset, through
    the mel's look-ahead (2 frames) and the vocoder's own (the mel-only vocoder's output 2.3 frames before the onset
    moves by up to 8e-4 here), and that reach falls partly inside the kept span, which no rollback can rewrite."""
    factory, atol = VOCODERS[kind]
    new_stream = factory()
    worker, ring, model = causal_worker(vocoder=new_stream())
    worker.notes.apply(0.02, [0x90, 57, 100])  # a note sounding from the start: the frames before the rollback
    fill(worker, ring)                           # change, so a vocoder state not restored shows
    played = [consume(ring, 4 * HOP)]  # the device has played 80 ms
    fill(worker, ring)
    start = ring.read_index
    speculative = ring.peek(start, ring.available())
    worker._deadline_s = 0.005  # as from 2.5 ms ticks (measured tick times would make this test depend on load)
    worker.midi.pending = [(100.09, [0x90, 64, 110])]  # a note-on at wall time 90 ms
    worker.apply_midi()
    assert worker.stats.rollbacks == 1 and worker.stats.late_events == 0 and worker.stats.frames_regenerated > 0
    kept = ring.write_index  # the cut: the ring's audio before it stays
    assert kept == start + ring.guard + int(0.005 * RATE)  # the guard and the deadline, nothing more
    first, note = worker.notes.sounding()
    assert note.start == pytest.approx(worker.timing.time_at((0.09 + 0.06) * RATE))  # heard at arrival + D
    fill(worker, ring)
    played.append(consume(ring, ring.available()))
    after = ring.read_index
    audio = np.concatenate(played)
    np.testing.assert_array_equal(audio[start:kept], speculative[: kept - start])
    assert not np.allclose(audio[kept : start + len(speculative)], speculative[kept - start :])  # replaced

    # Offline: the same note at the same time, through the same frame loop, vocoder and resampler.
    frames = after // HOP
    notes = NoteEvents(np.array([[first.start, np.inf, 57, 100, 0, 0, 0], [note.start, np.inf, 64, 110, 0, 0, 0]]))
    mel = render_events(model, notes, frames + 1, steps=1, seed=3)
    vocoder, resampler = new_stream(), Resampler(RATE)
    told = notes if getattr(vocoder, "needs_notes", False) else None
    voiced = np.concatenate([vocoder(mel[i : i + 1], told) for i in range(len(mel))])  # streamed frame by frame
    offline = resampler.step(voiced, resampler.init_state())[0]
    np.testing.assert_allclose(audio[:start], offline[:start], atol=atol)
    np.testing.assert_allclose(audio[kept:], offline[kept : len(audio)], atol=atol)


def test_a_note_too_late_for_its_time_is_moved_to_the_first_rewritable_one_and_counted():
    worker, ring, _ = causal_worker(delay_s=0.0)
    fill(worker, ring)
    consume(ring, 4 * HOP)
    worker.midi.pending = [(100.0, [0x90, 64, 110])]  # for 0 ms after arrival: already played
    worker.apply_midi()
    (note,) = worker.notes.sounding()
    assert worker.stats.late_events == 1
    assert worker.timing.position(note.start) >= ring.read_index + ring.guard


def test_notes_are_placed_by_the_device_clock_stamps_after_a_skipped_cycle():
    """A host that skips cycles (a JACK xrun) leaves the device behind the wall clock: the note goes where the
    device will be at arrival + D, not where a device running at the nominal rate since the start would be."""
    worker, ring, _ = causal_worker(delay_s=0.1)
    worker.start_time = 100.0
    fill(worker, ring)
    out = np.empty((HOP, 1), np.float32)
    ring.read_into(out, now_ns=int(100.0e9))  # position 0 handed out at 100.0 s
    assert worker.origin() == pytest.approx(100.0)
    ring.read_into(out, now_ns=int(100.05e9))  # position 320 at 100.05 s: 30 ms of cycles were skipped
    # the earliest origin in the window is the on-time stamp; once it ages out, the skipped cycles count
    assert worker.origin() == pytest.approx(100.0)
    ring.read_into(out, now_ns=int(101.5e9))  # position 640 at 101.5 s: the device fell 1.48 s behind
    assert worker.origin() == pytest.approx(101.5 - 640 / RATE)
    tau, late = worker.place(101.5)
    assert not late and tau == pytest.approx(worker.timing.time_at(640 + 0.1 * RATE))  # heard at 101.6 s


def test_a_flood_is_one_rollback_per_drain_and_never_rewinds_a_low_ring():
    worker, ring, _ = causal_worker()
    fill(worker, ring)
    flood = [(100.0 + i * 1e-5, [0x90 | (i % 9), 40 + i % 50, 1 + i % 127]) for i in range(1000)]
    worker.midi.pending = flood
    worker.apply_midi()
    assert worker.stats.rollbacks == 1 and worker.stats.coalesced == 999
    # With less than the guard and two frames generated, an event whose time is already generated goes after the
    # generated audio instead (no rollback): the device is fed first.
    fill(worker, ring)
    consume(ring, ring.available() - ring.guard - 3 * HOP // 2)
    worker.delay_s = 0.0
    worker.midi.pending = [(100.001, [0x90, 70, 100])]
    worker.apply_midi()
    assert worker.stats.rollbacks == 1 and worker.stats.deferred == 1
    assert max(n.start for n in worker.notes.sounding()) == (worker.stream.frame + 1) / 50


def test_the_worker_wakes_when_a_scheduled_event_comes_due():
    class Due(ListSource):
        def next_due(self):
            return 100.0

    worker, _, _ = causal_worker()
    worker.midi = Due()
    start = time.perf_counter()
    worker._sleep(1.0)
    assert time.perf_counter() - start < 0.1


@pytest.mark.parametrize("kind", ["stand-in", "excited"])
def test_a_rehearsal_is_timed_and_leaves_no_trace_in_what_is_played(kind):
    """`rehearse` times ticks that make notes (the declared delay and the rollback deadline are sized from them),
    then rewinds the stream and the vocoder: what the worker writes afterwards is what it writes without it."""
    factory, _ = VOCODERS[kind]
    new_stream = factory()
    chord = [[0x90, pitch, 100] for pitch in (48, 60, 67)]
    rehearsed, ring_a, _ = causal_worker(vocoder=new_stream())
    made = []
    make = rehearsed._make
    rehearsed._make = lambda notes, stream=None: made.append(make(notes, stream)) or made[-1]
    times = rehearsed.rehearse(12, chord)
    rehearsed._make = make
    assert len(times) == 12 and all(t > 0 for t in times) and rehearsed._deadline_s > 0
    assert np.abs(made[-1] - made[0]).max() > 1e-3  # the chord sounds from the second frame on
    assert rehearsed.stream.frame == 0 and not rehearsed.notes.sounding()
    plain, ring_b, _ = causal_worker(vocoder=new_stream())
    for worker, ring in ((rehearsed, ring_a), (plain, ring_b)):
        fill(worker, ring)
    np.testing.assert_array_equal(ring_a.peek(0, ring_a.available()), ring_b.peek(0, ring_b.available()))
