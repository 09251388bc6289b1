"""The job a corpus worker holds: a loaded synth, vocoder and effects chain; MIDI bytes in, encoded audio out.

It renders exactly as `live-synth render` does (song -> synth.render -> vocoder told the notes -> effects), so a
corpus file's audio is `render`'s for the same options. It writes nothing: the driver writes every output, so a
worker that dies never leaves a file behind, and workers on other machines need no shared folder.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass

import numpy as np

from live_synth.constants import SAMPLE_RATE
from live_synth.errors import LiveSynthError, MidiError
from live_synth.synth import DEFAULT_MODEL

FORMATS = {"wav": "WAV", "flac": "FLAC"}


@dataclass(frozen=True)
class RenderSettings:
    """What every file of a run is rendered with (bound to the CLI in cli.py only)."""

    model: str = DEFAULT_MODEL
    steps: int | None = None
    seed: int = 0
    engine: str = "auto"
    engine_dir: str | None = None
    device: str = "cpu"
    dtype: str = "float32"
    vocoder: str | None = None
    fx: str | None = None
    format: str = "wav"
    mel: bool = False
    threads: int = 1  # per worker (torch and ONNX Runtime intra-op threads)
    max_seconds: float = 600.0  # longer songs fail with one line (0: no limit)


class SynthJob:
    """Built once per worker (`SynthJob(settings)`); called per file with (name, MIDI bytes)."""

    def __init__(self, settings: RenderSettings):
        import torch

        from live_synth.audio import load_vocoder
        from live_synth.synth import SynthOptions, load_synth

        self.settings = s = settings
        torch.set_num_threads(max(1, s.threads))  # before the engines are built: ONNX Runtime takes torch's count
        self.synth = load_synth(s.model, SynthOptions(engine=s.engine, device=s.device, dtype=s.dtype,
                                                      engine_dir=s.engine_dir, steps=s.steps, seed=s.seed))
        self.vocoder_spec = s.vocoder or self.synth.vocoder_path
        self.vocoder = load_vocoder(self.vocoder_spec)
        self.chain = None
        if s.fx:
            from live_synth.fx import load_chain

            self.chain = load_chain(s.fx)

    def describe(self) -> dict:
        """What was loaded, as the sidecars record it; equal on every worker of a run."""
        from live_synth.corpus.sources import files_fingerprint
        from live_synth.engine_cache import weights_fingerprint

        spec = self.vocoder_spec
        return {
            "model": self.settings.model, "model_source": self.synth.source,
            "model_fingerprint": weights_fingerprint(self.synth.model), "family": self.synth.family,
            "engine": self.synth.engine.name, "steps": self.synth.steps, "seed": self.settings.seed,
            "vocoder": self.vocoder.name,
            "vocoder_fingerprint": files_fingerprint(spec, "vocoder") if spec is not None else "griffin-lim",
            "fx": self.chain.describe() if self.chain is not None else None,
            "fx_fingerprint": files_fingerprint(self.settings.fx) if self.settings.fx and
            self.settings.fx.endswith(".toml") else self.settings.fx,
        }  # fmt: skip

    def __call__(self, payload: tuple[str, bytes]) -> dict:
        from live_synth.midi import apply_sustain, read_midi
        from live_synth.midi.events import NoteEvents

        name, midi = payload
        start = time.perf_counter()
        song = read_midi(midi, name=name)
        if song.is_empty:
            raise MidiError(f"{name}: contains no notes")
        limit = self.settings.max_seconds
        if limit and song.total_time > limit:
            raise LiveSynthError(f"{name}: {song.total_time:.0f} s long, over the limit of {limit:g} s "
                                 "(--max-seconds)")
        song = apply_sustain(song)
        mel = self.synth.render(song)
        audio = self.vocoder(mel, events=NoteEvents.from_sequence(song))
        if self.chain is not None and not self.chain.empty:
            audio = self.chain.render(audio, SAMPLE_RATE)
        return {
            "audio": encode(audio, self.settings.format),
            "mel": mel.astype(np.float16) if self.settings.mel else None,
            "seconds": len(audio) / SAMPLE_RATE, "frames": int(len(mel)), "notes": len(song.notes),
            "render_s": time.perf_counter() - start, "warnings": self.synth.song_warnings(song, name),
        }  # fmt: skip


def encode(audio: np.ndarray, fmt: str) -> bytes:
    """16-bit PCM WAV or FLAC bytes, clipped to [-1, 1] as `write_wav_atomic` does."""
    import soundfile as sf

    buffer = io.BytesIO()
    sf.write(buffer, np.clip(np.asarray(audio, np.float32), -1.0, 1.0), SAMPLE_RATE, subtype="PCM_16",
             format=FORMATS[fmt])
    return buffer.getvalue()
