"""Real music for training: scores from the music21 corpus written out as MIDI and re-orchestrated.

`select_works(seed)` gives a seeded, deterministic order of the corpus works we may use; `corpus_midi(work, seed)`
turns one into MIDI bytes (or raises `CorpusSkip` when music21 cannot read or write it). Re-orchestration is seeded
by (seed, work), so a work sounds the same whatever else is selected:

- each part gets a General MIDI program from an ensemble template (string quartet, brass, reeds, saxophones,
  organ, guitars with bass, pianos, choir/strings, mallets, synths, or a free mix), the lowest part a bass instrument;
  parts are moved by whole octaves into their instrument's range, and chordal parts go to instruments that play chords;
- velocities are redrawn per part (flat, ramped, phrase-shaped or random dynamics over 20..127);
- about a third of the pieces get a drum part on channel 10 doubling the rhythm (kick, snare, hi-hat, crash);
- pieces with a pedal-friendly instrument get the sustain pedal (CC64) now and then;
- the tempo is scaled by 0.8..1.25 and the piece is cut after `max_seconds` (40 s; long works are cut before
  music21 writes them, which is what keeps this fast).

Licences (music21/corpus/license.txt: "Some encodings ... may not be used for commercial uses or have other
restrictions: please see the licenses embedded in individual compositions or directories"). The dataset is derived
data (MIDI, audio, features) and the weights trained on it ship under the project's licence, so we skip:
- palestrina/ (every file: "Rights to all derivative electronic formats reserved", Humdrum licensing agreement), and
  any other file carrying that notice (three CCARH-encoded Bach .krn files);
- essenFolksong/ (its license.txt: permission for non-commercial distribution and use in music21 only);
- josquin/ (encodings under the GNU GPL: copyleft on derived data);
- monteverdi/ (a publisher's edition, "(c) UT Orpheus Edizioni 2003", no licence for derived data);
- files marked "All Rights Reserved", non-commercial, GPL or Creative Commons share-alike (CC-BY-SA: allowed with
  share-alike terms, which we do not want to attach to the dataset or the shipped weights);
- the folk-tune collections (airdsAirs, oneills1850, ryansMammoth, nottingham-dataset, miscFolk: hundreds of
  one-line tunes per file, slow to parse, and melodies the procedural generator covers), RomanText analyses
  (.rntxt, chord symbols rather than scores), demos/ and theoryExercises/ (test material).
What remains is public-domain music in encodings that are unmarked, public domain / CC0, CC-BY, or "used by
permission" (the Bach chorales). The rights line found in each used file is returned with it, for the manifest.
"""

from __future__ import annotations

import functools
import io
import random
import re
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import mido

from live_synth.training.procedural import (
    BASS_PROGRAMS,
    BY_PROGRAM,
    CLOSED_HAT,
    CRASH,
    DRUM_CHANNEL,
    INSTRUMENTS,
    KICK,
    MAX_VELOCITY,
    MIN_VELOCITY,
    SNARE,
    GMInstrument,
    derive_seed,
    midi_bytes,
)

MAX_SECONDS = 40.0
MIN_SECONDS = 2.0
EXCLUDED_FOLDERS = frozenset({
    "palestrina", "essenFolksong", "josquin", "monteverdi",  # licences: see the module docstring
    "airdsAirs", "oneills1850", "ryansMammoth", "nottingham-dataset", "miscFolk",  # tune collections
    "demos", "theoryExercises",  # test material
})  # fmt: skip
EXCLUDED_SUFFIXES = frozenset({".rntxt"})
# A file whose text matches this is skipped (licence notes embedded in the encodings; case-insensitive).
RESTRICTED = re.compile(
    rb"derivative electronic formats reserved|all rights reserved|non-?commercial|general public license"
    rb"|cc[- ]?by[- ]?sa|cc[- ]?sa[- ]?by|share[- ]?alike|ut orpheus",
    re.IGNORECASE,
)
_RIGHTS = re.compile(rb"<rights>(.*?)</rights>|!!!YEC:([^\n]*)|<credit-words[^>]*>([^<]*permission[^<]*)<", re.I | re.S)

