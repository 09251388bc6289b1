"""Evaluate a model and vocoder on a dataset's held-out pieces against the FluidSynth reference (issue 3, item 5).

    python tools/evaluate.py --dataset DATASET --model SPEC [--vocoder SPEC] [--sampler dpmpp] [--steps 8]
        [--sweep 1,2,4,8,16] [--pieces N] [--out reports/eval]

For every held-out piece (DATASET/heldout/NNNNN.npz: its MIDI, notes, reference log-mel and FluidSynth audio) this
renders the MIDI with our stack (the model's token windows and piano rolls -> model + sampler -> log-mel ->
vocoder; timed) and reports, per piece and over all pieces:

- log-mel L1: our mel against the reference mel;
- MR-STFT: multi-resolution STFT distance of our audio from the reference audio;
- onset F1: Basic Pitch's transcription of our audio against the input MIDI (onsets within 50 ms, pitch within 50
  cents, drums left out), next to the same F1 of the FluidSynth reference audio, and their ratio;
- RTF, the real-time factor: seconds of compute (render_mel + vocoder) per second of audio; below 1 is faster than
  real time. Tokenizing and transcribing are not counted;
- a vocoder-only row: the reference mel through our vocoder. With Griffin-Lim this is the reference through the same
  vocoder, the fair yardstick for the model (training-notes.md), and the report says so;
- a sweep over sampling steps: the overall numbers per step count.

Over all pieces, distances and F1 are means of the per-piece values, an F1 ratio is the ratio of the mean F1s, and
the RTF is total compute over total audio. Writes REPORT.md (markdown tables, the command, git revision and machine),
spectrograms.png (reference mel above ours for the first piece, one colour scale) and results.json into --out.
Needs the `eval` extra plus basic-pitch (see pyproject.toml).
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import math
import shlex
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from engines import load_engine  # noqa: E402
from live_synth.provenance import machine, revision  # noqa: E402
from live_synth.audio import GriffinLimVocoder, load_vocoder, log_mel  # noqa: E402
from live_synth.files import atomic_output  # noqa: E402
from live_synth.cli import warn  # noqa: E402
from live_synth.synth import resolve_model_spec  # noqa: E402
from live_synth.constants import FRAME_RATE, HOP, LOG_MEL_MAX, LOG_MEL_MIN, N_MELS, SAMPLE_RATE  # noqa: E402
from live_synth.errors import LiveSynthError  # noqa: E402
from live_synth.midi import apply_sustain, read_midi  # noqa: E402
from live_synth.model import ModelConfig, load_model  # noqa: E402
from live_synth.render import SongWindows, render_mel, song_windows  # noqa: E402
from live_synth.sampling.samplers import make_sampler  # noqa: E402
from live_synth.training.metrics import (  # noqa: E402  (Basic Pitch and mir_eval are imported on first use)
    check_dependencies,
    log_mel_l1,
    multi_resolution_stft_distance,
    onset_f1,
    pitched_notes,
    ratio,
    transcribe,
)

REPORT_FILE, PNG_FILE, JSON_FILE = "REPORT.md", "spectrograms.png", "results.json"
TARGET_RENDER_RATIO = 0.90  # issue 3: our F1 >= 0.9 x the reference's at the default step count
TARGET_VOCODER_RATIO = 0.95  # issue 3: vocoder-only F1 >= 0.95 x the reference's
SCORE_KEYS = ("log_mel_l1", "mr_stft", "precision", "recall", "f1")


@dataclass
class Piece:
    """One held-out piece: the input MIDI and its FluidSynth reference."""
    name: str
    midi: bytes
    notes: list[tuple[float, float, int]]  # pitched notes of the MIDI (drums excluded): the F1 ground truth
    mel: np.ndarray  # reference natural-log mel [T, 128] float32
    audio: np.ndarray  # reference audio, float32 at 16 kHz


@dataclass
class Stack:
    """What renders a piece: engine, vocoder, the model's config (its token language and window geometry) and the
    sampling settings."""
    engine: Any
    vocoder: Any
    config: ModelConfig
    sampler: str
    guidance: float
    seed: int


# --------------------------------------------------------------------------------------------------------------------
# Data


def heldout_files(dataset: Path, limit: int | None) -> list[Path]:
    folder = dataset / "heldout"
    if not folder.is_dir():
        raise LiveSynthError(f"{dataset}: no held-out split (expected the folder {folder})")
    files = sorted(folder.glob("*.npz"))
    if not files:
        raise LiveSynthError(f"{folder}: holds no .npz pieces")
    return files[:limit] if limit else files


def _text(value: np.ndarray, default: str) -> str:
    item = value.item() if value.ndim == 0 else default
    return item.decode() if isinstance(item, bytes) else str(item)


def load_piece(path: Path) -> Piece:
    """Read one held-out .npz (keys: name, midi, notes, is_drum, mel, audio; notes and audio optional)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            fields = {key: data[key] for key in data.files}
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise LiveSynthError(f"{path}: not a readable .npz piece ({error})") from error
    missing = {"midi", "mel"} - set(fields)
    if missing:
        raise LiveSynthError(f"{path}: lacks the key(s) {sorted(missing)}")
    name = _text(fields["name"], path.stem) if "name" in fields else path.stem
    midi = np.asarray(fields["midi"], np.uint8).tobytes()
    if "notes" in fields:
        notes = pitched_notes(fields["notes"], fields.get("is_drum"))
    else:
        notes = _notes_from_midi(midi, name)
    audio = fields.get("audio")
    if audio is None or audio.size == 0:
        audio = render_reference(midi, name)
    elif audio.dtype == np.int16:
        audio = audio.astype(np.float32) / 32768.0
    return Piece(name, midi, notes, np.asarray(fields["mel"], np.float32), np.asarray(audio, np.float32).reshape(-1))


