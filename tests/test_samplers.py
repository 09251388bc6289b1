"""Samplers (spec §4) and classifier-free guidance in the render loop.

An oracle noise predictor that knows the clean target x0 turns every sampler into a closed-form check: with
ε(x, tau) = (x − alpha(tau)·x0) / sigma(tau) the implied x̂0 is x0 at every call, so the deterministic samplers
must land exactly on x0 and, in between, follow the exact probability-flow trajectory
x(tau) = alpha(tau)·x0 + sigma(tau)·ε_T (DDIM and DPM-Solver++ are exact when the data prediction is constant).
The oracle runs in float64: at tau = 1 alpha is 4.5e-5, so float32 rounding of x alone would move x̂0 by ~1e-3.
"""

from __future__ import annotations

import math

import pytest
import torch

from engines.torch_engine import TorchEngine
from live_synth.errors import LiveSynthError
from live_synth.model import SpectrogramDiffusion, preset
from live_synth.render import guided_model_fn, render_mel
from live_synth.sampling.samplers import SAMPLERS, DDPMParitySampler, make_sampler, sample
from live_synth.sampling.schedules import alpha_sigma, cosine_logsnr

SHAPE = (1, 16, 128)
STEP_COUNTS = [1, 2, 4, 8]


def clean_target(seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    x0 = (torch.rand(SHAPE, generator=gen, dtype=torch.float64) * 2 - 1) * 0.98
    x0[0, 0, :4] = torch.tensor([-1.0, 1.0, 0.0, -0.999], dtype=torch.float64)  # the ends of the data range too
    return x0


def oracle(x0: torch.Tensor, calls: list | None = None):
    def eps(x: torch.Tensor, tau: float) -> torch.Tensor:
        alpha, sigma = alpha_sigma(cosine_logsnr(tau))
        if calls is not None:
            calls.append((tau, x.clone()))
        return (x - alpha * x0) / sigma

    return eps


def run(sampler, eps_fn, seed: int = 0) -> torch.Tensor:
    """`sample()`'s loop, with the initial noise in float64."""
    gen = torch.Generator().manual_seed(seed)
    x = sampler.init_noise(SHAPE, gen).double()
    for i, tau in enumerate(sampler.taus):
        x = sampler.step(i, x, eps_fn(x, tau), gen)
    return x


@pytest.mark.parametrize("name", ["ddim", "dpmpp"])
@pytest.mark.parametrize("steps", STEP_COUNTS)
def test_deterministic_samplers_land_on_x0_along_the_exact_trajectory(name, steps):
    x0 = clean_target()
    calls: list = []
    sampler = make_sampler(name, steps)
    assert len(sampler.taus) == steps and sampler.taus[0] == 1.0
    assert all(a > b > 0 for a, b in zip(sampler.taus, sampler.taus[1:]))
    out = run(sampler, oracle(x0, calls))
    assert (out - x0).abs().max() <= 1e-4

    # Every model call after the first sees the point of the exact ODE trajectory at its tau.
    tau_T, x_T = calls[0]
    a_T, s_T = alpha_sigma(cosine_logsnr(tau_T))
    eps_T = (x_T - a_T * x0) / s_T
    for tau, x in calls[1:]:
        a, s = alpha_sigma(cosine_logsnr(tau))
        assert (x - (a * x0 + s * eps_T)).abs().max() <= 1e-6, f"{name}: off the trajectory at tau={tau}"


@pytest.mark.parametrize("name, order", [("ddim", 1.0), ("dpmpp", 2.0)])
def test_convergence_order_on_gaussian_data(name, order):
    """The oracle above cannot see a solver's order (constant x̂0 makes every consistent solver exact). Gaussian data
    x0 ~ N(0, v) can: its optimal x̂0(x, tau) = alpha·v / (alpha²·v + sigma²) · x varies along the path, and the
    probability-flow ODE has the closed form x(tau) = std(tau) / std(1) · x(1), std² = alpha²·v + sigma².
    DDIM must converge at first order, DPM-Solver++(2M) at second order (measured at tau = 0.25)."""
    v = 0.01

    def std(tau: float) -> float:
        alpha, sigma = alpha_sigma(cosine_logsnr(tau))
        return (alpha**2 * v + sigma**2) ** 0.5

    def error_at_quarter(steps: int) -> float:
        sampler = make_sampler(name, steps)
        x = torch.ones(1, 1, 1, dtype=torch.float64)
        for i, tau in enumerate(sampler.taus):
            if tau == 0.25:
                return abs(x.item() - std(0.25) / std(1.0))
            alpha, sigma = alpha_sigma(cosine_logsnr(tau))
            x0 = alpha * v / (alpha**2 * v + sigma**2) * x
            x = sampler.step(i, x, (x - alpha * x0) / sigma, None)
        raise AssertionError("0.25 is on the grid of every step count used here")

    errors = [error_at_quarter(n) for n in (16, 32, 64)]
    measured = [math.log2(a / b) for a, b in zip(errors, errors[1:])]
    assert all(abs(m - order) < 0.2 for m in measured), f"{name}: orders {measured}, errors {errors}"


@pytest.mark.parametrize("name", ["ddim", "dpmpp"])
def test_deterministic_samplers_ignore_the_generator_after_the_start(name):
    x0 = clean_target(1)
    sampler = make_sampler(name, 4)
    gen = torch.Generator().manual_seed(3)
    x = sampler.init_noise(SHAPE, gen).double()
    taus = list(sampler.taus)
    a = x.clone()
    b = x.clone()
    for i, tau in enumerate(taus):
        a = sampler.step(i, a, oracle(x0)(a, tau), torch.Generator().manual_seed(100 + i))
    sampler = make_sampler(name, 4)  # fresh (dpmpp keeps its previous x̂0 between steps)
    for i, tau in enumerate(taus):
        b = sampler.step(i, b, oracle(x0)(b, tau), None)
    assert torch.equal(a, b)


@pytest.mark.parametrize("steps", STEP_COUNTS)
def test_ancestral_returns_x0_at_its_last_step(steps):
    x0 = clean_target(2)
    sampler = make_sampler("ancestral", steps)
    assert sampler.taus[0] == 1.0 and sampler.taus[-1] == pytest.approx(1 / steps)
    out = run(sampler, oracle(x0), seed=5)
    assert (out - x0).abs().max() <= 1e-4


def test_ancestral_is_stochastic_in_between():
    """With the same oracle, different seeds give different intermediate points (it adds fresh noise)."""
    x0 = clean_target(3)
    seen = []
    for seed in (0, 1):
        calls: list = []
        run(make_sampler("ancestral", 4), oracle(x0, calls), seed=seed)
        seen.append(calls[2][1])
    assert (seen[0] - seen[1]).abs().max() > 1e-2


def test_sample_helper_runs_the_loop_on_float32():
    x0 = clean_target(4).float()
    out = sample(make_sampler("ddim", 8), lambda x, tau: oracle(x0.double())(x.double(), tau).float(), SHAPE,
                 torch.Generator().manual_seed(0))
    assert out.dtype == torch.float32 and out.shape == SHAPE
    assert (out - x0).abs().max() <= 1e-4  # the last step (tau = 1/8) is well conditioned in float32


@pytest.mark.parametrize("name", sorted(SAMPLERS))
@pytest.mark.parametrize("steps", [0, -3])
def test_samplers_reject_fewer_than_one_step(name, steps):
    with pytest.raises(LiveSynthError):
        make_sampler(name, steps)
    with pytest.raises(LiveSynthError):
        SAMPLERS[name](steps=steps)


def test_ddpm_rejects_more_steps_than_training_timesteps():
    with pytest.raises(LiveSynthError, match="1000"):
        make_sampler("ddpm", 1001)


def test_unknown_sampler_name():
    with pytest.raises(LiveSynthError) as info:
        make_sampler("euler_a", 8)
    message = str(info.value)
    assert "euler_a" in message and all(name in message for name in SAMPLERS)


# --- ddpm: diffusers' DDPMScheduler, step by step ---------------------------------------------------------------------


def parity_eps(x: torch.Tensor, tau: float, base: torch.Tensor) -> torch.Tensor:
    """Deterministic stand-in for the network: depends on x and on tau, magnitudes like a real ε."""
    return 0.8 * torch.tanh(x) + 0.5 * torch.sin(base + 7.0 * tau)


@pytest.mark.parity
@pytest.mark.parametrize("steps", [2, 10])
def test_ddpm_matches_diffusers_scheduler_step_by_step(steps):
    ref = pytest.importorskip("tests.diffusers_ref", reason="diffusers parity reference not installed")
    from diffusers.utils.torch_utils import randn_tensor

    scheduler = ref.reference_scheduler()
    scheduler.set_timesteps(steps)
    ours = DDPMParitySampler(steps=steps)
    assert [int(t) for t in scheduler.timesteps] == ours.timesteps
    assert ours.taus == [float(t / 1000) for t in scheduler.timesteps]  # what the pipeline feeds the decoder

    shape = (1, 256, 128)
    base = torch.randn(shape, generator=torch.Generator().manual_seed(99))
    gen_ref, gen_ours = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    x_ref = randn_tensor(shape, generator=gen_ref)  # as SpectrogramDiffusionPipeline draws its start
    x_ours = ours.init_noise(shape, gen_ours)
    assert torch.equal(x_ref, x_ours)
    for i, t in enumerate(scheduler.timesteps):
        x_ref = scheduler.step(parity_eps(x_ref, float(t / 1000), base), t, x_ref, generator=gen_ref).prev_sample
        x_ours = ours.step(i, x_ours, parity_eps(x_ours, ours.taus[i], base), gen_ours)
        assert (x_ours - x_ref).abs().max() <= 1e-6, f"step {i} (t={int(t)})"
    assert x_ours.abs().max() <= 1.0 + 1e-6  # the last step returns the clipped x̂0 (t = 0 adds no noise)


# --- classifier-free guidance in render -------------------------------------------------------------------------------


class RecordingEngine(TorchEngine):
    """TorchEngine that records whether encode was guided and the batch of every denoise call."""

    def __init__(self, model):
        super().__init__(model)
        self.guided: list[bool] = []
        self.batches: list[int] = []

    def encode(self, tokens, context, context_mask, roll=None, guided: bool = False):
        self.guided.append(guided)
        return super().encode(tokens, context, context_mask, roll=roll, guided=guided)

    def denoise(self, z, tau, memory):
        eps = super().denoise(z, tau, memory)
        self.batches.append(eps.shape[0])
        return eps


@pytest.fixture(scope="module")
def tiny_engine_model():
    torch.manual_seed(0)
    return SpectrogramDiffusion(preset("tiny"), seed=0).eval()


def segment(n_real: int, seed: int) -> list[int]:
    gen = torch.Generator().manual_seed(seed)
    real = [1134] + torch.randint(3, 1391, (n_real,), generator=gen).tolist() + [1]
    return real + [0] * (2048 - len(real))


def test_guidance_one_is_the_unguided_path_exactly(tiny_engine_model):
    segments = [segment(40, 1)]
    engine = RecordingEngine(tiny_engine_model)
    mel = render_mel(engine, segments, make_sampler("ddim", 3), 1.0, torch.Generator().manual_seed(0))
    assert engine.guided == [False] and engine.batches == [1, 1, 1], "one decoder pass per step, no uncond branch"

    # The same thing by hand, without guidance anywhere.
    from live_synth.audio.features import scale_features, unscale_features

    plain = TorchEngine(tiny_engine_model)
    ids = torch.tensor([segments[0][:42]])
    memory = plain.encode(ids, scale_features(torch.zeros(1, 256, 128), clip=True),
                          torch.zeros(1, 256, dtype=torch.bool))
    x = sample(make_sampler("ddim", 3), lambda z, tau: plain.denoise(z, tau, memory), (1, 256, 128),
               torch.Generator().manual_seed(0))
    assert torch.equal(torch.from_numpy(mel), unscale_features(x)[0])


def test_guidance_three_changes_the_result(tiny_engine_model):
    segments = [segment(40, 1), segment(25, 2)]
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    unguided = render_mel(TorchEngine(tiny_engine_model), segments, make_sampler("ddim", 2), 1.0, gen())
    engine = RecordingEngine(tiny_engine_model)
    guided = render_mel(engine, segments, make_sampler("ddim", 2), 3.0, gen())
    assert engine.guided == [True, True] and engine.batches == [2, 2, 2, 2]
    assert guided.shape == unguided.shape == (512, 128)
    assert abs(guided - unguided).max() > 1e-3


@torch.no_grad()
def test_guided_memory_rows_cond_and_uncond(tiny_engine_model):
    engine = TorchEngine(tiny_engine_model)
    gen = torch.Generator().manual_seed(4)
    context = torch.rand(1, 256, 128, generator=gen) * 2 - 1
    mask = torch.ones(1, 256, dtype=torch.bool)
    z = torch.randn(1, 256, 128, generator=gen)
    tokens_a = torch.tensor([segment(40, 1)[:42]])
    tokens_b = torch.tensor([segment(90, 7)[:92]])  # different notes, different length

    mem_a = engine.encode(tokens_a, context, mask, guided=True)
    mem_b = engine.encode(tokens_b, context, mask, guided=True)
    eps_a, eps_b = engine.denoise(z, 0.4, mem_a), engine.denoise(z, 0.4, mem_b)
    assert eps_a.shape == (2, 256, 128)
    # Row 0 is the conditional branch: the unguided prediction (batch 2 vs 1 may round differently).
    plain = engine.denoise(z, 0.4, engine.encode(tokens_a, context, mask))
    assert (eps_a[:1] - plain).abs().max() <= 1e-5
    assert (eps_a[0] - eps_b[0]).abs().max() > 1e-3, "the conditional branch depends on the notes"
    # Row 1 is the unconditional branch: it ignores the notes.
    assert (eps_a[1] - eps_b[1]).abs().max() <= 1e-6
    assert (eps_a[0] - eps_a[1]).abs().max() > 1e-3

    # guided_model_fn combines them as w·cond + (1 − w)·uncond.
    guided = guided_model_fn(engine, mem_a, 3.0)(z, 0.4)
    assert torch.allclose(guided, 3.0 * eps_a[:1] - 2.0 * eps_a[1:], atol=1e-6)
