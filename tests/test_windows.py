"""Arbitrary token windows, the piano roll, and models that take one (our own model family)."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from engines.torch_engine import TorchEngine
from live_synth.midi import Note, NoteSequence, TokenizerConfig, tokenize
from live_synth.midi.pianoroll import ACTIVE, DRUM_OFFSET, ONSET, ROLL_FEATURES, note_arrays, pianoroll
from live_synth.midi.tokenize import EventIndex
from live_synth.model.config import preset
from live_synth.model.network import SpectrogramDiffusion
from live_synth.render import render_mel, song_windows
from live_synth.sampling.samplers import make_sampler

CODEC = TokenizerConfig().codec


def song() -> NoteSequence:
    notes = [
        Note(pitch=60, velocity=100, start=0.5, end=1.0, program=0),
        Note(pitch=64, velocity=80, start=4.0, end=7.0, program=40),  # crosses the 5.12 s boundary
        Note(pitch=36, velocity=110, start=6.0, end=6.1, program=0, is_drum=True),
        Note(pitch=67, velocity=50, start=9.0, end=9.5, program=0),
    ]
    return NoteSequence.from_notes(notes)


def test_aligned_windows_equal_the_reference_segments():
    ns = song()
    index = EventIndex(ns)
    for k, segment in enumerate(tokenize(ns).segments):
        tokens, dropped = index.window(k * 256, 256)
        assert dropped == 0
        assert tokens == segment[: len(tokens)] and set(segment[len(tokens):]) == {0}


def test_window_inside_a_held_note_ties_it_and_counts_shifts_from_the_window_start():
    tokens, _ = EventIndex(song()).window(start_frame=250, num_frames=100)  # 5.00 s .. 7.00 s
    described = [CODEC.decode(t) for t in tokens[:-1]]
    assert described[:3] == [("program", 40), ("pitch", 64), ("tie", 0)]
    # drum at 6.00 s = 100 steps after 5.00 s; the violin's note-off at 7.00 s falls outside [5.00, 7.00)
    assert described[3:] == [("shift", 100), ("velocity", 1), ("drum", 36)]
    assert tokens[-1] == 1


def test_pianoroll_places_onsets_sustains_and_drums():
    notes = note_arrays(song())
    roll = pianoroll(notes, start_frame=0, num_frames=400)
    piano_c = (0 * 128 + 60) * 2
    assert roll[25, piano_c + ONSET] == np.float32(100 / 127)
    assert roll[25:50, piano_c + ACTIVE].min() == 1 and roll[50, piano_c + ACTIVE] == 0
    violin_e = (40 // 8 * 128 + 64) * 2
    assert roll[200:350, violin_e + ACTIVE].min() == 1
    assert roll[300, DRUM_OFFSET + 36] == np.float32(110 / 127) and roll[301, DRUM_OFFSET + 36] == 0
    # A window starting inside the violin note: active from frame 0, no onset (it started earlier).
    late = pianoroll(notes, start_frame=260, num_frames=32)
    assert late[:, violin_e + ACTIVE].min() == 1 and late[:, violin_e + ONSET].max() == 0
    assert roll.shape == (400, ROLL_FEATURES)


def test_a_note_shorter_than_a_frame_still_gets_one_frame():
    ns = NoteSequence.from_notes([Note(pitch=72, velocity=64, start=1.001, end=1.004, program=0)])
    roll = pianoroll(note_arrays(ns), 0, 100)
    assert roll[:, (72 * 2) + ACTIVE].sum() == 1 and roll[50, 72 * 2 + ONSET] > 0


def roll_model():
    cfg = dataclasses.replace(preset("tiny"), target_length=32, context_length=24, max_tokens=128, pianoroll=True,
                              num_velocity_bins=16, slakh_programs=False)
    torch.manual_seed(0)
    return SpectrogramDiffusion(cfg).eval()


@torch.no_grad()
def test_roll_conditioned_model_listens_to_the_roll_and_guidance_drops_it():
    model = roll_model()
    engine = TorchEngine(model)
    tokens = torch.tensor([[1134, 1]])
    ctx, mask = torch.zeros(1, 24, 128), torch.zeros(1, 24, dtype=torch.bool)
    z = torch.randn(1, 32, 128, generator=torch.Generator().manual_seed(1))
    roll_a = torch.zeros(1, 32, ROLL_FEATURES)
    roll_b = roll_a.clone()
    roll_b[0, 5, 2 * 60 + ONSET] = 1.0
    eps_a = engine.denoise(z, 0.5, engine.encode(tokens, ctx, mask, roll=roll_a))
    eps_b = engine.denoise(z, 0.5, engine.encode(tokens, ctx, mask, roll=roll_b))
    assert (eps_a - eps_b).abs().max() > 1e-4
    guided_a = engine.denoise(z, 0.5, engine.encode(tokens, ctx, mask, roll=roll_a, guided=True))
    guided_b = engine.denoise(z, 0.5, engine.encode(tokens, ctx, mask, roll=roll_b, guided=True))
    assert torch.allclose(guided_a[1], guided_b[1], atol=1e-6)  # the unconditional branch ignores the roll


def test_render_in_a_short_window_geometry():
    model = roll_model()
    windows = song_windows(song(), model.config)
    assert windows.rolls is not None and len(windows.rolls) == len(windows.segments)
    assert all(len(s) == model.config.max_tokens for s in windows.segments)
    mel = render_mel(TorchEngine(model), windows.segments, make_sampler("ddim", 2),
                     generator=torch.Generator().manual_seed(0), rolls=windows.rolls)
    assert mel.shape == (len(windows.segments) * 32, 128) and np.isfinite(mel).all()
