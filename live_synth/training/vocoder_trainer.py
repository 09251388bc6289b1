"""Training loop for the streaming vocoder (issue #3 item 4), CPU or CUDA, resumable in short chunks.

Data: the pieces of `DATASET/train/` (`training.shards` layout: `audio` int16, 16 kHz mono); `DATASET/validation/`
is only read for the validation metric (its first 8 pieces, up to 20 s each). Each example is a random crop of
`crop_frames` frames. The model sees the real mel frames around the crop (`context_frames` before it, `lookahead` after it; silence before the start
of a piece and after its end, which is what the audio holds there), so it is trained exactly as it streams, with no
padding artefacts inside a piece. The mel is recomputed from the audio of the crop with `features.log_mel`
(the very features the diffusion model produces), which keeps it exact under the random-gain augmentation.

Loss: multi-resolution STFT (spectral convergence + log-magnitude L1, at the resolutions `training.metrics` uses for
evaluation) + L1 between the log-mel of the output and of the target (the features the vocoder must invert); with
`gan_weight` > 0, from step `gan_start` on, adversarial training as in HiFi-GAN / Vocos: multi-period and
multi-resolution discriminators (`training.discriminators`), least-squares losses and feature matching
(`fm_weight`), the discriminators with their own AdamW at `d_lr`.

Optimiser: AdamW, linear warm-up, cosine decay to `min_lr_ratio` over `total_steps`; gradient clipping; bf16
autocast on CUDA for the conv stack (spectral head, inverse STFT and losses stay float32).

Chunks: `train(..., minutes=M)` stops after M minutes and saves `ckpt.pt` (weights, optimiser, step, RNG states of
the crop sampler and of torch); calling it again with the same `out` resumes the exact data stream. Losses are
appended to `loss.csv` and plotted to `loss.png`; `export` writes compact fp16 weights the `NeuralVocoder` loads.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from live_synth.audio.features import log_mel
from live_synth.audio.neural_vocoder import StreamingVocoder, VocoderConfig, preset, save_vocoder
from live_synth.constants import HOP
from live_synth.errors import CheckpointError, LiveSynthError
from live_synth.provenance import append_csv_row
from live_synth.training.metrics import MR_STFT_RESOLUTIONS
from live_synth.training.shards import piece_paths, read_piece
from live_synth.training.loop import atomic_torch_save

CKPT = "ckpt.pt"
LOG = "loss.csv"
PLOT = "loss.png"
_FLOOR = 1e-5  # magnitude floor of the log-magnitude loss (ln 1e-5 is the features' silence)


@dataclass(frozen=True)
class VocoderTrainConfig:
    """Hyper-parameters of a vocoder run; stored in its checkpoint, so a resumed run keeps them."""

    model: str = "base"  # vocoder preset for a new run
    crop_frames: int = 48  # frames of audio per example whose loss counts (0.96 s)
    batch_size: int = 16
    lr: float = 5e-4
    min_lr_ratio: float = 0.1
    warmup_steps: int = 500
    total_steps: int = 100_000  # horizon of the cosine decay (training may stop before or go on after)
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    gain_db: float = 6.0  # random gain in [-gain_db, +gain_db / 2] dB per example (0 disables)
    mel_weight: float = 1.0
    stft_weight: float = 1.0
    gan_weight: float = 0.0  # 0: no discriminators (the first shipped vocoder)
    fm_weight: float = 2.0
    gan_start: int = 0  # the step from which the discriminators train and judge
    d_lr: float = 2e-4
    init: str = ""  # a vocoder folder or ckpt.pt to start a new run from (same shape)
    seed: int = 0
    log_every: int = 25
    valid_every: int = 500
    save_every_s: float = 120.0


# --------------------------------------------------------------------------------------------------------------------
# Data


def load_split(dataset: Path, split: str) -> list[np.ndarray]:
    """The int16 audio of every piece of one split (`training.shards` layout); [] when the split is absent."""
    audio = []
    for path in piece_paths(dataset, split):
        piece = read_piece(path)
        if piece.audio is None:
            raise LiveSynthError(f"{path}: holds no audio (a features-only copy of the dataset?)")
        audio.append(piece.audio)
    return audio


class CropSampler:
    """Random training crops: audio with the context the model needs around `crop_frames` frames.

    `sample` returns float32 audio [B, (context + crop + lookahead + 1) * 320] starting 320 * context samples before
    the crop; `features_and_target` turns it into the model input and the target.
    """

    def __init__(self, pieces: Sequence[np.ndarray], model_cfg: VocoderConfig, crop_frames: int, gain_db: float,
                 seed: int) -> None:
        self.pieces = [p for p in pieces if p.size > 0]
        if not self.pieces:
            raise LiveSynthError("no training audio")
        self.crop_frames, self.gain_db = crop_frames, gain_db
        self.context, self.lookahead = model_cfg.context_frames, model_cfg.lookahead
        self.frames = self.context + crop_frames + model_cfg.lookahead  # model input frames
        lengths = np.array([-(-p.size // HOP) for p in self.pieces], dtype=np.float64)
        self.weights = torch.from_numpy(lengths / lengths.sum())
        self.generator = torch.Generator().manual_seed(seed)

    def sample(self, batch_size: int) -> torch.Tensor:
        span = (self.frames + 1) * HOP  # one more frame: the last input frame's window reaches into it
        out = torch.zeros(batch_size, span)
        choice = torch.multinomial(self.weights, batch_size, replacement=True, generator=self.generator)
        for b, k in enumerate(choice.tolist()):
            piece = self.pieces[k]
            last_start = max(-(-piece.size // HOP) - self.crop_frames, 0)
            first = (int(torch.randint(0, last_start + 1, (1,), generator=self.generator)) - self.context) * HOP
            lo, hi = max(first, 0), min(first + span, piece.size)
            if hi > lo:
                out[b, lo - first : hi - first] = torch.from_numpy(piece[lo:hi].astype(np.float32) / 32768.0)
        if self.gain_db > 0:
            db = torch.rand(batch_size, 1, generator=self.generator) * 1.5 * self.gain_db - self.gain_db
            out *= 10.0 ** (db / 20.0)
        return out

    def features_and_target(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mel [B, frames, 128] for `forward_valid`, target audio [B, crop * 320]) from `sample`'s output."""
        mel = log_mel(audio)[:, : self.frames]
        return mel, audio[:, self.context * HOP : (self.context + self.crop_frames) * HOP]


