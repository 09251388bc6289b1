"""Several causal-model training runs side by side on one GPU, inside a fixed time, for a lent GPU machine.

    python tools/gpu_train.py PACK --seconds 450 --out $OUT \\
        --run "long: --batch-size 64" --run "wide: --model causal-wide --batch-size 64"

PACK is what `tools/pack_dataset.py pack` wrote (train and validation splits; never the test split). Each `--run
"NAME: ARGS"` is one `tools/train_causal.py` run with those training options, on the GPU with batches built in
`--workers` processes. A run's learning rate decays over the steps it will reach in the time it has: each run first
trains `--calibrate` steps, its step rate is read from its loss log, and it resumes with `--total-steps` set to the
steps the rate allows in the remaining time. At the end each run's EMA weights are exported (fp16, as they ship)
and packed with its loss log into OUT/NAME.tar, split into parts under 15 MB (the lent machine returns files of at
most 16 MiB): `cat NAME.tar.* | tar x` restores NAME/model/ and NAME/loss.csv.

The runs only train: choosing between them is done at home on the validation split (`tools/evaluate.py`).
"""

from __future__ import annotations

import argparse
import csv
import io
import shlex
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PART = 15_000_000


def rate(log: Path) -> float:
    """Steps per second between the log's first and last rows."""
    rows = list(csv.DictReader(open(log)))
    (a, b) = rows[0], rows[-1]
    return (int(b["step"]) - int(a["step"])) / max(float(b["seconds"]) - float(a["seconds"]), 1e-6)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pack", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seconds", type=float, required=True, help="wall time for everything, export included")
    parser.add_argument("--run", action="append", required=True, help='"NAME: train_causal.py options"')
    parser.add_argument("--workers", type=int, default=4, help="batch-building processes per run")
    parser.add_argument("--calibrate", type=int, default=60, help="steps before the step rate is read")
    parser.add_argument("--work", type=Path, default=Path("/tmp/gpu-train"))
    parser.add_argument("--device", default="cuda", help="cpu: try the script here before spending a lease")
    parser.add_argument("--load-seconds", type=float, default=20.0, help="a run's start-up before its first step")
    args = parser.parse_args(argv)
    start = time.monotonic()
    end = start + args.seconds - 30  # export and packing
    dataset = args.work / "ds"
    subprocess.run([sys.executable, str(ROOT / "tools/pack_dataset.py"), "unpack", str(args.pack), str(dataset)],
                   check=True)
    runs = {}
    for spec in args.run:
        name, _, options = spec.partition(":")
        runs[name.strip()] = shlex.split(options)
    base = [sys.executable, "-u", str(ROOT / "tools/train_causal.py"), str(dataset), "--device", args.device,
            "--workers", str(args.workers), "--threads", "2"]
    logs = {name: open(args.work / f"{name}.log", "a") for name in runs}

    def launch(name: str, extra: list[str]) -> subprocess.Popen:
        return subprocess.Popen(base + ["--out", str(args.work / name)] + runs[name] + extra, stdout=logs[name],
                                stderr=subprocess.STDOUT)

    procs = {name: launch(name, ["--max-steps", str(args.calibrate), "--minutes", "10"]) for name in runs}
    codes = {name: p.wait() for name, p in procs.items()}
    left = end - time.monotonic() - args.load_seconds
    second = {}
    for name in runs:
        if codes[name] != 0:
            print(f"{name}: calibration failed (exit {codes[name]}), see {name}.log")
            continue
        steps_per_s = rate(args.work / name / "loss.csv")
        total = args.calibrate + int(steps_per_s * left)
        print(f"{name}: {steps_per_s:.2f} steps/s while calibrating; total steps {total} in {left:.0f} s", flush=True)
        second[name] = launch(name, ["--total-steps", str(total), "--minutes", f"{left / 60:.3f}"])
    for name, p in second.items():
        codes[name] = p.wait()
    args.out.mkdir(parents=True, exist_ok=True)
    for name in runs:
        run = args.work / name
        if (run / "ckpt.pt").exists():
            subprocess.run(base[:3] + [str(dataset), "--out", str(run), "--export", str(run / "model"),
                                       "--description", f"gpu_train run {name}: {' '.join(runs[name])}"],
                           stdout=logs[name], stderr=subprocess.STDOUT)
        logs[name].flush()
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            for path in [run / "model", run / "loss.csv", args.work / f"{name}.log"]:
                if path.exists():
                    tar.add(path, arcname=f"{name}/{path.name}")
        data = buffer.getvalue()
        for i in range(0, len(data), PART):
            (args.out / f"{name}.tar.{i // PART}").write_bytes(data[i : i + PART])
        print(f"{name}: exit {codes[name]}, {len(data) / 1e6:.1f} MB packed", flush=True)
    print(f"done in {time.monotonic() - start:.0f} s")
    return 0 if all(c == 0 for c in codes.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