def _notes_from_midi(midi: bytes, name: str) -> list[tuple[float, float, int]]:
    return [(n.start, n.end, n.pitch) for n in read_midi(midi, name=name).notes if not n.is_drum]


def render_reference(midi: bytes, name: str) -> np.ndarray:
    """FluidSynth audio for a piece stored without audio, rendered by the dataset tool's own synth module."""
    try:
        from live_synth.training import synth
    except ImportError as error:
        raise LiveSynthError(f"{name}: the piece holds no reference audio and live_synth.training.synth "
                             f"(FluidSynth rendering) cannot be imported ({error})") from error
    if not hasattr(synth, "render_midi"):
        raise LiveSynthError(f"{name}: the piece holds no reference audio and live_synth.training.synth has no "
                             "render_midi(midi_bytes) -> 16 kHz mono audio")
    return np.asarray(synth.render_midi(midi), np.float32).reshape(-1)


# --------------------------------------------------------------------------------------------------------------------
# Rendering and scoring


def song_of(stack: Stack, piece: Piece) -> tuple[SongWindows, int]:
    """The model's windows for a piece's MIDI (sustain applied, as `live-synth render` does) and its frame count."""
    notes = apply_sustain(read_midi(piece.midi, name=piece.name))
    return song_windows(notes, stack.config), int(notes.total_time * SAMPLE_RATE) // HOP + 1  # as song_windows


def render(stack: Stack, song: SongWindows, frames: int, steps: int) -> tuple[np.ndarray, np.ndarray, float]:
    """(our log-mel [frames, 128], our audio, compute seconds) for a song's windows at `steps` sampling steps."""
    sampler = make_sampler(stack.sampler, steps)
    start = time.perf_counter()
    mel = render_mel(stack.engine, song.segments, sampler, stack.guidance, torch.Generator().manual_seed(stack.seed),
                     rolls=song.rolls)
    mel = mel[:frames]
    audio = stack.vocoder(mel)
    return mel, audio, time.perf_counter() - start


