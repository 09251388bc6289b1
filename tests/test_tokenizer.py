"""MIDI reading, sustain, codec and tokenization: spec §2.3 worked examples and our own behaviour (no reference)."""

from __future__ import annotations

import random
import time

import pytest

from live_synth.errors import MidiError
from live_synth.midi import (
    EOS_ID,
    PAD_ID,
    ControlChange,
    EventCodec,
    Note,
    NoteSequence,
    TokenizerConfig,
    apply_sustain,
    program_to_slakh_program,
    read_midi,
    tokenize,
    tokenize_midi,
    velocity_to_bin,
)
from tests.conftest import midi_track

CODEC = EventCodec()
TIE = 1134


def content(segment: list[int]) -> list[int]:
    """A segment up to and including EOS, after checking its padding."""
    assert len(segment) == 2048
    end = segment.index(EOS_ID) + 1
    assert all(token == PAD_ID for token in segment[end:])
    return segment[:end]


def song(*notes: Note, ccs: tuple[ControlChange, ...] = ()) -> NoteSequence:
    return NoteSequence.from_notes(notes, ccs)


# --- spec §2.3 worked examples ----------------------------------------------------------------------------------


def test_piano_c4_example_from_a_midi_file(write_midi):
    path = write_midi([midi_track(program=0, notes=[(60, 100, 500, 1000)])])
    result = tokenize_midi(path)
    assert result.num_frames == 51
    assert len(result.segments) == 1
    assert result.segments[0] == [1134, 53, 1135, 1133, 1064, 103, 1132, 1064, 1] + [0] * 2039
    assert result.overflow == [0]


def test_tie_across_a_segment_boundary_carries_program_state(write_midi):
    violin = midi_track(0, 40, notes=[(69, 80, 4000, 7000)])
    drum = midi_track(9, None, notes=[(36, 100, 6000, 6100)])
    path = write_midi([violin, drum])
    result = tokenize_midi(path)
    assert result.num_frames == 351
    assert [content(s) for s in result.segments] == [
        [1134, 403, 1175, 1133, 1073, 1],
        [1175, 1073, 1134, 91, 1133, 1299, 191, 1132, 1073, 1],
    ]


def test_stale_tie_quirk_is_reproduced():
    # Piano 0-5.0 s and a drum 4.9-5.3 s: segment 1 starts after the last event (the piano note-off at 5.0 s), and the
    # reference still lists the piano note as tied there. Kept on purpose for parity (spec §2.3).
    result = tokenize(song(Note(60, 100, 0.0, 5.0, 0), Note(36, 100, 4.9, 5.3, 0, is_drum=True)))
    assert content(result.segments[1]) == [1135, 1064, 1134, 1]


def test_a_segment_starting_before_the_last_event_has_a_correct_tie_section():
    # The quirk only concerns segments after the last event: here the last event (6.0 s) is in segment 1, and the
    # note that ended at 5.0 s is correctly absent from segment 1's tie section.
    result = tokenize(song(Note(60, 100, 0.0, 5.0, 0), Note(62, 100, 6.0, 6.5, 0)))
    assert content(result.segments[1])[:1] == [TIE]


def test_each_segment_starts_its_shifts_and_its_program_and_velocity_state_afresh():
    result = tokenize(song(Note(60, 100, 1.0, 1.5, 0), Note(62, 100, 6.0, 6.5, 0)))
    seg1 = content(result.segments[1])
    # 6.00 s - 5.12 s = 88 steps; program and velocity are written again although segment 0 set the same values.
    assert seg1[:5] == [TIE, 3 + 88, 1135, 1133, 1066]


def test_notes_at_equal_times_put_offsets_before_onsets_and_sort_by_program_then_pitch():
    result = tokenize(song(Note(64, 100, 0.0, 1.0, 40), Note(60, 100, 0.0, 1.0, 0), Note(60, 100, 1.0, 2.0, 0)))
    assert CODEC.describe(content(result.segments[0])) == (
        "tie program:0 velocity:1 pitch:60 program:40 pitch:64 "
        "shift:100 program:0 velocity:0 pitch:60 program:40 pitch:64 program:0 velocity:1 pitch:60 "
        "shift:200 velocity:0 pitch:60 eos"
    )


def test_frames_and_segments_follow_the_reference_grid():
    # 5.12 s is exactly 256 frames of audio; the reference always pads, so there is a 257th frame and a 2nd segment.
    result = tokenize(song(Note(60, 100, 0.0, 5.12, 0)))
    assert result.num_frames == 257
    assert len(result.segments) == 2


# --- velocity, programs, codec ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("velocity", "bins", "expected"),
    [(0, 1, 0), (1, 1, 1), (127, 1, 1), (1, 16, 1), (8, 16, 2), (100, 16, 13), (127, 16, 16), (64, 2, 2), (63, 2, 1)],
)
def test_velocity_to_bin_is_ceil_of_scaled_velocity(velocity, bins, expected):
    assert velocity_to_bin(velocity, bins) == expected


