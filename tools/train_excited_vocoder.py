"""Train the excited vocoder (issue 19) on a dataset made by tools/make_dataset.py; resumable in chunks.

    python tools/train_excited_vocoder.py DATASET --out RUN --minutes 60 [--total-steps N] [--threads 2]
    python tools/train_excited_vocoder.py DATASET --out RUN --export FOLDER [--which best.pt|ckpt.pt]

Run it again with the same --out to continue (ckpt.pt); `best.pt` holds the EMA weights with the best validation
loss, which --export writes as fp16 safetensors + vocoder.json (what `--vocoder FOLDER` and the model folders load).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from live_synth.errors import LiveSynthError  # noqa: E402
from live_synth.training.excited_trainer import ExcitedTrainConfig, export, train  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--total-steps", type=int, default=ExcitedTrainConfig.total_steps)
    parser.add_argument("--lr", type=float, default=ExcitedTrainConfig.lr)
    parser.add_argument("--model", default="base")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--export", type=Path, metavar="FOLDER")
    parser.add_argument("--which", default="best.pt")
    parser.add_argument("--description", default="")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        if args.export:
            print(export(args.out, args.export, args.which, args.description))
            return 0
        cfg = ExcitedTrainConfig(model=args.model, total_steps=args.total_steps, lr=args.lr)
        print(train(args.dataset, args.out, cfg, args.minutes, log=lambda m: print(m, flush=True)))
    except LiveSynthError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
