"""The page's note-on -> sound latency next to the MIDI path's, in one `play --web` run through JACK, and what the page
costs the generation process per tick.

    python tools/web_latency.py [--notes 20] [--out reports/web_latency.json]

Method. `live-synth play --midi-api jack --web PORT` runs on the JACK server; a probe JACK client (`bench.probe`)
records its audio output and sends notes into its MIDI port on the same frame clock; headless Chromium (Debian's,
driven by Playwright) has the page open. Notes alternate: one typed on the page (Playwright presses a vmpk key), one
sent by the probe as JACK MIDI, 1.2 s apart, so both paths see the same declared delay D and the same load.
- MIDI note: latency = its onset in the capture - the frame the probe wrote it at (as `bench latency`).
- Page note: the page logs each note-on's input event time (`performance.timeOrigin + event.timeStamp`, epoch ms);
  it becomes a monotonic time with this process's offset between the two clocks, and a JACK frame through pairs
  (monotonic time, frame) the probe's process callback samples every cycle. So the page's latency spans the browser
  event -> WebSocket -> server -> the generation process's queue -> the model -> JACK.
- Onsets: `probe.detect_onsets`, searched from 0.8 D (the soonest a note can be heard; `bench.latency`).
Cost: the tap that copies each frame for the page (`web.link.MelTap`) and the merged MIDI source
(`web.link.PageSource.drain`) are timed in this process on the shipped model's frame shape with ten held notes:
what the page adds to each tick of the generation loop. Writes the report (JSON and a Markdown table) to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from web_soak import CHROMIUM_ARGS, _free_port  # noqa: E402  (tools/ is the script's folder)

from live_synth.bench.latency import _ports, earliest_answer_ms  # noqa: E402
from live_synth.bench.probe import Probe, ScheduledNote, detect_onsets  # noqa: E402
from live_synth.provenance import machine, revision  # noqa: E402

KEYS = "zxcvbnm"  # vmpk: C D E F G A B from the page's octave (C4 = 60)
PITCHES = [60, 62, 64, 65, 67, 69, 71]


class ClockProbe(Probe):
    """A probe that also samples (monotonic time, JACK frame) once per cycle, to place the page's events."""

    def __init__(self, name: str, seconds: float):
        super().__init__(name, seconds)
        self.clock = np.zeros((int(seconds * self.rate / self.period) + 16, 2))
        self.clock_n = 0

    def _process(self, frames: int) -> None:
        super()._process(frames)
        if self.clock_n < len(self.clock):
            now, since = time.monotonic(), self.client.frames_since_cycle_start
            self.clock[self.clock_n] = now, self.client.last_frame_time - self.base + since
            self.clock_n += 1

    def frame_at(self, t: float) -> int:
        """The probe-relative frame at monotonic time t (the nearest sample, then the nominal rate)."""
        pairs = self.clock[: self.clock_n]
        i = int(np.argmin(np.abs(pairs[:, 0] - t)))
        return int(round(pairs[i, 1] + (t - pairs[i, 0]) * self.rate))


