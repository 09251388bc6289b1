"""Inference back ends behind one interface (see `engines.base.Engine`).

Each engine is imported lazily by `load_engine`, so a missing optional library (onnxruntime, tensorrt) only matters
when that engine is asked for, and then it is a one-line error with an install hint.
"""

from engines.base import Engine, EngineTimings, load_engine

__all__ = ["Engine", "EngineTimings", "load_engine"]
