"""Discriminators for adversarial vocoder training: multi-period (HiFi-GAN) and multi-resolution (UnivNet/Vocos).

- `MultiPeriodDiscriminator`: for each period p, the waveform folded into [T / p, p] and judged by 2-D convolutions
  along time with kernel (k, 1): periodic structure (pitch, the harmonic series) that a spectral loss blurs.
- `MultiResolutionDiscriminator`: magnitude spectrograms at several FFT sizes judged by 2-D convolutions: the
  spectral fine structure (noise, transients, harmonics' sharpness).
Both return, per sub-discriminator, its logits and its intermediate feature maps (for the feature-matching loss).
Sized for CPU training (channels 16-128): a discriminator only has to tell this vocoder's output from FluidSynth's.

Losses (`adversarial_losses`): least-squares GAN (HiFi-GAN): D minimises (1 - D(real))^2 + D(fake)^2, the generator
(1 - D(fake))^2, plus the L1 distance between real and fake feature maps (feature matching).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm


class PeriodDiscriminator(nn.Module):
    def __init__(self, period: int, channels=(16, 64, 128, 128)):
        super().__init__()
        self.period = period
        layers, c_in = [], 1
        for i, c in enumerate(channels):
            layers.append(weight_norm(nn.Conv2d(c_in, c, (5, 1), (3 if i < len(channels) - 1 else 1, 1), (2, 0))))
            c_in = c
        self.layers = nn.ModuleList(layers)
        self.out = weight_norm(nn.Conv2d(c_in, 1, (3, 1), 1, (1, 0)))

    def forward(self, audio: Tensor) -> tuple[Tensor, list[Tensor]]:
        b, t = audio.shape
        pad = (-t) % self.period
        x = F.pad(audio, (0, pad), mode="reflect").view(b, 1, (t + pad) // self.period, self.period)
        features = []
        for layer in self.layers:
            x = F.leaky_relu(layer(x), 0.1)
            features.append(x)
        x = self.out(x)
        features.append(x)
        return x.flatten(1), features


class ResolutionDiscriminator(nn.Module):
    def __init__(self, n_fft: int, hop: int, channels: int = 32):
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        self.layers = nn.ModuleList([
            weight_norm(nn.Conv2d(1, channels, (7, 5), (2, 2), (3, 2))),
            weight_norm(nn.Conv2d(channels, channels, (5, 3), (2, 1), (2, 1))),
            weight_norm(nn.Conv2d(channels, channels, (5, 3), (2, 1), (2, 1))),
            weight_norm(nn.Conv2d(channels, channels, (3, 3), 1, 1)),
        ])
        self.out = weight_norm(nn.Conv2d(channels, 1, (3, 3), 1, 1))

    def forward(self, audio: Tensor) -> tuple[Tensor, list[Tensor]]:
        spec = torch.stft(audio.float(), self.n_fft, self.hop, window=self.window, center=True, return_complex=True)
        x = torch.log1p(spec.abs()).unsqueeze(1)  # [B, 1, bins, frames]
        features = []
        for layer in self.layers:
            x = F.leaky_relu(layer(x), 0.1)
            features.append(x)
        x = self.out(x)
        features.append(x)
        return x.flatten(1), features


class Discriminators(nn.Module):
    """All sub-discriminators; `forward(audio)` -> list of (logits, feature maps)."""

    def __init__(self, periods=(2, 3, 5, 7, 11), resolutions=((512, 128), (1024, 256), (256, 64))):
        super().__init__()
        self.periods = nn.ModuleList(PeriodDiscriminator(p) for p in periods)
        self.resolutions = nn.ModuleList(ResolutionDiscriminator(n, h) for n, h in resolutions)

    def forward(self, audio: Tensor) -> list[tuple[Tensor, list[Tensor]]]:
        return [d(audio) for d in (*self.periods, *self.resolutions)]


def discriminator_loss(real: list, fake: list) -> Tensor:
    return sum(torch.mean((1 - r) ** 2) + torch.mean(f**2) for (r, _), (f, _) in zip(real, fake)) / len(real)


def generator_losses(real: list, fake: list) -> tuple[Tensor, Tensor]:
    """(adversarial loss, feature-matching loss) of the generator; `real`'s features are targets (detached)."""
    adversarial = sum(torch.mean((1 - f) ** 2) for f, _ in fake) / len(fake)
    matching = sum(torch.mean(torch.abs(rf.detach() - ff)) for (_, r_feats), (_, f_feats) in zip(real, fake)
                   for rf, ff in zip(r_feats, f_feats)) / len(fake)
    return adversarial, matching
