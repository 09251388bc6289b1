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

from live_synth.provenance import machine, revision  # noqa: E402
from live_synth.audio import GriffinLimVocoder, load_vocoder, log_mel  # noqa: E402
from live_synth.audio.wav import resynthesize  # noqa: E402
from live_synth.files import atomic_output  # noqa: E402
from live_synth.cli import warn  # noqa: E402
from live_synth.constants import FRAME_RATE, HOP, LOG_MEL_MAX, LOG_MEL_MIN, N_MELS, SAMPLE_RATE  # noqa: E402
from live_synth.errors import LiveSynthError  # noqa: E402
from live_synth.midi import apply_sustain, read_midi  # noqa: E402
from live_synth.midi.events import NoteEvents  # noqa: E402
from live_synth.sampling.samplers import make_sampler  # noqa: E402
from live_synth.synth import SynthOptions, load_synth, song_frames  # noqa: E402
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
    """What renders a piece: the synth (model family, engine, sampler), the vocoder, and the seeds to render with."""
    synth: Any
    vocoder: Any
    seeds: list[int]


# --------------------------------------------------------------------------------------------------------------------
# Data


def heldout_files(dataset: Path, limit: int | None, sources: str = "all", split: str = "validation") -> list[Path]:
    """The pieces of a held-out split, `validation` (what choices are made on) or `test` (reported, never chosen
    on), of the given dataset sources (comma-separated name prefixes, or "all")."""
    folder = dataset / split
    if split not in ("validation", "test"):
        raise LiveSynthError(f"--split must be validation or test, got {split!r}")
    if not folder.is_dir():
        raise LiveSynthError(f"{dataset}: no {split} split (expected the folder {folder}; datasets made before the "
                             "three-way split have heldout/: remake it with tools/make_dataset.py)")
    files = sorted(folder.glob("*.npz"))
    if sources != "all":
        prefixes = tuple(f"{s.strip()}/" for s in sources.split(",") if s.strip())
        names = _manifest_names(dataset)
        files = [f for f in files if names.get(f"{split}/{f.name}", "").startswith(prefixes)]
    if not files:
        raise LiveSynthError(f"{folder}: holds no .npz pieces" + ("" if sources == "all" else f" of {sources}"))
    return files[:limit] if limit else files


def _manifest_names(dataset: Path) -> dict[str, str]:
    try:
        return json.loads((dataset / "manifest.json").read_text()).get("pieces", {})
    except (OSError, ValueError):
        raise LiveSynthError(f"{dataset}: no readable manifest.json to select pieces by source "
                             "(pass --sources all)") from None


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


def song_of(piece: Piece):
    """A piece's notes as `render` reads them (sustain applied) and its frame count."""
    notes = apply_sustain(read_midi(piece.midi, name=piece.name))
    return notes, song_frames(notes)


def render(stack: Stack, notes, frames: int, steps: int, seed: int) -> tuple[np.ndarray, np.ndarray, float]:
    """(our log-mel [frames, 128], our audio, compute seconds) for a song at `steps` sampling steps."""
    stack.synth.steps = steps
    start = time.perf_counter()
    mel = stack.synth.render(notes, seed=seed)[:frames]
    audio = stack.vocoder(mel, events=NoteEvents.from_sequence(notes))  # the excited vocoder is told the notes
    return mel, audio, time.perf_counter() - start


def rms_db(audio: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(np.square(audio, dtype=np.float64)) + 1e-12))


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
        "level_db": rms_db(audio) - rms_db(piece.audio),  # ours minus FluidSynth's, whole piece
        "compute_s": seconds,
        "audio_s": audio_seconds,
        "rtf": seconds / audio_seconds if audio_seconds > 0 else math.nan,
    }


def mean_over_seeds(runs: list[dict[str, float]]) -> dict[str, float]:
    """The seeds' mean of every score, the F1's standard deviation over seeds, and the summed compute."""
    out = {key: float(np.mean([r[key] for r in runs])) for key in runs[0]}
    out["f1_seed_sd"] = float(np.std([r["f1"] for r in runs]))
    out["compute_s"], out["audio_s"] = sum(r["compute_s"] for r in runs), sum(r["audio_s"] for r in runs)
    out["rtf"] = out["compute_s"] / out["audio_s"] if out["audio_s"] > 0 else math.nan
    return out


