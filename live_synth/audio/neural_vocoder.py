"""A small streaming neural vocoder: natural-log mel frames [T, 128] -> 16 kHz audio [T * 320].

Architecture (Vocos-style, Siuzdak 2023, made causal with a declared look-ahead):
    mel -> clip + scale to [-1, 1] -> Conv1d(128 -> dim, embed_kernel) -> LayerNorm
        -> `layers` ConvNeXt blocks (depthwise Conv1d over frames, LayerNorm, Linear-GELU-Linear, layer scale, residual)
        -> LayerNorm -> Linear(dim -> 2 * 513): log-magnitude (clamped, then exp) and phase angle per STFT bin
        -> inverse FFT (1024) of each frame, first 640 samples times the Hann window divided by the overlap-added
           squared window -> overlap-add with hop 320.
The synthesis is the exact inverse of `features.stft` (tested), so the network only has to predict a spectrum.
All convolutions are "valid" (no padding). Output frame m of the conv stack depends on input frames
[m - receptive_frames, m] and is read as the spectrum of mel frame m - lookahead, so every frame sees `lookahead`
frames of the future and `receptive_frames - lookahead` of the past (base: 1 and 41 frames). The look-ahead is only a
choice of alignment between input and output (the layers are the same for any value); it is fixed at training time.

Why this design rather than a MelGAN/HiFi-GAN-style generator (measured on the 2-core dev CPU, 2026-11-21):
- Speed, 10 s of music-like mel, fp32, batch 1 (`tools/bench_vocoder.py`, near-idle machine, 2 threads / 1 thread):
  `base` offline 493x / 254x real time; streaming `step` in chunks of 1 / 4 / 16 frames 18x / 50x / 160x with 2
  threads (1.1 / 1.6 / 2.0 ms per call), 16x / 49x / 118x with 1; the exported step graph in ONNX Runtime
  56x / 146x / 308x (2 threads), 35x / 94x / 193x (1). Single-frame steps are bound by per-op overhead and by reading
  all 11.5 MB of weights per call, not by arithmetic. A causal MelGAN-style generator (nearest upsampling 8-8-5, each stage a causal conv + 3 dilated causal
  residual convs, LeakyReLU, tanh) ran offline at 17x (2 threads) / 26x (1) with channels 256/128/64/32 (1.1 M
  parameters) and 174x / 97x with 128/64/32/16 (0.33 M), measured under some load from other jobs.
- Quality after equal CPU training time (5 min, 2 threads, the same 15 min of FluidSynth renders, the losses and
  optimiser of `training.vocoder_trainer`), mean abs error of the held-out pieces' log-mel re-analysed from the
  output (all bins / bins within 40 dB of the frame peak): this model 0.69 / 0.65 after 537 steps; MelGAN-style
  small 1.27 / 1.25 (237 steps), base 1.20 / 1.13 (178 steps). A waveform generator spends its compute at 16 000
  positions per second and must learn the waveform itself; this one works at 50 frames per second and gets the
  waveform from an exact inverse STFT, so it takes ~2-3x more optimiser steps in the same time and learns faster per
  step. (Griffin-Lim, 64 iterations, scores 0.08 / 0.06 on this metric: it minimises exactly this magnitude
  mismatch, while its phase artefacts, which cost note onsets, are invisible to it. Judge trained vocoders by the
  onset F1 of tools/evaluate.py, not by this number alone.)
Not yet measured: look-ahead 0 or 2 against 1, and whether GAN discriminators pay for themselves after longer
training (the trainer has none).

Streaming: `step(mel_chunk, state) -> (audio, state)` with all state passed in and out (`StreamState`: one cache of
the last kernel-1 inputs per convolution and the 320-sample overlap-add tail). A stream starts as if preceded by an
infinite run of silent frames (ln 1e-5): `initial_state` holds the network's activations for silence, which is also
what the offline path pads with. So the streamed output equals the offline output delayed by exactly
`delay_samples = lookahead * 320` samples; feeding `lookahead` more silent frames (`flush`) delivers the end.
The first `delay_samples` samples of a stream are the vocoder's rendering of the silence before it.
`step` exports to ONNX (TorchScript exporter, opset 17) as one graph with a dynamic frame axis and the state as
plain inputs/outputs; while exporting, the synthesis is the equivalent matmul (`synthesis_basis`) and the
convolutions take their conv1d form, because ONNX has no complex tensors and the exporter cannot unfold a dynamic
axis (`export_step_onnx`). ONNX Runtime streaming that graph equals the torch offline path (tested).

Threading: a module holds no mutable state besides its weights; `forward` and `step` may run on several threads
with separate states (never on the audio callback).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from live_synth.constants import HOP, LOG_MEL_MAX, LOG_MEL_MIN, N_FFT, N_MELS, SAMPLE_RATE, WIN_LENGTH
from live_synth.errors import CheckpointError
from live_synth.files import check_state, one_line, read_safetensors, write_bytes_atomic

N_BINS = N_FFT // 2 + 1  # 513
WEIGHTS_FILE = "vocoder.safetensors"
CONFIG_FILE = "vocoder.json"
METADATA_KEY = "live_synth_vocoder_config"
KIND = "live-synth-streaming-vocoder"  # marks a config as this vocoder's, not a diffusion model's
assert WIN_LENGTH == 2 * HOP, "the overlap-add below assumes 50 % overlap"


@dataclass(frozen=True)
class VocoderConfig:
    """Shape of a `StreamingVocoder`. Stored as JSON next to the weights."""

    dim: int = 256  # channels of the conv stack
    hidden: int = 768  # width of each block's MLP
    layers: int = 6  # ConvNeXt blocks
    kernel: int = 7  # depthwise kernel of each block, in frames
    embed_kernel: int = 7  # kernel of the input convolution, in frames
    lookahead: int = 1  # future frames each output frame sees (latency: lookahead * 20 ms)
    max_log_magnitude: float = 4.6  # exp(4.6) ~ 100, Vocos' magnitude clip
    description: str = dataclasses.field(default="", compare=False)

    def __post_init__(self) -> None:
        for name in ("dim", "hidden", "kernel", "embed_kernel"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"vocoder config: {name} must be a positive integer, got {getattr(self, name)!r}")
        if not isinstance(self.layers, int) or self.layers < 0:
            raise ValueError(f"vocoder config: layers must be an integer >= 0, got {self.layers!r}")
        if not isinstance(self.lookahead, int) or not 0 <= self.lookahead <= self.receptive_frames:
            raise ValueError(
                f"vocoder config: lookahead must be an integer in [0, {self.receptive_frames}], got {self.lookahead!r}"
            )

    @property
    def receptive_frames(self) -> int:
        """Frames besides the current one that each output frame depends on (past + future)."""
        return (self.embed_kernel - 1) + self.layers * (self.kernel - 1)

    @property
    def context_frames(self) -> int:
        """Past input frames `forward_valid` needs before the first frame it renders (one more for the OLA tail)."""
        return self.receptive_frames - self.lookahead + 1

    def to_json(self) -> str:
        return json.dumps({"kind": KIND, **dataclasses.asdict(self)}, indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> VocoderConfig:
        data = dict(data)
        kind = data.pop("kind", None)
        if kind != KIND:
            raise CheckpointError(f"{source}: not a live-synth streaming vocoder config (kind {kind!r})")
        unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise CheckpointError(f"{source}: unknown vocoder config keys {unknown}")
        try:
            return cls(**data)
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"{source}: invalid vocoder config: {exc}") from None


PRESETS: dict[str, VocoderConfig] = {
    # Test-sized: random-weight tests and smoke runs.
    "tiny": VocoderConfig(dim=32, hidden=64, layers=2, kernel=3, embed_kernel=3, description="tiny (tests)"),
    # The shipped size (speed measured by tools/bench_vocoder.py on the 2-core dev CPU).
    "base": VocoderConfig(description="base: dim 256, 6 ConvNeXt blocks, look-ahead 1 frame"),
}


def preset(name: str) -> VocoderConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown vocoder preset {name!r} (known: {sorted(PRESETS)})")
    return PRESETS[name]


class StreamState(NamedTuple):
    """Everything a stream carries from one `step` to the next (tensors only, so a graph export can stream).

    caches: the last kernel-1 inputs of each convolution, input convolution first, each [B, kernel - 1, channels].
    tail: [B, 320] the second half of the last synthesised frame, waiting for the next frame's first half.
    """

    caches: tuple[Tensor, ...]
    tail: Tensor


def synthesis_window(dtype: torch.dtype = torch.float64) -> Tensor:
    """[640]: the Hann window divided by the steady-state overlap-added squared window (>= 0.5 at 50 % overlap).

    Windowing each inverse-FFT frame with it and overlap-adding with hop 320 inverts `features.stft` exactly (away from
    the first hop of a signal, where only one frame covers the audio).
    """
    window = torch.hann_window(WIN_LENGTH, periodic=True, dtype=torch.float64)
    envelope = window[:HOP].square() + window[HOP:].square()
    return (window / envelope.repeat(2)).to(dtype)


def synthesis_basis() -> Tensor:
    """[2 * 513, 640] float64: (real, imag) spectrum -> the frame `StreamingVocoder.frames` makes, as one matmul.

    irfft(X, 1024)[n] = (1/N) sum_k c_k (Re X_k cos(2 pi k n / N) - Im X_k sin(2 pi k n / N)), c_k = 1 for DC and
    Nyquist, else 2 (their imaginary parts are ignored, as irfft does); the first 640 samples, times
    `synthesis_window`. Equivalent to the irfft path; used for ONNX exports, which have no complex numbers (in torch
    it is ~5x slower per frame on the CPU than irfft).
    """
    n = torch.arange(WIN_LENGTH, dtype=torch.float64)
    k = torch.arange(N_BINS, dtype=torch.float64).unsqueeze(1)
    scale = torch.full((N_BINS, 1), 2.0 / N_FFT, dtype=torch.float64)
    scale[0] = scale[-1] = 1.0 / N_FFT
    angle = 2.0 * math.pi * k * n / N_FFT
    sin_basis = -scale * torch.sin(angle)
    sin_basis[0] = sin_basis[-1] = 0.0
    return torch.cat([scale * torch.cos(angle), sin_basis]) * synthesis_window()


def normalize_mel(log_mel: Tensor) -> Tensor:
    """Natural-log mel -> [-1, 1] (clipped to [ln 1e-5, 4] first, as the diffusion model's features are)."""
    scale = 2.0 / (LOG_MEL_MAX - LOG_MEL_MIN)
    return (torch.clamp(log_mel, LOG_MEL_MIN, LOG_MEL_MAX) - LOG_MEL_MIN) * scale - 1.0


# Up to this many output frames, a depthwise conv is computed as unfold-multiply-sum (~6 us for one frame on the dev
# CPU) instead of F.conv1d (~50 us per call whatever the size, plus two transposes); above it conv1d is faster.
# ONNX exports always take conv1d: the exporter cannot unfold a time axis of dynamic length.
_UNFOLD_MAX_FRAMES = 64


def _by_unfold(out_frames: int) -> bool:
    return out_frames <= _UNFOLD_MAX_FRAMES and not torch.onnx.is_in_onnx_export()


class _Block(nn.Module):
    """ConvNeXt block over frames, channels last: [B, T + kernel - 1, C] -> [B, T, C] (valid depthwise conv)."""

    def __init__(self, dim: int, hidden: int, kernel: int, layer_scale: float) -> None:
        super().__init__()
        self.kernel = kernel
        self.dw_weight = nn.Parameter(torch.empty(dim, kernel))
        self.dw_bias = nn.Parameter(torch.zeros(dim))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale))

    def depthwise(self, x: Tensor) -> Tensor:
        if _by_unfold(x.shape[1] - self.kernel + 1):
            return (x.unfold(1, self.kernel, 1) * self.dw_weight).sum(-1) + self.dw_bias
        weight = self.dw_weight.unsqueeze(1)
        return F.conv1d(x.transpose(1, 2), weight, self.dw_bias, groups=x.shape[2]).transpose(1, 2)

    def forward(self, x: Tensor) -> Tensor:
        y = self.fc2(F.gelu(self.fc1(self.norm(self.depthwise(x)))))
        return x[:, self.kernel - 1 :] + y * self.gamma


