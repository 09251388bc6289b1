"""The training loop every trainer shares (window model, causal model, excited vocoder).

What differs between them is what a step computes (`TrainStep.loss`), what a probe or validation measures
(`TrainStep.probe`) and what a checkpoint holds (`TrainStep.save`); the loop around them is this one:

- runs until `minutes` have passed or `max_steps` is reached, from the step a resumed run stopped at;
- sets each parameter group's learning rate to `lr_at(step)` times the group's `lr_scale` (1 when it has none);
- one optimiser step: zero the gradients, backward, clip the gradient norm, step; then the EMA of the weights
  (`ema`, when the trainer keeps one: `ema = lerp(ema, weights, 1 - ema_decay)`);
- stops with an error when the loss is not finite;
- every `log_every` steps a row of the CSV log: step, seconds since the loop started, the loss, the step's own
  parts, the learning rate and the gradient norm, then the probe's fields (empty but on probe steps, so every row
  has the same columns); `progress(row)` gets it too;
- a checkpoint every `save_every_s` seconds and at the end, written atomically (`atomic_torch_save`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from live_synth.files import atomic_output
from live_synth.provenance import append_csv_row


def atomic_torch_save(obj, path: Path) -> None:
    """torch.save through `files.atomic_output`: a run killed while saving keeps its previous checkpoint."""
    with atomic_output(path) as handle:
        torch.save(obj, handle)


@dataclass
class LoopSettings:
    lr_at: Callable[[int], float]  # the schedule: step -> learning rate (before each group's lr_scale)
    grad_clip: float
    log: Path  # the CSV log
    log_every: int = 25
    probe_every: int = 250  # also on step 1
    probe_fields: tuple[str, ...] = ()  # the probe's columns (empty on rows without a probe)
    save_every_s: float = 120.0
    ema_decay: float = 0.999


class TrainStep:
    """What a trainer supplies to `run_loop`."""

    def loss(self, step: int) -> tuple[torch.Tensor, dict]:
        """The loss to minimise for one batch, and its parts for the log (floats)."""
        raise NotImplementedError

    def probe(self, step: int) -> dict:
        """Measurements on fixed held-out data (a subset of `LoopSettings.probe_fields`); {} for none."""
        return {}

    def save(self, step: int) -> None:
        """Write the checkpoint (with `atomic_torch_save`)."""
        raise NotImplementedError


def run_loop(trainer: TrainStep, model: torch.nn.Module, opt: torch.optim.Optimizer, settings: LoopSettings,
             step: int, minutes: float, max_steps: int | None = None, ema: torch.nn.Module | None = None,
             progress: Callable[[dict], None] | None = None) -> int:
    """Train from `step` for `minutes` or until `max_steps`; returns the step reached (saved)."""
    model.train()
    start = last_save = time.monotonic()
    deadline = start + minutes * 60
    while time.monotonic() < deadline and (max_steps is None or step < max_steps):
        for group in opt.param_groups:
            group["lr"] = settings.lr_at(step) * group.get("lr_scale", 1.0)
        loss, parts = trainer.loss(step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
        opt.step()
        if ema is not None:
            with torch.no_grad():
                for e, p in zip(ema.parameters(), model.parameters()):
                    e.lerp_(p, 1.0 - settings.ema_decay)
        step += 1
        value = loss.item()
        if not math.isfinite(value):
            raise RuntimeError(f"loss became {value} at step {step}")
        if step % settings.log_every == 0 or step == 1:
            row = {"step": step, "seconds": round(time.monotonic() - start, 2), "loss": round(value, 5),
                   **{k: round(float(v), 5) for k, v in parts.items()}, "lr": settings.lr_at(step),
                   "grad_norm": round(float(grad_norm), 4), **dict.fromkeys(settings.probe_fields, "")}
            if step % settings.probe_every == 0 or step == 1:
                row.update(trainer.probe(step))
                model.train()
            append_csv_row(settings.log, row)
            if progress:
                progress(row)
        if time.monotonic() - last_save > settings.save_every_s:
            trainer.save(step)
            last_save = time.monotonic()
    trainer.save(step)
    return step