# --------------------------------------------------------------------------------------------------------------------
# Loss


def _magnitude(audio: torch.Tensor, n_fft: int, hop: int) -> torch.Tensor:
    window = torch.hann_window(n_fft, device=audio.device)
    spec = torch.stft(audio, n_fft, hop_length=hop, window=window, center=True, pad_mode="constant",
                      return_complex=True)
    return spec.abs()


def vocoder_loss(pred: torch.Tensor, target: torch.Tensor, cfg: VocoderTrainConfig) -> tuple[torch.Tensor, dict]:
    """Weighted MR-STFT (SC + log-magnitude) + log-mel L1 of `pred` against `target`, both [B, samples] float32."""
    pred, target = pred.float(), target.float()
    sc = logmag = pred.new_zeros(())
    for n_fft, hop in MR_STFT_RESOLUTIONS:
        p, t = _magnitude(pred, n_fft, hop), _magnitude(target, n_fft, hop)
        sc = sc + torch.linalg.norm(t - p) / torch.linalg.norm(t).clamp_min(1e-3)
        logmag = logmag + torch.mean(torch.abs(torch.log(t.clamp_min(_FLOOR)) - torch.log(p.clamp_min(_FLOOR))))
    sc, logmag = sc / len(MR_STFT_RESOLUTIONS), logmag / len(MR_STFT_RESOLUTIONS)
    mel = torch.mean(torch.abs(log_mel(pred) - log_mel(target)))
    total = cfg.stft_weight * (sc + logmag) + cfg.mel_weight * mel
    return total, {"sc": sc.item(), "logmag": logmag.item(), "mel": mel.item()}


