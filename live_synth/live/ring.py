"""Single-producer single-consumer ring of float32 audio samples (the real-time boundary, architecture.md).

Contract:
- one producer thread (the generation worker) calls `write`; one consumer (the audio callback) calls `read_into`;
- storage is preallocated at construction; `read_into` takes no lock, never waits, allocates no buffers (NumPy
  creates small view objects, nothing that grows with the block size) and never raises on an underrun: missing
  samples become zeros and the underrun is counted;
- the indices are monotonically increasing int64 counters in a small NumPy array next to the samples, so the whole
  ring can live in shared memory (`buffers=`): `play` runs generation in its own process (live/engine_process.py).

Memory ordering: each side stores the samples before it publishes the new index, in program order. That is enough
on x86 (TSO) and under CPython's GIL; a port to a weakly ordered CPU with a compiled consumer needs release/acquire
fences around the index stores.
"""

from __future__ import annotations

import numpy as np

_WRITE, _READ, _UNDERRUNS, _UNDERRUN_SAMPLES = range(4)


def ring_capacity(capacity: int) -> int:
    """The ring's real capacity for a requested one: the next power of two."""
    return 1 << max(int(capacity) - 1, 1).bit_length()


class SpscRing:
    def __init__(self, capacity: int, channels: int = 1, buffers: tuple[np.ndarray, np.ndarray] | None = None):
        """`capacity` samples per channel (rounded up to a power of two). `buffers` = (samples [cap, ch] float32,
        counters [4] int64) to place the ring in memory the caller owns (e.g. multiprocessing.shared_memory)."""
        cap = ring_capacity(capacity)
        if buffers is None:
            buffers = (np.zeros((cap, channels), np.float32), np.zeros(4, np.int64))
        self.data, self.counters = buffers
        if self.data.shape != (cap, channels) or self.counters.shape != (4,):
            raise ValueError(f"ring buffers must be [{cap}, {channels}] float32 and [4] int64")
        self.capacity, self.mask = cap, cap - 1

    # -- either thread: reading counters is safe from both sides -------------------------------------------------
    def available(self) -> int:
        """Samples written and not yet read."""
        return int(self.counters[_WRITE] - self.counters[_READ])

    def free(self) -> int:
        return self.capacity - self.available()

    @property
    def underruns(self) -> int:
        """Callbacks that found fewer samples than they needed."""
        return int(self.counters[_UNDERRUNS])

    @property
    def underrun_samples(self) -> int:
        return int(self.counters[_UNDERRUN_SAMPLES])

    # -- producer thread only --------------------------------------------------------------------------------------
    def write(self, samples: np.ndarray) -> int:
        """Append up to `free()` samples [n] or [n, ch]; returns how many were written (never blocks)."""
        block = samples.reshape(len(samples), -1)
        n = min(len(block), self.free())
        start = int(self.counters[_WRITE]) & self.mask
        first = min(n, self.capacity - start)
        self.data[start : start + first] = block[:first]
        self.data[: n - first] = block[first:n]
        self.counters[_WRITE] += n  # publish after the samples are in place
        return n

    # -- consumer (audio callback) only ----------------------------------------------------------------------------
    def read_into(self, out: np.ndarray) -> int:
        """Fill `out` [frames, ch] with the oldest samples, zeros where there are none; returns samples read."""
        frames = out.shape[0]
        counters = self.counters
        n = min(frames, int(counters[_WRITE] - counters[_READ]))
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
