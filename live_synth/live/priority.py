"""Who gets the CPU first: the audio graph before generation (issue 21).

On a 2-core machine without real-time scheduling (a JACK server started with `--no-realtime`, as CI and many
desktops run it), every JACK client's process thread competes with the generation process's compute threads. When
generation wins, the whole graph xruns, every other client with it. So:

- ONNX Runtime and torch get `compute_threads()` intra-op threads: one core is left to the audio side (on 2 cores
  the worker thread alone computes);
- the generation process's threads run with `SCHED_BATCH` (they do not preempt the threads the graph waits for
  when they wake), the engines' pool threads also at a lower priority (`nice`, default 10). The worker thread
  itself stays at nice 0: niced, it starved whenever more CPU-bound work than cores ran at normal priority (ring
  underruns in 8 of the JACK end-to-end tests while a training run loaded both cores), and it holds the GIL that
  the JACK MIDI thread needs when a message arrives, so a starved worker stalled the graph too. The JACK MIDI
  client's threads are left as they are: the graph waits for them every cycle (`lower_threads(exclude=...)`);
- the audio callback's thread asks for `SCHED_FIFO` where the system allows it (root, or an `rtprio` limit); where it
  does not, `play` says so in one line and goes on.

Linux applies nice values and scheduling policies per thread (a thread id is a `PRIO_PROCESS` / `sched_*` target),
and a new thread inherits its creator's: threads the lowered main thread starts later (the worker) are lowered too.
Elsewhere these functions do nothing and say why.
"""

from __future__ import annotations

import os
import sys

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