def score_audio(piece: Piece, mel: np.ndarray, audio: np.ndarray, seconds: float) -> dict[str, float]:
    """Distances to the reference and onset F1 against the MIDI for one rendering (`mel` is what made `audio`)."""
    scores = onset_f1(piece.notes, transcribe(audio, SAMPLE_RATE))
    audio_seconds = len(audio) / SAMPLE_RATE
    return {
        "log_mel_l1": log_mel_l1(mel, piece.mel),
        "mr_stft": multi_resolution_stft_distance(audio, piece.audio, SAMPLE_RATE),
        "precision": scores.precision,
        "recall": scores.recall,
        "f1": scores.f1,
        "compute_s": seconds,
        "audio_s": audio_seconds,
        "rtf": seconds / audio_seconds if audio_seconds > 0 else math.nan,
    }


def evaluate_piece(stack: Stack, piece: Piece, step_counts: list[int]) -> tuple[dict, np.ndarray]:
    """All numbers for one piece, and our mel at the first step count in `step_counts` (for the picture)."""
    reference = onset_f1(piece.notes, transcribe(piece.audio, SAMPLE_RATE))
    start = time.perf_counter()
    vocoded = stack.vocoder(piece.mel)
    vocoder_seconds = time.perf_counter() - start
    vocoded_mel = log_mel(torch.from_numpy(vocoded)).numpy()
    song, frames = song_of(stack, piece)
    renders, first_mel = {}, None
    for steps in step_counts:
        mel, audio, seconds = render(stack, song, frames, steps)
        renders[steps] = score_audio(piece, mel, audio, seconds)
        first_mel = mel if first_mel is None else first_mel
    row = {
        "name": piece.name,
        "seconds": len(piece.audio) / SAMPLE_RATE,
        "notes": len(piece.notes),
        "reference": reference._asdict(),
        "vocoder_only": score_audio(piece, vocoded_mel, vocoded, vocoder_seconds),
        "renders": renders,
    }
    return row, first_mel


def summarize(rows: list[dict[str, float]]) -> dict[str, float]:
    """Means of the per-piece scores; the RTF as total compute over total audio."""
    summary = {key: float(np.mean([r[key] for r in rows])) for key in SCORE_KEYS if all(key in r for r in rows)}
    compute, audio = sum(r["compute_s"] for r in rows), sum(r["audio_s"] for r in rows)
    summary.update(compute_s=compute, audio_s=audio, rtf=compute / audio if audio > 0 else math.nan)
    return summary


def add_f1_ratios(system: dict) -> None:
    """Divide the F1 of the vocoder-only row and of every render by the reference's and by the vocoder-only row's.

    `system` is one piece's row or the overall summary: {"reference", "vocoder_only", "renders"}. Changes it in place.
    """
    for scores in [system["vocoder_only"], *system["renders"].values()]:
        scores["f1_ratio_reference"] = ratio(scores["f1"], system["reference"]["f1"])
        scores["f1_ratio_same_vocoder"] = ratio(scores["f1"], system["vocoder_only"]["f1"])


def overall(pieces: list[dict], step_counts: list[int]) -> dict:
    """Summaries over pieces (see `summarize`); adds the F1 ratios to the pieces' rows and to the summary."""
    reference = {key: float(np.mean([p["reference"][key] for p in pieces])) for key in ("precision", "recall", "f1")}
    total = {"reference": reference, "vocoder_only": summarize([p["vocoder_only"] for p in pieces]),
             "renders": {steps: summarize([p["renders"][steps] for p in pieces]) for steps in step_counts}}
    for system in [*pieces, total]:
        add_f1_ratios(system)
    return total


# --------------------------------------------------------------------------------------------------------------------
# Report


def _fmt(value: float | None, digits: int = 3) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _steps(count: int) -> str:
    return f"{count} step" + ("s" if count != 1 else "")


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in rows)]


def _system_cells(s: dict) -> list[str]:
    return [_fmt(s["log_mel_l1"]), _fmt(s["mr_stft"]), _fmt(s["f1"]), _fmt(s["f1_ratio_reference"]),
            _fmt(s["f1_ratio_same_vocoder"]), _fmt(s["rtf"], 4)]


