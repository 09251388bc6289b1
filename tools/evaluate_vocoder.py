"""Vocoders side by side on held-out pieces: what each loses between the mel and the listener.

    python tools/evaluate_vocoder.py --dataset DATASET --vocoder default [--vocoder PATH ...] [--griffin-lim]
        [--gl-stream] [--oracle] [--split validation|test] [--sources procedural,music21] [--pieces N]
        [--out reports/vocoder]

Choose on `--split validation`; report `--split test`. A vocoder that can be told the notes (the excited vocoder)
is scored twice: with the piece's notes (what `render` and `play` give it) and on the mel alone (what `vocode` of
any audio gives it). `--gl-stream` adds the weight-free streaming baseline: Griffin-Lim run frame by frame with one
frame of look-ahead and 8 frames of context (`live.vocode.GriffinLimStream`, what `play` uses without weights).

For every piece of the split: FluidSynth's own audio (the reference), and the reference analysed into our log-mel and
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
from live_synth.midi import apply_sustain, read_midi  # noqa: E402
from live_synth.midi.events import NoteEvents  # noqa: E402
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


class GLStream:
    """The weight-free streaming baseline as a `Vocoder`: `GriffinLimStream` fed one frame at a time, then aligned."""

    name = "griffin-lim stream (16 it, 8 frames context, 1 frame look-ahead; weight-free)"

    def __call__(self, log_mel: np.ndarray, events=None) -> np.ndarray:
        from live_synth.constants import HOP, N_MELS
        from live_synth.live.vocode import GriffinLimStream

        stream = GriffinLimStream()
        silence = np.full((1, N_MELS), np.log(1e-5), np.float32)
        out = [stream(log_mel[i : i + 1]) for i in range(len(log_mel))] + [stream(silence)]
        return np.concatenate(out)[stream.delay_samples : stream.delay_samples + len(log_mel) * HOP]


def piece_events(piece) -> NoteEvents:
    return NoteEvents.from_sequence(apply_sustain(read_midi(piece.midi, name=piece.name)))


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
    parser.add_argument("--gl-stream", action="store_true", help="also the weight-free streaming Griffin-Lim")
    parser.add_argument("--split", default="validation", choices=("validation", "test"))
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
            if getattr(vocoder, "needs_notes", False):
                systems[f"{spec}: {vocoder.name} + notes"] = (vocoder, True)
                systems[f"{spec}: {vocoder.name}, mel only"] = (vocoder, False)
            else:
                systems[f"{spec}: {vocoder.name}"] = (vocoder, False)
        if args.griffin_lim:
            systems["griffin-lim 64 it on the mel"] = (GriffinLimVocoder(n_iter=64), False)
        if args.gl_stream:
            systems[GLStream.name] = (GLStream(), False)
        oracle = Oracle() if args.oracle else None
        files = heldout_files(args.dataset, args.pieces or None, args.sources, args.split)
        pieces = [load_piece(f) for f in files]
        rows = []
        for piece in pieces:
            row = {"name": piece.name, "seconds": len(piece.audio) / SAMPLE_RATE,
                   "fluidsynth_f1": onset_f1(piece.notes, transcribe(piece.audio, SAMPLE_RATE)).f1, "systems": {}}
            events = piece_events(piece)
            for name, (vocoder, notes) in systems.items():
                start = time.perf_counter()
                audio, _ = resynthesize(piece.audio, vocoder, events if notes else None)
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
    lines = [f"# Vocoders on the {args.split} split", "",
             f"- command: `python tools/evaluate_vocoder.py {' '.join(argv if argv is not None else sys.argv[1:])}`",
             f"- revision {revision()}; machine {machine()}",
             f"- {len(rows)} pieces ({sum(r['seconds'] for r in rows):.0f} s); FluidSynth's own onset F1 "
             f"{reference:.3f} (Basic Pitch vs the MIDI, pitched notes, 50 ms)", "",
             f"- per-piece F1 ratios over the {sum(r['fluidsynth_f1'] >= 0.2 for r in rows)} pieces where "
             "FluidSynth's own F1 is >= 0.2: median / mean", "",
             "| system | onset F1 | ÷ FluidSynth | per piece: median / mean | MR-STFT ↓ | re-analysed log-mel L1 ↓ "
             "| RTF ↓ |",
             "|---|---|---|---|---|---|---|"]
    summary = {}
    for name in names:
        means = {k: float(np.mean([r["systems"][name][k] for r in rows])) for k in ("f1", "mr_stft", "log_mel_l1",
                                                                                     "rtf")}
        means["f1_ratio"] = means["f1"] / reference if reference > 0 else float("nan")
        # Per-piece ratios, on the pieces where FluidSynth's own F1 is at least 0.2 (a ratio to a near-zero F1 is
        # noise): their median and mean.
        ratios = [r["systems"][name]["f1"] / r["fluidsynth_f1"] for r in rows if r["fluidsynth_f1"] >= 0.2]
        means["piece_ratio_median"] = float(np.median(ratios)) if ratios else float("nan")
        means["piece_ratio_mean"] = float(np.mean(ratios)) if ratios else float("nan")
        summary[name] = means
        lines.append(f"| {name} | {means['f1']:.3f} | {means['f1_ratio']:.3f} | {means['piece_ratio_median']:.3f} / "
                     f"{means['piece_ratio_mean']:.3f} | {means['mr_stft']:.3f} | {means['log_mel_l1']:.3f} | "
                     f"{means['rtf']:.4f} |")
    args.out.mkdir(parents=True, exist_ok=True)
    from live_synth.audio import save_spectrogram_rows_png

    for kind, (piece, start) in passages(pieces).items():
        span = slice(int(start * SAMPLE_RATE), int((start + 4.0) * SAMPLE_RATE))
        panel = [(f"{piece.name} {kind}: FluidSynth", log_mel(torch.from_numpy(piece.audio[span])).numpy())]
        events = piece_events(piece)
        shifted = NoteEvents(events.notes.copy(), {k: v.copy() for k, v in events.controls.items()})
        shifted.notes[:, :2] -= span.start / SAMPLE_RATE  # the passage's clock starts at its first sample
        for lane in shifted.controls.values():
            lane[:, 0] -= span.start / SAMPLE_RATE
        for name, (vocoder, notes) in systems.items():
            audio, _ = resynthesize(piece.audio[span], vocoder, shifted if notes else None)
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