def evaluate_piece(stack: Stack, piece: Piece, step_counts: list[int]) -> tuple[dict, np.ndarray]:
    """All numbers for one piece, and our mel at the first step count in `step_counts` (for the picture)."""
    reference = onset_f1(piece.notes, transcribe(piece.audio, SAMPLE_RATE))
    start = time.perf_counter()
    notes, frames = song_of(piece)
    # The reference mel through our vocoder, told the notes as `render` tells it (`vocode` of unknown audio is the
    # mel-only case, which tools/evaluate_vocoder.py scores).
    vocoded, _ = resynthesize(piece.audio, stack.vocoder, NoteEvents.from_sequence(notes))
    vocoder_seconds = time.perf_counter() - start
    vocoded_mel = log_mel(torch.from_numpy(vocoded)).numpy()
    renders, first_mel = {}, None
    for steps in step_counts:
        runs = []
        for seed in stack.seeds:
            mel, audio, seconds = render(stack, notes, frames, steps, seed)
            runs.append(score_audio(piece, mel, audio, seconds))
            first_mel = mel if first_mel is None else first_mel
        renders[steps] = mean_over_seeds(runs)
    row = {
        "name": piece.name,
        "seconds": len(piece.audio) / SAMPLE_RATE,
        "notes": len(piece.notes),
        "reference": reference._asdict(),
        "vocoder_only": score_audio(piece, vocoded_mel, vocoded, vocoder_seconds),
        "renders": renders,
    }
    drums = drum_check(stack, piece, step_counts[0])
    if drums is not None:
        row["drums"] = drums
    return row, first_mel


LONE_VELOCITIES = (20, 45, 70, 95, 120)


def lone_notes_midi(pitch: int = 60, program: int = 0) -> bytes:
    """One note at each of LONE_VELOCITIES, alone: held 1 s, 1.5 s apart (the issue's dynamics check)."""
    import mido

    midi = mido.MidiFile(ticks_per_beat=480)  # 120 bpm: 960 ticks per second
    track = mido.MidiTrack([mido.Message("program_change", program=program, time=0)])
    for i, velocity in enumerate(LONE_VELOCITIES):
        track.append(mido.Message("note_on", note=pitch, velocity=velocity, time=480 if i == 0 else 480))
        track.append(mido.Message("note_off", note=pitch, velocity=0, time=960))
    track.append(mido.MetaMessage("end_of_track", time=960))
    midi.tracks.append(track)
    buffer = io.BytesIO()
    midi.save(file=buffer)
    return buffer.getvalue()