SYSTEM_HEADER = ["log-mel L1 ↓", "MR-STFT ↓", "onset F1 ↑", "F1 ÷ FluidSynth F1", "F1 ÷ same-vocoder ref. F1",
                 "RTF ↓"]


def vocoder_only_label(result: dict) -> str:
    label = f"reference mel → {result['settings']['vocoder']} (vocoder only)"
    if result["settings"]["griffin_lim"]:
        label += ": the reference through the same vocoder"
    return label


def overall_section(result: dict) -> list[str]:
    settings, total = result["settings"], result["overall"]
    ours = total["renders"][settings["steps"]]
    rows = [
        ["FluidSynth reference audio", "–", "–", _fmt(total["reference"]["f1"]), "1.000", "–", "–"],
        [vocoder_only_label(result), *_system_cells(total["vocoder_only"])],
        [f"ours: {settings['sampler']} × {settings['steps']} → {settings['vocoder']}", *_system_cells(ours)],
    ]
    lines = ["## Overall (mean over pieces)", "", *_table(["system", *SYSTEM_HEADER], rows), ""]
    met = {True: "met", False: "**not met**"}
    render_ratio, vocoder_ratio = ours["f1_ratio_reference"], total["vocoder_only"]["f1_ratio_reference"]
    lines.append(f"- target, ours ≥ {TARGET_RENDER_RATIO} × FluidSynth F1 at {_steps(settings['steps'])}: "
                 f"{_fmt(render_ratio)} → {met[bool(render_ratio >= TARGET_RENDER_RATIO)]}")
    lines.append(f"- target, vocoder only ≥ {TARGET_VOCODER_RATIO} × FluidSynth F1: {_fmt(vocoder_ratio)} → "
                 f"{met[bool(vocoder_ratio >= TARGET_VOCODER_RATIO)]}")
    if settings["griffin_lim"]:
        lines.append("- the vocoder is Griffin-Lim (the weight-free fallback, not a trained vocoder): judge the model "
                     f"by ours ÷ the reference through the same vocoder = {_fmt(ours['f1_ratio_same_vocoder'])}")
    return lines + [""]


def sweep_section(result: dict) -> list[str]:
    renders = result["overall"]["renders"]
    rows = [[str(steps), *_system_cells(renders[steps])] for steps in result["settings"]["sweep"]]
    return [f"## Sampling steps ({result['settings']['sampler']}, overall)", "",
            *_table(["steps", *SYSTEM_HEADER], rows), ""]


def pieces_section(result: dict) -> list[str]:
    steps = result["settings"]["steps"]
    header = ["piece", "audio s", "notes", "FluidSynth F1", "vocoder-only F1", "ours F1", "ours ÷ FluidSynth",
              "ours ÷ same-vocoder ref.", "log-mel L1", "MR-STFT", "RTF"]
    rows = []
    for p in result["pieces"]:
        ours = p["renders"][steps]
        rows.append([p["name"], _fmt(p["seconds"], 1), str(p["notes"]), _fmt(p["reference"]["f1"]),
                     _fmt(p["vocoder_only"]["f1"]), _fmt(ours["f1"]), _fmt(ours["f1_ratio_reference"]),
                     _fmt(ours["f1_ratio_same_vocoder"]), _fmt(ours["log_mel_l1"]), _fmt(ours["mr_stft"]),
                     _fmt(ours["rtf"], 4)])
    return [f"## Per piece ({result['settings']['sampler']} × {steps})", "", *_table(header, rows), ""]


