"""The causal family: frame features (what a frame may see), the model's streaming step against its parallel
training pass, the frame loop's rewind, weights on disk, and a smoke run of its training loop."""

from __future__ import annotations

import io
import json

import mido
import numpy as np
import pytest
import torch

from live_synth.causal_stream import CausalStream, frame_noise, render_events
from live_synth.errors import CheckpointError
from live_synth.midi import apply_sustain, read_midi
from live_synth.midi.events import NoteEvents
from live_synth.model import load_model
from live_synth.model.causal import CAUSAL_PRESETS, CausalModel
from live_synth.model.checkpoint import save_causal_model
from live_synth.model.frame_features import COL, FEATURES, RELEASE_FRAMES, frame_features

TINY = CAUSAL_PRESETS["causal-tiny"]


def events(*notes, controls=None) -> NoteEvents:
    """notes: (onset, release, pitch, velocity, program, is_drum, lane)"""
    return NoteEvents(np.array(notes, np.float64).reshape(-1, 7), controls or {})


def slot(feats: np.ndarray, t: int, pitch: float) -> np.ndarray | None:
    rows = [row for row in feats[t] if row[COL["valid"]] > 0 and abs(row[COL["pitch"]] - pitch) < 1.5]
    return rows[0] if rows else None


# -- what a frame may see ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("onset, ramp", [(0.100, 0.5), (0.105, 0.375), (0.1199, 0.0025)])
def test_a_note_is_seen_first_by_the_frame_whose_window_holds_its_onset(onset, ramp):
    # frame t's 40 ms window is [20 t, 20 t + 40) ms: an onset at 100-119.9 ms lies in frames 4 and 5, so frame 4 is
    # the first to see it (one frame of look-ahead), and frame 3 ([60, 100) ms) must not
    feats = frame_features(events((onset, 1.0, 60, 100, 0, 0, 0)), 0, 10)
    assert slot(feats, 3, 60) is None
    seen = slot(feats, 4, 60)
    assert seen is not None
    # the onset's place inside the window is kept (no rounding to the 20 ms grid): the part of frame 4's window
    # after the onset, (120 ms - onset) / 40 ms
    assert seen[COL["onset_ramp"]] == pytest.approx(ramp, abs=1e-5)
    assert slot(feats, 6, 60)[COL["onset_ramp"]] == 1.0


def test_release_tail_and_drums_stay_for_release_frames():
    feats = frame_features(events((0.0, 0.5, 60, 100, 0, 0, 0), (0.0, 0.0, 36, 100, 0, 1, 9)), 0, 200)
    held = slot(feats, 20, 60)
    assert held[COL["held"]] == 1 and held[COL["release_ramp"]] == 0
    released = slot(feats, 30, 60)
    assert released[COL["held"]] == 0 and released[COL["release_ramp"]] == 1
    assert slot(feats, 25 + RELEASE_FRAMES - 1, 60) is not None and slot(feats, 25 + RELEASE_FRAMES + 1, 60) is None
    drum = slot(feats, 10, 36)
    assert drum[COL["family"]] == 16 and drum[COL["held"]] == 0
    assert slot(feats, RELEASE_FRAMES + 1, 36) is None


def test_held_notes_win_slots_over_release_tails():
    many = [(0.01 * i, 0.02 + 0.01 * i, 40 + i, 80, 0, 0, 0) for i in range(40)]  # released at once
    held = (0.0, np.inf, 100, 80, 0, 0, 0)
    feats = frame_features(events(*many, held), 60, 1, slots=8)
    assert (feats[0, :, COL["valid"]] > 0).sum() == 8
    assert slot(feats, 0, 100) is not None


def midi_with_expression() -> bytes:
    midi = mido.MidiFile(ticks_per_beat=480)
    track = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=500_000)])
    for number, value in ((101, 0), (100, 0), (6, 12), (38, 0)):  # RPN 0: bend range 12 semitones
        track.append(mido.Message("control_change", control=number, value=value))
    track.append(mido.Message("note_on", note=60, velocity=100))
    track.append(mido.Message("pitchwheel", pitch=8191, time=480))  # 0.5 s: +12 semitones
    track.append(mido.Message("control_change", control=7, value=64, time=480))  # 1.0 s: volume 64
    track.append(mido.Message("control_change", control=1, value=127, time=0))
    track.append(mido.Message("note_off", note=60, velocity=0, time=480))
    midi.tracks.append(track)
    buffer = io.BytesIO()
    midi.save(file=buffer)
    return buffer.getvalue()


