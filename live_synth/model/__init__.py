"""Spectrogram Diffusion networks (spec §3): configs, modules and checkpoint loading."""

from live_synth.model.checkpoint import LoadedModel, load_model, save_model
from live_synth.model.config import PRESETS, ModelConfig, preset
from live_synth.model.decoder import CrossMemory, FilmDecoder
from live_synth.model.encoders import ContextEncoder, NotesEncoder
from live_synth.model.network import SpectrogramDiffusion

__all__ = [
    "PRESETS",
    "ContextEncoder",
    "CrossMemory",
    "FilmDecoder",
    "LoadedModel",
    "ModelConfig",
    "NotesEncoder",
    "SpectrogramDiffusion",
    "load_model",
    "preset",
    "save_model",
]
