"""Model configuration: one frozen dataclass, named presets in one place (spec §3.1).

A `ModelConfig` fixes the shapes of all three networks (notes encoder, context encoder, FiLM decoder) and the token
language they were trained on. It is stored as JSON next to the weights, so a weight file never travels without the
description of what it is.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from live_synth.constants import MAX_TOKENS, N_MELS, SEGMENT_FRAMES
from live_synth.errors import CheckpointError


@dataclass(frozen=True)
class ModelConfig:
    """Shapes and token language of a Spectrogram Diffusion model.

    `max_decoder_noise_time` is 20 000 for the published weights (diffusers' class default of 2000 is wrong for them).
    """

    d_model: int = 768
    num_heads: int = 12
    d_kv: int = 64
    d_ff: int = 2048
    notes_layers: int = 12
    context_layers: int = 12
    decoder_layers: int = 12
    vocab_size: int = 1536
    max_tokens: int = MAX_TOKENS
    context_length: int = SEGMENT_FRAMES
    target_length: int = SEGMENT_FRAMES
    input_dims: int = N_MELS
    max_decoder_noise_time: float = 20_000.0
    dropout: float = 0.1
    # Token language (spec §2): the published model uses 1 velocity bin and Slakh program folding.
    num_velocity_bins: int = 1
    slakh_programs: bool = True
    # Our own models: add a frame-aligned piano roll (live_synth.midi.pianoroll) to the decoder input.
    pianoroll: bool = False
    # ... and project it also through weights shared by all instrument families (per pitch: onset, active), so that
    # what the model learns about a pitch on one instrument helps every other (dense gradients for each pitch).
    roll_pitch_shared: bool = False
    # What the decoder predicts: "eps" (the published model) or "v" = alpha eps - sigma x0 (our models: at high
    # noise v is -x0, so one step already gives the conditional mean; an ε-model must divide its error by
    # alpha = 4.5e-5 there, which is why few-step samples of our CPU-trained ε-model were noise). Samplers take
    # either (`Sampler.prediction`): x̂0 = alpha z - sigma v needs no division, so bf16/fp16 engines stay exact.
    prediction: str = "eps"
    # v-models with a piano roll: a linear x0 estimate from the projected roll, subtracted as -sigma * x0_prior from
    # the predicted v, so the pitch -> mel-bin mapping is a linear regression the optimizer finds in a few hundred
    # steps instead of something the transformer must discover (measured: without it, 2,900 CPU steps gave no pitch).
    roll_prior: bool = False
    # Sampling steps this model's evaluation chose (0: the tool's own default); `render` and `play` use it when no
    # --steps is given. The shipped model is best at 1 (MODEL_CARD.md); the published weights want many.
    default_steps: int = field(default=0, compare=False)
    # Free-form provenance ("random init", "converted from google/music-spectrogram-diffusion", training run, ...).
    description: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if self.prediction not in ("eps", "v"):
            raise CheckpointError(f"model config: prediction must be 'eps' or 'v', not {self.prediction!r}")
        if self.roll_prior and not (self.pianoroll and self.prediction == "v"):
            raise CheckpointError("model config: roll_prior needs pianoroll and prediction 'v'")

    def sampling_steps(self, requested: int | None, fallback: int) -> int:
        """The step count to sample with: the one asked for, else this model's `default_steps`, else `fallback`."""
        return requested if requested is not None else self.default_steps or fallback

    @property
    def inner_dim(self) -> int:
        return self.num_heads * self.d_kv

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> ModelConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise CheckpointError(f"{source}: unknown model config keys {unknown}")
        try:
            return cls(**data)
        except TypeError as exc:  # pragma: no cover - dataclass rejects a wrong type combination
            raise CheckpointError(f"{source}: invalid model config: {exc}") from None


PRESETS: dict[str, ModelConfig] = {
    # The published 411.7 M-parameter model (google/music-spectrogram-diffusion, "base_with_context").
    "base": ModelConfig(description="base: the published Spectrogram Diffusion shape (411.7 M parameters)"),
    # The paper's small context model (104 M parameters).
    "small": ModelConfig(
        d_model=512,
        num_heads=6,
        d_kv=64,
        d_ff=1024,
        notes_layers=8,
        context_layers=8,
        decoder_layers=8,
        description="small: the paper's small context model shape (104 M parameters)",
    ),
    # The project's own live model (issue #3): sized from measured CPU tick time (training-notes.md: 8.3 M params,
    # ~16 ms per 4-step tick on 2 cores), 1.28 s targets after 1.28 s of context (chunked continuation), velocity
    # in 16 bins, GM programs kept, and the piano roll that teaches a small model where notes fall.
    "live": ModelConfig(
        d_model=256,
        num_heads=4,
        d_kv=64,
        d_ff=512,
        notes_layers=3,
        context_layers=2,
        decoder_layers=4,
        max_tokens=512,
        context_length=64,
        target_length=64,
        num_velocity_bins=16,
        slakh_programs=False,
        pianoroll=True,
        roll_pitch_shared=True,
        prediction="v",
        roll_prior=True,
        description="live: the project's own small model shape (chunked continuation, piano roll)",
    ),
    # A few-layer model for tests and smoke runs: seconds to build, milliseconds to run.
    "tiny": ModelConfig(
        d_model=64,
        num_heads=2,
        d_kv=32,
        d_ff=128,
        notes_layers=2,
        context_layers=2,
        decoder_layers=2,
        description="tiny: a test-sized model",
    ),
}


def preset(name: str) -> ModelConfig:
    """The named preset; a one-line error lists the valid names."""
    try:
        return PRESETS[name]
    except KeyError:
        raise CheckpointError(f"unknown model preset {name!r}; choose one of {sorted(PRESETS)}") from None
