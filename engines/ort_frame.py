"""The causal family's frame step in ONNX Runtime: one graph per sampling-step count, the state as plain inputs.

Graph `step_<n>.onnx` (n = sampling steps of the head):
    inputs   slots [B, S, F], prev [B, 128], noise [B, 2, 128], state_0 .. state_{L-1} [B, 2 * dilation_l, d]
    outputs  frame [B, 128], next_state_0 .. next_state_{L-1}
the whole of `CausalModel.step`: note encoder + prior, backbone step, n DDIM steps of the head. The batch axis is
dynamic (the offline render runs chunks side by side). The same graphs are what a TensorRT build would read.
`manifest.json` records the names, the step counts, opset, torch version and the weights' fingerprint; a stale
export (other weights) is refused and exported again.
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from engines.base import EngineTimings
from engines.frame import FrameEngine
from engines.onnx_export import atomic_folder, read_manifest
from live_synth.engine_cache import engine_root, weights_fingerprint
from live_synth.errors import LiveSynthError, MissingDependencyError
from live_synth.model.causal import CausalConfig, CausalModel
from live_synth.model.frame_features import FEATURES

OPSET = 17
FORMAT = "live-synth-causal-step-1"
MANIFEST = "manifest.json"
EXPORT_STEPS = (1, 2, 3, 4)


class _StepGraph(nn.Module):
    def __init__(self, model: CausalModel, steps: int):
        super().__init__()
        self.model, self.steps = model, steps

    def forward(self, slots, prev, noise, *state):
        frame, new = self.model.step(slots, prev, list(state), noise, self.steps)
        return (frame, *new)


def state_names(model: CausalModel) -> tuple[list[str], list[str]]:
    n = len(model.layers)
    return [f"state_{i}" for i in range(n)], [f"next_state_{i}" for i in range(n)]


def export_frame_onnx(model: CausalModel, folder: str | os.PathLike, steps=EXPORT_STEPS, progress=None) -> Path:
    """Write step_<n>.onnx for each n in `steps` and manifest.json to `folder` (atomically, as a whole)."""
    try:
        import onnx  # noqa: F401  (torch's exporter needs it)
    except ImportError:
        raise MissingDependencyError("exporting ONNX graphs needs the onnx extra: pip install 'live-synth[onnx]'") \
            from None
    folder = Path(folder)
    model = model.to("cpu", torch.float32).eval()
    ins, outs = state_names(model)
    gen = torch.Generator().manual_seed(0)
    args = (torch.zeros(2, model.config.slots, FEATURES), torch.rand(2, 128, generator=gen) * 2 - 1,
            torch.randn(2, 2, 128, generator=gen), *[torch.randn(2, *s.shape[1:], generator=gen)
                                                     for s in model.empty_state(1)])
    dynamic = {name: {0: "batch"} for name in ["slots", "prev", "noise", "frame", *ins, *outs]}
    with atomic_folder(folder) as tmp:
        for n in steps:
            if progress:
                progress(f"exporting step_{n}.onnx")
            graph = _StepGraph(model, n).eval()
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the TorchScript exporter's tracer notes about constants
                torch.onnx.export(graph, args, str(tmp / f"step_{n}.onnx"), dynamo=False, opset_version=OPSET,
                                  input_names=["slots", "prev", "noise", *ins], output_names=["frame", *outs],
                                  dynamic_axes=dynamic, do_constant_folding=True)
        manifest = {"format": FORMAT, "opset": OPSET, "torch": torch.__version__,
                    "fingerprint": weights_fingerprint(model), "config": json.loads(model.config.to_json()),
                    "steps": list(steps), "inputs": ["slots", "prev", "noise", *ins], "outputs": ["frame", *outs]}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return folder


def read_frame_manifest(folder: str | os.PathLike, fingerprint: str | None = None) -> dict:
    """The frame step's manifest (`onnx_export.read_manifest` with this export's format; a plan folder holds plans,
    not graphs, so no file list is checked here)."""
    return read_manifest(folder, fingerprint, fmt=FORMAT, files=())


class OrtFrameEngine(FrameEngine):
    name = "onnx"

    def __init__(self, folder: str | os.PathLike, threads: int | None = None, fingerprint: str | None = None,
                 initial: list[np.ndarray] | None = None):
        try:
            import onnxruntime as ort
        except ImportError:
            raise MissingDependencyError("the onnx engine needs onnxruntime: pip install 'live-synth[onnx]'") \
                from None
        self.folder = Path(folder)
        self.manifest = read_frame_manifest(self.folder, fingerprint)
        self.config = CausalConfig.from_dict(self.manifest["config"], str(self.folder / MANIFEST))
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # see ort_engine.py
        self.sessions = {n: ort.InferenceSession(str(self.folder / f"step_{n}.onnx"), options,
                                                 providers=["CPUExecutionProvider"]) for n in self.manifest["steps"]}
        self.inputs, self.outputs = self.manifest["inputs"], self.manifest["outputs"]
        self._initial = initial  # [1, ...] arrays of the model's initial_state
        self.timings = EngineTimings()

    @classmethod
    def for_model(cls, model: CausalModel, root=None, threads: int | None = None) -> OrtFrameEngine:
        fingerprint = weights_fingerprint(model)
        folder = Path(root or engine_root(model, fingerprint)) / "onnx-causal"
        try:
            read_frame_manifest(folder, fingerprint)
        except LiveSynthError:
            print(f"onnx engine: exporting the model's frame step to {folder} (once per model)", file=sys.stderr)
            export_frame_onnx(model, folder)
        initial = [s.numpy() for s in model.initial_state(1)]
        return cls(folder, threads, fingerprint, initial)

    def initial_state(self, batch: int = 1) -> tuple:
        if self._initial is None:
            raise LiveSynthError("this onnx frame engine was built without the model's initial state")
        return tuple(np.repeat(s, batch, axis=0) for s in self._initial)

    def step(self, slots, prev, state, noise, steps):
        start = time.perf_counter()
        session = self.sessions.get(steps)
        if session is None:
            raise LiveSynthError(f"the onnx frame step was exported for {sorted(self.sessions)} steps, not {steps}")
        feeds = dict(zip(self.inputs, (np.ascontiguousarray(slots, np.float32), np.ascontiguousarray(prev, np.float32),
                                       np.ascontiguousarray(noise, np.float32), *state)))
        out = session.run(self.outputs, feeds)
        self.timings.add("step", start)
        return out[0], tuple(out[1:])
