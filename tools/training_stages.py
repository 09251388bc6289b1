"""A table of training stages from their loss logs (the CSV `train_causal.py` writes), as a report.

    python tools/training_stages.py LOG1.csv [LOG2.csv ...] --out reports/.../stages.json

Per log (one stage): the last logged step and its training minutes (summed over the resumed segments), the loss there, and the stage's last probe (head
loss with and without the notes, the prior's L1, the lone-note levels v20..v120 in dB and relative to the loudest).
The steps are the log's last row: a log is written every `log_every` steps, so a stage's checkpoint may hold up to
`log_every - 1` more. Writes JSON and a Markdown table next to it (revision, machine, command).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from live_synth.provenance import machine, revision  # noqa: E402


def stage(log: Path) -> dict:
    rows = list(csv.DictReader(open(log)))
    if not rows:
        raise ValueError(f"{log}: no rows")
    last = rows[-1]
    probes = [r for r in rows if r.get("probe_head")]
    # `seconds` restarts at 0 when a run is resumed: the stage's time is the sum of its segments' last values
    seconds = [float(r["seconds"]) for r in rows]
    total = sum(a for a, b in zip(seconds, seconds[1:] + [-1.0]) if b < a)
    row = {"log": str(log), "last_step": int(last["step"]), "minutes": round(total / 60, 1), "segments":
           sum(1 for a, b in zip(seconds, seconds[1:]) if b < a) + 1,
           "loss": float(last["loss"])}
    if probes:
        p = probes[-1]
        lone = [float(v) for v in p["lone_db"].split()] if p.get("lone_db") else []
        row.update(probe_step=int(p["step"]), probe_head=float(p["probe_head"]),
                   probe_head_no_notes=float(p["probe_head_no_notes"]), probe_prior_l1=float(p["probe_prior_l1"]),
                   lone_db=lone, lone_relative_db=[round(v - max(lone), 1) for v in lone] if lone else [])
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("logs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True, help="JSON report (a .md table is written beside it)")
    args = parser.parse_args(argv)
    try:
        stages = [stage(log) for log in args.logs]
    except (OSError, ValueError, KeyError) as exc:
        print(f"training_stages: error: {exc}", file=sys.stderr)
        return 2
    report = {"command": "python tools/training_stages.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "revision": revision(), "machine": machine(), "stages": stages,
              "total_logged_steps": sum(s["last_step"] for s in stages),
              "total_minutes": round(sum(s["minutes"] for s in stages), 1)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    lines = ["| stage | log | last logged step | minutes | loss | last probe: step, head loss with / without notes, "
             "prior L1 | lone notes v20…v120 (dB; relative to the loudest) |", "|---|---|---|---|---|---|---|"]
    for i, s in enumerate(stages, 1):
        probe = (f"{s['probe_step']}: {s['probe_head']} / {s['probe_head_no_notes']}, {s['probe_prior_l1']}"
                 if "probe_step" in s else "–")
        lone = (" ".join(str(v) for v in s["lone_db"]) + "; " + " ".join(str(v) for v in s["lone_relative_db"])
                if s.get("lone_db") else "–")
        lines.append(f"| {i} | {Path(s['log']).name} | {s['last_step']} | {s['minutes']} | {s['loss']} | {probe} | "
                     f"{lone} |")
    lines += ["", f"All stages: {report['total_logged_steps']} logged steps, {report['total_minutes']} minutes.",
              f"Revision {report['revision']}; machine {report['machine']}; command `{report['command']}`."]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
