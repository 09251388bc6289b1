"""The generation worker: drains MIDI, keeps the ring filled to the lead, and rolls back when a note arrives.

One thread owns the note state, the live stream (`synth.LiveStream`: the model, its engine and its frame loop),
the streaming vocoder and the output feed (resampler + ring + recorder). It never touches device buffers: it only
writes samples into the SPSC ring that the audio callback reads.

Two ways to place a MIDI event, chosen by what the stream can do:

- Rollback (the causal family: `stream.can_rewind`). The worker keeps `lead` of audio generated ahead of the
  playhead on speculation: what the notes known so far make. An event arriving at wall time w is placed at the
  time that will be heard at w + `delay` (D, declared and constant: `place`), which lies inside that speculative
  audio; the stream, the vocoder and the resampler are rewound to the first frame that sees the event (each
  keeps its state per frame as a value, so a rewind is O(1)), the ring is cut back to that frame's position
  (`SpscRing.truncate`, never within its guard of the playhead) and the frames are generated again with the note.
  Only audio already handed to the device is final: this is rollback netcode applied to audio. Events drained
  together are one rollback (`coalesced`); a note whose time is no longer rewritable (it arrived later than D
  allows: a slow tick, a busy machine) is moved to the first time that is, and counted (`late_events`).
  When the ring runs low (a flood of events keeps rolling back), new events are placed at the end of what is
  already generated instead, so the device never starves: the work per tick stays bounded (`deferred`).
- Stamping (the window family, which generates `hop` frames per tick and cannot rewind): an event is stamped at
  max(arrival, the end of what is generated), so its onset lands in the next window, as before.

Timing. Ring position 0 holds the output of frame 0; each frame adds `per_frame` device samples. The vocoder
outputs frame f - lookahead when given frame f, and the resampler delays by `resampler.delay` samples, so frame time
tau is at ring position (50 tau + lookahead) * per_frame + resampler delay. The device plays ring position p at
origin + p / rate (plus its own output latency, reported by `play`), where the origin comes from the consumer's
clock stamps (`origin`): a host that skipped cycles moves it, so notes keep their declared latency.

Degradation. A tick is late when its compute time exceeds the audio it produces: each late tick lowers the
sampling steps by one (not below 1) and is counted; after `recover_after` on-time ticks with half the budget to
spare, a step is given back, up to the stream's own count.
"""

from __future__ import annotations

import math
import select
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from live_synth.constants import FRAME_RATE, HOP
from live_synth.live.audio_out import OutputFeed
from live_synth.live.notes import NoteState


class MidiSource(Protocol):
    wake_fd: int | None

    def drain(self) -> list[tuple[float, list[int]]]:
        """(arrival time in seconds on the session clock, raw message) pairs received since the last call."""

    def next_due(self) -> float | None:
        """Clock time of the next scheduled event, if the source has a schedule."""


ORIGIN_WINDOW_S = 1.0  # how far back `GenerationWorker.origin` looks for an on-time callback
DEADLINE_MARGIN_MS = 2.0  # added to the rollback deadline (as to the declared delay: live/generation.py)

@dataclass
class WorkerStats:
    """Counters the control thread reads (plain ints and floats: reads are atomic under the GIL)."""

    ticks: int = 0
    late_ticks: int = 0
    steps: int = 0
    last_tick_ms: float = 0.0
    tick_ms: deque = field(default_factory=lambda: deque(maxlen=100_000))  # recent tick times, for reports
    active_notes: int = 0
    late_events: int = 0  # events that could not be placed where they belong (moved later)
    late_ms_max: float = 0.0  # the most an event was moved
    rollbacks: int = 0
    frames_regenerated: int = 0  # speculative frames thrown away by rollbacks
    coalesced: int = 0  # events that shared a rollback with an earlier event of the same drain
    deferred: int = 0  # events placed at the end of the generated audio because the ring was low
    skipped_samples: int = 0  # regenerated samples the ring could not take back (within its guard)
    error: str = ""


@dataclass(frozen=True)
class Timing:
    """Where frames land in the ring and when the ring is heard (see the module docstring)."""

    rate: int  # device sample rate
    per_frame: int  # device samples per 20 ms frame
    vocoder_frames: int  # the vocoder's look-ahead in frames
    resampler_delay: int  # device samples

    def position(self, tau: float) -> float:
        """Ring position of frame time tau (seconds)."""
        return (tau * FRAME_RATE + self.vocoder_frames) * self.per_frame + self.resampler_delay

    def time_at(self, position: float) -> float:
        """Frame time (seconds) at ring position `position`."""
        return ((position - self.resampler_delay) / self.per_frame - self.vocoder_frames) / FRAME_RATE


