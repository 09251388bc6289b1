"""Parity of any engine against the torch fp32 engine on fresh random inputs (issue #6, item 2).

The check runs the whole per-window path an engine implements, encode (with and without the guidance branch) then
denoise at several noise levels, on random tokens, a partly masked random context and a sparse random piano roll,
and reports the worst relative error  max|ε_engine − ε_torch| / max|ε_torch|.  NaN or inf anywhere fails it.

Bounds used by the tests and `live-synth export` (measured margins in BENCHMARKS.md):
  fp32 (torch CPU/CUDA, onnxruntime): 1e-4        bf16: 5e-2        fp16: 1e-2
The causal frame step (`check_frame_engine`) is held to FRAME_BOUND = 1e-3 in fp32: its frame goes through the
prior's log-sum-exp over 32 note slots and the sampler's x0 = prior + alpha z - sigma v, measured at 1.7e-4 on a
random test model at 1 step (ONNX Runtime fuses and reorders those reductions); the state tensors agree to 5e-7.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from engines.base import Engine
from live_synth.midi.pianoroll import ROLL_FEATURES

RELATIVE_BOUNDS = {"float32": 1e-4, "float16": 1e-2, "bfloat16": 5e-2}
FRAME_BOUND = 1e-3


@dataclass
class ParityReport:
    max_abs: float
    max_rel: float
    finite: bool
    cases: int

    def passes(self, bound: float) -> bool:
        return self.finite and self.max_rel <= bound

    def __str__(self) -> str:
        return (f"max relative error {self.max_rel:.2e} (max abs {self.max_abs:.2e}) over {self.cases} cases"
                + ("" if self.finite else ", NON-FINITE OUTPUT"))


def random_window(config, gen: torch.Generator, n_tokens: int, context_frames: int):
    tokens = torch.randint(3, config.vocab_size, (1, n_tokens), generator=gen)
    tokens[0, -1] = 1  # EOS, as real windows end
    context = torch.rand(1, config.context_length, 128, generator=gen) * 2 - 1
    mask = torch.zeros(1, config.context_length, dtype=torch.bool)
    mask[0, :context_frames] = True
    roll = None
    if config.pianoroll:
        roll = (torch.rand(1, config.target_length, ROLL_FEATURES, generator=gen) > 0.995).float()
    return tokens, context, mask, roll


def check_engine(engine: Engine, model, seed: int = 0, reference: Engine | None = None) -> ParityReport:
    """Compare `engine` with torch fp32 running `model` (on the CPU unless `reference` is given)."""
    if reference is None:
        from engines.torch_engine import TorchEngine

        reference = TorchEngine(model)
    cfg = reference.config
    gen = torch.Generator().manual_seed(seed)
    worst_abs = worst_rel = 0.0
    finite, cases = True, 0
    geometries = [(max(2, cfg.max_tokens // 8), cfg.context_length), (min(cfg.max_tokens, 40), 0),
                  (cfg.max_tokens, cfg.context_length // 3)]
    for n_tokens, context_frames in geometries:
        window = random_window(cfg, gen, n_tokens, context_frames)
        for guided in (False, True):
            mem_ref = reference.encode(*window, guided=guided)
            mem = engine.encode(*window, guided=guided)
            for tau in (0.05, 0.5, 0.95):
                z = torch.randn(1, cfg.target_length, 128, generator=gen)
                ref = reference.denoise(z, tau, mem_ref).float().cpu()
                out = engine.denoise(z, tau, mem).float().cpu()
                finite &= bool(torch.isfinite(out).all())
                diff = (out - ref).abs().max().item()
                diff = diff if math.isfinite(diff) else math.inf
                worst_abs = max(worst_abs, diff)
                worst_rel = max(worst_rel, diff / max(ref.abs().max().item(), 1e-12))
                cases += 1
    return ParityReport(worst_abs, worst_rel, finite, cases)


def check_frame_engine(engine, model, seed: int = 0, steps=(1, 2, 4)) -> ParityReport:
    """The causal family: `engine.step` against torch fp32 on fresh random inputs (random valid note slots, a
    random previous frame, random state tensors, random noise), the frame and every next-state tensor compared."""
    import numpy as np

    from engines.frame import TorchFrameEngine
    from live_synth.model.frame_features import COL, FEATURES

    reference = TorchFrameEngine(model)
    rng = np.random.default_rng(seed)
    cfg = model.config
    worst_abs = worst_rel = 0.0
    finite, cases = True, 0
    for n in steps:
        if hasattr(engine, "sessions") and n not in engine.sessions:
            continue
        for batch in (1, 3):
            slots = np.zeros((batch, cfg.slots, FEATURES), np.float32)
            used = int(rng.integers(1, cfg.slots))
            slots[:, :used] = rng.uniform(0, 1, (batch, used, FEATURES))
            slots[:, :used, COL["valid"]] = 1.0
            slots[:, :used, COL["pitch"]] = rng.uniform(20, 110, (batch, used))
            slots[:, :used, COL["program"]] = rng.integers(0, 129, (batch, used))
            slots[:, :used, COL["family"]] = rng.integers(0, 17, (batch, used))
            prev = rng.uniform(-1, 1, (batch, 128)).astype(np.float32)
            noise = rng.standard_normal((batch, 2, 128)).astype(np.float32)
            state = [rng.standard_normal((batch, *s.shape[1:])).astype(np.float32)
                     for s in model.empty_state(1)]
            ref_frame, ref_state = reference.step(slots, prev, tuple(torch.from_numpy(s) for s in state), noise, n)
            frame, new_state = engine.step(slots, prev, tuple(state), noise, n)
            pairs = [(ref_frame, frame)] + [(a.numpy(), np.asarray(torch.as_tensor(b).cpu()))
                                            for a, b in zip(ref_state, new_state)]
            for ref, out in pairs:
                finite &= bool(np.isfinite(out).all())
                diff = float(np.abs(out - ref).max())
                worst_abs = max(worst_abs, diff if math.isfinite(diff) else math.inf)
                worst_rel = max(worst_rel, diff / max(float(np.abs(ref).max()), 1e-12))
            cases += 1
    return ParityReport(worst_abs, worst_rel, finite, cases)
