"""`live-synth bench latency`: note-on → sound latency through JACK, for live-synth and FluidSynth in one run.

Method (BENCHMARKS.md repeats it next to the numbers):
- A probe JACK client (`bench.probe.Probe`) writes note-ons into its MIDI output at random offsets inside JACK
  periods and records the synthesizer's audio output on the same frame clock.
- Latency of a note = first frame of its onset in the captured audio − frame at which its note-on was written.
  It spans: JACK MIDI delivery (the synth reads MIDI at its next cycle), the synth's own path (for live-synth at
  its defaults: the declared delay D from the note's arrival, within which rollback regenerates, vocodes and
  resamples the note's frames, then the PortAudio buffer; a synth that declares no delay: the next generation tick,
  its compute, the vocoder, the resampler and the ring's lead), and the audio's way back to the probe (up to one
  period, depending on JACK's graph order).
- Onset: 0.5 ms block RMS crossing 10 % of the way from the 50 ms median level before the note to the note's peak
  and staying above for 10 ms; a note without a clear peak (< 4x that level) is counted as missed. For live-synth
  the search and the level before start at `earliest_answer_ms`, the soonest its answer can be heard (from the
  latency `play` declares in its report: the causal family's delay, the window family's lead).
- Each synthesizer runs alone (one after the other, same server, same note schedule seed) so that they do not
  compete for the CPU. Known biases: the dummy JACK driver paces cycles with a timer, not a sound card; MIDI is
  delivered at period boundaries; servers started here run without real-time scheduling.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from live_synth.bench.probe import Probe, ScheduledNote, detect_onsets, schedule
from live_synth.errors import LiveSynthError
from live_synth.provenance import machine, revision

DEFAULT_SOUNDFONT = "/usr/share/sounds/sf2/FluidR3_GM.sf2"


@dataclass
class LatencyResult:
    synth: str
    settings: dict
    rate: int
    period: int
    notes: int
    latencies_ms: list[float | None]
    note_times_s: list[float]
    xruns: int
    synth_report: dict = field(default_factory=dict)  # live-synth's own counters (underruns, tick times)
    # For checks on the sound itself (tests): the capture and the notes on its frame axis. Not written to JSON.
    audio: np.ndarray | None = field(default=None, repr=False)
    note_frames: list[int] = field(default_factory=list, repr=False)
    pitches: list[int] = field(default_factory=list, repr=False)
    onset_frames: list[int | None] = field(default_factory=list, repr=False)
    earliest_ms: float = 0.0  # onsets were sought from here on (the synth's queued audio; `measure`)
    playing_s: float = 0.0  # from the first note-on to the end of the capture: the window xruns are rated over
    xruns_playing: int = 0  # the server's xruns in that window (start-up excluded: loading a model is not playing)
    run: int = 0

    def stats(self) -> dict:
        found = np.array([x for x in self.latencies_ms if x is not None], np.float64)
        out = {"synth": self.synth, "notes": self.notes, "missed": self.notes - len(found), "xruns": self.xruns,
               "earliest_ms": self.earliest_ms, "run": self.run, "xruns_playing": self.xruns_playing,
               "playing_s": self.playing_s,
               "xruns_per_min": 60.0 * self.xruns_playing / self.playing_s if self.playing_s else None}
        if len(found):
            out.update({"min_ms": found.min(), "p50_ms": np.percentile(found, 50), "p95_ms": np.percentile(found, 95),
                        "p99_ms": np.percentile(found, 99), "max_ms": found.max(), "jitter_ms": found.std()})
        ticks = self.synth_report.get("tick_ms")
        if ticks:
            t = np.array(ticks)
            out["tick_ms"] = {"p50": np.percentile(t, 50), "p90": np.percentile(t, 90), "p99": np.percentile(t, 99),
                              "max": t.max(), "n": len(t)}
        for key in ("underruns", "underflows", "late_ticks", "midi_dropped", "late_events", "server_xruns",
                    "audio_priority", "delay_ms", "delay_changes", "priority_raises"):
            if key in self.synth_report:
                out[key] = self.synth_report[key]
        callback = self.synth_report.get("callback") or {}
        if callback.get("callbacks"):  # the audio callback's own duration against the period (play's report)
            out["callback_ms"] = {k: callback[k] for k in ("p50_ms", "p99_ms", "max_ms", "period_ms", "gap_max_ms")}
        return {k: (round(float(v), 3) if isinstance(v, (float, np.floating)) else v) for k, v in out.items()}


def _ports(client, *, midi: bool) -> set[str]:
    if midi:
        return {p.name for p in client.get_ports(is_midi=True, is_input=True)}
    return {p.name for p in client.get_ports(is_audio=True, is_output=True)}


def _wait_for(condition, timeout: float, process: subprocess.Popen, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if process.poll() is not None:
            err = process.stderr.read() if process.stderr else ""
            raise LiveSynthError(f"{what} exited before its JACK ports appeared: {err.strip().splitlines()[-1:]}")
        time.sleep(0.1)
    raise LiveSynthError(f"{what}: its JACK ports did not appear within {timeout:.0f} s")


def _stop(process: subprocess.Popen, timeout: float) -> str:
    try:
        _, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGINT)
        try:
            _, err = process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            _, err = process.communicate()
    return err or ""


def earliest_answer_ms(latency: dict) -> float:
    """The soonest live-synth's answer to a note can be heard, from the latency parts `play` reports.

    A synth that declares a delay D (`Synth.declares_delay`; the report then has `delay`) places a note at arrival +
    D, so nothing of it can be heard sooner; 0.8 D leaves room for the frame's 40 ms analysis window, which starts
    up to a frame before the onset. One that declares none stamps the note at the committed end, behind the ring's
    fill, which is at least the lead minus the compute of the tick under way; 0.8 x the lead is below every onset
    measured (BENCHMARKS.md: the earliest were 1.17x the lead at 250 ms, 1.24x at 200, 1.59x at 100, 1.99x at 40)."""
    if "delay" in latency:
        return 0.8 * float(latency["delay"])
    return 0.8 * float(latency.get("lead", 0.0))


def measure(synth: str, notes: list[ScheduledNote], seconds: float, tag: str, play_args: list[str],
            soundfont: str = DEFAULT_SOUNDFONT, log=print, earliest_ms: float | None = None) -> LatencyResult:
    """Start `synth` ('live-synth' or 'fluidsynth'), play `notes` into it from a probe, capture, detect onsets no
    sooner than `earliest_ms` after each note-on (`detect_onsets`; None: for live-synth `earliest_answer_ms` of the
    latency its report declares, 0 otherwise)."""
    probe = Probe(f"{tag}-probe", seconds + 5)
    report_path = None
    if synth == "live-synth":
        report_path = Path(tempfile.mkstemp(prefix="live-synth-bench-", suffix=".json")[1])
    with probe:
        midi_before, audio_before = _ports(probe.client, midi=True), _ports(probe.client, midi=False)
        if synth == "live-synth":
            cmd = [sys.executable, "-m", "live_synth", "play", "--midi-api", "jack", "--midi-in", "virtual",
                   "--seconds", f"{seconds + 2:.1f}", "--report-json", str(report_path), *play_args]
            startup = 180.0
        elif synth == "fluidsynth":
            if shutil.which("fluidsynth") is None:
                raise LiveSynthError("fluidsynth is not installed (apt-get install fluidsynth fluid-soundfont-gm)")
            if not Path(soundfont).is_file():
                raise LiveSynthError(f"{soundfont}: soundfont not found (apt-get install fluid-soundfont-gm)")
            cmd = ["fluidsynth", "-a", "jack", "-m", "jack", "-i", "-s", "-q", "-g", "0.6",
                   "-o", "audio.jack.autoconnect=0", "-o", f"audio.jack.id={tag}-fluid",
                   "-o", f"midi.jack.id={tag}-fluid-midi", "-o", "synth.reverb.active=0",
                   "-o", "synth.chorus.active=0", soundfont]
            startup = 30.0
        else:
            raise LiveSynthError(f"unknown synthesizer {synth!r}")
        log(f"bench latency: starting {synth}")
        process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, text=True)
        try:
            def ready():
                midi = sorted(_ports(probe.client, midi=True) - midi_before)
                audio = sorted(p for p in _ports(probe.client, midi=False) - audio_before
                               if not p.startswith(f"{tag}-probe"))
                return (midi, audio) if midi and audio else None

            midi_ports, audio_ports = _wait_for(ready, startup, process, synth)
            time.sleep(1.0)  # let the synthesizer settle (pre-fill, first ticks) before the first note
            probe.client.connect(f"{tag}-probe:midi_out", midi_ports[0])
            probe.client.connect(audio_ports[0], f"{tag}-probe:in")
            first, xruns_before = probe.frames_seen, probe.xruns
            probe.play(notes, offset_frames=0)
            end = notes[-1].off_frame + int(1.5 * probe.rate)
            while probe.frames_seen < first + end and process.poll() is None:
                time.sleep(0.05)
            xruns_playing, playing_s = probe.xruns - xruns_before, (probe.frames_seen - first) / probe.rate
            if synth == "fluidsynth":
                process.send_signal(signal.SIGINT)
            err = _stop(process, timeout=seconds + 30)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        if synth == "live-synth" and process.returncode != 0:
            said = [line for line in (err or "").splitlines() if line.startswith("live-synth: error")]
            raise LiveSynthError(f"live-synth play failed (exit {process.returncode}): "
                                 f"{(said or (err or '?').strip().splitlines())[-1]}")
        sent = probe.note_ons()
    report = {}
    if synth == "live-synth":
        try:
            report = json.loads(report_path.read_text())
        except (OSError, ValueError):
            report = {}
        report_path.unlink(missing_ok=True)
    frames = [at for at, _ in sent]
    if earliest_ms is None:
        earliest_ms = earliest_answer_ms(report.get("latency") or {}) if synth == "live-synth" else 0.0
    onsets = detect_onsets(probe.audio, frames, probe.rate, earliest_s=earliest_ms / 1e3)
    latencies = [None if o is None else (o - at) / probe.rate * 1e3 for o, at in zip(onsets, frames)]
    return LatencyResult(synth, {"args": play_args} if synth == "live-synth" else {"soundfont": soundfont},
                         probe.rate, probe.period, len(frames), latencies, [f / probe.rate for f in frames],
                         probe.xruns, report, probe.audio, frames, [pitch for _, pitch in sent], onsets, earliest_ms,
                         playing_s, xruns_playing)


def run_latency_bench(n_notes: int, play_args: list[str], out_jsonl: Path, png: Path | None, seed: int = 0,
                      with_fluidsynth: bool = True, key: dict | None = None, log=print, runs: int = 1,
                      busy: bool = False) -> list[LatencyResult]:
    """Measure live-synth (and FluidSynth) with the same note schedule, `runs` times in turn; append a JSON line per
    synth and run, and one per synth summarising the runs (medians and worst run); plot. `busy`: a second process
    spins on the CPU throughout (a player's laptop), for both synthesizers alike."""
    tag = f"lsb{os.getpid()}"
    spacing, hold = 0.8, 0.35
    notes = schedule(n_notes, _server_rate(tag), spacing, hold, start_s=0.5, seed=seed)  # one schedule for both
    seconds = n_notes * spacing + 4.0
    results = []
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    try:
        for run in range(runs):
            for synth in (["live-synth"] + (["fluidsynth"] if with_fluidsynth else [])):
                log(f"bench latency: run {run + 1} of {runs}")
                result = measure(synth, notes, seconds, tag, play_args, log=log)
                result.run = run
                results.append(result)
    finally:
        if spinner is not None:
            spinner.kill()
            spinner.wait()
    provenance = {"revision": revision(), "machine": machine(), "command": " ".join(["live-synth", *sys.argv[1:]]),
                  "busy": busy}
    write_rows(results, out_jsonl, provenance, key)
    if png is not None:
        plot_latencies(results[:2] if runs > 1 else results, png)
    return results


def across_runs(results: list[LatencyResult]) -> dict[str, dict]:
    """Per synthesizer over its runs: the median and the worst run of notes heard, p50, p99, jitter, xruns/min."""
    out = {}
    for synth in dict.fromkeys(r.synth for r in results):
        stats = [r.stats() for r in results if r.synth == synth]
        row = {"synth": synth, "runs": len(stats)}
        for name, worst in (("heard", min), ("p50_ms", max), ("p99_ms", max), ("jitter_ms", max),
                            ("xruns_per_min", max), ("xruns_playing", max)):
            values = [s["notes"] - s["missed"] if name == "heard" else s.get(name) for s in stats]
            values = [v for v in values if v is not None]
            if values:
                row[name] = {"median": round(float(np.median(values)), 3), "worst": round(float(worst(values)), 3),
                             "all": [round(float(v), 3) for v in values]}
        out[synth] = row
    return out


def write_rows(results: list[LatencyResult], out_jsonl: Path, provenance: dict, key: dict | None) -> None:
    rows = []
    for result in results:
        row = {**provenance, "rate": result.rate, "period": result.period,
               **(key or {}), **result.stats(), "latencies_ms": [None if x is None else round(x, 3)
                                                                 for x in result.latencies_ms]}
        if result.synth != "live-synth":
            row = {k: v for k, v in row.items() if k not in ("model", "engine", "steps", "hop", "lead_ms")}
        rows.append(row)
    summary = across_runs(results)
    for synth, row in summary.items():
        rows.append({**provenance, "summary_of_runs": True, **((key or {}) if synth == "live-synth" else {}), **row})
    if "live-synth" in summary and "fluidsynth" in summary:
        ours, theirs = (summary[s].get("xruns_per_min", {}).get("median") for s in ("live-synth", "fluidsynth"))
        if ours is not None and theirs:
            rows[-1]["xrun_ratio_median"] = round(ours / theirs, 3)
    out_jsonl.parent.mkdir(parents=True, exist_ok=True)
    with open(out_jsonl, "a") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")


def _server_rate(tag: str) -> int:
    import jack

    try:
        client = jack.Client(f"{tag}-rate", no_start_server=True)
    except jack.JackError as exc:
        raise LiveSynthError(f"no JACK server to measure through ({exc}); start one, e.g. "
                             "`jackd -d dummy -r 48000 -p 256`") from None
    try:
        return client.samplerate
    finally:
        client.close()


def summary_table(results: list[LatencyResult]) -> str:
    """Markdown: one row per synthesizer, then the ratio of live-synth to FluidSynth."""
    head = ("| synth | notes | missed | min | p50 | p95 | p99 | max | jitter (sd) | xruns (while playing) | "
            "underruns |\n|---|---|---|---|---|---|---|---|---|---|---|\n")
    lines = []
    stats = [r.stats() for r in results]
    several = any(s["run"] for s in stats)
    for s in stats:
        cells = [s.get(k) for k in ("min_ms", "p50_ms", "p95_ms", "p99_ms", "max_ms", "jitter_ms")]
        cells = ["—" if c is None else f"{c:.1f} ms" for c in cells]
        name = f"{s['synth']} (run {s['run'] + 1})" if several else s["synth"]
        lines.append(f"| {name} | {s['notes']} | {s['missed']} | " + " | ".join(cells)
                     + f" | {s['xruns']} ({s['xruns_playing']}) | {s.get('underruns', '—')} |")
    for s in stats:
        if "callback_ms" in s:
            c = s["callback_ms"]
            lines.append(f"| {s['synth']} audio callback: p50 {c['p50_ms']:.3f} / p99 {c['p99_ms']:.3f} / max "
                         f"{c['max_ms']:.2f} ms of a {c['period_ms']:.2f} ms period (longest gap {c['gap_max_ms']:.1f} "
                         f"ms), server xruns seen by play {s.get('server_xruns', '—')} | | | | | | | | | | |")
    for s in stats:
        if "tick_ms" in s:
            t = s["tick_ms"]
            lines.append(f"| {s['synth']} tick compute ({t['n']} ticks): p50 {t['p50']:.1f} / p90 {t['p90']:.1f} / "
                         f"p99 {t['p99']:.1f} / max {t['max']:.1f} ms | | | | | | | | | | |")
    if len(stats) == 2 and "p50_ms" in stats[0] and "p50_ms" in stats[1]:
        a, b = stats
        lines.append(f"| ratio live-synth / {b['synth']} | | | | {a['p50_ms'] / b['p50_ms']:.1f}x | "
                     f"{a['p95_ms'] / b['p95_ms']:.1f}x | {a['p99_ms'] / b['p99_ms']:.1f}x | | | | |")
    return head + "\n".join(lines)


def runs_table(results: list[LatencyResult]) -> str:
    """Markdown: per synthesizer, the median and the worst of its runs (notes heard, p50, p99, jitter, the server's
    xruns per minute while the notes played), then live-synth's xruns/min over FluidSynth's (medians)."""
    summary = across_runs(results)
    cell = lambda row, name, unit="": (  # noqa: E731
        f"{row[name]['median']:.1f}{unit} / {row[name]['worst']:.1f}{unit}" if name in row else "—")
    lines = ["| synth | runs | notes heard (median / worst) | p50 | p99 | jitter (sd) | xruns/min while playing |",
             "|---|---|---|---|---|---|---|"]
    for synth, row in summary.items():
        notes = next(r.notes for r in results if r.synth == synth)
        lines.append(f"| {synth} | {row['runs']} | {cell(row, 'heard')} of {notes} | {cell(row, 'p50_ms', ' ms')} | "
                     f"{cell(row, 'p99_ms', ' ms')} | {cell(row, 'jitter_ms', ' ms')} | {cell(row, 'xruns_per_min')} |")
    if "live-synth" in summary and "fluidsynth" in summary:
        ours, theirs = (summary[s].get("xruns_per_min", {}).get("median") for s in ("live-synth", "fluidsynth"))
        ratio = "— (FluidSynth had none)" if not theirs else f"{ours / theirs:.2f}x"
        lines.append(f"| xruns/min, live-synth / FluidSynth (medians) | | | | | | {ratio} |")
    callbacks = [r.synth_report.get("callback") for r in results if r.synth_report.get("callback", {}).get("callbacks")]
    if callbacks:
        lines.append(f"| live-synth audio callback (worst run) | | | p99 {max(c['p99_ms'] for c in callbacks):.3f} ms | "
                     f"max {max(c['max_ms'] for c in callbacks):.2f} ms | of a {callbacks[0]['period_ms']:.2f} ms "
                     f"period | longest gap {max(c['gap_max_ms'] for c in callbacks):.1f} ms |")
    return "\n".join(lines)


def plot_latencies(results: list[LatencyResult], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from live_synth.files import atomic_output

    fig, (hist, timeline, ticks) = plt.subplots(1, 3, figsize=(16, 4))
    for result in results:
        ok = [(t, x) for t, x in zip(result.note_times_s, result.latencies_ms) if x is not None]
        if not ok:
            continue
        times, lat = zip(*ok)
        hist.hist(lat, bins=30, alpha=0.6, label=result.synth)
        timeline.plot(np.array(times) - times[0], lat, "o-", ms=3, label=result.synth)
    hist.set_xlabel("note-on → sound latency (ms)")
    hist.set_ylabel("notes")
    hist.legend()
    for result in results:
        tick_ms = result.synth_report.get("tick_ms")
        if tick_ms:
            ticks.hist(tick_ms, bins=40, label=f"{result.synth} ({len(tick_ms)} ticks)")
    ticks.set_xlabel("tick compute (ms)")
    ticks.set_ylabel("ticks")
    ticks.legend()
    timeline.set_xlabel("note time (s)")
    timeline.set_ylabel("latency (ms)")
    timeline.legend()
    r = results[0]
    fig.suptitle(f"latency through JACK ({r.rate} Hz, period {r.period})")
    fig.tight_layout()
    with atomic_output(path) as handle:
        fig.savefig(handle, format="png", dpi=100)
    plt.close(fig)

