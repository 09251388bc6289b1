"""Samplers: turn a noise predictor into spectrogram frames. They know nothing about the networks.

Every sampler has the same small surface (as diffusers' schedulers do: a list of noise times plus a `step`):
    x = sampler.init_noise(shape, generator)
    for i, tau in enumerate(sampler.taus):
        x = sampler.step(i, x, model_fn(x, tau), generator)
`sample()` runs that loop. The model's output is ε, or v = alpha ε - sigma x0 for v-models (`Sampler.prediction`,
which `sample()` sets from the model). All samplers clip the implied clean sample x̂0 to [-1, 1] (the data range) and,
where the original does, recompute ε from the clipped x̂0. From v, x̂0 = alpha z - sigma v needs no division: exact
at tau = 1 too, where an ε-model's x̂0 = (z - sigma ε)/alpha divides by alpha = 4.5e-5.

- `ddpm`: diffusers' DDPMScheduler as the published pipeline configures it (squaredcos_cap_v2, fixed_large, clipped
  x̂0, "leading" spacing): bit-compatible random draws, for parity with SpectrogramDiffusionPipeline.
- `ancestral`: the original continuous-time cosine ancestral sampler (spec §4.2; 1000 steps in the paper).
- `ddim`: deterministic DDIM on the cosine schedule, for few steps.
- `dpmpp`: deterministic DPM-Solver++(2M) on the cosine schedule, for few steps (second order).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from live_synth.errors import LiveSynthError
from live_synth.sampling.schedules import alpha_sigma, cosine_logsnr, squaredcos_cap_v2_alphas_cumprod

ModelFn = Callable[[Tensor, float], Tensor]  # (noisy frames, tau) -> the model's prediction (ε or v)
PREDICTIONS = ("eps", "v")


def _randn(shape, generator: torch.Generator | None, like: Tensor | None = None, dtype=torch.float32) -> Tensor:
    """Gaussian noise drawn on the generator's device (CPU generators give the same numbers on every machine)."""
    device = generator.device if generator is not None else "cpu"
    noise = torch.randn(shape, generator=generator, device=device, dtype=dtype)
    return noise.to(like.device) if like is not None else noise


@dataclass
class Sampler:
    """Base: noise times `taus` (decreasing, in [0, 1]) at which the model is called, and `step`."""

    steps: int
    prediction: str = "eps"  # what the model function returns: "eps" or "v"
    taus: list[float] = field(init=False)

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise LiveSynthError(f"{type(self).__name__} needs at least 1 step, got {self.steps}")
        self.taus = self.make_taus()

    def make_taus(self) -> list[float]:
        return [(self.steps - i) / self.steps for i in range(self.steps)]  # 1, ..., 1/N; the last step lands on 0

    def init_noise(self, shape, generator: torch.Generator | None, device="cpu") -> Tensor:
        return _randn(shape, generator).to(device)

    def step(self, i: int, x: Tensor, out: Tensor, generator: torch.Generator | None) -> Tensor:
        raise NotImplementedError

    def clipped_x0_eps(self, x: Tensor, out: Tensor, alpha: float, sigma: float) -> tuple[Tensor, Tensor]:
        """x̂0 clipped to the data range, and ε recomputed from it (ORIG eval_step), from the model output `out`."""
        if self.prediction == "v":
            x0 = (alpha * x - sigma * out).clamp(-1.0, 1.0)
        else:
            x0 = ((x - sigma * out) / alpha).clamp(-1.0, 1.0)
        return x0, (x - alpha * x0) / sigma

    def level(self, i: int) -> tuple[float, float]:
        """(alpha, sigma) of the sample entering step i; level(steps) = (1, 0), the clean frames."""
        if i >= self.steps:
            return 1.0, 0.0
        return alpha_sigma(cosine_logsnr(self.taus[i]))


@dataclass
class DDPMParitySampler(Sampler):
    """diffusers' DDPMScheduler.step for the published config, same arithmetic and same random draws."""

    num_train_timesteps: int = 1000

    def make_taus(self) -> list[float]:
        if self.steps > self.num_train_timesteps:
            raise LiveSynthError(f"ddpm needs 1..{self.num_train_timesteps} steps, got {self.steps}")
        ratio = self.num_train_timesteps // self.steps
        self.timesteps = [i * ratio for i in reversed(range(self.steps))]  # "leading" spacing, steps_offset 0
        self.alphas_cumprod = squaredcos_cap_v2_alphas_cumprod(self.num_train_timesteps)
        # The model sees t / 1000 computed as int64 tensor / int → float32, as the pipeline does.
        return [float(torch.tensor(t) / self.num_train_timesteps) for t in self.timesteps]

    def level(self, i: int) -> tuple[float, float]:
        if i >= self.steps:
            return 1.0, 0.0
        a = float(self.alphas_cumprod[self.timesteps[i]])
        return math.sqrt(a), math.sqrt(1.0 - a)

    def step(self, i: int, x: Tensor, eps: Tensor, generator: torch.Generator | None) -> Tensor:
        if self.prediction != "eps":
            raise LiveSynthError("the ddpm parity sampler is for ε-models (the published weights); use ddim or dpmpp")
        t = self.timesteps[i]
        one = torch.tensor(1.0)
        a_t = self.alphas_cumprod[t]
        a_prev = self.alphas_cumprod[self.timesteps[i + 1]] if i + 1 < self.steps else one
        b_t, b_prev = 1 - a_t, 1 - a_prev
        cur_alpha = a_t / a_prev
        cur_beta = 1 - cur_alpha
        x0 = ((x - b_t ** 0.5 * eps) / a_t ** 0.5).clamp(-1.0, 1.0)
        mean = (a_prev ** 0.5 * cur_beta) / b_t * x0 + cur_alpha ** 0.5 * b_prev / b_t * x
        if t > 0:  # "fixed_large": variance = beta_t
            mean = mean + cur_beta ** 0.5 * _randn(eps.shape, generator, like=eps, dtype=eps.dtype)
        return mean


