"""Vocoders side by side on held-out pieces: what each loses between the mel and the listener.

    python tools/evaluate_vocoder.py --dataset DATASET --vocoder default [--vocoder PATH ...] [--griffin-lim]
        [--oracle] [--sources procedural,music21] [--pieces N] [--lookahead-zero PATH] [--out reports/vocoder]

For every held-out piece: FluidSynth's own audio (the reference), and the reference analysed into our log-mel and
resynthesised by each vocoder (`audio.wav.resynthesize`, what `live-synth vocode` does); optionally Griffin-Lim on
the mel (64 iterations) and the oracle, Griffin-Lim with 200 iterations on the reference's true linear STFT
magnitude (no mel between): what a phase-free inversion of the full spectrum loses, against which the mel's own
information loss shows. Per system: Basic Pitch onset F1 against the MIDI (pitched notes), its ratio to
FluidSynth's, MR-STFT distance, the log-mel L1 of the re-analysed output, and the compute's real-time factor.
Writes REPORT.md, results.json and spectrograms of a piano, a drum and a chord passage (reference above each
vocoder) to --out.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

from live_synth.audio import GriffinLimVocoder, load_vocoder, log_mel  # noqa: E402
from live_synth.audio.features import stft_magnitude  # noqa: E402
from live_synth.audio.vocoders import griffin_lim  # noqa: E402
from live_synth.audio.wav import resynthesize  # noqa: E402
from live_synth.constants import SAMPLE_RATE  # noqa: E402
from live_synth.errors import LiveSynthError  # noqa: E402
from live_synth.files import atomic_output  # noqa: E402
from live_synth.provenance import machine, revision  # noqa: E402
from live_synth.synth import packaged_path, resolve_model_spec  # noqa: E402
from live_synth.training.metrics import (  # noqa: E402
    check_dependencies,
    log_mel_l1,
    multi_resolution_stft_distance,
    onset_f1,
    transcribe,
)


class Oracle:
    """Griffin-Lim with `n_iter` iterations on the true linear magnitude of the audio (not a mel vocoder)."""

    name = "oracle: Griffin-Lim 200 it on the true STFT magnitude"

    def __init__(self, n_iter: int = 200):
        self.n_iter = n_iter

    def audio(self, audio16k: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            magnitude = stft_magnitude(torch.from_numpy(audio16k.astype(np.float32)))
            out = griffin_lim(magnitude, self.n_iter, generator=torch.Generator().manual_seed(0))
        return out.numpy()[: len(audio16k)]


def score(piece, audio: np.ndarray, seconds: float) -> dict:
    f1 = onset_f1(piece.notes, transcribe(audio, SAMPLE_RATE))
    return {"f1": f1.f1, "mr_stft": multi_resolution_stft_distance(audio, piece.audio, SAMPLE_RATE),
            "log_mel_l1": log_mel_l1(log_mel(torch.from_numpy(audio)).numpy(), piece.mel),
            "rtf": seconds / (len(audio) / SAMPLE_RATE)}


def passages(pieces) -> dict[str, tuple]:
    """(piece, start s) of a piano, a drum and a sustained-chord passage, found by what the MIDI holds."""
    from live_synth.midi import read_midi

    found = {}
    for piece in pieces:
        ns = read_midi(piece.midi, name=piece.name)
        for note in ns.notes:
            kind = "drums" if note.is_drum else ("piano" if note.program < 8 else None)
            if note.end - note.start > 1.5 and not note.is_drum:
                kind = kind or "chord"
                chord = [n for n in ns.notes if abs(n.start - note.start) < 0.05 and not n.is_drum]
                if len(chord) >= 3:
                    found.setdefault("chord", (piece, max(0.0, note.start - 0.5)))
            if kind in ("piano", "drums"):
                found.setdefault(kind, (piece, max(0.0, note.start - 0.5)))
    return found


def main(argv: list[str] | None = None) -> int:
    from evaluate import heldout_files, load_piece

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", type=Path, required=True)
    parser.add_argument("--vocoder", action="append", help="default, a vocoder folder / .safetensors / .onnx")
    parser.add_argument("--griffin-lim", action="store_true", help="also Griffin-Lim (64 it) on the mel")
    parser.add_argument("--oracle", action="store_true", help="also Griffin-Lim 200 it on the true STFT magnitude")
    parser.add_argument("--sources", default="all")
    parser.add_argument("--pieces", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("reports/vocoder"))
    args = parser.parse_args(argv)
    try:
        check_dependencies()
        systems = {}
        for spec in args.vocoder or ["default"]:
            path = resolve_model_spec(spec)[0] if spec == "default" else spec
            vocoder = load_vocoder(path)
            systems[f"{spec}: {vocoder.name}"] = vocoder
        if args.griffin_lim:
            systems["griffin-lim 64 it on the mel"] = GriffinLimVocoder(n_iter=64)
        oracle = Oracle() if args.oracle else None
        files = heldout_files(args.dataset, args.pieces or None, args.sources)
        pieces = [load_piece(f) for f in files]
        rows = []
        for piece in pieces:
            row = {"name": piece.name, "seconds": len(piece.audio) / SAMPLE_RATE,
                   "fluidsynth_f1": onset_f1(piece.notes, transcribe(piece.audio, SAMPLE_RATE)).f1, "systems": {}}
            for name, vocoder in systems.items():
                start = time.perf_counter()
                audio, _ = resynthesize(piece.audio, vocoder)
                row["systems"][name] = score(piece, audio[: len(piece.audio)], time.perf_counter() - start)
            if oracle is not None:
                start = time.perf_counter()
                audio = oracle.audio(piece.audio)
                row["systems"][oracle.name] = score(piece, audio, time.perf_counter() - start)
            rows.append(row)
    except LiveSynthError as exc:
        print(f"evaluate_vocoder: error: {exc}", file=sys.stderr)
        return 2
    names = list(rows[0]["systems"])
    reference = float(np.mean([r["fluidsynth_f1"] for r in rows]))
    lines = ["# Vocoders on held-out pieces", "",
             f"- command: `python tools/evaluate_vocoder.py {' '.join(argv if argv is not None else sys.argv[1:])}`",
             f"- revision {revision()}; machine {machine()}",
             f"- {len(rows)} pieces ({sum(r['seconds'] for r in rows):.0f} s); FluidSynth's own onset F1 "
             f"{reference:.3f} (Basic Pitch vs the MIDI, pitched notes, 50 ms)", "",
             "| system | onset F1 | ÷ FluidSynth | MR-STFT ↓ | re-analysed log-mel L1 ↓ | RTF ↓ |",
             "|---|---|---|---|---|---|"]
    summary = {}
    for name in names:
        means = {k: float(np.mean([r["systems"][name][k] for r in rows])) for k in ("f1", "mr_stft", "log_mel_l1",
                                                                                     "rtf")}
        means["f1_ratio"] = means["f1"] / reference if reference > 0 else float("nan")
        summary[name] = means
        lines.append(f"| {name} | {means['f1']:.3f} | {means['f1_ratio']:.3f} | {means['mr_stft']:.3f} | "
                     f"{means['log_mel_l1']:.3f} | {means['rtf']:.4f} |")
    args.out.mkdir(parents=True, exist_ok=True)
    from live_synth.audio import save_spectrogram_rows_png

    for kind, (piece, start) in passages(pieces).items():
        span = slice(int(start * SAMPLE_RATE), int((start + 4.0) * SAMPLE_RATE))
        panel = [(f"{piece.name} {kind}: FluidSynth", log_mel(torch.from_numpy(piece.audio[span])).numpy())]
        for name, vocoder in systems.items():
            audio, _ = resynthesize(piece.audio[span], vocoder)
            panel.append((name, log_mel(torch.from_numpy(audio)).numpy()))
        save_spectrogram_rows_png(args.out / f"{kind}.png", panel)
        lines.append(f"\n![{kind}]({kind}.png)")
    report = "\n".join(lines) + "\n"
    with atomic_output(args.out / "REPORT.md") as handle:
        handle.write(report.encode())
    with atomic_output(args.out / "results.json") as handle:
        handle.write(json.dumps({"summary": summary, "reference_f1": reference, "pieces": rows}, indent=2).encode())
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