class StreamingVocoder(nn.Module):
    """Causal Vocos-style vocoder with an offline path (`forward`) and a streaming path (`step`) on the same weights.

    Shapes: mel is natural-log mel [B, T, 128] (float32); audio is [B, T * 320] float32 at 16 kHz.
    """

    sample_rate: int = SAMPLE_RATE
    hop: int = HOP

    def __init__(self, config: VocoderConfig | None = None) -> None:
        super().__init__()
        self.config = config or VocoderConfig()
        cfg = self.config
        # The input convolution as im2col + one matmul: weight [dim, 128 * kernel] over (mel bin, tap) pairs.
        self.embed = nn.Linear(N_MELS * cfg.embed_kernel, cfg.dim)
        self.embed_norm = nn.LayerNorm(cfg.dim, eps=1e-6)
        scale = 1.0 / max(cfg.layers, 1)
        self.blocks = nn.ModuleList(_Block(cfg.dim, cfg.hidden, cfg.kernel, scale) for _ in range(cfg.layers))
        self.out_norm = nn.LayerNorm(cfg.dim, eps=1e-6)
        self.head = nn.Linear(cfg.dim, 2 * N_BINS)
        # Fixed, not learnt and not saved: rebuilt from the constants on load.
        self.register_buffer("window", synthesis_window(torch.float32), persistent=False)
        self._kernels = [cfg.embed_kernel] + [cfg.kernel] * cfg.layers
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
            elif isinstance(module, _Block):
                nn.init.trunc_normal_(module.dw_weight, std=0.02 * math.sqrt(module.kernel))

    # --- declared latency -------------------------------------------------------------------------------------------

    @property
    def lookahead_frames(self) -> int:
        """Future mel frames needed before a frame's audio can be finished."""
        return self.config.lookahead

    @property
    def delay_samples(self) -> int:
        """Streamed output sample k + delay_samples equals offline output sample k."""
        return self.config.lookahead * HOP

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # --- shared pieces ----------------------------------------------------------------------------------------------

    def _embed(self, x: Tensor) -> Tensor:
        """Normalised mel [B, T + embed_kernel - 1, 128] -> [B, T, dim]."""
        kernel = self.config.embed_kernel
        if not torch.onnx.is_in_onnx_export():  # im2col + one GEMM: fast at every length
            columns = x.unfold(1, kernel, 1).flatten(2)  # [B, T, 128 * kernel], bin-major like the weight's columns
            return self.embed_norm(self.embed(columns))
        weight = self.embed.weight.view(-1, N_MELS, kernel)
        return self.embed_norm(F.conv1d(x.transpose(1, 2), weight, self.embed.bias).transpose(1, 2))

    def _stack(self, x: Tensor, caches: tuple[Tensor, ...] | None) -> tuple[Tensor, list[Tensor]]:
        """Normalised mel [B, T', 128] -> features [B, T' - receptive_frames, dim]. With caches (streaming) each
        layer's input is prefixed by its cache, so the output keeps T' frames; the new caches are returned."""
        new_caches: list[Tensor] = []

        def with_cache(h: Tensor, index: int) -> Tensor:
            if caches is None:
                return h
            h = torch.cat([caches[index], h], dim=1)
            new_caches.append(h[:, h.shape[1] - (self._kernels[index] - 1) :])
            return h

        h = self._embed(with_cache(x, 0))
        for index, block in enumerate(self.blocks, start=1):
            h = block(with_cache(h, index))
        return self.out_norm(h), new_caches

    def spectrum(self, features: Tensor) -> tuple[Tensor, Tensor]:
        """Stack features [B, T, dim] -> (magnitude, phase) [B, T, 513] each, in float32."""
        with torch.autocast(features.device.type, enabled=False):
            log_magnitude, phase = self.head(features.float()).chunk(2, dim=-1)
            return torch.exp(torch.clamp(log_magnitude, max=self.config.max_log_magnitude)), phase

    def frames(self, features: Tensor) -> Tensor:
        """Stack features [B, T, dim] -> windowed, OLA-normalised time frames [B, T, 640] in float32.

        While exporting to ONNX, which has no complex tensors, the same frames are computed as one matmul with
        `synthesis_basis` (a constant in the graph).
        """
        magnitude, phase = self.spectrum(features)
        with torch.autocast(features.device.type, enabled=False):
            if torch.onnx.is_in_onnx_export():
                spectrum = torch.cat([magnitude * torch.cos(phase), magnitude * torch.sin(phase)], dim=-1)
                return spectrum @ synthesis_basis().to(magnitude)
            return torch.fft.irfft(torch.polar(magnitude, phase), n=N_FFT)[..., :WIN_LENGTH] * self.window

    # --- offline ----------------------------------------------------------------------------------------------------

    def forward_valid(self, mel: Tensor) -> Tensor:
        """Audio for the frames of `mel` [B, context + n + lookahead, 128] that have full context: [B, n * 320].

        `context` is `config.context_frames`. Training uses this with real neighbouring frames around a crop.
        """
        frames = self.frames(self._stack(normalize_mel(mel), None)[0])
        audio = frames[:, 1:, :HOP] + frames[:, :-1, HOP:]
        return audio.reshape(mel.shape[0], -1)

    def forward(self, mel: Tensor) -> Tensor:
        """Offline vocoding: mel [B, T, 128] -> audio [B, T * 320], as if preceded and followed by silence."""
        cfg = self.config
        padded = F.pad(mel, (0, 0, cfg.context_frames, cfg.lookahead), value=LOG_MEL_MIN)
        return self.forward_valid(padded)

    # --- streaming --------------------------------------------------------------------------------------------------

    @torch.no_grad()
    def initial_state(self, batch_size: int = 1) -> StreamState:
        """State of a stream that has seen only silence (what the offline path pads with)."""
        device, dtype = self.window.device, self.window.dtype
        h = normalize_mel(torch.full((1, 1, N_MELS), LOG_MEL_MIN, device=device, dtype=dtype))
        layers: list[Callable[[Tensor], Tensor]] = [self._embed, *self.blocks]
        caches = []
        for kernel, layer in zip(self._kernels, layers):
            caches.append(h.expand(batch_size, kernel - 1, -1).contiguous())
            h = layer(h.expand(-1, kernel, -1))  # a constant input gives one constant output frame
        tail = self.frames(self.out_norm(h))[:, 0, HOP:]
        return StreamState(tuple(caches), tail.expand(batch_size, -1).contiguous())

    def step(self, mel_chunk: Tensor, state: StreamState) -> tuple[Tensor, StreamState]:
        """Stream `mel_chunk` [B, t, 128] (any t >= 0) -> (audio [B, t * 320], new state). `state` is not modified.

        The audio is the offline output delayed by `delay_samples`.
        """
        if mel_chunk.shape[1] == 0:
            return mel_chunk.new_zeros(mel_chunk.shape[0], 0), state
        features, caches = self._stack(normalize_mel(mel_chunk), state.caches)
        frames = self.frames(features)
        previous = torch.cat([state.tail.unsqueeze(1), frames[:, :-1, HOP:]], dim=1)
        audio = (frames[:, :, :HOP] + previous).reshape(mel_chunk.shape[0], -1)
        return audio, StreamState(tuple(caches), frames[:, -1, HOP:])

    def flush(self, state: StreamState) -> tuple[Tensor, StreamState]:
        """Feed `lookahead` silent frames: returns the last `delay_samples` samples of the stream's audio."""
        batch = state.tail.shape[0]
        silence = state.tail.new_full((batch, self.config.lookahead, N_MELS), LOG_MEL_MIN)
        return self.step(silence, state)