def note_levels(audio: np.ndarray) -> tuple[list[float], list[float]]:
    """Per lone note (onsets 0.5 + 1.5 k s, held 1 s): the peak level (dBFS of 20 ms RMS) and the level over the
    hold's last 200 ms relative to that peak (how much of the note is still sounding when its key goes up)."""
    block = SAMPLE_RATE // 50
    power = np.square(audio[: len(audio) // block * block].reshape(-1, block), dtype=np.float64).mean(axis=1)
    db = 10 * np.log10(power + 1e-12)
    peaks, held = [], []
    for i in range(len(LONE_VELOCITIES)):
        on = int((0.5 + 1.5 * i) * 50)
        span = db[on : on + 50]
        peaks.append(float(span.max()))
        held.append(float(db[on + 40 : on + 50].mean() - span.max()))
    return peaks, held


def dynamics_check(stack: Stack, steps: int) -> dict:
    """Lone piano notes at velocities 20..120: levels of ours (each seed) next to FluidSynth's, each relative to
    its own loudest note (the training renders use a higher master gain than FluidSynth's default)."""
    from live_synth.training.synth import make_renderer

    midi = lone_notes_midi()
    notes = apply_sustain(read_midi(midi, name="lone notes"))
    reference_peaks, reference_held = note_levels(make_renderer("fluidsynth").render(midi))
    runs = []
    for seed in stack.seeds:
        _, audio, _ = render(stack, notes, song_frames(notes) + 25, steps, seed)
        runs.append(note_levels(audio))
    relative = lambda peaks: [p - max(peaks) for p in peaks]  # noqa: E731
    ours_rel = [relative(p) for p, _ in runs]
    ref_rel = relative(reference_peaks)
    deviation = max(abs(a - b) for run in ours_rel for a, b in zip(run, ref_rel))
    return {"velocities": list(LONE_VELOCITIES), "fluidsynth_db": reference_peaks, "fluidsynth_relative": ref_rel,
            "fluidsynth_held": reference_held, "ours_db": [p for p, _ in runs], "ours_relative": ours_rel,
            "ours_held": [h for _, h in runs], "max_deviation_db": deviation,
            "monotone": all(all(b > a for a, b in zip(run, run[1:])) for run in ours_rel),
            "seed_spread_db": max(max(col) - min(col) for col in zip(*[p for p, _ in runs]))}


def drum_midi(midi: bytes) -> bytes | None:
    """The piece's drum part alone (channel 10 and the tempo map), or None when it has no drum notes."""
    import mido

    source = mido.MidiFile(file=io.BytesIO(midi))
    out = mido.MidiFile(type=1, ticks_per_beat=source.ticks_per_beat)
    found = False
    for track in source.tracks:
        kept, carry = mido.MidiTrack(), 0
        for message in track:
            carry += message.time
            if message.is_meta or getattr(message, "channel", None) == 9:
                kept.append(message.copy(time=carry))
                carry = 0
                found |= message.type == "note_on" and message.velocity > 0 and not message.is_meta
        out.tracks.append(kept)
    if not found:
        return None
    buffer = io.BytesIO()
    out.save(file=buffer)
    return buffer.getvalue()


def drum_onsets(audio: np.ndarray) -> np.ndarray:
    """Onset times (s) found by spectral flux (librosa's onset detector) in 16 kHz audio."""
    import librosa

    return librosa.onset.onset_detect(y=audio.astype(np.float32), sr=SAMPLE_RATE, units="time", hop_length=160,
                                      backtrack=False)


def fluidsynth_available() -> bool:
    from live_synth.training.synth import available_renderers

    return "fluidsynth" in available_renderers()


def drum_check(stack: Stack, piece: Piece, steps: int) -> dict | None:
    """Drum-only passage of the piece (its drum part alone), ours and FluidSynth's: onset F1 of an onset detector
    against the drum notes (50 ms), and the level difference (dB RMS, ours minus FluidSynth's)."""
    import mir_eval

    from live_synth.training.synth import make_renderer

    midi = drum_midi(piece.midi)
    if midi is None or not fluidsynth_available():
        return None
    notes = apply_sustain(read_midi(midi, name=piece.name + " (drums)"))
    truth = np.unique(np.round([n.start for n in notes.notes], 3))
    reference = make_renderer("fluidsynth").render(midi)
    mel, audio, _ = render(stack, notes, song_frames(notes), steps, stack.seeds[0])
    out = {}
    for name, signal in (("reference", reference), ("ours", audio)):
        f1 = mir_eval.onset.f_measure(truth, drum_onsets(signal), window=0.05)[0]
        out[f"{name}_f1"] = float(f1)
    out["level_db"] = rms_db(audio[: len(reference)]) - rms_db(reference[: len(audio)])
    return out


def summarize(rows: list[dict[str, float]]) -> dict[str, float]:
    """Means of the per-piece scores; the RTF as total compute over total audio."""
    keys = (*SCORE_KEYS, "level_db", "f1_seed_sd")
    summary = {key: float(np.mean([r[key] for r in rows])) for key in keys if all(key in r for r in rows)}
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
    drums = [p["drums"] for p in pieces if "drums" in p]
    if drums:
        total["drums"] = {key: float(np.mean([d[key] for d in drums])) for key in drums[0]}
        total["drums"]["pieces"] = len(drums)
    for system in [*pieces, total]:
        add_f1_ratios(system)
    total["piece_ratios"] = piece_ratios(pieces, step_counts)
    return total


LOW_REFERENCE_F1 = 0.2  # below it FluidSynth's own F1 is noise, and a ratio to it says nothing (issue 20)


def piece_ratios(pieces: list[dict], step_counts: list[int]) -> dict:
    """Per system, the median and mean over pieces of its F1 ÷ FluidSynth's F1: over every piece FluidSynth scores
    above 0, and over those where it scores at least LOW_REFERENCE_F1 (a mean of ratios is driven by a few pieces
    whose reference F1 is near 0: 21x on one validation piece)."""
    out = {}
    systems = {"vocoder_only": lambda p: p["vocoder_only"]}
    systems.update({f"render_{steps}": (lambda p, steps=steps: p["renders"][steps]) for steps in step_counts})
    for name, get in systems.items():
        row = {}
        for label, floor in (("all", 0.0), ("reference_f1_at_least_0.2", LOW_REFERENCE_F1)):
            ratios = [get(p)["f1"] / p["reference"]["f1"] for p in pieces
                      if p["reference"]["f1"] > 0 and p["reference"]["f1"] >= floor]
            row[label] = {"pieces": len(ratios), "median": float(np.median(ratios)) if ratios else math.nan,
                          "mean": float(np.mean(ratios)) if ratios else math.nan}
        out[name] = row
    return out


# --------------------------------------------------------------------------------------------------------------------
# Report


def _fmt(value: float | None, digits: int = 3) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _steps(count: int) -> str:
    return f"{count} step" + ("s" if count != 1 else "")


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in rows)]


