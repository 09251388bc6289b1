"""ONNX Runtime engine: the graphs of `engines.onnx_export`, run in fp32 on the CPU (or CUDA with onnxruntime-gpu).

The engine keeps the notes encoder's output while a window's tokens do not change (as TorchEngine does), builds
the unconditional guidance branch without running a graph (zero keys/values, every key masked), and hands the
samplers torch tensors so that nothing above the engine knows which back end runs.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from engines.base import Engine, EngineTimings
from engines.onnx_export import export_onnx, read_manifest
from live_synth.engine_cache import engine_root, weights_fingerprint
from live_synth.errors import LiveSynthError, MissingDependencyError
from live_synth.model.decoder import CROSS_MASK_VALUE
from live_synth.model.network import SpectrogramDiffusion


@dataclass
class OrtMemory:
    """The denoise graph's memory inputs (numpy, batch 1 or 2) by name."""

    feeds: dict[str, np.ndarray]
    batch: int


def _ort():
    try:
        import onnxruntime
    except ImportError:
        raise MissingDependencyError("the onnx engine needs onnxruntime: pip install 'live-synth[onnx]'") from None
    return onnxruntime


def unconditional_like(name: str, array: np.ndarray) -> np.ndarray:
    """The unconditional branch's value of a memory output: every key masked, every encoding and roll zero."""
    if name == "cross_bias":
        return np.full_like(array, CROSS_MASK_VALUE)
    return np.zeros_like(array)


class OnnxEngine(Engine):
    name = "onnx"

    def __init__(self, folder: str | os.PathLike, device: str = "cpu", threads: int | None = None,
                 fingerprint: str | None = None):
        ort = _ort()
        self.folder = Path(folder)
        self.manifest = read_manifest(self.folder, fingerprint)
        from live_synth.model.config import ModelConfig

        self.config = ModelConfig.from_dict(self.manifest["config"], source=str(self.folder / "manifest.json"))
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        # ORT's worker threads spin after each run by default; between decoder steps torch (sampler, vocoder) runs
        # on the same cores, and spinning threads starved it (measured: 4-step ticks 74 ms instead of ~30 ms).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if device.startswith("cuda"):
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise LiveSynthError("the onnx engine on CUDA needs onnxruntime-gpu (CUDAExecutionProvider missing)")
            providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        elif device == "cpu":
            providers = ["CPUExecutionProvider"]
        else:
            raise LiveSynthError(f"the onnx engine runs on cpu or cuda, not {device!r}")
        self.sessions = {g: ort.InferenceSession(str(self.folder / f"{g}.onnx"), options, providers=providers)
                         for g in ("notes", "memory", "denoise")}
        self.device = "cpu"  # where the samplers keep their tensors
        self.outputs = self.manifest["graphs"]["memory"]["outputs"]
        self.timings = EngineTimings()
        self._notes_cache: tuple[bytes, np.ndarray] | None = None
        self.cache_hits = 0

    @classmethod
    def for_model(cls, model: SpectrogramDiffusion, root: str | os.PathLike | None = None, device: str = "cpu",
                  threads: int | None = None, export_if_missing: bool = True) -> OnnxEngine:
        """The engine for `model` from `root/onnx` (default root: the user cache), exported first when missing or
        stale (seconds for the small models)."""
        fingerprint = weights_fingerprint(model)
        folder = Path(root or engine_root(model, fingerprint)) / "onnx"
        try:
            read_manifest(folder, fingerprint)
        except LiveSynthError:
            if not export_if_missing:
                raise
            print(f"onnx engine: exporting the model's graphs to {folder} (once per model)", file=sys.stderr)
            export_onnx(model, folder)
        return cls(folder, device, threads, fingerprint)

    def _notes(self, tokens: np.ndarray) -> np.ndarray:
        key = tokens.tobytes() + bytes(str(tokens.shape), "ascii")
        if self._notes_cache is not None and self._notes_cache[0] == key:
            self.cache_hits += 1
            return self._notes_cache[1]
        hidden = self.sessions["notes"].run(None, {"tokens": tokens})[0]
        self._notes_cache = (key, hidden)
        return hidden

    def encode(self, tokens, context, context_mask, roll=None, guided: bool = False) -> OrtMemory:
        start = time.perf_counter()
        cfg = self.config
        tokens = np.ascontiguousarray(torch.as_tensor(tokens).cpu().numpy().astype(np.int64))
        if tokens.shape[0] != 1 or not 1 <= tokens.shape[1] <= cfg.max_tokens:
            raise LiveSynthError(f"onnx engine: tokens must be [1, 1..{cfg.max_tokens}], got {list(tokens.shape)}")
        hidden = self._notes(tokens)
        feeds = {"notes_hidden": hidden, "notes_mask": tokens > 0,
                 "context": torch.as_tensor(context).float().cpu().numpy(),
                 "context_mask": torch.as_tensor(context_mask).bool().cpu().numpy()}
        if cfg.pianoroll:
            if roll is None:
                raise LiveSynthError("this model needs the window's piano roll")
            feeds["roll"] = torch.as_tensor(roll).float().cpu().numpy()
        out = dict(zip(self.outputs, self.sessions["memory"].run(self.outputs, feeds)))
        if guided:
            out = {k: np.concatenate([v, unconditional_like(k, v)]) for k, v in out.items()}
        self.timings.add("encode", start)
        return OrtMemory(out, 2 if guided else 1)

    def denoise(self, z, tau: float, memory: OrtMemory):
        start = time.perf_counter()
        z = torch.as_tensor(z).float().cpu()
        if z.shape[0] != memory.batch:
            z = z.repeat(memory.batch // z.shape[0], 1, 1)
        feeds = dict(memory.feeds)
        feeds["z"] = np.ascontiguousarray(z.numpy())
        feeds["tau"] = np.full((memory.batch,), tau, np.float32)
        eps = self.sessions["denoise"].run(["eps"], feeds)[0]
        self.timings.add("denoise", start)
        return torch.from_numpy(eps)
