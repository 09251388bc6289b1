"""The dataset tool: procedural MIDI, music21 export, dry rendering, the shard format, tools/make_dataset.py."""

from __future__ import annotations

import io
import json
import shutil
import sys
from pathlib import Path

import mido
import numpy as np
import pytest
import torch

from live_synth.audio import log_mel
from live_synth.errors import LiveSynthError
from live_synth.midi import apply_sustain, read_midi
from live_synth.training import procedural, shards, synth

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import make_dataset  # noqa: E402

SR = 16_000
HAS_FLUIDSYNTH = shutil.which("fluidsynth") is not None and synth.DEFAULT_SOUNDFONT.is_file()
needs_fluidsynth = pytest.mark.skipif(
    not HAS_FLUIDSYNTH, reason="fluidsynth binary or /usr/share/sounds/sf2/FluidR3_GM.sf2 missing "
    "(apt-get install fluidsynth fluid-soundfont-gm)"
)


def _tinysoundfont_ok() -> bool:
    try:
        import tinysoundfont  # noqa: F401
    except ImportError:
        return False
    return synth.DEFAULT_SOUNDFONT.is_file()


needs_tinysoundfont = pytest.mark.skipif(
    not _tinysoundfont_ok(), reason="tinysoundfont or FluidR3_GM.sf2 missing (pip install --no-deps tinysoundfont)"
)


def _any_renderer() -> str:
    if HAS_FLUIDSYNTH:
        return "fluidsynth"
    if _tinysoundfont_ok():
        return "tinysoundfont"
    pytest.skip("no renderer: install fluidsynth + fluid-soundfont-gm, or tinysoundfont")


def melodic_polyphony(notes) -> int:
    """Most melodic keys held at once (before the pedal); a note ending where another starts does not overlap it."""
    events = sorted([(n.start, 1) for n in notes if not n.is_drum] + [(n.end, -1) for n in notes if not n.is_drum])
    held = most = 0
    for _, step in events:
        held += step
        most = max(most, held)
    return most


# --- procedural MIDI ------------------------------------------------------------------------------------------------


def test_procedural_same_seed_same_bytes_different_seeds_differ():
    first = [procedural.midi_bytes(procedural.generate(seed)) for seed in range(4)]
    again = [procedural.midi_bytes(procedural.generate(seed)) for seed in range(4)]
    assert first == again
    assert len(set(first)) == 4


@pytest.fixture(scope="module")
def procedural_pieces():
    return [(seed, read_midi(procedural.midi_bytes(procedural.generate(seed)))) for seed in range(60)]


def test_procedural_coverage(procedural_pieces):
    velocities = [n.velocity for _, ns in procedural_pieces for n in ns.notes]
    assert min(velocities) == procedural.MIN_VELOCITY and max(velocities) == procedural.MAX_VELOCITY
    quarters = np.histogram(velocities, bins=[20, 47, 74, 101, 128])[0] / len(velocities)
    assert quarters.min() > 0.12, quarters  # spread over the whole range, not bunched
    polyphony = [melodic_polyphony(ns.notes) for _, ns in procedural_pieces]
    assert max(polyphony) == procedural.MAX_POLYPHONY
    assert len(set(polyphony) - {0}) >= 6  # from solo lines to 8-note chords
    drums = [ns for _, ns in procedural_pieces if any(n.is_drum for n in ns.notes)]
    pedal = [ns for _, ns in procedural_pieces if any(c.number == 64 and c.value >= 64 for c in ns.control_changes)]
    assert 5 <= len(drums) <= 40 and 3 <= len(pedal) <= 40
    assert all(n.pitch >= 35 for ns in drums for n in ns.notes if n.is_drum)
    wanted = {"piano", "chromatic percussion", "organ", "guitar", "bass", "strings", "ensemble", "brass", "reed",
              "pipe", "synth lead", "synth pad"}  # fmt: skip
    assert {procedural.gm_family(i.program) for i in procedural.INSTRUMENTS} == wanted
    played = {procedural.gm_family(n.program) for _, ns in procedural_pieces for n in ns.notes if not n.is_drum}
    assert len(played & wanted) >= 10


