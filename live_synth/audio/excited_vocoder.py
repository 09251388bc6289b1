"""The excited vocoder: log-mel frames and, where the caller knows them, the notes -> 16 kHz audio, one frame at a time.

Why (issue 19): the mel-only vocoder lost half of the notes' onsets; a synth knows every note's pitch and onset sample,
which a speech vocoder has to guess. Design (a FreeV-style magnitude prior, a Vocos-style iSTFT head, an NSF/DDSP-style
excitation; `../shared/docs/vocoder.md`):

    synthesis frames j (window 640, hop 160, n_fft 1024: two per mel frame; frame j covers samples [160 j, 160 j + 640))
    inputs per frame:  the mel at the frame (mel t for j = 2t, the log-domain mean of t and t + 1 for j = 2t + 1),
                       the next mel frame t + 1 (the one frame of look-ahead), and the log-mel of the note
                       excitation's STFT at frame j (`audio.excitation`; silence when the notes are unknown)
    network:           Linear -> LayerNorm -> `layers` causal ConvNeXt blocks over synthesis frames -> LayerNorm
                       -> Linear to 4 x 513 per frame: a log-magnitude residual, a phase vector (2 x 513) and a gate
    spectrum:          magnitude = pinv(mel filterbank) @ exp(mel at the frame) x exp(residual)     (the prior)
                       phase     = angle(phase vector + gate x the excitation's unit phasor)
    audio:             inverse FFT, the first 640 samples x Hann / 1.5 (the overlap-added squared window at hop 160),
                       overlap-add with hop 160.

Look-ahead and delay: the audio of mel frame m's hop, samples [320 m, 320 m + 320), is complete once the synthesis
frames up to 2m + 1 are made, which read mel frame m + 1: one mel frame (20 ms) of look-ahead, as the mel-only
vocoder. The excitation of those frames reaches sample 320 m + 800, which the notes known to mel frame m + 1 already
cover (frame t sees the events before (t + 2) x 20 ms). So `delay_samples` = 320.

Streaming: `ExcitedStream` state = (conv caches, OLA tail of 480 samples, the previous mel frame, the next mel frame
index); a step never modifies a state, so a rollback restores a reference. A stream starts as if preceded by silence
(every layer's cache holds its response to the silent input), and the offline path (`ExcitedVocoder.__call__`) is the
same stream run over the whole song in blocks, then flushed: streaming equals offline by construction (tested).
The network (inputs -> head outputs, with the caches as plain inputs and outputs) exports to ONNX; the spectrum, the
inverse FFT and the overlap-add run outside the graph in NumPy (ONNX has no iSTFT).

Training: `training/excited_trainer.py`. Threading: weights are read-only; streams are owned by one thread.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from live_synth.audio.excitation import excitation
from live_synth.audio.features import mel_filterbank
from live_synth.audio.neural_vocoder import _Block
from live_synth.constants import HOP, LOG_MEL_MAX, LOG_MEL_MIN, N_FFT, N_MELS, SAMPLE_RATE, WIN_LENGTH
from live_synth.errors import CheckpointError
from live_synth.files import check_state, one_line, read_safetensors, write_bytes_atomic
from live_synth.midi.events import NoteEvents

KIND = "live-synth-excited-vocoder"
WEIGHTS_FILE = "vocoder.safetensors"
CONFIG_FILE = "vocoder.json"
METADATA_KEY = "live_synth_vocoder_config"
N_BINS = N_FFT // 2 + 1
SYN_HOP = HOP // 2  # 160: two synthesis frames per mel frame
OVERLAP = WIN_LENGTH // SYN_HOP  # 4 frames cover each sample
TAIL = WIN_LENGTH - SYN_HOP  # 480 samples wait for later frames
IN_FEATURES = 3 * N_MELS
OUT_FEATURES = 4 * N_BINS
EXC_FLOOR = 1e-4  # excitation mel below this is silence; its phasor is zero there


@dataclass(frozen=True)
class ExcitedConfig:
    dim: int = 256
    hidden: int = 768
    layers: int = 8
    kernel: int = 7  # depthwise kernel over synthesis frames (10 ms each)
    max_log_residual: float = 4.0
    lookahead: int = 1  # mel frames: fixed by the design (the next mel frame is an input); declared for `play`
    description: str = dataclasses.field(default="", compare=False)

    def __post_init__(self) -> None:
        for name in ("dim", "hidden", "kernel"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"excited vocoder config: {name} must be a positive integer")
        if not isinstance(self.layers, int) or self.layers < 0:
            raise ValueError("excited vocoder config: layers must be an integer >= 0")
        if self.lookahead != 1:
            raise ValueError("excited vocoder config: lookahead is 1 mel frame by design")

    @property
    def receptive_frames(self) -> int:
        """Past synthesis frames each output frame depends on."""
        return self.layers * (self.kernel - 1)

    def to_json(self) -> str:
        return json.dumps({"kind": KIND, **dataclasses.asdict(self)}, indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> ExcitedConfig:
        data = dict(data)
        if data.pop("kind", None) != KIND:
            raise CheckpointError(f"{source}: not a live-synth excited vocoder config")
        unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise CheckpointError(f"{source}: unknown excited vocoder config keys {unknown}")
        try:
            return cls(**data)
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"{source}: invalid excited vocoder config: {exc}") from None


PRESETS = {
    "tiny": ExcitedConfig(dim=32, hidden=64, layers=2, kernel=3, description="tiny (tests)"),
    "base": ExcitedConfig(description="base: dim 256, 8 causal ConvNeXt blocks over 10 ms frames, look-ahead 1"),
}


def is_excited_config(data: dict) -> bool:
    return isinstance(data, dict) and data.get("kind") == KIND


# --- fixed DSP pieces (NumPy: shared by the torch and ONNX Runtime paths) ---------------------------------------------


@functools.lru_cache(maxsize=1)
def _dsp() -> dict[str, np.ndarray]:
    fb = mel_filterbank(torch.float64).numpy()  # [513, 128]
    window = np.hanning(WIN_LENGTH + 1)[:-1]  # periodic Hann, as features.analysis_window
    squares = np.zeros(SYN_HOP)
    for k in range(OVERLAP):
        squares += window[k * SYN_HOP : (k + 1) * SYN_HOP] ** 2
    synthesis = window / np.tile(squares, OVERLAP)
    return {
        "fb": fb.astype(np.float32),
        "pinv": np.linalg.pinv(fb).astype(np.float32),  # [128, 513]
        "window": window.astype(np.float32),
        "synthesis": synthesis.astype(np.float32),
    }


def normalize_mel(log_mel: np.ndarray) -> np.ndarray:
    return (np.clip(log_mel, LOG_MEL_MIN, LOG_MEL_MAX) - LOG_MEL_MIN) * (2.0 / (LOG_MEL_MAX - LOG_MEL_MIN)) - 1.0


def frame_inputs(mel_pairs: np.ndarray, exc: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per synthesis frame: (network inputs [J, 384], log prior magnitude [J, 513], excitation phasor [J, 513] complex).

    `mel_pairs` [J, 2, 128]: (mel at the frame, next mel frame), natural log. `exc` [J, 640]: the excitation's samples
    under each frame, or None (unknown notes: silence).
    """
    dsp = _dsp()
    at, nxt = mel_pairs[:, 0], mel_pairs[:, 1]
    prior = np.log(np.maximum(np.exp(np.clip(at, LOG_MEL_MIN, LOG_MEL_MAX)) @ dsp["pinv"], 1e-5))
    if exc is None:
        exc_mel = np.full_like(at, LOG_MEL_MIN)
        phasor = np.zeros((len(at), N_BINS), np.complex64)
    else:
        spectrum = np.fft.rfft(exc * dsp["window"], N_FFT).astype(np.complex64)
        magnitude = np.abs(spectrum)
        exc_mel = np.log(np.maximum(magnitude @ dsp["fb"], 1e-5))
        phasor = np.where(magnitude > EXC_FLOOR, spectrum / np.maximum(magnitude, EXC_FLOOR), 0).astype(np.complex64)
    x = np.concatenate([normalize_mel(at), normalize_mel(nxt), normalize_mel(exc_mel)], axis=-1)
    return x.astype(np.float32), prior.astype(np.float32), phasor


