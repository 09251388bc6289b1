"""Who gets the CPU first: the audio graph before generation (issue 21).

On a 2-core machine without real-time scheduling (a JACK server started with `--no-realtime`, as CI and many
desktops run it), every JACK client's process thread competes with the generation process's compute threads. When
generation wins, the whole graph xruns, every other client with it. So:

- ONNX Runtime and torch get `compute_threads()` intra-op threads: one core is left to the audio side (on 2 cores
  the worker thread alone computes);
- the generation worker thread runs with `SCHED_IDLE` while it keeps up (`WorkerPriority`): any thread that wakes
  up, the graph's among them, takes its core at once, and the scheduler counts its core as free when it places a
  waking thread. Measured with `jackd -v` on the dummy server (48 kHz / 256, no real-time), one 40-note probe run
  each: at `SCHED_BATCH` the server logged 24 and 42 xruns, most of them a JACK client of ours or the probe still
  "Triggered" (woken, not yet run) when the next cycle came; at `SCHED_IDLE` 1 and 8; with a second process
  spinning on the CPU 336 against 8 and 16;
- a `SCHED_IDLE` thread gets almost nothing while other work at normal priority fills every core (a training run
  on both cores gave ring underruns in 8 of the JACK end-to-end tests when the worker was merely niced). So when
  the worker is being starved (ticks late, or waiting to run for a quarter of their budget) it raises itself to
  `SCHED_BATCH` at nice 0, and goes back after `CALM_S` seconds without starving. Leaving `SCHED_IDLE` needs
  permission (root, `CAP_SYS_NICE` or an `RLIMIT_NICE` of 20, as an `audio` group's limits give): where it is not
  permitted, `auto` keeps the worker at `SCHED_BATCH` and says so in one line;
- the process's other threads run with `SCHED_BATCH` at nice 0, the engines' pool threads at a lower priority
  (`nice`, default 10). The JACK MIDI client's threads are left as they are: the graph waits for them every cycle
  (`lower_threads(exclude=...)`);
- the audio callback's thread asks for `SCHED_FIFO` where the system allows it (root, or an `rtprio` limit); where it
  does not, `play` says so in one line and goes on.

Linux applies nice values and scheduling policies per thread (a thread id is a `PRIO_PROCESS` / `sched_*` target),
and a new thread inherits its creator's: threads the lowered main thread starts later (the worker) are lowered too.
Elsewhere these functions do nothing and say why.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import deque

AUDIO_RT_PRIORITY = 70  # under JACK's own (a real-time jackd runs its clients at 70-ish, its driver above)


def thread_ids() -> set[int]:
    """This process's native thread ids (Linux: /proc/self/task; elsewhere just the calling thread's)."""
    try:
        return {int(tid) for tid in os.listdir("/proc/self/task")}
    except OSError:
        import threading

        return {threading.get_native_id()}


def compute_threads(cpus: int | None = None) -> int:
    """Intra-op threads for generation: every core this process may use but one (at least one)."""
    if cpus is None:
        try:
            cpus = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            cpus = os.cpu_count() or 1
    return max(1, cpus - 1)


def lower_threads(nice: int, exclude: set[int] = frozenset(), tids: set[int] | None = None) -> str | None:
    """Give this process's threads (or `tids`), except `exclude`, nice value `nice` and SCHED_BATCH. Returns None, or
    one line saying what could not be done (nothing here is fatal: generation still runs, at normal priority)."""
    if not sys.platform.startswith("linux"):
        return "generation runs at normal priority (per-thread priorities need Linux)"
    failed = []
    for tid in sorted((thread_ids() if tids is None else tids) - set(exclude)):
        try:
            os.setpriority(os.PRIO_PROCESS, tid, max(nice, os.getpriority(os.PRIO_PROCESS, tid)))
            os.sched_setscheduler(tid, os.SCHED_BATCH, os.sched_param(0))
        except ProcessLookupError:  # the thread ended meanwhile
            continue
        except OSError as error:
            failed.append(f"{tid}: {error.strerror}")
    return f"could not lower the priority of generation threads ({', '.join(failed)})" if failed else None


def priority_of(tid: int) -> tuple[int, int]:
    """(scheduling policy, nice value) of thread `tid` (os.SCHED_* constants)."""
    return os.sched_getscheduler(tid), os.getpriority(os.PRIO_PROCESS, tid)


def realtime_thread(tid: int, priority: int = AUDIO_RT_PRIORITY) -> str | None:
    """Ask for SCHED_FIFO at `priority` for thread `tid` (the audio callback's). Returns None, or one line saying why
    not (no permission: run as a user with an `rtprio` limit, e.g. in the `audio` group with JACK's limits.conf)."""
    if not tid:
        return "the audio thread has not run yet"
    if not hasattr(os, "sched_setscheduler"):
        return "no real-time priority for the audio thread on this system"
    try:
        os.sched_setscheduler(tid, os.SCHED_FIFO, os.sched_param(priority))
    except PermissionError:
        return ("no real-time priority for the audio thread (not permitted: add the user to the audio group with "
                "an rtprio limit)")
    except OSError as error:
        return f"no real-time priority for the audio thread ({error.strerror})"
    return None


GENERATION_PRIORITIES = ("auto", "idle", "batch")


def _set_policy(tid: int, policy: int) -> None:
    os.sched_setscheduler(tid, policy, os.sched_param(0))


def idle_can_be_left() -> bool:
    """Whether a thread of this process may go from SCHED_IDLE back to SCHED_BATCH (tried on a throwaway thread: the
    kernel asks for CAP_SYS_NICE or an RLIMIT_NICE that allows nice 0, and only trying tells a capability apart)."""
    if not hasattr(os, "SCHED_IDLE"):
        return False
    result = []

    def trial():
        tid = threading.get_native_id()
        try:
            _set_policy(tid, os.SCHED_IDLE)
            _set_policy(tid, os.SCHED_BATCH)
            result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=trial, name="live-synth-priority-trial")
    thread.start()
    thread.join()
    return bool(result and result[0])


class WorkerPriority:
    """The generation worker's own scheduling policy: SCHED_IDLE while it keeps up, SCHED_BATCH while starved.

    `mode`: "idle" (SCHED_IDLE, raised when starved), "batch" (SCHED_BATCH throughout, the policy before issue 21's
    measurements) or "auto": "idle" where the raise is permitted, else "batch" (`resolve`). The worker calls `enter`
    first in its own thread, then `observe` after every tick (its own thread only: no locks). A tick starves when it
    is late or when its wall time exceeds its thread's CPU time by a quarter of its budget (runnable but not run, or
    waiting for the GIL); `starved` such ticks among the last `window` raise the policy, `CALM_S` seconds without
    one lower it again. `raises` counts the raises (the report says how often generation had to claim the CPU).
    """

    CALM_S = 10.0

    def __init__(self, mode: str = "auto", *, window: int = 50, starved: int = 3, clock=None):
        if mode not in GENERATION_PRIORITIES:
            raise ValueError(f"generation priority must be one of {', '.join(GENERATION_PRIORITIES)}, not {mode!r}")
        self.mode, self.starved = mode, starved
        self.clock = clock or time.monotonic
        self.raises = 0
        self.raised = False
        self.tid = 0
        self._recent: deque[bool] = deque(maxlen=window)
        self._last_starved = 0.0
        self.note = ""  # one line for the log when the policy could not be what was asked

    def resolve(self) -> str:
        """Settle "auto" (and check "idle") on this system; returns the mode in force."""
        if not sys.platform.startswith("linux") or not hasattr(os, "SCHED_IDLE"):
            self.mode, self.note = "batch", "the generation worker keeps its priority (SCHED_IDLE needs Linux)"
        elif self.mode != "batch" and not idle_can_be_left():
            if self.mode == "auto":
                self.mode = "batch"
                self.note = ("generation worker at SCHED_BATCH: SCHED_IDLE would need permission to raise it back "
                             "when starved (CAP_SYS_NICE or RLIMIT_NICE 20, e.g. the audio group's limits)")
            else:
                self.note = "generation worker at SCHED_IDLE, and it cannot be raised when starved (no permission)"
        elif self.mode == "auto":
            self.mode = "idle"
        return self.mode

    @property
    def policy(self) -> str:
        return "SCHED_BATCH" if self.mode == "batch" or self.raised else "SCHED_IDLE"

    def enter(self) -> None:
        """In the worker's thread, before its first tick."""
        self.tid = threading.get_native_id()
        if self.mode == "idle":
            self._apply(os.SCHED_IDLE)

    def observe(self, wall_ms: float, cpu_ms: float, budget_ms: float) -> None:
        """After a tick (worker thread): raise the policy while starved, lower it again once calm."""
        if self.mode != "idle" or not self.tid:
            return
        starved = wall_ms > budget_ms or wall_ms - cpu_ms > budget_ms / 4
        self._recent.append(starved)
        now = self.clock()
        if starved:
            self._last_starved = now
        if not self.raised and starved and sum(self._recent) >= self.starved:
            if self._apply(os.SCHED_BATCH):
                self.raised, self.raises = True, self.raises + 1
                self._recent.clear()
        elif self.raised and now - self._last_starved > self.CALM_S:
            if self._apply(os.SCHED_IDLE):
                self.raised = False

    def _apply(self, policy: int) -> bool:
        try:
            _set_policy(self.tid, policy)
            return True
        except OSError:
            return False
