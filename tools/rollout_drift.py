"""Does a causal model drift? A repeating piece rolled out frame by frame from the model's own output for minutes.

    python tools/rollout_drift.py [--model default] [--midi FILE] [--minutes 10] [--steps N] [--engine onnx]
                                  [--seed 0] [--png drift.png]

The MIDI file (default: the packaged demo) is repeated with a period of `--period` seconds (default: its length
rounded up to a whole number of seconds that divides 60, so that every minute holds the same notes at the same
places) and rendered in one sequential pass (`render_events`, chunks 1: every frame continues from the previous
one, as live). Per minute it prints the level (dB of the mean mel magnitude) and the log-mel L1 distance to the
first minute; the last minute's numbers are the drift (issue target: within 1 dB and 0.1 log-mel L1). The same
distance between the first minute rendered with two seeds is printed next to it: what sampling noise alone does.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from live_synth.causal_stream import render_events  # noqa: E402
from live_synth.constants import FRAME_RATE  # noqa: E402
from live_synth.errors import LiveSynthError  # noqa: E402
from live_synth.midi.events import NoteEvents  # noqa: E402
from live_synth.synth import SynthOptions, load_song, load_synth, packaged_path  # noqa: E402


def repeated(events: NoteEvents, period: float, seconds: float) -> NoteEvents:
    """`events` repeated every `period` seconds for `seconds` (controllers too)."""
    copies = int(math.ceil(seconds / period))
    notes = np.concatenate([events.notes + np.array([k * period, k * period, 0, 0, 0, 0, 0]) for k in range(copies)])
    controls = {lane: np.concatenate([rows + np.array([k * period, 0, 0]) for k in range(copies)])
                for lane, rows in events.controls.items()}
    return NoteEvents(notes[notes[:, 0] < seconds], controls)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--midi", default=str(packaged_path("demo.mid")))
    parser.add_argument("--minutes", type=int, default=10)
    parser.add_argument("--period", type=float, help="repeat period in seconds (default: see above)")
    parser.add_argument("--steps", type=int)
    parser.add_argument("--engine", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--png", type=Path, help="level and distance per minute, and the first and last minute's mel")
    args = parser.parse_args(argv)
    try:
        synth = load_synth(args.model, SynthOptions(engine=args.engine, steps=args.steps, seed=args.seed))
        if not synth.frame_by_frame:
            raise LiveSynthError(f"{args.model}: renders in windows, not frame by frame (drift is measured on frames)")
        song = load_song(args.midi)
        period = args.period or next(p for p in (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60) if p >= song.total_time)
        events = repeated(NoteEvents.from_sequence(song), period, args.minutes * 60)
        frames = args.minutes * 60 * FRAME_RATE
        start = time.perf_counter()
        mel = render_events(synth.engine, events, frames, synth.steps, args.seed, chunks=1)
        elapsed = time.perf_counter() - start
        other = render_events(synth.engine, events, 60 * FRAME_RATE, synth.steps, args.seed + 1, chunks=1)
    except LiveSynthError as exc:
        print(f"rollout_drift: error: {exc}", file=sys.stderr)
        return 2
    minute = 60 * FRAME_RATE
    first = mel[:minute]
    rows = []
    for m in range(args.minutes):
        part = mel[m * minute : (m + 1) * minute]
        level = 20 * np.log10(np.exp(part).mean())
        rows.append((m + 1, level, float(np.abs(part - first).mean())))
    print(f"{args.model}: {args.minutes} min of {Path(args.midi).name} repeated every {period:g} s, "
          f"{synth.steps} step(s), engine {synth.engine.name}, seed {args.seed}; {frames} frames in {elapsed:.1f} s")
    print("| minute | level (dB) | level − minute 1 (dB) | log-mel L1 to minute 1 |\n|---|---|---|---|")
    for m, level, distance in rows:
        print(f"| {m} | {level:.2f} | {level - rows[0][1]:+.2f} | {distance:.3f} |")
    seed_level = 20 * np.log10(np.exp(other).mean())
    print(f"seed {args.seed + 1}, minute 1: level {seed_level - rows[0][1]:+.2f} dB, log-mel L1 to seed {args.seed}'s "
          f"{np.abs(other - first).mean():.3f} (sampling noise alone)")
    if args.png:
        from live_synth.audio import save_spectrogram_rows_png

        save_spectrogram_rows_png(args.png, [(f"minute 1 ({args.model})", mel[: 20 * FRAME_RATE]),
                                             (f"minute {args.minutes}", mel[-minute : -minute + 20 * FRAME_RATE])])
        print(f"wrote {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
