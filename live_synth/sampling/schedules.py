"""Noise schedules (spec §4).

- The continuous cosine log-SNR schedule the published model was trained with (ORIG `diffusion_utils`): tau ∈ [0, 1],
  logsnr(tau) = -2 ln tan(a tau + b), clipped to [-20, 20] by construction; alpha² = sigmoid(logsnr).
- The discrete 1000-step `squaredcos_cap_v2` table diffusers' DDPMScheduler uses (close to, not equal to, the above).
"""

from __future__ import annotations

import math

import torch

_B = math.atan(math.exp(-10.0))
_A = math.atan(math.exp(10.0)) - _B


def cosine_logsnr(tau: float) -> float:
    """Log signal-to-noise ratio at noise time tau (tau = 0: clean, logsnr 20; tau = 1: noise, logsnr -20)."""
    return -2.0 * math.log(math.tan(_A * tau + _B))


def alpha_sigma(logsnr: float) -> tuple[float, float]:
    """(alpha, sigma) with alpha² = sigmoid(logsnr), sigma² = sigmoid(-logsnr), so alpha² + sigma² = 1."""
    return math.sqrt(1.0 / (1.0 + math.exp(-logsnr))), math.sqrt(1.0 / (1.0 + math.exp(logsnr)))


def cosine_alpha_sigma(tau: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """alpha, sigma of the continuous cosine schedule for a batch of noise times (fp32, elementwise)."""
    logsnr = -2.0 * torch.log(torch.tan(_A * tau.float() + _B))
    return torch.sigmoid(logsnr).sqrt(), torch.sigmoid(-logsnr).sqrt()


def squaredcos_cap_v2_alphas_cumprod(num_train_timesteps: int = 1000, max_beta: float = 0.999) -> torch.Tensor:
    """diffusers' Glide cosine table, computed exactly as diffusers does (python floats → float32 → cumprod)."""

    def alpha_bar(t: float) -> float:
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

    betas = [
        min(1 - alpha_bar((i + 1) / num_train_timesteps) / alpha_bar(i / num_train_timesteps), max_beta)
        for i in range(num_train_timesteps)
    ]
    return torch.cumprod(1.0 - torch.tensor(betas, dtype=torch.float32), dim=0)
