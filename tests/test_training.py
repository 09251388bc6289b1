"""A smoke run of the diffusion training loop: it trains, saves, resumes and exports (never a real training run)."""

from __future__ import annotations

import csv
import dataclasses
import math
import sys
from pathlib import Path

import numpy as np
import torch

from live_synth.model.checkpoint import load_model
from live_synth.model.config import preset
from live_synth.training.trainer import CKPT, LOG, TrainConfig, WindowSampler, export, train

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import train as train_tool  # noqa: E402

MODEL = dataclasses.replace(preset("tiny"), target_length=16, context_length=16, max_tokens=64, pianoroll=True,
                            num_velocity_bins=16, slakh_programs=False)


def write_piece(path: Path, seconds: float, pitch: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    frames = int(seconds * 50)
    # A fixed spectral shape plus a little noise: learnable in a few dozen steps (the toy problem below).
    shape = -4 + 3 * np.cos(np.arange(128) / 10)
    mel = (shape + rng.normal(0, 0.1, (frames, 128))).astype(np.float16)
    notes = np.array([[0.1 * i, 0.1 * i + 0.3, pitch + i % 5, 90, 0] for i in range(int(seconds * 8))], np.float32)
    np.savez(path, name=path.stem, mel=mel, notes=notes, is_drum=np.zeros(len(notes), bool))


def make_dataset(root: Path) -> Path:
    (root / "train").mkdir(parents=True)
    (root / "heldout").mkdir()
    write_piece(root / "train" / "00000.npz", 3.0, 60, 0)
    write_piece(root / "train" / "00001.npz", 2.0, 48, 1)
    (root / "heldout" / "00002.npz").write_bytes(b"never read: a corrupt file here proves it")
    return root


def test_window_batches_have_the_model_geometry(tmp_path):
    data = WindowSampler(make_dataset(tmp_path / "ds"), MODEL)
    batch = data.batch(np.random.default_rng(0), 8)
    assert batch["target"].shape == (8, 16, 128) and batch["context"].shape == (8, 16, 128)
    assert batch["roll"].shape[:2] == (8, 16) and batch["tokens"].shape[0] == 8
    assert batch["target"].min() >= -1 and batch["target"].max() <= 1
    lengths = batch["mask"].sum(1)
    assert (batch["mask"][:, 1:] <= batch["mask"][:, :-1]).all(), "context frames are left-aligned"
    assert lengths.min() < 16 or lengths.max() <= 16


def test_train_resume_and_export(tmp_path):
    ds, run = make_dataset(tmp_path / "ds"), tmp_path / "run"
    cfg = TrainConfig(batch_size=4, warmup_steps=2, log_every=1, probe_every=3, lr=1e-3)
    assert train(ds, run, cfg, minutes=2, max_steps=6, model_config=MODEL) == 6
    rows = list(csv.DictReader(open(run / LOG)))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4, 5, 6]
    assert all(math.isfinite(float(r["loss"])) for r in rows)
    assert rows[2]["probe_cond"] and rows[2]["probe_uncond"]
    first = torch.load(run / CKPT, weights_only=True)["model"]
    assert train(ds, run, cfg, minutes=2, max_steps=9) == 9  # resumes at 6, keeps its model config
    assert not torch.equal(first["decoder.output_proj.weight"],
                           torch.load(run / CKPT, weights_only=True)["model"]["decoder.output_proj.weight"])
    shipped = export(run, tmp_path / "shipped")
    loaded = load_model(shipped)
    assert loaded.model.config.pianoroll and loaded.model.config.target_length == 16
    assert (shipped / "model.safetensors").stat().st_size < 2.2 * sum(
        t.numel() for t in loaded.model.state_dict().values())  # fp16