# --------------------------------------------------------------------------------------------------------------------
# ONNX: the streaming step as one graph, its state as plain inputs and outputs.


class _StepGraph(nn.Module):
    """`step` with the state flattened: (mel, *caches, tail) -> (audio, *next caches, next tail)."""

    def __init__(self, model: StreamingVocoder) -> None:
        super().__init__()
        self.model = model

    def forward(self, mel: Tensor, *state: Tensor) -> tuple[Tensor, ...]:
        audio, new = self.model.step(mel, StreamState(tuple(state[:-1]), state[-1]))
        return (audio, *new.caches, new.tail)


def onnx_state_names(model: StreamingVocoder) -> list[str]:
    """Input names of the state tensors of `export_step_onnx`'s graph, in `StreamState` order; outputs add 'next_'."""
    return ["cache_embed", *[f"cache_block{i}" for i in range(model.config.layers)], "tail"]


def export_step_onnx(model: StreamingVocoder, path: str | os.PathLike, opset: int = 17) -> Path:
    """Write `step` for batch 1 as an ONNX graph: inputs `mel` [1, frames, 128] (any frames >= 1) and the state
    (`onnx_state_names`, initial values from `initial_state(1)`); outputs `audio` [1, frames * 320] and `next_<name>`
    for each state tensor. Uses the TorchScript-based exporter (no onnxscript needed)."""
    import warnings

    path = Path(path)
    state = model.initial_state(1)
    names = onnx_state_names(model)
    example = torch.full((1, 4, N_MELS), -4.0, device=state.tail.device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter announces its own deprecation at length
        torch.onnx.export(_StepGraph(model.eval()), (example, *state.caches, state.tail), str(path), dynamo=False,
                          opset_version=opset, input_names=["mel", *names],
                          output_names=["audio", *[f"next_{n}" for n in names]],
                          dynamic_axes={"mel": {1: "frames"}, "audio": {1: "samples"}})
    return path


# --------------------------------------------------------------------------------------------------------------------
# Files: a folder with vocoder.json + vocoder.safetensors, or one .safetensors file with the config in its metadata.


def save_vocoder(model: StreamingVocoder, path: str | os.PathLike, fp16: bool = False) -> Path:
    """Write `path/vocoder.safetensors` + `path/vocoder.json`, or one file if `path` ends in .safetensors.

    The config is also stored in the weight file's metadata. Each file is written atomically. Returns the path.
    """
    from safetensors.torch import save

    path = Path(path)
    dtype = torch.float16 if fp16 else torch.float32
    state = {k: v.detach().to("cpu", dtype).contiguous() for k, v in model.state_dict().items()}
    cfg_json = model.config.to_json()
    if path.suffix == ".safetensors":
        path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(path, save(state, metadata={METADATA_KEY: cfg_json}))
        return path
    path.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path / WEIGHTS_FILE, save(state, metadata={METADATA_KEY: cfg_json}))
    write_bytes_atomic(path / CONFIG_FILE, (cfg_json + "\n").encode())
    return path