def test_procedural_lengths_tempos_and_ranges(procedural_pieces):
    for seed, ns in procedural_pieces:
        midi = procedural.generate(seed)
        assert procedural.MIN_SECONDS - 1e-6 <= midi.length <= procedural.MAX_SECONDS + 1e-6
        bpm = mido.tempo2bpm(next(m.tempo for m in midi.tracks[0] if m.type == "set_tempo"))
        assert procedural.MIN_BPM - 0.01 <= bpm <= procedural.MAX_BPM + 0.01
        assert 1 <= melodic_polyphony(ns.notes) <= procedural.MAX_POLYPHONY or all(n.is_drum for n in ns.notes)
        for note in ns.notes:
            if not note.is_drum:
                instrument = procedural.BY_PROGRAM[note.program]
                assert instrument.low <= note.pitch <= instrument.high


# --- the music21 corpus ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus():
    pytest.importorskip("music21", reason="music21 is needed for the corpus (pip install music21)")
    from live_synth.training import corpus

    return corpus


def test_corpus_export_reorchestrates(corpus):
    pieces = [corpus.corpus_midi("bach/bwv66.6.mxl", seed) for seed in range(6)]
    assert [p.midi for p in pieces] == [corpus.corpus_midi("bach/bwv66.6.mxl", s).midi for s in range(6)]
    assert pieces[0].name == "music21/bach/bwv66.6"
    families, velocities, drums = set(), set(), 0
    for piece in pieces:
        ns = read_midi(piece.midi)
        melodic = [n for n in ns.notes if not n.is_drum]
        assert 2.0 <= ns.total_time <= corpus.MAX_SECONDS + 1e-6
        template = set(corpus.ENSEMBLES[piece.ensemble])
        if template:  # the ensemble's programs are there (a chordal part may move to a chord instrument)
            assert template & {n.program for n in melodic}
        families |= {procedural.gm_family(n.program) for n in melodic}
        velocities |= {n.velocity for n in ns.notes}
        drums += any(n.is_drum for n in ns.notes)
    assert len(families) >= 3 and len(velocities) > 30  # reassigned programs, redrawn velocities


def test_corpus_drum_part_on_channel_10(corpus):
    for seed in range(12):
        piece = corpus.corpus_midi("bach/bwv66.6.mxl", seed)
        midi = mido.MidiFile(file=io.BytesIO(piece.midi))
        channels = {m.channel for t in midi.tracks for m in t if m.type == "note_on"}
        if procedural.DRUM_CHANNEL in channels:
            return
    pytest.fail("no seed out of 12 added a drum part")


def test_corpus_licence_exclusions(corpus):
    works = corpus.candidate_works()
    assert works and not [w for w in works if w.split("/")[0] in corpus.EXCLUDED_FOLDERS]
    with pytest.raises(corpus.CorpusSkip, match="licence"):
        corpus.licence_check("palestrina/Agnus_01.krn")  # "Rights to all derivative electronic formats reserved"
    with pytest.raises(corpus.CorpusSkip, match="licence"):
        corpus.licence_check("ciconia/quod_jactatur.xml")  # CC-BY-SA
    order = corpus.select_works(0)
    assert order == corpus.select_works(0) and order != corpus.select_works(1) and sorted(order) == works


# --- rendering ------------------------------------------------------------------------------------------------------


def two_second_midi(program: int, pitch: int, pedal: bool = False) -> bytes:
    """One note of 0.5 s at 120 bpm, in a file 2 s long; with `pedal`, the pedal is down from 0 s to 1.5 s."""
    midi = mido.MidiFile(ticks_per_beat=480)
    track = mido.MidiTrack([mido.Message("program_change", program=program)])
    if pedal:
        track.append(mido.Message("control_change", control=64, value=127))
    track += [mido.Message("note_on", note=pitch, velocity=100), mido.Message("note_off", note=pitch, time=480)]
    if pedal:
        track.append(mido.Message("control_change", control=64, value=0, time=2 * 480))
    track.append(mido.MetaMessage("end_of_track", time=(1 if pedal else 3) * 480))
    midi.tracks.append(track)
    return procedural.midi_bytes(midi)


