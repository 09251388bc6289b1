"""Training loop of the causal family (`model/causal.py`), CPU or CUDA, resumable in short chunks.

One step:
- crops of `crop` frames from the training split, weighted by length; a crop may start up to `crop` frames before
  its piece (silence and no notes there), so notes after long silence are seen with a full history, as a player's
  model always has one. The loss counts only the last `crop - burn_in` frames: before them the convolutions'
  history fills up (`burn_in` >= the receptive field), as it is full live;
- teacher forcing: every frame's previous frame is the recorded one plus noise of a level drawn per frame from
  U(0, max_context_noise), the level being an input (at inference a small fixed level); with probability
  `context_dropout` a frame's previous frame is pure noise (flagged), so the notes alone must carry an onset;
- the head's loss: v-prediction MSE on the residual (recorded frame - prior) with `noise_draws` noise draws per
  frame (MAR), `high_noise_fraction` of them at noise times 0.9..1 (the 1-step sampler's only level);
- the prior's loss: L1 between the prior and the recorded frame, `prior_weight` times, its own gradient only (the
  residual target does not flow back into it);
- optionally (`frame_loss` > 0) an L1 on the 1-step sample's per-frame loudness and spectral centroid against the
  recorded frame's (head only: the prior is detached), so the frame that is played follows the recording's level;
- AdamW, warm-up, gradient clipping, bf16 autocast.

A fixed probe batch measures every `probe_every` steps the head loss with and without the notes (all slots emptied,
same noise: ratio 1 = the notes are not used) and the prior's L1; and a lone-note check renders one piano note
(E4: not the evaluation's C4) at velocities 20..120, 1.5 s apart, frame by frame as `render` does, and logs each
note's peak level, so the velocity curve is watched while training, not only the loss (causal-model.md: loss
curves plateau while quality moves).

Checkpoints: `out/ckpt.pt` (weights, optimizer, step, RNG, configs), saved every `save_every_s` and at the end;
`out/loss.csv` rows. Rerunning with the same `out` resumes; `init` starts a new run from a checkpoint or a shipped
model folder of the same shape.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from live_synth.audio.features import scale_features, unscale_features
from live_synth.constants import LOG_MEL_MIN, N_MELS
from live_synth.errors import LiveSynthError
from live_synth.midi import apply_sustain, read_midi
from live_synth.midi.events import NoteEvents
from live_synth.model.causal import CAUSAL_PRESETS, CausalConfig, CausalModel
from live_synth.model.frame_features import COL, FEATURES, frame_features
from live_synth.sampling.schedules import cosine_alpha_sigma
from live_synth.training.loop import LoopSettings, TrainStep, atomic_torch_save, run_loop
from live_synth.training.shards import piece_paths, read_piece

CKPT = "ckpt.pt"
LOG = "loss.csv"
LONE_VELOCITIES = (20, 45, 70, 95, 120)


@dataclass(frozen=True)
class CausalTrainConfig:
    model: str = "causal"  # a preset of model/causal.py; a resumed run keeps its checkpoint's shape
    batch_size: int = 16
    crop: int = 256
    burn_in: int = 128
    lr: float = 5e-4
    warmup_steps: int = 300
    total_steps: int = 6000  # cosine decay of the learning rate to `min_lr_ratio` over these steps (flat after)
    min_lr_ratio: float = 0.1
    ema: float = 0.999  # exponential moving average of the weights: what the probes measure and what ships
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    noise_draws: int = 2
    high_noise_fraction: float = 0.25
    prior_weight: float = 1.0
    context_dropout: float = 0.1
    # Fraction of frames whose previous frame is the model's own one-step prediction of it (made by a no-grad
    # teacher-forced pass over the crop) instead of the recording: the model sees its own errors as context and
    # learns to pull back from them (a runaway level was measured without it: +0.8 dB per frame on held notes).
    self_condition: float = 0.5
    # Weight of a loss on the 1-step sample itself (the frame `render` and `play` make): per-frame loudness (log of
    # the summed mel magnitude) and spectral centroid (in bins / 128) against the recorded frame's, L1. The MSE on v
    # alone leaves the 1-step sample the conditional mean; this asks its level and brightness to follow the
    # recording frame by frame (issue 20: velocity curve too flat, frames blurred). 0: off (the shipped recipe).
    frame_loss: float = 0.0
    seed: int = 0
    log_every: int = 25
    probe_every: int = 250
    save_every_s: float = 120.0
    init: str = ""  # a ckpt.pt or a model folder to start a new run from


@dataclass
class TrainPiece:
    mel: np.ndarray  # float16 [T, 128] natural-log mel
    events: NoteEvents


def load_train_piece(path: Path) -> TrainPiece:
    """A dataset piece's mel and its notes + controllers, re-read from its MIDI bytes (the stored note table has no
    controllers)."""
    piece = read_piece(path)
    events = NoteEvents.from_sequence(apply_sustain(read_midi(piece.midi, name=piece.name)))
    return TrainPiece(piece.mel, events)


class CropSampler:
    """Random crops from `DATASET/<split>/*.npz`: `train` for training, `validation` for the probe (the test split is
    never opened)."""

    def __init__(self, dataset: Path, crop: int, burn_in: int, slots: int, pieces: list[TrainPiece] | None = None,
                 split: str = "train"):
        if pieces is None:
            files = piece_paths(dataset, split)
            if not files:
                raise LiveSynthError(f"{dataset}: no {split} pieces in {Path(dataset) / split}")
            pieces = [load_train_piece(f) for f in files]
        self.pieces, self.crop, self.burn_in, self.slots = pieces, crop, burn_in, slots
        lengths = np.array([len(p.mel) for p in pieces], np.float64)
        self.weights = lengths / lengths.sum()

    def example(self, piece: TrainPiece, start: int) -> tuple[np.ndarray, np.ndarray]:
        """(features [crop, S, F], mel [crop + 1, 128]: the frame before the crop, then the crop's frames)."""
        mel = np.full((self.crop + 1, N_MELS), LOG_MEL_MIN, np.float32)
        lo, hi = max(start - 1, 0), min(start + self.crop, len(piece.mel))
        if hi > lo:
            mel[lo - (start - 1) : hi - (start - 1)] = piece.mel[lo:hi]
        return frame_features(piece.events, start, self.crop, self.slots), mel

    def arrays(self, rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
        """(features [size, crop, S, F], log-mel [size, crop + 1, 128]) of `size` random crops (numpy only: what a
        forked prefetch worker runs)."""
        feats = np.zeros((size, self.crop, self.slots, FEATURES), np.float32)
        mels = np.zeros((size, self.crop + 1, N_MELS), np.float32)
        for b, k in enumerate(rng.choice(len(self.pieces), size=size, p=self.weights)):
            piece = self.pieces[k]
            # loss frames [start + burn_in, start + crop) must overlap the piece
            start = int(rng.integers(-self.crop, max(len(piece.mel) - self.burn_in, 1 - self.crop + 1)))
            feats[b], mels[b] = self.example(piece, start)
        return feats, mels

    def batch(self, rng: np.random.Generator, size: int) -> dict[str, torch.Tensor]:
        return as_batch(*self.arrays(rng, size))


def as_batch(feats: np.ndarray, mels: np.ndarray) -> dict[str, torch.Tensor]:
    return {"slots": torch.from_numpy(feats), "mel": scale_features(torch.from_numpy(mels), clip=True)}


_WORKER_SAMPLER: CropSampler | None = None  # the sampler a forked prefetch worker inherits


def _worker_batch(size: int, seed: list[int]) -> tuple[np.ndarray, np.ndarray]:
    return _WORKER_SAMPLER.arrays(np.random.default_rng(seed), size)  # numpy only: no torch thread pool after fork


class PrefetchSampler:
    """`CropSampler.batch` in `workers` forked processes, 2 x `workers` batches ahead: on a GPU one step costs less
    than building its crops' features in Python, so a single process leaves the GPU waiting. Batch k is drawn with
    the seed (seed, 1, k), so a run's crops do not depend on the workers' timing; the `rng` argument of `batch` is
    ignored. Used when `train(workers=...)` > 0 (GPU runs); CPU runs keep the in-process sampler."""

    def __init__(self, sampler: CropSampler, workers: int, size: int, seed: int, first_batch: int):
        import multiprocessing

        global _WORKER_SAMPLER
        _WORKER_SAMPLER = sampler
        self.pool = multiprocessing.get_context("fork").Pool(workers)
        self.size, self.seed, self.next = size, seed, first_batch
        self.pending = [self._submit() for _ in range(2 * workers)]

    def _submit(self):
        result = self.pool.apply_async(_worker_batch, (self.size, [self.seed, 1, self.next]))
        self.next += 1
        return result

    def batch(self, rng: np.random.Generator, size: int) -> dict[str, torch.Tensor]:
        arrays = self.pending.pop(0).get()
        self.pending.append(self._submit())
        return as_batch(*arrays)

    def close(self) -> None:
        self.pool.terminate()


def context_input(mel: torch.Tensor, gen: torch.Generator, max_noise: float, dropout: float
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """(noised previous frames [B, T, 128], level inputs [B, T, 2]) from the scaled mel [B, T + 1, 128]."""
    prev = mel[:, :-1]
    B, T = prev.shape[:2]
    level = torch.rand(B, T, 1, generator=gen) * max_noise
    dropped = (torch.rand(B, T, 1, generator=gen) < dropout).float()
    noise = torch.randn(prev.shape, generator=gen)
    noised = torch.where(dropped > 0, noise, prev + level * noise)
    return noised, torch.cat([torch.where(dropped > 0, torch.ones_like(level), level), dropped], dim=-1)


def losses(model: CausalModel, batch: dict, cfg: CausalTrainConfig, gen: torch.Generator,
           tau: torch.Tensor | None = None, noise: torch.Tensor | None = None, context: tuple | None = None
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """(head loss, prior loss) of one batch; the head loss includes `cfg.frame_loss` times `frame_level_loss`."""
    dev = next(model.parameters()).device
    slots, mel = batch["slots"].to(dev), batch["mel"].to(dev)
    prev, level = context if context is not None else context_input(mel.cpu(), gen, model.config.max_context_noise,
                                                                      cfg.context_dropout)
    prev, level = prev.to(dev), level.to(dev)
    if context is None and cfg.self_condition > 0:
        prev = own_predictions(model, slots, mel, prev, level, gen, cfg.self_condition)
    c, prior = model.teacher_forced(slots, prev, level)
    keep = slice(cfg.burn_in, None)
    target = mel[:, 1:][:, keep]
    prior = prior[:, keep].float()
    prior_loss = F.l1_loss(prior, target)
    r = (target - prior.detach()).unsqueeze(0).expand(cfg.noise_draws, *target.shape)
    cond = c[:, keep].unsqueeze(0).expand(cfg.noise_draws, *c[:, keep].shape)
    if tau is None:
        tau = torch.rand(r.shape[:3], generator=gen)
        high = torch.rand(r.shape[:3], generator=gen) < cfg.high_noise_fraction
        tau = torch.where(high, 0.9 + 0.1 * tau, tau)
    if noise is None:
        noise = torch.randn(r.shape, generator=gen)
    tau, noise = tau.to(dev), noise.to(dev)
    alpha, sigma = (t.unsqueeze(-1) for t in cosine_alpha_sigma(tau))
    z = alpha * r + sigma * noise
    v = alpha * noise - sigma * r
    head_loss = F.mse_loss(model.head(z, tau, cond).float(), v)
    if cfg.frame_loss > 0:
        head_loss = head_loss + cfg.frame_loss * frame_level_loss(model, c[:, keep], prior.detach(), target, gen)
    return head_loss, prior_loss


def frame_descriptors(mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(loudness, centroid) per frame of a scaled mel [..., 128]: natural log of the summed mel magnitude, and the
    magnitude-weighted mean bin / 128."""
    log_mel = unscale_features(mel.float())
    loudness = torch.logsumexp(log_mel, dim=-1)
    bins = torch.arange(N_MELS, device=mel.device, dtype=torch.float32) / N_MELS
    centroid = (torch.softmax(log_mel, dim=-1) * bins).sum(-1)
    return loudness, centroid


def frame_level_loss(model: CausalModel, cond: torch.Tensor, prior: torch.Tensor, target: torch.Tensor,
                     gen: torch.Generator) -> torch.Tensor:
    """L1 between the 1-step sample's (loudness, 10 x centroid) and the recorded frame's, per frame."""
    z = torch.randn(prior.shape, generator=gen).to(prior.device)
    x0 = model.sample(cond, prior, z, 1)  # with the gradient: the frame render and play make
    (loud, cent), (loud_ref, cent_ref) = frame_descriptors(x0), frame_descriptors(target)
    return F.l1_loss(loud, loud_ref) + 10.0 * F.l1_loss(cent, cent_ref)


@torch.no_grad()
def own_predictions(model: CausalModel, slots: torch.Tensor, mel: torch.Tensor, prev: torch.Tensor,
                    level: torch.Tensor, gen: torch.Generator, fraction: float) -> torch.Tensor:
    """`prev` with a random `fraction` of its frames replaced by the model's 1-step prediction of that frame (from
    the recorded history, as in training), with the same context noise on top. Dropped frames stay dropped."""
    was_training = model.training
    model.eval()
    c, prior = model.teacher_forced(slots, prev, level)
    z = torch.randn(prior.shape, generator=gen).to(prior.device)
    predicted = model.sample(c.float(), prior.float(), z, 1)  # frame t as the model would make it
    model.train(was_training)
    own = torch.cat([mel[:, :1], predicted[:, :-1]], dim=1)  # the prediction of frame t - 1, as frame t's context
    noise = torch.randn(prev.shape, generator=gen).to(prev.device)
    use = (torch.rand(prev.shape[:2], generator=gen).to(prev.device) < fraction) & (level[..., 1] == 0)
    return torch.where(use.unsqueeze(-1), own + level[..., :1] * noise, prev)


@torch.no_grad()
def probe(model: CausalModel, batch: dict, cfg: CausalTrainConfig) -> dict[str, float]:
    """Head loss with and without the notes (same noise) and the prior's L1, on a fixed batch."""
    model.eval()
    gen = torch.Generator().manual_seed(1234)
    context = context_input(batch["mel"], gen, model.config.context_noise, 0.0)
    draws = (cfg.noise_draws, batch["mel"].shape[0], cfg.crop - cfg.burn_in)
    tau, noise = torch.rand(draws, generator=gen), torch.randn(*draws, N_MELS, generator=gen)
    with_notes, prior = losses(model, batch, cfg, gen, tau, noise, context)
    empty = dict(batch, slots=torch.zeros_like(batch["slots"]))
    without, _ = losses(model, empty, cfg, gen, tau, noise, context)
    model.train()
    return {"probe_head": round(with_notes.item(), 5), "probe_head_no_notes": round(without.item(), 5),
            "probe_prior_l1": round(prior.item(), 5)}


PROBE_PITCH = 64  # E4: the training probe's lone notes are not the evaluation's (C4, tools/evaluate.py dynamics_check)


def lone_note_levels(model: CausalModel, steps: int = 1, seed: int = 0, pitch: int = PROBE_PITCH) -> list[float]:
    """Peak mel level (dB of the mel magnitude summed over bins) of one piano note (`pitch`, 1 s) at each velocity
    of LONE_VELOCITIES, 1.5 s apart, rendered frame by frame from silence."""
    from live_synth.causal_stream import render_events

    notes = np.array([[0.5 + 1.5 * i, 1.5 + 1.5 * i, pitch, v, 0, 0, 0] for i, v in enumerate(LONE_VELOCITIES)])
    mel = render_events(model, NoteEvents(notes), len(LONE_VELOCITIES) * 75 + 50, steps=steps, seed=seed)
    return note_peaks_db(mel, notes[:, 0], notes[:, 1])


def note_peaks_db(mel: np.ndarray, onsets: np.ndarray, releases: np.ndarray) -> list[float]:
    """dB of the loudest frame (mel magnitude summed over bins) between each onset and its release."""
    energy = np.exp(mel).sum(axis=1)
    out = []
    for on, off in zip(onsets, releases):
        span = energy[int(on * 50) : max(int(off * 50), int(on * 50) + 1)]
        out.append(round(float(20 * np.log10(span.max() + 1e-12)), 2))
    return out


def lr_at(step: int, cfg: CausalTrainConfig) -> float:
    """Linear warm-up, then cosine decay to `lr * min_lr_ratio` at `total_steps`: a constant rate left the rolled-out
    level unstable from one probe to the next (a held note running away at one checkpoint, not at the next)."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(cfg.total_steps - cfg.warmup_steps, 1))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def _save(out: Path, model: CausalModel, opt, step: int, cfg: CausalTrainConfig, gen: torch.Generator,
          rng_state: dict, ema: CausalModel) -> None:
    atomic_torch_save({"model": model.state_dict(), "ema": ema.state_dict(), "optimizer": opt.state_dict(),
                       "step": step, "train_config": dataclasses.asdict(cfg), "model_config": model.config.to_json(),
                       "torch_rng": gen.get_state(), "numpy_rng": rng_state}, out / CKPT)


def _initial_weights(model: CausalModel, init: str) -> None:
    path = Path(init)
    if path.is_dir():
        from live_synth.files import read_safetensors

        state = {k: v.float() for k, v in read_safetensors(path / "model.safetensors")[0].items()}
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)["model"]
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    if [k for k in missing if not k.endswith("_table")] or [k for k in state if k not in own]:
        raise LiveSynthError(f"{init}: weights do not fit this model (missing {missing}, unexpected "
                             f"{[k for k in state if k not in own]})")
    try:  # a run from before the prior's templates: they start at zero
        model.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        raise LiveSynthError(f"{init}: weights do not fit this model ({str(exc).splitlines()[0]})") from None


def train(dataset: Path, out: Path, cfg: CausalTrainConfig = CausalTrainConfig(), minutes: float = 5.0,
          max_steps: int | None = None, device: str = "cpu", precision: str = "bf16", progress=None,
          model_config: CausalConfig | None = None, sampler: CropSampler | None = None,
          overrides: dict | None = None, workers: int = 0) -> int:
    """Train (or resume) for `minutes` or until `max_steps`; returns the step reached. A resumed run keeps its
    stored training config, with `overrides` applied (e.g. {"total_steps": 3000}). `workers` > 0 builds the batches
    in that many forked processes (`PrefetchSampler`, for GPU runs)."""
    out.mkdir(parents=True, exist_ok=True)
    dev = torch.device(device)
    resume = torch.load(out / CKPT, map_location="cpu", weights_only=False) if (out / CKPT).exists() else None
    if resume:
        cfg = dataclasses.replace(CausalTrainConfig(**resume["train_config"]), **(overrides or {}))
        model_cfg = CausalConfig.from_dict(json.loads(resume["model_config"]))
    else:
        model_cfg = model_config or CAUSAL_PRESETS[cfg.model]
    if cfg.burn_in >= cfg.crop:
        raise LiveSynthError(f"burn_in ({cfg.burn_in}) must be shorter than the crop ({cfg.crop})")
    model = CausalModel(model_cfg, seed=cfg.seed).to(dev)
    # The prior learns faster than the rest (a regression started from a flat spectrum), its templates fastest.
    scale = {n: (10.0 if n.startswith("prior.") and n.endswith("_table") else
                 3.0 if n.startswith("prior.") or n == "slots.pitch" else 1.0) for n, _ in model.named_parameters()}
    groups = [{"params": [p for n, p in model.named_parameters() if scale[n] == k], "lr_scale": k,
               "weight_decay": 0.0 if k == 10.0 else cfg.weight_decay} for k in (1.0, 3.0, 10.0)]
    opt = torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.99))
    gen = torch.Generator().manual_seed(cfg.seed)
    step = 0
    rng = np.random.default_rng([cfg.seed, 0])
    if resume:
        model.load_state_dict(resume["model"])
        opt.load_state_dict(resume["optimizer"])
        step = resume["step"]
        gen.set_state(resume["torch_rng"])
        rng.bit_generator.state = resume["numpy_rng"]
    elif cfg.init:
        _initial_weights(model, cfg.init)
    ema = CausalModel(model_cfg).to(dev).eval()
    ema.load_state_dict(resume["ema"] if resume and "ema" in resume else model.state_dict())
    for p in ema.parameters():
        p.requires_grad_(False)
    data = sampler or CropSampler(dataset, cfg.crop, cfg.burn_in, model_cfg.slots)
    # The probe steers every stage (which run to continue, which to ship), so it runs on validation crops, never on
    # training crops; a dataset without a validation split (tests' tiny ones) probes its training crops.
    probe_data = data
    if sampler is None and piece_paths(dataset, "validation"):
        probe_data = CropSampler(dataset, cfg.crop, cfg.burn_in, model_cfg.slots, split="validation")
    probe_batch = probe_data.batch(np.random.default_rng([cfg.seed, 10**9]), min(cfg.batch_size, 16))
    if workers > 0:
        data = PrefetchSampler(data, workers, cfg.batch_size, cfg.seed, step)
    if precision not in ("bf16", "fp32"):
        raise LiveSynthError(f"precision must be bf16 or fp32, not {precision!r}")
    autocast = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=precision == "bf16")

    class Step(TrainStep):
        def loss(self, step: int):
            batch = data.batch(rng, cfg.batch_size)
            with autocast:
                head_loss, prior_loss = losses(model, batch, cfg, gen)
                loss = head_loss + cfg.prior_weight * prior_loss
            return loss, {"head": head_loss.item(), "prior_l1": prior_loss.item()}

        def probe(self, step: int) -> dict:
            with autocast:
                row = probe(model, probe_batch, cfg)
            return {**row, "lone_db": " ".join(f"{v:.1f}" for v in lone_note_levels(ema))}

        def save(self, step: int) -> None:
            _save(out, model, opt, step, cfg, gen, rng.bit_generator.state, ema)

    settings = LoopSettings(lambda step: lr_at(step, cfg), cfg.grad_clip, out / LOG, cfg.log_every, cfg.probe_every,
                            ("probe_head", "probe_head_no_notes", "probe_prior_l1", "lone_db"), cfg.save_every_s,
                            cfg.ema)
    try:
        return run_loop(Step(), model, opt, settings, step, minutes, max_steps, ema, progress)
    finally:
        if isinstance(data, PrefetchSampler):
            data.close()


def export(out: Path, target: Path, description: str = "", default_steps: int = 0) -> Path:
    """The run's weights as a compact fp16 model folder (config.json + model.safetensors), what ships."""
    from live_synth.model.checkpoint import save_causal_model

    if not (out / CKPT).is_file():
        raise LiveSynthError(f"{out / CKPT}: missing file (train first)")
    ckpt = torch.load(out / CKPT, map_location="cpu", weights_only=False)
    cfg = CausalConfig.from_dict(json.loads(ckpt["model_config"]))
    cfg = dataclasses.replace(cfg, description=description or f"trained by live-synth, {ckpt['step']} steps",
                              default_steps=default_steps or cfg.default_steps)
    model = CausalModel(cfg)
    model.load_state_dict(ckpt.get("ema", ckpt["model"]))  # the weights' moving average is what ships
    return save_causal_model(model, target)


def plot_losses(logs: list[Path], png: Path) -> Path:
    """Loss logs of consecutive runs (stages) -> one PNG: the losses (left), the notes-use ratio of the probe (head
    loss without ÷ with the notes, middle), and the lone-note levels relative to the loudest (right, with General
    MIDI's 40 log10(v / 127) curve that FluidSynth follows)."""
    import csv

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows, offset, bounds = [], 0, []
    for log in logs:
        part = list(csv.DictReader(open(log)))
        for r in part:
            r["global_step"] = offset + int(r["step"])
        rows += part
        offset += int(part[-1]["step"]) if part else 0
        bounds.append(offset)
    fig = Figure(figsize=(15, 4))
    FigureCanvasAgg(fig)
    losses, ratio, lone = fig.add_subplot(1, 3, 1), fig.add_subplot(1, 3, 2), fig.add_subplot(1, 3, 3)
    steps = [r["global_step"] for r in rows]
    for key in ("loss", "head", "prior_l1"):
        losses.plot(steps, [float(r[key]) for r in rows], lw=0.7, label=key)
    probes = [r for r in rows if r.get("probe_head")]
    ratio.plot([r["global_step"] for r in probes],
               [float(r["probe_head_no_notes"]) / float(r["probe_head"]) for r in probes], "o-")
    levels = [(r["global_step"], [float(v) for v in r["lone_db"].split()]) for r in rows if r.get("lone_db")]
    for i, velocity in enumerate(LONE_VELOCITIES):
        lone.plot([s for s, _ in levels], [v[i] - max(v) for _, v in levels], "o-", ms=3, label=f"v{velocity}")
        lone.axhline(40 * math.log10(velocity / LONE_VELOCITIES[-1]), color=f"C{i}", ls=":", lw=0.8)
    for ax in (losses, ratio, lone):
        for b in bounds[:-1]:
            ax.axvline(b, color="grey", lw=0.6, ls="--")
        ax.set_xlabel("step (all stages)")
        ax.grid(alpha=0.3)
    losses.set_ylabel("training loss")
    losses.set_yscale("log")
    losses.legend()
    ratio.set_ylabel("probe head loss without ÷ with notes")
    lone.set_ylabel("lone piano note peak, dB re the loudest\n(dotted: 40 log10(v/120), FluidSynth)")
    lone.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    return png