def is_vocoder_path(path: str | os.PathLike) -> bool:
    """True if `path` looks like this vocoder's weights (a folder holding vocoder.safetensors, or a .safetensors)."""
    path = Path(path)
    return (path.is_dir() and (path / WEIGHTS_FILE).is_file()) or path.suffix == ".safetensors"


def load_streaming_vocoder(path: str | os.PathLike) -> StreamingVocoder:
    """Load a vocoder written by `save_vocoder` (eval mode, float32). Any problem is one `CheckpointError` line."""
    path = Path(path)
    weights = path / WEIGHTS_FILE if path.is_dir() else path
    state, meta = read_safetensors(weights)
    if path.is_dir() and (path / CONFIG_FILE).is_file():
        source = path / CONFIG_FILE
        text = source.read_text()
    elif METADATA_KEY in meta:
        source, text = weights, meta[METADATA_KEY]
    else:
        raise CheckpointError(f"{path}: missing {CONFIG_FILE} (and no vocoder config in the weight file's metadata)")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{source}: not a readable JSON file ({one_line(exc)[:200]})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{source}: expected a JSON object")
    model = StreamingVocoder(VocoderConfig.from_dict(data, str(source)))
    _check_state(model, state, weights)
    model.load_state_dict({k: v.float() for k, v in state.items()})
    return model.eval()


