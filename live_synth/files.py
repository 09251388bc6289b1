"""Atomic file output: a file appears whole at its path or not at all (never half-written).

Used for WAV and PNG outputs, model and vocoder weights. Call from the main or worker thread, never from the audio
callback (it does file I/O).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from live_synth.errors import CheckpointError, LiveSynthError


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


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    with atomic_output(path) as handle:
        handle.write(data)


def one_line(text: object) -> str:
    """A library's error text as one plain line (no newlines, no terminal colour codes)."""
    return " ".join(re.sub(r"\x1b\[[0-9;]*m", "", str(text)).split())


def read_safetensors(path: str | Path) -> tuple[dict, dict[str, str]]:
    """(tensors, metadata) of a safetensors file in one read; a missing or unreadable file is a CheckpointError."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: missing file")
    try:
        with safe_open(str(path), framework="pt") as handle:
            return {key: handle.get_tensor(key) for key in handle.keys()}, handle.metadata() or {}
    except Exception as exc:  # safetensors raises several types for truncated or foreign files
        raise CheckpointError(f"{path}: not a readable safetensors file ({one_line(exc)[:200]})") from None


def check_state(expected: dict, state: dict, where) -> None:
    """A weight file's tensors against a model's `state_dict()`: every key present, none unknown, every shape
    equal; else one `CheckpointError` line. `where(key)` names the file a tensor came from."""
    missing = sorted(set(expected) - set(state))
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise CheckpointError(f"{where(missing[0])}: missing tensor {missing[0]}{more}")
    for key, tensor in state.items():
        if key not in expected:
            raise CheckpointError(f"{where(key)}: unexpected tensor {key}")
        if tuple(tensor.shape) != tuple(expected[key].shape):
            raise CheckpointError(f"{where(key)}: tensor {key} has shape {tuple(tensor.shape)}, "
                                  f"the config needs {tuple(expected[key].shape)}")
