"""What a corpus run reads: a folder, a list file or a glob of MIDI files, each with the name its outputs take.

A source's `name` is its path relative to the inputs' common folder, without the suffix (`rock/song`); its outputs
are `OUT/rock/song.wav` (or .flac), `OUT/rock/song.json` (the sidecar) and `OUT/rock/song.mel.npy`. Two sources that
would share a name (`a.mid` and `a.midi` in one folder) keep their suffix in it instead (`a.mid`, `a.midi`).
"""

from __future__ import annotations

import glob
import hashlib
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from live_synth.errors import LiveSynthError

MIDI_SUFFIXES = (".mid", ".midi", ".kar", ".smf")


@dataclass(frozen=True)
class Source:
    path: Path  # absolute
    name: str  # relative output stem, '/'-separated


def find_sources(spec: str) -> list[Source]:
    """The MIDI files `spec` names, sorted: a folder (searched recursively), a MIDI file, a text file listing one
    path per line (relative to the list's folder; blank lines and '#' comments skipped), or a glob (`**` recurses).
    A list may name missing files: each becomes a failure of its own, not an error of the run."""
    path = Path(spec)
    if path.is_dir():
        files = [f for f in path.rglob("*") if f.is_file() and f.suffix.lower() in MIDI_SUFFIXES]
    elif path.is_file() and path.suffix.lower() in MIDI_SUFFIXES:
        files = [path]
    elif path.is_file():
        files = _list_file(path)
    elif glob.has_magic(spec):
        files = [Path(f) for f in glob.glob(spec, recursive=True) if Path(f).is_file()]
    else:
        raise LiveSynthError(f"{spec}: no such folder, MIDI file, list file or glob")
    unique = sorted({Path(os.path.abspath(f)) for f in files})
    if not unique:
        raise LiveSynthError(f"{spec}: holds no MIDI files ({', '.join(MIDI_SUFFIXES)})")
    return _named(unique)


def _list_file(path: Path) -> list[Path]:
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise LiveSynthError(f"{path}: not a readable list of MIDI files ({error})") from None
    entries = [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
    return [p if p.is_absolute() else path.parent / p for p in map(Path, entries)]


def _named(files: list[Path]) -> list[Source]:
    root = Path(os.path.commonpath([f.parent for f in files]))
    stems = [f.relative_to(root).with_suffix("").as_posix() for f in files]
    clashes = {stem for stem, count in Counter(stems).items() if count > 1}
    return [Source(f, f.relative_to(root).as_posix() if stem in clashes else stem) for f, stem in zip(files, stems)]


def file_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def files_fingerprint(path: str | os.PathLike, prefix: str = "") -> str:
    """A short hash of a file, or of a folder's files whose names start with `prefix` (names and bytes)."""
    path = Path(path)
    files = [path] if path.is_file() else sorted(f for f in path.rglob(f"{prefix}*") if f.is_file())
    digest = hashlib.blake2b(digest_size=12)
    for f in files:
        digest.update(f.relative_to(path).as_posix().encode() if f != path else b"")
        with open(f, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()
