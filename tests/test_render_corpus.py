"""`live-synth render-corpus` on Ray (issue 24): outputs, manifest and failures; resume; a killed worker; a killed
driver; two Ray nodes on this machine; the local default; the install hint.

One Ray cluster for the module: a head and a second node started with `ray start --block` in their own sessions
(one CPU each), stopped at the end by their process groups. Runs use a random-weight `causal-tiny` model on 2-3 s
songs, so each file takes well under a second.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from live_synth import cli

HAS_RAY = True
try:
    import ray  # noqa: F401
except ImportError:
    HAS_RAY = False
needs_ray = pytest.mark.skipif(not HAS_RAY, reason="ray is not installed (pip install 'live-synth[cluster]')")

GOOD = 24
BROKEN = {"broken": "not a readable MIDI file", "empty": "not a readable MIDI file", "silent": "contains no notes",
          "long": "over the limit of 20 s"}  # fmt: skip
ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}  # a loopback cluster: no token, no phoning home
OPTIONS = ["--model", "causal-tiny", "--max-seconds", "20", "-q"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_text(path: Path, text: str, timeout: float = 120.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if path.exists() and text in path.read_text(errors="replace"):
            return
        time.sleep(0.3)
    raise TimeoutError(f"{path}: no {text!r} after {timeout} s:\n{path.read_text(errors='replace')[-2000:]}")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A Ray head and a second node on this machine, each in its own process group, one CPU each."""
    if not HAS_RAY:
        pytest.skip("ray is not installed (pip install 'live-synth[cluster]')")
    saved = {k: os.environ.get(k) for k in ENV}
    os.environ.update(ENV)
    logs = tmp_path_factory.mktemp("ray")
    port = _free_port()
    common = ["--block", "--num-cpus", "1", "--node-ip-address", "127.0.0.1", "--disable-usage-stats"]
    ray_bin = str(Path(sys.executable).with_name("ray"))
    commands = [
        [ray_bin, "start", "--head", "--port", str(port), "--include-dashboard=false",
         "--ray-client-server-port", str(_free_port()), *common],
        [ray_bin, "start", "--address", f"127.0.0.1:{port}", *common],
    ]  # fmt: skip
    nodes = []
    try:
        for i, command in enumerate(commands):
            log = logs / f"node{i}.log"
            nodes.append(subprocess.Popen(["nice", "-n", "15", *command], stdout=open(log, "w"),
                                          stderr=subprocess.STDOUT, start_new_session=True))
            _wait_for_text(log, "Ray runtime started")
        yield f"127.0.0.1:{port}"
    finally:
        for node in reversed(nodes):
            os.killpg(node.pid, signal.SIGTERM)
        for node in reversed(nodes):
            try:
                node.wait(5)  # ray start --block takes its time over SIGTERM; then SIGKILL
            except subprocess.TimeoutExpired:
                pass
            os.killpg(node.pid, signal.SIGKILL) if _group_alive(node.pid) else None
            node.wait()
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def make_corpus(folder: Path, good: int = GOOD) -> Path:
    """`good` procedural songs of 2-3 s in two subfolders, and one of each kind of broken file."""
    import mido

    from live_synth.training import procedural
    from live_synth.training.corpus import crop

    for i in range(good):
        midi = procedural.generate(i)
        crop(midi, 2.0 + (i % 3) * 0.5)
        path = folder / ("a" if i % 2 else "b") / f"song{i:02d}.mid"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(procedural.midi_bytes(midi))
    (folder / "broken.mid").write_bytes(b"MThd\x00\x00\x00\x06garbage")
    (folder / "empty.mid").write_bytes(b"")
    silent = mido.MidiFile()
    silent.tracks.append(mido.MidiTrack([mido.Message("program_change", program=1), mido.MetaMessage("end_of_track",
                                                                                                     time=480)]))
    silent.save(folder / "silent.mid")
    long = mido.MidiFile()  # one note 60 s in (at the default 120 bpm, 480 ticks per beat)
    long.tracks.append(mido.MidiTrack([mido.Message("note_on", note=60, velocity=90, time=480 * 120),
                                       mido.Message("note_off", note=60, time=480)]))
    long.save(folder / "long.mid")
    return folder