def check_render(renderer: str) -> None:
    r = synth.make_renderer(renderer)
    assert r.sample_rate == SR
    audio = r.render(two_second_midi(73, 69))  # flute, A4
    assert audio.dtype == np.float32 and audio.shape == (3 * SR,)  # 2 s + 1 s tail
    assert 0.001 < audio.std() and np.abs(audio).max() < 1.0
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    freqs = np.fft.rfftfreq(len(audio), 1 / SR)
    assert abs(freqs[np.argmax(spectrum)] - 440.0) < 10.0  # the energy is at the played pitch
    # Piano released at 0.5 s; 0.7-1.0 s later a dry render is silent (~5e-7 rms here) while FluidSynth's default
    # reverb still rings (3e-5); with the pedal down until 1.5 s the note rings on (2e-3 to 4e-3).
    dry = r.render(two_second_midi(0, 60))[int(1.2 * SR) : int(1.5 * SR)]
    held = r.render(two_second_midi(0, 60, pedal=True))[int(1.2 * SR) : int(1.5 * SR)]
    assert dry.std() < 5e-6 and held.std() > 5e-4


@needs_fluidsynth
def test_fluidsynth_renders_the_played_pitch_dry_and_reproducibly():
    check_render("fluidsynth")
    r = synth.make_renderer("fluidsynth")
    midi = two_second_midi(40, 57)
    assert np.array_equal(r.render(midi), r.render(midi))


@needs_tinysoundfont
def test_tinysoundfont_renders_the_played_pitch_and_applies_the_pedal():
    check_render("tinysoundfont")


def test_renderer_errors_are_one_line(tmp_path):
    with pytest.raises(LiveSynthError, match="unknown renderer"):
        synth.make_renderer("timidity")
    with pytest.raises(LiveSynthError, match="soundfont not found"):
        synth.find_soundfont(tmp_path / "missing.sf2")


# --- the shard format -----------------------------------------------------------------------------------------------


def small_piece(audio: bool = True) -> shards.Piece:
    midi = two_second_midi(0, 60, pedal=True)
    notes, is_drum = shards.note_arrays(apply_sustain(read_midi(midi)))
    samples = (np.sin(np.arange(3 * SR) * 0.1) * 8000).astype(np.int16)
    mel = log_mel(torch.from_numpy(samples / np.float32(32767))).numpy().astype(np.float16)
    return shards.Piece("procedural/00007", "procedural", midi, notes, is_drum, mel, samples if audio else None)


def test_shard_round_trip_is_exact_and_deterministic(tmp_path):
    piece = small_piece()
    shards.write_piece(tmp_path / "a.npz", piece)
    shards.write_piece(tmp_path / "b.npz", piece)
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npz", "b.npz"]  # no temporary files left
    back = shards.read_piece(tmp_path / "a.npz")
    assert (back.name, back.source, back.midi) == (piece.name, piece.source, piece.midi)
    for key in ("notes", "is_drum", "mel", "audio"):
        got, want = getattr(back, key), getattr(piece, key)
        assert np.array_equal(got, want) and got.dtype == want.dtype
    ns = back.note_sequence()
    assert [(n.pitch, n.velocity, n.program) for n in ns.notes] == [(60, 100, 0)]
    assert ns.notes[0].end == pytest.approx(1.5)  # the pedal was applied
    with np.load(tmp_path / "a.npz", allow_pickle=False) as data:  # plain numpy can read it (the trainer does)
        assert data["mel"].shape == piece.mel.shape


