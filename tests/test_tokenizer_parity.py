"""Token-for-token parity with diffusers' `MidiProcessor` (and note_seq's MIDI reading and sustain).

Tolerance: none. Segments must be identical lists of ids, same number of segments; notes must be equal floats. The
reference is deterministic and our code reuses the same parser (pretty_midi), so any difference is a bug.
"""

from __future__ import annotations

import random
import warnings

import mido
import pytest

from live_synth.midi import (
    ControlChange,
    Note,
    NoteSequence,
    TokenizerConfig,
    apply_sustain,
    read_midi,
    tokenize,
    tokenize_midi,
)
from tests.conftest import midi_track

pytestmark = pytest.mark.parity

note_seq = pytest.importorskip("note_seq", reason="parity reference needs note-seq: pip install -e '.[parity]'")
midi_utils = pytest.importorskip(
    "diffusers.pipelines.deprecated.spectrogram_diffusion.midi_utils",
    reason="parity reference needs diffusers' MidiProcessor: pip install -e '.[parity]'",
)
music_pb2 = pytest.importorskip("note_seq.protobuf.music_pb2")

MIN_CORPUS_FILES = 30


@pytest.fixture(scope="module")
def reference():
    return midi_utils.MidiProcessor()


def _reference_with_velocity_bins(bins: int):
    """The reference processor with its codec widened: every helper reads the bin count from the codec."""
    processor = midi_utils.MidiProcessor()
    processor.codec = midi_utils.Codec(
        max_shift_steps=midi_utils.DEFAULT_MAX_SHIFT_SECONDS * midi_utils.DEFAULT_STEPS_PER_SECOND,
        steps_per_second=midi_utils.DEFAULT_STEPS_PER_SECOND,
        event_ranges=[
            midi_utils.EventRange("pitch", note_seq.MIN_MIDI_PITCH, note_seq.MAX_MIDI_PITCH),
            midi_utils.EventRange("velocity", 0, bins),
            midi_utils.EventRange("tie", 0, 0),
            midi_utils.EventRange("program", note_seq.MIN_MIDI_PROGRAM, note_seq.MAX_MIDI_PROGRAM),
            midi_utils.EventRange("drum", note_seq.MIN_MIDI_PITCH, note_seq.MAX_MIDI_PITCH),
        ],
    )
    processor.tokenizer = midi_utils.Tokenizer(processor.codec.num_classes)
    return processor


def _mismatches(paths, reference, config=TokenizerConfig()) -> list[str]:
    bad = []
    for path in paths:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pretty_midi warns about meta events on non-zero tracks
            expected = reference(str(path))
            actual = tokenize_midi(path, config).segments
        if actual != expected:
            bad.append(_describe_mismatch(path.name, expected, actual))
    return bad


def _describe_mismatch(name: str, expected: list[list[int]], actual: list[list[int]]) -> str:
    if len(expected) != len(actual):
        return f"{name}: {len(actual)} segments, reference has {len(expected)}"
    k = next(i for i, (e, a) in enumerate(zip(expected, actual)) if e != a)
    i = next(i for i, (e, a) in enumerate(zip(expected[k], actual[k])) if e != a)
    return f"{name}: segment {k} differs at token {i}: ours {actual[k][i:i + 8]}, reference {expected[k][i:i + 8]}"


# --- real music -----------------------------------------------------------------------------------------------


def test_corpus_is_large_and_varied(music21_midi_corpus):
    assert len(music21_midi_corpus) >= MIN_CORPUS_FILES
    notes = [read_midi(path).notes for path in music21_midi_corpus]
    assert sum(any(n.is_drum for n in file_notes) for file_notes in notes) >= 5
    assert len({n.program for file_notes in notes for n in file_notes}) >= 40


def test_corpus_tokens_match_reference(music21_midi_corpus, reference):
    assert _mismatches(music21_midi_corpus, reference) == []


def test_corpus_tokens_match_reference_with_16_velocity_bins(music21_midi_corpus):
    bad = _mismatches(music21_midi_corpus, _reference_with_velocity_bins(16), TokenizerConfig(num_velocity_bins=16))
    assert bad == []


def test_corpus_tokens_match_reference_without_slakh_folding(music21_midi_corpus, reference, monkeypatch):
    monkeypatch.setattr(midi_utils, "program_to_slakh_program", lambda program: program)
    assert _mismatches(music21_midi_corpus[::3], reference, TokenizerConfig(slakh_programs=False)) == []


