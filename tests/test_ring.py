"""The SPSC ring: wrap-around at odd block sizes, underruns counted as zeros, and two threads hammering it."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from live_synth.live.ring import COUNTERS, SpscRing

BLOCKS = [1, 64, 65, 8192, 8193]  # pedalboard's sweep: powers of two and one past them


def test_capacity_rounds_up_to_a_power_of_two():
    assert SpscRing(1000).capacity == 1024 and SpscRing(1024).capacity == 1024


@pytest.mark.parametrize("block", BLOCKS)
def test_samples_come_out_in_order_across_wrap_around(block):
    ring = SpscRing(3 * block + 7)
    counter = 0.0
    expected = 0.0
    out = np.empty((block, 1), np.float32)
    for _ in range(7):
        chunk = np.arange(counter, counter + 2 * block, dtype=np.float32)
        counter += ring.write(chunk)
        for _ in range(2):
            assert ring.read_into(out) == block
            np.testing.assert_array_equal(out[:, 0], np.arange(expected, expected + block, dtype=np.float32))
            expected += block
    assert ring.underruns == 0 and ring.available() == 0


def test_underrun_reads_what_is_there_then_zeros_and_counts():
    ring = SpscRing(16)
    ring.write(np.ones(5, np.float32))
    out = np.full((8, 1), 7.0, np.float32)
    assert ring.read_into(out) == 5
    assert out[:5, 0].tolist() == [1.0] * 5 and out[5:, 0].tolist() == [0.0] * 3
    assert ring.underruns == 1 and ring.underrun_samples == 3
    assert ring.read_into(out) == 0 and ring.underruns == 2 and not out.any()


def test_write_never_overwrites_unread_samples():
    ring = SpscRing(8)
    assert ring.write(np.arange(20, dtype=np.float32)) == 8
    assert ring.write(np.ones(3, np.float32)) == 0
    out = np.empty((8, 1), np.float32)
    ring.read_into(out)
    assert out[:, 0].tolist() == list(range(8))


def test_stereo_and_external_buffers():
    data, counters = np.zeros((16, 2), np.float32), np.zeros(COUNTERS, np.int64)
    ring = SpscRing(16, channels=2, buffers=(data, counters))
    ring.write(np.array([[1, -1], [2, -2]], np.float32))
    assert counters[0] == 2 and data[1].tolist() == [2.0, -2.0]
    with pytest.raises(ValueError):
        SpscRing(16, channels=2, buffers=(np.zeros((8, 2), np.float32), counters))


def test_producer_and_consumer_threads_never_tear_or_reorder():
    """A producer writes a ramp in odd chunks, a consumer reads odd blocks; every non-zero sample read continues the
    ramp (zeros only where an underrun was counted), and nothing is lost or duplicated."""
    ring = SpscRing(4096)
    total = 400_000
    received: list[np.ndarray] = []
    done = threading.Event()

    def produce():
        sent, rng = 0, np.random.default_rng(0)
        while sent < total:
            n = int(rng.integers(1, 3000))
            sent += ring.write(np.arange(sent + 1, min(sent + n, total) + 1, dtype=np.float32))
        done.set()

    def consume():
        out = np.empty((257, 1), np.float32)
        while not (done.is_set() and ring.available() == 0):
            n = ring.read_into(out)
            received.append(out[:n, 0].copy())

    threads = [threading.Thread(target=produce), threading.Thread(target=consume)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    got = np.concatenate(received)
    np.testing.assert_array_equal(got, np.arange(1, total + 1, dtype=np.float32))


# -- rewriting what has not been read (the live loop's rollback) ----------------------------------------------------


def test_truncate_never_takes_back_the_guard_and_peek_reads_the_old_samples():
    ring = SpscRing(1024, guard=100)
    ring.write(np.arange(1, 601, dtype=np.float32))
    out = np.empty((50, 1), np.float32)
    ring.read_into(out)  # read index 50
    assert ring.truncate(400) == 400 and ring.available() == 350
    assert ring.truncate(10) == 150  # not within the guard of the read index
    np.testing.assert_array_equal(ring.peek(150, 3), [151, 152, 153])  # still in memory
    assert ring.truncate(500) == 150  # never moves forward
    assert ring.write(np.full(10, -1, np.float32)) == 10 and ring.write_index == 160


def _rewind_stress(ring: SpscRing, consumer_read, stop, total: int, seed: int) -> np.ndarray:
    """Producer: appends `(version % 8) * 2**21 + position` samples (exact in float32) and, at random, takes back
    what lies past the guard and writes it again with a new version. Returns the final sample at each position."""
    rng = np.random.default_rng(seed)
    final = np.zeros(total + 8192, np.float64)
    version = 1
    while ring.write_index < total:
        if ring.available() > 6000:
            time.sleep(0.0001)
            continue
        if rng.random() < 0.3:
            ring.truncate(int(ring.write_index - rng.integers(0, 3000)))
            version += 1
        start = ring.write_index
        n = int(rng.integers(1, 700))
        chunk = ((version % 8) * 2**21 + np.arange(start, start + n)).astype(np.float32)
        written = ring.write(chunk)
        final[start : start + written] = chunk[:written]
    stop.set()
    consumer_read()
    return final


def _check_blocks(blocks: list[np.ndarray], final: np.ndarray) -> None:
    got = np.concatenate(blocks)
    positions = np.arange(len(got))
    # no sample skipped or repeated: the position encoded in each sample counts up by one
    np.testing.assert_array_equal(np.mod(got.astype(np.float64), 2**21), positions)
    # and each is the last version written at its position: nothing read was rewritten afterwards, nothing torn
    np.testing.assert_array_equal(got, final[: len(got)].astype(np.float32))


def test_a_consumer_thread_never_sees_a_torn_or_rewritten_block_while_the_producer_rewinds():
    ring = SpscRing(8192, guard=512)
    blocks: list[np.ndarray] = []
    stop = threading.Event()

    def consume():
        out = np.empty((256, 1), np.float32)
        while not stop.is_set():
            n = ring.read_into(out)
            blocks.append(out[:n, 0].copy())

    thread = threading.Thread(target=consume)
    thread.start()
    final = _rewind_stress(ring, lambda: thread.join(timeout=60), stop, 300_000, seed=1)
    _check_blocks(blocks, final)
    assert sum(len(b) for b in blocks) > 100_000


def _consumer_process(shm_name: str, cap: int, stop, out_name: str, out_len: int) -> None:
    from multiprocessing import shared_memory

    shm = shared_memory.SharedMemory(name=shm_name)
    got = shared_memory.SharedMemory(name=out_name)
    try:
        counters = np.ndarray((COUNTERS,), np.int64, buffer=shm.buf, offset=0)
        data = np.ndarray((cap, 1), np.float32, buffer=shm.buf, offset=8 * COUNTERS)
        ring = SpscRing(cap, buffers=(data, counters), guard=512)
        received = np.ndarray((out_len,), np.float32, buffer=got.buf)
        out = np.empty((256, 1), np.float32)
        done = 0
        while not stop.is_set() and done + 256 <= out_len:
            n = ring.read_into(out)
            received[done : done + n] = out[:n, 0]
            done += n
            if ring.available() < 2048:  # a device's pace: let the producer keep some audio ahead
                time.sleep(0.0002)
        np.ndarray((1,), np.int64, buffer=got.buf, offset=4 * out_len)[0] = done
        del counters, data, ring, received
    finally:
        shm.close()
        got.close()


@pytest.mark.slow
def test_a_consumer_process_on_shared_memory_never_sees_a_torn_block():
    """The `play` layout: the consumer in another process, truly in parallel with the rewinding producer."""
    import multiprocessing as mp
    from multiprocessing import shared_memory

    cap, total = 8192, 400_000
    shm = shared_memory.SharedMemory(create=True, size=8 * COUNTERS + 4 * cap)
    got = shared_memory.SharedMemory(create=True, size=4 * (total + 8192) + 8)
    try:
        counters = np.ndarray((COUNTERS,), np.int64, buffer=shm.buf, offset=0)
        data = np.ndarray((cap, 1), np.float32, buffer=shm.buf, offset=8 * COUNTERS)
        counters[:] = 0
        ring = SpscRing(cap, buffers=(data, counters), guard=512)
        ctx = mp.get_context("spawn")
        stop = ctx.Event()
        process = ctx.Process(target=_consumer_process, args=(shm.name, cap, stop, got.name, total + 8192))
        process.start()
        final = _rewind_stress(ring, lambda: process.join(timeout=60), stop, total, seed=2)
        done = int(np.ndarray((1,), np.int64, buffer=got.buf, offset=4 * (total + 8192))[0])
        received = np.ndarray((total + 8192,), np.float32, buffer=got.buf)[:done].copy()
        assert done > 50_000
        _check_blocks([received], final)
        del counters, data, ring
    finally:
        shm.close()
        shm.unlink()
        got.close()
        got.unlink()


def test_a_stamped_read_publishes_its_start_position_and_time():
    ring = SpscRing(64)
    out = np.empty((8, 1), np.float32)
    assert ring.stamp() is None
    ring.write(np.arange(32, dtype=np.float32))
    ring.read_into(out)  # unstamped: the stamp stays absent
    assert ring.stamp() is None
    ring.read_into(out, now_ns=5_000_000_000)
    assert ring.stamp() == (8, 5.0) and ring.read_index == 16
