"""Are the seams of a chunked offline render audible? Chunked against sequential, on held-out pieces.

    python tools/seam_check.py --dataset DATASET [--model default] [--chunks 8] [--pieces 10] [--steps N]

`render` of the causal family cuts a song into chunks rendered side by side as one batch, each starting
`receptive_frames` early from silence (`causal_stream.render_events`), which makes offline several times faster. At
a seam the frame loop restarts, so a jump could appear there. Per piece this renders the song sequentially (one pass,
as live) and chunked, and reports:
- the seam jump: mean |log-mel[t] - log-mel[t-1]| over the frames at seams, divided by the same over all frames
  (1.0: a seam is no more of a jump than any other frame; the sequential render's own ratio at the same frames is
  printed next to it);
- the mean log-mel distance between the chunked and the sequential render, near seams (5 frames each side) and
  elsewhere; and the level difference (dB) between the two renders.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from live_synth.causal_stream import render_events  # noqa: E402
from live_synth.errors import LiveSynthError  # noqa: E402
from live_synth.midi import apply_sustain, read_midi  # noqa: E402
from live_synth.midi.events import NoteEvents  # noqa: E402
from live_synth.synth import SynthOptions, load_synth, song_frames  # noqa: E402
from live_synth.training.shards import piece_paths, read_piece  # noqa: E402


def jump_ratio(mel: np.ndarray, seams: list[int]) -> float:
    jumps = np.abs(np.diff(mel, axis=0)).mean(axis=1)  # jumps[t - 1] = |mel[t] - mel[t - 1]|
    return float(jumps[[s - 1 for s in seams]].mean() / jumps.mean())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", type=Path, required=True)
    parser.add_argument("--model", default="default")
    parser.add_argument("--chunks", type=int, default=8)
    parser.add_argument("--pieces", type=int, default=10)
    parser.add_argument("--steps", type=int)
    parser.add_argument("--engine", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        synth = load_synth(args.model, SynthOptions(engine=args.engine, steps=args.steps, seed=args.seed))
        if not synth.frame_by_frame:
            raise LiveSynthError(f"{args.model}: renders in windows, not frame by frame (no chunked render)")
        rows = []
        for path in piece_paths(args.dataset, "validation")[: args.pieces]:
            piece = read_piece(path)
            notes = apply_sustain(read_midi(piece.midi, name=piece.name))
            events, frames = NoteEvents.from_sequence(notes), song_frames(notes)
            if frames < 4 * args.chunks:
                continue
            one = render_events(synth.engine, events, frames, synth.steps, args.seed, chunks=1)
            many = render_events(synth.engine, events, frames, synth.steps, args.seed, chunks=args.chunks)
            size = -(-frames // args.chunks)
            seams = [k * size for k in range(1, args.chunks) if k * size < frames]
            near = np.zeros(frames, bool)
            for s in seams:
                near[max(0, s - 5) : s + 5] = True
            diff = np.abs(one - many).mean(axis=1)
            level = 20 * np.log10(np.exp(many).mean() / np.exp(one).mean())
            rows.append((piece.name, jump_ratio(many, seams), jump_ratio(one, seams), float(diff[near].mean()),
                         float(diff[~near].mean()), float(level)))
    except LiveSynthError as exc:
        print(f"seam_check: error: {exc}", file=sys.stderr)
        return 2
    print(f"{args.model} ({synth.describe()}), {args.chunks} chunks, seed {args.seed}")
    print("| piece | seam jump ratio, chunked | same frames, sequential | log-mel diff near seams | elsewhere | "
          "level chunked - sequential (dB) |\n|---|---|---|---|---|---|")
    for name, chunked, sequential, near, far, level in rows:
        print(f"| {name} | {chunked:.2f} | {sequential:.2f} | {near:.3f} | {far:.3f} | {level:+.2f} |")
    means = np.mean([r[1:] for r in rows], axis=0)
    print(f"| mean of {len(rows)} | {means[0]:.2f} | {means[1]:.2f} | {means[2]:.3f} | {means[3]:.3f} | "
          f"{means[4]:+.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