def test_bend_range_volume_and_mod_wheel_reach_the_features():
    ev = NoteEvents.from_sequence(apply_sustain(read_midi(midi_with_expression())))
    feats = frame_features(ev, 0, 70)
    before, bent, quiet = slot(feats, 10, 60), slot(feats, 30, 72), slot(feats, 60, 72)
    assert before[COL["pitch"]] == 60 and before[COL["gain_db"]] * 40 == pytest.approx(40 * np.log10(100 / 127))
    assert bent[COL["pitch"]] == pytest.approx(72, abs=0.01) and bent[COL["bend"]] == pytest.approx(1, abs=1e-3)
    assert quiet[COL["gain_db"]] * 40 == pytest.approx(40 * np.log10(64 / 127), abs=1e-4)  # -11.9 dB
    assert quiet[COL["mod"]] == 1.0 and before[COL["mod"]] == 0.0


# -- the model ------------------------------------------------------------------------------------------------


def test_streamed_steps_equal_the_parallel_training_pass():
    model = CausalModel(TINY, seed=3).eval()
    ev = events((0.05, 0.3, 60, 100, 0, 0, 0), (0.1, 0.35, 64, 80, 40, 0, 1), (0.2, 0.2, 38, 100, 0, 1, 2))
    T = 24
    slots = torch.from_numpy(frame_features(ev, 0, T))[None]
    prev = torch.rand(1, T, 128, generator=torch.Generator().manual_seed(0)) * 2 - 1
    level = torch.tensor([TINY.context_noise, 0.0]).expand(1, T, 2)
    with torch.no_grad():
        parallel, prior = model.teacher_forced(slots, prev, level)
        dense_notes, dense_prior = model.encode_notes(slots)
        assert torch.allclose(prior, dense_prior, atol=1e-6)  # training's sparse notes = the step's dense ones
        state, streamed = model.empty_state(1), []
        for t in range(T):
            c, state = model.backbone(model._input(dense_notes[:, t], dense_prior[:, t], prev[:, t],
                                                   level[:, t])[:, None], state)
            streamed.append(c[:, 0])
    assert torch.allclose(torch.stack(streamed, 1), parallel, atol=1e-5)


def test_a_rewound_stream_regenerates_the_same_frames_and_a_new_note_changes_them():
    model = CausalModel(TINY, seed=1).eval()
    ev = events((0.1, 0.5, 60, 100, 0, 0, 0))
    stream = CausalStream(model, steps=2, seed=7)
    first = stream.generate(ev, 20)
    stream.rewind(8)
    again = stream.generate(ev, 12)
    np.testing.assert_array_equal(again, first[8:])
    stream.rewind(8)
    other = stream.generate(events((0.1, 0.5, 60, 100, 0, 0, 0), (0.2, 0.5, 72, 120, 0, 0, 0)), 12)
    assert not np.allclose(other, first[8:])
    with pytest.raises(ValueError):
        stream.rewind(stream.frame + 1)
    # the offline loop is this same stream
    np.testing.assert_array_equal(render_events(model, ev, 20, steps=2, seed=7), first)


def test_frame_noise_depends_on_seed_and_frame_only():
    np.testing.assert_array_equal(frame_noise(3, np.array([5, 6]))[1], frame_noise(3, np.array([6]))[0])
    assert not np.allclose(frame_noise(3, np.array([5])), frame_noise(4, np.array([5])))


def test_chunked_render_matches_the_sequential_one_after_warm_up():
    model = CausalModel(TINY, seed=2).eval()
    ev = events(*[(0.3 * i, 0.3 * i + 0.2, 50 + i, 90, 0, 0, 0) for i in range(10)])
    one = render_events(model, ev, 150, steps=1, seed=0)
    four = render_events(model, ev, 150, steps=1, seed=0, chunks=3, warmup=40)
    assert one.shape == four.shape == (150, 128)
    assert np.abs(one - four).mean() < 0.5  # a random tiny model: close, not equal (each chunk warms up alone)


# -- weights on disk --------------------------------------------------------------------------------------------


