"""Log-mel front end of Spectrogram Diffusion (spec §1), in torch.

Reproduces the original TensorFlow `MelGAN`/`Audio2Mel` features: `tf.signal.stft` with frames of 640 samples, hop
320, no centering, `pad_end=True`, periodic Hann zero-padded to a 1024-point FFT, magnitude (power 1),
`tf.signal.linear_to_mel_weight_matrix` (128 HTK-mel triangles, 0-8000 Hz) and the natural log of the clipped mel.

Every function accepts leading batch dimensions and keeps the input's floating dtype and device, so float64 input gives
a float64 reference computation. All functions are pure and may be called from any thread except the audio callback.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

from live_synth.constants import (
    HOP,
    LOG_MEL_MAX,
    LOG_MEL_MIN,
    MEL_FMAX,
    MEL_FMIN,
    N_FFT,
    N_MELS,
    SAMPLE_RATE,
    WIN_LENGTH,
)

N_BINS = N_FFT // 2 + 1  # 513 spectrogram bins
assert WIN_LENGTH % HOP == 0, "_overlap_add assumes the window is a whole number of hops"
MEL_CLIP_MIN = 1e-5  # ln(1e-5) == LOG_MEL_MIN: the value of silence
MEL_CLIP_MAX = 1e8
ISTFT_WINDOW_FLOOR = 1e-2  # see istft

# TF's _MEL_HIGH_FREQUENCY_Q and _MEL_BREAK_FREQUENCY_HERTZ (HTK mel with a natural log).
_MEL_Q = 1127.0
_MEL_BREAK_HZ = 700.0


def check_log_mel(log_mel: np.ndarray) -> np.ndarray:
    """Validate [T, 128] and return it as contiguous float32 (wrong shapes are bugs: ValueError)."""
    array = np.ascontiguousarray(log_mel, dtype=np.float32)
    if array.ndim != 2 or array.shape[1] != N_MELS:
        raise ValueError(f"log-mel must have shape [frames, {N_MELS}], got {list(array.shape)}")
    if not np.all(np.isfinite(array)):
        raise ValueError("log-mel contains NaN or infinite values")
    return array


def num_frames(num_samples: int) -> int:
    """Frames that `stft` makes from `num_samples` samples: ceil(n / HOP), as TF's `pad_end=True` does."""
    return -(-num_samples // HOP)


def hertz_to_mel(hz: torch.Tensor) -> torch.Tensor:
    """HTK mel scale with a natural log, as TF's `_hertz_to_mel`."""
    return _MEL_Q * torch.log1p(hz / _MEL_BREAK_HZ)


@functools.lru_cache(maxsize=8)
@torch.inference_mode(False)  # cached for everyone: never an inference tensor, which autograd could not save
def _filterbank(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    # Built in float64 and then cast; TF builds it in float32, which differs by ~1e-6 relative (irrelevant here).
    nyquist = SAMPLE_RATE / 2.0
    # TF drops the DC bin before building the triangles and re-adds it as a zero row afterwards.
    bin_mel = hertz_to_mel(torch.linspace(0.0, nyquist, N_BINS, dtype=torch.float64)[1:]).unsqueeze(1)
    lo, hi = hertz_to_mel(torch.tensor([MEL_FMIN, MEL_FMAX], dtype=torch.float64))
    edges = torch.linspace(float(lo), float(hi), N_MELS + 2, dtype=torch.float64)
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bin_mel - lower) / (center - lower)
    falling = (upper - bin_mel) / (upper - center)
    weights = torch.clamp(torch.minimum(rising, falling), min=0.0)
    weights = F.pad(weights, (0, 0, 1, 0))  # zero DC row
    return weights.to(dtype=dtype, device=device)


def mel_filterbank(dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> torch.Tensor:
    """The [513, 128] mel weight matrix of TF's `linear_to_mel_weight_matrix` (cached; do not modify it in place).

    Magnitudes [..., 513] @ matrix -> mel [..., 128]. Triangles have peak 1 and no area normalisation.
    """
    return _filterbank(dtype, torch.device(device))


def mel_center_hz() -> torch.Tensor:
    """Centre frequency in Hz of each of the 128 mel bins (float64)."""
    lo, hi = hertz_to_mel(torch.tensor([MEL_FMIN, MEL_FMAX], dtype=torch.float64))
    centers_mel = torch.linspace(float(lo), float(hi), N_MELS + 2, dtype=torch.float64)[1:-1]
    return _MEL_BREAK_HZ * torch.expm1(centers_mel / _MEL_Q)


@functools.lru_cache(maxsize=8)
@torch.inference_mode(False)  # see _filterbank
def _window(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    # torch's periodic Hann equals TF's hann_window(periodic=True): 0.5 - 0.5 cos(2 pi n / 640).
    return torch.hann_window(WIN_LENGTH, periodic=True, dtype=dtype, device=device)


def analysis_window(dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> torch.Tensor:
    """The periodic Hann window of WIN_LENGTH samples (before zero-padding to N_FFT); cached, do not modify."""
    return _window(dtype, torch.device(device))


def _check_audio(audio: torch.Tensor) -> None:
    if not torch.is_floating_point(audio):
        raise TypeError(f"audio must be a floating tensor, got {audio.dtype}")
    if audio.dim() < 1:
        raise ValueError("audio needs a time axis (last dimension)")


def frame_audio(audio: torch.Tensor) -> torch.Tensor:
    """Cut [..., n] into [..., ceil(n/HOP), WIN_LENGTH] frames; frame i covers samples [HOP*i, HOP*i + WIN_LENGTH).

    The end is zero-padded so that the last frame is complete (TF `pad_end=True`); there is no centering.
    """
    _check_audio(audio)
    frames = num_frames(audio.shape[-1])
    if frames == 0:
        return audio.new_zeros(*audio.shape[:-1], 0, WIN_LENGTH)
    padded_length = (frames - 1) * HOP + WIN_LENGTH
    padded = F.pad(audio, (0, padded_length - audio.shape[-1]))
    return padded.unfold(-1, WIN_LENGTH, HOP)


def stft(audio: torch.Tensor) -> torch.Tensor:
    """Complex STFT [..., frames, 513] of [..., samples] with the geometry of spec §1."""
    windowed = frame_audio(audio) * _window(audio.dtype, audio.device)
    if windowed.numel() == 0:  # MKL's FFT rejects empty input
        return torch.zeros(*windowed.shape[:-1], N_BINS, dtype=_complex_of(audio.dtype), device=audio.device)
    return torch.fft.rfft(windowed, n=N_FFT)  # n=N_FFT zero-pads the window on the right


def _complex_of(dtype: torch.dtype) -> torch.dtype:
    return torch.complex128 if dtype == torch.float64 else torch.complex64


def istft(spectrum: torch.Tensor, window_floor: float = ISTFT_WINDOW_FLOOR) -> torch.Tensor:
    """Least-squares inverse of `stft` (Griffin & Lim 1984): [..., frames, 513] -> [..., frames * HOP] samples.

    Each frame is windowed again, overlap-added and divided by the overlap-added squared window, so
    `istft(stft(x))` returns x (zero-padded to a whole number of hops). torch.istft cannot be used: with
    center=False the window sum vanishes at the first sample and it rejects the geometry (NOLA check).
    """
    window = _window(spectrum.real.dtype, spectrum.device)
    n_frames = spectrum.shape[-2]
    if spectrum.numel() == 0:
        return window.new_zeros(*spectrum.shape[:-2], n_frames * HOP)
    frames = torch.fft.irfft(spectrum, n=N_FFT)[..., :WIN_LENGTH] * window
    signal = _overlap_add(frames)
    weight = _overlap_add(window.square().expand(n_frames, WIN_LENGTH))
    # Only the first hop is covered by a single (rising) half window; elsewhere weight >= 0.5 for Hann with 50 %
    # overlap. The floor stops 0/0 at sample 0 and the blow-up of inconsistent frames near it, at the price of a
    # short fade-in (samples where w^2 < floor) at the very start of the signal.
    signal = signal / torch.clamp(weight, min=window_floor)
    return signal[..., : n_frames * HOP]


def _overlap_add(frames: torch.Tensor) -> torch.Tensor:
    # WIN_LENGTH is a whole number of hops, so overlap-add is a sum of shifted hop-sized slices, with no scatter.
    *batch, n_frames, _ = frames.shape
    per_frame = WIN_LENGTH // HOP
    out = frames.new_zeros(*batch, n_frames + per_frame - 1, HOP)
    for k in range(per_frame):
        out[..., k : k + n_frames, :] += frames[..., k * HOP : (k + 1) * HOP]
    return out.flatten(-2)


def stft_magnitude(audio: torch.Tensor) -> torch.Tensor:
    """|STFT| [..., frames, 513] of [..., samples] (power 1), shared by `log_mel` and Griffin-Lim."""
    return stft(audio).abs()


def magnitude_to_log_mel(magnitude: torch.Tensor) -> torch.Tensor:
    """Linear magnitudes [..., 513] -> natural-log mel [..., 128], clipped to [ln 1e-5, ln 1e8]."""
    mel = magnitude @ _filterbank(magnitude.dtype, magnitude.device)
    return torch.log(torch.clamp(mel, MEL_CLIP_MIN, MEL_CLIP_MAX))


def log_mel(audio: torch.Tensor) -> torch.Tensor:
    """Natural-log mel features [..., ceil(samples/320), 128] of 16 kHz audio [..., samples] (spec §1), unscaled."""
    return magnitude_to_log_mel(stft_magnitude(audio))


def scale_features(x: torch.Tensor, clip: bool = True) -> torch.Tensor:
    """Log-mel -> the model's [-1, 1] range; diffusers' `scale_features` with output_range (-1, 1).

    With `clip` the input is first clipped to [LOG_MEL_MIN, LOG_MEL_MAX] (the pipeline always clips).
    """
    if clip:
        x = torch.clamp(x, LOG_MEL_MIN, LOG_MEL_MAX)
    return 2.0 * (x - LOG_MEL_MIN) / (LOG_MEL_MAX - LOG_MEL_MIN) - 1.0


def unscale_features(y: torch.Tensor, clip: bool = False) -> torch.Tensor:
    """[-1, 1] model output -> log-mel; diffusers' `scale_to_features` (which does not clip by default)."""
    if clip:
        y = torch.clamp(y, -1.0, 1.0)
    return (y + 1.0) / 2.0 * (LOG_MEL_MAX - LOG_MEL_MIN) + LOG_MEL_MIN

