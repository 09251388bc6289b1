"""Which pieces of a dataset's validation and test splits an older model may have trained on.

    python tools/split_overlap.py --dataset DS --old-heldout reports/causal-default-2026-12-03/heldout/results.json \
        --out reports/causal-2026-12-04/overlap.json

A model trained before the three-way split (issue 20) trained on every piece of its dataset except its held-out
ones, whose names its evaluation report lists (`results.json` of tools/evaluate.py). When that dataset was made by
the same command and generators as DS (same seed: the names then stand for the same pieces), a piece of DS's
validation or test split that is *not* in that list was in the older model's training data: its scores there are
not held-out scores. Counts per split over the sources the evaluation reads (procedural and music21 by default; the
old report names only the held-out pieces of those) go to a JSON report.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from live_synth.provenance import machine, revision  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", type=Path, required=True)
    parser.add_argument("--old-heldout", type=Path, required=True, help="the older model's evaluate.py results.json")
    parser.add_argument("--sources", default="procedural,music21", help="the sources the evaluation reads")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    manifest = json.loads((args.dataset / "manifest.json").read_text())
    old = json.loads(args.old_heldout.read_text())
    heldout = {p["name"] for p in old["pieces"]}
    sources = set(args.sources.split(","))
    splits: dict[str, set[str]] = {}
    for path, name in manifest["pieces"].items():
        splits.setdefault(path.split("/")[0], set()).add(name)
    result = {}
    for split in ("validation", "test"):
        names = splits.get(split, set())
        read = {n for n in names if n.split("/")[0] in sources}
        # Only the evaluated sources: the old report lists the held-out pieces its evaluation read, not the others.
        result[split] = {"evaluated_pieces": len(read), "evaluated_trained_on": len(read - heldout),
                         "evaluated_trained_on_names": sorted(read - heldout)}
    report = {"tool": "tools/split_overlap.py", "command": "python tools/split_overlap.py " + shlex.join(
              argv if argv is not None else sys.argv[1:]), "revision": revision(), "machine": machine(),
              "dataset": manifest["created_by"], "old_model_dataset_heldout": len(heldout),
              "old_evaluation": old["meta"]["command"], "splits": result}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    for split, r in result.items():
        print(f"{split}: {r['evaluated_trained_on']} of the {r['evaluated_pieces']} pieces an evaluation reads were in "
              f"the old model's training data")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
