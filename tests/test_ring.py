"""The SPSC ring: wrap-around at odd block sizes, underruns counted as zeros, and two threads hammering it."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from live_synth.live.ring import SpscRing

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
    data, counters = np.zeros((16, 2), np.float32), np.zeros(4, np.int64)
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
