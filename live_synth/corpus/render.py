"""`live-synth render-corpus`: every MIDI file of a corpus rendered on Ray, resumable, every failure recorded.

For each source `NAME` (sources.py) the driver writes, each atomically (temporary name, then rename), in this order:
`OUT/NAME.wav|flac`, `OUT/NAME.mel.npy` (with --mel: the model's log-mel frames, float16 [frames, 128]) and last
the sidecar `OUT/NAME.json` (source path and hash, duration, sample rate, model and vocoder fingerprints, seed,
steps, revision, ...). The sidecar is the commit mark: a rerun skips a source whose sidecar exists, names the same
source hash and options key, and whose outputs have the sizes it records; everything else is rendered again.

At the end of every run (finished or interrupted) the driver rewrites `OUT/manifest.jsonl` (one line per source
that has its outputs: its sidecar plus `status`: rendered now or skipped as already done), `OUT/failures.jsonl`
(one line per source that failed in this run: name, source, kind, one-line error, attempts) and `OUT/run.json`
(counts, options, whether the run finished).
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import re
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from live_synth.constants import SAMPLE_RATE
from live_synth.corpus.job import RenderSettings, SynthJob
from live_synth.corpus.runner import Outcome, Pool, PoolOptions
from live_synth.corpus.sources import Source, file_digest, find_sources
from live_synth.errors import LiveSynthError
from live_synth.files import atomic_output, write_bytes_atomic

TEMPORARY = re.compile(r"^\..+\.[0-9a-f]{8}\.tmp$")  # live_synth.files.atomic_output's temporary names


@dataclass
class Tally:
    rendered: int = 0
    skipped: int = 0
    failed: int = 0
    audio_s: float = 0.0  # audio rendered in this run
    started: float = field(default_factory=time.perf_counter)

    def line(self) -> str:
        wall = max(time.perf_counter() - self.started, 1e-9)
        return (f"rendered {self.rendered}, skipped {self.skipped}, failed {self.failed}; "
                f"{self.audio_s / wall:.1f} audio s/s")


def options_key(info: dict, settings: RenderSettings) -> str:
    """What a finished output must match to be skipped: what was loaded and how it was rendered."""
    fields = {k: info[k] for k in ("model_fingerprint", "vocoder_fingerprint", "engine", "steps", "seed",
                                   "fx_fingerprint")}  # fmt: skip
    fields.update(format=settings.format, mel=settings.mel, sample_rate=SAMPLE_RATE)
    return hashlib.blake2b(json.dumps(fields, sort_keys=True).encode(), digest_size=12).hexdigest()


class CorpusRun:
    def __init__(self, sources: list[Source], out: Path, settings: RenderSettings, pool: PoolOptions,
                 quiet: bool = False):
        self.sources, self.out, self.settings, self.pool_options = sources, out, settings, pool
        self.quiet = quiet
        self.records: dict[int, dict] = {}  # source index -> manifest line
        self.failures: dict[int, dict] = {}
        self.digests: dict[int, str] = {}  # of the bytes sent to the workers
        self.tally = Tally()
        self.info: dict = {}
        self.key = ""
        self.nodes: set[str] = set()

    # --- paths ---
    def audio_path(self, source: Source) -> Path:
        return self.out / f"{source.name}.{self.settings.format}"

    def mel_path(self, source: Source) -> Path:
        return self.out / f"{source.name}.mel.npy"

    def sidecar_path(self, source: Source) -> Path:
        return self.out / f"{source.name}.json"

    # --- the run ---
    def run(self) -> Tally:
        self.out.mkdir(parents=True, exist_ok=True)
        sweep_temporaries(self.out)
        finished = False
        try:
            with Pool(lambda_job(self.settings), self.pool_options) as pool, stop_on_signals():
                self.info = pool.start()
                self.tally.started = time.perf_counter()  # rates count rendering, not start-up
                self.key = options_key(self.info, self.settings)
                with self._progress() as bar:
                    for outcome in pool.run(self._items(bar)):
                        self._record(outcome)
                        bar.update()
                        bar.set_postfix_str(self.tally.line(), refresh=False)
            finished = True
        finally:
            self._write_tables(finished)
        return self.tally

    def _progress(self):
        from tqdm import tqdm

        return tqdm(total=len(self.sources), unit="file", desc="render-corpus", file=sys.stderr, disable=self.quiet)

    def _items(self, bar) -> Iterator[tuple[int, tuple[str, bytes]]]:
        """The sources still to render, read here (workers need no shared folder); done and unreadable ones are
        recorded on the way."""
        for index, source in enumerate(self.sources):
            try:
                midi = source.path.read_bytes()
            except OSError as error:
                self._fail(index, "input", f"cannot read {source.path}: {error.strerror or error}", 0)
                bar.update()
                continue
            self.digests[index] = file_digest(midi)
            done = self.complete(source, self.digests[index])
            if done is not None:
                del self.digests[index]
                self.records[index] = {**done, "status": "skipped"}
                self.tally.skipped += 1
                bar.update()
                continue
            yield index, (source.name, midi)

    def complete(self, source: Source, digest: str) -> dict | None:
        """The sidecar of a finished output of this source with these options, else None."""
        try:
            meta = json.loads(self.sidecar_path(source).read_text())
        except (OSError, ValueError):
            return None
        if meta.get("source_sha256") != digest or meta.get("options_key") != self.key:
            return None
        files = [(self.audio_path(source), meta.get("audio_bytes"))]
        if self.settings.mel:
            files.append((self.mel_path(source), meta.get("mel_bytes")))
        if not all(path.is_file() and path.stat().st_size == size for path, size in files):
            return None
        return meta

    def _record(self, outcome: Outcome) -> None:
        index = outcome.key
        if not outcome.ok:
            self._fail(index, outcome.kind, outcome.error, outcome.attempts)
            return
        meta = self._write_outputs(self.sources[index], self.digests.pop(index), outcome)
        self.records[index] = {**meta, "status": "rendered"}
        self.tally.rendered += 1
        self.tally.audio_s += meta["duration_s"]
        self.nodes.add(outcome.node)

    def _fail(self, index: int, kind: str, error: str, attempts: int) -> None:
        source = self.sources[index]
        self.failures[index] = {"name": source.name, "source": str(source.path), "kind": kind, "error": error,
                                "attempts": attempts}  # fmt: skip
        self.tally.failed += 1

    def _write_outputs(self, source: Source, digest: str, outcome: Outcome) -> dict:
        from live_synth import __version__
        from live_synth.provenance import revision

        result = outcome.value
        audio_path, sidecar = self.audio_path(source), self.sidecar_path(source)
        audio_path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(audio_path, result["audio"])
        meta = {
            "name": source.name, "source": str(source.path), "source_sha256": digest,
            "audio": audio_path.name, "audio_bytes": len(result["audio"]), "format": self.settings.format,
            "duration_s": round(result["seconds"], 6), "sample_rate": SAMPLE_RATE, "frames": result["frames"],
            "notes": result["notes"], **self.info, "options_key": self.key,
            "version": __version__, "revision": revision(),
            "render_s": round(result["render_s"], 4), "node": outcome.node, "worker_pid": outcome.pid,
            "attempts": outcome.attempts, "warnings": result["warnings"],
            "rendered_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }  # fmt: skip
        if result["mel"] is not None:
            mel_path = self.mel_path(source)
            with atomic_output(mel_path) as handle:
                np.save(handle, result["mel"])
            meta.update(mel=mel_path.name, mel_bytes=mel_path.stat().st_size, mel_dtype="float16")
        write_bytes_atomic(sidecar, (json.dumps(meta, indent=1) + "\n").encode())
        return meta

    def _write_tables(self, finished: bool) -> None:
        lines = [json.dumps(self.records[i]) for i in sorted(self.records)]
        write_bytes_atomic(self.out / "manifest.jsonl", "".join(f"{x}\n" for x in lines).encode())
        failures = [json.dumps(self.failures[i]) for i in sorted(self.failures)]
        write_bytes_atomic(self.out / "failures.jsonl", "".join(f"{x}\n" for x in failures).encode())
        t = self.tally
        run = {"finished": finished, "sources": len(self.sources), "rendered": t.rendered, "skipped": t.skipped,
               "failed": t.failed, "audio_s": round(t.audio_s, 3), "wall_s": round(time.perf_counter() - t.started, 3),
               "settings": asdict(self.settings), "loaded": self.info, "options_key": self.key,
               "nodes": sorted(self.nodes)}  # fmt: skip
        write_bytes_atomic(self.out / "run.json", (json.dumps(run, indent=1) + "\n").encode())


@contextlib.contextmanager
def stop_on_signals():
    """SIGTERM and SIGHUP stop a run the way Ctrl-C does (KeyboardInterrupt: what is done is kept and recorded).
    Installed after Ray starts, which sets its own SIGTERM handler in the driver. Main thread only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    numbers = [signal.SIGTERM, *([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])]
    saved = {n: signal.getsignal(n) for n in numbers}

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    for n in numbers:
        signal.signal(n, interrupt)
    try:
        yield
    finally:
        for n, handler in saved.items():
            signal.signal(n, handler)


def lambda_job(settings: RenderSettings):
    """The workers' job factory (a partial: picklable by reference, so every node imports the same code)."""
    import functools

    return functools.partial(SynthJob, settings)


def sweep_temporaries(out: Path) -> int:
    """Remove what a killed run left half-written (atomic_output's hidden temporaries); how many."""
    removed = 0
    for path in out.rglob(".*.tmp"):
        if TEMPORARY.match(path.name) and path.is_file():
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def render_corpus(inputs: str, out: str | Path, settings: RenderSettings, pool: PoolOptions,
                  quiet: bool = False) -> CorpusRun:
    """Render every source of `inputs` into `out`; the run (its tally, records and failures)."""
    if settings.format not in ("wav", "flac"):
        raise LiveSynthError(f"unknown format {settings.format!r}: wav or flac")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise LiveSynthError(f"{out} exists and is not a folder")
    run = CorpusRun(find_sources(inputs), out, settings, pool, quiet)
    run.run()
    return run