def test_sixteen_velocity_bins_shift_the_later_blocks_and_keep_dynamics():
    config = TokenizerConfig(num_velocity_bins=16)
    codec = config.codec
    assert codec.num_classes == 1388 + 15
    assert codec.encode("tie", 0) == 3 + 1001 + 128 + 17
    result = tokenize(song(Note(60, 100, 0.0, 0.5, 0), Note(62, 20, 0.5, 1.0, 0)), config)
    assert codec.describe(content(result.segments[0])) == (
        "tie program:0 velocity:13 pitch:60 shift:50 velocity:0 pitch:60 velocity:3 pitch:62 "
        "shift:100 velocity:0 pitch:62 eos"
    )


def test_codec_round_trips_every_token_id():
    for bins in (1, 32):
        codec = EventCodec(bins)
        for token_id in range(3, codec.num_token_ids):
            assert codec.encode(*codec.decode(token_id)) == token_id
    assert CODEC.num_token_ids == 1391
    assert CODEC.decode(0) == ("pad", 0) and CODEC.decode(1) == ("eos", 0)
    assert CODEC.decode(1390) == ("drum", 127)
    with pytest.raises(ValueError):
        CODEC.decode(1391)
    with pytest.raises(ValueError):
        CODEC.encode("velocity", 2)


def test_slakh_folding_is_an_option():
    assert [program_to_slakh_program(p) for p in (0, 1, 30, 44, 59, 72, 79, 127)] == [0, 0, 29, 43, 58, 71, 73, 88]
    ns = song(Note(60, 100, 0.0, 0.5, program=30))
    assert 1135 + 29 in content(tokenize(ns).segments[0])
    assert 1135 + 30 in content(tokenize(ns, TokenizerConfig(slakh_programs=False)).segments[0])


def test_drum_program_is_never_written():
    ns = song(Note(36, 100, 0.0, 0.5, program=30, is_drum=True))
    assert CODEC.describe(content(tokenize(ns).segments[0])) == "tie velocity:1 drum:36 eos"


def test_a_shift_longer_than_ten_seconds_is_split():
    # Sustain that is never released ends notes at the last melodic event, which can put total_time before a later
    # drum hit; that hit then lies 15 s into the only segment.
    ns = song(Note(60, 100, 0.0, 1.0, 0), Note(36, 100, 15.0, 15.1, 0, is_drum=True),
              ccs=(ControlChange(0.0, 64, 127),))  # fmt: skip
    result = tokenize(apply_sustain(ns))
    assert len(result.segments) == 1
    assert CODEC.describe(content(result.segments[0])) == (
        "tie program:0 velocity:1 pitch:60 shift:100 velocity:0 pitch:60 shift:1000 shift:500 velocity:1 drum:36 eos"
    )


def test_out_of_range_notes_are_a_bug_not_a_silent_token():
    with pytest.raises(ValueError, match="out of MIDI range"):
        tokenize(song(Note(128, 100, 0.0, 1.0)))
    with pytest.raises(ValueError, match="negative"):
        tokenize(song(Note(60, 100, -0.5, 1.0)))


# --- overflow ---------------------------------------------------------------------------------------------------


def _dense_song(num_notes: int) -> NoteSequence:
    # Every note on its own 10 ms step with alternating velocities: ~5 tokens per note, all in segment 0.
    return song(*(Note(40 + i % 40, 30 + 90 * (i % 2), i * 0.01, i * 0.01 + 0.005, i % 3) for i in range(num_notes)))


def test_overflowing_segment_is_cut_at_an_event_boundary_and_counted():
    ns = _dense_song(500)
    full = tokenize(ns, TokenizerConfig(num_velocity_bins=2, max_tokens=10_000)).segments[0]
    full = full[: full.index(EOS_ID)]
    assert len(full) > 2047
    result = tokenize(ns, TokenizerConfig(num_velocity_bins=2))
    segment = result.segments[0]
    kept = content(segment)[:-1]
    assert len(segment) == 2048
    assert kept == full[: len(kept)]
    assert result.overflow[0] == len(full) - len(kept) > 0
    assert result.dropped_tokens == result.overflow[0] and result.overflowed_segments == 1
    assert result.overflow[1:] == [0] * (len(result.segments) - 1)
    assert EventCodec(2).decode(kept[-1])[0] in ("pitch", "drum", "tie")
    assert len(kept) >= 2047 - 6  # at most one event group (shift, program, velocity, pitch...) is lost to the cut


def test_a_tie_section_too_long_for_a_segment_keeps_its_tie():
    # 2 * 128 pitches * 20 programs = 5120 tokens of tie section at 5.12 s.
    notes = [Note(p, 100, 0.0, 6.0, prog) for p in range(128) for prog in range(0, 120, 6)]
    result = tokenize(NoteSequence.from_notes(notes), TokenizerConfig(slakh_programs=False))
    seg1 = content(result.segments[1])
    assert len(seg1) == 2048 and seg1[-2] == TIE
    assert result.overflow[1] > 0


@pytest.mark.parametrize("max_tokens", [2, 3, 7, 64])
def test_tiny_token_budgets_never_raise(max_tokens):
    result = tokenize(_dense_song(50), TokenizerConfig(max_tokens=max_tokens))
    for segment in result.segments:
        assert len(segment) == max_tokens and EOS_ID in segment


