"""Inference back ends behind two contracts, one per model family:

- `engines.base.Engine` (the window family): `encode` a window's conditioning, then `denoise` per sampling step;
- `engines.frame.FrameEngine` (the causal family): `frame, state = step(slots, prev, state, noise, steps)`.

Each has a torch, an ONNX Runtime and a TensorRT implementation. `engines.select` picks and loads them, importing
each engine's module lazily, so a missing optional library (onnxruntime, tensorrt) only matters when that engine is
asked for, and then it is a one-line error with an install hint.
"""

from engines.base import Engine, EngineTimings
from engines.select import ENGINES, auto_frame_engine, load_engine, load_frame_engine

__all__ = ["ENGINES", "Engine", "EngineTimings", "load_engine", "load_frame_engine", "auto_frame_engine"]
