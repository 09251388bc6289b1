"""Training loop for the project's own diffusion models (issue #3), CPU or CUDA, resumable in short chunks.

What one step does (spec §4.1, with the changes training-notes.md asks for):
- random windows from the training split: a target of `target_length` frames, a context of a random length
  0..`context_length` of the ground-truth frames before it (left-aligned, masked, terminal-relative positions),
  the window's tokens (`EventIndex.window`) and, for `pianoroll` models, its piano roll;
- continuous cosine log-SNR schedule, tau ~ U[0, 1), z = alpha x0 + sigma eps, the decoder predicts eps, L1 loss;
- classifier-free-guidance dropout: with probability `cfg_dropout` an example loses all its conditioning at once
  (encodings zeroed and masked, roll zeroed), exactly as `TorchEngine.encode(guided=True)` builds the
  unconditional branch at inference;
- AdamW with linear warm-up, gradient clipping, bf16 autocast (CUDA, and CPU: 1.4x faster per step than fp32 on
  this 2-core EPYC with avx512_bf16, measured with tools/train.py; `precision="fp32"` turns it off).

A probe batch, fixed at the start, measures every `probe_every` steps the loss with and without conditioning for the
same noise: a model that ignores the notes has `uncond / cond` ≈ 1 (training-notes.md saw 1.005–1.04).

Chunks: `train(..., minutes=M)` stops after M minutes and saves `ckpt.pt` (weights, optimizer, step, RNG states);
calling it again with the same `out` folder resumes. The data stream restarts from a seed derived from the step, so
a resumed run is deterministic but not the very stream an uninterrupted run would have seen.
"""

from __future__ import annotations

import csv
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from live_synth.audio.features import scale_features, unscale_features
from live_synth.constants import LOG_MEL_MIN, N_MELS
from live_synth.errors import LiveSynthError
from live_synth.midi import Note, NoteSequence
from live_synth.midi.pianoroll import ROLL_FEATURES, note_arrays, pianoroll
from live_synth.midi.tokenize import EventIndex
from live_synth.model.checkpoint import save_model
from live_synth.model.config import ModelConfig, preset
from live_synth.model.network import SpectrogramDiffusion
from live_synth.render import context_window, tokenizer_config
from live_synth.sampling.samplers import make_sampler, sample
from live_synth.sampling.schedules import cosine_alpha_sigma
from live_synth.training.loop import LoopSettings, TrainStep, atomic_torch_save, run_loop

CKPT = "ckpt.pt"
PRIOR = "decoder.roll_prior."  # parameter-name prefix of the roll prior (own learning rate; may be new on --init)
LOG = "loss.csv"


@dataclass(frozen=True)
class TrainConfig:
    model: str = "live"  # a preset name; the run's model config is stored in the checkpoint
    batch_size: int = 32
    lr: float = 3e-4
    warmup_steps: int = 500
    weight_decay: float = 0.01
    cfg_dropout: float = 0.1
    # "eps": plain L1 on ε (spec). "eps-x0": the same, weighted by max(1, min(σ/α, 5)): an x0-error weighting at
    # high noise, where the notes decide the result and plain ε-loss barely rewards using them (training-notes.md).
    loss_weighting: str = "eps"
    grad_clip: float = 1.0
    seed: int = 0
    log_every: int = 25
    probe_every: int = 250
    save_every_s: float = 120.0
    # Fraction of each batch whose noise time is drawn from [0.9, 1) instead of [0, 1): the 1-step sampler asks the
    # model only at tau = 1, where the best v ignores the input noise; uniform tau puts 2 % of examples above 0.98.
    high_noise_fraction: float = 0.0
    # Fraction of windows that start exactly at a note's onset. Live, every new note is stamped at the committed end,
    # so it starts at the first frame of its window, right after context; random windows rarely show that case.
    onset_aligned_fraction: float = 0.0
    # Fraction of examples whose context is the model's own output, made as the live engine makes it: the context
    # span is generated window by window (`rollout_hop` frames committed per window, `rollout_steps` sampling
    # steps, each window's context the frames committed before it). Live, every tick's context is what the model
    # made, not the recording; trained only on recordings, the model copies the level of its own blurred output
    # and held notes fade tick by tick (MODEL_CARD.md, "live behaviour").
    rollout_fraction: float = 0.0
    rollout_hop: int = 16
    rollout_steps: int = 1
    # A new run may start from another run's weights (its ckpt.pt; same shapes), e.g. a v-model from an ε-run.
    init: str = ""


