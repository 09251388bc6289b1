"""Does `render --morph` move the timbre smoothly from one instrument to the other? Measured on the default model.

    python tools/morph_check.py [--from 0] [--to 48] [--seconds 10] [--out reports/web-2026-12-04/morph_check.json]

The song: the same one-second pattern (a C major triad held 0.6 s, then E4 alone) repeated `--seconds` times in
program A. Three renders, frame by frame with the torch engine and the same seed: A (weight 0 throughout), B (the
rows of program B throughout: the model plays B), and the morph (weight 0 for the first second, then linear to 1 at
`--seconds` - 1, then 1). Per one-second window of the pattern:
- the spectral centroid of the log-mel frames (mel-bin index weighted by linear magnitude), and the log-mel L1
  distance of the morph's window to A's and to B's same window: along the morph the centroid should move from A's
  towards B's and the distances should rise (to A) and fall (to B) monotonically; counted as inversions between
  consecutive windows;
- clicks: the largest frame-to-frame jump (mean |Δ log-mel| between consecutive frames) in the morph against the
  largest in A and in B;
- onset F1 of each render's audio (the default vocoder, Basic Pitch transcription, mir_eval, 50 ms) against the
  song's notes: the morph's against the end points'.
Writes JSON and a Markdown summary next to it (machine, revision, command).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from live_synth.constants import FRAME_RATE, SAMPLE_RATE  # noqa: E402
from live_synth.provenance import machine, revision  # noqa: E402


def pattern_song(program: int, seconds: int):
    from live_synth.midi.notes import Note, NoteSequence

    notes = []
    for k in range(seconds):
        t = float(k)
        notes += [Note(p, 90, t, t + 0.6, program) for p in (60, 64, 67)]
        notes.append(Note(64, 90, t + 0.65, t + 0.95, program))
    return NoteSequence(notes=notes, total_time=float(seconds))


def centroid(mel: np.ndarray) -> float:
    power = np.exp(mel)
    return float((power * np.arange(mel.shape[1])).sum() / power.sum())


def jumps(mel: np.ndarray) -> np.ndarray:
    return np.abs(np.diff(mel, axis=0)).mean(axis=1)


def inversions(values: list[float], rising: bool) -> int:
    steps = np.diff(values)
    return int((steps < 0).sum() if rising else (steps > 0).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--from", dest="a", type=int, default=0)
    parser.add_argument("--to", dest="b", type=int, default=48)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--out", default="reports/web-2026-12-04/morph_check.json")
    args = parser.parse_args()

    from engines.morph import MorphEngine
    from live_synth.audio import load_vocoder
    from live_synth.causal_stream import render_events
    from live_synth.midi.events import NoteEvents
    from live_synth.model.morph import MorphCurve
    from live_synth.synth import TAIL_FRAMES, SynthOptions, load_synth, song_frames
    from live_synth.training.metrics import onset_f1, transcribe

    synth = load_synth("default", SynthOptions(engine="torch"))
    vocoder = load_vocoder(synth.vocoder_path)
    song = pattern_song(args.a, args.seconds)
    events = NoteEvents.from_sequence(song)
    frames = song_frames(song) + TAIL_FRAMES
    end = args.seconds - 1.0
    curves = {"A": MorphCurve(args.a, args.b, 1e6, 1e6 + 1), "B": MorphCurve(args.a, args.b, -2.0, -1.0),
              "morph": MorphCurve(args.a, args.b, 1.0, end)}
    mels, audio, f1 = {}, {}, {}
    reference = [(n.start, n.end, n.pitch) for n in song.notes]
    for name, curve in curves.items():
        engine = MorphEngine(synth.engine, curve)
        try:
            mels[name] = render_events(engine, events, frames, synth.steps, seed=0, chunks=1)
        finally:
            engine.close()
        audio[name] = vocoder(mels[name], events=events)
        f1[name] = round(float(onset_f1(reference, transcribe(audio[name], SAMPLE_RATE)).f1), 4)
    windows = []
    for k in range(args.seconds):
        sl = slice(k * FRAME_RATE, (k + 1) * FRAME_RATE)
        m, a, b = mels["morph"][sl], mels["A"][sl], mels["B"][sl]
        windows.append({"second": k, "weight": round(curves["morph"].weight(k + 0.5), 3),
                        "centroid": round(centroid(m), 3), "centroid_A": round(centroid(a), 3),
                        "centroid_B": round(centroid(b), 3),
                        "distance_to_A": round(float(np.abs(m - a).mean()), 4),
                        "distance_to_B": round(float(np.abs(m - b).mean()), 4)})
    span = windows[1:-1]  # the morph itself (weight strictly between the ends, and the windows holding them)
    rising = np.mean([w["centroid_B"] for w in windows]) > np.mean([w["centroid_A"] for w in windows])
    morph_span = slice(FRAME_RATE, int(end * FRAME_RATE))
    report = {
        "from_program": args.a, "to_program": args.b, "seconds": args.seconds, "steps": synth.steps,
        "windows": windows,
        "centroid_inversions": inversions([w["centroid"] for w in windows], rising),
        "distance_to_A_inversions": inversions([w["distance_to_A"] for w in span], True),
        "distance_to_B_inversions": inversions([w["distance_to_B"] for w in span], False),
        "max_jump": {"morph": round(float(jumps(mels["morph"][morph_span]).max()), 4),
                     "A": round(float(jumps(mels["A"]).max()), 4), "B": round(float(jumps(mels["B"]).max()), 4)},
        "onset_f1": f1,
        "machine": machine(), "revision": revision(), "command": " ".join(["python", *sys.argv]),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    lines = ["| second | weight | centroid (A / morph / B) | L1 to A | L1 to B |", "|---|---|---|---|---|"]
    lines += [f"| {w['second']} | {w['weight']} | {w['centroid_A']} / {w['centroid']} / {w['centroid_B']} | "
              f"{w['distance_to_A']} | {w['distance_to_B']} |" for w in windows]
    lines += ["", f"Inversions between consecutive windows: centroid {report['centroid_inversions']}, distance to A "
              f"{report['distance_to_A_inversions']}, distance to B {report['distance_to_B_inversions']}. Largest "
              f"frame-to-frame jump (mean |Δ log-mel|): morph {report['max_jump']['morph']}, A "
              f"{report['max_jump']['A']}, B {report['max_jump']['B']}. Onset F1: A {f1['A']}, morph {f1['morph']}, "
              f"B {f1['B']}.", "", f"Machine: {report['machine']}; revision {report['revision']}; command: "
              f"`{report['command']}`; {report['date']}."]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
