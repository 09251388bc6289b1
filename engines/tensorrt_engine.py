"""TensorRT engine: plans built ahead of time from the ONNX graphs of `engines.onnx_export`, run on CUDA, with the
decoder step replayed from a CUDA graph.

NOT RUN ON ANY MACHINE OF THIS PROJECT YET: TensorRT cannot be installed here (environment.md), so this file follows
TensorRT 10's documented Python API (Builder / OnnxParser / IBuilderConfig / IExecutionContext.execute_async_v3 with
set_tensor_address), and its tests run only where `import tensorrt` works and a GPU is present. What is tested here is
the ONNX it reads (onnxruntime parity against torch fp32) and the build settings as data (`build_plan_settings`).

Precision: fp16 or bf16 for the matrix products; layers of the normalisations (RMSNorm's mean of squares and rsqrt),
the softmax, the noise-time embedding and the noise schedule of v-models (tan near pi/2) are pinned to fp32 with
OBEY_PRECISION_CONSTRAINTS, as the model's torch code computes them. The attention bias stays an fp32 input: -1e10
is not representable in fp16.
"""

from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path

import torch

from engines.base import Engine, EngineTimings, copy_padded, key_bucket, padded_like
from engines.onnx_export import GRAPHS, export_onnx, read_manifest
from live_synth.engine_cache import engine_root, weights_fingerprint
from live_synth.errors import LiveSynthError, MissingDependencyError
from live_synth.model.decoder import CROSS_MASK_VALUE, CrossMemory

PRECISIONS = ("fp16", "bf16", "fp32")
# ONNX node names (kept by TensorRT as layer names) of the operations that stay in fp32.
FP32_NAME_PARTS = ("norm", "Softmax", "time_mlp", "Sin", "Cos", "Exp", "noise_level")


def _trt():
    try:
        import tensorrt
    except ImportError:
        raise MissingDependencyError("the tensorrt engine needs NVIDIA TensorRT 10 (pip install tensorrt) and a "
                                     "CUDA GPU; it is not installable on every machine") from None
    return tensorrt


def build_plan_settings(manifest: dict, precision: str) -> dict[str, dict]:
    """Per graph: the optimisation profile (input → (min, opt, max) shapes) and the precision, from a manifest."""
    if precision not in PRECISIONS:
        raise LiveSynthError(f"TensorRT precision must be one of {PRECISIONS}, not {precision!r}")
    g = manifest["geometry"]
    m, s, t, d, h, dkv = (g[k] for k in ("max_tokens", "context_length", "target_length", "d_model", "num_heads",
                                          "d_kv"))
    opt = min(128, m)  # a typical window's token count

    def keys(n: int) -> dict[str, tuple]:
        shapes = {"z": (t, 128), "tau": ()}
        for name in manifest["graphs"]["denoise"]["inputs"][2:]:
            shapes[name] = {"cross_bias": (1, 1, n + s), "frame_bias": (t, d)}.get(name, (h, n + s, dkv))
        return shapes

    lo, mid, hi = keys(1), keys(opt), keys(m)
    return {
        "notes": {"profile": {"tokens": ((1, 1), (1, opt), (1, m))}, "precision": precision},
        "memory": {"profile": {"notes_hidden": ((1, 1, d), (1, opt, d), (1, m, d)),
                               "notes_mask": ((1, 1), (1, opt), (1, m))}, "precision": precision},
        "denoise": {"profile": {k: ((1, *lo[k]), (2, *mid[k]), (2, *hi[k])) for k in lo}, "precision": precision},
    }


def build_plans(onnx_dir: str | os.PathLike, out_dir: str | os.PathLike, precision: str = "fp16",
                workspace_gib: float = 4.0, progress=None) -> Path:
    """Build notes.plan, memory.plan and denoise.plan from an ONNX export (minutes per graph on a big model)."""
    onnx_dir, out_dir = Path(onnx_dir), Path(out_dir)
    settings = build_plan_settings(read_manifest(onnx_dir), precision)
    _build_all(onnx_dir, out_dir, {g: settings[g]["profile"] for g in GRAPHS}, precision, FP32_NAME_PARTS,
               workspace_gib, progress)
    (out_dir / "precision").write_text(precision + "\n")
    return out_dir