def measure_latency(n_notes: int, log=print) -> dict:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("chromium is not installed (apt-get install chromium)")
    seconds = 12.0 + 1.2 * 2 * n_notes
    port = _free_port()
    tag = f"weblat{os.getpid()}"
    work = Path(tempfile.mkdtemp(prefix="web-latency-"))
    report_json, log_path = work / "report.json", work / "play.log"
    probe = ClockProbe(f"{tag}-probe", seconds + 10)
    with probe, open(log_path, "w") as play_log:
        midi_before, audio_before = _ports(probe.client, midi=True), _ports(probe.client, midi=False)
        play = subprocess.Popen([sys.executable, "-m", "live_synth", "play", "--midi-api", "jack", "--web", str(port),
                                 "--seconds", f"{seconds:.0f}", "--report-json", str(report_json)],
                                stdin=subprocess.DEVNULL, stdout=play_log, stderr=play_log)
        try:
            deadline = time.monotonic() + 120
            while "expected latency" not in log_path.read_text():
                if play.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"play did not come up:\n{log_path.read_text()[-2000:]}")
                time.sleep(0.2)
            midi_port = sorted(_ports(probe.client, midi=True) - midi_before)[0]
            audio_port = sorted(p for p in _ports(probe.client, midi=False) - audio_before
                                if not p.startswith(f"{tag}-probe"))[0]
            probe.client.connect(f"{tag}-probe:midi_out", midi_port)
            probe.client.connect(audio_port, f"{tag}-probe:in")
            url = re.search(r"page: (\S+)", log_path.read_text()).group(1)
            rng = np.random.default_rng(0)
            page_notes: list[tuple[float, int]] = []
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1280, "height": 720})
                page.goto(url)
                page.wait_for_function("window.liveSynth.framesReceived > 50", timeout=20000)
                time.sleep(1.0)
                for i in range(n_notes):
                    k = int(rng.integers(len(KEYS)))
                    page.keyboard.down(KEYS[k])
                    time.sleep(0.3)
                    page.keyboard.up(KEYS[k])
                    time.sleep(0.9 + rng.uniform(0, 0.2))
                    pitch = PITCHES[int(rng.integers(len(PITCHES)))]
                    probe.play([ScheduledNote(0, int(0.3 * probe.rate), pitch, 100)], offset_frames=probe.period)
                    time.sleep(1.2 + rng.uniform(0, 0.2))
                log_entries = page.evaluate("window.liveSynth.noteLog")
                offset = time.time() - time.monotonic()  # epoch - monotonic, both this machine's clocks
                browser.close()
            page_notes = [(epoch_ms / 1e3 - offset, pitch) for epoch_ms, pitch in log_entries]
            time.sleep(1.5)
        finally:
            if play.poll() is None:
                play.send_signal(signal.SIGTERM)
            try:
                play.wait(timeout=30)
            except subprocess.TimeoutExpired:
                play.kill()
    text = log_path.read_text()
    report = json.loads(report_json.read_text()) if report_json.is_file() else {}
    midi_frames = [at for at, _ in probe.note_ons()]
    page_frames = [probe.frame_at(t) for t, _ in page_notes]
    earliest = earliest_answer_ms(report.get("latency") or {}) / 1e3
    result = {}
    for name, frames in (("page", page_frames), ("midi", midi_frames)):
        onsets = detect_onsets(probe.audio, frames, probe.rate, earliest_s=earliest)
        per_note = [None if o is None else round((o - f) / probe.rate * 1e3, 2) for o, f in zip(onsets, frames)]
        ms = [x for x in per_note if x is not None]
        result[name] = {"notes": len(frames), "heard": len(ms), "latencies_ms": ms, "per_note_ms": per_note,
                        "p50_ms": round(float(np.percentile(ms, 50)), 2) if ms else None,
                        "p99_ms": round(float(np.percentile(ms, 99)), 2) if ms else None}
    log(text.strip().splitlines()[-1] if text.strip() else "(no play output)")
    shutil.rmtree(work, ignore_errors=True)
    return {"page": result["page"], "midi": result["midi"],
            "paired_difference_ms": paired_difference(result),
            "p50_difference_ms": (round(result["page"]["p50_ms"] - result["midi"]["p50_ms"], 2)
                                  if result["page"]["p50_ms"] is not None and result["midi"]["p50_ms"] is not None
                                  else None),
            "declared_latency_ms": report.get("latency"), "delay_ms_at_end": report.get("delay_ms"),
            "underruns": report.get("underruns"), "server_xruns": report.get("server_xruns"),
            "rollbacks": report.get("rollbacks"), "midi_received": report.get("midi_received"),
            "probe_xruns": probe.xruns, "rate": probe.rate, "period": probe.period}


def paired_difference(result: dict) -> float | None:
    """Median over note pairs of (page note i - MIDI note i): the two are played 1.2 s apart, so a change of D
    during the run (a declared moment) moves both and cancels, where the difference of the p50s does not."""
    def per_note(r):
        if "per_note_ms" in r:
            return r["per_note_ms"]
        return r["latencies_ms"] if r["heard"] == r["notes"] else []  # a report from before per_note_ms
    pairs = [a - b for a, b in zip(per_note(result["page"]), per_note(result["midi"]))
             if a is not None and b is not None]
    return round(float(np.median(pairs)), 2) if pairs else None


def summarize(paths: list[str]) -> dict:
    """Several runs' reports -> per run and median over runs (the figures BENCHMARKS and the note quote)."""
    runs = []
    for path in paths:
        lat = json.loads(Path(path).read_text())["latency"]
        runs.append({"report": path, "page_heard": f"{lat['page']['heard']}/{lat['page']['notes']}",
                     "midi_heard": f"{lat['midi']['heard']}/{lat['midi']['notes']}",
                     "page_p50_ms": lat["page"]["p50_ms"], "midi_p50_ms": lat["midi"]["p50_ms"],
                     "p50_difference_ms": lat["p50_difference_ms"],
                     "paired_difference_ms": paired_difference(lat), "underruns": lat["underruns"]})
    def med(key):
        values = [r[key] for r in runs if r[key] is not None]
        return round(float(np.median(values)), 2) if values else None
    return {"runs": runs, "median_p50_difference_ms": med("p50_difference_ms"),
            "median_paired_difference_ms": med("paired_difference_ms"),
            "worst_paired_difference_ms": max((r["paired_difference_ms"] for r in runs
                                               if r["paired_difference_ms"] is not None), default=None)}


