"""Dense music through `play --web` with the page open in Chromium, next to the same run without the page.

    python tools/web_soak.py [--seconds 300] [--without 300] [--repeat 26] [--out reports/.../web_soak.json]

`play --midi-file` plays the soak file of BENCHMARKS.md (the packaged demo repeated, `tools/soak.py`) on the running
JACK server with `--web`, while headless Chromium (Debian's, via Playwright) keeps the page open and receives every
frame (50 frames/s) and status message. Then, unless `--without 0`, the same file plays as long without `--web`.
Both runs' reports (`--report-json`) give the ring underruns, the tick times (p50/p99: what the page costs the
generation process is the difference) and the server's xruns (a JACK client counts them); the page's own counters
(frames received, frames dropped) come from the page. Writes JSON and a Markdown table next to it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

from soak import XrunCounter, soak_midi  # noqa: E402

from live_synth.provenance import machine, revision  # noqa: E402

CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(midi: Path, seconds: float, page: bool) -> dict:
    work = Path(tempfile.mkdtemp(prefix="web-soak-"))
    report, log_path = work / "report.json", work / "play.log"
    port = _free_port()
    args = [sys.executable, "-m", "live_synth", "play", "--midi-file", str(midi), "--seconds", str(seconds),
            "--report-json", str(report)] + (["--web", str(port)] if page else [])
    counter = XrunCounter(f"web-soak-xruns-{int(page)}")
    seen = {}
    with open(log_path, "w") as log:
        play = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                env={**os.environ, "PYTHONFAULTHANDLER": "1"})
        try:
            if page:
                from playwright.sync_api import sync_playwright

                deadline = time.monotonic() + 120
                while "expected latency" not in log_path.read_text():
                    if play.poll() is not None or time.monotonic() > deadline:
                        raise SystemExit(f"play did not come up:\n{log_path.read_text()[-2000:]}")
                    time.sleep(0.2)
                url = re.search(r"page: (\S+)", log_path.read_text()).group(1)
                with sync_playwright() as pw:
                    browser = pw.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS)
                    tab = browser.new_page(viewport={"width": 1280, "height": 720})
                    tab.goto(url)
                    while play.poll() is None:
                        time.sleep(1.0)
                        try:
                            seen = tab.evaluate("({frames: window.liveSynth.framesReceived,"
                                                " stats: window.liveSynth.lastStats})")
                        except Exception:  # noqa: BLE001 - the server went away at the end
                            break
                    browser.close()
            play.wait(timeout=seconds + 180)
        finally:
            if play.poll() is None:
                play.send_signal(signal.SIGTERM)
                play.wait(timeout=30)
            counter.close()
    if play.returncode != 0:
        raise SystemExit(f"play failed (exit {play.returncode}):\n{log_path.read_text()[-12000:]}")
    data = json.loads(report.read_text())
    shutil.rmtree(work, ignore_errors=True)
    ticks = np.array(data.pop("tick_ms") or [0.0])
    out = {"page": page, "seconds": round(data["seconds"], 1), "ticks": data["ticks"],
           "tick_ms_p50": round(float(np.percentile(ticks, 50)), 3),
           "tick_ms_p99": round(float(np.percentile(ticks, 99)), 3), "late_ticks": data["late_ticks"],
           "underruns": data["underruns"], "server_xruns": counter.count, "rollbacks": data["rollbacks"],
           "midi_received": data["midi_received"]}
    if page:
        stats = seen.get("stats") or {}
        out["page_frames_received"] = seen.get("frames")
        out["page_frames_dropped"] = (stats.get("page") or {}).get("frames_dropped")
    return out


def markdown(report: dict) -> str:
    rows = ["| run | seconds | tick p50 ms | tick p99 ms | late ticks | ring underruns | server xruns | page frames "
            "received / dropped |", "|---|---|---|---|---|---|---|---|"]
    for r in report["runs"]:
        frames = f"{r.get('page_frames_received')} / {r.get('page_frames_dropped')}" if r["page"] else "–"
        rows.append(f"| {'page open' if r['page'] else 'no page'} | {r['seconds']} | {r['tick_ms_p50']} | "
                    f"{r['tick_ms_p99']} | {r['late_ticks']} | {r['underruns']} | {r['server_xruns']} | {frames} |")
    return "\n".join(rows + ["", f"Machine: {report['machine']}; revision {report['revision']}; "
                             f"command: `{report['command']}`; {report['date']}."])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=300.0, help="the run with the page open")
    parser.add_argument("--without", type=float, help="the run without the page (default: as long; 0: none)")
    parser.add_argument("--repeat", type=int, default=26)
    parser.add_argument("--out", default="reports/web-2026-12-04/web_soak.json")
    args = parser.parse_args()
    midi = soak_midi(Path(tempfile.mkdtemp()) / "soak.mid", args.repeat)
    runs = [run(midi, args.seconds, page=True)]
    without = args.seconds if args.without is None else args.without
    if without > 0:
        runs.append(run(midi, without, page=False))
    report = {"runs": runs, "machine": machine(), "revision": revision(),
              "command": " ".join(["python", *sys.argv]), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(report) + "\n")
    print(markdown(report))


if __name__ == "__main__":
    main()