def lr_at(step: int, cfg: VocoderTrainConfig) -> float:
    """Linear warm-up to `lr`, then cosine decay to `lr * min_lr_ratio` at `total_steps` (flat after)."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(cfg.total_steps - cfg.warmup_steps, 1))
    return cfg.lr * (cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress)))


# --------------------------------------------------------------------------------------------------------------------
# Evaluation


@torch.no_grad()
def reanalysis_error(model: StreamingVocoder, pieces: Sequence[np.ndarray], max_seconds: float = 20.0
                     ) -> dict[str, float]:
    """Vocode the mel of each piece (its first `max_seconds`) offline and compare the log-mel of the result with it.

    Returns mean abs log-mel error over all frames (`mel_l1`) and over bins within 40 dB of their frame's loudest bin
    (`mel_l1_loud`), the metrics `GriffinLimVocoder`'s docstring reports.
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    errors, loud_errors = [], []
    for piece in pieces:
        audio = torch.from_numpy(piece[: int(max_seconds * 16_000)].astype(np.float32) / 32768.0).to(device)
        mel = log_mel(audio)
        error = (log_mel(model(mel[None])[0]) - mel).abs()
        loud = mel > mel.max(dim=1, keepdim=True).values - math.log(100.0)
        errors.append(error.flatten().cpu())
        loud_errors.append(error[loud].cpu())
    model.train(was_training)
    return {"mel_l1": float(torch.cat(errors).mean()), "mel_l1_loud": float(torch.cat(loud_errors).mean())}


# --------------------------------------------------------------------------------------------------------------------
# Checkpoints and logs


def _save(out: Path, model: StreamingVocoder, opt: torch.optim.Optimizer, step: int, cfg: VocoderTrainConfig,
          sampler: CropSampler, seconds: float, gan: tuple | None = None) -> None:
    state = {
        "model": model.state_dict(), "optimizer": opt.state_dict(), "step": step, "seconds": seconds,
        "train_config": json.dumps(dataclasses.asdict(cfg)), "model_config": model.config.to_json(),
        "sampler_rng": sampler.generator.get_state(), "torch_rng": torch.get_rng_state(),
    }
    if gan is not None:
        state["discriminators"], state["d_optimizer"] = gan[0].state_dict(), gan[1].state_dict()
    if torch.cuda.is_available():
        state["cuda_rng"] = torch.cuda.get_rng_state_all()
    atomic_torch_save(state, out / CKPT)


def load_checkpoint(out: Path) -> dict | None:
    path = Path(out) / CKPT
    if not path.exists():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file: one line
        raise CheckpointError(f"{path}: cannot read the training checkpoint ({type(exc).__name__})") from None




LOG_FIELDS = ("step", "seconds", "lr", "loss", "sc", "logmag", "mel", "grad_norm", "steps_per_s", "valid_mel_l1",
              "valid_mel_l1_loud", "g_adv", "fm", "d_loss")