@dataclass
class Rollout:
    """What generating an example's context needs: the recorded frames before the generated span (unscaled log-mel,
    up to `context_length`), and per window of the span its start frame's tokens and piano roll."""
    index: int  # the example in the batch
    piece: int
    frame: int  # the example's first target frame (the generated span ends here)
    history: np.ndarray  # [H, 128]
    span: int  # frames to generate (the context the example will get)
    hop: int  # frames kept per generated window
    tokens: list[np.ndarray]
    rolls: list[np.ndarray]


@dataclass
class Piece:
    mel: np.ndarray  # float16 [T, 128] natural-log mel
    index: EventIndex
    notes: np.ndarray  # note_arrays(...) for the piano roll


def read_shard(path: Path) -> tuple[np.ndarray, NoteSequence]:
    """A dataset shard's mel [T, 128] float16 and notes (keys: mel, notes [K, 5] start/end/pitch/velocity/program,
    is_drum)."""
    with np.load(path, allow_pickle=False) as data:
        mel, raw, drums = data["mel"], data["notes"], data["is_drum"]
    notes = [Note(pitch=int(p), velocity=int(v), start=float(s), end=float(e), program=int(g), is_drum=bool(d))
             for (s, e, p, v, g), d in zip(raw, drums)]
    return mel, NoteSequence.from_notes(notes)


def read_train_piece(path: Path, model_cfg: ModelConfig) -> Piece:
    mel, ns = read_shard(path)
    return Piece(mel, EventIndex(ns, tokenizer_config(model_cfg)), note_arrays(ns))