def test_shard_errors(tmp_path):
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(LiveSynthError, match="bad.npz"):
        shards.read_piece(tmp_path / "bad.npz")
    with pytest.raises(LiveSynthError, match="no manifest.json"):
        shards.load_manifest(tmp_path)
    with pytest.raises(ValueError, match="mel has"):
        shards.Piece("x", "music21", b"", np.zeros((0, 5), np.float32), np.zeros(0, bool),
                     np.zeros((3, 128), np.float16), np.zeros(320 * 5, np.int16))  # fmt: skip


def test_heldout_split_is_a_stable_hash_of_the_name():
    names = [f"procedural/{i:05d}" for i in range(2000)]
    held = [n for n in names if shards.is_heldout(n, 0, 0.1)]
    assert 140 < len(held) < 260
    assert held[:50] == [n for n in names[:1000] if shards.is_heldout(n, 0, 0.1)][:50]
    assert held != [n for n in names if shards.is_heldout(n, 1, 0.1)]
    splits = [shards.split_of(n, 0, 0.2) for n in names]
    assert 150 < splits.count("validation") < 250 and 150 < splits.count("test") < 250


def _chorale(top: list[int], program: int, octave: int) -> bytes:
    import io

    import mido

    song = mido.MidiFile()
    track = mido.MidiTrack()
    song.tracks.append(track)
    track.append(mido.Message("program_change", program=program))
    for pitch in top:
        track.append(mido.Message("note_on", note=pitch + 12 * octave, velocity=80, time=0))
        track.append(mido.Message("note_on", note=pitch + 12 * octave - 7, velocity=70, time=0))
        track.append(mido.Message("note_off", note=pitch + 12 * octave, velocity=0, time=240))
        track.append(mido.Message("note_off", note=pitch + 12 * octave - 7, velocity=0, time=0))
    buffer = io.BytesIO()
    song.save(file=buffer)
    return buffer.getvalue()


def test_one_tunes_harmonisations_share_a_work_and_so_a_split():
    """Two corpus pieces with the same melody (other BWV numbers, instruments, octaves) are one work; another
    melody is another work; generated pieces are each their own work."""
    tune, other = [60, 62, 64, 60, 65, 64, 62, 60], [60, 59, 57, 55, 57, 59, 60, 62]
    a = shards.work_key("music21/bach/bwv4.8", _chorale(tune, 0, 0))
    b = shards.work_key("music21/bach/bwv158.4", _chorale([p + 3 for p in tune], 40, 1))
    c = shards.work_key("music21/bach/bwv269", _chorale(other, 0, 0))
    assert a == b != c
    assert shards.work_key("music21/bach/bwv66.6", b"not midi") == "music21/bach/bwv66"
    assert shards.work_key("procedural/00012") == "procedural/00012"


# --- tools/make_dataset.py ------------------------------------------------------------------------------------------


def make(out: Path, *extra: str) -> int:
    args = [str(out), "--seed", "3", "--procedural", "2", "--corpus", "1", "--heldout-fraction", "0.5",
            "--max-seconds", "3", "--renderer", _any_renderer(), *extra]  # fmt: skip
    return make_dataset.main(args)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    pytest.importorskip("music21", reason="music21 is needed for the corpus (pip install music21)")
    out = tmp_path_factory.mktemp("ds") / "small"
    assert make(out) == 0
    return out


def test_make_dataset_layout_and_manifest(dataset):
    files = sorted(p.relative_to(dataset).as_posix() for p in dataset.rglob("*") if p.is_file())
    manifest = shards.load_manifest(dataset)
    assert files == sorted(["manifest.json", *manifest["pieces"]])
    assert all(f.split("/")[0] in ("train", "validation", "test") for f in manifest["pieces"])
    assert manifest["seed"] == 3 and manifest["sample_rate"] == SR
    assert manifest["sources"] == {"procedural": 2, "music21": 1, "sparse": 0, "expression": 0}
    assert sum(manifest["counts"].values()) == 3 and manifest["renderer"]["name"] in synth.RENDERERS
    assert manifest["renderer"]["reverb"] is False and manifest["soundfont"]["name"] == "FluidR3_GM.sf2"
    for split in ("validation", "test"):
        assert sorted(manifest[f"{split}_pieces"]) == sorted(p.name for p in shards.iter_pieces(dataset, split))
    assert manifest["created_by"].startswith("python tools/make_dataset.py")
    assert sum(manifest["families"].values()) == sum(manifest["programs"].values()) == sum(manifest["notes"].values())


