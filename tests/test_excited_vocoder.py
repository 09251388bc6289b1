"""The note excitation and the excited vocoder: exact pitch and onset, streaming = offline, rollback, ONNX, files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from live_synth.audio import load_vocoder, log_mel
from live_synth.audio.excitation import excitation
from live_synth.audio.excited_vocoder import (
    PRESETS, ExcitedNet, ExcitedStream, ExcitedVocoder, is_excited_path, load_excited, save_excited,
)  # fmt: skip
from live_synth.constants import HOP, N_MELS, SAMPLE_RATE
from live_synth.errors import CheckpointError
from live_synth.midi.events import BEND, NoteEvents

SR = SAMPLE_RATE


def events(rows, bends=()) -> NoteEvents:
    """rows: (onset, release, pitch, velocity, is_drum); lane 0 bends: (time, semitones)."""
    notes = np.array([(on, off, p, v, 0, d, 0) for on, off, p, v, d in rows], np.float64).reshape(-1, 7)
    controls = {0: np.array([(t, BEND, s) for t, s in bends], np.float64).reshape(-1, 3)} if bends else {}
    return NoteEvents(notes, controls)


def dominant_hz(signal: np.ndarray) -> float:
    """The strongest partial (a sawtooth's is its fundamental), interpolated by zero-padding the FFT 8x."""
    spectrum = np.abs(np.fft.rfft(signal * np.hanning(len(signal)), 8 * len(signal)))
    return float(np.argmax(spectrum) * SR / (8 * len(signal)))


# --- the excitation -------------------------------------------------------------------------------------------------


def test_a_note_starts_on_its_onset_sample_at_its_pitch_and_fades_after_release():
    ev = events([(0.1003, 0.6, 69, 100, 0)])
    x = excitation(ev, 0, SR)
    onset = int(np.ceil(0.1003 * SR))
    assert np.all(x[:onset] == 0) and np.abs(x[onset : onset + 40]).max() > 0.05
    assert dominant_hz(x[onset + 800 : onset + 4800]) == pytest.approx(440.0, rel=0.01)
    assert np.abs(x[int(0.86 * SR) :]).max() == 0  # 0.25 s after the release: silent
    assert np.abs(x[int(0.62 * SR) : int(0.7 * SR)]).max() < np.abs(x[int(0.4 * SR) : int(0.5 * SR)]).max()


def test_velocity_scales_the_note():
    loud = excitation(events([(0.0, 1.0, 60, 120, 0)]), 0, SR // 2)
    soft = excitation(events([(0.0, 1.0, 60, 30, 0)]), 0, SR // 2)
    assert np.abs(loud).max() / np.abs(soft).max() == pytest.approx(4.0, rel=0.01)


def test_a_bend_moves_the_pitch_without_a_phase_jump():
    ev = events([(0.0, 2.0, 69, 100, 0)], bends=[(0.5, 2.0)])
    x = excitation(ev, 0, 2 * SR)
    assert dominant_hz(x[int(0.1 * SR) : int(0.4 * SR)]) == pytest.approx(440.0, rel=0.01)
    assert dominant_hz(x[int(0.6 * SR) : int(0.9 * SR)]) == pytest.approx(440.0 * 2 ** (2 / 12), rel=0.01)
    # Phase-continuous: the step from sample to sample at the bend is no larger than elsewhere in the note.
    steps = np.abs(np.diff(x))
    at_bend = steps[int(0.5 * SR) - 3 : int(0.5 * SR) + 3].max()
    assert at_bend <= steps[int(0.6 * SR) : int(0.9 * SR)].max() + 1e-6


def test_the_excitation_is_the_same_in_blocks_as_in_one_piece():
    ev = events([(0.05, 0.5, 60, 100, 0), (0.2, np.inf, 64, 80, 0), (0.3, 0.31, 36, 110, 1)], bends=[(0.25, -1.0)])
    whole = excitation(ev, 0, SR)
    blocks = np.concatenate([excitation(ev, a, a + 777) for a in range(0, SR, 777)])[:SR]
    np.testing.assert_array_equal(whole, blocks)


def test_a_drum_hit_is_a_short_burst():
    x = excitation(events([(0.2, 0.2, 38, 127, 1)]), 0, SR)
    start = int(round(0.2 * SR))
    assert np.all(x[:start] == 0) and np.abs(x[start : start + 200]).max() > 0.1
    assert np.all(x[start + int(0.12 * SR) :] == 0)


# --- the vocoder ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny() -> ExcitedVocoder:
    torch.manual_seed(0)
    return ExcitedVocoder(ExcitedNet(PRESETS["tiny"]))


def song():
    ev = events([(0.05, 0.4, 60, 100, 0), (0.3, 0.9, 67, 90, 0), (0.5, 0.5, 38, 100, 1)], bends=[(0.6, 1.0)])
    mel = np.random.default_rng(0).normal(-4, 1.5, (50, N_MELS)).astype(np.float32)
    return mel, ev


def test_streaming_equals_offline_one_frame_at_a_time(tiny):
    mel, ev = song()
    offline = tiny(mel, ev)
    assert offline.shape == (len(mel) * HOP,)
    stream = ExcitedStream(tiny)
    streamed = np.concatenate([stream(mel[i : i + 1], ev) for i in range(len(mel))] + [stream.flush(ev)])
    np.testing.assert_allclose(streamed[HOP:], offline, rtol=0, atol=1e-6)


def test_the_notes_change_the_output_and_mel_only_still_runs(tiny):
    mel, ev = song()
    with_notes, without = tiny(mel, ev), tiny(mel)
    assert np.isfinite(without).all() and without.shape == with_notes.shape
    assert np.abs(with_notes - without).max() > 1e-4


def test_rollback_restores_exactly_and_a_new_note_changes_what_follows(tiny):
    mel, ev = song()
    stream = ExcitedStream(tiny)
    for i in range(20):
        stream(mel[i : i + 1], ev)
    saved = stream.snapshot()
    first = np.concatenate([stream(mel[i : i + 1], ev) for i in range(20, 30)])
    stream.restore(saved)
    again = np.concatenate([stream(mel[i : i + 1], ev) for i in range(20, 30)])
    np.testing.assert_array_equal(first, again)
    stream.restore(saved)
    later = events([*[(n[0], n[1], n[2], n[3], n[5]) for n in ev.notes], (0.44, 0.8, 72, 120, 0)])
    changed = np.concatenate([stream(mel[i : i + 1], later) for i in range(20, 30)])
    assert np.abs(changed - first).max() > 1e-4


def test_an_untrained_vocoder_already_plays_the_note_it_is_told(tiny):
    """At initialisation the head adds nothing to the prior magnitude and the gate passes the excitation's phase:
    a 440 Hz tone's mel with its note comes out at 440 Hz (the DSP around the network is right)."""
    t = np.arange(SR) / SR
    tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    mel = log_mel(torch.from_numpy(tone)).numpy()
    audio = tiny(mel, events([(0.0, 1.0, 69, 100, 0)]))
    assert dominant_hz(audio[4000:12000]) == pytest.approx(440.0, abs=5.0)


def test_onnx_runtime_stream_matches_torch(tiny):
    pytest.importorskip("onnxruntime")
    mel, ev = song()
    a, b = ExcitedStream(tiny, "torch"), ExcitedStream(tiny, "onnx")
    out_a = np.concatenate([a(mel[i : i + 2], ev) for i in range(0, len(mel), 2)])
    out_b = np.concatenate([b(mel[i : i + 2], ev) for i in range(0, len(mel), 2)])
    np.testing.assert_allclose(out_a, out_b, rtol=0, atol=1e-5)


def test_files_round_trip_and_load_vocoder_picks_the_family(tiny, tmp_path: Path):
    folder = save_excited(tiny.net, tmp_path / "voc", fp16=False)
    assert is_excited_path(folder)
    loaded = load_vocoder(folder)
    assert isinstance(loaded, ExcitedVocoder)
    mel, ev = song()
    np.testing.assert_allclose(loaded(mel, ev), tiny(mel, ev), rtol=0, atol=1e-6)
    (folder / "vocoder.json").write_text('{"kind": "live-synth-excited-vocoder", "dim": "x"}')
    with pytest.raises(CheckpointError, match="vocoder.json"):
        load_excited(folder)


def test_the_trainer_lowers_the_loss_on_a_tiny_dataset(tmp_path: Path):
    """Two pieces of tones with their MIDI: a few steps of training lower the validation loss; best.pt exports."""
    import io

    import mido

    from live_synth.training.excited_trainer import ExcitedTrainConfig, export, train
    from live_synth.training.shards import Piece, piece_path, write_piece

    for split, index, pitch in (("train", 0, 57), ("train", 1, 64), ("validation", 2, 60)):
        midi = mido.MidiFile()
        track = mido.MidiTrack()
        midi.tracks.append(track)
        track += [mido.Message("note_on", note=pitch, velocity=100, time=0),
                  mido.Message("note_off", note=pitch, velocity=0, time=960)]  # 1 s at 120 bpm, 480 tpb
        data = io.BytesIO()
        midi.save(file=data)
        t = np.arange(int(1.5 * SR)) / SR
        f0 = 440 * 2 ** ((pitch - 69) / 12)
        audio = (0.3 * np.sin(2 * np.pi * f0 * t) * (t < 1.0) * 32767).astype(np.int16)
        mel = log_mel(torch.from_numpy(audio.astype(np.float32) / 32767)).numpy().astype(np.float16)
        piece = Piece(f"test/{index}", "procedural", data.getvalue(), np.array([[0, 1, pitch, 100, 0]], np.float32),
                      np.zeros(1, np.bool_), mel, audio)
        path = piece_path(tmp_path / "ds", split, index)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_piece(path, piece)
    cfg = ExcitedTrainConfig(model="tiny", crop_frames=20, batch_size=2, warmup_steps=1, valid_every=1,
                             valid_pieces=1, lr=3e-3)
    result = train(tmp_path / "ds", tmp_path / "run", cfg, minutes=5.0, log=lambda m: None, max_steps=8)
    rows = (tmp_path / "run" / "loss.csv").read_text().splitlines()
    header = rows[0].split(",")
    valid = [float(r.split(",")[header.index("valid")]) for r in rows[1:]]
    assert result["step"] == 8 and min(valid[-3:]) < valid[0]
    shipped = export(tmp_path / "run", tmp_path / "shipped")
    assert isinstance(load_vocoder(shipped), ExcitedVocoder)


def test_a_flood_is_cut_to_the_voice_limit_the_same_way_in_blocks_and_whole():
    """500 notes in half a second: no more than VOICES excite at once, decided by the notes (blocks agree), and the
    work stays bounded (a flood into `play` must not starve the device)."""
    import time

    from live_synth.audio.excitation import VOICES

    rows = [(0.001 * i, 0.001 * i + 0.3, 40 + i % 40, 90, 0) for i in range(500)]
    ev = events(rows)
    whole = excitation(ev, 0, SR)
    blocks = np.concatenate([excitation(ev, a, a + 800) for a in range(0, SR, 800)])
    np.testing.assert_array_equal(whole, blocks)
    held = [(0.001 * i, np.inf, 40 + i % 40, 90, 0) for i in range(100)]  # 100 held keys in 0.1 s
    after = excitation(events(held), int(0.2 * SR), int(0.25 * SR))
    only_last = excitation(events(held[-VOICES:]), int(0.2 * SR), int(0.25 * SR))
    np.testing.assert_allclose(after, only_last, atol=1e-6)  # the 68 older keys lost their voices
    start = time.perf_counter()
    for a in range(0, SR // 2, 800):
        excitation(ev, a, a + 800)
    assert (time.perf_counter() - start) / (SR // 2 // 800) < 0.01  # well under a 20 ms frame per call
