"""Every figure in README.md, MODEL_CARD.md and BENCHMARKS.md is in a file under reports/ (tools/unbacked_figures.py says what
a figure is and what backs it). A figure that fails this is re-measured by a tool that writes its report, or taken
out of the documents with a sentence saying it was not backed by a report; there is no list of exempt numbers."""

from __future__ import annotations

import json
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
    # inline code over a line break, a link target and a bare URL hold no figures; the prose after them does
    doc.write_text("prints `device 5.3 ms,\ndelay 43.2 ms` then [paper](https://arxiv.org/abs/2206.05408)\n"
                   "see https://example.org/v1.25/x and 7.77 dB\n")
    assert [(f.line, f.text) for f in unbacked_figures.unbacked([doc], reports)] == [(3, "7.77")]


def test_every_figure_in_the_model_card_and_benchmarks_has_a_report(capsys):
    docs = [ROOT / name for name in unbacked_figures.DOCS]
    found = unbacked_figures.unbacked(docs, ROOT / "reports")
    listing = "\n".join(f"  {f.document}:{f.line}: {f.text}  | {f.context[:120]}" for f in found)
    assert not found, (f"{len(found)} figure(s) in {', '.join(unbacked_figures.DOCS)} are in no file under reports/ "
                       f"(re-measure with a tool that writes a report, or move them out with a sentence saying "
                       f"so; `python tools/unbacked_figures.py` lists them):\n{listing}")


def test_training_stages_sums_resumed_segments_and_takes_the_last_probe(tmp_path, capsys):
    import training_stages

    header = "step,seconds,loss,head,prior_l1,lr,grad_norm,probe_head,probe_head_no_notes,probe_prior_l1,lone_db\n"
    log = tmp_path / "loss.csv"  # two segments: 0..600 s, then resumed at 0 s and run to 300 s
    log.write_text(header + "25,300.0,0.5,0.3,0.2,0.001,0.1,,,,\n"
                   "50,600.0,0.4,0.3,0.1,0.001,0.1,0.2,0.4,0.1,10.0 20.0 30.0 40.0 50.0\n"
                   "75,150.0,0.3,0.2,0.1,0.001,0.1,,,,\n100,300.0,0.2,0.1,0.1,0.001,0.1,,,,\n")
    assert training_stages.main([str(log), "--out", str(tmp_path / "stages.json")]) == 0
    stage = json.loads((tmp_path / "stages.json").read_text())["stages"][0]
    assert (stage["last_step"], stage["minutes"], stage["segments"]) == (100, 15.0, 2)
    assert stage["probe_step"] == 50 and stage["lone_relative_db"] == [-40.0, -30.0, -20.0, -10.0, 0.0]
    assert training_stages.main([str(tmp_path / "missing.csv"), "--out", str(tmp_path / "x.json")]) == 2


def test_web_latency_pairs_notes_so_a_change_of_delay_cancels():
    import web_latency

    page = [200.0] * 10 + [60.0] * 10  # D fell half-way through: both paths move together
    midi = [196.0] * 9 + [56.0] * 11
    result = {"page": {"notes": 20, "heard": 20, "latencies_ms": page, "per_note_ms": page},
              "midi": {"notes": 20, "heard": 20, "latencies_ms": midi, "per_note_ms": midi}}
    assert web_latency.paired_difference(result) == 4.0  # the p50s differ by 70 ms here
    result["page"]["per_note_ms"] = [None] + page[1:]
    assert web_latency.paired_difference(result) == 4.0  # an unheard note drops its pair, not the alignment
