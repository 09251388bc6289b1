"""How loud does a model play live, next to offline? The live generation path, run faster than real time.

    python tools/live_level.py --model default [--model OTHER ...] [--midi FILE] [--hops 64 16 4] [--png out.png]
                               [--wav-dir DIR] [--lead-ms MS] [--delay-ms MS] [--out report.json]

This tool runs the code `play` runs: a `GenerationWorker` (`apply_midi` / `tick`, rollbacks included) with the
model's torch fp32 engine, an output feed and a ring, on a virtual clock: a simulated device takes one 256-sample
period from the ring whenever the worker has the ring filled to its lead, and the clock is what it has taken. So
the MIDI file's events arrive exactly as from a keyboard in real time, with no compute time (an infinitely fast
CPU). Offline is `Synth.render` on the same file (what `render` does). The window family runs once per `--hops`
value (events stamped at the generated end); the causal family once (one frame per tick, notes placed at arrival +
`--delay-ms` and rolled back into the speculative frames).

Per run it prints the mel energy (mean of exp(log-mel) over bins): its mean, its 95th percentile over frames (the
notes) and its 5th percentile (the silence between them); live/offline ratios next to them, and the notes' level
difference in dB. Default MIDI: six single piano notes, velocity 100, held 0.7 s, 1.5 s apart.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from live_synth.audio import load_vocoder, save_spectrogram_rows_png, write_wav_atomic  # noqa: E402
from live_synth.constants import FRAME_RATE, HOP, SAMPLE_RATE  # noqa: E402
from live_synth.errors import LiveSynthError  # noqa: E402
from live_synth.live.audio_out import OutputFeed, Resampler  # noqa: E402
from live_synth.live.generation import PlaySettings  # noqa: E402
from live_synth.live.midi_file import MidiFileSource  # noqa: E402
from live_synth.live.ring import SpscRing  # noqa: E402
from live_synth.live.worker import GenerationWorker  # noqa: E402
from live_synth.synth import SynthOptions, load_song, load_synth  # noqa: E402

PERIOD = 256  # the simulated device's block, in 16 kHz samples

PITCHES = (52, 57, 60, 64, 67, 71)


def six_notes(path: Path) -> Path:
    import mido

    midi = mido.MidiFile(ticks_per_beat=480)  # 120 bpm: 960 ticks per second
    track = mido.MidiTrack()
    midi.tracks.append(track)
    track.append(mido.Message("program_change", program=0, time=0))
    for i, pitch in enumerate(PITCHES):
        track.append(mido.Message("note_on", note=pitch, velocity=100, time=480 if i == 0 else 768))
        track.append(mido.Message("note_off", note=pitch, velocity=0, time=672))  # 0.7 s on, 0.8 s off
    track.append(mido.Message("note_off", note=PITCHES[0], velocity=0, time=960))  # 1 s of tail
    midi.save(str(path))
    return path


class MelCapture:
    """A stand-in vocoder that keeps the frames it is given by frame number (a rollback's frames replace the
    speculative ones) and outputs silence; it declares no delay and keeps its state as the worker asks."""

    delay_samples = 0

    def __init__(self, stream):
        self.stream, self.frames = stream, {}

    def __call__(self, mel: np.ndarray, events=None) -> np.ndarray:
        first = self.stream.frame - len(mel)
        for i, frame in enumerate(mel):
            self.frames[first + i] = frame
        return np.zeros(len(mel) * HOP, np.float32)

    def snapshot(self):
        return None

    def restore(self, state) -> None:
        pass


def live_mel(synth, midi: Path, hop: int, lead_s: float, delay_s: float) -> tuple[np.ndarray, dict]:
    """The frames `play --midi-file` would play, with a simulated device on a virtual clock; and the counters."""
    stream = synth.live_stream(hop)
    ring = SpscRing(1 << 16, guard=2 * PERIOD)
    clock = lambda: ring.read_index / SAMPLE_RATE  # noqa: E731  (audio time 0 = the first sample played)
    source = MidiFileSource(midi, clock=clock)
    source.start = 0.0  # file time 0 = audio time 0
    capture = MelCapture(stream)
    worker = GenerationWorker(stream, source, capture, OutputFeed(ring, Resampler(SAMPLE_RATE)), lead_s=lead_s,
                              delay_s=delay_s if stream.can_rewind else 0.0, clock=clock)
    worker.start_time = 0.0
    end = int((source.events[-1][0] + 1.0) * FRAME_RATE)
    period = np.empty((PERIOD, 1), np.float32)
    while ring.read_index < end * HOP:
        worker.apply_midi()
        if worker.ahead_s() < worker.lead_s:
            worker.tick()
        else:
            ring.read_into(period)
    mel = np.stack([capture.frames[f] for f in range(end)])
    counters = {k: getattr(worker.stats, k) for k in ("rollbacks", "frames_regenerated", "late_events")}
    return mel, counters


def energy_stats(mel: np.ndarray) -> dict[str, float]:
    frame_energy = np.exp(mel).mean(axis=1)
    return {"mean": float(frame_energy.mean()), "notes (p95)": float(np.percentile(frame_energy, 95)),
            "silence (p5)": float(np.percentile(frame_energy, 5))}


def write_report(path: Path, command: str, table: list) -> None:
    """The printed table as JSON, atomically, with the revision, the machine and the command."""
    import json

    from live_synth.files import write_bytes_atomic
    from live_synth.provenance import machine, revision

    runs = [{"model": spec, "run": name, "energy": stats, "live_over_offline": ratio,
             "notes_db": float(20 * np.log10(ratio["notes (p95)"])), "counters": counters}
            for spec, name, stats, ratio, counters in table]
    report = {"revision": revision(), "machine": machine(), "command": command, "runs": runs}
    write_bytes_atomic(path, (json.dumps(report, indent=1) + "\n").encode())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", action="append", help="model folder or 'default' (repeatable)")
    parser.add_argument("--midi", type=Path, help="MIDI file (default: six single piano notes)")
    parser.add_argument("--hops", type=int, nargs="+", default=[64, 16, 4], help="models that render in windows: hops to run (a frame-by-frame model runs at its own\n"
                        "hop)")
    parser.add_argument("--steps", type=int, help="sampling steps (default: the model's default_steps)")
    parser.add_argument("--lead-ms", type=float, help="ring lead (default: play's, from the model and --delay-ms)")
    parser.add_argument("--delay-ms", type=float, default=100.0, help="causal family: the declared delay (more "
                        "than the simulated device's guard of two 16 ms periods and the regeneration deadline)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--png", type=Path, help="offline and live spectrograms, one row per run")
    parser.add_argument("--wav-dir", type=Path, help="write each run's audio (the model's vocoder) here")
    parser.add_argument("--out", type=Path, help="write the table as JSON here (with revision, machine, command)")
    args = parser.parse_args(argv)
    command = "python tools/live_level.py " + " ".join(argv if argv is not None else sys.argv[1:])
    try:
        with tempfile.TemporaryDirectory() as tmp:
            midi = args.midi or six_notes(Path(tmp) / "six_notes.mid")
            song = load_song(str(midi))
            rows, table = [], []
            for spec in args.model or ["default"]:
                synth = load_synth(spec, SynthOptions(steps=args.steps, sampler="ddim", seed=args.seed))
                vocoder = load_vocoder(synth.vocoder_path) if args.wav_dir else None
                runs = {"offline": (synth.render(song), {})}
                lead = (args.lead_ms or synth.live_lead_ms(args.delay_ms, PlaySettings.ahead)) / 1e3  # play's
                for hop in ([synth.live_hop] if synth.frame_by_frame else args.hops):
                    runs[f"live hop {hop}"] = live_mel(synth, midi, hop, lead, args.delay_ms / 1e3)
                reference = energy_stats(runs["offline"][0])
                for name, (mel, counters) in runs.items():
                    stats = energy_stats(mel)
                    table.append((spec, name, stats, {k: stats[k] / reference[k] for k in stats}, counters))
                    rows.append((f"{spec} · {name} · {synth.describe()}", mel))
                    if vocoder is not None:
                        args.wav_dir.mkdir(parents=True, exist_ok=True)
                        label = f"{Path(spec).name}-{name.replace(' ', '-')}.wav"
                        write_wav_atomic(args.wav_dir / label, vocoder(mel), SAMPLE_RATE)
    except LiveSynthError as exc:
        print(f"live_level: error: {exc}", file=sys.stderr)
        return 2
    print(f"{'model':<28} {'run':<14} {'mean':>8} {'notes':>8} {'silence':>8}   live/offline: mean notes silence"
          "   notes dB")
    for spec, name, stats, ratio, counters in table:
        print(f"{Path(spec).name:<28} {name:<14} " + " ".join(f"{v:8.4f}" for v in stats.values())
              + "   " + " ".join(f"{v:5.2f}" for v in ratio.values())
              + f"   {20 * np.log10(ratio['notes (p95)']):+6.2f}"
              + ("   " + ", ".join(f"{k} {v}" for k, v in counters.items()) if counters else ""))
    if args.out:
        write_report(args.out, command, table)
    if args.png:
        save_spectrogram_rows_png(args.png, rows)
        print(f"wrote {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
