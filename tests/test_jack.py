"""The tests against a real JACK server (tests/jack_cases/: rtmidi in, PortAudio out, `play` end to end), run in a
child pytest process.

Why a child process: these tests drive three native libraries with their own threads (JACK, python-rtmidi,
PortAudio). On this 2-core machine the module died about once in 20 runs with a segfault in the main thread while
pytest tore a test down (glibc `free` of a bogus pointer from `unicode_dealloc` of a static string: memory corrupted
earlier by native code; gdb backtrace in the session notes, root cause not found), and once a JACK client close
deadlocked on the GIL (fixed in `MidiInput.close`). In the test process itself either would take the whole suite
down or hang CI. Here a hang ends at the timeout as a failure, and a death by signal is retried once, with both
outputs shown.

The child runs every case once (one JACK session, one start-up); each case is then its own test item here, which
passes, fails with the child's report of it, or skips with the child's reason (no JACK server, no fluidsynth, ...),
so every skip reaches the summary.
"""

from __future__ import annotations

import ast
import signal
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

CASES = Path(__file__).parent / "jack_cases"
TIMEOUT_S = 420


def case_files() -> list[Path]:
    return sorted(p for p in CASES.glob("*.py") if p.name != "__init__.py")


def case_ids() -> list[str]:
    """'file.py::test_name' for every test function of the case files (read, not imported: no JACK needed)."""
    ids = []
    for path in case_files():
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test_"):
                ids.append(f"{path.name}::{node.name}")
    return ids


def run_cases(xml: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", f"--junitxml={xml}",
               *map(str, case_files())]
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S, cwd=CASES.parents[1])
    except subprocess.TimeoutExpired as expired:
        pytest.fail(f"the JACK tests hung for {TIMEOUT_S} s:\n{expired.stdout or ''}{expired.stderr or ''}")


def died_by_signal(result: subprocess.CompletedProcess) -> bool:
    # Python's faulthandler exits with the signal; subprocess reports -SIGNUM (or 128 + SIGNUM through a shell).
    return result.returncode < 0 or result.returncode - 128 in (signal.SIGSEGV, signal.SIGABRT, signal.SIGBUS)


def outcomes(xml: Path) -> dict[str, list[tuple[str, str]]]:
    """'file.py::test_name' -> [(outcome, detail)] per run of it (one per parameter), from the child's JUnit XML."""
    found: dict[str, list[tuple[str, str]]] = {}
    for case in ET.parse(xml).getroot().iter("testcase"):
        module = case.get("classname", "").rsplit(".", 1)[-1]
        key = f"{module}.py::{case.get('name', '').split('[', 1)[0]}"
        outcome, detail = "passed", ""
        for tag in ("failure", "error", "skipped"):
            element = case.find(tag)
            if element is not None:
                outcome = tag
                detail = element.get("message", "") if tag == "skipped" else (element.text or element.get("message", ""))
                break
        found.setdefault(key, []).append((outcome, detail))
    return found


@pytest.fixture(scope="module")
def jack_results(tmp_path_factory) -> dict[str, list[tuple[str, str]]]:
    xml = tmp_path_factory.mktemp("jack") / "cases.xml"
    result = run_cases(xml)
    report = result.stdout + result.stderr
    if died_by_signal(result):
        print(f"first run died by signal (exit {result.returncode}); retried once. Its output:\n{report[-4000:]}")
        result = run_cases(xml)
        report = result.stdout + result.stderr
    print(report)
    if died_by_signal(result) or not xml.is_file():
        pytest.fail(f"the JACK tests' child process died (exit {result.returncode}):\n{report[-6000:]}")
    return outcomes(xml)


@pytest.mark.parametrize("case", case_ids())
def test_jack_case(case, jack_results):
    runs = jack_results.get(case)
    assert runs, f"{case}: the child process did not run it"
    failed = [detail for outcome, detail in runs if outcome in ("failure", "error")]
    assert not failed, "\n\n".join(failed)[-6000:]
    if all(outcome == "skipped" for outcome, _ in runs):
        reason = sorted({detail for _, detail in runs})
        pytest.skip("; ".join(r.removeprefix("Skipped: ") for r in reason))
