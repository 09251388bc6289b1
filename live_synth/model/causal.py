"""The causal family: one mel frame at a time from the notes up to that frame and the frames made before it.

    frame, state = model.step(slots, prev, state, noise)

Offline render, live play and training are the same computation (causal-model.md). Parts, each small:

- `SlotEncoder`: the notes of a frame (`frame_features`: up to 32 note slots of 19 values) -> one vector per note:
  a linear map of the continuous values (ages, velocity, release, controllers) plus learned embeddings of the
  program, the family and the pitch. The pitch is continuous (a bend moves it), so its embedding is interpolated
  between the two neighbouring pitch rows: a bent note is split between neighbouring pitch bins.
- `NotePrior`: a deterministic notes -> mel path that does not look at the previous frame. Each note gets a
  log-mel spectrum from its vector, plus its level in dB from velocity and channel gain (General MIDI's
  40 log10(v / 127) curve for both; a learned coefficient per family, initialised at 1); the prior is the log of
  the sum of the notes' linear spectra. It is trained as a regression onto the recorded mel (its own L1 loss), so
  a lone note has its level and its pitch whatever the sampling noise and the previous frame say: in a prototype
  without it, whether a lone note sounded at all was decided by the noise at its onset (causal-model.md, round 3).
- Backbone: the sum of the notes' vectors, the prior, and the previous frame (with a small noise on it, whose
  level is an input: the exposure-bias fix of CAM / Diffusion Forcing) go through pre-LN gated causal dilated
  convolutions with 3 taps, each written as one Linear over the gathered taps (a Conv1d with dilation was 7x
  slower per training step on this CPU). Streaming state is each layer's last 2 * dilation normalised inputs.
- `DiffusionHead`: MAR's SimpleMLPAdaLN: a residual MLP with adaptive LayerNorm on the noise time and the
  backbone's output, predicting v for the *residual* frame - prior; sampled with DDIM in `steps` steps from the
  noise passed in (so engines and tests are deterministic), x0 clipped to the data range.

Values are in the model's scaled [-1, 1] log-mel range (`scale_features`) everywhere but the prior's insides.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from live_synth.audio.features import scale_features
from live_synth.constants import LOG_MEL_MAX, LOG_MEL_MIN, N_MELS
from live_synth.errors import CheckpointError
from live_synth.model.frame_features import COL, CONTINUOUS, DRUM_FAMILY, DRUM_PROGRAM, FEATURES, SLOTS
from live_synth.sampling.schedules import cosine_alpha_sigma

FAMILY = "causal"
LN10 = math.log(10.0)


@dataclass(frozen=True)
class CausalConfig:
    """Shape of a causal model; stored as JSON next to the weights (with "family": "causal")."""

    d_model: int = 256
    dilations: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 1, 2)
    head_width: int = 384
    head_cond: int = 256
    head_blocks: int = 3
    prior_hidden: int = 256
    slots: int = SLOTS
    context_noise: float = 0.05  # noise level on the previous frame at inference (training draws 0..max)
    max_context_noise: float = 0.3
    default_steps: int = field(default=2, compare=False)
    description: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not self.dilations or any(int(d) < 1 for d in self.dilations):
            raise CheckpointError(f"causal config: dilations must be positive integers, got {self.dilations!r}")
        object.__setattr__(self, "dilations", tuple(int(d) for d in self.dilations))

    @property
    def receptive_frames(self) -> int:
        return 1 + 2 * sum(self.dilations)

    def sampling_steps(self, requested: int | None, fallback: int = 2) -> int:
        return requested if requested is not None else self.default_steps or fallback

    def to_json(self) -> str:
        return json.dumps({"family": FAMILY, **dataclasses.asdict(self)}, indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> CausalConfig:
        data = dict(data)
        if data.pop("family", FAMILY) != FAMILY:
            raise CheckpointError(f"{source}: not a causal model config")
        unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise CheckpointError(f"{source}: unknown causal config keys {unknown}")
        try:
            return cls(**data)
        except TypeError as exc:
            raise CheckpointError(f"{source}: invalid causal config: {exc}") from None


CAUSAL_PRESETS = {
    "causal": CausalConfig(description="causal: the project's causal frame model (d 256, 8 layers, MAR head)"),
    "causal-wide": CausalConfig(head_width=512, head_blocks=4,
                                description="causal-wide: the causal model with a wider, deeper MAR head (issue 20)"),
    "causal-tiny": CausalConfig(d_model=32, dilations=(1, 2, 1), head_width=32, head_cond=32, head_blocks=1,
                                prior_hidden=32, description="causal-tiny: a test-sized causal model"),
}


def _pitch_embedding(table: Tensor, pitch: Tensor) -> Tensor:
    """Rows of `table` [130, d] interpolated at continuous pitches (a bend splits a note between two rows)."""
    p = pitch.clamp(0.0, 128.0)
    low = p.floor().clamp(max=128.0)
    w = (p - low).unsqueeze(-1)
    i = low.long()
    return table[i] * (1.0 - w) + table[(i + 1).clamp(max=129)] * w


class SlotEncoder(nn.Module):
    """Note slots [..., FEATURES] -> note vectors [..., d] (an empty slot's vector is not zero: mask it)."""

    def __init__(self, d: int):
        super().__init__()
        self.continuous = nn.Linear(len(CONTINUOUS), d)
        self.pitch = nn.Parameter(torch.randn(130, d) * 0.02)
        self.program = nn.Embedding(DRUM_PROGRAM + 1, d)
        self.family = nn.Embedding(DRUM_FAMILY + 1, d)
        nn.init.normal_(self.program.weight, std=0.02)
        nn.init.normal_(self.family.weight, std=0.02)
        self.out = nn.Linear(d, d)

    def forward(self, slots: Tensor) -> Tensor:
        cont = slots[..., list(CONTINUOUS)]
        cont = torch.cat([(cont[..., :1] - 64.0) / 32.0, cont[..., 1:]], dim=-1)  # column 0 is the pitch
        h = (self.continuous(cont) + _pitch_embedding(self.pitch, slots[..., COL["pitch"]])
             + self.program(slots[..., COL["program"]].long()) + self.family(slots[..., COL["family"]].long()))
        return self.out(F.gelu(h))


class NotePrior(nn.Module):
    """Per-note log-mel spectra (natural log) from the note vectors; `combine` sums them in the linear domain.

    A note's spectrum = an MLP of its vector (envelope over time, release, controllers, timbre) + a template per
    pitch + a template per (family, pitch), both tables interpolated at the continuous pitch: the harmonic lines of
    a pitch are a table lookup (learned in a few hundred steps, as the window model's linear roll prior was), not
    something the MLP must discover from the pitch embedding (measured: 1,100 steps without the tables gave a
    smooth envelope with no harmonics)."""

    def __init__(self, d: int, hidden: int):
        super().__init__()
        self.hidden = nn.Linear(d, hidden)
        self.spectrum = nn.Linear(hidden, N_MELS)
        nn.init.zeros_(self.spectrum.weight)
        nn.init.constant_(self.spectrum.bias, -2.0)
        self.level = nn.Parameter(torch.ones(DRUM_FAMILY + 1, 2))  # per family: dB coefficient of velocity, gain
        self.pitch_table = nn.Parameter(torch.zeros(130, N_MELS))
        self.family_table = nn.Parameter(torch.zeros((DRUM_FAMILY + 1) * 130, N_MELS))

    def templates(self, slots: Tensor) -> Tensor:
        p = slots[..., COL["pitch"]].clamp(0.0, 128.0)
        low = p.floor()
        w = (p - low).unsqueeze(-1)
        i = low.long()
        j = (i + 1).clamp(max=129)
        f = slots[..., COL["family"]].long() * 130
        return (self.pitch_table[i] * (1 - w) + self.pitch_table[j] * w
                + self.family_table[f + i] * (1 - w) + self.family_table[f + j] * w)

    def forward(self, h: Tensor, slots: Tensor) -> Tensor:
        spec = (self.spectrum(F.gelu(self.hidden(h))) + self.templates(slots)).float()
        coef = self.level[slots[..., COL["family"]].long()]  # [..., 2]
        db40 = torch.stack([slots[..., COL["velocity_db"]], slots[..., COL["gain_db"]]], dim=-1).float()
        # columns hold dB / 40; an amplitude gain of g dB multiplies the magnitude mel by 10^(g/20): + g ln10 / 20
        return spec + (coef * db40).sum(-1, keepdim=True) * 2.0 * LN10

    @staticmethod
    def combine(spectra: Tensor, valid: Tensor, dim: int) -> Tensor:
        """log(1e-5 + sum of exp(spectra) over the valid notes) along `dim`, in fp32, scaled to [-1, 1]."""
        floor = torch.full_like(spectra.narrow(dim, 0, 1), LOG_MEL_MIN)
        masked = torch.where(valid.unsqueeze(-1), spectra, torch.full_like(spectra, -60.0))
        log_sum = torch.logsumexp(torch.cat([floor, masked], dim=dim), dim=dim)
        return scale_features(log_sum.clamp(max=LOG_MEL_MAX), clip=True)


class GatedCausalLayer(nn.Module):
    """h + W_o (tanh(a) * sigmoid(b)), [a, b] = W [u_t, u_{t-d}, u_{t-2d}], u = LayerNorm(h)."""

    def __init__(self, d: int, dilation: int):
        super().__init__()
        self.dilation = dilation
        self.norm = nn.LayerNorm(d)
        self.taps = nn.Linear(3 * d, 2 * d)
        self.out = nn.Linear(d, d)

    def history(self) -> int:
        return 2 * self.dilation

    def forward(self, h: Tensor, past: Tensor) -> tuple[Tensor, Tensor]:
        """h [B, T, d], past [B, 2 dilation, d] (normalised inputs before h) -> (new h, the new past)."""
        u = torch.cat([past, self.norm(h)], dim=1)
        d, n, T = self.dilation, self.history(), h.shape[1]
        taps = torch.cat([u[:, n : n + T], u[:, n - d : n - d + T], u[:, : T]], dim=-1)
        a, b = self.taps(taps).chunk(2, dim=-1)
        return h + self.out(torch.tanh(a) * torch.sigmoid(b)), u[:, T:]


def _time_embedding(tau: Tensor, dim: int) -> Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, device=tau.device, dtype=torch.float32) / half)
    args = tau.float()[..., None] * 1000.0 * freqs
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class AdaLNBlock(nn.Module):
    def __init__(self, width: int, cond: int):
        super().__init__()
        self.norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
        self.modulation = nn.Linear(cond, 3 * width)
        nn.init.zeros_(self.modulation.weight)
        nn.init.zeros_(self.modulation.bias)

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        shift, scale, gate = self.modulation(c).chunk(3, dim=-1)
        return x + gate * self.mlp(self.norm(x) * (1 + scale) + shift)


