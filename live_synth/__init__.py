"""live-synth: a real-time neural synthesizer built on Spectrogram Diffusion (Hawthorne et al. 2022)."""

__version__ = "0.1.0"