# Ensemble templates, top part first; the last program is the bottom part's (when there are two parts or more).
ENSEMBLES: dict[str, tuple[int, ...]] = {
    "string quartet": (40, 40, 41, 42),
    "string orchestra": (40, 41, 42, 43),
    "brass": (56, 56, 60, 57, 58),
    "woodwinds": (73, 68, 71, 70),
    "saxophones": (64, 65, 66, 67),
    "organ": (19,),
    "drawbar organ": (16, 16, 33),
    "guitars": (24, 25, 26, 33),
    "rock": (29, 26, 25, 33),
    "piano": (0,),
    "electric piano": (4, 4, 32),
    "choir and strings": (52, 48, 48, 43),
    "mallets": (11, 12, 8, 32),
    "synths": (80, 81, 88, 38),
    "mixed": (),
}


class CorpusSkip(Exception):
    """A work that cannot be used (unreadable, unwritable, restricted or empty); the message says why."""


@dataclass(frozen=True)
class CorpusPiece:
    """One corpus work as re-orchestrated MIDI, with its provenance."""

    name: str  # "music21/<corpus path without suffix>", e.g. "music21/bach/bwv66.6"
    midi: bytes
    ensemble: str
    rights: str  # the rights/permission line found in the encoding ("" when it has none)


@functools.lru_cache(maxsize=1)
def corpus_root() -> Path:
    """The folder of music21's bundled corpus."""
    from music21 import corpus

    return Path(corpus.__file__).resolve().parent


def candidate_works() -> list[str]:
    """Corpus-relative paths (e.g. "bach/bwv66.6.mxl") of every work not excluded by folder or type, sorted."""
    from music21 import corpus

    root = corpus_root()
    works = []
    for path in corpus.getPaths():
        relative = Path(path).resolve().relative_to(root)
        if relative.parts[0] not in EXCLUDED_FOLDERS and relative.suffix not in EXCLUDED_SUFFIXES:
            works.append(relative.as_posix())
    return sorted(works)


def select_works(seed: int) -> list[str]:
    """All candidate works in a seeded order: take them from the front (later ones when earlier ones are skipped).

    Adding works to a selection only appends: the first M of a seed's order do not depend on how many are taken.
    """
    works = candidate_works()
    random.Random(seed).shuffle(works)
    return works


def work_name(work: str) -> str:
    """The dataset name of a corpus work: "music21/" + its path without the file suffix."""
    return "music21/" + str(Path(work).with_suffix("").as_posix())


def licence_check(work: str) -> str:
    """The work's rights line ("" if none). Raises CorpusSkip if its encoding carries a restriction we avoid."""
    path = corpus_root() / work
    data = path.read_bytes()
    if path.suffix == ".mxl":  # compressed MusicXML: look inside
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            data = b"".join(archive.read(n) for n in archive.namelist() if not n.startswith("META-INF"))
    match = RESTRICTED.search(data)
    if match:
        raise CorpusSkip(f"{work}: licence restriction ({match.group(0).decode(errors='replace')!r})")
    found = _RIGHTS.search(data)
    if not found:
        return ""
    text = next(g for g in found.groups() if g is not None)
    return " ".join(text.decode("utf-8", errors="replace").split())[:200]