class DiffusionHead(nn.Module):
    """v for one residual frame from (noisy residual, noise time, backbone state): MAR's SimpleMLPAdaLN."""

    def __init__(self, cfg: CausalConfig):
        super().__init__()
        w, c = cfg.head_width, cfg.head_cond
        self.time = nn.Sequential(nn.Linear(256, c), nn.SiLU(), nn.Linear(c, c))
        self.cond = nn.Linear(cfg.d_model, c)
        self.input = nn.Linear(N_MELS, w)
        self.blocks = nn.ModuleList(AdaLNBlock(w, c) for _ in range(cfg.head_blocks))
        self.final_norm = nn.LayerNorm(w, elementwise_affine=False, eps=1e-6)
        self.final_modulation = nn.Linear(c, 2 * w)
        self.final = nn.Linear(w, N_MELS)
        for layer in (self.final_modulation, self.final):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, z: Tensor, tau: Tensor, c: Tensor) -> Tensor:
        cond = F.silu(self.time(_time_embedding(tau, 256)) + self.cond(c))
        x = self.input(z)
        for block in self.blocks:
            x = block(x, cond)
        shift, scale = self.final_modulation(cond).chunk(2, dim=-1)
        return self.final(self.final_norm(x) * (1 + scale) + shift)


class CausalModel(nn.Module):
    def __init__(self, cfg: CausalConfig, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.config = cfg
        d = cfg.d_model
        self.slots = SlotEncoder(d)
        self.prior = NotePrior(d, cfg.prior_hidden)
        self.prior_in = nn.Linear(N_MELS, d)
        self.prev_in = nn.Linear(N_MELS, d)
        self.noise_in = nn.Linear(2, d)  # (context noise level, previous frame dropped)
        self.in_norm = nn.LayerNorm(d)
        self.layers = nn.ModuleList(GatedCausalLayer(d, r) for r in cfg.dilations)
        self.out_norm = nn.LayerNorm(d)
        self.head = DiffusionHead(cfg)

    # -- shared pieces -------------------------------------------------------------------------------------------
    def encode_notes(self, slots: Tensor) -> tuple[Tensor, Tensor]:
        """Dense slots [..., S, F] -> (sum of the valid note vectors [..., d], prior [..., 128] scaled)."""
        valid = slots[..., COL["valid"]] > 0
        h = self.slots(slots)
        spectra = self.prior(h, slots)
        summed = (h * valid.unsqueeze(-1)).sum(dim=-2)
        return summed, NotePrior.combine(spectra, valid, dim=-2)

    def _input(self, notes: Tensor, prior: Tensor, prev: Tensor, level: Tensor) -> Tensor:
        return self.in_norm(notes + self.prior_in(prior) + self.prev_in(prev) + self.noise_in(level))

    def backbone(self, x: Tensor, state: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        new_state = []
        for layer, past in zip(self.layers, state):
            x, past = layer(x, past)
            new_state.append(past)
        return self.out_norm(x), new_state

    def empty_state(self, batch: int = 1, device=None, dtype=torch.float32) -> list[Tensor]:
        return [torch.zeros(batch, layer.history(), self.config.d_model, device=device, dtype=dtype)
                for layer in self.layers]

    @torch.no_grad()
    def initial_state(self, batch: int = 1) -> list[Tensor]:
        """The state after `receptive_frames` of silence with no notes (what every stream starts from): the
        backbone alone, teacher-forced with silent previous frames, so it needs no sampling noise."""
        T, dev = self.config.receptive_frames, next(self.parameters()).device
        slots = torch.zeros(batch, T, self.config.slots, FEATURES, device=dev)
        notes, prior = self.encode_notes(slots)
        prev = torch.full((batch, T, N_MELS), -1.0, device=dev)
        level = torch.tensor([self.config.context_noise, 0.0], device=dev).expand(batch, T, 2)
        _, state = self.backbone(self._input(notes, prior, prev, level), self.empty_state(batch, device=dev))
        return state

    # -- the frame step (render, play, engines) ------------------------------------------------------------------
    def step(self, slots: Tensor, prev: Tensor, state: list[Tensor], noise: Tensor, steps: int
             ) -> tuple[Tensor, list[Tensor]]:
        """slots [B, S, F], prev [B, 128] (the last frame, scaled), noise [B, 2, 128] (sampling noise, then the
        context noise) -> (frame [B, 128] scaled, new state)."""
        notes, prior = self.encode_notes(slots)
        level = torch.tensor([self.config.context_noise, 0.0], device=prev.device).expand(prev.shape[0], 2)
        noisy_prev = prev + self.config.context_noise * noise[:, 1]
        c, state = self.backbone(self._input(notes, prior, noisy_prev, level)[:, None], state)
        return self.sample(c[:, 0], prior, noise[:, 0], steps), state

    def sample(self, c: Tensor, prior: Tensor, z: Tensor, steps: int) -> Tensor:
        """DDIM (eta 0) on the residual frame from noise z; x0 = prior + residual, clipped to [-1, 1]."""
        for i in range(steps):
            tau = torch.full(z.shape[:-1], (steps - i) / steps, device=z.device)
            alpha, sigma = (t.unsqueeze(-1) for t in cosine_alpha_sigma(tau))
            v = self.head(z, tau, c).float()
            x0 = (prior + alpha * z - sigma * v).clamp(-1.0, 1.0)
            if i == steps - 1:
                return x0
            r0 = x0 - prior
            eps = (z - alpha * r0) / sigma
            a_next, s_next = (t.unsqueeze(-1) for t in cosine_alpha_sigma(
                torch.full(z.shape[:-1], (steps - i - 1) / steps, device=z.device)))
            z = a_next * r0 + s_next * eps
        return prior  # steps == 0: the prior alone

    # -- training (all frames of a crop in parallel, teacher forced) ----------------------------------------------
    def sparse_notes(self, slots: Tensor) -> tuple[Tensor, Tensor]:
        """`encode_notes` computed on the valid slots only (training: most of the 32 slots are empty)."""
        shape = slots.shape[:-2]
        valid = slots[..., COL["valid"]] > 0  # [..., S]
        flat = slots[valid]  # [N, F]
        h = self.slots(flat)
        spectra = self.prior(h, flat)
        frame_index = valid.nonzero()[:, :-1]  # [N, len(shape)]
        flat_frame = torch.zeros(flat.shape[0], dtype=torch.long, device=slots.device)
        stride = 1
        for dim in reversed(range(len(shape))):
            flat_frame += frame_index[:, dim] * stride
            stride *= shape[dim]
        frames = math.prod(shape)
        summed = torch.zeros(frames, h.shape[-1], device=h.device, dtype=h.dtype).index_add(0, flat_frame, h)
        # log-sum-exp per frame with the silence floor, in fp32 (spectra are in natural log-mel); the shift by the
        # per-frame maximum is a constant for the gradient
        spectra = spectra.float()
        floor = torch.full((frames, N_MELS), LOG_MEL_MIN, device=h.device)
        index = flat_frame[:, None].expand(-1, N_MELS)
        peak = floor.scatter_reduce(0, index, spectra.detach(), "amax")
        total = torch.exp(floor - peak).index_add(0, flat_frame, torch.exp(spectra - peak[flat_frame]))
        prior = scale_features((peak + torch.log(total)).clamp(max=LOG_MEL_MAX), clip=True)
        return summed.reshape(*shape, -1), prior.reshape(*shape, N_MELS)

    def teacher_forced(self, slots: Tensor, prev: Tensor, level: Tensor) -> tuple[Tensor, Tensor]:
        """slots [B, T, S, F], prev [B, T, 128] (already noised), level [B, T, 2] -> (backbone output [B, T, d],
        prior [B, T, 128] scaled), every frame from zero state at the crop's start."""
        notes, prior = self.sparse_notes(slots)
        c, _ = self.backbone(self._input(notes, prior, prev, level), self.empty_state(slots.shape[0], slots.device))
        return c, prior

    def parameter_counts(self) -> dict[str, int]:
        parts = {"notes + prior": [self.slots, self.prior], "backbone": [self.prior_in, self.prev_in, self.noise_in,
                 self.in_norm, self.layers, self.out_norm], "head": [self.head]}
        return {name: sum(p.numel() for m in mods for p in m.parameters()) for name, mods in parts.items()}