class WindowSampler:
    """Random training windows from `DATASET/train/*.npz` (the held-out split is never opened)."""

    def __init__(self, dataset: Path, model_cfg: ModelConfig, onset_aligned: float = 0.0, rollout: float = 0.0,
                 rollout_hop: int = 16):
        files = sorted((Path(dataset) / "train").glob("*.npz"))
        if not files:
            raise LiveSynthError(f"{dataset}: no training pieces in {Path(dataset) / 'train'}")
        self.cfg = model_cfg
        self.onset_aligned = onset_aligned
        self.rollout, self.rollout_hop = rollout, rollout_hop
        self.pending: list[Rollout] = []  # the last batch's examples whose context the model must generate
        self.pieces = [read_train_piece(f, model_cfg) for f in files]
        lengths = np.array([max(len(p.mel) - 1, 1) for p in self.pieces], np.float64)
        self.weights = lengths / lengths.sum()  # every frame equally likely

    def batch(self, rng: np.random.Generator, size: int) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        L, S = cfg.target_length, cfg.context_length
        target = np.full((size, L, N_MELS), LOG_MEL_MIN, np.float32)  # past the end: silence (ORIG pads so too)
        context = np.zeros((size, S, N_MELS), np.float32)
        mask = np.zeros((size, S), bool)
        rolls = np.zeros((size, L, ROLL_FEATURES if cfg.pianoroll else 0), np.float32)
        token_lists = []
        self.pending = []
        for b, k in enumerate(rng.choice(len(self.pieces), size=size, p=self.weights)):
            piece = self.pieces[k]
            starts = max(len(piece.mel) - L // 2, 1)  # window starts 0 .. starts - 1
            t0 = int(rng.integers(0, starts))
            if len(piece.notes) and rng.random() < self.onset_aligned:  # the live case: a note starts at frame 0
                t0 = int(min(piece.notes[rng.integers(len(piece.notes)), 0], starts - 1))
            chunk = piece.mel[t0 : t0 + L]
            target[b, : len(chunk)] = chunk
            c = min(int(rng.integers(0, S + 1)), t0)
            if self.rollout and t0 and rng.random() < self.rollout:  # live: always the last S frames, generated
                span = min(S, t0)
                starts_ = range(t0 - span, t0, self.rollout_hop)
                history = piece.mel[max(t0 - span - S, 0) : t0 - span].astype(np.float32)
                self.pending.append(Rollout(b, int(k), t0, history, span, self.rollout_hop,
                                            [piece.index.window(s, L)[0] for s in starts_],
                                            [pianoroll(piece.notes, s, L) for s in starts_] if cfg.pianoroll else []))
                c = 0  # filled in by rollout_context
            if c:
                context[b, :c] = piece.mel[t0 - c : t0]
                mask[b, :c] = True
            token_lists.append(piece.index.window(t0, L)[0])
            if cfg.pianoroll:
                rolls[b] = pianoroll(piece.notes, t0, L)
        out = {
            "target": scale_features(torch.from_numpy(target), clip=True),
            "context": scale_features(torch.from_numpy(context), clip=True),
            "mask": torch.from_numpy(mask),
            "tokens": pad_tokens(token_lists),
        }
        if cfg.pianoroll:
            out["roll"] = torch.from_numpy(rolls)
        return out


def pad_tokens(token_lists: list) -> torch.Tensor:
    """Token windows of different lengths as one batch [B, longest], zero-padded (0 = PAD, masked by the encoder)."""
    tokens = torch.zeros(len(token_lists), max(len(t) for t in token_lists), dtype=torch.int64)
    for b, t in enumerate(token_lists):
        tokens[b, : len(t)] = torch.as_tensor(np.asarray(t), dtype=torch.int64)
    return tokens


@torch.no_grad()
def rollout_context(model: SpectrogramDiffusion, pending: list[Rollout], batch: dict, steps: int,
                    gen: torch.Generator, device: torch.device) -> None:
    """Fill the context of the `pending` examples of `batch` with frames the model generates as LiveGenerator does
    (continuation: window at the next frame, the last `context_length` frames as context, `hop` frames kept), all
    pending examples batched together window by window. Eval mode (no dropout), as at inference."""
    if not pending:
        return
    cfg = model.config
    L, S = cfg.target_length, cfg.context_length
    was_training = model.training
    model.eval()
    sampler = make_sampler("ddim", steps)
    made = [torch.from_numpy(r.history) for r in pending]  # recorded history, then the generated frames
    for j in range(max(len(r.tokens) for r in pending)):
        live = [i for i, r in enumerate(pending) if j < len(r.tokens)]
        windows = [context_window(made[i], S) for i in live]
        context = scale_features(torch.cat([c for c, _ in windows]), clip=True).to(device)
        mask = torch.cat([m for _, m in windows]).to(device)
        tokens = pad_tokens([pending[i].tokens[j] for i in live]).to(device)
        roll = (torch.from_numpy(np.stack([pending[i].rolls[j] for i in live])).to(device) if cfg.pianoroll
                else None)
        memory = model.encode(tokens, context, mask, roll)

        def model_fn(x, tau):
            return model(x, torch.full((x.shape[0],), tau, device=device), memory).float()

        x = sample(sampler, model_fn, (len(live), L, N_MELS), gen, device=device,
                   prediction=cfg.prediction)
        frames = unscale_features(x.float().cpu())
        for row, i in enumerate(live):
            r = pending[i]
            keep = min(r.hop, r.span - j * r.hop)
            made[i] = torch.cat([made[i], frames[row, :keep]])
    for r, m in zip(pending, made):
        batch["context"][r.index, : r.span] = scale_features(m[-r.span :].to(device), clip=True)
        batch["mask"][r.index] = False
        batch["mask"][r.index, : r.span] = True
    model.train(was_training)


def diffusion_loss(model: SpectrogramDiffusion, batch: dict, gen: torch.Generator, keep: torch.Tensor,
                   tau: torch.Tensor | None = None, noise: torch.Tensor | None = None,
                   weighting: str = "eps") -> torch.Tensor:
    """L1 between the true and the predicted ε (or v, for v-models); `keep` [B] bool, False = this example's
    conditioning is dropped."""
    x0 = batch["target"]
    dev = x0.device
    if tau is None:
        tau = torch.rand(x0.shape[0], generator=gen, device=gen.device).to(dev)
    if noise is None:
        noise = torch.randn(x0.shape, generator=gen, device=gen.device).to(dev)
    alpha, sigma = cosine_alpha_sigma(tau)
    z = alpha[:, None, None] * x0 + sigma[:, None, None] * noise
    k = keep.to(dev)
    notes, notes_mask = model.notes_encoder(batch["tokens"])
    ctx, ctx_mask = model.context_encoder(batch["context"], batch["mask"])
    notes = notes * k[:, None, None]
    ctx = ctx * k[:, None, None]
    roll = batch["roll"] * k[:, None, None] if "roll" in batch else None
    memory = model.decoder.memory([(notes, notes_mask & k[:, None]), (ctx, ctx_mask & k[:, None])], roll)
    out = model(z, tau, memory).float()
    if model.config.prediction == "v":  # L1 on v = the x0 error / sigma: x0-like at high noise, ε-like at low
        if weighting != "eps":
            raise LiveSynthError(f"loss weighting {weighting!r} is for ε-models; a v-model trains on plain v")
        v = alpha[:, None, None] * noise - sigma[:, None, None] * x0
        return F.l1_loss(out, v)
    if weighting == "eps":
        return F.l1_loss(out, noise)
    if weighting != "eps-x0":
        raise LiveSynthError(f"unknown loss weighting {weighting!r} (eps, eps-x0)")
    weight = (sigma / alpha).clamp(1.0, 5.0)
    return ((out - noise).abs().mean(dim=(1, 2)) * weight).mean()


def to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def lr_at(step: int, cfg: TrainConfig) -> float:
    return cfg.lr * min(1.0, (step + 1) / max(cfg.warmup_steps, 1))


def _save(out: Path, model, opt, step: int, cfg: TrainConfig, gen: torch.Generator) -> None:
    atomic_torch_save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step,
                        "train_config": dataclasses.asdict(cfg), "model_config": model.config.to_json(),
                        "torch_rng": gen.get_state()}, out / CKPT)




