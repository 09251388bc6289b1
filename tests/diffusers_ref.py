"""Test-only helpers around the diffusers reference implementation (never imported by live_synth).

diffusers 0.42's two encoders call `get_extended_attention_mask`, which transformers 5 removed from ModuleUtilsMixin;
`install_mask_shim` puts back the transformers-4 behaviour ((1 - mask) * finfo.min, broadcast over heads/queries).
"""

from __future__ import annotations

import pytest
import torch

diffusers = pytest.importorskip("diffusers", reason="diffusers is the parity reference: pip install -e '.[parity]'")
pytest.importorskip("transformers", reason="diffusers' encoders need transformers: pip install -e '.[parity]'")

from diffusers import DDPMScheduler, T5FilmDecoder  # noqa: E402
from diffusers.pipelines.deprecated.spectrogram_diffusion.continuous_encoder import SpectrogramContEncoder  # noqa: E402
from diffusers.pipelines.deprecated.spectrogram_diffusion.notes_encoder import SpectrogramNotesEncoder  # noqa: E402

from live_synth.model.config import ModelConfig  # noqa: E402


def _extended_mask(self, attention_mask, input_shape, device=None, dtype=None):
    dtype = dtype or torch.float32
    ext = attention_mask[:, None, None, :].to(dtype)
    return (1.0 - ext) * torch.finfo(dtype).min


def install_mask_shim() -> None:
    for cls in (SpectrogramNotesEncoder, SpectrogramContEncoder):
        if not hasattr(cls, "get_extended_attention_mask"):
            cls.get_extended_attention_mask = _extended_mask


install_mask_shim()


def reference_modules(cfg: ModelConfig, seed: int = 0):
    """diffusers' three modules with the shapes of `cfg` and random weights everywhere (norm scales and position
    tables included, so that a wrong key mapping cannot hide behind default values). eval() mode.

    Matrices get std 0.5/sqrt(fan_in), which keeps activations at the unit scale of a trained ε-predictor; with
    std 1/sqrt(fan_in) the FiLM products grow and fp32 reduction-order noise alone reaches ~1e-5 (measured), while
    float64 agreement stays at ~1e-14 (see test_model_parity's float64 test).
    """
    torch.manual_seed(seed)
    common = dict(d_model=cfg.d_model, num_heads=cfg.num_heads, d_kv=cfg.d_kv, d_ff=cfg.d_ff, dropout_rate=cfg.dropout)
    notes = SpectrogramNotesEncoder(
        max_length=cfg.max_tokens, vocab_size=cfg.vocab_size, num_layers=cfg.notes_layers,
        feed_forward_proj="gated-gelu", **common,
    )
    ctx = SpectrogramContEncoder(
        input_dims=cfg.input_dims, targets_context_length=cfg.context_length, num_layers=cfg.context_layers,
        feed_forward_proj="gated-gelu", **common,
    )
    dec = T5FilmDecoder(
        input_dims=cfg.input_dims, targets_length=cfg.target_length, max_decoder_noise_time=cfg.max_decoder_noise_time,
        num_layers=cfg.decoder_layers, **common,
    )
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for module in (notes, ctx, dec):
            for name, p in module.named_parameters():
                if name.endswith("weight") and p.ndim == 1:  # RMSNorm scales: around 1
                    p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=gen))
                else:
                    p.copy_(torch.randn(p.shape, generator=gen) * (0.5 * p.shape[-1] ** -0.5 if p.ndim == 2 else 1.0))
    return notes.eval(), ctx.eval(), dec.eval()


def reference_scheduler() -> DDPMScheduler:
    """The published pipeline's scheduler (HUB scheduler_config.json)."""
    return DDPMScheduler(
        num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", variance_type="fixed_large",
        clip_sample=True, clip_sample_range=1.0, prediction_type="epsilon",
    )