def test_a_five_minute_song_tokenizes_quickly():
    rng = random.Random(0)
    notes = []
    for i in range(300 * 16):  # 16 notes per second for 5 minutes, 4 instruments, some drums
        start = i / 16 + rng.random() * 0.05
        notes.append(Note(rng.randrange(30, 90), rng.randrange(1, 128), start, start + rng.random(),
                          rng.choice([0, 33, 40, 56]), is_drum=i % 5 == 0))  # fmt: skip
    began = time.perf_counter()
    result = tokenize(NoteSequence.from_notes(notes), TokenizerConfig(num_velocity_bins=16))
    elapsed = time.perf_counter() - began
    assert len(result.segments) == 59
    assert elapsed < 1.0, f"{elapsed:.2f} s"


# --- reading MIDI, sustain ------------------------------------------------------------------------------------


def test_read_midi_keeps_velocity_program_drums_instruments_and_control_changes(write_midi):
    path = write_midi([
        midi_track(0, 33, notes=[(40, 90, 0, 500)], pedal=[(100, 127)]),
        midi_track(9, 5, notes=[(38, 60, 250, 300)]),
    ])  # fmt: skip
    ns = read_midi(path)
    assert ns.notes == [Note(40, 90, 0.0, 0.5, 33, False, 0), Note(38, 60, 0.25, 0.3, 5, True, 1)]
    assert ns.control_changes == [ControlChange(0.1, 64, 127, 0, 33, False)]
    assert ns.total_time == 0.5


def test_sustain_extends_a_released_note_until_the_pedal_goes_up():
    ns = song(Note(60, 100, 0.0, 0.5), ccs=(ControlChange(0.2, 64, 127), ControlChange(2.0, 64, 0)))
    out = apply_sustain(ns)
    assert out.notes[0].end == 2.0 and out.total_time == 2.0
    assert ns.notes[0].end == 0.5, "the input is not modified"


def test_sustain_cuts_a_ringing_note_when_its_pitch_is_struck_again():
    ns = song(Note(60, 100, 0.0, 0.5), Note(60, 90, 1.0, 1.5), Note(62, 100, 0.0, 0.5),
              ccs=(ControlChange(0.1, 64, 127), ControlChange(3.0, 64, 0)))  # fmt: skip
    ends = [note.end for note in apply_sustain(ns).notes]
    assert ends == [1.0, 3.0, 3.0]


def test_sustain_removes_a_note_cut_to_zero_length_and_leaves_drums_alone():
    ns = song(Note(60, 100, 1.0, 1.5), Note(60, 80, 1.0, 1.2), Note(36, 100, 1.0, 1.1, is_drum=True),
              ccs=(ControlChange(0.0, 64, 127), ControlChange(2.0, 64, 0)))  # fmt: skip
    out = apply_sustain(ns)
    assert out.notes == [Note(60, 80, 1.0, 2.0), Note(36, 100, 1.0, 1.1, is_drum=True)]


def test_sustain_only_affects_its_own_instrument_and_a_held_pedal_ends_notes_at_the_last_event():
    ns = song(Note(60, 100, 0.0, 0.5, instrument=0), Note(64, 100, 0.0, 0.5, instrument=1),
              Note(67, 100, 0.0, 1.0, instrument=1), ccs=(ControlChange(0.2, 64, 127, instrument=0),))  # fmt: skip
    out = apply_sustain(ns)
    assert [note.end for note in out.notes] == [1.0, 0.5, 1.0]
    assert out.total_time == 1.0


# --- empty and bad input ------------------------------------------------------------------------------------------


def test_a_midi_file_without_notes_reads_as_empty_and_tokenizes_to_silence(write_midi):
    path = write_midi([midi_track(0, 0, pedal=[(100, 127)])])
    ns = read_midi(path)
    assert ns.is_empty and ns.total_time == 0.0
    result = tokenize_midi(path)
    assert [content(s) for s in result.segments] == [[TIE, EOS_ID]]


def test_random_bytes_raise_a_one_line_midi_error_naming_the_file(tmp_path):
    path = tmp_path / "noise.mid"
    path.write_bytes(random.Random(1).randbytes(500))
    with pytest.raises(MidiError, match="noise.mid") as error:
        read_midi(path)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("keep", [0.3, 0.6, 0.95])
def test_a_truncated_midi_file_raises_midi_error(write_midi, keep):
    path = write_midi([midi_track(0, 0, notes=[(60 + i % 12, 100, 100 * i, 100 * i + 80) for i in range(50)])])
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(MidiError, match="song.mid.*truncated"):
        tokenize_midi(path)


def test_bytes_and_missing_files_raise_midi_error(tmp_path):
    with pytest.raises(MidiError, match="<MIDI bytes>"):
        read_midi(b"MThd\x00\x00")
    with pytest.raises(MidiError, match="missing.mid"):
        read_midi(tmp_path / "missing.mid")
    with pytest.raises(MidiError, match="upload.mid"):
        read_midi(b"not midi at all", name="upload.mid")
