"""How much CPU Chromium takes with the live page open, per drawing interval (the page's `?draw=MS`).

    python tools/page_cpu.py [--intervals 50 100 0] [--seconds 20] [--out reports/.../page_cpu.json]

`live-synth play --midi-api jack --web PORT` runs on the running JACK server (no notes: the page still receives
50 frames/s and the status messages); for each interval, headless Chromium (Debian's, via Playwright) opens the page
with `?draw=MS` (0: drawing off, by an interval longer than the run), waits until frames arrive, then the CPU time
(user + system) of all Chromium processes is read over --seconds. On a 2-core machine this is CPU taken from `play`
and the JACK server. Writes JSON and a Markdown table next to it (revision, machine, command).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from web_soak import CHROMIUM_ARGS, _free_port  # noqa: E402  (tools/ is the script's folder)

from live_synth.provenance import machine, revision  # noqa: E402


def cpu_seconds(processes) -> float:
    import psutil

    total = 0.0
    for p in processes:
        try:
            times = p.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            pass
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--intervals", type=int, nargs="+", default=[50, 100, 0], help="ms; 0: no drawing")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--out", type=Path, default=Path("reports/page_cpu.json"))
    args = parser.parse_args(argv)
    import psutil
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        print("page_cpu: error: chromium is not installed (apt-get install chromium)", file=sys.stderr)
        return 2
    port = _free_port()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        log_path = Path(tmp) / "play.log"
        with open(log_path, "w") as log:
            play = subprocess.Popen([sys.executable, "-m", "live_synth", "play", "--midi-api", "jack", "--web",
                                     str(port), "--seconds", str(60 + len(args.intervals) * (args.seconds + 20))],
                                    stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + 90
            while not (found := re.search(r"page: (\S+)", log_path.read_text())):
                if play.poll() is not None or time.monotonic() > deadline:
                    print(f"page_cpu: error: play did not start: {log_path.read_text()[-500:]}", file=sys.stderr)
                    return 2
                time.sleep(0.3)
            url = found.group(1)
            with sync_playwright() as pw:
                for interval in args.intervals:
                    browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
                    page = browser.new_page(viewport={"width": 1280, "height": 720})
                    page.goto(url + ("&" if "?" in url else "?") + f"draw={interval or 1000}")
                    page.wait_for_function("window.liveSynth.framesReceived > 100", timeout=20000)
                    if not interval:  # drawing off: one draw per 1000 ms is the page's slowest; stop it outright
                        page.evaluate("window.liveSynth.drawingOff = true")
                    procs = [p for p in psutil.process_iter(["name"]) if "chrom" in (p.info["name"] or "")]
                    before, start = cpu_seconds(procs), time.monotonic()
                    frames0 = page.evaluate("window.liveSynth.framesReceived")
                    time.sleep(args.seconds)
                    used, wall = cpu_seconds(procs) - before, time.monotonic() - start
                    frames = page.evaluate("window.liveSynth.framesReceived") - frames0
                    rows.append({"draw_ms": interval, "chromium_core_percent": round(100 * used / wall, 1),
                                 "seconds": round(wall, 1), "frames_received": frames})
                    print(f"draw {interval or 'off'}: Chromium {rows[-1]['chromium_core_percent']} % of a core",
                          flush=True)
                    browser.close()
        finally:
            play.send_signal(signal.SIGTERM)
            try:
                play.wait(timeout=20)
            except subprocess.TimeoutExpired:
                play.kill()
    report = {"rows": rows, "revision": revision(), "machine": machine(),
              "command": "python tools/page_cpu.py " + " ".join(sys.argv[1:] if argv is None else argv)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    lines = ["| page draws every | Chromium CPU (% of one core) | seconds | frames received |", "|---|---|---|---|"]
    lines += [f"| {r['draw_ms'] or 'never (off)'} {'ms' if r['draw_ms'] else ''} | {r['chromium_core_percent']} | "
              f"{r['seconds']} | {r['frames_received']} |" for r in rows]
    lines += ["", f"Revision {report['revision']}; machine {report['machine']}; command `{report['command']}`."]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
