"""PyTorch engine: the reference back end (CPU or CUDA; fp32 is the parity reference for every other engine).

On CUDA, `cuda_graph=True` captures the decoder step once per batch size (1, or 2 with guidance) and key bucket
(memories are padded to a multiple of 128 keys, the padding masked) and replays it: the step's inputs live in static
buffers, a new window's memory is copied into them (device to device) on its first step.
A 4-step tick launches hundreds of small kernels per step; replaying them as one graph removes the per-kernel Python
and launch overhead that dominates batch-1 inference.
"""

from __future__ import annotations

import time

import torch

from engines.base import Engine, EngineTimings, copy_padded, key_bucket, padded_like
from live_synth.errors import LiveSynthError
from live_synth.model.decoder import CrossMemory
from live_synth.model.network import SpectrogramDiffusion

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class TorchEngine(Engine):
    name = "torch"

    def __init__(self, model: SpectrogramDiffusion, device: str = "cpu", dtype: str = "float32",
                 cuda_graph: bool = False):
        if dtype not in DTYPES:
            raise LiveSynthError(f"unknown dtype {dtype!r}; choose one of {sorted(DTYPES)}")
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise LiveSynthError("CUDA was asked for but torch sees no GPU (install a CUDA build of torch)")
        self.device = torch.device(device)
        self.dtype = DTYPES[dtype]
        self.model = model.to(self.device, self.dtype).eval()
        self.config = model.config
        self.timings = EngineTimings()
        self._notes_cache: tuple[bytes, tuple] | None = None  # last tokens → notes encoder output
        self.cache_hits = 0
        if cuda_graph and self.device.type != "cuda":
            raise LiveSynthError("CUDA graphs need --device cuda")
        self.cuda_graph = cuda_graph
        self._graphs: dict[tuple, list] = {}  # (batch, keys) → [graph, z, tau, memory, out, held memory]

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @torch.inference_mode()
    def encode(self, tokens, context, context_mask, roll=None, guided: bool = False) -> CrossMemory:
        start = time.perf_counter()
        tokens = tokens.to(self.device)
        context = context.to(self.device, self.dtype)
        context_mask = context_mask.to(self.device)
        key = tokens.cpu().numpy().tobytes() + bytes(str(tuple(tokens.shape)), "ascii")
        if self._notes_cache is not None and self._notes_cache[0] == key:
            notes = self._notes_cache[1]  # live windows often keep their tokens from one tick to the next
            self.cache_hits += 1
        else:
            notes = self.model.notes_encoder(tokens)
            self._notes_cache = (key, notes)
        ctx = self.model.context_encoder(context, context_mask)
        if guided:
            # Unconditional branch: encodings zeroed and masks cleared (ORIG CFG dropout), stacked on the batch axis.
            notes = tuple(torch.cat([t, torch.zeros_like(t)]) for t in notes)
            ctx = tuple(torch.cat([t, torch.zeros_like(t)]) for t in ctx)
        if roll is not None:
            roll = roll.to(self.device, self.dtype)
            if guided:
                roll = torch.cat([roll, torch.zeros_like(roll)])
        memory = self.model.decoder.memory([notes, ctx], roll)
        self._sync()
        self.timings.add("encode", start)
        return memory

    @torch.inference_mode()
    def denoise(self, z, tau: float, memory: CrossMemory):
        start = time.perf_counter()
        batch = memory.bias.shape[0]
        z = z.to(self.device, self.dtype)
        if batch != z.shape[0]:
            z = z.repeat(batch // z.shape[0], 1, 1)
        if self.cuda_graph:
            eps = self._replay(z, tau, memory)
        else:
            t = torch.full((z.shape[0],), tau, device=self.device, dtype=torch.float32)
            eps = self.model(z, t, memory).float()
        self._sync()
        self.timings.add("denoise", start)
        return eps

    def _replay(self, z, tau: float, memory: CrossMemory):
        batch, keys = z.shape[0], memory.bias.shape[-1]
        cfg = self.config
        bucket = key_bucket(keys, cfg.max_tokens + cfg.context_length)
        entry = self._graphs.get((batch, bucket))
        if entry is None:
            static_z, static_tau = z.clone(), torch.full((batch,), tau, device=self.device)
            static_mem = padded_like(memory, bucket)
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):  # warm-up outside the capture (cuBLAS workspaces, lazy inits)
                for _ in range(2):
                    self.model(static_z, static_tau, static_mem)
            torch.cuda.current_stream(self.device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                out = self.model(static_z, static_tau, static_mem)
            entry = self._graphs[(batch, bucket)] = [graph, static_z, static_tau, static_mem, out, memory]
        graph, static_z, static_tau, static_mem, out, held = entry
        static_z.copy_(z)
        static_tau.fill_(tau)
        if held is not memory:  # a new window: its memory goes into the graph's buffers once
            copy_padded(static_mem, memory)
            entry[5] = memory
        graph.replay()
        return out.float().clone()
