"""Convert a downloaded google/music-spectrogram-diffusion folder (diffusers layout) to live-synth's own format.

    python tools/convert_checkpoint.py ~/music-spectrogram-diffusion models/base [--fp16]

Writes DST/config.json + DST/model.safetensors (the config is also stored in the safetensors metadata) and copies
the published vocoder melgan/model.onnx to DST/melgan.onnx when the source has it. Diffusers is not needed: the
.bin pickles are read with torch.load(weights_only=True). The converted model is checked against the source on a
random window before the tool reports success.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import torch

from live_synth.errors import LiveSynthError
from live_synth.model.checkpoint import load_model, save_model


@torch.no_grad()
def max_difference(a, b, seed: int = 0) -> float:
    """Largest |ε_a − ε_b| on one random window with 64 random tokens and a full context."""
    gen = torch.Generator().manual_seed(seed)
    cfg = a.config
    tokens = torch.randint(3, 1391, (1, 64), generator=gen)
    context = torch.rand(1, cfg.context_length, cfg.input_dims, generator=gen) * 2 - 1
    mask = torch.ones(1, cfg.context_length, dtype=torch.bool)
    z = torch.randn(1, cfg.target_length, cfg.input_dims, generator=gen)
    tau = torch.tensor([0.5])
    eps_a = a(z, tau, a.encode(tokens, context, mask))
    eps_b = b(z, tau, b.encode(tokens, context, mask))
    return float((eps_a - eps_b).abs().max())


def convert(src: Path, dst: Path, fp16: bool = False) -> float:
    loaded = load_model(src)
    if loaded.random_weights:
        raise LiveSynthError(f"{src}: is a preset name, not a checkpoint folder")
    save_model(loaded.model, dst, fp16=fp16)
    if loaded.vocoder_path is not None:
        shutil.copyfile(loaded.vocoder_path, dst / "melgan.onnx")
    return max_difference(loaded.model, load_model(dst).model)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("src", type=Path, help="diffusers-layout folder (model_index.json, notes_encoder/, ...)")
    parser.add_argument("dst", type=Path, help="output folder")
    parser.add_argument("--fp16", action="store_true", help="store weights in float16 (half the size)")
    args = parser.parse_args(argv)
    try:
        diff = convert(args.src, args.dst, args.fp16)
    except LiveSynthError as exc:
        print(f"convert_checkpoint: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.dst}: max |Δε| against the source on a random window = {diff:.3g}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