def markdown_report(result: dict) -> str:
    s, meta = result["settings"], result["meta"]
    lines = [
        f"# Evaluation: {s['model']} on {s['dataset']}", "",
        f"- command: `{meta['command']}`",
        f"- revision: {meta['revision']}; date {meta['date']}",
        f"- machine: {meta['machine']}; torch {meta['torch']}; device {s['device']} ({s['dtype']})",
        f"- model: {s['model_source']}{' (RANDOM WEIGHTS)' if s['random_weights'] else ''}; vocoder {s['vocoder']}; "
        f"sampler {s['sampler']}, {_steps(s['steps'])}, guidance {s['guidance']}, seed {s['seed']}",
        f"- pieces: {len(result['pieces'])} held-out, {_fmt(sum(p['seconds'] for p in result['pieces']), 1)} s of "
        f"audio, {sum(p['notes'] for p in result['pieces'])} pitched reference notes (drum notes are left out: "
        "Basic Pitch transcribes pitched notes only)",
        "- log-mel L1: mean |ours − reference| of natural-log mels (ours: the model's mel; vocoder only: the mel of "
        "the vocoded audio). MR-STFT: spectral convergence + log-magnitude L1 over FFT 512/1024/2048. Onset F1: "
        "Basic Pitch (ONNX) vs the MIDI, mir_eval, onsets within 50 ms, pitch within 50 cents. RTF: compute s per "
        "audio s (model + vocoder).",
        "",
    ]
    lines += overall_section(result) + sweep_section(result) + pieces_section(result)
    lines += [f"![reference mel above ours]({PNG_FILE})", ""]
    return "\n".join(lines)


def save_side_by_side(path: Path, reference: np.ndarray, ours: np.ndarray, title: str) -> None:
    """Reference mel above ours on one time axis and one colour scale, as a PNG (written atomically)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    vmax = max(LOG_MEL_MAX, float(reference.max(initial=LOG_MEL_MIN)), float(ours.max(initial=LOG_MEL_MIN)))
    seconds = max(len(reference), len(ours)) / FRAME_RATE
    figure = Figure(figsize=(min(5.0 + seconds * 0.8, 30.0), 6.5), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(2, 1, sharex=True)
    for ax, mel, label in zip(axes, (reference, ours), ("reference (FluidSynth)", "ours")):
        image = ax.imshow(mel.T, origin="lower", aspect="auto", interpolation="nearest", cmap="magma",
                          extent=(0.0, len(mel) / FRAME_RATE, -0.5, N_MELS - 0.5), vmin=LOG_MEL_MIN, vmax=vmax)
        ax.set_ylabel(f"{label}\nmel bin")
    axes[1].set_xlabel("time (s)")
    axes[1].set_xlim(0.0, seconds)  # the shared axis would otherwise end with the last image drawn
    axes[0].set_title(title)
    figure.colorbar(image, ax=list(axes), label="ln mel")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    with atomic_output(path) as handle:
        handle.write(buffer.getvalue())


def _json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value






# --------------------------------------------------------------------------------------------------------------------
# Command line


def parse_steps(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise LiveSynthError(f"--sweep must be step counts separated by commas, got {text!r}") from None
    if any(c < 1 for c in counts):
        raise LiveSynthError(f"--sweep step counts must be >= 1, got {text!r}")
    return list(dict.fromkeys(counts))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True, help="dataset folder with a heldout/ split of .npz pieces")
    parser.add_argument("--model", required=True, help="model folder/file, 'default', or a preset (random weights)")
    parser.add_argument("--vocoder", help="griffin-lim or a vocoder file (default: the model's own, else Griffin-Lim)")
    parser.add_argument("--griffin-lim-iters", type=int, default=64, help="Griffin-Lim iterations when it is used")
    parser.add_argument("--sampler", default="dpmpp")
    parser.add_argument("--steps", type=int, default=8, help="the default step count (main rows)")
    parser.add_argument("--sweep", default="1,2,4,8,16", help="step counts for the sweep table ('' for none)")
    parser.add_argument("--guidance", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pieces", type=int, default=0, help="evaluate only the first N held-out pieces")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--out", default="reports/eval", help="folder for REPORT.md, the PNG and the JSON")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    return parser


def load_stack(args: argparse.Namespace) -> tuple[Stack, dict]:
    """The rendering stack and the settings that describe it in the report."""
    spec, warning = resolve_model_spec(args.model)
    loaded = load_model(spec, seed=args.seed)
    if warning or loaded.random_weights:
        warn(warning or f"model '{args.model}' has RANDOM weights: the numbers describe noise, not a model")
    vocoder_spec = args.vocoder or loaded.vocoder_path
    griffin_lim = vocoder_spec is None or str(vocoder_spec).strip().lower() == "griffin-lim"
    vocoder = GriffinLimVocoder(n_iter=args.griffin_lim_iters, seed=args.seed) if griffin_lim \
        else load_vocoder(vocoder_spec)
    engine = load_engine("torch", loaded.model, device=args.device, dtype=args.dtype)
    stack = Stack(engine, vocoder, loaded.model.config, args.sampler, args.guidance, args.seed)
    settings = {"model": args.model, "model_source": loaded.source, "random_weights": loaded.random_weights,
                "vocoder": vocoder.name, "griffin_lim": griffin_lim, "sampler": args.sampler, "steps": args.steps,
                "guidance": args.guidance, "seed": args.seed, "device": args.device, "dtype": args.dtype}
    return stack, settings


def warm_up(stack: Stack, piece: Piece) -> None:
    """One short render so that lazy initialisation is not timed as the first piece's RTF."""
    song, _ = song_of(stack, piece)
    first = SongWindows(song.segments[:1], song.rolls[:1] if song.rolls else None, 0, 0)
    render(stack, first, stack.config.target_length, 1)