def corpus_midi(work: str, seed: int, max_seconds: float = MAX_SECONDS) -> CorpusPiece:
    """Work -> re-orchestrated MIDI bytes, deterministic in (work, seed). Raises CorpusSkip for unusable works."""
    rights = licence_check(work)
    rng = random.Random(derive_seed(seed, work))
    tempo_factor = rng.uniform(0.8, 1.25)  # > 1: slower
    raw = _music21_midi(work, max_seconds / tempo_factor)
    try:
        midi = mido.MidiFile(file=io.BytesIO(raw))
    except Exception as error:  # noqa: BLE001 - music21's writer produced something mido cannot read
        raise CorpusSkip(f"{work}: unreadable MIDI from music21 ({error})") from error
    ensemble = _orchestrate(midi, rng)
    _scale_tempo(midi, tempo_factor)
    crop(midi, max_seconds)
    seconds = midi.length
    if seconds < MIN_SECONDS or not any(m.type == "note_on" for t in midi.tracks for m in t):
        raise CorpusSkip(f"{work}: too short or no notes ({seconds:.1f} s)")
    return CorpusPiece(work_name(work), midi_bytes(midi), ensemble, rights)


def _music21_midi(work: str, seconds: float) -> bytes:
    """Parse a work with music21 (no cache written), keep the measures covering `seconds`, write it as MIDI."""
    from music21 import corpus, stream, tempo
    from music21.midi.translate import streamToMidiFile

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            score = corpus.parse(work, forceSource=True)  # forceSource: no pickle cache in music21's scratch folder
            if isinstance(score, stream.Opus):
                score = score.scores[0]
            marks = score.flatten().getElementsByClass(tempo.MetronomeMark)
            qpm = marks[0].getQuarterBPM() if marks else 120.0
            score = _first_measures(score, seconds * (qpm or 120.0) / 60.0 + 4.0)
            return streamToMidiFile(score).writestr()
    except Exception as error:  # noqa: BLE001 - music21 raises many kinds of errors on scores it cannot handle
        raise CorpusSkip(f"{work}: music21 cannot convert it ({type(error).__name__}: {error})") from error


def _first_measures(score, quarters: float):
    """The measures that start within the first `quarters` quarter notes (the whole score if it is that short)."""
    if score.highestTime <= quarters or not score.parts:
        return score
    measures = [m for m in score.parts[0].getElementsByClass("Measure") if m.offset < quarters]
    if not measures:
        return score
    return score.measures(measures[0].number, measures[-1].number)


# --- re-orchestration ------------------------------------------------------------------------------------------------


def absolute_events(track: mido.MidiTrack) -> list[tuple[int, mido.Message]]:
    """A track's messages with absolute ticks, end_of_track left out (`rebuild_track` puts one back)."""
    now, events = 0, []
    for message in track:
        now += message.time
        if message.type != "end_of_track":
            events.append((now, message))
    return events


def rebuild_track(track: mido.MidiTrack, events: list[tuple[int, mido.Message]], end: int | None = None) -> None:
    """Replace a track's messages with absolute-tick events (stable sort: equal ticks keep their order)."""
    events = sorted(events, key=lambda e: e[0])
    track.clear()
    now = 0
    for tick, message in events:
        track.append(message.copy(time=tick - now))
        now = tick
    track.append(mido.MetaMessage("end_of_track", time=max(0, (end or now) - now)))


def _pitches(track: mido.MidiTrack) -> list[int]:
    return [m.note for m in track if m.type == "note_on" and m.velocity > 0]


def _max_held(track: mido.MidiTrack) -> int:
    held, most = set(), 0
    for message in track:
        if message.type == "note_on" and message.velocity > 0:
            held.add(message.note)
            most = max(most, len(held))
        elif message.type in ("note_on", "note_off"):
            held.discard(message.note)
    return most


def _programs_for(ensemble: str, count: int, rng: random.Random) -> list[int]:
    template = ENSEMBLES[ensemble]
    if not template:  # mixed: any instrument, a bass instrument at the bottom
        programs = [rng.choice(INSTRUMENTS).program for _ in range(count)]
        if count > 1:
            programs[-1] = rng.choice(BASS_PROGRAMS)
        return programs
    if count == 1 or len(template) == 1:
        return [template[0]] * count
    return [template[min(j, len(template) - 2)] for j in range(count - 1)] + [template[-1]]