def synth_frames(head: np.ndarray, prior: np.ndarray, phasor: np.ndarray, max_residual: float) -> np.ndarray:
    """Head outputs [J, 4 x 513] -> windowed time frames [J, 640] (NumPy twin of `ExcitedNet.frames_torch`)."""
    residual, re, im, gate = np.split(head, 4, axis=-1)
    magnitude = np.exp(prior + np.minimum(residual, max_residual))
    vector = re + 1j * im + gate * phasor
    unit = vector / np.maximum(np.abs(vector), 1e-6)
    frames = np.fft.irfft(magnitude * unit, N_FFT)[:, :WIN_LENGTH]
    return (frames * _dsp()["synthesis"]).astype(np.float32)


def overlap_add(frames: np.ndarray, tail: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Frames [J, 640] at hop 160 after a pending `tail` [480] -> (finished samples [J x 160], new tail [480])."""
    n = len(frames)
    out = np.zeros((n + OVERLAP - 1) * SYN_HOP, np.float32)
    out[:TAIL] += tail
    for k in range(OVERLAP):
        out[k * SYN_HOP : k * SYN_HOP + n * SYN_HOP] += frames[:, k * SYN_HOP : (k + 1) * SYN_HOP].reshape(-1)
    return out[: n * SYN_HOP], out[n * SYN_HOP :].copy()


# --- the network ----------------------------------------------------------------------------------------------------


class ExcitedNet(nn.Module):
    """Inputs [B, J, 384] -> head outputs [B, J, 4 x 513], causal over synthesis frames (caches for streaming)."""

    def __init__(self, config: ExcitedConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or ExcitedConfig()
        self.embed = nn.Linear(IN_FEATURES, cfg.dim)
        self.embed_norm = nn.LayerNorm(cfg.dim, eps=1e-6)
        scale = 1.0 / max(cfg.layers, 1)
        self.blocks = nn.ModuleList(_Block(cfg.dim, cfg.hidden, cfg.kernel, scale) for _ in range(cfg.layers))
        self.out_norm = nn.LayerNorm(cfg.dim, eps=1e-6)
        self.head = nn.Linear(cfg.dim, OUT_FEATURES)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
            elif isinstance(module, _Block):
                nn.init.trunc_normal_(module.dw_weight, std=0.02 * math.sqrt(module.kernel))
        with torch.no_grad():  # start as the prior with the excitation's phase: residual 0, gate 1
            self.head.bias[3 * N_BINS :] = 1.0

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, x: Tensor, caches: tuple[Tensor, ...] | None = None) -> tuple[Tensor, tuple[Tensor, ...]]:
        """With caches: every block's input is prefixed by its cache (streaming), and the new caches are returned.
        Without: "valid" convolutions, the output is `receptive_frames` shorter than the input (training)."""
        h = self.embed_norm(self.embed(x))
        new = []
        for index, block in enumerate(self.blocks):
            if caches is not None:
                h = torch.cat([caches[index], h], dim=1)
                new.append(h[:, h.shape[1] - (block.kernel - 1) :])
            h = block(h)
        return self.head(self.out_norm(h)), tuple(new)

    @torch.no_grad()
    def silence_caches(self) -> tuple[Tensor, ...]:
        """Each block's cache after an endless silent input (the silent input is the same at every frame)."""
        x, _, _ = frame_inputs(np.full((1, 2, N_MELS), LOG_MEL_MIN, np.float32), None)
        h = self.embed_norm(self.embed(torch.from_numpy(x)[None]))
        caches = []
        for block in self.blocks:
            caches.append(h.expand(1, block.kernel - 1, -1).contiguous())
            h = block(h.expand(-1, block.kernel, -1))
        return tuple(caches)

    def frames_torch(self, head: Tensor, prior: Tensor, phasor: Tensor) -> Tensor:
        """Differentiable `synth_frames`: [B, J, 4 x 513] -> [B, J, 640]."""
        residual, re, im, gate = head.float().chunk(4, dim=-1)
        magnitude = torch.exp(prior + torch.clamp(residual, max=self.config.max_log_residual))
        vr, vi = re + gate * phasor.real, im + gate * phasor.imag
        norm = torch.sqrt(vr.square() + vi.square() + 1e-12)
        spectrum = torch.complex(magnitude * vr / norm, magnitude * vi / norm)
        window = torch.from_numpy(_dsp()["synthesis"]).to(head.device)
        return torch.fft.irfft(spectrum, n=N_FFT)[..., :WIN_LENGTH] * window


# --- streaming ------------------------------------------------------------------------------------------------------


class StreamState(NamedTuple):
    caches: tuple  # per block [1, kernel - 1, dim] (torch tensors or numpy arrays, per engine)
    tail: np.ndarray  # [480]
    prev: np.ndarray  # [128] the last mel frame seen (silence at the start)
    frame: int  # index of the next mel frame


def mel_pairs(prev: np.ndarray, mel: np.ndarray) -> np.ndarray:
    """Mel frames m0.. [n, 128] after `prev` (frame m0 - 1) -> [2n, 2, 128]: synthesis frames 2m0 - 2 .. 2m0 + 2n - 3.

    Frame 2(m - 1) is at mel m - 1, frame 2m - 1 halfway to mel m (log-domain mean); both look ahead to mel m.
    """
    before = np.concatenate([prev[None], mel[:-1]])
    pairs = np.empty((2 * len(mel), 2, N_MELS), np.float32)
    pairs[0::2, 0], pairs[1::2, 0] = before, 0.5 * (before + mel)
    pairs[0::2, 1] = pairs[1::2, 1] = mel
    return pairs


def excitation_frames(events: NoteEvents | None, first_frame: int, count: int) -> np.ndarray | None:
    """The excitation under synthesis frames [first_frame, first_frame + count): [count, 640]."""
    if events is None or not len(events.notes):
        return None
    n0 = first_frame * SYN_HOP
    signal = excitation(events, n0, n0 + (count - 1) * SYN_HOP + WIN_LENGTH)
    return np.lib.stride_tricks.sliding_window_view(signal, WIN_LENGTH)[::SYN_HOP][:count]


class _TorchRunner:
    def __init__(self, net: ExcitedNet) -> None:
        self.net = net.eval()

    def initial_caches(self) -> tuple:
        return self.net.silence_caches()

    @torch.inference_mode()
    def __call__(self, x: np.ndarray, caches: tuple) -> tuple[np.ndarray, tuple]:
        head, new = self.net(torch.from_numpy(x)[None], caches)
        return head[0].float().numpy(), new


class _OrtRunner:
    def __init__(self, net: ExcitedNet, threads: int | None = None) -> None:
        from live_synth.engine_cache import cached_ort_session

        self.session = cached_ort_session(net, "excited-vocoder.onnx", export_onnx, threads)
        self.names = [f"cache{i}" for i in range(net.config.layers)]
        self.net = net

    def initial_caches(self) -> tuple:
        return tuple(c.numpy() for c in self.net.silence_caches())

    def __call__(self, x: np.ndarray, caches: tuple) -> tuple[np.ndarray, tuple]:
        out = self.session.run(None, {"x": x[None], **dict(zip(self.names, caches))})
        return out[0][0], tuple(out[1:])


class ExcitedStream:
    """Mel frames (and the notes, when known) in, audio out, `delay_samples` behind; snapshot/restore for rollback.

    Thread: the generation worker only.
    """

    delay_samples = HOP
    needs_notes = True

    def __init__(self, vocoder: ExcitedVocoder, engine: str = "torch") -> None:
        self.vocoder = vocoder
        self.runner = _OrtRunner(vocoder.net) if engine == "onnx" else _TorchRunner(vocoder.net)
        self.state = StreamState(self.runner.initial_caches(), vocoder.silence_tail,
                                 np.full(N_MELS, LOG_MEL_MIN, np.float32), 0)
        self.name = f"excited stream{', onnxruntime' if engine == 'onnx' else ''} (delay {HOP} samples)"

    def __call__(self, frames: np.ndarray, events: NoteEvents | None = None) -> np.ndarray:
        mel = np.ascontiguousarray(frames, np.float32)
        if not len(mel):
            return np.zeros(0, np.float32)
        caches, tail, prev, frame = self.state
        first = 2 * frame - 2
        x, prior, phasor = frame_inputs(mel_pairs(prev, mel), excitation_frames(events, first, 2 * len(mel)))
        head, caches = self.runner(x, caches)
        audio, tail = overlap_add(synth_frames(head, prior, phasor, self.vocoder.config.max_log_residual), tail)
        self.state = StreamState(caches, tail, mel[-1].copy(), frame + len(mel))
        return audio

    def flush(self, events: NoteEvents | None = None) -> np.ndarray:
        """One silent frame: the last `delay_samples` of the stream."""
        return self(np.full((1, N_MELS), LOG_MEL_MIN, np.float32), events)

    def snapshot(self) -> StreamState:
        return self.state

    def restore(self, state: StreamState) -> None:
        self.state = state


# --- the vocoder ----------------------------------------------------------------------------------------------------


class ExcitedVocoder:
    """`Vocoder` protocol: log-mel [T, 128] (+ notes) -> audio [T * 320], offline = the stream run in blocks."""

    sample_rate: int = SAMPLE_RATE
    hop: int = HOP
    lookahead_frames = 1
    delay_samples = HOP
    needs_notes = True

    def __init__(self, net: ExcitedNet, name: str = "in-memory") -> None:
        self.net = net.eval()
        self.config = net.config
        self.name = f"excited:{name}"
        with torch.inference_mode():
            self.silence_tail = self._silence_tail()

    @property
    def model(self) -> ExcitedNet:  # what engines fingerprint and export
        return self.net

    def _silence_tail(self) -> np.ndarray:
        x, prior, phasor = frame_inputs(np.full((1, 2, N_MELS), LOG_MEL_MIN, np.float32), None)
        head, _ = _TorchRunner(self.net)(x, self.net.silence_caches())
        frame = synth_frames(head, prior, phasor, self.config.max_log_residual)
        _, tail = overlap_add(np.repeat(frame, OVERLAP, axis=0), np.zeros(TAIL, np.float32))
        return tail

    def __call__(self, log_mel: np.ndarray, events: NoteEvents | None = None, block: int = 500,
                 engine: str = "auto") -> np.ndarray:
        """`engine` "auto": ONNX Runtime when it is installed (2-4x faster than torch offline here), else torch."""
        if engine == "auto":
            try:
                import onnxruntime  # noqa: F401

                engine = "onnx"
            except ImportError:
                engine = "torch"
        mel = np.ascontiguousarray(log_mel, np.float32)
        if mel.ndim != 2 or mel.shape[1] != N_MELS or not np.all(np.isfinite(mel)):
            raise ValueError(f"log-mel must be finite with shape [frames, {N_MELS}], got {list(mel.shape)}")
        if not len(mel):
            return np.zeros(0, np.float32)
        stream = ExcitedStream(self, engine)
        out = [stream(mel[i : i + block], events) for i in range(0, len(mel), block)]
        out.append(stream.flush(events))
        return np.concatenate(out)[HOP:]


def export_onnx(net: ExcitedNet, path: str | os.PathLike, opset: int = 17) -> Path:
    """The network with its caches as inputs/outputs: x [1, frames, 384], cache0.. -> head [1, frames, 2052], next..."""
    import warnings

    class _Graph(nn.Module):
        def __init__(self, inner: ExcitedNet) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: Tensor, *caches: Tensor) -> tuple[Tensor, ...]:
            head, new = self.inner(x, caches)
            return (head, *new)

    caches = net.silence_caches()
    names = [f"cache{i}" for i in range(len(caches))]
    example = torch.zeros(1, 2, IN_FEATURES)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_Graph(net.eval()), (example, *caches), str(path), dynamo=False, opset_version=opset,
                          input_names=["x", *names], output_names=["head", *[f"next_{n}" for n in names]],
                          dynamic_axes={"x": {1: "frames"}, "head": {1: "frames"}})
    return Path(path)


