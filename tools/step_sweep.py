"""Steps versus quality (issue #6 item 3): log-mel distance of few-step renders to a many-step reference render.

For a model (a preset with random weights, a trained folder, or 'default'), renders the first --segments windows of
a MIDI file once with the reference sampler at --reference-steps (default: the diffusers-parity DDPM at 100 steps),
then with each sampler at each step count (same seed, same tokens), and reports the mean |Δ log-mel| to the
reference and the wall time. A markdown table goes to stdout (and to --append).

    python tools/step_sweep.py --model base --segments 1 --steps 1 2 4 8 16 --samplers ddpm ddim dpmpp

What it can and cannot say: with random weights the "music" is meaningless, but the distance still measures how far
a few-step sampler is from the converged answer of the same network, which is what few-step sampling has to get
right. With trained weights, tools/evaluate.py adds onset F1 against the MIDI.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engines.select import load_engine  # noqa: E402
from live_synth.render import song_windows  # noqa: E402
from live_synth.synth import load_song, resolve_model_spec  # noqa: E402
from live_synth.model import load_model  # noqa: E402
from live_synth.provenance import machine, revision  # noqa: E402
from live_synth.render import render_mel  # noqa: E402
from live_synth.sampling.samplers import make_sampler  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="base")
    parser.add_argument("--midi", default=str(ROOT / "live_synth/assets/demo.mid"))
    parser.add_argument("--segments", type=int, default=1)
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--samplers", nargs="+", default=["ddpm", "ddim", "dpmpp"])
    parser.add_argument("--reference", default="ddpm")
    parser.add_argument("--reference-steps", type=int, default=100)
    parser.add_argument("--engine", default="torch")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--append", help="append the markdown block to this file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    spec, _ = resolve_model_spec(args.model)
    loaded = load_model(spec)
    song = song_windows(load_song(args.midi), loaded.model.config)
    segments = song.segments[: args.segments]
    rolls = song.rolls[: args.segments] if song.rolls else None
    engine = load_engine(args.engine, loaded.model)

    def render(sampler: str, steps: int) -> tuple[np.ndarray, float]:
        start = time.perf_counter()
        mel = render_mel(engine, segments, make_sampler(sampler, steps),
                         generator=torch.Generator().manual_seed(args.seed), rolls=rolls)
        return mel, time.perf_counter() - start

    render(args.reference, 1)  # warm-up
    ref, t_ref = render(args.reference, args.reference_steps)
    rows = []
    for sampler in args.samplers:
        for steps in args.steps:
            mel, seconds = render(sampler, steps)
            rows.append((sampler, steps, float(np.abs(mel - ref).mean()), float(np.abs(mel - ref).max()), seconds))
    command = "python tools/step_sweep.py " + " ".join(sys.argv[1:])
    lines = [f"### Steps vs distance to a {args.reference_steps}-step {args.reference} render — {loaded.source} "
             f"({time.strftime('%Y-%m-%d')})",
             f"- machine: {machine()}; revision {revision()}; torch {torch.__version__}, engine {args.engine}",
             f"- command: `{command}`",
             f"- {len(segments)} window(s) of {Path(args.midi).name}, seed {args.seed}; reference took {t_ref:.1f} s",
             "", "| sampler | steps | mean abs Δ log-mel | max abs Δ | wall time |", "|---|---|---|---|---|"]
    lines += [f"| {s} | {n} | {mean:.3f} | {mx:.2f} | {sec:.2f} s |" for s, n, mean, mx, sec in rows]
    block = "\n".join(lines) + "\n"
    print(block)
    if args.append:
        with open(args.append, "a") as handle:
            handle.write("\n" + block)


if __name__ == "__main__":
    main()
