"""Where exported graphs and engine plans live: the user cache, one folder per weights fingerprint.

Below every model and engine module (it needs only torch and a `config.to_json()`), so that the engines, the
vocoders and the live stage find the same folder without importing each other.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
from torch import nn


def weights_fingerprint(model: nn.Module) -> str:
    """A short hash of the config and every weight (fp32 bytes): which model an export belongs to."""
    digest = hashlib.blake2b(model.config.to_json().encode(), digest_size=12)
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


def engine_root(model: nn.Module, fingerprint: str | None = None) -> Path:
    """Where `live-synth export` puts a model's engines by default: the user cache, keyed by the weights'
    fingerprint. Inside a root: `onnx/` (the graphs) and `tensorrt-<precision>/` (plans built from them)."""
    cache = os.environ.get("LIVE_SYNTH_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache",
                                                      "live-synth")
    return Path(cache) / "engines" / (fingerprint or weights_fingerprint(model))


def cached_ort_session(model: nn.Module, filename: str, export, threads: int | None = None):
    """An ONNX Runtime CPU session on `model`'s graph `filename` in its engines folder, exported once per weights
    (`export(model, path)`, written under a temporary name, then renamed). Intra-op threads: `threads`, else torch's
    count (which `play` sizes to leave a core to the audio side); no spinning between calls."""
    import onnxruntime as ort

    path = engine_root(model) / filename
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.onnx")
        export(model, tmp)
        tmp.replace(path)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