def test_loss_falls_on_a_learnable_toy_problem(tmp_path):
    ds, run = make_dataset(tmp_path / "ds"), tmp_path / "run"
    cfg = TrainConfig(batch_size=8, warmup_steps=5, log_every=1, probe_every=1000, lr=3e-3, cfg_dropout=0.0)
    train(ds, run, cfg, minutes=2, max_steps=30, model_config=MODEL)
    losses = [float(r["loss"]) for r in csv.DictReader(open(run / LOG))]
    # From random outputs (~0.95) toward E|eps| = 0.798, the loss of predicting zero noise: the gradient path works.
    # Beating that floor needs the model to learn x0, i.e. a real training run (measured: 0.906 -> 0.805 here).
    assert np.mean(losses[-6:]) < 0.9 * np.mean(losses[:4])


def test_train_tool_cli(tmp_path, capsys):
    ds, run = make_dataset(tmp_path / "ds"), tmp_path / "run"
    assert train_tool.main([str(ds), "--out", str(run), "--max-steps", "2", "--model", "tiny",
                            "--batch-size", "2", "--log-every", "1"]) == 0
    assert (run / "loss.png").stat().st_size > 1000
    assert train_tool.main([str(tmp_path / "empty"), "--out", str(tmp_path / "r2"), "--max-steps", "1"]) == 2
    assert "no training pieces" in capsys.readouterr().err


def test_eps_x0_weighting_upweights_high_noise_only(tmp_path):
    import pytest

    from live_synth.errors import LiveSynthError
    from live_synth.model.network import SpectrogramDiffusion
    from live_synth.training.trainer import cosine_alpha_sigma, diffusion_loss

    data = WindowSampler(make_dataset(tmp_path / "ds"), MODEL)
    batch = data.batch(np.random.default_rng(0), 4)
    model = SpectrogramDiffusion(MODEL).eval()
    keep = torch.ones(4, dtype=torch.bool)
    noise = torch.randn(batch["target"].shape, generator=torch.Generator().manual_seed(0))
    for tau, expected_weight in [(0.1, 1.0), (0.99, 5.0)]:
        t = torch.full((4,), tau)
        alpha, sigma = cosine_alpha_sigma(t)
        with torch.no_grad():
            plain = diffusion_loss(model, batch, None, keep, t, noise)
            weighted = diffusion_loss(model, batch, None, keep, t, noise, weighting="eps-x0")
        assert float(weighted / plain) == pytest.approx(min(max(float(sigma[0] / alpha[0]), 1.0), 5.0), rel=1e-5)
        assert float(weighted / plain) == pytest.approx(expected_weight, rel=0.01 if tau > 0.5 else 1e-5)
    with pytest.raises(LiveSynthError, match="unknown loss weighting"):
        diffusion_loss(model, batch, None, keep, t, noise, weighting="snr")


def test_pitch_shared_roll_projection_sees_a_pitch_on_any_instrument():
    from live_synth.midi.pianoroll import N_PITCHES
    from live_synth.model.network import SpectrogramDiffusion

    cfg = dataclasses.replace(MODEL, roll_pitch_shared=True)
    decoder = SpectrogramDiffusion(cfg).decoder
    torch.nn.init.zeros_(decoder.roll_proj.weight)  # only the shared projection speaks
    rolls = torch.zeros(2, 16, decoder.roll_proj.in_features)
    rolls[0, 3, (0 * N_PITCHES + 60) * 2 + 1] = 1.0  # pitch 60 active on a piano (family 0)
    rolls[1, 3, (7 * N_PITCHES + 60) * 2 + 1] = 1.0  # pitch 60 active on brass (family 7)
    hidden, mask = torch.zeros(2, 4, cfg.d_model), torch.ones(2, 4, dtype=torch.bool)
    memory = decoder.memory([(hidden, mask)], rolls)
    assert memory.frame_bias[0, 3].abs().sum() > 0
    torch.testing.assert_close(memory.frame_bias[0], memory.frame_bias[1])


V_MODEL = dataclasses.replace(MODEL, roll_pitch_shared=True, prediction="v", roll_prior=True)


