"""WAV files: atomic writes (never a half-written output) and mono reads.

`atomic_output` is also used by `plots.py` for PNG files. Call these from the main or worker thread, never from the
audio callback (they allocate and do file I/O).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile as sf

from live_synth.errors import LiveSynthError

# 16-bit PCM: every player and DAW reads it, and the models' output has far less than 96 dB of dynamic range.
# Pass subtype="FLOAT" to keep the float samples unchanged (then nothing is clipped).
DEFAULT_SUBTYPE = "PCM_16"


@contextlib.contextmanager
def atomic_output(path: str | Path) -> Iterator[BinaryIO]:
    """Open a temporary file beside `path` for binary writing; on success fsync it and rename it onto `path`.

    If the body raises, the temporary file is removed and `path` is left as it was (absent or the old file).
    OS errors (missing folder, no permission, disk full) become `LiveSynthError` naming the path.
    """
    target = Path(path)
    # Same folder, so os.replace is an atomic rename on one file system; hidden, so nothing picks up a partial file.
    temporary = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    try:
        # os.open with 0o666 lets the umask decide the permissions, as for an ordinary new file (mkstemp gives 0600).
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    except OSError as error:
        raise LiveSynthError(f"cannot write {target}: {error.strerror}") from error
    try:
        with os.fdopen(descriptor, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    except BaseException as error:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        if isinstance(error, OSError):
            raise LiveSynthError(f"cannot write {target}: {error.strerror or error}") from error
        raise
    _fsync_folder(target.parent)


def _fsync_folder(folder: Path) -> None:
    # Makes the rename itself durable on POSIX; folders cannot be opened this way on Windows, which is fine to skip.
    with contextlib.suppress(OSError):
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


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
