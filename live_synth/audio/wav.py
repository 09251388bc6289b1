"""WAV files: atomic writes (never a half-written output) and mono reads.

Writes go through `live_synth.files.atomic_output`. Call these from the main or worker thread, never from the
audio callback (they allocate and do file I/O).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from live_synth.errors import LiveSynthError
from live_synth.files import atomic_output

# 16-bit PCM: every player and DAW reads it, and the models' output has far less than 96 dB of dynamic range.
# Pass subtype="FLOAT" to keep the float samples unchanged (then nothing is clipped).
DEFAULT_SUBTYPE = "PCM_16"


def write_wav_atomic(
    path: str | Path, audio: np.ndarray, sample_rate: int, subtype: str = DEFAULT_SUBTYPE
) -> None:
    """Write `audio` ([samples] mono or [samples, channels], float in [-1, 1]) as a WAV file, atomically.

    The default 16-bit PCM clips samples outside [-1, 1] (libsndfile would otherwise wrap them around).
    Either the whole file appears at `path` or nothing changes there.
    """
    samples = np.asarray(audio, dtype=np.float32)
    if samples.ndim not in (1, 2):
        raise ValueError(f"audio must be [samples] or [samples, channels], got shape {list(samples.shape)}")
    if subtype.upper().startswith("PCM"):
        samples = np.clip(samples, -1.0, 1.0)
    with atomic_output(path) as handle:
        sf.write(handle, samples, sample_rate, subtype=subtype, format="WAV")


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """Read an audio file as (mono float32 samples, sample rate); several channels are averaged.

    A missing or unreadable file raises `LiveSynthError` naming it.
    """
    try:
        samples, sample_rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (OSError, sf.SoundFileError) as error:
        raise LiveSynthError(f"cannot read audio file {path}: {str(error).strip().splitlines()[0]}") from error
    return samples.mean(axis=1, dtype=np.float32), int(sample_rate)


def to_model_rate(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """Mono audio at any rate -> 16 kHz (the models' rate), with soxr's HQ resampler; unchanged at 16 kHz."""
    from live_synth.constants import SAMPLE_RATE

    if sample_rate == SAMPLE_RATE:
        return np.asarray(samples, np.float32)
    import soxr

    return soxr.resample(np.asarray(samples, np.float32), sample_rate, SAMPLE_RATE, quality="HQ").astype(np.float32)


def resynthesize(audio16k: np.ndarray, vocoder, events=None) -> tuple[np.ndarray, np.ndarray]:
    """(the vocoder's rendering of `audio16k`'s log-mel, that log-mel): what a vocoder alone does to a sound. The
    evaluation's vocoder-only row and `live-synth vocode` both go through here. `events`: the notes the audio holds,
    where known (the evaluation knows them; `vocode` of any audio does not)."""
    import torch

    from live_synth.audio.features import log_mel

    with torch.inference_mode():
        mel = log_mel(torch.from_numpy(np.ascontiguousarray(audio16k, np.float32))).numpy()
    return vocoder(mel, events=events), mel
