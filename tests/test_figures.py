"""Every figure in MODEL_CARD.md and BENCHMARKS.md is in a file under reports/ (tools/unbacked_figures.py says what
a figure is and what backs it). A figure that fails this is re-measured by a tool that writes its report, or taken
out of the documents with a sentence saying it was not backed by a report; there is no list of exempt numbers."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import unbacked_figures  # noqa: E402


def test_the_checker_finds_a_figure_no_report_holds_and_accepts_a_rounded_one(tmp_path):
    doc = tmp_path / "CARD.md"
    doc.write_text("F1 **0.75**, level \u22120.85 dB, 18.8x real time, 12 steps.\n"
                   "```\nlive-synth bench --guidance 1.5\n```\nrun `--steps 2.5` then 41.2 ms\n")
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "run.json").write_text('{"f1": 0.7503, "level_db": -0.849, "p50_ms": 41.24}')
    found = unbacked_figures.unbacked([doc], reports)
    # 0.75 (0.7503), -0.85 (-0.849) and 41.2 (41.24) are backed; 18.8 is not; 12 is an integer, 1.5 and 2.5 are code
    assert [(f.line, f.text) for f in found] == [(1, "18.8")]
    (reports / "speed.md").write_text("offline 18.83x\n")
    assert unbacked_figures.unbacked([doc], reports) == []


def test_every_figure_in_the_model_card_and_benchmarks_has_a_report(capsys):
    docs = [ROOT / name for name in unbacked_figures.DOCS]
    found = unbacked_figures.unbacked(docs, ROOT / "reports")
    listing = "\n".join(f"  {f.document}:{f.line}: {f.text}  | {f.context[:120]}" for f in found)
    assert not found, (f"{len(found)} figure(s) in {', '.join(unbacked_figures.DOCS)} are in no file under reports/ "
                       f"(re-measure with a tool that writes a report, or move them out with a sentence saying "
                       f"so; `python tools/unbacked_figures.py` lists them):\n{listing}")
