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
