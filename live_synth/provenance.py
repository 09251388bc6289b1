"""Where a measurement was taken: the machine and the git revision, for benchmark and evaluation reports."""

from __future__ import annotations

import csv
import os
import platform
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def machine() -> str:
    """OS, architecture, CPU model and logical CPU count, e.g. 'Linux x86_64, AMD EPYC, 2 logical CPUs'."""
    cpu = platform.processor() or "unknown CPU"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))  # fmt: skip
    except (OSError, StopIteration):
        pass
    return f"{platform.system()} {platform.machine()}, {cpu}, {os.cpu_count()} logical CPUs"


def revision(root: Path = ROOT) -> str:
    """Short git revision, with ' + uncommitted changes' when tracked files differ from it; 'unknown' outside git."""
    try:
        rev = subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], cwd=root, text=True,
                                      stderr=subprocess.DEVNULL).strip()
        dirty = subprocess.check_output(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                                        text=True, stderr=subprocess.DEVNULL)
        return rev + (" + uncommitted changes" if dirty.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def append_csv_row(path: Path, row: dict) -> None:
    """Append `row` to a CSV log, writing the header when the file is new (training loss logs)."""
    new = not path.exists()
    with open(path, "a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(row))
        if new:
            writer.writeheader()
        writer.writerow(row)