def plot_losses(out: Path) -> Path:
    """loss.csv -> loss.png: training loss and its parts, and the held-out re-analysis error, against the step."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with open(out / LOG) as handle:
        rows = list(csv.DictReader(handle))
    steps = [int(r["step"]) for r in rows]
    fig = Figure(figsize=(9, 4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for key, label in (("loss", "total"), ("sc", "spectral convergence"), ("logmag", "log-magnitude L1"),
                       ("mel", "log-mel L1")):
        ax.plot(steps, [float(r[key]) for r in rows], label=f"train {label}", lw=0.8)
    valid = [(int(r["step"]), float(r["valid_mel_l1"])) for r in rows if r.get("valid_mel_l1")]
    if valid:
        ax.plot(*zip(*valid), "o-", label="held-out re-analysed log-mel L1")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    fig.savefig(out / PLOT, dpi=100)
    return out / PLOT


# --------------------------------------------------------------------------------------------------------------------
# The loop


class VocoderTrainer:
    """Model, optimiser and crop sampler of one run; `step()` does one optimiser step and returns its loss parts."""

    def __init__(self, model_cfg: VocoderConfig, cfg: VocoderTrainConfig, pieces: Sequence[np.ndarray],
                 device: str | torch.device = "cpu") -> None:
        self.cfg, self.device = cfg, torch.device(device)
        torch.manual_seed(cfg.seed)
        self.model = StreamingVocoder(model_cfg).to(self.device).train()
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                                     betas=(0.9, 0.99))
        self.sampler = CropSampler(pieces, model_cfg, cfg.crop_frames, cfg.gain_db, cfg.seed)
        self.step_count = 0
        self.autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device.type == "cuda")
        self.discriminators = self.d_opt = None
        if cfg.gan_weight > 0:
            from live_synth.training.discriminators import Discriminators

            self.discriminators = Discriminators().to(self.device).train()
            self.d_opt = torch.optim.AdamW(self.discriminators.parameters(), lr=cfg.d_lr, betas=(0.8, 0.99))

    def gan_state(self) -> tuple | None:
        return None if self.discriminators is None else (self.discriminators, self.d_opt)

    def init_from(self, spec: str) -> None:
        """A new run's generator weights from a vocoder folder / .safetensors or a run's ckpt.pt (same shape)."""
        path = Path(spec)
        if path.suffix == ".pt":
            state = torch.load(path, map_location="cpu", weights_only=True)["model"]
        else:
            from live_synth.audio.neural_vocoder import load_streaming_vocoder

            state = load_streaming_vocoder(path).state_dict()
        try:
            self.model.load_state_dict({k: v.float() for k, v in state.items()})
        except RuntimeError as exc:
            raise LiveSynthError(f"{spec}: weights do not fit this vocoder ({str(exc).splitlines()[0]})") from None

    def load(self, ckpt: dict) -> None:
        self.model.load_state_dict(ckpt["model"])
        self.opt.load_state_dict(ckpt["optimizer"])
        if self.discriminators is not None and "discriminators" in ckpt:
            self.discriminators.load_state_dict(ckpt["discriminators"])
            self.d_opt.load_state_dict(ckpt["d_optimizer"])
        self.step_count = int(ckpt["step"])
        self.sampler.generator.set_state(ckpt["sampler_rng"])
        torch.set_rng_state(ckpt["torch_rng"])
        if "cuda_rng" in ckpt and self.device.type == "cuda":
            torch.cuda.set_rng_state_all(ckpt["cuda_rng"])

    def loss(self, audio: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """Loss on a batch from `CropSampler.sample` (already on the device)."""
        mel, target = self.sampler.features_and_target(audio)
        with self.autocast:
            pred = self.model.forward_valid(mel)
        return vocoder_loss(pred, target, self.cfg)

    def step(self) -> dict:
        cfg = self.cfg
        audio = self.sampler.sample(cfg.batch_size).to(self.device, non_blocking=True)
        for group in self.opt.param_groups:
            group["lr"] = lr_at(self.step_count, cfg)
        mel, target = self.sampler.features_and_target(audio)
        with self.autocast:
            pred = self.model.forward_valid(mel)
        loss, parts = vocoder_loss(pred, target, cfg)
        adversarial = self.discriminators is not None and self.step_count >= cfg.gan_start
        if adversarial:
            from live_synth.training.discriminators import discriminator_loss, generator_losses

            # the discriminators' step, on the generator's output as it is now (detached)
            d_loss = discriminator_loss(self.discriminators(target), self.discriminators(pred.detach().float()))
            self.d_opt.zero_grad(set_to_none=True)
            d_loss.backward()
            torch.nn.utils.clip_grad_norm_(self.discriminators.parameters(), cfg.grad_clip)
            self.d_opt.step()
            g_adv, fm = generator_losses(self.discriminators(target), self.discriminators(pred.float()))
            loss = loss + cfg.gan_weight * g_adv + cfg.fm_weight * fm
            parts.update(g_adv=g_adv.item(), fm=fm.item(), d_loss=d_loss.item())
        if not math.isfinite(loss.item()):
            raise RuntimeError(f"vocoder loss became {loss.item()} at step {self.step_count}")
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.opt.step()
        self.step_count += 1
        return {"loss": loss.item(), **parts, "grad_norm": float(grad_norm)}


def train(dataset: Path, out: Path, cfg: VocoderTrainConfig = VocoderTrainConfig(), minutes: float = 5.0,
          max_steps: int | None = None, device: str = "cpu", progress: Callable[[dict], None] | None = None,
          model_config: VocoderConfig | None = None, overrides: dict | None = None) -> int:
    """Train (or resume) for `minutes` or until `max_steps`; returns the step reached. Saves `out/ckpt.pt`.

    A new run uses `model_config` (default: the preset `cfg.model`) and `cfg`; a resumed run uses the configs its
    checkpoint holds, with `overrides` (e.g. {"lr": 1e-4}) applied to the training config.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = load_checkpoint(out)
    if ckpt is not None:
        model_cfg = VocoderConfig.from_dict(json.loads(ckpt["model_config"]), str(out / CKPT))
        cfg = VocoderTrainConfig(**json.loads(ckpt["train_config"]))
    else:
        model_cfg = model_config or preset(cfg.model)
    cfg = dataclasses.replace(cfg, **(overrides or {}))
    pieces = load_split(dataset, "train")
    if not pieces:
        raise LiveSynthError(f"{dataset}: no training pieces in {Path(dataset) / 'train'}")
    heldout = load_split(dataset, "validation")[:8]
    trainer = VocoderTrainer(model_cfg, cfg, pieces, device)
    seconds_before = 0.0
    if ckpt is not None:
        trainer.load(ckpt)
        seconds_before = float(ckpt.get("seconds", 0.0))
    elif cfg.init:
        trainer.init_from(cfg.init)
    start = last_save = last_log = time.monotonic()
    deadline, steps_at_log = start + minutes * 60, trainer.step_count
    sums: dict[str, float] = {}
    while time.monotonic() < deadline and (max_steps is None or trainer.step_count < max_steps):
        parts = trainer.step()
        for key, value in parts.items():
            sums[key] = sums.get(key, 0.0) + value
        step = trainer.step_count
        if step % cfg.log_every == 0 or step == 1:
            now, count = time.monotonic(), step - steps_at_log
            row = {"step": step, "seconds": round(seconds_before + now - start, 1), "lr": f"{lr_at(step - 1, cfg):.3g}",
                   **{k: round(v / count, 5) for k, v in sums.items()},
                   "steps_per_s": round(count / max(now - last_log, 1e-9), 3), "valid_mel_l1": "",
                   "valid_mel_l1_loud": ""}
            if heldout and (step % cfg.valid_every == 0 or step == 1):
                valid = reanalysis_error(trainer.model, heldout)
                row["valid_mel_l1"] = round(valid["mel_l1"], 4)
                row["valid_mel_l1_loud"] = round(valid["mel_l1_loud"], 4)
            append_csv_row(out / LOG, {k: row.get(k, "") for k in LOG_FIELDS})
            if progress:
                progress(row)
            sums, steps_at_log, last_log = {}, step, time.monotonic()
        if time.monotonic() - last_save > cfg.save_every_s:
            seconds = seconds_before + time.monotonic() - start
            _save(out, trainer.model, trainer.opt, step, cfg, trainer.sampler, seconds, trainer.gan_state())
            last_save = time.monotonic()
    _save(out, trainer.model, trainer.opt, trainer.step_count, cfg, trainer.sampler,
          seconds_before + time.monotonic() - start, trainer.gan_state())
    if (out / LOG).exists():
        plot_losses(out)
    return trainer.step_count


def export(out: Path, target: Path, description: str = "") -> Path:
    """Write the run's weights from `out/ckpt.pt` as compact fp16 vocoder files (what ships in the package)."""
    ckpt = load_checkpoint(out)
    if ckpt is None:
        raise CheckpointError(f"{Path(out) / CKPT}: missing file (train first)")
    cfg = VocoderConfig.from_dict(json.loads(ckpt["model_config"]), str(Path(out) / CKPT))
    text = description or f"trained by live-synth tools/train_vocoder.py, {ckpt['step']} steps"
    model = StreamingVocoder(dataclasses.replace(cfg, description=text))
    model.load_state_dict(ckpt["model"])
    return save_vocoder(model, target, fp16=True)
