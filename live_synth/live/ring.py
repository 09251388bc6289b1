"""Single-producer single-consumer ring of float32 audio samples (the real-time boundary, architecture.md).

Contract:
- one producer thread (the generation worker) calls `write`, `truncate` and `peek`; one consumer (the audio
  callback) calls `read_into`;
- storage is preallocated at construction; `read_into` takes no lock, never waits, allocates no buffers (NumPy
  creates small view objects, nothing that grows with the block size) and never raises on an underrun: missing
  samples become zeros and the underrun is counted;
- the indices are monotonically increasing int64 counters in a small NumPy array next to the samples, so the whole
  ring can live in shared memory (`buffers=`): `play` runs generation in its own process (live/engine_process.py).

- the producer may take back samples it wrote and has not seen read (`truncate`, the live loop's rollback), but
  never within `guard` samples of the read index: the consumer is never handed a block that is being rewritten.

Clock stamps. A consumer that passes `now_ns` (the audio callback: `time.monotonic_ns()`) publishes, with each
read, the read index it started from and when: the producer maps a wall-clock time to a ring position from these
(`stamp`) instead of assuming the device consumed at the nominal rate since it started. A host that skips or delays
cycles (a JACK xrun) makes the device fall behind the wall clock; without the stamps every later note would be
placed that much later (measured: note-on -> sound grew from 50 to 440 ms over 30 s on the JACK dummy server).
The pair is written read index first, time second; `stamp` reads time, index, time and retries if the time moved.

Memory ordering: each side stores the samples before it publishes the new index, in program order. That is enough
on x86 (TSO) and under CPython's GIL; a port to a weakly ordered CPU with a compiled consumer needs release/acquire
fences around the index stores.

Why a rewrite cannot tear a block (`truncate`). The consumer reads W and R, copies [R, R + n) with n <= W - R and at
most one callback's frames (`max_block`), then publishes R + n. The producer, to rewrite from position P, stores
W' = max(P, R_seen + guard) as the new write index *first*, and only later (after generating the new audio: many
microseconds) writes samples at [W', ...) and publishes the new W. A consumer callback that began before the store
of W' copies at most [R, R + max_block), with R <= R_seen + max_block (it may have published one block since the
producer read R), so it ends at or before R_seen + 2 max_block <= W' when guard >= 2 max_block: it never touches the
rewritten span. A callback that begins after the store sees W' and cannot read past it until the new samples and
their W are published. So every block the consumer gets is entirely old audio or entirely new audio (a rewritten
span is never read half-written), and since R only moves by what was copied, no sample is skipped or repeated.
On x86 (TSO) stores are seen in program order; the producer's store of W' and its later loads are separated by
the regeneration's work, and the rewritten samples are stored before W is published. A compiled consumer on a
weakly ordered CPU needs an acquire load of W and a release store of R; the producer a release store of W.
"""

from __future__ import annotations

import numpy as np

_WRITE, _READ, _UNDERRUNS, _UNDERRUN_SAMPLES, _STAMP_READ, _STAMP_NS = range(6)
COUNTERS = 6


def ring_capacity(capacity: int) -> int:
    """The ring's real capacity for a requested one: the next power of two."""
    return 1 << max(int(capacity) - 1, 1).bit_length()