def _system_cells(s: dict) -> list[str]:
    return [_fmt(s["log_mel_l1"]), _fmt(s["mr_stft"]), _fmt(s["f1"]) + (f" ± {_fmt(s['f1_seed_sd'])}"
            if "f1_seed_sd" in s else ""), _fmt(s["f1_ratio_reference"]), _fmt(s["f1_ratio_same_vocoder"]),
            _fmt(s.get("level_db"), 1), _fmt(s["rtf"], 4)]


SYSTEM_HEADER = ["log-mel L1 ↓", "MR-STFT ↓", "onset F1 ↑ (± sd over seeds)", "F1 ÷ FluidSynth F1",
                 "F1 ÷ same-vocoder ref. F1", "level − FluidSynth (dB)", "RTF ↓"]


def vocoder_only_label(result: dict) -> str:
    label = f"reference mel → {result['settings']['vocoder']} (vocoder only)"
    if result["settings"]["griffin_lim"]:
        label += ": the reference through the same vocoder"
    return label


def overall_section(result: dict) -> list[str]:
    settings, total = result["settings"], result["overall"]
    ours = total["renders"][settings["steps"]]
    rows = [
        ["FluidSynth reference audio", "–", "–", _fmt(total["reference"]["f1"]), "1.000", "–", "0.0", "–"],
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
    drums = total.get("drums")
    if drums:
        lines.append(f"- drums ({drums['pieces']} pieces with a drum part, rendered alone; onset detector vs the drum "
                     f"notes, 50 ms): F1 ours {_fmt(drums['ours_f1'])}, FluidSynth {_fmt(drums['reference_f1'])}; "
                     f"level ours − FluidSynth {_fmt(drums['level_db'], 1)} dB")
    return lines + [""]


def piece_ratios_section(result: dict) -> list[str]:
    table = result["overall"].get("piece_ratios")
    if not table:
        return []
    header = ["system", "pieces (FluidSynth F1 > 0)", "median", "mean",
              f"pieces (FluidSynth F1 ≥ {LOW_REFERENCE_F1})", "median", "mean"]
    rows = []
    for name, row in table.items():
        a, b = row["all"], row["reference_f1_at_least_0.2"]
        label = "vocoder only" if name == "vocoder_only" else f"ours, {_steps(int(name.split('_')[1]))}"
        rows.append([label, str(a["pieces"]), _fmt(a["median"]), _fmt(a["mean"]), str(b["pieces"]),
                     _fmt(b["median"]), _fmt(b["mean"])])
    return ["## Per-piece F1 ÷ FluidSynth's F1", "", *_table(header, rows), ""]


def sweep_section(result: dict) -> list[str]:
    renders = result["overall"]["renders"]
    rows = [[str(steps), *_system_cells(renders[steps])] for steps in result["settings"]["sweep"]]
    return [f"## Sampling steps ({result['settings']['sampler']}, overall)", "",
            *_table(["steps", *SYSTEM_HEADER], rows), ""]


def dynamics_section(result: dict) -> list[str]:
    if not result["dynamics"]:
        return ["## Dynamics", "", "Not measured: FluidSynth (the reference) is not installed here.", ""]
    lines = ["## Dynamics: one piano note (C4, held 1 s) alone at each velocity", "",
             "Peak level (dBFS of 20 ms RMS) relative to the loudest note; held: the level over the last 200 ms of "
             "the hold relative to the note's peak.", ""]
    rows = []
    for steps, d in result["dynamics"].items():
        if not rows:
            rows.append(["FluidSynth", *[f"{v:+.1f} (held {h:+.1f})" for v, h in zip(d["fluidsynth_relative"],
                                                                                    d["fluidsynth_held"])], "–", "–"])
        for seed, (rel, held) in zip(result["settings"]["seeds"], zip(d["ours_relative"], d["ours_held"])):
            rows.append([f"ours, {_steps(int(steps))}, seed {seed}", *[f"{v:+.1f} (held {h:+.1f})"
                                                                      for v, h in zip(rel, held)],
                         f"{d['max_deviation_db']:.1f}", "yes" if d["monotone"] else "no"])
    velocities = next(iter(result["dynamics"].values()))["velocities"]
    header = ["", *[f"v{v}" for v in velocities], "max |ours − FluidSynth| (dB)", "rises with velocity"]
    lines += _table(header, rows)
    for steps, d in result["dynamics"].items():
        lines.append(f"- {_steps(int(steps))}: loudest note {max(max(p) for p in d['ours_db']):.1f} dBFS (FluidSynth "
                     f"{max(d['fluidsynth_db']):.1f}); the same note's spread over seeds up to "
                     f"{d['seed_spread_db']:.1f} dB")
    return lines + [""]


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
        f"- model: {s['model_source']}{' (RANDOM WEIGHTS)' if s['random_weights'] else ''} ({s['family']} family, "
        f"engine {s['engine']}); vocoder {s['vocoder']}; sampler {s['sampler']}, {_steps(s['steps'])}, guidance "
        f"{s['guidance']}, seeds {s['seeds']}; held-out sources {s['sources']}",
        f"- pieces: {len(result['pieces'])} held-out, {_fmt(sum(p['seconds'] for p in result['pieces']), 1)} s of "
        f"audio, {sum(p['notes'] for p in result['pieces'])} pitched reference notes (drum notes are left out: "
        "Basic Pitch transcribes pitched notes only)",
        "- log-mel L1: mean |ours − reference| of natural-log mels (ours: the model's mel; vocoder only: the mel of "
        "the vocoded audio). MR-STFT: spectral convergence + log-magnitude L1 over FFT 512/1024/2048. Onset F1: "
        "Basic Pitch (ONNX) vs the MIDI, mir_eval, onsets within 50 ms, pitch within 50 cents. RTF: compute s per "
        "audio s (model + vocoder).",
        "",
    ]
    lines += overall_section(result) + piece_ratios_section(result) + sweep_section(result)
    lines += dynamics_section(result) + pieces_section(result)
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