@dataclass
class _Record:
    frame: int
    vocoder: object
    resampler: np.ndarray
    position: int


class GenerationWorker(threading.Thread):
    def __init__(
        self,
        stream,
        midi: MidiSource,
        vocode,
        feed: OutputFeed,
        lead_s: float = 0.25,
        delay_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        recover_after: int = 20,
        low_s: float | None = None,
    ):
        """`stream`: a `synth.LiveStream`. `vocode`: log-mel frames [n, 128] -> 16 kHz samples [n * 320], streaming,
        with `snapshot()` / `restore()`. `feed`: the ring's producer end. `lead_s`: audio kept generated ahead of
        the playhead. `delay_s`: D, arrival -> heard (rollback streams). `low_s`: below this much audio ahead, new
        events are deferred instead of rolled back (default: the ring's guard plus two frames)."""
        super().__init__(name="live-synth-generation", daemon=True)
        self.stream, self.midi, self.vocode, self.feed = stream, midi, vocode, feed
        self.ring = feed.ring
        self.clock = clock
        self.rate = feed.resampler.out_rate
        self.timing = Timing(self.rate, feed.resampler.per_frame,
                             int(getattr(vocode, "delay_samples", 0)) // HOP, feed.resampler.delay)
        self.lead_s, self.delay_s = lead_s, delay_s
        self.low_s = (self.ring.guard + 2 * self.timing.per_frame) / self.rate if low_s is None else low_s
        self.recover_after = recover_after
        self.notes = NoteState()
        self.stats = WorkerStats(steps=stream.steps)
        self.stop_event = threading.Event()
        self.release_all = threading.Event()  # set by the control thread (e.g. the MIDI port vanished)
        self.start_time: float | None = None  # session clock value of ring position 0 being played
        self._on_time = 0
        self._records: deque[_Record] = deque(maxlen=256)
        self._recent_ms: deque[float] = deque(maxlen=100)  # the last ticks, for the rollback deadline
        self._deadline_s = 0.0
        self._origins: deque[tuple[float, float]] = deque()  # (stamp time, origin): see `origin`
        self.delay_policy = None  # a `live.delay.DelayPolicy`: D sized from the ticks while playing (`_declare`)
        self.priority = None  # a `live.priority.WorkerPriority`: this thread's scheduling policy while it runs

    # -- the loop ---------------------------------------------------------------------------------------------------
    def run(self) -> None:
        try:
            if self.priority is not None:
                self.priority.enter()
            self._loop()
        except Exception as exc:  # the worker must not die silently: the control thread shows this and stops
            self.stats.error = f"{type(exc).__name__}: {exc}"
            raise

    def _loop(self) -> None:
        self.start_time = self.start_time if self.start_time is not None else self.clock()
        while not self.stop_event.is_set():
            self.origin()  # sample the consumer's clock stamp every pass (see `origin`)
            self.apply_midi()
            if self.delay_policy is not None:
                self._declare()
            ahead = self.ahead_s()
            if ahead < self.lead_s:
                self.tick()
                continue
            self._sleep(min(ahead - self.lead_s + 0.5 / FRAME_RATE, 0.005))

    def _sleep(self, timeout: float) -> None:
        """Wait until the ring needs a frame, a MIDI message arrives, or a scheduled event comes due."""
        due = self.midi.next_due()
        if due is not None:
            timeout = max(0.0, min(timeout, due - self.clock()))
        fd = getattr(self.midi, "wake_fd", None)
        if fd is None:
            self.stop_event.wait(timeout)
        else:
            select.select([fd], [], [], timeout)

    def ahead_s(self) -> float:
        """Audio generated and not yet played, in seconds."""
        return (self.feed.position - self.ring.read_index) / self.rate

    def origin(self) -> float:
        """The clock time at which ring position 0 was (or would have been) handed to the device.

        From the consumer's clock stamps when it publishes them (`SpscRing.stamp`): each stamp (position p at time
        t) says position 0 went out at t - p / rate. A callback that runs late within its period gives a later
        value; a host that skipped cycles (an xrun) or a ring underrun moves every later value for good. So the
        origin is the earliest value among the stamps of the last `ORIGIN_WINDOW_S`: on-time callbacks, and a
        skipped cycle taken into account within that window. Without stamps (a virtual clock, a test): the start
        time plus the samples the ring could not supply."""
        stamp = self.ring.stamp()
        if stamp is None:
            return (self.start_time or 0.0) + self.ring.underrun_samples / self.rate
        position, t = stamp
        window = self._origins  # a sliding-window minimum: origins increase from left to right
        if not window or window[-1][0] != t:
            origin = t - position / self.rate
            while window and window[-1][1] >= origin:
                window.pop()
            window.append((t, origin))
            while window[0][0] < t - ORIGIN_WINDOW_S:
                window.popleft()
        return window[0][1]

    def _declare(self) -> None:
        """Adopt a larger declared delay D (and the lead with it) if the policy asks for one, only while no note is
        sounding: a note-off is then placed with the same D as its note-on (live/delay.py)."""
        if self.notes.sounding():
            return
        delay_ms = self.delay_policy.at_silence(self.clock())
        if delay_ms is not None:
            grown = delay_ms / 1e3 - self.delay_s
            self.delay_s += grown
            self.lead_s += grown

    # -- MIDI --------------------------------------------------------------------------------------------------------
    def apply_midi(self) -> None:
        events = self.midi.drain()
        if self.release_all.is_set():
            self.release_all.clear()
            t = self.stream.frame / FRAME_RATE
            for channel in range(16):  # all sound off: nothing may hang once its source is gone
                self.notes.apply(t, [0xB0 | channel, 120, 0])
        if not events:
            return
        if not self.stream.can_rewind:
            committed_s = self.stream.frame / FRAME_RATE
            for arrival, message in events:
                t = arrival - self.origin()
                if t < committed_s:
                    self.stats.late_events += 1
                    t = committed_s
                self.notes.apply(t, message)
        else:
            self._rollback_events(events)
        self.stats.active_notes = len(self.notes.sounding())

    def place(self, arrival: float) -> tuple[float, bool]:
        """(frame time for an event that arrived at `arrival`, whether it had to be moved later)."""
        target = (arrival + self.delay_s - self.origin()) * self.rate
        # the first position that can still be rewritten once the frames up to it are generated again
        floor = self.ring.read_index + self.ring.guard + self._deadline_s * self.rate
        if target < floor:
            self.stats.late_ms_max = max(self.stats.late_ms_max, 1e3 * (floor - target) / self.rate)
            if self.delay_policy is not None:
                self.delay_policy.late(1e3 * (floor - target) / self.rate)
        return self.timing.time_at(max(target, floor)), target < floor

    def _rollback_events(self, events) -> None:
        stream = self.stream
        low = self.ahead_s() < self.low_s
        earliest, onset = None, None
        for arrival, message in events:
            tau, late = self.place(arrival)
            if low:  # a flood: keep the device fed, place it where the next frame to generate is the first to see it
                end_tau = (stream.frame + stream.lookahead_frames() - 1) / FRAME_RATE
                if tau < end_tau:
                    tau = end_tau
                    self.stats.deferred += 1
            elif late:
                self.stats.late_events += 1
            self.notes.apply(tau, message)
            first = math.floor(tau * FRAME_RATE) - stream.lookahead_frames() + 1
            if earliest is not None:
                self.stats.coalesced += 1
            earliest = first if earliest is None else min(earliest, first)
            onset = tau if onset is None else min(onset, tau)
        if earliest is not None and earliest < stream.frame:
            # Keep the old audio up to where the regenerated frames can be ready (the guard plus the deadline), but
            # never past the first event's own time: the device plays on while the note's frames are made.
            ready = self.ring.read_index + self.ring.guard + self._deadline_s * self.rate
            self.rollback(earliest, keep_until=int(min(self.timing.position(onset), ready)))

    def rollback(self, frame: int, keep_until: int = 0) -> None:
        """Regenerate from `frame` on: rewind the stream, the vocoder, the resampler and the ring; the ring keeps
        its audio before `keep_until` (the regenerated audio for that span is skipped, joined by a crossfade)."""
        stream = self.stream
        frame = max(frame, stream.earliest(), self._records[0].frame if self._records else stream.frame)
        if frame >= stream.frame:
            return
        while self._records and self._records[-1].frame > frame:
            self._records.pop()
        record = self._records.pop()
        self.stats.rollbacks += 1
        self.stats.frames_regenerated += stream.frame - record.frame
        stream.rewind(record.frame)
        self.vocode.restore(record.vocoder)
        self.feed.rewind(record.position, record.resampler, keep_until)

    # -- generation --------------------------------------------------------------------------------------------------
    def tick(self) -> None:
        """Generate one hop, vocode, resample, write to the ring; adjust the step count."""
        start, cpu_start = time.perf_counter(), time.thread_time()
        stream = self.stream
        if stream.can_rewind:
            self._records.append(_Record(stream.frame, self.vocode.snapshot(), self.feed.state, self.feed.position))
        self.notes.prune(stream.frame / FRAME_RATE)
        audio = self._make(self.notes)
        self.feed.push(audio)
        self.stats.skipped_samples = self.feed.skipped_samples
        compute_ms = (time.perf_counter() - start) * 1e3
        budget_ms = len(audio) // HOP * 1000 / FRAME_RATE
        self._account(compute_ms, budget_ms)
        self._observe(compute_ms)
        if self.priority is not None:
            self.priority.observe(compute_ms, (time.thread_time() - cpu_start) * 1e3, budget_ms)

    def _make(self, notes: NoteState, stream=None) -> np.ndarray:
        """One hop of audio (16 kHz) for `notes`: the stream's frames (the worker's stream by default), vocoded."""
        frames = (stream or self.stream).generate(notes)
        # The excited vocoder is told the notes (pitch and onset to the sample); the others take the mel alone.
        events = notes.events() if getattr(self.vocode, "needs_notes", False) else None
        return self.vocode(frames, events).astype(np.float32)

    def _observe(self, compute_ms: float) -> None:
        """A tick's time: the rollback deadline and the declared delay's policy are sized from the recent ones.

        The deadline is how far past the guard a rollback's rewrite must start: the ticks from a note's first frame
        to its audible output (feature look-ahead + vocoder look-ahead), each at a slow recent tick (the 99th
        percentile of the last 100, as `play` sizes D), plus 2 ms. Sized at the 90th, a rollback whose ticks ran
        slower than the recent ones (the first notes after silence) starved the device in 1 of 3 JACK runs."""
        self._recent_ms.append(compute_ms)
        if self.delay_policy is not None:
            self.delay_policy.observe(compute_ms)
        slow = float(np.percentile(self._recent_ms, 99))
        frames = self.stream.lookahead_frames() + self.timing.vocoder_frames
        self._deadline_s = (frames * slow + DEADLINE_MARGIN_MS) / 1e3

    def rehearse(self, ticks: int, messages: list[list[int]], stream=None) -> list[float]:
        """Time `ticks` ticks with `messages` (note-ons) sounding from the second frame on, without writing audio,
        then rewind the stream and the vocoder to where they were: the declared delay and the rollback deadline are
        sized from ticks that make notes (a silent pre-fill is cheaper than playing), and the first notes' one-off
        costs are paid before going live. `stream`: the worker's own (default) or the same one without a wrapper
        that must not see these frames (the web page's tap). Returns the tick times (ms)."""
        stream = stream or self.stream
        first, vocoder = stream.frame, self.vocode.snapshot()
        notes = type(self.notes)()
        for message in messages:
            notes.apply((first + 1) / FRAME_RATE, message)
        times = []
        for _ in range(min(ticks, 48)):  # the stream keeps 64 frames of history (causal_stream.CausalStream)
            start = time.perf_counter()
            self._make(notes, stream)
            times.append((time.perf_counter() - start) * 1e3)
            self._observe(times[-1])
        stream.rewind(first)
        self.vocode.restore(vocoder)
        return times

    def _account(self, compute_ms: float, budget_ms: float) -> None:
        stats, stream = self.stats, self.stream
        stats.ticks += 1
        stats.last_tick_ms = compute_ms
        stats.tick_ms.append(compute_ms)
        if compute_ms > budget_ms:
            stats.late_ticks += 1
            stream.steps = max(1, stream.steps - 1)
            self._on_time = 0
        else:
            self._on_time += 1
            if self._on_time >= self.recover_after and compute_ms < budget_ms / 2 and stream.steps < stream.max_steps:
                stream.steps += 1
                self._on_time = 0
        stats.steps = stream.steps

    def stop(self, timeout: float = 5.0) -> None:
        self.stop_event.set()
        if self.is_alive():
            self.join(timeout)
