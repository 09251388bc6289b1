"""The torch log-mel front end against an independent numpy reference of spec §1.

The reference below is written from the formulas, not from the implementation: an explicit per-frame loop with
np.fft.rfft, and a mel matrix built bin by bin with Python loops in the mel domain (the way TF's
`linear_to_mel_weight_matrix` defines it).

Tolerances: with float64 input the torch code runs in float64 and only FFT rounding differs: ~1e-16 of a frame's
peak magnitude, which near the 1e-5 mel floor is ~1e-9 in log (measured 1.05e-9), hence atol 1e-7. In float32, FFT
rounding is ~1e-7 of a frame's largest magnitude, so linear mel is compared with an absolute tolerance relative to the
frame peak, and log-mel only where mel is well above that noise (near the 1e-5 floor a 1e-6 error is a 10 % relative
error, i.e. 0.1 in log).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from live_synth.audio.features import (
    log_mel,
    mel_center_hz,
    mel_filterbank,
    num_frames,
    scale_features,
    stft_magnitude,
    unscale_features,
)
from live_synth.constants import HOP, LOG_MEL_MAX, LOG_MEL_MIN, N_MELS, SAMPLE_RATE, SEGMENT_FRAMES, SEGMENT_SAMPLES


# --- independent numpy reference --------------------------------------------------------------------------------


def ref_mel_matrix() -> np.ndarray:
    def mel(hz: float) -> float:
        return 1127.0 * math.log(1.0 + hz / 700.0)

    n_bins, nyquist = 513, SAMPLE_RATE / 2
    lo, hi = mel(0.0), mel(8000.0)
    edges = [lo + (hi - lo) * i / (N_MELS + 1) for i in range(N_MELS + 2)]
    matrix = np.zeros((n_bins, N_MELS))
    for k in range(1, n_bins):  # row 0 (DC) stays zero
        m = mel(nyquist * k / (n_bins - 1))
        for j in range(N_MELS):
            left, centre, right = edges[j], edges[j + 1], edges[j + 2]
            if left < m <= centre:
                matrix[k, j] = (m - left) / (centre - left)
            elif centre < m < right:
                matrix[k, j] = (right - m) / (right - centre)
    return matrix


def ref_log_mel(audio: np.ndarray) -> np.ndarray:
    audio = np.asarray(audio, dtype=np.float64)
    n = len(audio)
    frames = (n + HOP - 1) // HOP
    hann = np.array([0.5 - 0.5 * math.cos(2 * math.pi * i / 640) for i in range(640)])
    padded = np.concatenate([audio, np.zeros(frames * HOP + 640)])
    mel = ref_mel_matrix()
    out = np.empty((frames, N_MELS))
    for f in range(frames):
        buffer = np.zeros(1024)
        buffer[:640] = padded[f * HOP : f * HOP + 640] * hann
        magnitude = np.abs(np.fft.rfft(buffer))
        out[f] = np.log(np.clip(magnitude @ mel, 1e-5, 1e8))
    return out


@pytest.fixture(scope="module")
def noise() -> np.ndarray:
    # Odd length: the last frame is zero-padded.
    return np.random.default_rng(0).normal(0.0, 0.3, 16_123)


def sine(hz: float, samples: int, amplitude: float = 0.5) -> np.ndarray:
    return amplitude * np.sin(2 * np.pi * hz * np.arange(samples) / SAMPLE_RATE)


# --- parity ------------------------------------------------------------------------------------------------------


def test_mel_matrix_matches_loop_reference() -> None:
    np.testing.assert_allclose(mel_filterbank(torch.float64).numpy(), ref_mel_matrix(), rtol=0, atol=1e-12)
    fb = mel_filterbank().numpy()
    assert fb.shape == (513, N_MELS) and fb.dtype == np.float32
    assert not fb[0].any(), "DC row must be zero"
    assert fb.max() <= 1.0 and (fb.sum(axis=0) > 0).all()


@pytest.mark.parametrize("signal", ["noise", "sine"])
def test_log_mel_float64_matches_reference(signal: str, noise: np.ndarray) -> None:
    audio = noise if signal == "noise" else sine(440.0, 9_600)
    expected = ref_log_mel(audio)
    got = log_mel(torch.from_numpy(audio)).numpy()
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-7)


@pytest.mark.parametrize("signal", ["noise", "sine"])
def test_log_mel_float32_matches_reference(signal: str, noise: np.ndarray) -> None:
    audio = noise if signal == "noise" else sine(440.0, 9_600)
    expected = ref_log_mel(audio)
    got = log_mel(torch.from_numpy(audio).float()).double().numpy()
    mel_expected, mel_got = np.exp(expected), np.exp(got)
    peak = mel_expected.max(axis=1, keepdims=True)
    assert np.all(np.abs(mel_got - mel_expected) <= 1e-5 * peak + 1e-6)
    clear = mel_expected > 1e-3 * peak
    np.testing.assert_allclose(got[clear], expected[clear], rtol=0, atol=1e-4)


def test_mel_matrix_agrees_with_librosa_htk_triangles() -> None:
    # Same HTK band edges; librosa interpolates each triangle linearly in Hz, TF in mel. Over one band (<= ~130 Hz wide)
    # the mel scale is nearly linear, so the two differ by at most 0.0024 (measured); any real formula slip (edges,
    # DC row, peak normalisation, off-by-one bin) moves weights by far more.
    librosa = pytest.importorskip("librosa")
    theirs = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=1024, n_mels=N_MELS, fmin=0.0, fmax=8000.0, htk=True, norm=None)
    ours = mel_filterbank(torch.float64).numpy().T
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=3e-3)


# --- behaviour ---------------------------------------------------------------------------------------------------


def test_sine_peaks_in_the_mel_bin_nearest_its_frequency() -> None:
    features = log_mel(torch.from_numpy(sine(1000.0, 16_000)))
    peak_bins = features[2:-2].argmax(dim=-1)  # skip the padded edge frames
    nearest = int(torch.argmin((mel_center_hz() - 1000.0).abs()))
    assert torch.all(peak_bins == nearest)


def test_one_segment_of_samples_gives_exactly_one_segment_of_frames() -> None:
    assert log_mel(torch.zeros(SEGMENT_SAMPLES)).shape == (SEGMENT_FRAMES, N_MELS)


@pytest.mark.parametrize("samples, frames", [(0, 0), (1, 1), (319, 1), (320, 1), (321, 2), (640, 2), (16_000, 50)])
def test_frame_count_is_ceil_of_samples_over_hop(samples: int, frames: int) -> None:
    assert num_frames(samples) == frames
    assert log_mel(torch.zeros(samples)).shape == (frames, N_MELS)


def test_silence_is_log_mel_min_everywhere() -> None:
    features = log_mel(torch.zeros(5_000))
    torch.testing.assert_close(features, torch.full_like(features, LOG_MEL_MIN), rtol=0, atol=1e-6)


def test_batch_dimensions_match_single_calls(noise: np.ndarray) -> None:
    rng = np.random.default_rng(1)
    batch = torch.from_numpy(rng.normal(0.0, 0.3, (2, 3, 3_000)))
    features = log_mel(batch)
    assert features.shape == (2, 3, 10, N_MELS)
    for i in range(2):
        for j in range(3):
            torch.testing.assert_close(features[i, j], log_mel(batch[i, j]), rtol=0, atol=1e-12)
    assert stft_magnitude(batch).shape == (2, 3, 10, 513)


def test_scale_maps_the_log_mel_range_onto_minus_one_one() -> None:
    x = torch.tensor([LOG_MEL_MIN, LOG_MEL_MAX, (LOG_MEL_MIN + LOG_MEL_MAX) / 2], dtype=torch.float64)
    torch.testing.assert_close(scale_features(x), torch.tensor([-1.0, 1.0, 0.0], dtype=torch.float64))


def test_scale_unscale_round_trip_and_clipping() -> None:
    inside = torch.linspace(LOG_MEL_MIN, LOG_MEL_MAX, 101, dtype=torch.float64)
    torch.testing.assert_close(unscale_features(scale_features(inside)), inside)
    outside = torch.tensor([LOG_MEL_MIN - 5.0, LOG_MEL_MAX + 5.0], dtype=torch.float64)
    torch.testing.assert_close(scale_features(outside), torch.tensor([-1.0, 1.0], dtype=torch.float64))
    # Without clipping the affine map continues past the range (diffusers' clip=False).
    assert scale_features(outside, clip=False)[1] > 1.0
    assert unscale_features(torch.tensor([2.0]))[0] > LOG_MEL_MAX
    assert unscale_features(torch.tensor([2.0]), clip=True)[0] == pytest.approx(LOG_MEL_MAX)


def test_cached_tensors_made_under_inference_mode_still_serve_training():
    """A vocoder may build the cached window/filterbank inside torch.inference_mode(); training that later uses
    them must still backpropagate (inference tensors cannot be saved for backward)."""
    from live_synth.audio import features

    features._window.cache_clear()
    features._filterbank.cache_clear()
    with torch.inference_mode():
        features.log_mel(torch.rand(1, 3200))
    audio = torch.rand(1, 3200, requires_grad=True)
    features.log_mel(audio).sum().backward()
    assert audio.grad is not None and torch.isfinite(audio.grad).all()