def _check_state(model: StreamingVocoder, state: dict[str, Tensor], origin: Path) -> None:
    check_state(model.state_dict(), state, lambda key: origin)
    for key, tensor in state.items():
        if not torch.is_floating_point(tensor) or not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"{origin}: tensor {key} is not finite floating point")


# --------------------------------------------------------------------------------------------------------------------


class NeuralVocoder:
    """`Vocoder` protocol wrapper: numpy log-mel [T, 128] -> float32 audio [T * 320] through the offline path.

    Uses torch's current thread settings (set them with torch.set_num_threads before calling). For streaming, use
    `.model.step` with a state from `.model.initial_state()`.
    """

    sample_rate: int = SAMPLE_RATE
    hop: int = HOP

    def __init__(self, model: StreamingVocoder | str | os.PathLike) -> None:
        if isinstance(model, StreamingVocoder):
            self.model, label = model.eval(), "in-memory"
        else:
            self.model, label = load_streaming_vocoder(model), Path(model).name
        self.name = f"neural:{label}"

    @property
    def lookahead_frames(self) -> int:
        return self.model.lookahead_frames

    @property
    def delay_samples(self) -> int:
        return self.model.delay_samples

    def __call__(self, log_mel: np.ndarray, events=None) -> np.ndarray:
        """Audio [T * 320] float32 for natural-log mel [T, 128] (mel only: `events` are ignored)."""
        from live_synth.audio.features import check_log_mel

        features = check_log_mel(log_mel)
        if features.shape[0] == 0:
            return np.zeros(0, dtype=np.float32)
        device = self.model.window.device
        with torch.inference_mode():
            audio = self.model(torch.from_numpy(features).to(device)[None])[0]
        return audio.float().cpu().numpy()
