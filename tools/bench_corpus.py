"""Throughput of `render-corpus` on Ray against a plain loop over the same files (issue 24's targets).

    python tools/bench_corpus.py [--files 100] [--seconds 20] [--model default] [--out reports/bench-corpus.json]
    python tools/bench_corpus.py --resummarize REPORT   # recompute a report's summary from its results

Makes `--files` procedural songs cropped to `--seconds` (seeded), then renders them three ways, one after the other:
1. loop: one process, the same job a worker holds (`corpus.job.SynthJob`, 1 thread), file after file, no Ray;
2. Ray with 1 worker, 3. Ray with 2 workers: `render-corpus` on a local Ray (each into a fresh folder).
For each: wall time from start (Ray included: start-up and model loads) and the steady rate once the workers
have loaded (the run's own clock), files/s and audio s/s. Ray's overhead = 1 - (1-worker rate / loop rate). Writes a
JSON report with the machine, revision, command and load average (other work on the machine skews the rates), and
prints a summary. A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from live_synth.provenance import machine, revision  # noqa: E402

LAKH_FILES = 178_000


def make_songs(folder: Path, files: int, seconds: float) -> list[Path]:
    from live_synth.training import procedural
    from live_synth.training.corpus import crop

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(files):
        midi = procedural.generate(procedural.derive_seed(24, "bench-corpus", i))
        crop(midi, seconds)
        path = folder / f"song{i:04d}.mid"
        path.write_bytes(procedural.midi_bytes(midi))
        paths.append(path)
    return paths


def loop(paths: list[Path], settings) -> dict:
    from live_synth.corpus.job import SynthJob

    start = time.perf_counter()
    job = SynthJob(settings)
    loaded = time.perf_counter()
    audio = 0.0
    for path in paths:
        audio += job((path.stem, path.read_bytes()))["seconds"]
    end = time.perf_counter()
    return {"wall_s": end - start, "steady_s": end - loaded, "audio_s": audio, "files": len(paths)}


def ray_run(folder: Path, out: Path, settings, workers: int) -> dict:
    from live_synth.corpus import PoolOptions, render_corpus

    start = time.perf_counter()
    run = render_corpus(str(folder), out, settings, PoolOptions(workers=workers), quiet=True)
    end = time.perf_counter()
    steady = end - run.tally.started
    assert run.tally.rendered == len(run.sources) and not run.tally.failed, run.tally.line()
    return {"wall_s": end - start, "steady_s": steady, "audio_s": run.tally.audio_s, "files": run.tally.rendered,
            "nodes": len(run.nodes), "loaded": run.info}  # model, vocoder and engine, with their fingerprints


def rates(result: dict) -> dict:
    return {**result, "files_per_s": result["files"] / result["steady_s"],
            "audio_s_per_s": result["audio_s"] / result["steady_s"],
            "files_per_s_with_startup": result["files"] / result["wall_s"]}


def summarize(results: dict) -> dict:
    """Ratios and the Lakh estimate from the three runs' rates."""
    base = results["loop"]["files_per_s"]
    one, two = results["ray_1"], results["ray_2"]
    return {
        "ray_1_over_loop": one["files_per_s"] / base,
        "ray_overhead": 1 - one["files_per_s"] / base,
        "ray_2_over_ray_1": two["files_per_s"] / one["files_per_s"],
        "ray_2_per_core_over_loop": two["files_per_s"] / 2 / base,
        "core_s_per_audio_s": 1 / results["loop"]["audio_s_per_s"],
        "ray_1_core_s_per_audio_s": 1 / one["audio_s_per_s"],
        "mean_file_s": results["loop"]["audio_s"] / results["loop"]["files"],
        # One worker holds one core: its rate is the per-core cost (2 workers only scale on an otherwise idle machine).
        "lakh_core_hours_at_this_file_length": LAKH_FILES / one["files_per_s"] / 3600,
        # One 2-core machine running 2 workers, at the 2-worker rate measured here; N machines: this / N if Ray's
        # scaling across machines holds (one machine is all this benchmark measures).
        "lakh_hours_one_machine_at_this_file_length": LAKH_FILES / two["files_per_s"] / 3600,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--model", default="default")
    parser.add_argument("--out", default=str(ROOT / "reports" / "bench-corpus.json"))
    parser.add_argument("--resummarize", metavar="REPORT", help="recompute the summary of an existing report from its "
                        "measured results (after the summary gained a field) and exit")
    args = parser.parse_args(argv)
    if args.resummarize:
        path = Path(args.resummarize)
        report = json.loads(path.read_text())
        report["summary"] = summarize(report["results"])
        report["summary_recomputed_at"] = revision()
        path.write_text(json.dumps(report, indent=1) + "\n")
        print(" ".join(f"{k}={v:.3f}" for k, v in report["summary"].items()))
        return 0
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    from live_synth.corpus import RenderSettings

    settings = RenderSettings(model=args.model, threads=1)
    load_before = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="bench-corpus-"))
    try:
        paths = make_songs(work / "in", args.files, args.seconds)
        results = {"loop": rates(loop(paths, settings))}
        for workers in (1, 2):
            results[f"ray_{workers}"] = rates(ray_run(work / "in", work / f"out{workers}", settings, workers))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    summary = summarize(results)
    report = {"tool": "tools/bench_corpus.py", "command": "python tools/bench_corpus.py " + shlex.join(argv or
              sys.argv[1:]), "revision": revision(), "machine": machine(), "model": args.model,
              "files": args.files, "seconds_per_file": args.seconds, "results": results, "summary": summary,
              "load_average_before_after": [load_before, os.getloadavg()]}  # fmt: skip
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    for name, r in results.items():
        print(f"{name:6s} {r['files']} files, {r['audio_s']:.0f} s audio: steady {r['files_per_s']:.3f} files/s "
              f"({r['audio_s_per_s']:.1f} audio s/s), with start-up {r['files_per_s_with_startup']:.3f} files/s "
              f"(wall {r['wall_s']:.1f} s)")
    print(" ".join(f"{k}={v:.3f}" for k, v in summary.items()))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
