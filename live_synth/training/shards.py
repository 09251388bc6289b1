"""The training dataset on disk: written by tools/make_dataset.py, read by the trainer and the evaluation.

Layout (the contract; change it only together with its readers):

    DATASET/manifest.json        what made the dataset and what is in it (see tools/make_dataset.py)
    DATASET/train/NNNNN.npz      pieces training may read
    DATASET/validation/NNNNN.npz pieces training never reads; probes, early stopping and every choice (steps,
                                 checkpoints, vocoders) are made on them
    DATASET/test/NNNNN.npz       pieces nothing chooses on: only reported

A piece's split is a seeded hash of its source *work* (`split_of`), not of the piece: pieces of one work (the
movements of a cantata, the harmonisations of one chorale tune) land on one side together.

Each piece file is an .npz archive (a zip of .npy arrays; `np.load(path, allow_pickle=False)` reads it) holding:

    name     str                        unique in the dataset, e.g. "procedural/00012", "music21/bach/bwv66.6"
    source   str                        "procedural" | "music21" | "sparse" | "expression" | "levels"
    midi     uint8 [B]                  the .mid file's bytes (evaluation can re-render or re-tokenize it)
    notes    float32 [K, 5]             start_s, end_s, pitch, velocity, program; after `apply_sustain`, in
                                        `read_midi` order (instrument by instrument)
    is_drum  bool [K]
    mel      float16 [T, 128]           natural-log mel (`live_synth.audio.log_mel`) of `audio`, T = ceil(N / 320)
    audio    int16 [N]                  16 kHz mono, full scale 32767 (optional: absent in features-only copies)

Files are written atomically (temporary file, then rename) and deterministically (fixed zip timestamps and member
order), so the same inputs give byte-identical files.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from live_synth.files import atomic_output
from live_synth.constants import HOP, N_MELS, SAMPLE_RATE
from live_synth.errors import LiveSynthError
from live_synth.midi import Note, NoteSequence

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SPLITS = ("train", "validation", "test")
HELDOUT_SPLITS = ("validation", "test")
SOURCES = ("procedural", "music21", "sparse", "expression", "levels")
NOTE_COLUMNS = ("start_s", "end_s", "pitch", "velocity", "program")
AUDIO_SCALE = 32767.0  # int16 full scale: float audio = audio / AUDIO_SCALE
_KEYS = ("name", "source", "midi", "notes", "is_drum", "mel", "audio")
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed member timestamps: byte-identical files from identical contents


@dataclass(frozen=True, eq=False)
class Piece:
    """One piece of the dataset (see the module docstring for the meaning and shape of each field)."""

    name: str
    source: str
    midi: bytes
    notes: np.ndarray
    is_drum: np.ndarray
    mel: np.ndarray
    audio: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, got {self.source!r}")
        if self.notes.dtype != np.float32 or self.notes.ndim != 2 or self.notes.shape[1] != len(NOTE_COLUMNS):
            raise ValueError(f"notes must be float32 [K, 5], got {self.notes.dtype} {list(self.notes.shape)}")
        if self.is_drum.dtype != np.bool_ or self.is_drum.shape != (len(self.notes),):
            got = f"{self.is_drum.dtype} {list(self.is_drum.shape)}"
            raise ValueError(f"is_drum must be bool [{len(self.notes)}], got {got}")
        if self.mel.dtype != np.float16 or self.mel.ndim != 2 or self.mel.shape[1] != N_MELS:
            raise ValueError(f"mel must be float16 [T, {N_MELS}], got {self.mel.dtype} {list(self.mel.shape)}")
        if self.audio is not None:
            if self.audio.dtype != np.int16 or self.audio.ndim != 1:
                raise ValueError(f"audio must be int16 [N], got {self.audio.dtype} {list(self.audio.shape)}")
            if len(self.mel) != -(-len(self.audio) // HOP):
                raise ValueError(f"mel has {len(self.mel)} frames for {len(self.audio)} samples (want ceil(N/{HOP}))")

    @property
    def seconds(self) -> float:
        """Duration of the rendered audio (from the mel frame count when the audio is not stored)."""
        samples = len(self.audio) if self.audio is not None else len(self.mel) * HOP
        return samples / SAMPLE_RATE

    def float_audio(self) -> np.ndarray | None:
        """The audio as float32 in [-1, 1] (what the mel was computed from), or None in a features-only copy."""
        return None if self.audio is None else self.audio.astype(np.float32) / np.float32(AUDIO_SCALE)

    def note_sequence(self) -> NoteSequence:
        """The notes as a NoteSequence (sustain already applied, so no control changes).

        Instrument indices are rebuilt from (program, is_drum) in order of first appearance.
        """
        instruments: dict[tuple[int, bool], int] = {}
        notes = []
        for (start, end, pitch, velocity, program), drum in zip(self.notes.tolist(), self.is_drum.tolist()):
            key = (int(program), bool(drum))
            index = instruments.setdefault(key, len(instruments))
            notes.append(Note(int(pitch), int(velocity), start, end, key[0], key[1], index))
        return NoteSequence.from_notes(notes)


def note_arrays(ns: NoteSequence) -> tuple[np.ndarray, np.ndarray]:
    """NoteSequence -> (notes float32 [K, 5], is_drum bool [K]) in the dataset's columns and order."""
    notes = np.array([(n.start, n.end, n.pitch, n.velocity, n.program) for n in ns.notes], np.float32)
    return notes.reshape(-1, len(NOTE_COLUMNS)), np.array([n.is_drum for n in ns.notes], np.bool_)