def run(args: argparse.Namespace, command: str) -> dict:
    """Check the inputs, evaluate every piece, write the outputs; returns everything that results.json holds."""
    if args.threads:
        torch.set_num_threads(args.threads)
    sweep = parse_steps(args.sweep)
    make_sampler(args.sampler, args.steps)  # a wrong sampler or step count fails before any work
    files = heldout_files(Path(args.dataset), args.pieces or None)
    check_dependencies()
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise LiveSynthError(f"cannot create the output folder {out}: {error.strerror or error}") from error
    stack, settings = load_stack(args)
    step_counts = [args.steps] + [s for s in sweep if s != args.steps]
    pieces, first = [], None
    for index, path in enumerate(tqdm(files, unit="piece", desc="evaluate", file=sys.stderr, disable=args.quiet)):
        piece = load_piece(path)
        if index == 0:
            warm_up(stack, piece)
        row, mel = evaluate_piece(stack, piece, step_counts)
        pieces.append(row)
        first = first or (piece, mel)
    settings.update(dataset=args.dataset, sweep=sweep)
    meta = {"command": command, "revision": revision(), "machine": machine(), "torch": torch.__version__,
            "date": datetime.datetime.now().isoformat(timespec="seconds")}
    result = {"meta": meta, "settings": settings, "overall": overall(pieces, step_counts), "pieces": pieces}
    write_outputs(out, result, first)
    return result


def write_outputs(out: Path, result: dict, first: tuple[Piece, np.ndarray]) -> None:
    piece, mel = first
    s = result["settings"]
    save_side_by_side(out / PNG_FILE, piece.mel, mel, f"{piece.name}: reference (FluidSynth) vs ours "
                      f"({s['model']}, {s['sampler']} × {s['steps']})")
    with atomic_output(out / REPORT_FILE) as handle:
        handle.write(markdown_report(result).encode())
    with atomic_output(out / JSON_FILE) as handle:
        handle.write(json.dumps(_json_safe(result), indent=2).encode())


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    try:
        result = run(args, "python tools/evaluate.py " + shlex.join(argv))
    except LiveSynthError as error:
        print(f"evaluate: error: {error}", file=sys.stderr)
        return 2
    ours = result["overall"]["renders"][args.steps]
    print(f"wrote {Path(args.out) / REPORT_FILE}: onset F1 ours {_fmt(ours['f1'])} vs FluidSynth "
          f"{_fmt(result['overall']['reference']['f1'])} (ratio {_fmt(ours['f1_ratio_reference'])}), "
          f"vocoder only {_fmt(result['overall']['vocoder_only']['f1'])}, RTF {_fmt(ours['rtf'], 4)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
