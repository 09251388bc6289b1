"""Train the project's own diffusion model on a dataset made by tools/make_dataset.py, in resumable chunks.

    python tools/train.py DATASET --out runs/live --minutes 8 [--device cuda] [--model live] [--batch-size 64]
    python tools/train.py DATASET --out runs/live --export live_synth/assets/default_model   # ship the weights

Rerunning with the same --out resumes from runs/live/ckpt.pt (a chunk of a few minutes per GPU call). Losses go
to runs/live/loss.csv and loss.png; the probe columns compare the loss with and without conditioning.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from live_synth.errors import LiveSynthError
from live_synth.training.trainer import TrainConfig, export, plot_losses, train


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--out", type=Path, required=True, help="run folder (checkpoint, loss log)")
    parser.add_argument("--minutes", type=float, default=5.0, help="stop and save after this long")
    parser.add_argument("--max-steps", type=int)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", choices=["bf16", "fp32"], default="bf16",
                        help="autocast dtype for forward passes (weights and optimizer stay fp32)")
    parser.add_argument("--export", type=Path, help="write the run's weights (fp16) to this folder and exit")
    parser.add_argument("--default-steps", type=int, default=0,
                        help="with --export: the sampling steps render/play use for this model (from its evaluation)")
    for field in dataclasses.fields(TrainConfig):
        parser.add_argument(f"--{field.name.replace('_', '-')}", type=type(field.default), default=field.default)
    args = parser.parse_args(argv)
    try:
        if args.export:
            print(f"exported {export(args.out, args.export, default_steps=args.default_steps)}")
            return 0
        cfg = TrainConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)})
        step = train(args.dataset, args.out, cfg, args.minutes, args.max_steps, args.device,
                     precision=args.precision,
                     progress=lambda row: print(", ".join(f"{k} {v}" for k, v in row.items() if v != ""),
                                                flush=True))
    except LiveSynthError as exc:
        print(f"train: error: {exc}", file=sys.stderr)
        return 2
    print(f"stopped at step {step}; plot: {plot_losses(args.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
