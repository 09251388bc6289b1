"""Evaluation metrics: spectral distances between renders and note-level accuracy judged by Basic Pitch.

- `log_mel_l1`: mean absolute difference of two natural-log mel spectrograms (our features, spec §1).
- `multi_resolution_stft_distance`: spectral convergence + log-magnitude L1 over three STFT resolutions.
- `transcribe`: audio -> notes with Spotify's Basic Pitch (ICASSP 2022 model) run by ONNX Runtime.
- `onset_f1`: note-onset precision / recall / F1 with mir_eval (onset within 50 ms, pitch within 50 cents).

Basic Pitch, mir_eval and librosa are optional (the `eval` extra); they are imported on first use, and a missing one
raises `MissingDependencyError` with the install line. basic-pitch itself must be installed with `--no-deps`: its
metadata demands tensorflow on Python >= 3.11, which it does not need to run its ONNX model.

Everything here runs on the main or a worker thread, never in the audio callback.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch

from live_synth.errors import MissingDependencyError

EVAL_INSTALL_HINT = (
    "pip install 'live-synth[eval]' && pip install --no-deps 'basic-pitch==0.4.0' "
    "(basic-pitch's metadata asks for tensorflow, which its ONNX model does not need)"
)

# (FFT size, hop) per resolution; the window is a periodic Hann as long as the FFT.
MR_STFT_RESOLUTIONS: tuple[tuple[int, int], ...] = ((512, 128), (1024, 256), (2048, 512))
MR_STFT_FLOOR = 1e-7  # magnitude floor before the log, so that digital silence gives a finite log
TRANSCRIBE_BATCH = 16  # Basic Pitch windows (2 s each) per ONNX call: bounds memory on long pieces
ONSET_TOLERANCE_S = 0.05  # mir_eval's default and the 50 ms
PITCH_TOLERANCE_CENTS = 50.0

NoteEvent = tuple[float, float, int]  # (onset seconds, offset seconds, MIDI pitch)


class OnsetScores(NamedTuple):
    """Note-onset precision, recall and F1 (each in [0, 1])."""

    precision: float
    recall: float
    f1: float


# --------------------------------------------------------------------------------------------------------------------
# Spectral distances


def log_mel_l1(a: np.ndarray, b: np.ndarray) -> float:
    """Mean |a - b| of two natural-log mel spectrograms [T, 128], over the first min(T_a, T_b) frames.

    Values are used as they are (no clipping). Two empty inputs give 0.
    """
    a = np.asarray(a, dtype=np.float32)
    b = np.asarray(b, dtype=np.float32)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"log-mels must be [frames, bins] with equal bins, got {list(a.shape)} and {list(b.shape)}")
    frames = min(a.shape[0], b.shape[0])
    if frames == 0:
        return 0.0
    return float(np.mean(np.abs(a[:frames] - b[:frames]), dtype=np.float64))


def _stft_magnitude(audio: torch.Tensor, n_fft: int, hop: int) -> torch.Tensor:
    window = torch.hann_window(n_fft, dtype=audio.dtype)
    spectrum = torch.stft(audio, n_fft, hop_length=hop, window=window, center=True, pad_mode="reflect",
                          return_complex=True)
    return spectrum.abs().clamp_min(MR_STFT_FLOOR)


def multi_resolution_stft_distance(audio_a: np.ndarray, audio_b: np.ndarray, sr: int = 16_000) -> float:
    """Multi-resolution STFT distance of `audio_a` (the estimate) from `audio_b` (the reference); 0 when equal.

    The usual definition (Yamamoto et al. 2020, Parallel WaveGAN; also Arik et al. 2018): for each (FFT size, hop)
    in 512/128, 1024/256, 2048/512 with a Hann window as long as the FFT (centred frames, reflect padding),
    with magnitudes A = |STFT(a)| and B = |STFT(b)| floored at 1e-7,

        spectral convergence  SC  = ||B - A||_F / ||B||_F
        log-magnitude L1      LM  = mean |ln B - ln A|

    and the distance is the mean over the three resolutions of SC + LM. Both signals are cut to the shorter length
    first. SC is relative to the reference, so the measure is not symmetric. `sr` is only checked: the resolutions
    are in samples and meant for 16 kHz audio.
    """
    if sr <= 0:
        raise ValueError(f"sample rate must be positive, got {sr}")
    a = np.asarray(audio_a, dtype=np.float32).reshape(-1)
    b = np.asarray(audio_b, dtype=np.float32).reshape(-1)
    length = min(a.size, b.size)
    if length == 0:
        return 0.0
    # float64: SC of nearly equal signals is a small difference of large sums.
    ta = torch.from_numpy(a[:length]).double()
    tb = torch.from_numpy(b[:length]).double()
    total = 0.0
    for n_fft, hop in MR_STFT_RESOLUTIONS:
        if length <= n_fft // 2:  # reflect padding needs more samples than half a window
            pad = n_fft // 2 + 1 - length
            ta, tb = torch.nn.functional.pad(ta, (0, pad)), torch.nn.functional.pad(tb, (0, pad))
        mag_a, mag_b = _stft_magnitude(ta, n_fft, hop), _stft_magnitude(tb, n_fft, hop)
        convergence = torch.linalg.norm(mag_b - mag_a) / torch.linalg.norm(mag_b).clamp_min(MR_STFT_FLOOR)
        log_l1 = torch.mean(torch.abs(torch.log(mag_b) - torch.log(mag_a)))
        total += float(convergence + log_l1)
    return total / len(MR_STFT_RESOLUTIONS)


# --------------------------------------------------------------------------------------------------------------------
# Transcription (Basic Pitch) and note F1 (mir_eval)


def _missing(package: str, error: ImportError) -> MissingDependencyError:
    return MissingDependencyError(f"evaluation needs {package} ({error}): {EVAL_INSTALL_HINT}")


@functools.lru_cache(maxsize=1)
def _basic_pitch() -> tuple[Any, Any, Any]:
    """(ONNX model, basic_pitch.inference, basic_pitch.note_creation), loaded once per process."""
    previous = logging.root.manager.disable
    # basic_pitch's __init__ logs a warning for each of tensorflow, coremltools and tflite that is absent.
    logging.disable(logging.WARNING)
    try:
        import basic_pitch
        import basic_pitch.inference as inference
        import basic_pitch.note_creation as note_creation
        import onnxruntime  # noqa: F401 - imported for the error message only; basic_pitch needs it for .onnx
    except ImportError as error:
        raise _missing(error.name or "basic-pitch", error) from error
    finally:
        logging.disable(previous)
    path = basic_pitch.build_icassp_2022_model_path(basic_pitch.FilenameSuffix.onnx)
    if not path.is_file():
        raise MissingDependencyError(f"basic-pitch is installed but its ONNX model {path} is missing: "
                                     f"{EVAL_INSTALL_HINT}")
    return inference.Model(path), inference, note_creation


def check_dependencies() -> None:
    """Load Basic Pitch's model and mir_eval now; raise `MissingDependencyError` (with the install line) if absent."""
    _basic_pitch()
    try:
        import mir_eval.transcription  # noqa: F401
    except ImportError as error:
        raise _missing("mir_eval", error) from error


