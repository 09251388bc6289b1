"""`play` when its audio device goes away, and signals in every state (issue 21 item 3).

Each case starts its own JACK dummy server under a private name (JACK_DEFAULT_SERVER), so killing it leaves the
shared server of the other live tests alone, runs `live-synth play` as a user would (a subprocess, a small random
model so that start-up is quick), and checks: one line that names the device, exit status 1 within 2 s of the
server's death, no process left behind, and a `--record` file that is a valid WAV up to the fault.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(shutil.which("jackd") is None or shutil.which("jack_wait") is None,
                                reason="jackd / jack_wait not installed (apt install jackd2 jack-tools)")


SERVER = "live-synth-faults"


def _server(name: str) -> subprocess.Popen:
    """A private JACK dummy server. One name for every case: JACK keeps a registry of at most 8 server names, and a
    killed server's entry stays, so a new name per case would fill it; a name is free again shortly after its
    server died (retried)."""
    env = {**os.environ, "JACK_DEFAULT_SERVER": name}
    for _ in range(6):
        server = subprocess.Popen(["jackd", "-n", name, "--no-realtime", "-d", "dummy", "-r", "48000", "-p", "256"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        if subprocess.run(["jack_wait", "-w", "-t", "5"], env=env, capture_output=True).returncode == 0:
            return server
        server.kill()
        server.wait()
        time.sleep(0.5)
    pytest.fail(f"could not start a private JACK server named {name}")


def _play(name: str, record: Path) -> subprocess.Popen:
    env = {**os.environ, "JACK_DEFAULT_SERVER": name}
    return subprocess.Popen([sys.executable, "-m", "live_synth", "play", "--model", "causal-tiny", "--midi-api",
                             "jack", "--vocoder", "griffin-lim", "--seconds", "120", "--record", str(record)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)


def _wait_for(play: subprocess.Popen, text: str, timeout: float = 180.0) -> list[str]:
    lines, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = play.stderr.readline()
        if not line:
            break
        lines.append(line)
        if text in line:
            return lines
    raise AssertionError(f"play never said {text!r}: {''.join(lines)[-2000:]}")


def _left_behind(play: subprocess.Popen) -> list[str]:
    """Processes of play's session (its generation process, multiprocessing helpers) still running (a zombie has
    ended: only its exit status waits for the machine's init to collect it)."""
    out = subprocess.run(["ps", "-o", "pid=,stat=,args=", "-s", str(play.pid)], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if line.strip() and not line.split()[1].startswith("Z")]


def _ended_within(play: subprocess.Popen, seconds: float, since: float) -> float:
    try:
        play.wait(timeout=seconds + 5)
    except subprocess.TimeoutExpired:
        os.killpg(play.pid, signal.SIGKILL)
        play.wait()
        raise AssertionError(f"play still ran {seconds + 5:.0f} s after the fault")
    return time.monotonic() - since


def _fault(play: subprocess.Popen, fault, then: str, settle_s: float) -> tuple[float, str, list[str]]:
    """Cause `fault()` under a running `play`, then (`then == "sigterm"`) SIGTERM it `settle_s` later; returns (seconds
    from the fault to play's end, its stderr, its "live-synth: error" lines)."""
    at = time.monotonic()
    fault()
    if then == "sigterm":
        time.sleep(settle_s)
        play.send_signal(signal.SIGTERM)
    took = _ended_within(play, 2.0, at)
    err = play.stderr.read()
    return took, err, [line for line in err.splitlines() if line.startswith("live-synth: error")]


def _check_record(path: Path, at_least_s: float) -> None:
    import soundfile

    data, rate = soundfile.read(path)
    assert rate == 48000 and len(data) / rate >= at_least_s


@pytest.mark.parametrize("then", ["nothing", "sigterm"])
def test_play_exits_1_within_2_s_when_the_jack_server_dies(tmp_path: Path, then: str) -> None:
    name = SERVER
    server = _server(name)
    record = tmp_path / "take.wav"
    play = _play(name, record)
    try:
        _wait_for(play, "expected latency")
        time.sleep(1.5)
        took, err, ours = _fault(play, lambda: (server.kill(), server.wait()), then, 0.2)
        assert play.returncode == 1, err[-2000:]
        assert len(ours) == 1 and "stopped" in ours[0] and "JACK" in ours[0], err[-2000:]
        assert took <= 2.0, f"play took {took:.2f} s to end after the server died"
        time.sleep(0.3)
        assert not _left_behind(play)
        _check_record(record, 1.0)
    finally:
        if play.poll() is None:
            os.killpg(play.pid, signal.SIGKILL)
        if server.poll() is None:
            server.kill()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_signal_while_starting_or_running_ends_play_within_2_s(tmp_path: Path, sig: int) -> None:
    name = SERVER
    server = _server(name)
    play = _play(name, tmp_path / "take.wav")
    try:
        if sig == signal.SIGTERM:  # while the generation process is still loading (starting)
            time.sleep(1.0)
        else:  # while running
            _wait_for(play, "expected latency")
        sent = time.monotonic()
        play.send_signal(sig)
        took = _ended_within(play, 2.0, sent)
        assert took <= 2.0, f"play took {took:.2f} s to stop on signal {sig}"
        time.sleep(0.3)
        assert not _left_behind(play)
    finally:
        if play.poll() is None:
            os.killpg(play.pid, signal.SIGKILL)
        server.kill()
        server.wait()


def _generation_pid(play: subprocess.Popen) -> int:
    out = subprocess.run(["ps", "-ww", "-o", "pid=,args=", "--ppid", str(play.pid)], capture_output=True, text=True).stdout
    pids = [int(line.split()[0]) for line in out.splitlines() if "spawn_main" in line]
    assert pids, f"no generation process under play ({play.poll()}): {out}"
    return pids[0]


@pytest.mark.parametrize("then", ["nothing", "sigterm"])
def test_play_ends_within_2_s_when_its_generation_process_is_killed(tmp_path: Path, then: str) -> None:
    """The generation process killed (SIGKILL, the OOM killer) while playing, many times over: it dies at any point
    of its loop, also holding a lock it shares with play. play says so in one line and ends within 2 s, a SIGTERM
    in that state too, and leaves nothing behind."""
    name = SERVER
    server = _server(name)
    try:
        for attempt in range(3):
            play = _play(name, tmp_path / f"take{attempt}.wav")
            try:
                _wait_for(play, "expected latency")
                time.sleep(0.3 + 0.37 * attempt)  # a different point of the child's 0.1 s poll each time
                took, err, ours = _fault(play, lambda: os.kill(_generation_pid(play), signal.SIGKILL), then, 0.1)
                assert play.returncode != 0 and len(ours) == 1 and "generation process" in ours[0], err[-2000:]
                assert took <= 2.0, f"play took {took:.2f} s to end after its generation process was killed"
                time.sleep(0.3)
                assert not _left_behind(play)
            finally:
                if play.poll() is None:
                    os.killpg(play.pid, signal.SIGKILL)
    finally:
        server.kill()
        server.wait()
