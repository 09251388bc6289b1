"""Which engine runs a model: the one place that knows every back end (`engines/__init__.py`).

`load_engine` (the window family's encode/denoise engines) and `load_frame_engine` (the causal family's frame step)
import the chosen engine's module only when it is asked for, so a missing optional library (onnxruntime, tensorrt)
matters only then, as a one-line error with an install hint. `engines/base.py` and `engines/frame.py` hold the two
contracts and import none of their implementations.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from live_synth.errors import LiveSynthError

if TYPE_CHECKING:
    from engines.base import Engine
    from engines.frame import FrameEngine
    from live_synth.model.causal import CausalModel

ENGINES = ("auto", "torch", "onnx", "tensorrt")  # auto: the measured fastest for the model's family


def auto_frame_engine(device: str) -> str:
    """What `auto` means for a frame engine (the causal family's): ONNX Runtime on a CPU (its frame step ran 3-4x
    faster than eager torch at batch 1, BENCHMARKS.md) when its packages are installed, torch otherwise. A window
    engine's `auto` is torch (its live defaults were measured with it). `synth.py` asks the family which applies."""
    if device != "cpu":
        return "torch"
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return "torch"
    return "onnx"


def load_engine(name: str, model, device: str = "cpu", dtype: str = "float32", root=None,
                cuda_graph: bool = False, threads: int | None = None) -> Engine:
    """The engine called `name` running `model` (a SpectrogramDiffusion).

    torch: `device` cpu or cuda, `dtype` float32/bfloat16/float16, `cuda_graph` on CUDA.
    onnx: fp32 graphs in `root/onnx` (default root: the user cache; exported on first use, seconds for the small
    models). tensorrt: plans in `root/tensorrt-<precision>`, built beforehand by `live-synth export --engine
    tensorrt` (`dtype` float16/bfloat16/float32), decoder step always replayed from a CUDA graph.
    """
    if name in ("auto", "torch"):  # auto: torch for the window family (`auto_frame_engine` says why)
        from engines.torch_engine import TorchEngine

        return TorchEngine(model, device=device, dtype=dtype, cuda_graph=cuda_graph)
    if name == "onnx":
        if dtype != "float32":
            raise LiveSynthError("the onnx engine runs fp32 graphs; half precision is the tensorrt engine's job")
        from engines.ort_engine import OnnxEngine

        return OnnxEngine.for_model(model, root, device=device, threads=threads)
    if name == "tensorrt":
        from engines.tensorrt_engine import TensorRTEngine

        precision = {"float16": "fp16", "bfloat16": "bf16", "float32": "fp32"}.get(dtype)
        if precision is None:
            raise LiveSynthError(f"unknown dtype {dtype!r}")
        return TensorRTEngine.for_model(model, root, precision=precision)
    raise LiveSynthError(f"unknown engine {name!r}; choose one of {', '.join(ENGINES)}")


def load_frame_engine(name: str, model: CausalModel, device: str = "cpu", dtype: str = "float32", root=None,
                      threads: int | None = None) -> FrameEngine:
    name = auto_frame_engine(device) if name == "auto" else name
    if name == "torch":
        from engines.frame import TorchFrameEngine

        return TorchFrameEngine(model, device=device, dtype=dtype)
    if name == "onnx":
        from engines.ort_frame import OrtFrameEngine

        return OrtFrameEngine.for_model(model, root, threads=threads)
    if name == "tensorrt":
        from pathlib import Path

        from live_synth.engine_cache import engine_root, weights_fingerprint
        from engines.tensorrt_engine import TensorRTFrameEngine

        precision = {"float16": "fp16", "bfloat16": "bf16", "float32": "fp32"}.get(dtype, "fp16")
        plans = Path(root or engine_root(model, weights_fingerprint(model))) / f"tensorrt-causal-{precision}"
        if not (plans / "manifest.json").is_file():
            raise LiveSynthError(f"no TensorRT plans in {plans}; build them first with "
                                 f"`live-synth export --engine tensorrt --precision {precision}`")
        return TensorRTFrameEngine(plans, [s.numpy() for s in model.initial_state(1)])
    raise LiveSynthError(f"unknown engine {name!r}")
