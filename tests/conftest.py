"""Shared test fixtures: tiny hand-written MIDI files and a varied corpus of real music as MIDI files."""

from __future__ import annotations

import random
import warnings
from pathlib import Path

import mido
import pytest

from live_synth.training.corpus import absolute_events, rebuild_track

# (tick, message) pairs with absolute ticks; one list per track.
Track = list[tuple[int, mido.Message | mido.MetaMessage]]

# At the default tempo (120 qpm) and 500 ticks per beat, one tick is exactly one millisecond.
MS_TICKS_PER_BEAT = 500


def write_midi_file(path: Path, tracks: list[Track], ticks_per_beat: int = MS_TICKS_PER_BEAT) -> Path:
    """Write a type-1 MIDI file from tracks of (absolute tick, mido message); messages at equal ticks keep order."""
    midi = mido.MidiFile(type=1, ticks_per_beat=ticks_per_beat)
    for events in tracks:
        track = mido.MidiTrack()
        now = 0
        for tick, message in sorted(events, key=lambda e: e[0]):
            track.append(message.copy(time=tick - now))
            now = tick
        midi.tracks.append(track)
    midi.save(path)
    return path


def midi_track(channel: int = 0, program: int | None = 0, notes=(), pedal=()) -> Track:
    """One track's events for `write_midi_file`, in milliseconds (1 tick = 1 ms at its defaults).

    program: a program change at 0 (None: none). notes: (pitch, velocity, on_ms, off_ms). pedal: (ms, CC64 value).
    """
    events: Track = [] if program is None else [(0, mido.Message("program_change", channel=channel, program=program))]
    for pitch, velocity, on, off in notes:
        events.append((on, mido.Message("note_on", channel=channel, note=pitch, velocity=velocity)))
        events.append((off, mido.Message("note_off", channel=channel, note=pitch, velocity=0)))
    for ms, value in pedal:
        events.append((ms, mido.Message("control_change", channel=channel, control=64, value=value)))
    return events


@pytest.fixture
def write_midi(tmp_path):
    """Factory: write_midi(tracks, name="song.mid", ticks_per_beat=500) -> path of a new MIDI file."""

    def write(tracks: list[Track], name: str = "song.mid", ticks_per_beat: int = MS_TICKS_PER_BEAT) -> Path:
        return write_midi_file(tmp_path / name, tracks, ticks_per_beat)

    return write


# --- a corpus of real music ---------------------------------------------------------------------------------------
# music21 ships scores (no network needed). They are written to MIDI and then re-orchestrated with mido so that one
# corpus covers many General MIDI families, drums, sustain pedal, program changes inside a track, tempo changes and
# the full velocity range. Everything is seeded, so the corpus is the same on every run.

_BACH_CHORALES = 16
_PIECES: list[tuple[str, dict]] = [
    ("mozart/k80/movement1", {}),  # string quartet, ~5 min (56 segments)
    ("monteverdi/madrigal.3.1", {}),  # five voices
    ("trecento/Fava_Dicant_nunc_iudei", {}),
    ("joplin/maple_leaf_rag", {}),  # piano, dense
    ("schubert/lindenbaum", {}),  # voice and piano
    ("josquin/adieuMesAmours", {}),
    ("palestrina/Agnus_01", {}),
    ("corelli/opus3no1/1grave", {}),
    ("handel/rinaldo/Lascia_chio_pianga", {}),
    ("verdi/laDonnaEMobile", {}),
    ("essenFolksong/altdeu10", {"number": 1}),
    ("essenFolksong/altdeu10", {"number": 2}),
    ("essenFolksong/ballad10", {"number": 3}),
    ("oneills1850/0001-0050", {"number": 7}),
    ("airdsAirs/book1", {"number": 12}),
    ("leadSheet/fosterBrownHair", {}),
    ("ciconia/quod_jactatur", {}),
    ("cpebach/h186", {}),
]

# Programs from every GM family; several are folded by the Slakh mapping (1 -> 0, 30 -> 29, 44 -> 43, ...).
_PROGRAMS = [
    0, 1, 2, 4, 5, 8, 11, 13, 16, 19, 21, 24, 25, 27, 30, 32, 33, 35, 38, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49,
    50, 52, 54, 55, 56, 57, 58, 60, 61, 62, 64, 65, 66, 67, 68, 69, 70, 71, 72, 73, 75, 79, 80, 88, 90, 96, 104,
    112, 120, 127,
]  # fmt: skip