def write_piece(path: str | os.PathLike, piece: Piece) -> None:
    """Write one piece file atomically and deterministically (an .npz readable with allow_pickle=False)."""
    arrays = {
        "name": np.array(piece.name),
        "source": np.array(piece.source),
        "midi": np.frombuffer(piece.midi, np.uint8),
        "notes": piece.notes,
        "is_drum": piece.is_drum,
        "mel": piece.mel,
    }
    if piece.audio is not None:
        arrays["audio"] = piece.audio
    with atomic_output(path) as handle, zipfile.ZipFile(handle, "w", zipfile.ZIP_DEFLATED) as archive:
        for key, value in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.asarray(value, order="C"), allow_pickle=False)  # keeps 0-d 0-d
            member = zipfile.ZipInfo(f"{key}.npy", date_time=_ZIP_TIME)
            member.compress_type = zipfile.ZIP_DEFLATED
            member.external_attr = 0o644 << 16
            archive.writestr(member, buffer.getvalue())


def read_piece(path: str | os.PathLike) -> Piece:
    """Read one piece file. A missing, truncated or foreign file raises LiveSynthError naming it."""
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in _KEYS[:-1] if k not in data.files]
            if missing:
                raise LiveSynthError(f"{path}: not a dataset piece (missing {', '.join(missing)})")
            fields = {k: data[k] for k in _KEYS if k in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
        raise LiveSynthError(f"{path}: not a readable dataset piece ({error})") from error
    try:
        return Piece(
            name=str(fields["name"].reshape(()).item()),
            source=str(fields["source"].reshape(()).item()),
            midi=fields["midi"].tobytes(),
            notes=fields["notes"],
            is_drum=fields["is_drum"],
            mel=fields["mel"],
            audio=fields.get("audio"),
        )
    except ValueError as error:
        raise LiveSynthError(f"{path}: malformed dataset piece ({error})") from error


def piece_path(dataset_dir: str | os.PathLike, split: str, index: int) -> Path:
    """DATASET/<split>/NNNNN.npz"""
    return Path(dataset_dir) / split / f"{index:05d}.npz"


def piece_paths(dataset_dir: str | os.PathLike, split: str = "train") -> list[Path]:
    """The piece files of one split, in order."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return sorted((Path(dataset_dir) / split).glob("[0-9]*.npz"))


def iter_pieces(dataset_dir: str | os.PathLike, split: str = "train") -> Iterator[Piece]:
    """The pieces of one split, in file order (one file read at a time)."""
    folder = Path(dataset_dir) / split
    if not folder.is_dir():
        raise LiveSynthError(f"{dataset_dir}: not a dataset folder (no {split}/ in it)")
    for path in piece_paths(dataset_dir, split):
        yield read_piece(path)


def load_manifest(dataset_dir: str | os.PathLike) -> dict:
    """DATASET/manifest.json as a dict; one-line LiveSynthError if it is missing or not JSON."""
    path = Path(dataset_dir) / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise LiveSynthError(f"{dataset_dir}: not a dataset folder (no {MANIFEST})") from error
    except (OSError, ValueError) as error:
        raise LiveSynthError(f"{path}: unreadable manifest ({error})") from error
    if not isinstance(manifest, dict) or manifest.get("format_version") != FORMAT_VERSION:
        raise LiveSynthError(f"{path}: not a version-{FORMAT_VERSION} dataset manifest")
    return manifest


def write_manifest(dataset_dir: str | os.PathLike, manifest: dict) -> None:
    """Write DATASET/manifest.json atomically (format_version is added)."""
    text = json.dumps({"format_version": FORMAT_VERSION, **manifest}, indent=2, ensure_ascii=False) + "\n"
    with atomic_output(Path(dataset_dir) / MANIFEST) as handle:
        handle.write(text.encode("utf-8"))


def split_of(work: str, seed: int, heldout_fraction: float) -> str:
    """The split of every piece of a source work: a seeded hash of the work's key (`work_key`), so that adding pieces
    to a dataset never moves the others. A `heldout_fraction` of works is held out, half of it for validation and
    half for test."""
    digest = hashlib.blake2b(f"{seed}:{work}".encode(), digest_size=8).digest()
    u = int.from_bytes(digest, "big") / 2.0**64
    if u >= heldout_fraction:
        return "train"
    return "validation" if u < heldout_fraction / 2 else "test"


def is_heldout(name: str, seed: int, fraction: float) -> bool:
    """Whether a work is held out (validation or test) by `split_of`."""
    return split_of(name, seed, fraction) != "train"


MELODY_NOTES = 16  # how many notes of a corpus piece's first part identify its tune


def work_key(name: str, midi: bytes | None = None) -> str:
    """The source work a piece comes from. Generated pieces (procedural, sparse, expression, levels) are each their own work.
    A corpus piece's work is its tune: the intervals between the first `MELODY_NOTES` notes of its first part (the
    soprano of a chorale), which are kept by the re-orchestration (programs, octave shifts, tempo) and shared by the
    harmonisations of one chorale tune under different BWV numbers (music21's chorales carry no titles). Without
    readable MIDI, its path without the movement number ("music21/bach/bwv66.6" -> "music21/bach/bwv66")."""
    if not name.startswith("music21/"):
        return name
    intervals = _first_part_intervals(midi) if midi else None
    if intervals:
        return "music21-tune:" + ",".join(map(str, intervals))
    head, _, stem = name.rpartition("/")
    return f"{head}/{stem.split('.')[0]}"


def _first_part_intervals(midi: bytes) -> list[int] | None:
    import mido

    try:
        song = mido.MidiFile(file=io.BytesIO(midi))
    except Exception:  # noqa: BLE001 - any unreadable file falls back to the name
        return None
    for track in song.tracks:
        tick, pitches = 0, []
        for message in track:
            tick += message.time
            if message.type == "note_on" and message.velocity > 0:
                pitches.append((tick, -message.note))
        if len(pitches) >= 2:
            # One note per onset (the highest), then the intervals between consecutive notes.
            onsets = sorted({t for t, _ in pitches})
            highest: dict[int, int] = {}
            for t, negative in pitches:
                highest[t] = max(highest.get(t, -1), -negative)
            top = [highest[t] for t in onsets][:MELODY_NOTES]
            return [b - a for a, b in zip(top, top[1:])]
    return None
