"""Train the streaming neural vocoder on a dataset's audio shards, in resumable chunks.

    python tools/train_vocoder.py DATASET --out runs/vocoder --minutes 8 [--device cuda] [--batch-size 64]
    python tools/train_vocoder.py DATASET --out runs/vocoder --export live_synth/assets/vocoder  # ship (fp16)

DATASET/train/*.npz hold `audio` (int16, 16 kHz mono); a held-out split (DATASET/heldout) is used only for the
validation column. Rerunning with the same --out resumes from runs/vocoder/ckpt.pt with the run's stored settings;
training options given again on the command line override them (e.g. a lower --lr), model shape options must match.
Losses go to runs/vocoder/loss.csv and loss.png.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import torch

from live_synth.audio.neural_vocoder import VocoderConfig, preset
from live_synth.errors import LiveSynthError
from live_synth.training.vocoder_trainer import VocoderTrainConfig, export, load_checkpoint, plot_losses, train

SHAPE_FIELDS = ("dim", "hidden", "layers", "kernel", "embed_kernel", "lookahead")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", type=Path, nargs="?", help="dataset folder (not needed with --export alone)")
    parser.add_argument("--out", type=Path, required=True, help="run folder (checkpoint, loss log and plot)")
    parser.add_argument("--minutes", type=float, default=5.0, help="stop cleanly and save after this long")
    parser.add_argument("--max-steps", type=int, help="stop at this step (total, counting earlier chunks)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--export", type=Path, help="after training (or alone, without DATASET): write fp16 "
                        "vocoder.safetensors + vocoder.json to this folder")
    parser.add_argument("--description", default="", help="provenance text stored in the exported config")
    shape = parser.add_argument_group("model shape (a new run only)")
    for name in SHAPE_FIELDS:
        shape.add_argument(f"--{name.replace('_', '-')}", type=int)
    training = parser.add_argument_group("training settings (stored in the checkpoint)")
    for field in dataclasses.fields(VocoderTrainConfig):
        training.add_argument(f"--{field.name.replace('_', '-')}", type=type(field.default), default=None,
                              help=f"default {field.default}")
    return parser.parse_args(argv)


def model_config(args: argparse.Namespace, train_cfg: VocoderTrainConfig) -> VocoderConfig:
    changes = {name: getattr(args, name) for name in SHAPE_FIELDS if getattr(args, name) is not None}
    try:
        return dataclasses.replace(preset(train_cfg.model), **changes)
    except ValueError as exc:
        raise LiveSynthError(str(exc)) from None


def check_resume_shape(args: argparse.Namespace) -> None:
    ckpt = load_checkpoint(args.out)
    if ckpt is None:
        return
    import json

    stored = json.loads(ckpt["model_config"])
    for name in SHAPE_FIELDS:
        value = getattr(args, name)
        if value is not None and value != stored[name]:
            raise LiveSynthError(f"{args.out}: the run's vocoder has {name}={stored[name]}, not {value} "
                                 "(use another --out for a new shape)")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(VocoderTrainConfig)
                 if getattr(args, f.name) is not None}
    try:
        if args.dataset is not None:
            check_resume_shape(args)
            cfg = VocoderTrainConfig(**overrides)
            step = train(args.dataset, args.out, cfg, args.minutes, args.max_steps, args.device,
                         progress=lambda row: print(", ".join(f"{k} {v}" for k, v in row.items() if v != ""),
                                                    flush=True),
                         model_config=model_config(args, cfg), overrides=overrides)
            print(f"stopped at step {step}; plot: {plot_losses(args.out) if (args.out / 'loss.csv').exists() else '-'}")
        elif not args.export:
            raise LiveSynthError("give a DATASET to train on, or --export FOLDER to export a run")
        if args.export:
            print(f"exported {export(args.out, args.export, args.description)}")
    except LiveSynthError as exc:
        print(f"train_vocoder: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
