"""Audio front end, vocoders, WAV I/O and spectrogram plots (spec §1 and §5)."""

from live_synth.audio.features import (
    istft,
    log_mel,
    magnitude_to_log_mel,
    mel_filterbank,
    num_frames,
    scale_features,
    stft,
    stft_magnitude,
    unscale_features,
)
from live_synth.audio.plots import save_spectrogram_png, save_spectrogram_rows_png
from live_synth.audio.vocoders import GriffinLimVocoder, OnnxVocoder, Vocoder, load_vocoder
from live_synth.audio.wav import read_wav, write_wav_atomic

__all__ = [
    "GriffinLimVocoder",
    "OnnxVocoder",
    "Vocoder",
    "istft",
    "load_vocoder",
    "log_mel",
    "magnitude_to_log_mel",
    "mel_filterbank",
    "num_frames",
    "read_wav",
    "save_spectrogram_png",
    "save_spectrogram_rows_png",
    "scale_features",
    "stft",
    "stft_magnitude",
    "unscale_features",
    "write_wav_atomic",
]
