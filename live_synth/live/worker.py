"""The generation worker: drains MIDI, keeps the ring filled to the lead target, degrades when it runs late.

One thread owns the note state, the generator (and through it the engine), the streaming vocoder and the resampler.
It never touches device buffers: it only writes samples into the SPSC ring that the audio callback reads.

Timing model. Audio frame f (20 ms) is heard `f / 50` s after the stream's start (plus the device's fixed output
latency). A MIDI event that arrives `t` s after the start belongs at audio time t, but frames up to the committed
end are already generated; so the event is stamped at max(t, committed end). Its onset then lands in the next
window instead of turning into a tie (a note that is already sounding), and note-on → sound latency is the time to
the next tick, the tick itself, the ring's lead, the resampler and the device buffer.

Degradation. A tick is late when its compute time exceeds the audio it produces (hop frames): the ring is then
draining. Each late tick lowers the sampling steps by one (not below 1) and is counted; after `recover_after`
on-time ticks with half the budget to spare, a step is given back, up to the policy's count.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from live_synth.constants import FRAME_RATE, HOP
from live_synth.live.generator import LiveGenerator
from live_synth.live.notes import NoteState
from live_synth.live.ring import SpscRing


class MidiSource(Protocol):
    def drain(self) -> list[tuple[float, list[int]]]:
        """(arrival time in seconds on the session clock, raw message) pairs received since the last call."""


@dataclass
class WorkerStats:
    """Counters the control thread reads (plain ints and floats: reads are atomic under the GIL)."""

    ticks: int = 0
    late_ticks: int = 0
    steps: int = 0
    last_tick_ms: float = 0.0
    tick_ms: deque = field(default_factory=lambda: deque(maxlen=100_000))  # recent tick times, for reports
    active_notes: int = 0
    late_events: int = 0  # MIDI events stamped later than they arrived because their time was already committed
    error: str = ""


class GenerationWorker(threading.Thread):
    def __init__(
        self,
        generator: LiveGenerator,
        midi: MidiSource,
        vocode: Callable[[np.ndarray], np.ndarray],
        ring: SpscRing,
        push: Callable[[np.ndarray], int] | None = None,
        lead_s: float = 0.25,
        ring_rate: float = 16000.0,
        clock: Callable[[], float] = time.monotonic,
        recover_after: int = 20,
    ):
        """`vocode`: log-mel frames [n, 128] → 16 kHz samples [n * 320], streaming (its state lives with it).
        `push`: 16 kHz samples → into the ring (resampled to the device rate, recorded; `OutputFeed.push`);
        default: written to the ring as they are. `lead_s`: ring fill target in seconds of audio at `ring_rate`."""
        super().__init__(name="live-synth-generation", daemon=True)
        self.generator, self.midi, self.vocode, self.ring = generator, midi, vocode, ring
        self.push = push or ring.write
        self.clock = clock
        self.lead_s, self.ring_rate = lead_s, ring_rate
        self.recover_after = recover_after
        self.notes = NoteState()
        self.stats = WorkerStats(steps=generator.steps)
        self.stop_event = threading.Event()
        self.release_all = threading.Event()  # set by the control thread (e.g. the MIDI port vanished)
        self.start_time: float | None = None  # session clock value of audio time 0
        self._on_time = 0

    def run(self) -> None:
        try:
            self._loop()
        except Exception as exc:  # the worker must not die silently: the control thread shows this and stops
            self.stats.error = f"{type(exc).__name__}: {exc}"
            raise

    def _loop(self) -> None:
        rate = self.ring_rate
        hop_s = self.generator.policy.hop / FRAME_RATE
        self.start_time = self.start_time if self.start_time is not None else self.clock()
        while not self.stop_event.is_set():
            self.apply_midi()
            if self.ring.available() >= self.lead_s * rate:
                self.stop_event.wait(min(hop_s / 4, 0.005))
                continue
            self.tick()

    def apply_midi(self) -> None:
        committed_s = self.generator.frame / FRAME_RATE
        if self.release_all.is_set():
            self.release_all.clear()
            for channel in range(16):  # all sound off: nothing may hang once its source is gone
                self.notes.apply(committed_s, [0xB0 | channel, 120, 0])
        for arrival, message in self.midi.drain():
            t = arrival - (self.start_time or 0.0)
            if t < committed_s:
                self.stats.late_events += 1
                t = committed_s
            self.notes.apply(t, message)
        self.stats.active_notes = len(self.notes.sounding())

    def tick(self) -> None:
        """Generate one hop, vocode, resample, write to the ring; adjust the step count."""
        gen = self.generator
        snapshot = self.notes.snapshot(now=gen.frame / FRAME_RATE, horizon=gen.horizon_s())
        frames, report = gen.tick(snapshot)
        self.push(self.vocode(frames).astype(np.float32))
        self._account(report.compute_ms, len(frames) * HOP / 16000 * 1e3)

    def _account(self, compute_ms: float, budget_ms: float) -> None:
        stats, gen = self.stats, self.generator
        stats.ticks += 1
        stats.last_tick_ms = compute_ms
        stats.tick_ms.append(compute_ms)
        if compute_ms > budget_ms:
            stats.late_ticks += 1
            gen.steps = max(1, gen.steps - 1)
            self._on_time = 0
        else:
            self._on_time += 1
            if self._on_time >= self.recover_after and compute_ms < budget_ms / 2 and gen.steps < gen.policy.steps:
                gen.steps += 1
                self._on_time = 0
        stats.steps = gen.steps

    def stop(self, timeout: float = 5.0) -> None:
        self.stop_event.set()
        if self.is_alive():
            self.join(timeout)