def parse_steps(text: str, option: str = "--sweep", minimum: int = 1) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise LiveSynthError(f"{option} must be integers separated by commas, got {text!r}") from None
    if any(c < minimum for c in counts):
        raise LiveSynthError(f"{option} values must be >= {minimum}, got {text!r}")
    return list(dict.fromkeys(counts))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True, help="dataset folder with validation/ and test/ splits of .npz pieces")
    parser.add_argument("--model", required=True, help="model folder/file, 'default', or a preset (random weights)")
    parser.add_argument("--vocoder", help="griffin-lim or a vocoder file (default: the model's own, else Griffin-Lim)")
    parser.add_argument("--griffin-lim-iters", type=int, default=64, help="Griffin-Lim iterations when it is used")
    parser.add_argument("--sampler", default="dpmpp")
    parser.add_argument("--steps", type=int, default=8, help="the default step count (main rows)")
    parser.add_argument("--sweep", default="1,2,4,8,16", help="step counts for the sweep table ('' for none)")
    parser.add_argument("--guidance", type=float, default=1.0)
    parser.add_argument("--seeds", default="0", help="seeds to render each piece with, e.g. 0,1,2 (scores are "
                        "their means; the F1's spread over seeds is reported)")
    parser.add_argument("--pieces", type=int, default=0, help="evaluate only the first N held-out pieces")
    parser.add_argument("--split", default="validation", choices=("validation", "test"),
                        help="validation: to choose steps, checkpoints, vocoders on; test: to report (never choose)")
    parser.add_argument("--sources", default="all",
                        help="held-out pieces whose names start with these dataset sources, e.g. procedural,music21 "
                        "(the split the earlier default models were evaluated on); default: all")
    parser.add_argument("--engine", default="torch", help="torch | onnx | auto")
    parser.add_argument("--chunks", type=int, default=0, help="causal family: chunks rendered side by side (0: "
                        "render's default; 1: one sequential pass)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--out", default="reports/eval", help="folder for REPORT.md, the PNG and the JSON")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    return parser


