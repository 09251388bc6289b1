"""Export a model to ONNX graphs with fixed input/output names, for onnxruntime and TensorRT (issue #6).

Three graphs per model, for the model's window geometry: static `target_length` frames T, `context_length` context
frames S and feature sizes; the token count L (1..max_tokens) is the one dynamic axis, and B (1, or 2 with
classifier-free guidance) in the decoder:

  notes.onnx    tokens [1, L] int64                                        → notes_hidden [1, L, d]
  memory.onnx   notes_hidden [1, L, d], notes_mask [1, L] bool,
                context [1, S, 128] (scaled), context_mask [1, S] bool, (roll [1, T, ROLL_FEATURES])
                → k0, v0, k1, v1, ... [1, H, L + S, d_kv], cross_bias [1, 1, 1, L + S], (frame_bias [1, T, d])
  denoise.onnx  z [B, T, 128], tau [B], k0, v0, ..., cross_bias, (frame_bias)  → eps [B, T, 128] (v for v-models)

Why the token axis stays dynamic: a window holds 20-200 real tokens; padding every window to `max_tokens` (2048 for
the published model) would cost 4-30x more notes-encoder work and make every decoder step cross-attend to 2048 + S
keys instead of L + S (what diffusers does; our torch engine's speed-up over diffusers comes largely from not doing
it). ONNX Runtime runs any L without re-planning; TensorRT gets an optimisation profile over L (tensorrt_engine.py).
The notes encoder is its own graph so that an engine keeps its output while a window's tokens do not change (most
live ticks).

The unconditional branch of classifier-free guidance needs no graph: with every key masked and all encodings zero,
its keys/values are zero, its bias is -1e10 everywhere and its frame bias is zero (what TorchEngine computes).

`manifest.json` records names, shapes, opset, the torch version and a fingerprint of the weights, so that a stale
export is never run against other weights.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor, nn

from live_synth.engine_cache import weights_fingerprint
from live_synth.errors import LiveSynthError
from live_synth.midi.pianoroll import ROLL_FEATURES
from live_synth.model.decoder import CrossMemory
from live_synth.model.network import SpectrogramDiffusion

OPSET = 17
MANIFEST = "manifest.json"
GRAPHS = ("notes", "memory", "denoise")
FORMAT_VERSION = 2


@dataclass(frozen=True)
class GraphNames:
    """Fixed input/output names of the three graphs for a model config."""

    layers: int
    pianoroll: bool

    @property
    def kv(self) -> list[str]:
        return [f"{kind}{i}" for i in range(self.layers) for kind in ("k", "v")]

    @property
    def memory_inputs(self) -> list[str]:
        return ["notes_hidden", "notes_mask", "context", "context_mask"] + (["roll"] if self.pianoroll else [])

    @property
    def memory_outputs(self) -> list[str]:
        return self.kv + ["cross_bias"] + (["frame_bias"] if self.pianoroll else [])

    @property
    def denoise_inputs(self) -> list[str]:
        return ["z", "tau"] + self.memory_outputs


class _NotesGraph(nn.Module):
    def __init__(self, model: SpectrogramDiffusion):
        super().__init__()
        self.encoder = model.notes_encoder

    def forward(self, tokens: Tensor) -> Tensor:
        return self.encoder(tokens)[0]


class _MemoryGraph(nn.Module):
    def __init__(self, model: SpectrogramDiffusion):
        super().__init__()
        self.context_encoder, self.decoder = model.context_encoder, model.decoder

    def forward(self, notes_hidden, notes_mask, context, context_mask, roll=None):
        ctx = self.context_encoder(context, context_mask)
        memory = self.decoder.memory([(notes_hidden, notes_mask), ctx], roll)
        out = [t for kv in memory.kv for t in kv] + [memory.bias]
        return tuple(out + ([memory.frame_bias] if memory.frame_bias is not None else []))


class _DenoiseGraph(nn.Module):
    def __init__(self, model: SpectrogramDiffusion):
        super().__init__()
        self.decoder = model.decoder
        self.layers = len(model.decoder.layers)

    def forward(self, z, tau, *memory):
        n = 2 * self.layers
        kv = [(memory[i], memory[i + 1]) for i in range(0, n, 2)]
        frame = memory[n + 1] if len(memory) > n + 1 else None
        return self.decoder(z, tau, CrossMemory(kv, memory[n], frame))


def example_inputs(model: SpectrogramDiffusion, tokens: int = 16, batch: int = 1, seed: int = 0):
    """Random inputs of the export geometry: (notes args, memory args, a function memory outputs → denoise args)."""
    cfg = model.config
    gen = torch.Generator().manual_seed(seed)
    tok = torch.randint(3, cfg.vocab_size, (1, tokens), generator=gen)
    s, t, d = cfg.context_length, cfg.target_length, cfg.d_model
    hidden = torch.randn(1, tokens, d, generator=gen)
    mask = torch.ones(1, tokens, dtype=torch.bool)
    context = torch.rand(1, s, 128, generator=gen) * 2 - 1
    cmask = torch.zeros(1, s, dtype=torch.bool)
    cmask[:, : s // 2] = True
    memory_args = [hidden, mask, context, cmask]
    if cfg.pianoroll:
        memory_args.append((torch.rand(1, t, ROLL_FEATURES, generator=gen) > 0.97).float())
    z = torch.randn(batch, t, 128, generator=gen)
    tau = torch.rand(batch, generator=gen)

    def denoise_args(memory_out):
        return [z, tau] + [x.expand(batch, *x.shape[1:]).contiguous() for x in memory_out]

    return (tok,), tuple(memory_args), denoise_args


def export_onnx(model: SpectrogramDiffusion, folder: str | os.PathLike,
                progress: Callable[[str], None] | None = None) -> Path:
    """Write notes.onnx, memory.onnx, denoise.onnx and manifest.json to `folder` (atomically, as a whole)."""
    folder = Path(folder)
    if any(p.device.type != "cpu" or p.dtype != torch.float32 for p in model.parameters()):
        model = copy.deepcopy(model).to("cpu", torch.float32)  # the caller's model stays where it is
    model = model.eval()
    cfg = model.config
    names = GraphNames(len(model.decoder.layers), cfg.pianoroll)
    notes_args, memory_args, denoise_args = example_inputs(model, tokens=min(16, cfg.max_tokens), batch=2)
    with torch.no_grad():
        memory_out = _MemoryGraph(model)(*memory_args)
    with atomic_folder(folder) as tmp:
        jobs = [
            ("notes", _NotesGraph(model), notes_args, ["tokens"], ["notes_hidden"],
             {"tokens": {1: "tokens"}, "notes_hidden": {1: "tokens"}}),
            ("memory", _MemoryGraph(model), memory_args, names.memory_inputs, names.memory_outputs,
             {"notes_hidden": {1: "tokens"}, "notes_mask": {1: "tokens"}, "cross_bias": {3: "keys"},
              **{name: {2: "keys"} for name in names.kv}}),
            ("denoise", _DenoiseGraph(model), tuple(denoise_args(memory_out)), names.denoise_inputs, ["eps"],
             {"z": {0: "batch"}, "tau": {0: "batch"}, "eps": {0: "batch"}, "cross_bias": {0: "batch", 3: "keys"},
              **{name: {0: "batch", 2: "keys"} for name in names.kv},
              **({"frame_bias": {0: "batch"}} if cfg.pianoroll else {})}),
        ]
        for name, module, args, inputs, outputs, dynamic in jobs:
            # The exporter puts the module back into the mode it found it in: a fresh wrapper is in training mode,
            # which would switch the caller's model to training (dropout on) after the export.
            module.eval()
            if progress:
                progress(f"exporting {name}.onnx")
            with torch.no_grad():
                torch.onnx.export(module, args, str(tmp / f"{name}.onnx"), dynamo=False, opset_version=OPSET,
                                  input_names=inputs, output_names=outputs, dynamic_axes=dynamic,
                                  do_constant_folding=True)
        manifest = {
            "format": FORMAT_VERSION, "opset": OPSET, "torch": torch.__version__,
            "fingerprint": weights_fingerprint(model), "config": json.loads(cfg.to_json()),
            "geometry": {"max_tokens": cfg.max_tokens, "context_length": cfg.context_length,
                         "target_length": cfg.target_length, "d_model": cfg.d_model,
                         "num_heads": cfg.num_heads, "d_kv": cfg.d_kv},
            "graphs": {"notes": {"inputs": ["tokens"], "outputs": ["notes_hidden"]},
                       "memory": {"inputs": names.memory_inputs, "outputs": names.memory_outputs},
                       "denoise": {"inputs": names.denoise_inputs, "outputs": ["eps"]}},
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return folder


@contextlib.contextmanager
def atomic_folder(folder: Path):
    """A temporary sibling folder to fill; it replaces `folder` as a whole at the end, or is removed on error."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        yield tmp
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def read_manifest(folder: str | os.PathLike, fingerprint: str | None = None, fmt: int = FORMAT_VERSION,
                  files: tuple[str, ...] = tuple(f"{g}.onnx" for g in GRAPHS)) -> dict:
    """An export's manifest (this module's graphs, or another export's `fmt` and `files`, e.g. the causal frame
    step's); a one-line error if it is missing, from another format, for other weights, or lacks a file."""
    path = Path(folder) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise LiveSynthError(f"{folder}: not an exported engine folder (no {MANIFEST}); run `live-synth export`") \
            from None
    except (OSError, ValueError) as exc:
        raise LiveSynthError(f"{path}: unreadable manifest ({exc})") from None
    if manifest.get("format") != fmt:
        raise LiveSynthError(f"{folder}: export format {manifest.get('format')} is not {fmt}; re-export")
    if fingerprint is not None and manifest.get("fingerprint") != fingerprint:
        raise LiveSynthError(f"{folder}: exported from other weights; re-export with `live-synth export`")
    missing = [f for f in files if not (Path(folder) / f).exists()]
    if missing:
        raise LiveSynthError(f"{folder}: missing {', '.join(missing)}; re-export")
    return manifest
