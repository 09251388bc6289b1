"""The tests against a real JACK server (tests/jack_cases/: rtmidi in, PortAudio out, `play` end to end), run in a
child pytest process.

Why a child process: these tests drive three native libraries with their own threads (JACK, python-rtmidi,
PortAudio). On this 2-core machine the module died about once in 20 runs with a segfault in the main thread while
pytest tore a test down (glibc `free` of a bogus pointer from `unicode_dealloc` of a static string: memory corrupted
earlier by native code; gdb backtrace in the session notes, root cause not found), and once a JACK client close
deadlocked on the GIL (fixed in `MidiInput.close`). In the test process itself either would take the whole suite
down or hang CI. Here a hang ends at the timeout as a failure, and a death by signal is retried once, with both
outputs shown; any failing assertion fails at once.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

CASES = Path(__file__).parent / "jack_cases"
TIMEOUT_S = 420


def run_cases() -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
               str(CASES / "live_io.py"), str(CASES / "play_e2e.py"), str(CASES / "bench_latency.py")]
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S, cwd=CASES.parents[1])
    except subprocess.TimeoutExpired as expired:
        pytest.fail(f"the JACK tests hung for {TIMEOUT_S} s:\n{expired.stdout or ''}{expired.stderr or ''}")


def died_by_signal(result: subprocess.CompletedProcess) -> bool:
    # Python's faulthandler exits with the signal; subprocess reports -SIGNUM (or 128 + SIGNUM through a shell).
    return result.returncode < 0 or result.returncode - 128 in (signal.SIGSEGV, signal.SIGABRT, signal.SIGBUS)


def test_live_io_and_play_against_a_real_jack_server():
    result = run_cases()
    report = result.stdout + result.stderr
    if died_by_signal(result):
        print(f"first run died by signal (exit {result.returncode}); retried once. Its output:\n{report[-4000:]}")
        result = run_cases()
        report = result.stdout + result.stderr
    print(report)
    assert result.returncode == 0, report[-6000:]
    summary = report.strip().splitlines()[-1]
    passed = int(m.group(1)) if (m := re.search(r"(\d+) passed", summary)) else 0
    if passed == 0:  # no JACK server, jackd or PortAudio here: the child skipped everything and said why
        reasons = sorted(set(re.findall(r"SKIPPED \[\d+\] [^:]+:\d+: (.*)", report)))
        pytest.skip("; ".join(reasons) or summary)