def test_corpus_notes_and_sustain_match_note_seq(music21_midi_corpus):
    for path in music21_midi_corpus:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = note_seq.midi_file_to_note_sequence(str(path))
            ours = read_midi(path)
        assert _notes(ours) == _proto_notes(expected), path.name
        expected_sustained = note_seq.apply_sustain_control_changes(expected)
        ours_sustained = apply_sustain(ours)
        assert _notes(ours_sustained) == _proto_notes(expected_sustained), path.name
        assert ours_sustained.total_time == expected_sustained.total_time, path.name


def _notes(ns: NoteSequence) -> list[tuple]:
    return [(n.pitch, n.velocity, n.start, n.end, n.program, n.is_drum, n.instrument) for n in ns.notes]


def _proto_notes(ns) -> list[tuple]:
    return [(n.pitch, n.velocity, n.start_time, n.end_time, n.program, n.is_drum, n.instrument) for n in ns.notes]


# --- hand-made MIDI edge cases (1 tick = 1 ms, see conftest) ---------------------------------------------------


def _tempo_track(changes: list[tuple[int, int]]) -> list:
    return [(tick, mido.MetaMessage("set_tempo", tempo=tempo)) for tick, tempo in changes]


EDGE_CASES = {
    "spec_piano_c4": [midi_track(0, 0, [(60, 100, 500, 1000)])],
    "spec_tie_violin_and_drum": [
        midi_track(0, 40, [(69, 80, 4000, 7000)]),
        midi_track(9, None, [(36, 100, 6000, 6100)]),
    ],
    "stale_tie": [midi_track(0, 0, [(60, 100, 0, 5000)]), midi_track(9, None, [(36, 100, 4900, 5300)])],
    "stale_tie_chord_ending_on_a_boundary": [
        midi_track(0, 41, [(60, 90, 0, 5120), (64, 90, 0, 5120), (67, 20, 1000, 5120)]),
        midi_track(9, None, [(42, 100, 5000, 5600)]),
    ],
    "ties_across_several_segments": [
        midi_track(0, 48, [(48, 100, 100, 16000), (55, 100, 5000, 11000)]),
        midi_track(1, 33, [(36, 100, 5119, 5121), (36, 100, 10240, 10250)]),
        midi_track(2, 73, [(84, 100, 3000, 12000)]),
    ],
    "drums_only": [midi_track(9, None, [(36 + i % 10, 40 + i, 250 * i, 250 * i + 50) for i in range(60)])],
    "sustain_pedal": [
        midi_track(0, 0, [(60, 100, 0, 300), (64, 100, 200, 400), (60, 100, 900, 1000), (67, 100, 1500, 1600)],
                   pedal=[(100, 127), (1200, 0), (1200, 127), (1300, 64), (1700, 10)]),  # fmt: skip
        midi_track(1, 24, [(60, 100, 0, 300)], pedal=[(50, 127)]),  # pedal never released
    ],
    # Two note-ons of one key on one tick: pretty_midi closes both at the first note-off, and with the pedal down
    # the second onset cuts the first to zero length, which removes it.
    "sustain_restrike_at_same_time": [
        midi_track(0, 4, [(60, 100, 1000, 1200), (60, 80, 1000, 1100)], pedal=[(0, 127), (3000, 0)]),
    ],
    "empty_segments_in_the_middle": [midi_track(0, 56, [(60, 100, 0, 1000), (62, 100, 21000, 21500)])],
    "long_note_over_empty_segments": [
        midi_track(0, 16, [(60, 100, 0, 18000)]),
        midi_track(9, None, [(36, 100, 20000, 20010)]),
    ],
    "overlapping_same_pitch": [
        midi_track(0, 0, [(60, 100, 0, 1000), (60, 90, 500, 1500), (60, 80, 500, 700)]),
        midi_track(1, 0, [(60, 70, 200, 1200)]),  # another channel, same program and pitch: same tie key
    ],
    "notes_at_exact_segment_boundaries": [
        midi_track(0, 42, [(50, 100, 5120, 10240), (52, 100, 0, 5120), (54, 100, 10240, 15360)]),
        midi_track(9, None, [(38, 100, 5120, 5130), (38, 100, 10240, 10250)]),
    ],
    # pretty_midi drops a note whose on and off share a tick (zero-length notes are covered by the random test).
    "zero_length_midi_notes": [midi_track(0, 0, [(60, 100, 1000, 1000), (62, 100, 1500, 1500), (62, 100, 2000, 2100)])],
    "half_step_rounding": [midi_track(0, 0, [(60 + i, 100, 5 * i + 5, 5 * i + 35) for i in range(40)])],
    "far_drum_after_a_held_pedal": [
        midi_track(0, 0, [(60, 100, 0, 1000)], pedal=[(0, 127)]),
        midi_track(9, None, [(36, 100, 15000, 15100)]),
    ],
}