def _corpus_sources() -> list[tuple[str, dict]]:
    from music21 import corpus

    chorales = sorted(str(p) for p in corpus.getComposer("bach") if "bwv" in str(p))
    step = max(1, len(chorales) // _BACH_CHORALES)
    return [(path, {}) for path in chorales[::step][:_BACH_CHORALES]] + _PIECES


def _score_to_midi(source: str, kwargs: dict, path: Path) -> bool:
    from music21 import corpus

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            score = corpus.parse(source, **kwargs)
            if hasattr(score, "scores"):  # an Opus (several tunes in one file): take the first
                score = score.scores[0]
            score.write("midi", fp=str(path))
        return path.exists()
    except Exception:  # noqa: BLE001 - a score music21 cannot render is simply left out; the user counts files
        return False


def _reorchestrate(path: Path, index: int) -> None:
    """Rewrite programs, channels, velocities; add drums, sustain, program and tempo changes depending on index."""
    rng = random.Random(index)
    midi = mido.MidiFile(path)
    note_tracks = [t for t in midi.tracks if any(m.type == "note_on" for m in t)]
    for j, track in enumerate(note_tracks):
        drums = index % 4 == 1 and j == len(note_tracks) - 1 and len(note_tracks) > 1
        channel = 9 if drums else [c for c in range(16) if c != 9][j % 15]
        program = _PROGRAMS[(index * 7 + j * 11) % len(_PROGRAMS)]
        _retarget(track, channel, program, rng)
        if index % 5 == 2 and j == 0:
            _insert_program_change(track, channel, _PROGRAMS[(index * 13 + 5) % len(_PROGRAMS)])
        if index % 3 == 0 and not drums and j < 2:
            _add_sustain(track, channel, midi.ticks_per_beat, hold_at_end=index % 6 == 0)
    if index % 4 == 3:
        _add_tempo_changes(midi.tracks[0], midi.ticks_per_beat, rng)
    midi.save(path)


def _retarget(track, channel: int, program: int, rng: random.Random) -> None:
    has_program = False
    for i, message in enumerate(track):
        if not hasattr(message, "channel"):
            continue
        changes = {"channel": channel}
        if message.type == "program_change":
            changes["program"] = program
            has_program = True
        elif message.type == "note_on" and message.velocity > 0:
            changes["velocity"] = rng.randint(1, 127)
        track[i] = message.copy(**changes)
    if not has_program:
        track.insert(0, mido.Message("program_change", channel=channel, program=program, time=0))


def _insert_program_change(track, channel: int, program: int) -> None:
    # Halfway through the track, on a delta of 0 so that absolute times do not move.
    track.insert(len(track) // 2, mido.Message("program_change", channel=channel, program=program, time=0))


def _add_sustain(track, channel: int, ticks_per_beat: int, hold_at_end: bool) -> None:
    """Pedal down just after every bar line; up on beat 4 of odd bars, and on the tick of the next pedal-down for even
    bars (up and down on one tick: note_seq handles the down first, so the pedal ends up released)."""
    events = absolute_events(track)
    end = max(tick for tick, _ in events)
    bar, late = 4 * ticks_per_beat, ticks_per_beat // 4
    for start in range(0, end, bar):
        release = start + 3 * ticks_per_beat if (start // bar) % 2 else start + bar + late
        events.append((start + late, _pedal(channel, 127)))
        events.append((release, _pedal(channel, 0)))
    if hold_at_end:  # a pedal still down when the song ends
        events.append((end, _pedal(channel, 100)))
    rebuild_track(track, events)


def _pedal(channel: int, value: int) -> mido.Message:
    return mido.Message("control_change", channel=channel, control=64, value=value)


def _add_tempo_changes(track, ticks_per_beat: int, rng: random.Random) -> None:
    events = absolute_events(track)
    for k in range(1, 6):
        tempo = rng.choice([300_000, 420_000, 500_000, 650_000, 900_000])
        events.append((k * 8 * ticks_per_beat, mido.MetaMessage("set_tempo", tempo=tempo)))
    rebuild_track(track, events)


@pytest.fixture(scope="session")
def music21_midi_corpus(tmp_path_factory) -> list[Path]:
    """Real music from the music21 corpus as MIDI files (built once per session; scores that fail are left out)."""
    pytest.importorskip("music21", reason="music21 is needed to build the MIDI corpus (pip install music21)")
    folder = tmp_path_factory.mktemp("music21_midi")
    paths = []
    for index, (source, kwargs) in enumerate(_corpus_sources()):
        path = folder / f"{index:02d}_{Path(source).stem}.mid"
        if _score_to_midi(source, kwargs, path):
            _reorchestrate(path, index)
            paths.append(path)
    return paths
