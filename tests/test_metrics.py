"""Evaluation metrics (live_synth.training.metrics) and tools/evaluate.py on a hand-made one-piece dataset."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from live_synth.audio import log_mel
from live_synth.constants import SAMPLE_RATE
from live_synth.errors import MissingDependencyError
from live_synth.training.metrics import (
    log_mel_l1,
    multi_resolution_stft_distance,
    onset_f1,
    pitched_notes,
    transcribe,
)
from tests.conftest import midi_track, write_midi_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import evaluate  # noqa: E402

HAS_BASIC_PITCH = importlib.util.find_spec("basic_pitch") is not None
needs_basic_pitch = pytest.mark.skipif(
    not HAS_BASIC_PITCH,
    reason="basic-pitch not installed: pip install '.[eval]' && pip install --no-deps 'basic-pitch==0.4.0'",
)
needs_mir_eval = pytest.mark.skipif(importlib.util.find_spec("mir_eval") is None,
                                    reason="mir_eval not installed: pip install '.[eval]'")

# (MIDI pitch, onset s, duration s): three piano-like tones, one after another.
TONES = [(60, 0.30, 0.7), (64, 1.10, 0.7), (67, 1.90, 0.7)]


def harmonic_tones(tones=TONES, seconds: float = 3.0, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Decaying tones with four harmonics (1/h amplitudes) at the given pitches and onsets, peak below 1."""
    t = np.arange(int(seconds * sr)) / sr
    audio = np.zeros_like(t)
    for pitch, onset, duration in tones:
        f0 = 440.0 * 2.0 ** ((pitch - 69) / 12)
        gate = (t >= onset) & (t < onset + duration)
        envelope = np.exp(-3.0 * (t - onset)) * gate
        for h in range(1, 5):
            audio += envelope * np.sin(2 * np.pi * f0 * h * (t - onset)) / h
    return (0.25 * audio).astype(np.float32)


def test_log_mel_l1_is_zero_for_equal_and_the_offset_for_shifted_mels():
    mel = np.random.default_rng(0).normal(size=(50, 128)).astype(np.float32)
    assert log_mel_l1(mel, mel) == 0.0
    assert log_mel_l1(mel + 0.5, mel) == pytest.approx(0.5, abs=1e-6)
    # frames are aligned to the shorter input
    assert log_mel_l1(mel[:30], mel) == 0.0
    assert log_mel_l1(np.vstack([mel, mel + 9.0]), mel) == 0.0


def test_mr_stft_distance_is_zero_for_equal_audio_and_grows_with_level_and_delay():
    audio = harmonic_tones()
    assert multi_resolution_stft_distance(audio, audio) == 0.0
    slightly, much = (multi_resolution_stft_distance(g * audio, audio) for g in (1.1, 2.0))
    assert 0.0 < slightly < much
    delayed = [multi_resolution_stft_distance(np.roll(audio, int(ms * SAMPLE_RATE / 1000)), audio) for ms in (5, 40)]
    assert 0.0 < delayed[0] < delayed[1]


@needs_mir_eval
def test_onset_f1_perfect_for_identical_notes_and_zero_for_disjoint_ones():
    notes = [(0.5, 1.0, 60), (1.0, 1.5, 64), (1.0, 2.0, 67)]
    assert onset_f1(notes, notes) == (1.0, 1.0, 1.0)
    wrong_pitch = [(start, end, pitch + 1) for start, end, pitch in notes]
    assert onset_f1(notes, wrong_pitch).f1 == 0.0
    assert onset_f1(notes, [(5.0, 6.0, 60)]).f1 == 0.0
    half = onset_f1(notes, notes[:1] + [(3.0, 3.5, 72)])
    assert (half.precision, half.recall) == pytest.approx((0.5, 1 / 3))


@needs_mir_eval
def test_onset_f1_respects_the_50_ms_tolerance_and_ignores_offsets():
    reference = [(1.0, 1.5, 60)]
    assert onset_f1(reference, [(1.049, 3.0, 60)]).f1 == 1.0
    assert onset_f1(reference, [(0.951, 1.1, 60)]).f1 == 1.0
    assert onset_f1(reference, [(1.051, 1.5, 60)]).f1 == 0.0
    assert onset_f1(reference, [(0.949, 1.5, 60)]).f1 == 0.0


@needs_mir_eval
def test_onset_f1_of_empty_lists():
    assert onset_f1([], []).f1 == 1.0
    assert onset_f1([(1.0, 1.5, 60)], []).f1 == 0.0
    assert onset_f1([], [(1.0, 1.5, 60)]).f1 == 0.0


def test_pitched_notes_drops_drums_per_note_or_per_piece():
    notes = np.array([[0.0, 0.5, 60, 100, 0], [0.5, 0.6, 36, 90, 0], [1.0, 1.5, 64, 80, 0]], np.float32)
    assert pitched_notes(notes, np.array([False, True, False])) == [(0.0, 0.5, 60), (1.0, 1.5, 64)]
    assert pitched_notes(notes, np.bool_(True)) == []
    assert len(pitched_notes(notes, None)) == 3
    assert pitched_notes(np.zeros((0, 5), np.float32), np.zeros(0, bool)) == []