def sidecars(out: Path) -> dict[str, dict]:
    found = {}
    for path in out.rglob("*.json"):
        if path.name != "run.json":
            meta = json.loads(path.read_text())
            found[meta["name"]] = meta
    return found


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def driver(args: list[str]) -> subprocess.Popen:
    """render-corpus as a separate driver process (so that the test can kill it)."""
    return subprocess.Popen([sys.executable, "-m", "live_synth", "render-corpus", *args], env={**os.environ, **ENV},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_outputs(out: Path, count: int, process: subprocess.Popen, timeout: float = 120.0) -> None:
    end = time.monotonic() + timeout
    while len(list(out.rglob("song*.json"))) < count:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < end, "no progress"
        time.sleep(0.05)


# --- the corpus through two nodes, then resumed ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def first_run(cluster, tmp_path_factory):
    folder = make_corpus(tmp_path_factory.mktemp("corpus"))
    out = tmp_path_factory.mktemp("out") / "renders"
    code = cli.main(["render-corpus", str(folder), str(out), "--address", cluster, "--workers", "2", "--mel",
                     *OPTIONS])  # fmt: skip
    return folder, out, code


@needs_ray
def test_corpus_outputs_manifest_and_failures_on_two_nodes(first_run):
    import numpy as np
    import soundfile as sf

    folder, out, code = first_run
    assert code == 1  # some files failed: said by the exit status too
    metas = sidecars(out)
    assert sorted(metas) == sorted(f"{'a' if i % 2 else 'b'}/song{i:02d}" for i in range(GOOD))
    for name, meta in metas.items():
        audio, rate = sf.read(out / f"{name}.wav")
        assert rate == meta["sample_rate"] == 16000 and len(audio) / rate == pytest.approx(meta["duration_s"])
        assert meta["duration_s"] >= 2.0 and np.abs(audio).max() > 0
        mel = np.load(out / f"{name}.mel.npy")
        assert mel.dtype == np.float16 and mel.shape == (meta["frames"], 128)
        assert meta["source"] == str(folder / f"{name}.mid") and len(meta["source_sha256"]) == 64
        for key in ("model_fingerprint", "vocoder_fingerprint", "seed", "steps", "revision", "options_key"):
            assert meta[key] not in (None, "")
    assert not [p for p in out.rglob("*.tmp")]
    manifest = lines(out / "manifest.jsonl")
    assert [m["name"] for m in manifest] == sorted(metas) and {m["status"] for m in manifest} == {"rendered"}
    failures = {f["name"]: f for f in lines(out / "failures.jsonl")}
    assert sorted(failures) == sorted(BROKEN)
    for name, text in BROKEN.items():
        assert text in failures[name]["error"] and "\n" not in failures[name]["error"]
        assert failures[name]["kind"] == "input" and not list(out.glob(f"{name}.*"))
    run = json.loads((out / "run.json").read_text())
    assert run["finished"] and run["rendered"] == GOOD and run["failed"] == len(BROKEN)
    # Multi-node: the head and the second node (`ray start --address`, its own process) both rendered files.
    assert len(run["nodes"]) == 2 and len({m["node"] for m in metas.values()}) == 2


@needs_ray
def test_corpus_audio_is_what_render_writes(first_run, tmp_path):
    import torch

    folder, out, _ = first_run
    threads = torch.get_num_threads()
    try:
        assert cli.main(["render", str(folder / "b/song00.mid"), "-o", str(tmp_path / "one.wav"), "--model",
                         "causal-tiny", "--threads", "1", "-q"]) == 0  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    assert (tmp_path / "one.wav").read_bytes() == (out / "b/song00.wav").read_bytes()


@needs_ray
def test_rerun_renders_only_what_is_missing_or_changed(first_run, cluster):
    folder, out, _ = first_run
    before = {name: meta["rendered_at"] + str(meta["worker_pid"]) for name, meta in sidecars(out).items()}
    (out / "a/song01.wav").unlink()  # an output gone
    (out / "b/song02.mel.npy").write_bytes(b"short")  # an output cut short (by hand: ours are atomic)
    changed = folder / "b/song04.mid"
    changed.write_bytes(changed.read_bytes() + b"\x00")  # the source changed (trailing byte: still the same song)
    stale = out / "a" / ".song03.wav.0123abcd.tmp"  # what a killed driver leaves: swept
    stale.write_bytes(b"partial")
    code = cli.main(["render-corpus", str(folder), str(out), "--address", cluster, "--workers", "2", "--mel",
                     *OPTIONS])  # fmt: skip
    assert code == 1
    manifest = {m["name"]: m["status"] for m in lines(out / "manifest.jsonl")}
    again = {"a/song01", "b/song02", "b/song04"}
    assert {n for n, s in manifest.items() if s == "rendered"} == again
    assert len(manifest) == GOOD and not stale.exists()
    after = {name: meta["rendered_at"] + str(meta["worker_pid"]) for name, meta in sidecars(out).items()}
    assert {n for n in before if before[n] != after[n]} == again
    assert sorted(f["name"] for f in lines(out / "failures.jsonl")) == sorted(BROKEN)  # failures are retried


# --- killing things --------------------------------------------------------------------------------------------------


def _busy_worker_pids() -> list[int]:
    """Actor processes of this machine's Ray that are running a file right now (their title says so)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                title = (entry / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if title.startswith("ray::_Worker.run"):
                pids.append(int(entry.name))
    return pids


@needs_ray
def test_a_killed_workers_file_is_rendered_by_another_worker(cluster, tmp_path):
    folder, out = make_corpus(tmp_path / "in", good=12), tmp_path / "out"
    process = driver([str(folder), str(out), "--address", cluster, "--workers", "2", *OPTIONS])
    wait_for_outputs(out, 2, process)
    end = time.monotonic() + 30
    while not (busy := _busy_worker_pids()):
        assert time.monotonic() < end
        time.sleep(0.02)
    os.kill(busy[0], signal.SIGKILL)
    _, err = process.communicate(timeout=180)
    assert process.returncode == 1, err  # the broken files
    metas = sidecars(out)
    assert len(metas) == 12  # nothing lost
    retried = [m for m in metas.values() if m["attempts"] == 2]
    assert len(retried) == 1 and retried[0]["worker_pid"] != busy[0]
    assert sorted(f["name"] for f in lines(out / "failures.jsonl")) == sorted(BROKEN)


class _DiesOnPoison:
    """A job whose worker process dies on the payload 'poison' (as a crash in native code would)."""

    def describe(self) -> dict:
        return {}

    def __call__(self, payload):
        if payload == "poison":
            os._exit(1)
        return payload.upper()


@needs_ray
def test_a_file_that_kills_every_worker_is_recorded_failed_after_bounded_retries(cluster):
    import ray.cloudpickle

    from live_synth.corpus import Pool, PoolOptions

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import tests/
    with Pool(_DiesOnPoison, PoolOptions(address=cluster, workers=2, retries=1)) as pool:
        pool.start()
        outcomes = {o.key: o for o in pool.run([(0, "a"), (1, "poison"), (2, "b"), (3, "c")])}
    assert {k: o.value for k, o in outcomes.items() if o.ok} == {0: "A", 2: "B", 3: "C"}
    poison = outcomes[1]
    assert not poison.ok and poison.kind == "worker" and poison.attempts == 2 and "died 2 times" in poison.error
    assert pool.replaced == 2


@needs_ray
def test_a_stopped_or_killed_driver_loses_nothing_and_renders_nothing_twice(cluster, tmp_path):
    folder, out = make_corpus(tmp_path / "in", good=16), tmp_path / "out"
    args = [str(folder), str(out), "--address", cluster, "--workers", "2", *OPTIONS]
    seen: dict[str, str] = {}  # name -> the render that made its sidecar, over all runs

    def collect() -> None:
        for name, meta in sidecars(out).items():
            stamp = meta["rendered_at"] + str(meta["worker_pid"]) + meta["node"]
            assert seen.setdefault(name, stamp) == stamp, f"{name} rendered twice"

    process = driver(args)  # SIGTERM (like Ctrl-C): stops cleanly and says where it stopped
    wait_for_outputs(out, 4, process)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    run = json.loads((out / "run.json").read_text())
    assert not run["finished"] and run["rendered"] == len(sidecars(out)) < 16
    collect()
    process = driver(args)  # SIGKILL: no chance to clean up at all
    wait_for_outputs(out, len(seen) + 4, process)
    process.kill()
    process.communicate()
    collect()
    assert len(seen) < 16
    assert cli.main(["render-corpus", *args]) == 1
    collect()
    manifest = lines(out / "manifest.jsonl")
    assert len(seen) == len(manifest) == 16  # nothing missing
    rendered = {m["name"] for m in manifest if m["status"] == "rendered"}
    assert len(rendered) == 16 - len({m["name"] for m in manifest if m["status"] == "skipped"})
    assert not [p for p in out.rglob("*.tmp")]


# --- the default (a local Ray started in-process), errors -------------------------------------------------------------


@needs_ray
def test_local_ray_by_default_and_stopped_after(tmp_path, monkeypatch):
    import ray

    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    folder = make_corpus(tmp_path / "in", good=2)
    code = cli.main(["render-corpus", str(folder / "b"), str(tmp_path / "out"), "--workers", "1", "--format",
                     "flac", *OPTIONS])  # fmt: skip
    assert code == 0 and sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "failures.jsonl", "manifest.jsonl", "run.json", "song00.flac", "song00.json"]
    assert not ray.is_initialized()


def test_missing_ray_is_one_line_with_the_install_hint(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    assert cli.main(["render-corpus", str(tmp_path), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "live-synth: error: running on Ray needs the cluster extra: pip install 'live-synth[cluster]'"


@needs_ray
def test_bad_inputs_are_one_line(tmp_path, capsys):
    assert cli.main(["render-corpus", str(tmp_path / "nothing"), str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.strip().endswith("no such folder, MIDI file, list file or glob")
    (tmp_path / "list.txt").write_text("# nothing\n")
    assert cli.main(["render-corpus", str(tmp_path / "list.txt"), str(tmp_path / "out")]) == 2
    assert "holds no MIDI files" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


# --- tools/make_dataset.py --ray: the dataset's references through the same runner ----------------------------------


@needs_ray
def test_make_dataset_on_ray_writes_the_same_pieces(cluster, tmp_path):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
    import make_dataset

    from live_synth.training import synth

    if not synth.available_renderers() or not synth.DEFAULT_SOUNDFONT.is_file():
        pytest.skip("no MIDI renderer (apt-get install fluidsynth fluid-soundfont-gm)")
    common = ["--seed", "3", "--procedural", "4", "--corpus", "0", "--max-seconds", "3"]
    assert make_dataset.main([str(tmp_path / "pool"), *common]) == 0
    assert make_dataset.main([str(tmp_path / "ray"), *common, "--ray", cluster]) == 0
    pool_files = sorted(p.relative_to(tmp_path / "pool") for p in (tmp_path / "pool").rglob("*.npz"))
    assert len(pool_files) == 4
    assert pool_files == sorted(p.relative_to(tmp_path / "ray") for p in (tmp_path / "ray").rglob("*.npz"))
    for f in pool_files:
        assert (tmp_path / "pool" / f).read_bytes() == (tmp_path / "ray" / f).read_bytes()
    manifests = [json.loads((tmp_path / d / "manifest.json").read_text()) for d in ("pool", "ray")]
    assert manifests[1].pop("created_by").endswith(f"--ray {cluster}")
    manifests[0].pop("created_by")
    assert manifests[0] == manifests[1]