def _orchestrate(midi: mido.MidiFile, rng: random.Random) -> str:
    """Reassign programs, channels, octaves and velocities; maybe add drums and pedal. Returns the ensemble name."""
    ensemble = rng.choice(sorted(ENSEMBLES))
    parts = [t for t in midi.tracks if _pitches(t)]
    # Top part first: order by mean pitch, highest first (music21 writes parts top to bottom, but not always).
    order = sorted(parts, key=lambda t: -sum(_pitches(t)) / len(_pitches(t)))
    channels = [c for c in range(16) if c != DRUM_CHANNEL]
    for j, (track, program) in enumerate(zip(order, _programs_for(ensemble, len(order), rng))):
        instrument = BY_PROGRAM[program]
        if _max_held(track) > 2 and not instrument.poly:  # a chordal part goes to an instrument that plays chords
            instrument = rng.choice([i for i in INSTRUMENTS if i.poly])
        _retarget(track, instrument, channels[j % len(channels)], rng, midi.ticks_per_beat)
    if parts and rng.random() < 0.35:
        midi.tracks.append(_drum_track(parts, midi.ticks_per_beat, rng))
    return ensemble


def _octave_shift(pitches: list[int], instrument: GMInstrument) -> int:
    """Whole octaves that put most notes inside the instrument's range (the smallest such move)."""
    def outside(shift: int) -> int:
        return sum(not instrument.low <= p + shift <= instrument.high for p in pitches)

    return min((12 * k for k in range(-4, 5)), key=lambda s: (outside(s), abs(s)))


def _velocity_curve(rng: random.Random, length: int, tpb: int):
    """velocity(tick) for one part: flat, ramped over the piece, swelling per phrase, or random per note."""
    kind = rng.choice(("flat", "ramp", "phrase", "random"))
    a, b = rng.randint(MIN_VELOCITY, MAX_VELOCITY), rng.randint(MIN_VELOCITY, MAX_VELOCITY)
    period = rng.randint(4, 16) * tpb

    def velocity(tick: int) -> int:
        if kind == "random":
            return rng.randint(MIN_VELOCITY, MAX_VELOCITY)
        if kind == "flat":
            base = a
        elif kind == "ramp":
            base = a + (b - a) * tick / max(1, length)
        else:  # phrase: swell from a to b and back every `period` ticks
            phase = (tick % period) / period
            base = a + (b - a) * (1 - abs(2 * phase - 1))
        return max(MIN_VELOCITY, min(MAX_VELOCITY, round(base) + rng.randint(-6, 6)))

    return velocity