@torch.no_grad()
def probe(model, batch: dict, device: torch.device, high_noise: bool = False) -> tuple[float, float]:
    """(loss with conditioning, loss without) on the fixed probe batch, same tau and noise for both; tau uniform,
    or with `high_noise` in [0.7, 1): where the notes must decide what the frames become."""
    model.eval()
    gen = torch.Generator().manual_seed(1234)
    n = batch["target"].shape[0]
    tau, noise = torch.rand(n, generator=gen), torch.randn(batch["target"].shape, generator=gen)
    if high_noise:
        tau = 0.7 + 0.3 * tau
    on = torch.ones(n, dtype=torch.bool)
    cond = diffusion_loss(model, batch, gen, on, tau.to(device), noise.to(device)).item()
    uncond = diffusion_loss(model, batch, gen, ~on, tau.to(device), noise.to(device)).item()
    model.train()
    return cond, uncond


def train(dataset: Path, out: Path, cfg: TrainConfig = TrainConfig(), minutes: float = 5.0,
          max_steps: int | None = None, device: str = "cpu", progress=None,
          model_config: ModelConfig | None = None, precision: str = "bf16") -> int:
    """Train (or resume) for `minutes` or until `max_steps`; returns the step reached. Saves to `out/ckpt.pt`.

    A new run uses `model_config` (default: the preset `cfg.model`); a resumed run uses what its checkpoint holds.
    """
    out.mkdir(parents=True, exist_ok=True)
    dev = torch.device(device)
    resume = torch.load(out / CKPT, map_location="cpu", weights_only=True) if (out / CKPT).exists() else None
    if resume:
        model_cfg = ModelConfig.from_dict(json.loads(resume["model_config"]))
    else:
        model_cfg = model_config or preset(cfg.model)
    if resume:
        cfg = TrainConfig(**resume["train_config"])
    torch.manual_seed(cfg.seed)
    model = SpectrogramDiffusion(model_cfg, seed=cfg.seed).to(dev)
    # The roll prior is a linear regression started at zero: it learns at 10x the rate of the transformer.
    prior = [p for n, p in model.named_parameters() if n.startswith(PRIOR)]
    rest = [p for n, p in model.named_parameters() if not n.startswith(PRIOR)]
    groups = [{"params": rest, "lr_scale": 1.0}] + ([{"params": prior, "lr_scale": 10.0}] if prior else [])
    opt = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.99))
    gen = torch.Generator(device=dev if dev.type == "cuda" else "cpu").manual_seed(cfg.seed)
    step = 0
    if not resume and cfg.init:
        state = torch.load(Path(cfg.init), map_location="cpu", weights_only=True)["model"]
        missing, unexpected = model.load_state_dict(state, strict=False)
        if unexpected or any(not k.startswith(PRIOR) for k in missing):
            raise LiveSynthError(f"{cfg.init}: weights do not fit this model (missing {missing}, "
                                 f"unexpected {unexpected})")
    if resume:
        model.load_state_dict(resume["model"])
        opt.load_state_dict(resume["optimizer"])
        step = resume["step"]
        gen.set_state(resume["torch_rng"])
    data = WindowSampler(dataset, model_cfg, cfg.onset_aligned_fraction, cfg.rollout_fraction, cfg.rollout_hop)
    rng = np.random.default_rng([cfg.seed, step])
    # The probe batch keeps its recorded contexts (its pending rollouts are not generated): fixed across the run.
    probe_batch = to_device(data.batch(np.random.default_rng([cfg.seed, 10**9]), min(cfg.batch_size, 64)), dev)
    if precision not in ("bf16", "fp32"):
        raise LiveSynthError(f"precision must be bf16 or fp32, not {precision!r}")
    autocast = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=precision == "bf16")

    class Step(TrainStep):
        def loss(self, step: int):
            batch = to_device(data.batch(rng, cfg.batch_size), dev)
            with autocast:
                rollout_context(model, data.pending, batch, cfg.rollout_steps, gen, dev)
            keep = torch.rand(cfg.batch_size, generator=gen, device=gen.device) >= cfg.cfg_dropout
            tau = torch.rand(cfg.batch_size, generator=gen, device=gen.device).to(dev)
            high = torch.arange(cfg.batch_size, device=dev) < round(cfg.high_noise_fraction * cfg.batch_size)
            tau = torch.where(high, 0.9 + 0.1 * tau, tau)
            with autocast:
                return diffusion_loss(model, batch, gen, keep, tau=tau, weighting=cfg.loss_weighting), {}

        def probe(self, step: int) -> dict:
            with autocast:
                cond, uncond = probe(model, probe_batch, dev)
                cond_hi, uncond_hi = probe(model, probe_batch, dev, high_noise=True)
            return {"probe_cond": round(cond, 5), "probe_uncond": round(uncond, 5),
                    "probe_cond_hi": round(cond_hi, 5), "probe_uncond_hi": round(uncond_hi, 5)}

        def save(self, step: int) -> None:
            _save(out, model, opt, step, cfg, gen)

    settings = LoopSettings(lambda step: lr_at(step, cfg), cfg.grad_clip, out / LOG, cfg.log_every, cfg.probe_every,
                            ("probe_cond", "probe_uncond", "probe_cond_hi", "probe_uncond_hi"), cfg.save_every_s)
    return run_loop(Step(), model, opt, settings, step, minutes, max_steps, progress=progress)