def _tempo_changes_case() -> list:
    notes = [(48 + i % 24, 100, 240 * i, 240 * i + 200) for i in range(80)]
    tempos = [(0, 400_000), (2400, 650_000), (4800, 300_000), (7200, 1_000_000), (12000, 500_000)]
    return [_tempo_track(tempos), midi_track(0, 65, notes), midi_track(9, None, notes[::3])]


def _program_changes_case() -> list:
    events = []
    for program in range(128):  # every program, including the ones the Slakh folding merges
        ms = 40 * program
        events.append((ms, mido.Message("program_change", channel=3, program=program)))
        events += midi_track(3, None, [(40 + program % 40, 100, ms, ms + 60)])
    return [events]


EDGE_CASES["several_tempo_changes"] = _tempo_changes_case()
EDGE_CASES["program_changes_in_one_track"] = _program_changes_case()


@pytest.mark.parametrize("name", sorted(EDGE_CASES))
def test_edge_case_tokens_match_reference(name, write_midi, reference):
    path = write_midi(EDGE_CASES[name], name=f"{name}.mid")
    assert _mismatches([path], reference) == []


def test_overflow_keeps_a_prefix_of_the_reference_and_counts_the_rest(write_midi, reference):
    # The reference does not truncate: its over-long segment minus EOS is the full token list.
    notes = [(40 + i % 40, 100, 10 * i, 10 * i + 5) for i in range(480)]
    path = write_midi([midi_track(0, 0, notes), midi_track(1, 40, notes), midi_track(9, None, notes)])
    expected = reference(str(path))
    result = tokenize_midi(path)
    assert len(expected[0]) > 2048
    full = expected[0][:-1]
    kept = result.segments[0][: result.segments[0].index(1)]
    assert kept == full[: len(kept)]
    assert len(kept) + result.overflow[0] == len(full)
    assert result.segments[1:] == expected[1:]


# --- random note sequences through the reference's own pipeline --------------------------------------------------


def _random_sequence(rng: random.Random) -> NoteSequence:
    """Edge-prone random music: a coarse time grid (ties in time, half steps), duplicates, zero lengths, drums,
    pedal on/off, gaps that leave empty segments."""
    grid = rng.choice([0.005, 0.01, 0.0125, 0.25, None])
    length = rng.choice([1.0, 6.0, 12.0, 25.0])

    def when() -> float:
        t = rng.uniform(0, length)
        return round(t / grid) * grid if grid else t

    notes, ccs = [], []
    for _ in range(rng.randrange(0, 60)):
        start = when()
        end = start if rng.random() < 0.1 else max(start, when() if rng.random() < 0.2 else start + rng.random())
        instrument = rng.randrange(4)
        note = Note(rng.randrange(55, 67), rng.randrange(1, 128), start, end, [0, 30, 40, 127][instrument],
                    is_drum=instrument == 3, instrument=instrument)  # fmt: skip
        notes.append(note)
        if rng.random() < 0.1:
            notes.append(Note(**vars(note)))  # an exact duplicate
    for _ in range(rng.randrange(0, 8)):
        ccs.append(ControlChange(when(), 64, rng.choice([0, 63, 64, 127]), instrument=rng.randrange(4)))
    return NoteSequence.from_notes(notes, ccs)


def _to_proto(ns: NoteSequence):
    proto = music_pb2.NoteSequence(total_time=ns.total_time)
    for n in ns.notes:
        proto.notes.add(pitch=n.pitch, velocity=n.velocity, start_time=n.start, end_time=n.end, program=n.program,
                        is_drum=n.is_drum, instrument=n.instrument)  # fmt: skip
    for cc in ns.control_changes:
        proto.control_changes.add(time=cc.time, control_number=cc.number, control_value=cc.value,
                                  instrument=cc.instrument, program=cc.program, is_drum=cc.is_drum)  # fmt: skip
    return proto


def test_random_sequences_match_reference(reference, monkeypatch):
    rng = random.Random(2024)
    bad = []
    for trial in range(150):
        ns = _random_sequence(rng)
        if ns.is_empty:
            continue  # the reference raises IndexError on a song without notes
        monkeypatch.setattr(midi_utils.note_seq, "midi_to_note_sequence", lambda _, proto=_to_proto(ns): proto)
        expected = reference(b"")
        actual = tokenize(apply_sustain(ns)).segments
        if actual != expected:
            bad.append(_describe_mismatch(f"trial {trial}", expected, actual))
    assert bad == []