def _retarget(track: mido.MidiTrack, instrument: GMInstrument, channel: int, rng: random.Random, tpb: int) -> None:
    events = absolute_events(track)
    shift = _octave_shift(_pitches(track), instrument)
    velocity = _velocity_curve(rng, max((t for t, _ in events), default=0), tpb)
    out = [(0, mido.Message("program_change", channel=channel, program=instrument.program))]
    for tick, message in events:
        if message.type == "program_change":
            continue
        if hasattr(message, "channel"):
            message = message.copy(channel=channel)
        if message.type in ("note_on", "note_off"):
            message = message.copy(note=max(0, min(127, message.note + shift)))
            if message.type == "note_on" and message.velocity > 0:
                message = message.copy(velocity=velocity(tick))
        out.append((tick, message))
    if instrument.pedal and rng.random() < 0.4:
        end = max((t for t, _ in out), default=0)
        bar = 4 * tpb
        for start in range(0, end, bar):
            out.append((start + tpb // 8, mido.Message("control_change", channel=channel, control=64, value=127)))
            out.append((min(start + bar - tpb // 16, end), mido.Message("control_change", channel=channel,
                                                                         control=64, value=0)))  # fmt: skip
    rebuild_track(track, out)


def _drum_track(parts: list[mido.MidiTrack], tpb: int, rng: random.Random) -> mido.MidiTrack:
    """A drum part on channel 10 doubling the rhythm: kick on beats 1 and 3, snare on 2 and 4, hi-hat off the beat."""
    onsets: dict[int, list[int]] = {}
    for track in parts:
        for tick, message in absolute_events(track):
            if message.type == "note_on" and message.velocity > 0:
                onsets.setdefault(tick, []).append(message.velocity)
    level = rng.randint(-20, 10)
    events = [(0, mido.MetaMessage("track_name", name="drums (doubling the rhythm)"))]
    for tick in sorted(onsets):
        beat, offbeat = divmod(tick, tpb)
        v = max(MIN_VELOCITY, min(MAX_VELOCITY, round(sum(onsets[tick]) / len(onsets[tick])) + level))
        if offbeat:
            hits = [CLOSED_HAT]
        else:
            hits = [KICK if beat % 2 == 0 else SNARE, CLOSED_HAT] + ([CRASH] if beat % 16 == 0 else [])
        for pitch in hits:
            vv = max(MIN_VELOCITY, v - 20) if pitch == CLOSED_HAT else v
            events.append((tick, mido.Message("note_on", channel=DRUM_CHANNEL, note=pitch, velocity=vv)))
            events.append((tick + tpb // 8, mido.Message("note_off", channel=DRUM_CHANNEL, note=pitch, velocity=0)))
    track = mido.MidiTrack()
    rebuild_track(track, events)
    return track


# --- tempo and length ------------------------------------------------------------------------------------------------


def _scale_tempo(midi: mido.MidiFile, factor: float) -> None:
    """Multiply every tempo (microseconds per beat) by `factor`; add one at 120 bpm x factor if there is none."""
    found = False
    for track in midi.tracks:
        for i, message in enumerate(track):
            if message.type == "set_tempo":
                track[i] = message.copy(tempo=max(1, min(0xFFFFFF, round(message.tempo * factor))))
                found = True
    if not found:
        midi.tracks[0].insert(0, mido.MetaMessage("set_tempo", tempo=round(500_000 * factor), time=0))


def crop(midi: mido.MidiFile, seconds: float) -> None:
    """Cut a MIDI file at `seconds` in place: later events dropped, notes still sounding ended and pedals lifted there,
    every track ending there at the latest."""
    if midi.length <= seconds:
        return
    cut = _tick_at(midi, seconds)
    for track in midi.tracks:
        end = min(cut, sum(message.time for message in track))
        kept, sounding, pedals = [], {}, set()
        for tick, message in absolute_events(track):
            if tick > cut or (tick == cut and message.type == "note_on" and message.velocity > 0):
                continue
            kept.append((tick, message))
            if message.type == "note_on" and message.velocity > 0:
                sounding[(message.channel, message.note)] = True
            elif message.type in ("note_on", "note_off"):
                sounding.pop((message.channel, message.note), None)
            elif message.type == "control_change" and message.control == 64:
                pedals.add(message.channel)
        kept += [(cut, mido.Message("note_off", channel=c, note=n, velocity=0)) for c, n in sounding]
        kept += [(cut, mido.Message("control_change", channel=c, control=64, value=0)) for c in sorted(pedals)]
        rebuild_track(track, kept, end)


def _tick_at(midi: mido.MidiFile, seconds: float) -> int:
    """The last tick at or before `seconds`, through the tempo map (tempo changes may sit in any track)."""
    changes = sorted((t, m.tempo) for track in midi.tracks for t, m in absolute_events(track) if m.type == "set_tempo")
    tick, time, tempo = 0, 0.0, 500_000
    for change_tick, change_tempo in changes:
        span = (change_tick - tick) * tempo / 1e6 / midi.ticks_per_beat
        if time + span > seconds:
            break
        tick, time, tempo = change_tick, time + span, change_tempo
    return tick + int((seconds - time) * 1e6 * midi.ticks_per_beat / tempo)