def test_v_model_samplers_recover_x0_exactly_even_at_pure_noise_and_in_bf16(tmp_path):
    """Given the exact v, every few-step sampler's first x̂0 = alpha z - sigma v is the clean sample, at tau = 1 too
    (an ε round trip would divide fp32 rounding by alpha = 4.5e-5) and from a bf16 v; the training loss is 0."""
    from live_synth.model.network import SpectrogramDiffusion
    from live_synth.sampling.samplers import make_sampler, sample
    from live_synth.sampling.schedules import cosine_alpha_sigma
    from live_synth.training.trainer import diffusion_loss

    batch = WindowSampler(make_dataset(tmp_path / "ds"), V_MODEL).batch(np.random.default_rng(0), 4)
    x0 = batch["target"]
    for name in ("ddim", "dpmpp", "ancestral"):
        for dtype, bound in ((torch.float32, 1e-5), (torch.bfloat16, 2e-2)):
            def exact_v(z, tau):
                alpha, sigma = (a[:, None, None] for a in cosine_alpha_sigma(torch.full((4,), tau)))
                noise = (z - alpha * x0) / sigma
                return (alpha * noise - sigma * x0).to(dtype).float()

            out = sample(make_sampler(name, 1), exact_v, x0.shape, torch.Generator().manual_seed(0), prediction="v")
            assert (out - x0).abs().max() < bound, (name, dtype)
    model = SpectrogramDiffusion(V_MODEL).eval()
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
    t = torch.full((4,), 0.7)
    alpha, sigma = (a[:, None, None] for a in cosine_alpha_sigma(t))
    model.decoder.forward = lambda z, tau, memory: alpha * noise - sigma * x0
    with torch.no_grad():
        assert float(diffusion_loss(model, batch, None, torch.ones(4, dtype=torch.bool), t, noise)) < 1e-6


def test_ddpm_parity_sampler_refuses_v_models():
    import pytest

    from live_synth.errors import LiveSynthError
    from live_synth.sampling.samplers import make_sampler, sample

    with pytest.raises(LiveSynthError, match="ε-models"):
        sample(make_sampler("ddpm", 2), lambda z, tau: z, (1, 4, 128), None, prediction="v")


def test_roll_prior_starts_silent_learns_fastest_and_needs_a_v_model(tmp_path):
    import pytest

    from live_synth.errors import CheckpointError
    from live_synth.model.network import SpectrogramDiffusion

    with pytest.raises(CheckpointError, match="roll_prior needs"):
        dataclasses.replace(MODEL, roll_prior=True)
    model = SpectrogramDiffusion(V_MODEL)
    assert model.decoder.roll_prior.weight.abs().sum() == 0 and model.decoder.roll_prior.bias.abs().sum() == 0
    # A v-run may start from an ε-run's weights: the prior's zeros are the only thing it adds.
    data = make_dataset(tmp_path / "ds")
    train(data, tmp_path / "eps", TrainConfig(batch_size=2, log_every=1, probe_every=2), max_steps=2,
          model_config=dataclasses.replace(MODEL, roll_pitch_shared=True))
    train(data, tmp_path / "v", TrainConfig(batch_size=2, lr=1e-3, warmup_steps=1, log_every=1, probe_every=2,
                                            init=str(tmp_path / "eps" / CKPT)), max_steps=3, model_config=V_MODEL)
    ckpt = torch.load(tmp_path / "v" / CKPT, weights_only=True)
    assert ckpt["model"]["decoder.roll_prior.weight"].abs().sum() > 0
    assert [g["lr_scale"] for g in ckpt["optimizer"]["param_groups"]] == [1.0, 10.0]


def test_x0_probe_tool_plots_the_three_conditionings(tmp_path, capsys):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
    import x0_probe

    data = make_dataset(tmp_path / "ds")
    train(data, tmp_path / "run", TrainConfig(batch_size=2, log_every=1, probe_every=2), max_steps=1,
          model_config=V_MODEL)
    export(tmp_path / "run", tmp_path / "model")
    out = tmp_path / "probe.png"
    assert x0_probe.main(["--model", str(tmp_path / "model"), "--piece", str(data / "train" / "00000.npz"),
                          "--out", str(out)]) == 0
    assert out.stat().st_size > 1000 and "notes only" in capsys.readouterr().out
    assert x0_probe.main(["--model", str(tmp_path / "model"), "--piece", str(tmp_path / "none.npz")]) == 2
    assert "x0_probe: error" in capsys.readouterr().err