@dataclass
class CosineAncestralSampler(Sampler):
    """The original sampler (spec §4.2): step i = N-1..0 from t = (i+1)/N to s = i/N, "large" variance."""

    def step(self, i: int, x: Tensor, out: Tensor, generator: torch.Generator | None) -> Tensor:
        n = self.steps
        t, s = (n - i) / n, (n - i - 1) / n
        lt, ls = cosine_logsnr(t), cosine_logsnr(s)
        (a_t, s_t), (a_s, _) = alpha_sigma(lt), alpha_sigma(ls)
        x0, _ = self.clipped_x0_eps(x, out, a_t, s_t)
        if i == n - 1:
            return x0
        r = math.exp(lt - ls)  # SNR(t) / SNR(s) < 1
        mean = r * (a_t / a_s) * x + (1 - r) * a_s * x0
        std = math.sqrt((1 - r) * s_t**2)
        return mean + std * _randn(x.shape, generator, like=x, dtype=x.dtype)


@dataclass
class DDIMSampler(Sampler):
    """Deterministic DDIM (eta = 0) on the cosine schedule with clipped x̂0; returns x̂0 after the last step."""

    def step(self, i: int, x: Tensor, out: Tensor, generator: torch.Generator | None) -> Tensor:
        a_t, s_t = alpha_sigma(cosine_logsnr(self.taus[i]))
        x0, eps = self.clipped_x0_eps(x, out, a_t, s_t)
        if i == self.steps - 1:
            return x0
        a_s, s_s = alpha_sigma(cosine_logsnr(self.taus[i + 1]))
        return a_s * x0 + s_s * eps


@dataclass
class DPMSolverPPSampler(Sampler):
    """DPM-Solver++(2M) (Lu et al. 2022), data prediction with clipped x̂0, first order on the first and last step."""

    _prev: tuple[Tensor, float] | None = field(default=None, init=False, repr=False)  # x̂0, logsnr of last step

    def init_noise(self, shape, generator: torch.Generator | None, device="cpu") -> Tensor:
        self._prev = None
        return super().init_noise(shape, generator, device)

    def step(self, i: int, x: Tensor, out: Tensor, generator: torch.Generator | None) -> Tensor:
        lt = cosine_logsnr(self.taus[i])
        a_t, s_t = alpha_sigma(lt)
        x0, _ = self.clipped_x0_eps(x, out, a_t, s_t)
        if i == self.steps - 1:
            self._prev = None
            return x0
        ls = cosine_logsnr(self.taus[i + 1])
        a_s, s_s = alpha_sigma(ls)
        h = (ls - lt) / 2  # in half-log-SNR, lambda = log(alpha / sigma)
        d = x0
        if self._prev is not None and i < self.steps - 2:
            x0_prev, l_prev = self._prev
            r = ((lt - l_prev) / 2) / h
            d = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * x0_prev
        self._prev = (x0, lt)
        return (s_s / s_t) * x - a_s * math.expm1(-h) * d


SAMPLERS: dict[str, type[Sampler]] = {
    "ddpm": DDPMParitySampler,
    "ancestral": CosineAncestralSampler,
    "ddim": DDIMSampler,
    "dpmpp": DPMSolverPPSampler,
}


def make_sampler(name: str, steps: int) -> Sampler:
    try:
        cls = SAMPLERS[name]
    except KeyError:
        raise LiveSynthError(f"unknown sampler {name!r}; choose one of {sorted(SAMPLERS)}") from None
    return cls(steps=steps)


def sample(sampler: Sampler, model_fn: ModelFn, shape, generator: torch.Generator | None, device="cpu",
           known: tuple[Tensor, Tensor] | None = None, prediction: str = "eps") -> Tensor:
    """Run the sampling loop: pure noise at taus[0] → clean scaled frames. `model_fn` returns ε, or v when
    `prediction` is "v" (the model config's `prediction`; it is set on the sampler).

    `known` = (x0 [B, T, 128], mask [B, T, 1] bool) inpaints: after every step the masked frames are replaced by
    their known clean values noised to the level of the step's output (fixed noise per call), so the generated
    frames are drawn consistent with them (window inpainting, architecture.md strategy 1).
    """
    if prediction not in PREDICTIONS:
        raise LiveSynthError(f"unknown prediction {prediction!r}; choose one of {PREDICTIONS}")
    sampler.prediction = prediction
    x = sampler.init_noise(shape, generator, device)
    if known is not None:
        x0_known, mask = (t.to(x.device) for t in known)
        fixed = _randn(shape, generator).to(x.device)

        def pin(x: Tensor, i: int) -> Tensor:
            alpha, sigma = sampler.level(i)
            return torch.where(mask, alpha * x0_known + sigma * fixed, x)

        x = pin(x, 0)
    for i, tau in enumerate(sampler.taus):
        x = sampler.step(i, x, model_fn(x, tau), generator)
        if known is not None:
            x = pin(x, i + 1)
    return x
