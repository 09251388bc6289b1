"""Vocoders (Griffin-Lim, ONNX), WAV files and spectrogram pictures."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from live_synth.audio import (
    GriffinLimVocoder,
    OnnxVocoder,
    Vocoder,
    load_vocoder,
    log_mel,
    read_wav,
    save_spectrogram_png,
    write_wav_atomic,
)
from live_synth.constants import HOP, LOG_MEL_MIN, N_MELS, SAMPLE_RATE
from live_synth.errors import CheckpointError, LiveSynthError, MissingDependencyError


def harmonic_signal(seconds: float = 3.0) -> np.ndarray:
    """Overlapping notes with five harmonics each and a decaying envelope: something like played music."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    audio = np.zeros_like(t)
    for f0, start, stop in [(220.0, 0.0, 1.2), (330.0, 0.4, 2.0), (440.0, 1.2, 2.6), (523.25, 1.8, 3.0)]:
        envelope = ((t >= start) & (t < stop)) * np.exp(-3.0 * np.clip(t - start, 0.0, None))
        for harmonic in range(1, 6):
            audio += envelope * 0.2 / harmonic * np.sin(2 * np.pi * f0 * harmonic * t)
    return audio.astype(np.float32)


@pytest.fixture(scope="module")
def harmonic_log_mel() -> np.ndarray:
    return log_mel(torch.from_numpy(harmonic_signal())).numpy()


# --- Griffin-Lim ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("frames", [0, 1, 2, 7, 256])
def test_griffin_lim_returns_hop_samples_per_frame(frames: int) -> None:
    features = np.full((frames, N_MELS), -4.0, dtype=np.float32)
    audio = GriffinLimVocoder(n_iter=2)(features)
    assert audio.shape == (frames * HOP,) and audio.dtype == np.float32


def test_griffin_lim_output_reanalyses_to_its_input(harmonic_log_mel: np.ndarray) -> None:
    audio = GriffinLimVocoder()(harmonic_log_mel)
    error = np.abs(log_mel(torch.from_numpy(audio)).numpy() - harmonic_log_mel)
    # Measured with the defaults (64 iterations, seed 0): 0.436 mean abs log-mel error, 0.096 within 40 dB of each
    # frame's loudest bin. Random phase alone (0 iterations) gives 0.881 / 0.731, so the bounds check that phase
    # retrieval works, with ~10-25 % headroom for FFT rounding differences between platforms.
    assert error.mean() < 0.48
    loud = harmonic_log_mel > harmonic_log_mel.max(axis=1, keepdims=True) - math.log(100.0)
    assert error[loud].mean() < 0.12


def test_griffin_lim_is_deterministic_per_seed(harmonic_log_mel: np.ndarray) -> None:
    features = harmonic_log_mel[:60]
    first, again = GriffinLimVocoder(n_iter=8, seed=3)(features), GriffinLimVocoder(n_iter=8, seed=3)(features)
    other = GriffinLimVocoder(n_iter=8, seed=4)(features)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_griffin_lim_of_silence_is_nearly_silent() -> None:
    audio = GriffinLimVocoder(n_iter=4)(np.full((50, N_MELS), LOG_MEL_MIN, dtype=np.float32))
    assert np.abs(audio).max() < 1e-4


def test_vocoder_rejects_wrong_feature_shape() -> None:
    with pytest.raises(ValueError, match="128"):
        GriffinLimVocoder(n_iter=1)(np.zeros((10, 80), dtype=np.float32))


# --- ONNX ----------------------------------------------------------------------------------------------------------


