"""Minutes of dense music through `play` on a running JACK server, next to FluidSynth playing the same file.

    python tools/soak.py [--seconds 300] [--repeat 26] [--busy] [--fluidsynth] [--out report.json] [-- PLAY ARGS ...]

The MIDI file is the packaged demo repeated `--repeat` times (the dense soak file of BENCHMARKS.md: 26 times, 323 s,
7,254 messages). `live-synth play --midi-file` plays it for `--seconds` with the given play arguments; a JACK
client counts the server's xruns meanwhile (a late client, ours or anyone's). With `--fluidsynth`, FluidSynth then
plays the same file through the same server for as long, and its xruns are counted the same way: what remains for
both is the dummy driver's non-real-time scheduling, not our code. `--busy` runs a second process spinning on the
CPU during both (`python -c 'while True: pass'`), as a player's laptop would. Prints one markdown row per run;
`--out` also writes the numbers as JSON (atomically) with the revision, the machine and the command.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import mido

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from live_synth.synth import packaged_path  # noqa: E402


def soak_midi(path: Path, repeat: int) -> Path:
    """The demo MIDI repeated `repeat` times, one track after another in time (tempo kept)."""
    demo = mido.MidiFile(str(packaged_path("demo.mid")))
    out = mido.MidiFile(type=0, ticks_per_beat=demo.ticks_per_beat)
    merged = mido.merge_tracks(demo.tracks)
    track = mido.MidiTrack()
    for k in range(repeat):
        for message in merged:
            if message.type == "end_of_track":
                track.append(mido.MetaMessage("marker", text=f"repeat {k}", time=message.time))
                continue
            track.append(message.copy())
    track.append(mido.MetaMessage("end_of_track", time=0))
    out.tracks.append(track)
    out.save(str(path))
    return path


class XrunCounter:
    def __init__(self, name: str):
        import jack

        self.client = jack.Client(name, no_start_server=True)
        self.count = 0
        self.client.set_xrun_callback(self._xrun)
        self.client.activate()

    def _xrun(self, delay_us: float) -> None:
        self.count += 1

    def close(self) -> None:
        self.client.deactivate()
        self.client.close()


def run_play(midi: Path, seconds: float, play_args: list[str]) -> dict:
    report = Path(tempfile.mkstemp(suffix=".json")[1])
    counter = XrunCounter("soak-xruns")
    try:
        done = subprocess.run([sys.executable, "-m", "live_synth", "play", "--midi-file", str(midi), "--seconds",
                               str(seconds), "--report-json", str(report), *play_args],
                              capture_output=True, text=True)
    finally:
        counter.close()
    if done.returncode != 0:
        raise SystemExit(f"play failed: {done.stderr.strip().splitlines()[-1:]}")
    data = json.loads(report.read_text())
    report.unlink()
    data["xruns"] = counter.count
    return data


def run_fluidsynth(midi: Path, seconds: float) -> dict:
    if shutil.which("fluidsynth") is None:
        raise SystemExit("fluidsynth is not installed")
    counter = XrunCounter("soak-xruns-fluid")
    process = subprocess.Popen(["fluidsynth", "-a", "jack", "-i", "-q", "-g", "0.5", "-o", "synth.reverb.active=0",
                                "-o", "synth.chorus.active=0", "-o", "audio.jack.autoconnect=1",
                                "/usr/share/sounds/sf2/FluidR3_GM.sf2", str(midi)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    start = time.monotonic()
    try:
        time.sleep(seconds)
    finally:
        process.terminate()
        process.wait(timeout=30)
        counter.close()
    return {"seconds": time.monotonic() - start, "xruns": counter.count}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--repeat", type=int, default=26)
    parser.add_argument("--busy", action="store_true")
    parser.add_argument("--fluidsynth", action="store_true")
    parser.add_argument("--out", help="write the numbers as JSON here (with revision, machine, command)")
    args = parser.parse_args(argv)
    command = "python tools/soak.py " + " ".join(sys.argv[1:])
    f = None
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if args.busy else None
    try:
        with tempfile.TemporaryDirectory() as tmp:
            midi = soak_midi(Path(tmp) / "soak.mid", args.repeat)
            r = run_play(midi, args.seconds, extra)
            print("| run | played | ticks | tick median / p99 ms | late ticks | ring underruns | device underflows | "
                  "rollbacks (frames regenerated) | late events | JACK xruns |")
            print("|---|---|---|---|---|---|---|---|---|---|")
            print(f"| live-synth play {' '.join(extra)}{' + busy process' if busy else ''} | {r['seconds']:.1f} s | "
                  f"{r['ticks']} | {r['tick_ms_median']:.1f} / {r['tick_ms_p99']:.1f} | {r['late_ticks']} | "
                  f"{r['underruns']} | {r['underflows']} | {r.get('rollbacks', 0)} ({r.get('frames_regenerated', 0)}) "
                  f"| {r.get('late_events', 0)} (by up to {r.get('late_ms_max', 0.0):.1f} ms) | {r['xruns']} |")
            callback = r.get("callback") or {}
            if callback.get("callbacks"):
                print(f"(audio callback p50 {callback['p50_ms']:.3f} / p99 {callback['p99_ms']:.3f} / max "
                      f"{callback['max_ms']:.2f} ms of a {callback['period_ms']:.2f} ms period, longest gap "
                      f"{callback['gap_max_ms']:.1f} ms; declared delay {r.get('delay_ms', 0):.1f} ms after "
                      f"{r.get('delay_changes', 0)} change(s); {r.get('audio_priority', '')})")
            if args.fluidsynth:
                f = run_fluidsynth(midi, args.seconds)
                print(f"| FluidSynth, same file and server{' + busy process' if busy else ''} | {f['seconds']:.1f} s "
                      f"| – | – | – | – | – | – | – | {f['xruns']} |")
    finally:
        if busy is not None:
            busy.kill()
    print(f"(machine: {os.cpu_count()} CPUs; latency parts declared by play: {r.get('latency')})")
    if args.out:
        from live_synth.files import write_bytes_atomic
        from live_synth.provenance import machine, revision

        play = {k: v for k, v in r.items() if k != "tick_ms"}
        report = {"revision": revision(), "machine": machine(), "command": command, "busy": args.busy,
                  "seconds": args.seconds, "repeat": args.repeat, "play_args": extra, "live_synth": play,
                  "fluidsynth": f, "xruns_per_min": {
                      # play's own count runs from its first callback (start-up excluded); ours from its launch
                      "live_synth": 60 * (r["server_xruns"] if r.get("server_xruns") is not None else r["xruns"])
                      / r["seconds"],
                      "fluidsynth": 60 * f["xruns"] / f["seconds"] if f else None}}
        write_bytes_atomic(args.out, (json.dumps(report, indent=1) + "\n").encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