@needs_basic_pitch
def test_basic_pitch_finds_the_pitches_and_onsets_of_synthesized_tones():
    reference = [(onset, onset + duration, pitch) for pitch, onset, duration in TONES]
    found = transcribe(harmonic_tones(), SAMPLE_RATE)
    scores = onset_f1(reference, found)
    assert scores.recall == 1.0, found
    assert scores.f1 >= 0.6, found
    # another sample rate is resampled, not misread
    resampled = transcribe(harmonic_tones(sr=22_050), 22_050)
    assert onset_f1(reference, resampled).recall == 1.0, resampled


# --- tools/evaluate.py ----------------------------------------------------------------------------------------------


def write_piece(folder: Path, tmp_path: Path) -> None:
    """validation/00000.npz: a 3 s MIDI (three piano tones + one drum hit), numpy-synthesized audio and its log-mel."""
    notes = [(pitch, 100, int(onset * 1000), int((onset + duration) * 1000)) for pitch, onset, duration in TONES]
    drums = midi_track(channel=9, program=None, notes=[(36, 110, 1500, 1600)])
    midi_path = write_midi_file(tmp_path / "piece.mid", [midi_track(notes=notes), drums])
    audio = harmonic_tones()
    rows = [[on / 1000, off / 1000, pitch, vel, 0] for pitch, vel, on, off in notes] + [[1.5, 1.6, 36, 110, 0]]
    folder.mkdir(parents=True)
    np.savez(
        folder / "00000.npz",
        name=np.array("three tones"),
        midi=np.frombuffer(midi_path.read_bytes(), np.uint8),
        notes=np.array(rows, np.float32),
        is_drum=np.array([False, False, False, True]),
        mel=log_mel(torch.from_numpy(audio)).numpy().astype(np.float16),
        audio=np.round(audio * 32767).astype(np.int16),
    )


@needs_basic_pitch
def test_evaluate_writes_report_picture_and_json_for_a_tiny_model(tmp_path, capsys):
    write_piece(tmp_path / "ds" / "validation", tmp_path)
    out = tmp_path / "report"
    argv = ["--dataset", str(tmp_path / "ds"), "--model", "tiny", "--vocoder", "griffin-lim",
            "--griffin-lim-iters", "4", "--steps", "1", "--sweep", "1,2", "--out", str(out), "-q"]
    assert evaluate.main(argv) == 0
    assert "onset F1 ours" in capsys.readouterr().out

    assert (out / evaluate.PNG_FILE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    result = json.loads((out / evaluate.JSON_FILE).read_text())
    overall, piece = result["overall"], result["pieces"][0]
    assert piece["name"] == "three tones" and piece["notes"] == 3  # the drum hit is not a reference note
    assert overall["reference"]["f1"] > 0.5  # Basic Pitch hears the numpy tones
    assert set(overall["renders"]) == {"1", "2"}
    for system in [overall["vocoder_only"], *overall["renders"].values()]:
        for key in ("log_mel_l1", "mr_stft", "f1", "f1_ratio_reference", "rtf"):
            assert math.isfinite(system[key]), (key, system)
    assert 0.0 < overall["vocoder_only"]["log_mel_l1"] < overall["renders"]["1"]["log_mel_l1"]

    report = (out / evaluate.REPORT_FILE).read_text()
    assert "python tools/evaluate.py --dataset" in report and "revision:" in report and "machine:" in report
    for row in ("| FluidSynth reference audio |", "(vocoder only): the reference through the same vocoder",
                "| ours: dpmpp × 1 → griffin-lim(4 it) |", "| 1 |", "| 2 |", "| three tones |"):
        assert row in report, row
    assert "RANDOM WEIGHTS" in report


def test_evaluate_rejects_a_dataset_without_heldout_pieces(tmp_path, capsys):
    (tmp_path / "ds" / "validation").mkdir(parents=True)
    assert evaluate.main(["--dataset", str(tmp_path / "ds"), "--model", "tiny", "--out", str(tmp_path / "o")]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "no .npz pieces" in error[0]
    assert not (tmp_path / "o").exists()


def test_transcribe_without_basic_pitch_raises_one_line_with_the_install_hint(monkeypatch):
    from live_synth.training import metrics

    monkeypatch.setitem(sys.modules, "basic_pitch", None)  # makes `import basic_pitch` fail
    metrics._basic_pitch.cache_clear()
    try:
        with pytest.raises(MissingDependencyError, match="pip install --no-deps 'basic-pitch==0.4.0'") as error:
            transcribe(harmonic_tones(seconds=0.5), SAMPLE_RATE)
        assert "\n" not in str(error.value)
    finally:
        metrics._basic_pitch.cache_clear()  # the next caller loads the real model again