def load_stack(args: argparse.Namespace) -> tuple[Stack, dict]:
    """The rendering stack and the settings that describe it in the report."""
    seeds = parse_steps(args.seeds, "--seeds", minimum=0)
    synth = load_synth(args.model, SynthOptions(engine=args.engine, device=args.device, dtype=args.dtype,
                                                sampler=args.sampler, guidance=args.guidance, seed=seeds[0],
                                                chunks=args.chunks))
    for line in synth.warnings:
        warn(line + (": the numbers describe noise, not a model" if "RANDOM" in line else ""))
    vocoder_spec = args.vocoder or synth.vocoder_path
    griffin_lim = vocoder_spec is None or str(vocoder_spec).strip().lower() == "griffin-lim"
    vocoder = GriffinLimVocoder(n_iter=args.griffin_lim_iters, seed=seeds[0]) if griffin_lim \
        else load_vocoder(vocoder_spec)
    stack = Stack(synth, vocoder, seeds)
    sampler = synth.sampler_name
    settings = {"model": args.model, "model_source": synth.source, "random_weights": synth.loaded.random_weights,
                "family": synth.family, "engine": synth.engine.name, "vocoder": vocoder.name,
                "griffin_lim": griffin_lim, "sampler": sampler, "steps": args.steps, "guidance": args.guidance,
                "seed": seeds[0], "seeds": seeds, "device": args.device, "dtype": args.dtype,
                "sources": args.sources, "split": args.split}
    return stack, settings


def warm_up(stack: Stack, piece: Piece) -> None:
    """One short render so that lazy initialisation is not timed as the first piece's RTF."""
    notes, _ = song_of(piece)
    render(stack, notes, 64, 1, stack.seeds[0])


def run(args: argparse.Namespace, command: str) -> dict:
    """Check the inputs, evaluate every piece, write the outputs; returns everything that results.json holds."""
    if args.threads:
        torch.set_num_threads(args.threads)
    sweep = parse_steps(args.sweep)
    make_sampler(args.sampler, args.steps)  # a wrong sampler or step count fails before any work
    files = heldout_files(Path(args.dataset), args.pieces or None, args.sources, args.split)
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
    result = {"meta": meta, "settings": settings, "overall": overall(pieces, step_counts), "pieces": pieces,
              "dynamics": ({steps: dynamics_check(stack, steps) for steps in step_counts} if fluidsynth_available()
                           else {})}
    write_outputs(out, result, first)
    return result


def write_outputs(out: Path, result: dict, first: tuple[Piece, np.ndarray]) -> None:
    piece, mel = first
    s = result["settings"]
    save_side_by_side(out / PNG_FILE, piece.mel, mel, f"{piece.name}: reference (FluidSynth) vs ours "
                      f"({s['model']}, {s['sampler']} × {s['steps']})")
    write_report_files(out, result)


def write_report_files(out: Path, result: dict) -> None:
    """REPORT.md and results.json (atomically)."""
    with atomic_output(out / REPORT_FILE) as handle:
        handle.write(markdown_report(result).encode())
    with atomic_output(out / JSON_FILE) as handle:
        handle.write(json.dumps(_json_safe(result), indent=2).encode())


def rewrite(out: Path) -> dict:
    """Recompute what is derived from the measured per-piece rows (the per-piece ratios) of `out/results.json` and
    write REPORT.md and results.json again; the spectrogram PNG is left as it is. For reports made before a derived
    table existed: no piece is rendered again."""
    result = json.loads((out / JSON_FILE).read_text())
    steps = [int(k) for k in result["overall"]["renders"]]
    for p in result["pieces"]:
        p["renders"] = {int(k): v for k, v in p["renders"].items()}
    result["overall"]["renders"] = {int(k): v for k, v in result["overall"]["renders"].items()}
    result["overall"]["piece_ratios"] = piece_ratios(result["pieces"], steps)
    result["meta"]["rewritten"] = {"revision": revision(), "date": datetime.datetime.now().isoformat(timespec="seconds")}
    write_report_files(out, result)
    return result


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["--rewrite"]:  # python tools/evaluate.py --rewrite OUT: derived tables from a stored results.json
        for folder in argv[1:]:
            try:
                rewrite(Path(folder))
            except (OSError, ValueError, KeyError) as error:
                print(f"evaluate: error: {folder}: not a results folder of this tool ({error})", file=sys.stderr)
                return 2
            print(f"rewrote {Path(folder) / REPORT_FILE}")
        return 0
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
