"""The generation side of `play` in its own process, joined to the audio process by a ring in shared memory.

Shared memory block (created by the audio process, attached by the generation process):
  [0, 48)            the ring's six int64 counters (write index, read index, underruns, underrun samples, and the
                     consumer's clock stamp: read index and monotonic ns)
  [48, 48 + 8 K)     K float64 counters named by `generation.STATS` (ticks, late ticks, ready, start time, ...)
  [.., + 4 cap)      the ring's float32 samples (mono)
Only the generation process writes samples, the write index and the STATS (except `start_time`, `go` and `stop`,
which the audio process writes: `start_time` once before `go`); only the audio callback writes the read index and
underrun counters. Messages (log lines, the final report, an error) go through a multiprocessing queue, never
through the callback. `go` and `stop` are flags in shared memory that the child polls, not multiprocessing Events:
an Event's `set()` takes a lock the child takes in every `wait()`, and a child killed while holding it (SIGKILL,
the OOM killer) left `play` waiting on that lock forever, deaf to signals.

The child ignores SIGINT: Ctrl-C reaches the whole process group, and the audio process stops the child through
`stop` after it has stopped the stream, so that the recording and the counters are complete. SIGTERM and SIGHUP
sent to the audio process stop it the same way (`session._Signals`). If the audio process dies without
that (SIGKILL, a crash), the child notices within 0.1 s that its parent is gone and exits: it watches its parent's
pid, and on Linux the kernel also sends it SIGTERM at once (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import signal
import time
import traceback
from multiprocessing import shared_memory

import numpy as np

from live_synth.errors import LiveSynthError
from live_synth.live.ring import COUNTERS, SpscRing, ring_capacity
from live_synth.live.generation import STATS, Generation, PlaySettings

_HEADER = 8 * COUNTERS


def _views(buf, cap: int):
    counters = np.ndarray((COUNTERS,), np.int64, buffer=buf, offset=0)
    stats = np.ndarray((len(STATS),), np.float64, buffer=buf, offset=_HEADER)
    data = np.ndarray((cap, 1), np.float32, buffer=buf, offset=_HEADER + 8 * len(STATS))
    return counters, stats, data


def block_size(cap: int) -> int:
    return _HEADER + 8 * len(STATS) + 4 * cap


class LocalGeneration:
    """The generation side in this process's threads (`play --in-process`)."""

    def __init__(self, generation: Generation):
        self.generation = generation
        self.stats = np.zeros(len(STATS))

    def start(self, capacity: int, samplerate: int) -> SpscRing:
        ring = SpscRing(capacity)
        self.generation.prepare(ring, samplerate, self.stats)
        return ring

    def go(self, start_time: float) -> None:
        self.stats[STATS.index("start_time")] = start_time
        self.generation.go(start_time)

    def alive(self) -> bool:
        return self.generation.poll()

    def finish(self, timeout_s: float = 60.0) -> dict:
        return self.generation.finish()

    def close(self) -> None:
        pass