def test_causal_weights_round_trip_and_bad_folders_are_one_line(tmp_path):
    model = CausalModel(TINY, seed=4)
    folder = save_causal_model(model, tmp_path / "m")
    loaded = load_model(folder)
    assert isinstance(loaded.model, CausalModel) and not loaded.random_weights
    for key, value in model.state_dict().items():
        assert torch.allclose(loaded.model.state_dict()[key], value.half().float())
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(dict(config, family="rnn")))
    with pytest.raises(CheckpointError, match="unknown model family 'rnn'"):
        load_model(folder)
    (folder / "config.json").write_text(json.dumps(dict(config, d_model=48)))
    with pytest.raises(CheckpointError, match="shape"):
        load_model(folder)


def test_causal_preset_loads_with_random_weights():
    loaded = load_model("causal-tiny")
    assert isinstance(loaded.model, CausalModel) and loaded.random_weights


# -- training -----------------------------------------------------------------------------------------------------


def test_training_smoke_run_learns_and_resumes(tmp_path):
    from live_synth.training.causal_trainer import CausalTrainConfig, CropSampler, TrainPiece, train

    rng = np.random.default_rng(0)
    notes = np.array([(0.5 * i, 0.5 * i + 0.3, 48 + 2 * i, 100, 0, 0, 0) for i in range(6)], np.float64)
    mel = np.full((200, 128), -11.5, np.float16)
    for on, off, pitch, *_ in notes:
        mel[int(on * 50) : int(off * 50), int(pitch)] = 1.0
    mel += rng.normal(0, 0.1, mel.shape).astype(np.float16)
    sampler = CropSampler(None, 48, 16, TINY.slots, [TrainPiece(mel, NoteEvents(notes))])
    cfg = CausalTrainConfig(model="causal-tiny", batch_size=4, crop=48, burn_in=16, log_every=1, probe_every=5,
                            save_every_s=1e9, lr=3e-3, warmup_steps=1)
    rows = []
    assert train(None, tmp_path, cfg, max_steps=6, sampler=sampler, progress=rows.append) == 6
    assert rows[-1]["prior_l1"] < rows[0]["prior_l1"]
    assert len(rows[-2]["lone_db"].split()) == 5
    assert train(None, tmp_path, cfg, max_steps=8, sampler=sampler) == 8  # resumed from ckpt.pt


def test_frame_loss_follows_level_and_brightness_and_the_prefetch_workers_draw_seeded_batches(tmp_path):
    from live_synth.training.causal_trainer import (CausalTrainConfig, CropSampler, PrefetchSampler, TrainPiece,
                                                     frame_descriptors, train)

    quiet, loud, bright = (torch.full((1, 128), -0.8) for _ in range(3))
    loud[0, 10] = bright[0, 100] = 0.5
    (lq, cq), (ll, cl), (lb, cb) = frame_descriptors(quiet), frame_descriptors(loud), frame_descriptors(bright)
    assert ll > lq and abs(float(lb - ll)) < 1e-5  # one loud bin: louder, at the same level wherever it is
    assert cb > cq > cl  # ... and brighter when it is high

    notes = np.array([(0.5 * i, 0.5 * i + 0.3, 48 + 2 * i, 100, 0, 0, 0) for i in range(6)], np.float64)
    mel = np.full((200, 128), -11.5, np.float16)
    for on, off, pitch, *_ in notes:
        mel[int(on * 50) : int(off * 50), int(pitch)] = 1.0
    sampler = CropSampler(None, 48, 16, TINY.slots, [TrainPiece(mel, NoteEvents(notes))])
    prefetch = PrefetchSampler(sampler, workers=2, size=3, seed=5, first_batch=7)
    try:
        for k in (7, 8, 9):  # batch k is the in-process sampler's batch with seed (5, 1, k), whichever worker made it
            got, want = prefetch.batch(None, 3), sampler.batch(np.random.default_rng([5, 1, k]), 3)
            assert all(torch.equal(got[key], want[key]) for key in ("slots", "mel"))
    finally:
        prefetch.close()
    cfg = CausalTrainConfig(model="causal-tiny", batch_size=4, crop=48, burn_in=16, log_every=1, probe_every=100,
                            save_every_s=1e9, warmup_steps=1, frame_loss=0.5)
    rows = []
    assert train(None, tmp_path, cfg, max_steps=2, sampler=sampler, progress=rows.append) == 2
    plain = []
    train(None, tmp_path / "plain", CausalTrainConfig(**{**cfg.__dict__, "frame_loss": 0.0}), max_steps=1,
          sampler=sampler, progress=plain.append)
    assert rows[0]["head"] > plain[0]["head"] + 0.01  # same weights, batch and noise: the frame term is added
