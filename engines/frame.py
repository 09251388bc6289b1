"""Frame-step engines of the causal family: `frame, state = engine.step(slots, prev, state, noise, steps)`.

Everything crosses the boundary as NumPy float32 (slots [B, S, F], prev [B, 128] scaled, noise [B, 2, 128]) and the
state is an opaque tuple the engine made (`initial_state`): torch tensors for the torch engine, NumPy arrays for
ONNX Runtime. A step never modifies a state it was given, so a caller may keep the states of earlier frames and
step again from any of them (the live loop's rollback keeps one per speculative frame; nothing is copied).

Threads: an engine belongs to one thread (the render loop or the generation worker).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod

import numpy as np
import torch

from engines.base import EngineTimings
from live_synth.errors import LiveSynthError
from live_synth.model.causal import CausalConfig, CausalModel

State = tuple


class FrameEngine(ABC):
    name: str
    config: CausalConfig
    timings: EngineTimings

    @abstractmethod
    def initial_state(self, batch: int = 1) -> State:
        """The state after a long silence (what a stream starts from)."""

    @abstractmethod
    def step(self, slots: np.ndarray, prev: np.ndarray, state: State, noise: np.ndarray, steps: int
             ) -> tuple[np.ndarray, State]:
        """One frame per batch row: (frame [B, 128] scaled, the next state)."""

    def warm_up(self, steps: int = 2) -> None:
        from live_synth.model.frame_features import FEATURES

        rng = np.random.default_rng(1234)
        state = self.initial_state()
        for _ in range(3):
            slots = np.zeros((1, self.config.slots, FEATURES), np.float32)
            _, state = self.step(slots, rng.uniform(-1, 1, (1, 128)).astype(np.float32), state,
                                 rng.standard_normal((1, 2, 128)).astype(np.float32), steps)
        self.timings = EngineTimings()


class TorchFrameEngine(FrameEngine):
    name = "torch"

    def __init__(self, model: CausalModel, device: str = "cpu", dtype: str = "float32"):
        if dtype != "float32":
            # bf16 was slower than fp32 at batch 1 on this CPU for a model this size (causal-model.md); not offered
            raise LiveSynthError("the causal family's torch engine runs float32")
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise LiveSynthError("CUDA was asked for but torch sees no GPU (install a CUDA build of torch)")
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.config = model.config
        self.timings = EngineTimings()
        self._initial: dict[int, State] = {}

    def initial_state(self, batch: int = 1) -> State:
        if batch not in self._initial:
            self._initial[batch] = tuple(s.to(self.device) for s in self.model.initial_state(batch))
        return self._initial[batch]

    @torch.inference_mode()
    def step(self, slots, prev, state, noise, steps):
        start = time.perf_counter()
        dev = self.device
        frame, new = self.model.step(torch.from_numpy(slots).to(dev), torch.from_numpy(prev).to(dev), list(state),
                                     torch.from_numpy(noise).to(dev), steps)
        out = frame.float().cpu().numpy()
        self.timings.add("step", start)
        return out, tuple(new)
