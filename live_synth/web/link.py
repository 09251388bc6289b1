"""What joins the page's server (control process) to the generation side: events up, frames down.

Events up. The server validates a page's message, stamps its arrival (`time.monotonic`, the clock rtmidi's input
stamps with, system-wide) and puts (time, message) on a multiprocessing queue. In the generation process an inbox
thread takes them and pushes them into a `MidiQueue`, the same bounded queue with the same drop / priority /
recovery policy as rtmidi's input; `PageSource` merges that queue with the session's own MIDI source for the worker,
in arrival order. So a page's note takes the same path as a keyboard's from the stamp on: placement at arrival + D,
rollback, coalescing within a drain, and a flood dropped the way a MIDI flood is. The cross-process queue is bounded
too: the server stops sending (and counts the drops) once `MAX_IN_FLIGHT` events are not yet taken by the inbox.

Frames down. `MelTap` wraps the worker's live stream: each generated frame is written, quantized to a byte per mel
bin, into a shared-memory table of `FRAMES` rows indexed by frame number, with the pitches sounding at that frame
and a flag when it is a regeneration (rollback). A rollback rewrites rows; the server only reads rows of frames that
have been handed to the device (which no rollback can touch any more). A row's stamp is set to -1 while it is written
and to its frame number after, so a reader never takes a half-written row for a whole one.

Threads: `MelTap` runs in the generation worker (a few µs per frame: one quantization and a mask); the inbox thread
in the generation process; `send_event` / `read_frames` in the server's thread.
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import threading
import time
from multiprocessing import shared_memory

import numpy as np

from live_synth.constants import FRAME_RATE, LOG_MEL_MAX, LOG_MEL_MIN
from live_synth.live.midi_in import MidiQueue, _is_priority, is_release, recovery_messages
from live_synth.live.wrapped_stream import WrappedStream
from live_synth.web.protocol import MASK_BYTES, MISSING, N_MELS, ROLLED_BACK

FRAMES = 1024  # rows of the frame table: 20 s of frames
MAX_IN_FLIGHT = 4096
_H = 16  # int64 header slots
SENT, TAKEN, TICK_P50_US, TICK_P99_US, PAGE_RECEIVED, PAGE_DROPPED, WRITTEN = range(7)


def _views(buf):
    header = np.ndarray((_H,), np.int64, buffer=buf, offset=0)
    stamps = np.ndarray((FRAMES,), np.int64, buffer=buf, offset=8 * _H)
    off = 8 * _H + 8 * FRAMES
    mel = np.ndarray((FRAMES, N_MELS), np.uint8, buffer=buf, offset=off)
    masks = np.ndarray((FRAMES, MASK_BYTES), np.uint8, buffer=buf, offset=off + FRAMES * N_MELS)
    flags = np.ndarray((FRAMES,), np.uint8, buffer=buf, offset=off + FRAMES * (N_MELS + MASK_BYTES))
    return header, stamps, mel, masks, flags


_SIZE = 8 * _H + FRAMES * (8 + N_MELS + MASK_BYTES + 1)


class PageLink:
    """Created by the control process (`create`), handed to the generation side inside `PlaySettings` (pickled:
    the shared memory by name, the queue as multiprocessing passes queues to a spawned process)."""

    def __init__(self, shm_name: str, events, owner: bool = False):
        self.shm_name, self.events, self.owner = shm_name, events, owner
        self.shm = shared_memory.SharedMemory(name=shm_name, create=False) if not owner else None
        self._attach()

    @classmethod
    def create(cls) -> PageLink:
        shm = shared_memory.SharedMemory(create=True, size=_SIZE)
        link = cls.__new__(cls)
        link.shm_name, link.events, link.owner, link.shm = shm.name, mp.get_context("spawn").Queue(), True, shm
        link._attach()
        link.stamps[:] = -1
        link.header[:] = 0
        return link

    def _attach(self) -> None:
        self.header, self.stamps, self.mel, self.masks, self.flags = _views(self.shm.buf)
        self.dropped_in_flight = 0
        self._recover_at: float | None = None

    def __getstate__(self):
        return {"shm_name": self.shm_name, "events": self.events}

    def __setstate__(self, state):
        self.__init__(state["shm_name"], state["events"])

    def close(self) -> None:
        """Let go of the shared memory (the creator also removes it)."""
        if self.shm is None:
            return
        self.header = self.stamps = self.mel = self.masks = self.flags = None
        try:
            self.shm.close()
        except BufferError:  # a view is still held somewhere: unmapped at exit
            pass
        if self.owner:
            self.shm.unlink()
            self.events.close()
        self.shm = None

    # -- control process (the server's thread) -------------------------------------------------------------------
    def send_event(self, t: float, message: list[int]) -> bool:
        """Hand a validated message that arrived at `t` to the generation side; False (dropped, counted) when the
        inbox has fallen behind: the MIDI queue's policy again, a quarter of `MAX_IN_FLIGHT` kept for priority
        messages (releases, program changes), and a release lost even so is made good by an all-notes-off recovery
        (`midi_in.recovery_messages`) sent, stamped like it, as soon as there is room."""
        in_flight = self.header[SENT] - self.header[TAKEN]
        limit = MAX_IN_FLIGHT if _is_priority(message) else MAX_IN_FLIGHT - MAX_IN_FLIGHT // 4
        if in_flight >= limit:
            self.dropped_in_flight += 1
            if is_release(message) and self._recover_at is None:
                self._recover_at = t
            return False
        if self._recover_at is not None:
            self.header[SENT] += 1
            self.events.put_nowait((self._recover_at, None))  # None: the recovery (`PageSource._take`)
            self._recover_at = None
        self.header[SENT] += 1
        self.events.put_nowait((t, message))
        return True

    def read_frames(self, first: int, stop: int):
        """Rows of frames [first, stop) (at most FRAMES, the newest): (first, mel, masks, flags), flags MISSING
        where a row does not hold its frame (never generated, or overwritten by a newer one)."""
        first = max(first, stop - FRAMES)
        frames = np.arange(first, stop)
        rows = frames % FRAMES
        mel, masks, flags = self.mel[rows].copy(), self.masks[rows].copy(), self.flags[rows].copy()
        ok = self.stamps[rows] == frames  # read after the rows: a row rewritten meanwhile fails this
        mel[~ok], masks[~ok], flags[~ok] = 0, 0, MISSING
        return first, mel, masks, flags

    def tick_percentiles_ms(self) -> tuple[float, float]:
        return self.header[TICK_P50_US] / 1e3, self.header[TICK_P99_US] / 1e3

    # -- generation process -------------------------------------------------------------------------------------
    def publish(self, tick_ms, page: MidiQueue | None) -> None:
        """The worker's recent tick times (p50 / p99 of the last 500) and the page queue's counters (the generation
        process's poll loop, a few times a second)."""
        recent = list(tick_ms)[-500:]
        if recent:
            p50, p99 = np.percentile(recent, [50, 99])
            self.header[TICK_P50_US], self.header[TICK_P99_US] = int(p50 * 1e3), int(p99 * 1e3)
        if page is not None:
            self.header[PAGE_RECEIVED], self.header[PAGE_DROPPED] = page.received, page.dropped


class MelTap(WrappedStream):
    """A live stream (`synth.LiveStream`) that also writes every frame it generates into the link's frame table.
    Thread: the generation worker."""

    def __init__(self, stream, link: PageLink):
        super().__init__(stream)
        self.link = link
        self._regenerating_until = -1
        self._scale = 255.0 / (LOG_MEL_MAX - LOG_MEL_MIN)
        self._mask = np.zeros(MASK_BYTES * 8, bool)

    def rewind(self, frame: int) -> None:
        self._regenerating_until = max(self._regenerating_until, self.inner.frame)
        self.inner.rewind(frame)

    def generate(self, notes) -> np.ndarray:
        first = self.inner.frame
        frames = self.inner.generate(notes)
        link = self.link
        if link.stamps is None:
            return frames
        q = np.clip((np.asarray(frames) - LOG_MEL_MIN) * self._scale, 0, 255).astype(np.uint8)
        for i in range(len(frames)):
            f = first + i
            row = f % FRAMES
            link.stamps[row] = -1
            link.mel[row] = q[i]
            link.masks[row] = self._sounding(notes, f / FRAME_RATE)
            link.flags[row] = ROLLED_BACK if f < self._regenerating_until else 0
            link.stamps[row] = f
        link.header[WRITTEN] = first + len(frames)
        return frames

    def _sounding(self, notes, t: float) -> np.ndarray:
        """The 128-bit mask of pitches sounding at time t (the note state's held, pedal-held and recent notes)."""
        mask = self._mask
        mask[:] = False
        held = getattr(notes, "held", None)
        if held is not None:
            for note in (*held.values(), *notes.sustained, *notes.finished[-32:]):
                if note.start <= t + 1 / FRAME_RATE and (note.end is None or note.end > t):
                    mask[note.pitch] = True
        return np.packbits(mask, bitorder="little")


class _PageQueue(MidiQueue):
    """The page's MidiQueue; wakes the worker through another source's pipe when it has one."""

    def __init__(self, wake_w: int | None):
        super().__init__()
        self._other_wake = wake_w

    def _wake(self) -> None:
        super()._wake()
        if self._other_wake is not None:
            try:
                import os

                os.write(self._other_wake, b"\x01")
            except (BlockingIOError, OSError):
                pass


class PageSource:
    """The session's MIDI source (`MidiInput` or `MidiFileSource`) merged with the page's events, for the worker
    (`worker.MidiSource`). Everything but draining and the counters is the primary source's."""

    def __init__(self, primary, link: PageLink):
        self.primary, self.link = primary, link
        self.page = _PageQueue(getattr(primary, "_wake_w", None))
        fd = getattr(primary, "wake_fd", None)
        self.wake_fd = fd if fd is not None else self.page.wake_fd
        self._stop = False
        self._inbox = threading.Thread(target=self._take, name="live-synth-page-inbox", daemon=True)
        self._inbox.start()

    def _take(self) -> None:
        """Inbox thread: the cross-process queue -> the page's MidiQueue (its only producer)."""
        events, header = self.link.events, self.link.header
        while not self._stop:
            try:
                item = events.get(timeout=0.2)
            except queue.Empty:
                continue
            except (EOFError, OSError, ValueError):  # the control process went away
                return
            header[TAKEN] += 1
            t, message = item
            if message is None:  # releases were lost between the processes: sustain up, all notes off
                for recovery in recovery_messages():
                    self.page.push(t, recovery)
            else:
                self.page.push(t, message)

    def drain(self) -> list[tuple[float, list[int]]]:
        page = self.page.drain()
        own = self.primary.drain()
        if not page:
            return own
        if not own:
            return page
        return sorted(own + page, key=lambda item: item[0])  # stable: each source's order is kept

    def next_due(self) -> float | None:
        return self.primary.next_due()

    @property
    def received(self) -> int:
        return self.primary.received + self.page.received

    @property
    def dropped(self) -> int:
        return getattr(self.primary, "dropped", 0) + self.page.dropped

    def close(self) -> None:
        self._stop = True
        self._inbox.join(timeout=1.0)
        if hasattr(self.primary, "close"):
            self.primary.close()

    def __getattr__(self, name):  # is_alive, port_name, finished, start, duration, ...
        return getattr(self.primary, name)


def heard_frame(read_index: int, rate: int, resampler_ms: float, vocoder_ms: float) -> int:
    """The first frame not yet handed to the device, from the ring's read index (frames before it are final)."""
    ms = 1000.0 * read_index / rate - resampler_ms - vocoder_ms
    return max(0, int(ms * FRAME_RATE / 1000.0))


def now() -> float:
    """The arrival stamp's clock (the one rtmidi's input and the worker use)."""
    return time.monotonic()
