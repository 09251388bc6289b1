"""How precisely does a model place a note's onset in time, offline, with no live loop in between?

    python tools/onset_timing.py [--model default] [--notes 40] [--seed 0] [--steps N]

The latency bench's schedule (one piano note per 0.8 s at a random point of its first quarter, held 0.35 s,
velocity 100, pitches 48-72) is written as a MIDI file, rendered offline by the model + its vocoder and by FluidSynth
at 16 kHz, and each note's onset is found with the bench's own detector (`bench.probe.detect_onsets`). Printed:
onset minus the note's time (mean, sd, min, max) and the sd of the onset's position relative to the 20 ms frame
grid, for both. Whatever spread the model shows here is in every live latency too: the live loop cannot place a
sound more precisely than the model renders it.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import mido
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from live_synth.audio import load_vocoder  # noqa: E402
from live_synth.bench.probe import detect_onsets, schedule  # noqa: E402
from live_synth.constants import SAMPLE_RATE  # noqa: E402
from live_synth.midi.notes import read_midi  # noqa: E402
from live_synth.synth import SynthOptions, load_synth  # noqa: E402
from live_synth.training.synth import make_renderer  # noqa: E402


def schedule_midi(notes, rate: int) -> bytes:
    """The probe's notes as a one-track MIDI file at 120 bpm, 480 ticks per beat (1 tick = 1/960 s)."""
    events = sorted([(n.on_frame / rate, "note_on", n.pitch, n.velocity) for n in notes]
                    + [(n.off_frame / rate, "note_off", n.pitch, 0) for n in notes])
    midi = mido.MidiFile(ticks_per_beat=480)
    track = mido.MidiTrack()
    midi.tracks.append(track)
    last = 0
    for t, kind, pitch, velocity in events:
        tick = int(round(t * 960))
        track.append(mido.Message(kind, note=pitch, velocity=velocity, time=tick - last))
        last = tick
    buf = io.BytesIO()
    midi.save(file=buf)
    return buf.getvalue()


def timing(audio: np.ndarray, on_samples: list[int]) -> dict:
    found = detect_onsets(audio, on_samples, SAMPLE_RATE, max_latency_s=0.3)
    errors = np.array([1e3 * (f - on) / SAMPLE_RATE for f, on in zip(found, on_samples) if f is not None])
    phase = np.array([1e3 * (on / SAMPLE_RATE % 0.02) for f, on in zip(found, on_samples) if f is not None])
    row = {"found": len(errors), "of": len(on_samples)}
    if len(errors):
        row |= {"mean_ms": errors.mean(), "sd_ms": errors.std(), "min_ms": errors.min(), "max_ms": errors.max(),
                "corr_with_frame_phase": float(np.corrcoef(errors, phase)[0, 1]) if len(errors) > 2 else 0.0}
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--vocoder", help="a vocoder folder (default: the model's)")
    parser.add_argument("--notes", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int)
    parser.add_argument("--out", type=Path, help="write the table and its provenance as JSON here")
    args = parser.parse_args(argv)

    from live_synth.audio.wav import resynthesize
    from live_synth.midi.events import NoteEvents

    notes = schedule(args.notes, SAMPLE_RATE, 0.8, 0.35, start_s=0.5, seed=args.seed)
    on = [n.on_frame for n in notes]
    midi = schedule_midi(notes, SAMPLE_RATE)
    song = read_midi(midi, name="onset-timing")
    events = NoteEvents.from_sequence(song)
    synth = load_synth(args.model, SynthOptions(steps=args.steps))
    vocoder = load_vocoder(args.vocoder or synth.vocoder_path)
    reference = make_renderer("fluidsynth").render(midi)
    systems = {
        f"{args.model} + {vocoder.name} (offline, end to end)": vocoder(synth.render(song), events=events),
        f"FluidSynth -> mel -> {vocoder.name} (vocoder only, told the notes)":
            resynthesize(reference, vocoder, events)[0],
        f"FluidSynth -> mel -> {vocoder.name} (vocoder only, mel alone)": resynthesize(reference, vocoder)[0],
        "FluidSynth": reference,
    }
    print("| synth | found | onset - note (mean) | sd | min | max | corr. with the note's phase in its 20 ms frame |")
    print("|---|---|---|---|---|---|---|")
    rows = {}
    for name, audio in systems.items():
        r = rows[name] = timing(np.asarray(audio, np.float32), on)
        if r["found"]:
            print(f"| {name} | {r['found']} / {r['of']} | {r['mean_ms']:.1f} ms | {r['sd_ms']:.1f} ms | "
                  f"{r['min_ms']:.1f} ms | {r['max_ms']:.1f} ms | {r['corr_with_frame_phase']:+.2f} |")
        else:
            print(f"| {name} | 0 / {r['of']} | | | | | |")
    if args.out:
        import json

        from live_synth.files import atomic_output
        from live_synth.provenance import machine, revision

        report = {"command": "python tools/onset_timing.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                  "revision": revision(), "machine": machine(),
                  "rows": {k: {m: float(v) for m, v in r.items()} for k, r in rows.items()}}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(args.out) as handle:
            handle.write(json.dumps(report, indent=2).encode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