def test_make_dataset_pieces_are_consistent(dataset):
    pieces = [p for split in shards.SPLITS for p in shards.iter_pieces(dataset, split)]
    assert sorted(p.source for p in pieces) == ["music21", "procedural", "procedural"]
    for piece in pieces:
        assert piece.audio is not None and piece.mel.shape == (-(-len(piece.audio) // 320), 128)
        assert 3.0 < piece.seconds <= 4.0 + 1e-9  # cut at 3 s, plus the 1 s tail
        mel = log_mel(torch.from_numpy(piece.float_audio())).numpy().astype(np.float16)
        assert np.array_equal(mel, piece.mel)
        assert piece.audio.std() > 50  # not silent
        expected, expected_drums = shards.note_arrays(apply_sustain(read_midi(piece.midi)))
        assert np.array_equal(piece.notes, expected) and np.array_equal(piece.is_drum, expected_drums)
        assert len(piece.notes) > 0


def test_make_dataset_is_deterministic_and_features_only_copy_matches(dataset, tmp_path):
    assert make(tmp_path / "again") == 0
    for name in json.loads((dataset / "manifest.json").read_text())["pieces"]:
        assert (tmp_path / "again" / name).read_bytes() == (dataset / name).read_bytes(), name
    assert make(tmp_path / "lean", "--no-audio") == 0
    for split in shards.SPLITS:
        for full, lean in zip(shards.iter_pieces(dataset, split), shards.iter_pieces(tmp_path / "lean", split)):
            assert lean.audio is None and np.array_equal(lean.mel, full.mel) and lean.midi == full.midi


def test_a_packed_dataset_unpacks_to_the_same_pieces_within_the_quantisation_step(dataset, tmp_path, capsys):
    import pack_dataset

    assert pack_dataset.main(["pack", str(dataset), str(tmp_path / "pack")]) == 0
    assert sorted(p.name for p in (tmp_path / "pack").iterdir()) == ["manifest.json", "train.xz", "validation.xz"]
    assert pack_dataset.main(["unpack", str(tmp_path / "pack"), str(tmp_path / "back")]) == 0
    for split in ("train", "validation"):
        pairs = list(zip(shards.iter_pieces(dataset, split), shards.iter_pieces(tmp_path / "back", split)))
        assert pairs and len(pairs) == len(shards.piece_paths(dataset, split))
        for full, back in pairs:
            assert (back.name, back.source, back.midi) == (full.name, full.source, full.midi) and back.audio is None
            assert np.array_equal(back.notes, full.notes) and np.array_equal(back.is_drum, full.is_drum)
            error = np.abs(back.mel.astype(np.float32) - full.mel.astype(np.float32))
            assert error.max() <= pack_dataset.STEP / 2 + 2e-3  # + float16 rounding of the restored value
    assert not (tmp_path / "back" / "test").exists()  # the test split stays home
    assert pack_dataset.main(["unpack", str(tmp_path / "nothing"), str(tmp_path / "x")]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_make_dataset_refuses_a_non_empty_folder_and_a_missing_soundfont(dataset, tmp_path, capsys):
    assert make(dataset) == 1
    assert "not empty" in capsys.readouterr().err
    assert make(tmp_path / "x", "--soundfont", str(tmp_path / "none.sf2")) == 1
    err = capsys.readouterr().err
    assert "soundfont not found" in err and len(err.strip().splitlines()) == 1