def test_onset_aligned_windows_start_with_a_note_onset_as_live_notes_do(tmp_path):
    from live_synth.midi.pianoroll import DRUM_OFFSET, ONSET

    cfg = dataclasses.replace(MODEL, roll_pitch_shared=True)
    ds = make_dataset(tmp_path / "ds")
    aligned = WindowSampler(ds, cfg, onset_aligned=1.0).batch(np.random.default_rng(0), 16)["roll"]
    onset_at_0 = aligned[:, 0, :DRUM_OFFSET].reshape(16, -1, 2)[:, :, ONSET].amax(dim=1) > 0
    assert bool(onset_at_0.all())
    plain = WindowSampler(ds, cfg).batch(np.random.default_rng(0), 16)["roll"]
    assert not bool((plain[:, 0, :DRUM_OFFSET].reshape(16, -1, 2)[:, :, ONSET].amax(dim=1) > 0).all())


def test_rollout_context_is_what_the_live_generator_commits(tmp_path):
    """A rollout example's context is made exactly as `play` makes it: same windows, notes, context and noise give
    the frames LiveGenerator commits tick by tick."""
    from engines.torch_engine import TorchEngine
    from live_synth.audio.features import scale_features
    from live_synth.window_stream import LiveGenerator, LivePolicy
    from live_synth.model.network import SpectrogramDiffusion
    from live_synth.training.trainer import read_shard, rollout_context

    ds = make_dataset(tmp_path / "ds")
    data = WindowSampler(ds, V_MODEL, rollout=1.0, rollout_hop=5)  # 16 frames: windows keep 5, 5, 5, 1
    rng = np.random.default_rng(3)
    while True:
        batch = data.batch(rng, 1)
        if data.pending and data.pending[0].span == 16 and len(data.pending[0].history):
            break
    job = data.pending[0]
    assert len(job.tokens) == 4 and batch["mask"].sum() == 0, "the context is left to the rollout"
    model = SpectrogramDiffusion(V_MODEL, seed=0)
    with torch.no_grad():
        model.decoder.roll_prior.weight.normal_(0, 0.05)  # a prior that speaks, so the roll matters
    rollout_context(model, data.pending, batch, 1, torch.Generator().manual_seed(7), torch.device("cpu"))
    assert model.training, "training mode is restored"
    assert batch["mask"].all()

    live = LiveGenerator(TorchEngine(model), LivePolicy(hop=5, steps=1, sampler="ddim"), seed=7)
    live.committed = torch.from_numpy(job.history)
    live.dropped = job.frame - job.span - len(job.history)
    _, notes = read_shard(sorted((ds / "train").glob("*.npz"))[job.piece])
    live.policy = LivePolicy(hop=5, steps=1, sampler="ddim")
    ticks = [live.tick(notes)[0] for _ in range(3)]
    live.policy = LivePolicy(hop=1, steps=1, sampler="ddim")
    ticks.append(live.tick(notes)[0])
    expected = scale_features(torch.from_numpy(np.concatenate(ticks)), clip=True)
    assert expected.shape == (16, 128)
    torch.testing.assert_close(batch["context"][0], expected, atol=1e-4, rtol=0)
    assert float(expected.std()) > 0.01


def test_training_with_rollout_contexts_runs_and_resumes(tmp_path):
    ds, run = make_dataset(tmp_path / "ds"), tmp_path / "run"
    cfg = TrainConfig(batch_size=4, warmup_steps=2, log_every=1, probe_every=100, rollout_fraction=0.5,
                      rollout_hop=4, high_noise_fraction=0.5)
    assert train(ds, run, cfg, minutes=2, max_steps=3, model_config=V_MODEL) == 3
    assert train(ds, run, TrainConfig(), minutes=2, max_steps=4) == 4  # resumed: the run's own config
    assert torch.load(run / CKPT, weights_only=True)["train_config"]["rollout_fraction"] == 0.5