def measure_cost(calls: int = 20000) -> dict:
    """µs per tick that the page's tap and merged source add (p50 / p99), timed in this process."""
    from live_synth.live.notes import NoteState
    from live_synth.web.link import MelTap, PageLink, PageSource

    class Inner:
        can_rewind, frame, steps = True, 0, 1
        out = np.random.default_rng(0).uniform(-11, 2, (1, 128)).astype(np.float32)

        def generate(self, notes):
            self.frame += 1
            return self.out

    class Empty:
        wake_fd, received = None, 0

        def drain(self):
            return []

        def next_due(self):
            return None

    notes = NoteState()
    for i, pitch in enumerate(range(48, 88, 2)):
        notes.apply(0.01 * i, [0x90, pitch, 100])
        if i % 2:
            notes.apply(0.01 * i + 0.005, [0x80, pitch, 0])  # ten held, ten finished
    link = PageLink.create()
    try:
        inner, tap = Inner(), None
        tap = MelTap(inner, link)
        source = PageSource(Empty(), link)
        bare, tapped, drained = np.empty(calls), np.empty(calls), np.empty(calls)
        for i in range(calls):
            a = time.perf_counter()
            inner.generate(notes)
            b = time.perf_counter()
            tap.generate(notes)
            c = time.perf_counter()
            source.drain()
            d = time.perf_counter()
            bare[i], tapped[i], drained[i] = b - a, c - b, d - c
        source.close()
    finally:
        link.close()
    added = (tapped - bare + drained) * 1e6
    return {"calls": calls, "held_notes": len(notes.held), "finished_notes": len(notes.finished),
            "added_us_p50": round(float(np.percentile(added, 50)), 1),
            "added_us_p99": round(float(np.percentile(added, 99)), 1),
            "tap_us_p50": round(float(np.percentile((tapped - bare) * 1e6, 50)), 1),
            "drain_us_p50": round(float(np.percentile(drained * 1e6, 50)), 1)}


def markdown(report: dict) -> str:
    lat = report["latency"]
    rows = ["| path | notes | heard | p50 ms | p99 ms |", "|---|---|---|---|---|"]
    for name, label in (("page", "page keyboard (browser event → WebSocket → play → JACK)"),
                        ("midi", "JACK MIDI (probe → play → JACK)")):
        r = lat[name]
        rows.append(f"| {label} | {r['notes']} | {r['heard']} | {r['p50_ms']} | {r['p99_ms']} |")
    cost = report["cost"]
    return "\n".join(rows + ["", f"page p50 − MIDI p50: {lat['p50_difference_ms']} ms (paired, median over note pairs: "
                             f"{lat.get('paired_difference_ms')} ms); declared latency at start "
                             f"{lat['declared_latency_ms']}, D at the end {lat['delay_ms_at_end']} ms; ring underruns "
                             f"{lat['underruns']}, server xruns {lat['server_xruns']}.",
                             f"The page's cost per generation tick (tap + merged source, {cost['calls']} calls): "
                             f"p50 {cost['added_us_p50']} µs, p99 {cost['added_us_p99']} µs.",
                             f"Machine: {report['machine']}; revision {report['revision']}; command: "
                             f"`{report['command']}`."])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--notes", type=int, default=20, help="notes per path")
    parser.add_argument("--out", default="reports/web-2026-12-04/web_latency.json")
    parser.add_argument("--summarize", nargs="+", metavar="RUN.json",
                        help="no new run: summarise these runs' reports into --out")
    args = parser.parse_args()
    if args.summarize:
        summary = {**summarize(args.summarize), "machine": machine(), "revision": revision(),
                   "command": " ".join(["python", *sys.argv])}
        Path(args.out).write_text(json.dumps(summary, indent=2) + "\n")
        lines = ["| run | page heard | MIDI heard | page p50 ms | MIDI p50 ms | p50 difference ms | paired difference "
                 "ms (median over note pairs) | ring underruns |", "|---|---|---|---|---|---|---|---|"]
        lines += [f"| {r['report']} | {r['page_heard']} | {r['midi_heard']} | {r['page_p50_ms']} | {r['midi_p50_ms']} | "
                  f"{r['p50_difference_ms']} | {r['paired_difference_ms']} | {r['underruns']} |" for r in summary["runs"]]
        lines += ["", f"Median over runs: p50 difference {summary['median_p50_difference_ms']} ms, paired difference "
                      f"{summary['median_paired_difference_ms']} ms (worst run {summary['worst_paired_difference_ms']}"
                      f" ms). Revision {summary['revision']}; machine {summary['machine']}; command "
                      f"`{summary['command']}`."]
        Path(args.out).with_suffix(".md").write_text("\n".join(lines) + "\n")
        print("\n".join(lines))
        return
    report = {"latency": measure_latency(args.notes), "cost": measure_cost(), "machine": machine(),
              "revision": revision(), "command": " ".join(["python", *sys.argv]),
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    out = Path(args.out)
    out.write_text(json.dumps(report, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(report) + "\n")
    print(markdown(report))


if __name__ == "__main__":
    main()
