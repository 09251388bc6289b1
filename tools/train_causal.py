"""Train the causal default model (live_synth/model/causal.py) on a dataset of tools/make_dataset.py, in chunks.

    python tools/train_causal.py DATASET --out ~/.cache/live-synth-train/causal --minutes 30 [--device cuda]
    python tools/train_causal.py DATASET --out RUN --export live_synth/assets/default_model --default-steps 2

Rerunning with the same --out resumes from RUN/ckpt.pt with its stored training config, except for the training
options given again on the command line (e.g. a shorter --total-steps to decay the learning rate sooner);
`--init FOLDER` starts a new run from shipped weights of the same shape. Losses and probes go to RUN/loss.csv (see training/causal_trainer.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from live_synth.errors import LiveSynthError  # noqa: E402
from live_synth.training.causal_trainer import CausalTrainConfig, export, train  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--out", type=Path, required=True, help="run folder (checkpoint, loss log)")
    parser.add_argument("--minutes", type=float, default=5.0, help="stop and save after this long")
    parser.add_argument("--max-steps", type=int)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", choices=["bf16", "fp32"], default="bf16")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--workers", type=int, default=0,
                        help="build batches in this many processes (GPU runs; 0: in the training process)")
    parser.add_argument("--export", type=Path, help="write the run's weights (fp16) to this folder and exit")
    parser.add_argument("--default-steps", type=int, default=0, help="with --export: render/play's step count")
    parser.add_argument("--description", default="", help="with --export: the model's description")
    for field in dataclasses.fields(CausalTrainConfig):
        parser.add_argument(f"--{field.name.replace('_', '-')}", type=type(field.default), default=None,
                            help=f"default {field.default}")
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    try:
        if args.export:
            print(f"exported {export(args.out, args.export, args.description, args.default_steps)}")
            return 0
        given = {f.name: getattr(args, f.name) for f in dataclasses.fields(CausalTrainConfig)
                 if getattr(args, f.name) is not None}
        step = train(args.dataset, args.out, CausalTrainConfig(**given), args.minutes, args.max_steps, args.device,
                     args.precision, overrides=given, workers=args.workers,
                     progress=lambda row: print(", ".join(f"{k} {v}" for k, v in row.items() if v != ""),
                                                flush=True))
    except LiveSynthError as exc:
        print(f"train_causal: error: {exc}", file=sys.stderr)
        return 2
    print(f"stopped at step {step}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