class SpscRing:
    def __init__(self, capacity: int, channels: int = 1, buffers: tuple[np.ndarray, np.ndarray] | None = None,
                 guard: int = 1024):
        """`capacity` samples per channel (rounded up to a power of two). `buffers` = (samples [cap, ch] float32,
        counters [COUNTERS] int64) to place the ring in memory the caller owns (e.g. multiprocessing.shared_memory).
        `guard`: samples past the read index that `truncate` never takes back (>= 2 device periods)."""
        cap = ring_capacity(capacity)
        if buffers is None:
            buffers = (np.zeros((cap, channels), np.float32), np.zeros(COUNTERS, np.int64))
        self.data, self.counters = buffers
        if self.data.shape != (cap, channels) or self.counters.shape != (COUNTERS,):
            raise ValueError(f"ring buffers must be [{cap}, {channels}] float32 and [{COUNTERS}] int64")
        self.capacity, self.mask = cap, cap - 1
        self.guard = int(guard)

    # -- either thread: reading counters is safe from both sides -------------------------------------------------
    def available(self) -> int:
        """Samples written and not yet read."""
        return int(self.counters[_WRITE] - self.counters[_READ])

    def free(self) -> int:
        return self.capacity - self.available()

    @property
    def write_index(self) -> int:
        return int(self.counters[_WRITE])

    @property
    def read_index(self) -> int:
        return int(self.counters[_READ])

    @property
    def underruns(self) -> int:
        """Callbacks that found fewer samples than they needed."""
        return int(self.counters[_UNDERRUNS])

    @property
    def underrun_samples(self) -> int:
        return int(self.counters[_UNDERRUN_SAMPLES])

    def stamp(self) -> tuple[int, float] | None:
        """(read index, monotonic seconds) of the consumer's latest stamped read; None before the first one."""
        counters = self.counters
        for _ in range(8):
            ns = int(counters[_STAMP_NS])
            position = int(counters[_STAMP_READ])
            if ns == int(counters[_STAMP_NS]):
                return (position, ns * 1e-9) if ns else None
        return None

    # -- producer thread only --------------------------------------------------------------------------------------
    def write(self, samples: np.ndarray) -> int:
        """Append up to `free()` samples [n] or [n, ch]; returns how many were written (never blocks)."""
        if len(samples) == 0:
            return 0
        block = samples.reshape(len(samples), -1)
        n = min(len(block), self.free())
        start = int(self.counters[_WRITE]) & self.mask
        first = min(n, self.capacity - start)
        self.data[start : start + first] = block[:first]
        self.data[: n - first] = block[first:n]
        self.counters[_WRITE] += n  # publish after the samples are in place
        return n

    def truncate(self, position: int) -> int:
        """Take back the samples from `position` on, except those within `guard` of the read index; returns the new
        write index (>= position). The samples past it stay in memory until overwritten (`peek` reads them)."""
        end = int(self.counters[_WRITE])
        cut = max(int(position), int(self.counters[_READ]) + self.guard)
        if cut >= end:
            return end
        self.counters[_WRITE] = cut  # published before any sample at or past `cut` is rewritten
        # Re-read the read index after publishing: if this thread was preempted between the first read and the
        # store, a callback may have started closer to `cut` than the guard allows. Its span is old audio, still
        # intact (nothing has been rewritten yet), so giving it back keeps every block whole.
        late = int(self.counters[_READ]) + self.guard
        if late > cut:
            cut = min(end, late)
            self.counters[_WRITE] = cut
        return cut

    def peek(self, position: int, n: int) -> np.ndarray:
        """A copy of the samples at ring positions [position, position + n) (producer: the old audio at a seam)."""
        idx = (np.arange(position, position + n) & self.mask)
        return self.data[idx, 0].copy() if self.data.shape[1] == 1 else self.data[idx].copy()

    # -- consumer (audio callback) only ----------------------------------------------------------------------------
    def read_into(self, out: np.ndarray, now_ns: int = 0) -> int:
        """Fill `out` [frames, ch] with the oldest samples, zeros where there are none; returns samples read.
        `now_ns`: the consumer's monotonic clock at this read (published with the read index, see `stamp`)."""
        frames = out.shape[0]
        counters = self.counters
        if now_ns:
            counters[_STAMP_READ] = counters[_READ]
            counters[_STAMP_NS] = now_ns
        n = max(0, min(frames, int(counters[_WRITE] - counters[_READ])))
        start = int(counters[_READ]) & self.mask
        first = min(n, self.capacity - start)
        out[:first] = self.data[start : start + first]
        out[first:n] = self.data[: n - first]
        if n < frames:
            out[n:] = 0.0
            counters[_UNDERRUNS] += 1
            counters[_UNDERRUN_SAMPLES] += frames - n
        counters[_READ] += n  # publish after the samples were copied out
        return n