def export(out: Path, target: Path, description: str = "", default_steps: int = 0) -> Path:
    """Write the trained weights from `out/ckpt.pt` as a compact fp16 model folder (what ships in the package);
    `default_steps` records the step count the evaluation chose (ModelConfig.default_steps)."""
    ckpt = torch.load(out / CKPT, map_location="cpu", weights_only=True)
    cfg = ModelConfig.from_dict(json.loads(ckpt["model_config"]))
    cfg = dataclasses.replace(cfg, description=description or f"trained by live-synth, {ckpt['step']} steps",
                              default_steps=default_steps)
    model = SpectrogramDiffusion(cfg)
    model.load_state_dict(ckpt["model"])
    return save_model(model, target, fp16=True)


def plot_losses(out: Path) -> Path:
    """loss.csv → loss.png: training loss and the probe's loss with vs without conditioning (left), and their ratio,
    the "are the notes used" measurement (right; 1.0 = the notes change nothing)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = list(csv.DictReader(open(out / LOG)))
    steps = [int(r["step"]) for r in rows]
    fig = Figure(figsize=(11, 4))
    FigureCanvasAgg(fig)
    ax, ratio = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    ax.plot(steps, [float(r["loss"]) for r in rows], label="train loss (the run's weighting)", lw=0.8)
    probes = [(int(r["step"]), float(r["probe_cond"]), float(r["probe_uncond"])) for r in rows if r["probe_cond"]]
    if probes:
        ax.plot([p[0] for p in probes], [p[1] for p in probes], "o-", label="probe (L1 on ε), with notes")
        ax.plot([p[0] for p in probes], [p[2] for p in probes], "s--", label="probe, conditioning dropped")
        ratio.plot([p[0] for p in probes], [p[2] / p[1] for p in probes], "o-", label="all noise levels")
        high = [(int(r["step"]), float(r["probe_uncond_hi"]) / float(r["probe_cond_hi"])) for r in rows
                if r.get("probe_cond_hi")]
        if high:
            ratio.plot(*zip(*high), "s--", label="noise time 0.7-1")
        ratio.axhline(1.0, color="grey", lw=0.8)
        ratio.set_xlabel("step")
        ratio.set_ylabel("probe loss without / with notes")
        ratio.legend()
        ratio.grid(alpha=0.3)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "loss.png", dpi=100)
    return out / "loss.png"