def write_linear_vocoder(path: Path, weight: np.ndarray, input_name: str = "input_features") -> Path:
    """A stand-in with the published MelGAN signature: [B, T, 128] -> MatMul [128, 320] -> Reshape -> [B, 320 T]."""
    onnx = pytest.importorskip("onnx")
    helper, numpy_helper, proto = onnx.helper, onnx.numpy_helper, onnx.TensorProto
    nodes = [
        helper.make_node("MatMul", [input_name, "weight"], ["frames"]),
        helper.make_node("Reshape", ["frames", "shape"], ["waveform"]),
    ]
    graph = helper.make_graph(
        nodes,
        "linear_vocoder",
        [helper.make_tensor_value_info(input_name, proto.FLOAT, ["batch", "frames", N_MELS])],
        [helper.make_tensor_value_info("waveform", proto.FLOAT, ["batch", "samples"])],
        initializer=[
            numpy_helper.from_array(weight.astype(np.float32), "weight"),
            numpy_helper.from_array(np.array([0, -1], dtype=np.int64), "shape"),  # 0 keeps B, -1 flattens T x 320
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # old enough for any onnxruntime the extra allows
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.fixture
def weight() -> np.ndarray:
    return np.random.default_rng(0).normal(0.0, 0.1, (N_MELS, HOP)).astype(np.float32)


def test_onnx_vocoder_runs_the_graph(tmp_path: Path, weight: np.ndarray, harmonic_log_mel: np.ndarray) -> None:
    pytest.importorskip("onnxruntime")
    vocoder = OnnxVocoder(write_linear_vocoder(tmp_path / "melgan.onnx", weight))
    features = harmonic_log_mel[:37]
    audio = vocoder(features)
    assert audio.shape == (37 * HOP,) and audio.dtype == np.float32
    np.testing.assert_allclose(audio, (features @ weight).reshape(-1), rtol=1e-5, atol=1e-5)
    assert isinstance(vocoder, Vocoder) and vocoder.sample_rate == SAMPLE_RATE and vocoder.hop == HOP


def test_onnx_vocoder_rejects_a_graph_with_another_input_name(tmp_path: Path, weight: np.ndarray) -> None:
    pytest.importorskip("onnxruntime")
    path = write_linear_vocoder(tmp_path / "other.onnx", weight, input_name="mel")
    with pytest.raises(CheckpointError, match="other.onnx.*input_features"):
        OnnxVocoder(path)


@pytest.mark.parametrize("content", [b"this is not an onnx file", None])
def test_onnx_vocoder_rejects_garbage_or_missing_files(tmp_path: Path, content: bytes | None) -> None:
    pytest.importorskip("onnxruntime")
    path = tmp_path / "broken.onnx"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match="broken.onnx") as raised:
        OnnxVocoder(path)
    assert "\n" not in str(raised.value)


def test_onnx_vocoder_without_onnxruntime_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` raise ImportError
    with pytest.raises(MissingDependencyError, match=r"live-synth\[onnx\]"):
        OnnxVocoder(tmp_path / "melgan.onnx")


def test_load_vocoder_picks_by_spec(tmp_path: Path, weight: np.ndarray) -> None:
    assert isinstance(load_vocoder(None), GriffinLimVocoder) and isinstance(load_vocoder(None), Vocoder)
    assert isinstance(load_vocoder("griffin-lim"), GriffinLimVocoder)
    with pytest.raises(LiveSynthError, match="unknown vocoder"):
        load_vocoder("wavenet")
    pytest.importorskip("onnxruntime")
    assert isinstance(load_vocoder(write_linear_vocoder(tmp_path / "v.onnx", weight)), OnnxVocoder)


# --- WAV and PNG files ---------------------------------------------------------------------------------------------


def test_wav_round_trip_16_bit(tmp_path: Path) -> None:
    audio = harmonic_signal(0.5)
    path = tmp_path / "out.wav"
    write_wav_atomic(path, audio, SAMPLE_RATE)
    back, rate = read_wav(path)
    assert rate == SAMPLE_RATE and back.dtype == np.float32 and back.shape == audio.shape
    np.testing.assert_allclose(back, audio, atol=1.0 / 32768 + 1e-7)
    assert soundfile.info(str(path)).subtype == "PCM_16"
    assert os.listdir(tmp_path) == ["out.wav"]


def test_wav_clips_instead_of_wrapping(tmp_path: Path) -> None:
    write_wav_atomic(tmp_path / "loud.wav", np.array([2.0, -2.0, 0.5], dtype=np.float32), SAMPLE_RATE)
    back, _ = read_wav(tmp_path / "loud.wav")
    np.testing.assert_allclose(back, [1.0, -1.0, 0.5], atol=1e-4)


def test_read_wav_downmixes_stereo(tmp_path: Path) -> None:
    stereo = np.stack([np.full(100, 0.5), np.full(100, -0.25)], axis=1)
    write_wav_atomic(tmp_path / "stereo.wav", stereo, 22_050, subtype="FLOAT")
    mono, rate = read_wav(tmp_path / "stereo.wav")
    assert rate == 22_050 and mono.shape == (100,)
    np.testing.assert_allclose(mono, 0.125)


def test_failed_wav_write_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_write(file, *args, **kwargs):
        file.write(b"RIFF partial")
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(soundfile, "write", broken_write)
    with pytest.raises(RuntimeError, match="disk on fire"):
        write_wav_atomic(tmp_path / "out.wav", np.zeros(10), SAMPLE_RATE)
    assert os.listdir(tmp_path) == []


def test_failed_wav_write_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "out.wav"
    path.write_bytes(b"old")
    monkeypatch.setattr(soundfile, "write", lambda *a, **k: (_ for _ in ()).throw(OSError(28, "No space left")))
    with pytest.raises(LiveSynthError, match="out.wav"):
        write_wav_atomic(path, np.zeros(10), SAMPLE_RATE)
    assert os.listdir(tmp_path) == ["out.wav"] and path.read_bytes() == b"old"


def test_read_wav_names_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(LiveSynthError, match="missing.wav"):
        read_wav(tmp_path / "missing.wav")


def test_spectrogram_png_is_written_atomically(tmp_path: Path, harmonic_log_mel: np.ndarray) -> None:
    path = tmp_path / "mel.png"
    save_spectrogram_png(path, harmonic_log_mel, title="harmonic", segment_frames=64)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert os.listdir(tmp_path) == ["mel.png"]
    with pytest.raises(ValueError):
        save_spectrogram_png(tmp_path / "bad.png", harmonic_log_mel[:, :80])
    assert os.listdir(tmp_path) == ["mel.png"]