def _die_with_parent(parent: int) -> None:
    """Linux: ask the kernel for SIGTERM when the parent dies (the pid watch below covers other systems)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before the request was in place
        os._exit(1)


def _parent_alive(parent: int) -> bool:
    return os.getppid() == parent


def _child_main(settings: PlaySettings, shm_name: str, cap: int, samplerate: int, messages, parent: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent(parent)
    shm = shared_memory.SharedMemory(name=shm_name)
    ring = counters = stats = data = None
    try:
        counters, stats, data = _views(shm.buf, cap)
        ring = SpscRing(cap, buffers=(data, counters))
        generation = Generation(settings, log=lambda line: messages.put(("log", line)))
        generation.prepare(ring, samplerate, stats)
        go, stop = STATS.index("go"), STATS.index("stop")
        while not stats[go]:
            time.sleep(0.05)
            if stats[stop] or not _parent_alive(parent):
                messages.put(("done", generation.finish()))
                return
        generation.go(float(stats[STATS.index("start_time")]))
        while not stats[stop]:
            time.sleep(0.1)
            if not generation.poll() or not _parent_alive(parent):
                break
        messages.put(("done", generation.finish()))
    except LiveSynthError as exc:
        messages.put(("error", str(exc)))
    except BaseException as exc:  # a bug: its traceback goes to stderr, its one line to the audio process
        traceback.print_exc()
        messages.put(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        del ring, counters, stats, data
        try:
            shm.close()
        except BufferError:  # the worker's objects still hold views; the mapping goes with the process
            pass


class GenerationProcess:
    """The generation side in a spawned process (the default)."""

    def __init__(self, settings: PlaySettings, log=print, start_timeout_s: float = 600.0):
        self.settings, self.log, self.start_timeout_s = settings, log, start_timeout_s
        self.ctx = mp.get_context("spawn")  # no fork: the audio process has PortAudio/JACK threads
        self.shm: shared_memory.SharedMemory | None = None
        self.process = None
        self.error: str | None = None
        self.result: dict | None = None

    def start(self, capacity: int, samplerate: int) -> SpscRing:
        cap = ring_capacity(capacity)
        self.shm = shared_memory.SharedMemory(create=True, size=block_size(cap))
        counters, self.stats, data = _views(self.shm.buf, cap)
        counters[:], self.stats[:], data[:] = 0, 0, 0
        self.ring = SpscRing(cap, buffers=(data, counters))
        self.messages = self.ctx.Queue()
        self.process = self.ctx.Process(target=_child_main, name="live-synth-generation", daemon=True,
                                        args=(self.settings, self.shm.name, cap, samplerate, self.messages,
                                              os.getpid()))
        self.process.start()
        deadline = time.monotonic() + self.start_timeout_s
        while not self.stats[STATS.index("ready")]:
            self._drain(0.05)
            if self.error:
                raise LiveSynthError(self.error)
            if not self.process.is_alive():
                self._drain(0.5)
                raise LiveSynthError(self.error or f"the generation process exited ({self.process.exitcode})")
            if time.monotonic() > deadline:
                raise LiveSynthError(f"the generation process was not ready after {self.start_timeout_s:.0f} s")
        return self.ring

    def _drain(self, timeout: float) -> None:
        try:
            kind, payload = self.messages.get(timeout=timeout)
        except queue.Empty:
            return
        while True:
            if kind == "log":
                self.log(payload)
            elif kind == "error":
                self.error = payload
            elif kind == "done":
                self.result = payload
            try:
                kind, payload = self.messages.get_nowait()
            except queue.Empty:
                return

    def go(self, start_time: float) -> None:
        self.stats[STATS.index("start_time")] = start_time
        self.stats[STATS.index("go")] = 1

    def alive(self) -> bool:
        self._drain(0.0)
        return self.process.is_alive() and self.error is None and self.result is None

    def finish(self, timeout_s: float = 60.0) -> dict:
        """Tell the generation process to finish and wait up to `timeout_s` for its report (`close` kills it after
        a short grace if it is still there: after a fault its MIDI client may hang on a dead server)."""
        self.stats[STATS.index("stop")] = 1
        deadline = time.monotonic() + timeout_s
        while self.result is None and self.error is None and time.monotonic() < deadline:
            self._drain(0.05)
            if not self.process.is_alive():
                self._drain(0.5)
                break
        self.process.join(timeout=min(10.0, max(timeout_s - 0.5, 0.1)))
        if self.error:
            raise LiveSynthError(self.error)
        if self.result is None:
            raise LiveSynthError(f"the generation process ended without a report (exit {self.process.exitcode})")
        return self.result

    def close(self) -> None:
        if self.process is not None and self.process.is_alive():
            self.stats[STATS.index("stop")] = 1
            self.process.join(timeout=0.3)
            if self.process.is_alive():
                self.process.kill()
                self.process.join()
        if self.shm is not None:
            self.stats = np.array(self.stats)  # keep the last counters, let go of the shared view
            self.ring = None
            try:
                self.shm.close()
            except BufferError:  # the caller's ring or stream still holds a view: unmapped at exit
                pass
            self.shm.unlink()
            self.shm = None