def transcribe(
    audio: np.ndarray,
    sr: int,
    onset_threshold: float = 0.5,
    frame_threshold: float = 0.3,
    minimum_note_length_ms: float = 127.70,
) -> list[NoteEvent]:
    """Notes (onset s, offset s, MIDI pitch) that Basic Pitch hears in mono `audio` at `sr` Hz, sorted by onset.

    Same processing as `basic_pitch.inference.predict` with its default thresholds (the audio is resampled to
    22.05 kHz with soxr as `librosa.load` does, cut into overlapping 2 s windows, run through the ICASSP 2022 model
    on ONNX Runtime, and turned into notes with the "melodia trick"), but in memory and without pitch bends.
    Windows are run in batches of 16. Raises `MissingDependencyError` when basic-pitch or its dependencies are missing.
    """
    model, inference, note_creation = _basic_pitch()
    import librosa  # a dependency of basic-pitch, present when _basic_pitch() succeeded
    from basic_pitch.constants import AUDIO_N_SAMPLES, AUDIO_SAMPLE_RATE, FFT_HOP

    samples = np.asarray(audio, dtype=np.float32).reshape(-1)
    if samples.size == 0:
        return []
    if sr != AUDIO_SAMPLE_RATE:
        samples = librosa.resample(samples, orig_sr=sr, target_sr=AUDIO_SAMPLE_RATE, res_type="soxr_hq")
    overlap_frames = 30  # as run_inference
    overlap = overlap_frames * FFT_HOP
    padded = np.concatenate([np.zeros(overlap // 2, np.float32), samples.astype(np.float32)])
    windows = np.stack([w for w, _ in inference.window_audio_file(padded, AUDIO_N_SAMPLES - overlap)])
    outputs = [model.predict(windows[i : i + TRANSCRIBE_BATCH]) for i in range(0, len(windows), TRANSCRIBE_BATCH)]
    output = {key: np.concatenate([o[key] for o in outputs]) for key in outputs[0]}
    unwrapped = {k: inference.unwrap_output(v, samples.size, overlap_frames) for k, v in output.items()}
    min_frames = int(np.round(minimum_note_length_ms / 1000 * (AUDIO_SAMPLE_RATE / FFT_HOP)))
    with np.errstate(divide="ignore", invalid="ignore"):  # Basic Pitch divides by a zero maximum on silence
        _, events = note_creation.model_output_to_notes(
            unwrapped, onset_thresh=onset_threshold, frame_thresh=frame_threshold, min_note_len=min_frames,
            include_pitch_bends=False, melodia_trick=True,
        )
    return sorted((float(start), float(end), int(pitch)) for start, end, pitch, *_ in events)


def pitched_notes(notes: np.ndarray, is_drum: np.ndarray | bool | None = None) -> list[NoteEvent]:
    """(onset, offset, pitch) of the non-drum rows of a dataset note array [K, >=3] (start_s, end_s, pitch, ...).

    `is_drum` is one flag per row, one flag for the whole piece, or None (no drums).
    """
    rows = np.asarray(notes, dtype=np.float64)
    if rows.size == 0:
        return []
    if rows.ndim != 2 or rows.shape[1] < 3:
        raise ValueError(f"notes must be [K, >=3] (start_s, end_s, pitch, ...), got {list(rows.shape)}")
    drums = np.zeros(len(rows), bool) if is_drum is None else np.broadcast_to(np.asarray(is_drum, bool), len(rows))
    return [(float(r[0]), float(r[1]), int(round(r[2]))) for r, d in zip(rows, drums) if not d]


def _intervals_and_hz(notes: Iterable[Sequence[float]]) -> tuple[np.ndarray, np.ndarray]:
    rows = [(float(n[0]), float(n[1]), float(n[2])) for n in notes]
    if not rows:
        return np.zeros((0, 2)), np.zeros(0)
    array = np.asarray(rows)
    onsets = np.maximum(array[:, 0], 0.0)
    # mir_eval wants strictly positive durations; offsets do not count here (offset_ratio=None), so only make them
    # valid.
    offsets = np.maximum(array[:, 1], onsets + 1e-3)
    return np.stack([onsets, offsets], axis=1), 440.0 * 2.0 ** ((array[:, 2] - 69.0) / 12.0)


def onset_f1(
    reference_notes: Iterable[Sequence[float]],
    estimated_notes: Iterable[Sequence[float]],
    onset_tolerance: float = ONSET_TOLERANCE_S,
) -> OnsetScores:
    """Onset-only note precision / recall / F1 (mir_eval `precision_recall_f1_overlap`, `offset_ratio=None`).

    Notes are (onset s, offset s, MIDI pitch) triples. A reference note and an estimated note match (one to one)
    when their onsets differ by at most `onset_tolerance` seconds (mir_eval rounds distances to 0.1 ms) and their
    pitches by at most 50 cents. Offsets are ignored.

    Drum notes must not be in either list: Basic Pitch transcribes pitched notes only, so drum "pitches" (which name
    instruments, not frequencies) would count as misses. Use `pitched_notes` to drop them from a dataset's notes.
    Both lists empty scores 1 (nothing to find, nothing found); exactly one empty scores 0.
    """
    try:
        import mir_eval.transcription
    except ImportError as error:
        raise _missing("mir_eval", error) from error
    ref_intervals, ref_hz = _intervals_and_hz(reference_notes)
    est_intervals, est_hz = _intervals_and_hz(estimated_notes)
    if len(ref_hz) == 0 or len(est_hz) == 0:
        score = 1.0 if len(ref_hz) == len(est_hz) else 0.0
        return OnsetScores(score, score, score)
    precision, recall, f1, _ = mir_eval.transcription.precision_recall_f1_overlap(
        ref_intervals, ref_hz, est_intervals, est_hz, onset_tolerance=onset_tolerance,
        pitch_tolerance=PITCH_TOLERANCE_CENTS, offset_ratio=None,
    )
    return OnsetScores(float(precision), float(recall), float(f1))


def ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, NaN when the denominator is 0 (a ratio to an F1 of 0 means nothing)."""
    return numerator / denominator if denominator > 0 else math.nan
