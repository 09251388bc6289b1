"""Training the excited vocoder (`audio.excited_vocoder`) on the dataset's FluidSynth renders and their notes.

Data: `DATASET/train/` pieces (audio, mel, MIDI). Each piece's note excitation is computed once at load from its MIDI
(`read_midi` + `apply_sustain` -> `NoteEvents`, the same path `render` takes), so the network trains on exactly the
excitation it will be given. `DATASET/validation/` gives the validation loss (fixed crops), which picks the
checkpoint that ships; the test split is never read here.

An example: a random crop of `crop_frames` mel frames. The network sees `receptive_frames` real synthesis frames before
it (silence before a piece's start, which is what the audio holds there), so it trains exactly as it streams. The
loss covers the samples that the crop's synthesis frames overlap-add completely. Augmentations: a random gain (the
target audio scaled, the log-mel shifted by its log; the excitation keeps its level, as it does in use) and, with
probability `drop_notes`, no excitation at all (the mel-only mode `vocode` runs in).

Loss: multi-resolution STFT (spectral convergence + log magnitude) + log-mel L1, as `vocoder_trainer.vocoder_loss`;
no discriminator. AdamW, warm-up then cosine decay; an EMA of the weights is what validation measures and what ships.
Resumable: `ckpt.pt` (weights, EMA, optimiser, step, sampler RNG) every `save_every_s`; `loss.csv` appended;
`best.pt` holds the EMA weights of the best validation loss so far.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from live_synth.audio.excitation import excitation
from live_synth.audio.excited_vocoder import (
    OVERLAP, PRESETS, SYN_HOP, WIN_LENGTH, ExcitedConfig, ExcitedNet, frame_inputs, save_excited,
)  # fmt: skip
from live_synth.constants import HOP, LOG_MEL_MIN, N_MELS
from live_synth.errors import LiveSynthError
from live_synth.midi import apply_sustain, read_midi
from live_synth.midi.events import NoteEvents
from live_synth.training.loop import LoopSettings, TrainStep, atomic_torch_save, run_loop
from live_synth.training.shards import piece_paths, read_piece
from live_synth.training.vocoder_trainer import vocoder_loss

CKPT, BEST, LOG = "ckpt.pt", "best.pt", "loss.csv"


@dataclass(frozen=True)
class ExcitedTrainConfig:
    model: str = "base"
    crop_frames: int = 100  # mel frames per example (2 s)
    batch_size: int = 8
    lr: float = 6e-4
    warmup_steps: int = 200
    total_steps: int = 6000  # cosine decay length
    min_lr_ratio: float = 0.05
    weight_decay: float = 0.01
    clip: float = 1.0
    ema: float = 0.995
    gain_db: tuple[float, float] = (-14.0, 4.0)
    drop_notes: float = 0.2
    stft_weight: float = 1.0
    mel_weight: float = 1.0
    valid_every: int = 250
    valid_pieces: int = 16
    seed: int = 0


class Piece:
    """One training piece in memory: float audio, log-mel and the whole excitation."""

    def __init__(self, path: Path) -> None:
        piece = read_piece(path)
        if piece.audio is None:
            raise LiveSynthError(f"{path}: no audio (a features-only dataset cannot train a vocoder)")
        self.name = piece.name
        self.audio = piece.float_audio()
        self.mel = piece.mel.astype(np.float32)
        events = NoteEvents.from_sequence(apply_sustain(read_midi(piece.midi, piece.name)))
        n = len(self.audio) + WIN_LENGTH
        self.excitation = np.concatenate([excitation(events, a, min(a + 16000, n)) for a in range(0, n, 16000)])


def _mel_at(mel: np.ndarray, index: np.ndarray) -> np.ndarray:
    inside = (index >= 0) & (index < len(mel))
    out = np.full((len(index), N_MELS), LOG_MEL_MIN, np.float32)
    out[inside] = mel[index[inside]]
    return out


def _slice(signal: np.ndarray, start: int, length: int) -> np.ndarray:
    out = np.zeros(length, np.float32)
    a, b = max(start, 0), min(start + length, len(signal))
    if a < b:
        out[a - start : b - start] = signal[a:b]
    return out


def example(piece: Piece, t0: int, crop: int, receptive: int, gain: float, notes: bool):
    """(inputs [R + J, 384], prior [J, 513], phasor [J, 513], target [(J - 3) x 160]) for the crop at mel frame t0."""
    first = 2 * t0 - receptive
    j = np.arange(first, 2 * (t0 + crop))
    t = np.floor_divide(j, 2)
    at, nxt = _mel_at(piece.mel, t), _mel_at(piece.mel, t + 1)
    odd = (j % 2 == 1)[:, None]
    at = np.where(odd, 0.5 * (at + nxt), at)
    shift = np.float32(math.log(gain))
    pairs = np.stack([np.maximum(at + shift, LOG_MEL_MIN), np.maximum(nxt + shift, LOG_MEL_MIN)], axis=1)
    exc = None
    if notes:
        signal = _slice(piece.excitation, first * SYN_HOP, (len(j) - 1) * SYN_HOP + WIN_LENGTH)
        exc = np.lib.stride_tricks.sliding_window_view(signal, WIN_LENGTH)[::SYN_HOP][: len(j)]
    x, prior, phasor = frame_inputs(pairs, exc)
    target = _slice(piece.audio, (2 * t0 + OVERLAP - 1) * SYN_HOP, (2 * crop - OVERLAP + 1) * SYN_HOP) * gain
    return x, prior[receptive:], phasor[receptive:], target


def overlap_add_torch(frames: torch.Tensor) -> torch.Tensor:
    """[B, J, 640] at hop 160 -> the completely overlap-added samples [B, (J - 3) x 160]."""
    b, n, _ = frames.shape
    out = frames.new_zeros(b, n + OVERLAP - 1, SYN_HOP)
    for k in range(OVERLAP):
        out[:, k : k + n] = out[:, k : k + n] + frames[:, :, k * SYN_HOP : (k + 1) * SYN_HOP]
    return out[:, OVERLAP - 1 : n].reshape(b, -1)


class Sampler:
    def __init__(self, pieces: list[Piece], cfg: ExcitedTrainConfig, receptive: int, seed: int) -> None:
        self.pieces, self.cfg, self.receptive = pieces, cfg, receptive
        self.rng = np.random.default_rng(seed)
        lengths = np.array([max(len(p.mel) - cfg.crop_frames, 1) for p in pieces], np.float64)
        self.weights = lengths / lengths.sum()

    def batch(self):
        cfg, rng = self.cfg, self.rng
        items = []
        for _ in range(cfg.batch_size):
            piece = self.pieces[rng.choice(len(self.pieces), p=self.weights)]
            t0 = int(rng.integers(0, max(len(piece.mel) - cfg.crop_frames, 1)))
            gain = 10.0 ** (rng.uniform(*cfg.gain_db) / 20.0)
            items.append(example(piece, t0, cfg.crop_frames, self.receptive, gain, rng.random() >= cfg.drop_notes))
        return _collate(items)


def _collate(items):
    x, prior, phasor, target = (np.stack(z) for z in zip(*items))
    return (torch.from_numpy(x), torch.from_numpy(prior), torch.from_numpy(phasor), torch.from_numpy(target))


def lr_at(step: int, cfg: ExcitedTrainConfig) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(cfg.total_steps - cfg.warmup_steps, 1))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def loss_of(net: ExcitedNet, batch, cfg: ExcitedTrainConfig):
    x, prior, phasor, target = batch
    head, _ = net(x)
    pred = overlap_add_torch(net.frames_torch(head, prior, phasor))
    return vocoder_loss(pred, target, cfg)


def validation_batches(dataset: Path, cfg: ExcitedTrainConfig, receptive: int) -> list:
    """Fixed crops of the first `valid_pieces` validation pieces: one with notes and one without per piece."""
    batches = []
    for path in piece_paths(dataset, "validation")[: cfg.valid_pieces]:
        piece = Piece(path)
        t0 = max(0, min(len(piece.mel) - cfg.crop_frames, len(piece.mel) // 3))
        batches.append(_collate([example(piece, t0, cfg.crop_frames, receptive, 1.0, True)]))
        batches.append(_collate([example(piece, t0, cfg.crop_frames, receptive, 1.0, False)]))
    return batches


@torch.no_grad()
def validate(net: ExcitedNet, batches: list, cfg: ExcitedTrainConfig) -> dict[str, float]:
    notes = [loss_of(net, b, cfg)[0].item() for b in batches[0::2]]
    plain = [loss_of(net, b, cfg)[0].item() for b in batches[1::2]]
    return {"valid": float(np.mean(notes)), "valid_no_notes": float(np.mean(plain))}


def train(dataset: Path, out: Path, cfg: ExcitedTrainConfig, minutes: float, save_every_s: float = 120.0,
          log=print, max_steps: int | None = None) -> dict:
    """Train for `minutes` (or until `max_steps`), resuming from `out/ckpt.pt` when it exists."""
    out.mkdir(parents=True, exist_ok=True)
    ckpt = torch.load(out / CKPT, weights_only=False) if (out / CKPT).is_file() else None
    if ckpt:
        cfg = ExcitedTrainConfig(**{**ckpt["cfg"], **{k: v for k, v in dataclasses.asdict(cfg).items()
                                                    if k in ("total_steps", "lr", "min_lr_ratio")}})
    net = ExcitedNet(ExcitedConfig.from_dict(ckpt["model_cfg"]) if ckpt else PRESETS[cfg.model])
    ema = copy.deepcopy(net).requires_grad_(False)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.8, 0.99))
    step, best = 0, math.inf
    if ckpt:
        net.load_state_dict(ckpt["model"])
        ema.load_state_dict(ckpt["ema"])
        opt.load_state_dict(ckpt["opt"])
        step, best = ckpt["step"], ckpt["best"]
    receptive = net.config.receptive_frames
    log(f"loading pieces from {dataset} ...")
    t_load = time.time()
    pieces = [Piece(p) for p in piece_paths(dataset, "train")]
    valid = validation_batches(dataset, cfg, receptive)
    log(f"{len(pieces)} train pieces, {len(valid) // 2} validation crops in {time.time() - t_load:.0f} s; "
        f"{net.num_parameters / 1e6:.2f} M parameters; step {step}")
    sampler = Sampler(pieces, cfg, receptive, seed=cfg.seed * 1000 + step)
    best_of = {"valid": best}

    class Step(TrainStep):
        def loss(self, step: int):
            return loss_of(net, sampler.batch(), cfg)

        def probe(self, step: int) -> dict:
            row = {k: round(v, 5) for k, v in validate(ema, valid, cfg).items()}
            if row["valid"] < best_of["valid"]:
                best_of["valid"] = row["valid"]
                atomic_torch_save({"model_cfg": json.loads(net.config.to_json()), "ema": ema.state_dict(),
                                   "step": step, "valid": row["valid"]}, out / BEST)
            log(f"step {step}: valid {row['valid']:.4f} (no notes {row['valid_no_notes']:.4f}) "
                f"best {best_of['valid']:.4f}")
            return row

        def save(self, step: int) -> None:
            atomic_torch_save(_state(net, ema, opt, step, best_of["valid"], cfg), out / CKPT)

    settings = LoopSettings(lambda step: lr_at(step, cfg), cfg.clip, out / LOG, 1, cfg.valid_every,
                            ("valid", "valid_no_notes"), save_every_s, cfg.ema)
    step = run_loop(Step(), net, opt, settings, step, minutes, max_steps, ema)
    return {"step": step, "best": best_of["valid"]}


def _state(net, ema, opt, step, best, cfg) -> dict:
    return {"model_cfg": json.loads(net.config.to_json()), "model": net.state_dict(), "ema": ema.state_dict(),
            "opt": opt.state_dict(), "step": step, "best": best, "cfg": dataclasses.asdict(cfg)}


def export(out: Path, target: Path, which: str = BEST, description: str = "") -> Path:
    """Write the EMA weights of `best.pt` (or `ckpt.pt`) as fp16 safetensors + JSON into `target`."""
    ckpt = torch.load(out / which, weights_only=False)
    data = dict(ckpt["model_cfg"])
    if description:
        data["description"] = description
    net = ExcitedNet(ExcitedConfig.from_dict(data))
    net.load_state_dict(ckpt["ema"])
    return save_excited(net, target)
