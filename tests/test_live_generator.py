"""The live generator: continuation equals the offline render, inpainting holds committed frames, caching works."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from engines.torch_engine import TorchEngine
from live_synth.errors import LiveSynthError
from live_synth.window_stream import LiveGenerator, LivePolicy
from live_synth.midi import Note, NoteSequence
from live_synth.model.config import preset
from live_synth.model.network import SpectrogramDiffusion
from live_synth.render import render_mel, song_windows
from live_synth.sampling.samplers import make_sampler, sample

CFG = dataclasses.replace(preset("tiny"), target_length=16, context_length=12, max_tokens=64, pianoroll=True,
                          num_velocity_bins=16, slakh_programs=False)


def model(cfg=CFG):
    torch.manual_seed(0)
    return SpectrogramDiffusion(cfg).eval()


def song() -> NoteSequence:
    return NoteSequence.from_notes([Note(pitch=60 + i, velocity=40 + 10 * i, start=0.15 * i, end=0.15 * i + 0.4,
                                         program=8 * i) for i in range(8)])


def test_continuation_with_hop_equal_to_the_window_equals_the_offline_render():
    """Fed a whole MIDI file (every event known before its window is generated), the live path produces the same
    frames as `render` with the same window policy, sampler and seed."""
    ns, m = song(), model()
    windows = song_windows(ns, CFG)
    offline = render_mel(TorchEngine(m), windows.segments, make_sampler("ddim", 3),
                         generator=torch.Generator().manual_seed(5), rolls=windows.rolls)
    live = LiveGenerator(TorchEngine(m), LivePolicy(hop=16, steps=3, sampler="ddim"), seed=5)
    frames = np.concatenate([live.tick(ns)[0] for _ in windows.segments])
    np.testing.assert_allclose(frames, offline, atol=1e-5)


def test_small_hops_commit_hop_frames_per_tick_and_keep_memory_bounded():
    live = LiveGenerator(TorchEngine(model()), LivePolicy(hop=5, steps=1, sampler="ddim"), seed=0)
    for k in range(30):
        frames, report = live.tick(song())
        assert frames.shape == (5, 128) and report.frame == 5 * k and np.isfinite(frames).all()
    assert live.frame == 150 and live.committed.shape[0] <= 2 * (16 + 12)


def test_inpainting_holds_known_frames_exactly():
    gen = torch.Generator().manual_seed(0)
    x0 = torch.rand(1, 16, 128, generator=gen) * 2 - 1
    mask = torch.zeros(1, 16, 1, dtype=torch.bool)
    mask[0, :10] = True
    out = sample(make_sampler("dpmpp", 4), lambda x, tau: torch.zeros_like(x), (1, 16, 128), gen, known=(x0, mask))
    assert torch.equal(out[0, :10], x0[0, :10])
    assert not torch.equal(out[0, 10:], x0[0, 10:])


def test_inpaint_strategy_runs_the_published_geometry():
    cfg = dataclasses.replace(preset("tiny"), target_length=32, context_length=32)
    live = LiveGenerator(TorchEngine(model(cfg)), LivePolicy(hop=8, steps=2, strategy="inpaint"), seed=0)
    for _ in range(6):
        frames, _ = live.tick(song())
        assert frames.shape == (8, 128)
    assert live.frame == 48 and live.horizon_s() == pytest.approx((48 + 8) / 50)


def test_unchanged_tokens_reuse_the_notes_encoding():
    live = LiveGenerator(TorchEngine(model()), LivePolicy(hop=4, steps=1), seed=0)
    silence = NoteSequence.from_notes([])
    reports = [live.tick(silence)[1] for _ in range(3)]
    assert [r.cache_hit for r in reports] == [False, True, True]


def test_bad_policy_is_a_one_line_error():
    with pytest.raises(LiveSynthError, match="hop"):
        LiveGenerator(TorchEngine(model()), LivePolicy(hop=17))
    with pytest.raises(LiveSynthError, match="strategy"):
        LiveGenerator(TorchEngine(model()), LivePolicy(strategy="magic"))


def test_live_level_tool_runs_the_worker_on_a_virtual_clock(tmp_path, capsys):
    import sys
    from pathlib import Path

    from live_synth.model.checkpoint import save_model

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
    import live_level

    save_model(model(dataclasses.replace(CFG, prediction="v", roll_prior=True, roll_pitch_shared=True)),
               tmp_path / "m")
    png = tmp_path / "levels.png"
    assert live_level.main(["--model", str(tmp_path / "m"), "--hops", "16", "4", "--png", str(png)]) == 0
    out = capsys.readouterr().out
    runs = [line.split() for line in out.splitlines() if line.startswith("m ")]
    assert [r[1] for r in runs] == ["offline", "live", "live"] and [r[3] for r in runs[1:]] == ["16", "4"]
    assert runs[0][-4:] == ["1.00", "1.00", "1.00", "+0.00"]
    assert all(float(v) > 0 for r in runs for v in (r[2:5] if r[1] == "offline" else r[4:7])), "all made sound"
    assert png.stat().st_size > 5000
    assert live_level.main(["--model", str(tmp_path / "missing")]) == 2
    assert "live_level: error" in capsys.readouterr().err
    # the causal family: one live run, rolled back into, at the offline level (the same frame loop)
    from live_synth.model.causal import CAUSAL_PRESETS, CausalModel
    from live_synth.model.checkpoint import save_causal_model

    save_causal_model(CausalModel(CAUSAL_PRESETS["causal-tiny"], seed=1), tmp_path / "c")
    assert live_level.main(["--model", str(tmp_path / "c")]) == 0
    runs = [line.split() for line in capsys.readouterr().out.splitlines() if line.startswith("c ")]
    assert [r[1] for r in runs] == ["offline", "live"] and runs[1][11:13] == ["rollbacks", "13,"]
    assert runs[1][-1] == "0"  # no late events
    # ... at the offline level: mean energy and the notes' level within 10% / 1 dB of offline (measured 0.98, -0.22 dB)
    mean_ratio, notes_db = float(runs[1][7]), float(runs[1][10])
    assert 0.9 <= mean_ratio <= 1.1 and abs(notes_db) <= 1.0, runs[1]