def _build_all(onnx_dir: Path, out_dir: Path, profiles: dict[str, dict], precision: str, fp32_parts: tuple,
               workspace_gib: float = 4.0, progress=None) -> None:
    """One plan per graph `<name>.onnx` -> `<name>.plan` (written atomically), with its optimisation profile;
    layers whose names hold one of `fp32_parts` (and softmaxes) pinned to fp32 in the half precisions; the
    export's manifest copied next to the plans."""
    trt = _trt()
    out_dir.mkdir(parents=True, exist_ok=True)
    logger = trt.Logger(trt.Logger.WARNING)
    for graph, profile_shapes in profiles.items():
        if progress:
            progress(f"building {graph}.plan ({precision})")
        builder = trt.Builder(logger)
        network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
        parser = trt.OnnxParser(network, logger)
        if not parser.parse_from_file(str(onnx_dir / f"{graph}.onnx")):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise LiveSynthError(f"TensorRT could not parse {graph}.onnx: {errors}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
        if precision != "fp32":
            config.set_flag(trt.BuilderFlag.FP16 if precision == "fp16" else trt.BuilderFlag.BF16)
            config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
            for i in range(network.num_layers):
                layer = network.get_layer(i)
                if any(part in layer.name for part in fp32_parts) or layer.type == trt.LayerType.SOFTMAX:
                    layer.precision = trt.float32
                    for j in range(layer.num_outputs):
                        if layer.get_output(j).dtype in (trt.float16, trt.bfloat16, trt.float32):
                            layer.set_output_type(j, trt.float32)
        if profile_shapes:
            profile = builder.create_optimization_profile()
            for name, (lo, opt, hi) in profile_shapes.items():
                profile.set_shape(name, lo, opt, hi)
            config.add_optimization_profile(profile)
        plan = builder.build_serialized_network(network, config)
        if plan is None:
            raise LiveSynthError(f"TensorRT failed to build {graph}.plan (see the log above)")
        tmp = out_dir / f".{graph}.plan.tmp"
        tmp.write_bytes(bytes(plan))
        os.replace(tmp, out_dir / f"{graph}.plan")
    (out_dir / "manifest.json").write_text((onnx_dir / "manifest.json").read_text())


class _Context:
    """One plan's execution context, with torch CUDA tensors as its I/O buffers."""

    def __init__(self, runtime, path: Path):
        self.engine = runtime.deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise LiveSynthError(f"{path}: TensorRT could not load this plan (built by another TensorRT version?)")
        self.context = self.engine.create_execution_context()
        self._setup()

    def fork(self) -> _Context:
        """Another execution context of the same plan (its own shapes and scratch memory)."""
        other = object.__new__(_Context)
        other.engine, other.context = self.engine, self.engine.create_execution_context()
        other._setup()
        return other

    def _setup(self) -> None:
        trt = _trt()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if n not in self.inputs]
        self.dtypes = {n: _torch_dtype(trt, self.engine.get_tensor_dtype(n)) for n in names}

    def run(self, feeds: dict[str, torch.Tensor], stream: torch.cuda.Stream,
            outputs: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        for name in self.inputs:
            tensor = feeds[name].to(self.dtypes[name]).contiguous()
            feeds[name] = tensor
            self.context.set_input_shape(name, tuple(tensor.shape))
            self.context.set_tensor_address(name, tensor.data_ptr())
        if outputs is None:
            outputs = {n: torch.empty(tuple(self.context.get_tensor_shape(n)), dtype=self.dtypes[n],
                                      device="cuda") for n in self.outputs}
        for name, tensor in outputs.items():
            self.context.set_tensor_address(name, tensor.data_ptr())
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError("TensorRT execute_async_v3 failed")
        return outputs


def _torch_dtype(trt, dtype):
    return {trt.float32: torch.float32, trt.float16: torch.float16, trt.bfloat16: torch.bfloat16,
            trt.int64: torch.int64, trt.int32: torch.int32, trt.bool: torch.bool}[dtype]


class TensorRTEngine(Engine):
    name = "tensorrt"

    def __init__(self, plan_dir: str | os.PathLike, fingerprint: str | None = None, cuda_graph: bool = True):
        trt = _trt()
        if not torch.cuda.is_available():
            raise LiveSynthError("the tensorrt engine needs a CUDA GPU that torch can see")
        plan_dir = Path(plan_dir)
        missing = [g for g in GRAPHS if not (plan_dir / f"{g}.plan").exists()]
        if missing:
            raise LiveSynthError(f"{plan_dir}: no {missing[0]}.plan; run `live-synth export --engine tensorrt`")
        manifest = read_manifest(plan_dir.parent / "onnx", fingerprint)
        from live_synth.model.config import ModelConfig

        self.config = ModelConfig.from_dict(manifest["config"])
        self.device = torch.device("cuda")
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.ctx = {g: _Context(runtime, plan_dir / f"{g}.plan") for g in GRAPHS}
        self.stream = torch.cuda.Stream()
        self.cuda_graph = cuda_graph
        self._graphs: dict[tuple, list] = {}  # (batch, key bucket) → [graph, feeds, memory buffers, out, ...]
        self._notes_cache: tuple[bytes, torch.Tensor] | None = None
        self.cache_hits = 0
        self.timings = EngineTimings()

    @classmethod
    def for_model(cls, model, root: str | os.PathLike | None = None, precision: str = "fp16",
                  build_if_missing: bool = False, progress=None, cuda_graph: bool = True) -> TensorRTEngine:
        """The engine for `model` from `root/tensorrt-<precision>` (default root: the user cache)."""
        fingerprint = weights_fingerprint(model)
        root = Path(root or engine_root(model, fingerprint))
        onnx_dir, plan_dir = root / "onnx", root / f"tensorrt-{precision}"
        if not (plan_dir / "denoise.plan").exists():
            if not build_if_missing:
                raise LiveSynthError(f"no TensorRT plans in {plan_dir}; build them first with "
                                     f"`live-synth export --engine tensorrt --precision {precision}`")
            try:
                read_manifest(onnx_dir, fingerprint)
            except LiveSynthError:
                export_onnx(model, onnx_dir, progress)
            build_plans(onnx_dir, plan_dir, precision, progress=progress)
        return cls(plan_dir, fingerprint, cuda_graph)

    def encode(self, tokens, context, context_mask, roll=None, guided: bool = False) -> CrossMemory:
        start = time.perf_counter()
        cfg = self.config
        tokens = torch.as_tensor(tokens).to(self.device, torch.int64)
        key = tokens.cpu().numpy().tobytes()
        with torch.cuda.stream(self.stream):
            if self._notes_cache is not None and self._notes_cache[0] == key:
                hidden = self._notes_cache[1]
                self.cache_hits += 1
            else:
                hidden = self.ctx["notes"].run({"tokens": tokens}, self.stream)["notes_hidden"]
                self._notes_cache = (key, hidden)
            feeds = {"notes_hidden": hidden, "notes_mask": tokens > 0,
                     "context": torch.as_tensor(context).to(self.device),
                     "context_mask": torch.as_tensor(context_mask).to(self.device)}
            if cfg.pianoroll:
                feeds["roll"] = torch.as_tensor(roll).to(self.device)
            out = self.ctx["memory"].run(feeds, self.stream)
            if guided:
                out = {k: torch.cat([v, torch.full_like(v, CROSS_MASK_VALUE) if k == "cross_bias"
                                     else torch.zeros_like(v)]) for k, v in out.items()}
        self.stream.synchronize()
        names = self.ctx["memory"].outputs
        kv_names = [n for n in names if n[0] in "kv" and n[1:].isdigit()]
        kv = [(out[f"k{i}"], out[f"v{i}"]) for i in range(len(kv_names) // 2)]
        memory = CrossMemory(kv, out["cross_bias"], out.get("frame_bias"))
        self.timings.add("encode", start)
        return memory

    def _feeds(self, z, tau, memory: CrossMemory) -> dict[str, torch.Tensor]:
        feeds = {"z": z, "tau": tau, "cross_bias": memory.bias}
        for i, (k, v) in enumerate(memory.kv):
            feeds[f"k{i}"], feeds[f"v{i}"] = k, v
        if memory.frame_bias is not None:
            feeds["frame_bias"] = memory.frame_bias
        return feeds

    def denoise(self, z, tau: float, memory: CrossMemory):
        start = time.perf_counter()
        batch = memory.bias.shape[0]
        z = torch.as_tensor(z).to(self.device, torch.float32)
        if z.shape[0] != batch:
            z = z.repeat(batch // z.shape[0], 1, 1)
        if not self.cuda_graph:
            with torch.cuda.stream(self.stream):
                eps = self.ctx["denoise"].run(self._feeds(z, torch.full((batch,), tau, device=self.device), memory),
                                              self.stream)["eps"].float()
            self.stream.synchronize()
        else:
            eps = self._replay(z, tau, memory).clone()
        self.timings.add("denoise", start)
        return eps

    def _replay(self, z, tau: float, memory: CrossMemory) -> torch.Tensor:
        """Replay the decoder step from a CUDA graph captured per (batch, key bucket), each with its own execution
        context (a captured graph bakes in its context's shapes and scratch memory)."""
        batch, cfg = z.shape[0], self.config
        bucket = key_bucket(memory.bias.shape[-1], cfg.max_tokens + cfg.context_length)
        entry = self._graphs.get((batch, bucket))
        if entry is None:
            static = padded_like(memory, bucket)
            feeds = self._feeds(z.clone(), torch.full((batch,), tau, device=self.device), static)
            ctx = self.ctx["denoise"].fork()
            with torch.cuda.stream(self.stream):
                out = ctx.run(feeds, self.stream)  # TensorRT asks for one enqueue before capture
            self.stream.synchronize()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, stream=self.stream):
                ctx.context.execute_async_v3(self.stream.cuda_stream)
            entry = self._graphs[(batch, bucket)] = [graph, feeds, static, out["eps"], memory, ctx]
        graph, feeds, static, out, held, _ = entry
        feeds["z"].copy_(z)
        feeds["tau"].fill_(tau)
        if held is not memory:  # a new window: copy its memory into the graph's static buffers
            copy_padded(static, memory)
            entry[4] = memory
        graph.replay()
        torch.cuda.synchronize()
        return out.float()


def tensorrt_status() -> str:
    """Why TensorRT tests cannot run here, or '' when they can."""
    if importlib.util.find_spec("tensorrt") is None:
        return "TensorRT is not installed (it cannot be installed on the CPU machines of this project)"
    if not torch.cuda.is_available():
        return "TensorRT is installed but torch sees no CUDA GPU"
    return ""



# --------------------------------------------------------------------------------------------------------------------
# The causal family: plans built from the frame-step graphs of `engines.ort_frame` (the same ONNX ONNX Runtime runs).


def frame_plan_settings(manifest: dict, precision: str, max_batch: int = 8) -> dict[str, dict]:
    """Per step graph: the optimisation profile (batch 1, opt 1, max `max_batch`: live runs batch 1, an offline
    render its chunks side by side) and the precision, from a causal export's manifest."""
    if precision not in PRECISIONS:
        raise LiveSynthError(f"TensorRT precision must be one of {PRECISIONS}, not {precision!r}")
    cfg = manifest["config"]
    d, slots = cfg["d_model"], cfg["slots"]
    from live_synth.model.frame_features import FEATURES

    shapes = {"slots": (slots, FEATURES), "prev": (128,), "noise": (2, 128)}
    for i, dilation in enumerate(cfg["dilations"]):
        shapes[f"state_{i}"] = (2 * dilation, d)
    profile = {name: ((1, *shape), (1, *shape), (max_batch, *shape)) for name, shape in shapes.items()}
    return {f"step_{n}": {"profile": profile, "precision": precision} for n in manifest["steps"]}


def build_frame_plans(onnx_dir: str | os.PathLike, out_dir: str | os.PathLike, precision: str = "fp16",
                      progress=None) -> Path:
    """step_<n>.plan for each exported step count, from `onnx-causal/` (seconds per graph: the model is small);
    the prior's log-sum-exp and the noise schedule's tan stay fp32 besides the usual norms and time embedding."""
    from engines.ort_frame import read_frame_manifest

    onnx_dir, out_dir = Path(onnx_dir), Path(out_dir)
    settings = frame_plan_settings(read_frame_manifest(onnx_dir), precision)
    _build_all(onnx_dir, out_dir, {g: s["profile"] for g, s in settings.items()}, precision,
               (*FP32_NAME_PARTS, "Log", "Tan", "ReduceLogSumExp"), progress=progress)
    return out_dir


class TensorRTFrameEngine:
    """The causal frame step from TensorRT plans (engines.frame.FrameEngine's interface; NumPy at the boundary,
    CUDA tensors inside). Written against TensorRT 10's API like `TensorRTEngine`; never run here."""

    name = "tensorrt"

    def __init__(self, plan_dir: str | os.PathLike, initial: list):
        from engines.ort_frame import read_frame_manifest
        from live_synth.model.causal import CausalConfig

        trt = _trt()
        if not torch.cuda.is_available():
            raise LiveSynthError("the tensorrt engine needs a CUDA GPU that torch can see")
        plan_dir = Path(plan_dir)
        manifest = read_frame_manifest(plan_dir)
        self.config = CausalConfig.from_dict(manifest["config"])
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.ctx = {n: _Context(runtime, plan_dir / f"step_{n}.plan") for n in manifest["steps"]}
        self.inputs, self.outputs = manifest["inputs"], manifest["outputs"]
        self.stream = torch.cuda.Stream()
        self._initial = [torch.as_tensor(s).cuda() for s in initial]
        self.timings = EngineTimings()

    def initial_state(self, batch: int = 1) -> tuple:
        return tuple(s.repeat(batch, 1, 1) for s in self._initial)

    def step(self, slots, prev, state, noise, steps):
        start = time.perf_counter()
        if steps not in self.ctx:
            raise LiveSynthError(f"the TensorRT frame step was built for {sorted(self.ctx)} steps, not {steps}")
        feeds = dict(zip(self.inputs, (torch.as_tensor(slots).cuda(), torch.as_tensor(prev).cuda(),
                                       torch.as_tensor(noise).cuda(), *state)))
        out = self.ctx[steps].run(feeds, self.stream)
        self.stream.synchronize()
        frame = out["frame"].float().cpu().numpy()
        self.timings.add("step", start)
        return frame, tuple(out[name] for name in self.outputs[1:])

    def warm_up(self, steps: int = 2) -> None:
        from engines.frame import FrameEngine

        FrameEngine.warm_up(self, steps)
