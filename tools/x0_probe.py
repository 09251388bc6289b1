"""Does the model use the notes? Its one-step clean estimate x̂0 for a dataset piece, with and without conditioning.

    python tools/x0_probe.py --model RUN_EXPORT --piece DATASET/heldout/00000.npz --out probe.png [--tau 1.0]

For consecutive target windows of the piece, the reference frames are noised to `--tau` (1.0: pure noise, where only
the conditioning can say what the frames become) and the model's x̂0 (= (z − σ ε̂)/α, or α z − σ v̂ for
v-models) is taken three ways: with the notes and the true previous frames as context; with the notes only; with
nothing (tokens, roll and context dropped, as classifier-free guidance's unconditional branch). The rows are
stacked under the reference, one colour scale, with the mean |x̂0 − reference| of each in its title. A model that
ignores the notes shows the same picture in all three rows; one that has learned them shows partials where the
reference has them.
Teacher-forced: this tests the network, not the chunked continuation that feeds it its own output (evaluate.py does).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from live_synth.audio import save_spectrogram_rows_png  # noqa: E402
from live_synth.audio.features import scale_features  # noqa: E402
from live_synth.synth import resolve_model_spec  # noqa: E402
from live_synth.errors import LiveSynthError  # noqa: E402
from live_synth.midi.pianoroll import pianoroll  # noqa: E402
from live_synth.model import load_model  # noqa: E402
from live_synth.sampling.samplers import DDIMSampler  # noqa: E402
from live_synth.sampling.schedules import cosine_alpha_sigma  # noqa: E402
from live_synth.training.trainer import read_train_piece  # noqa: E402

ROWS = ("notes + context", "notes only", "nothing")


@torch.no_grad()
def x0_rows(model, piece, tau: float, seed: int = 0) -> dict[str, np.ndarray]:
    """Reference and the three x̂0 estimates, scaled features [frames, 128] over whole target windows."""
    cfg = model.config
    if not cfg.pianoroll:
        raise LiveSynthError("x0_probe needs one of our own models (with a piano roll)")
    length, gen = cfg.target_length, torch.Generator().manual_seed(seed)
    tau_t = torch.tensor([tau])
    x0_rule = DDIMSampler(1, prediction=cfg.prediction)  # x̂0 from ε or v exactly as sampling computes it
    alpha, sigma = cosine_alpha_sigma(tau_t)
    rows: dict[str, list] = {"reference": []} | {name: [] for name in ROWS}
    scaled = scale_features(torch.from_numpy(piece.mel.astype(np.float32)), clip=True)
    for t0 in range(0, len(scaled) - length + 1, length):
        x0 = scaled[t0 : t0 + length][None]
        z = alpha * x0 + sigma * torch.randn(x0.shape, generator=gen)
        past = scaled[max(t0 - cfg.context_length, 0) : t0]
        context = torch.zeros(1, cfg.context_length, x0.shape[-1])
        mask = torch.zeros(1, cfg.context_length, dtype=torch.bool)
        context[0, : len(past)], mask[0, : len(past)] = past, True
        tokens = torch.tensor(np.asarray(piece.index.window(t0, length)[0]))[None]
        roll = torch.from_numpy(pianoroll(piece.notes, t0, length))[None]
        for name, args in (("notes + context", (tokens, context, mask, roll)),
                           ("notes only", (tokens, context * 0, mask & False, roll)),
                           ("nothing", (tokens * 0, context * 0, mask & False, roll * 0))):
            out = model(z, tau_t, model.encode(*args))
            rows[name].append(x0_rule.clipped_x0_eps(z, out, alpha, sigma)[0][0])
        rows["reference"].append(x0[0])
    if not rows["reference"]:
        raise LiveSynthError(f"the piece is shorter than one {length}-frame window")
    return {k: torch.cat(v).numpy() for k, v in rows.items()}


def plot(rows: dict[str, np.ndarray], out: Path, title: str) -> None:
    ref = rows["reference"]
    labelled = [(name if name == "reference" else
                 f"x̂0 from {name}: mean |x̂0 − reference| {np.abs(frames - ref).mean():.3f}", frames)
                for name, frames in rows.items()]
    save_spectrogram_rows_png(out, labelled, value_range=(-1.0, 1.0), title=title, dpi=70)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="a model folder of our own (with a piano roll), or 'default'")
    parser.add_argument("--piece", required=True, type=Path, help="a dataset piece (.npz from tools/make_dataset.py)")
    parser.add_argument("--tau", type=float, default=1.0, help="noise time of the probe, 0..1 (1: pure noise)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("x0_probe.png"))
    args = parser.parse_args(argv)
    try:
        model = load_model(resolve_model_spec(args.model)[0]).model.float().eval()
        rows = x0_rows(model, read_train_piece(args.piece, model.config), args.tau, args.seed)
    except (LiveSynthError, OSError, KeyError) as exc:
        print(f"x0_probe: error: {exc}", file=sys.stderr)
        return 2
    plot(rows, args.out, f"{args.model}: one-step x̂0 at tau {args.tau} on {args.piece}")
    ref = rows["reference"]
    print(", ".join(f"{k}: {np.abs(v - ref).mean():.3f}" for k, v in rows.items() if k != "reference"),
          f"(mean |x̂0 − reference|, scaled features); plot: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