# --- files ----------------------------------------------------------------------------------------------------------


def save_excited(net: ExcitedNet, path: str | os.PathLike, fp16: bool = True) -> Path:
    """Write `path/vocoder.safetensors` (fp16 by default) + `path/vocoder.json`, each atomically."""
    from safetensors.torch import save

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    dtype = torch.float16 if fp16 else torch.float32
    state = {k: v.detach().to("cpu", dtype).contiguous() for k, v in net.state_dict().items()}
    text = net.config.to_json()
    write_bytes_atomic(path / WEIGHTS_FILE, save(state, metadata={METADATA_KEY: text}))
    write_bytes_atomic(path / CONFIG_FILE, (text + "\n").encode())
    return path


def load_excited(path: str | os.PathLike) -> ExcitedVocoder:
    """Load a folder written by `save_excited`; any problem is one `CheckpointError` line naming the file."""
    path = Path(path)
    weights = path / WEIGHTS_FILE if path.is_dir() else path
    state, meta = read_safetensors(weights)
    config_path = path / CONFIG_FILE if path.is_dir() else None
    try:
        text = config_path.read_text() if config_path and config_path.is_file() else meta[METADATA_KEY]
        data = json.loads(text)
    except (KeyError, OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: no readable excited vocoder config ({one_line(exc)[:200]})") from None
    net = ExcitedNet(ExcitedConfig.from_dict(data, str(config_path or weights)))
    check_state(net.state_dict(), state, lambda key: weights)
    for key, tensor in state.items():
        if not torch.is_floating_point(tensor) or not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"{weights}: tensor {key} is not finite floating point")
    net.load_state_dict({k: v.float() for k, v in state.items()})
    return ExcitedVocoder(net, path.name)


def is_excited_path(path: str | os.PathLike) -> bool:
    """Whether a vocoder folder (or .safetensors file) holds this vocoder (by its config's kind)."""
    path = Path(path)
    try:
        if path.is_dir() and (path / CONFIG_FILE).is_file():
            return is_excited_config(json.loads((path / CONFIG_FILE).read_text()))
        from safetensors import safe_open

        weights = path / WEIGHTS_FILE if path.is_dir() else path
        with safe_open(str(weights), "np") as handle:
            return is_excited_config(json.loads((handle.metadata() or {}).get(METADATA_KEY, "{}")))
    except Exception:  # noqa: BLE001 - safetensors raises its own error type: the loader that follows names it
        return False
