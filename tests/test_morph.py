"""`render --morph`: the curve's syntax, and that the morph's end points are the two instruments themselves."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engines.frame import TorchFrameEngine
from engines.morph import MorphEngine
from live_synth.causal_stream import render_events
from live_synth.errors import LiveSynthError
from live_synth.midi.events import NoteEvents
from live_synth.model.causal import CAUSAL_PRESETS, CausalModel
from live_synth.model.morph import InstrumentMorph, MorphCurve


def test_curves_parse_and_bad_ones_are_one_line_errors():
    curve = MorphCurve.parse("0>48:8s")
    assert (curve.start_program, curve.end_program, curve.t0, curve.t1) == (0, 48, 0.0, 8.0)
    assert curve.weight(-1) == 0.0 and curve.weight(2.0) == 0.25 and curve.weight(9) == 1.0
    assert MorphCurve.parse("40 > 0 : 2-4.5s") == MorphCurve(40, 0, 2.0, 4.5)
    for bad in ["", "0>48", "0-48:8s", "0>128:8s", "0>48:5-5s", "0>48:8-2s", "piano>strings:8s"]:
        with pytest.raises(LiveSynthError, match="--morph"):
            MorphCurve.parse(bad)


def _song(program: int) -> NoteEvents:
    notes = [(0.05 + 0.3 * k, 0.3 + 0.3 * k, 60 + 2 * k, 90, program, 0, 0) for k in range(4)]
    return NoteEvents(np.array(notes, np.float64), {})


def _render(base: TorchFrameEngine, program: int, curve: MorphCurve | None) -> np.ndarray:
    engine = base if curve is None else MorphEngine(base, curve)
    try:
        return render_events(engine, _song(program), 50, steps=2, seed=3, chunks=1)
    finally:
        if curve is not None:
            engine.close()


def test_the_morph_starts_as_instrument_a_ends_as_instrument_b_and_goes_between():
    model = CausalModel(CAUSAL_PRESETS["causal-tiny"], seed=1).eval()
    with torch.no_grad():  # a random model's instrument rows are tiny: make A and B clearly different
        for table in (model.slots.program.weight, model.slots.family.weight):
            table.normal_(0, 1.0)
        model.prior.family_table.normal_(0, 1.0)
    before = [p.clone() for p in model.parameters()]
    base = TorchFrameEngine(model)  # one engine: its initial state is computed once
    a = _render(base, 0, None)
    b = _render(base, 48, None)
    assert np.abs(a - b).mean() > 0.05  # the two instruments differ
    np.testing.assert_allclose(_render(base, 0, MorphCurve(0, 48, 100.0, 101.0)), a, atol=1e-6)
    np.testing.assert_allclose(_render(base, 0, MorphCurve(0, 48, -2.0, -1.0)), b, atol=1e-4)
    half = _render(base, 0, MorphCurve(0, 48, -1000.0, 1000.0))  # weight 0.5 (to 0.0005) throughout
    assert 0.2 < np.abs(half - a).mean() / np.abs(b - a).mean() < 0.8
    assert all(torch.equal(p, q) for p, q in zip(before, model.parameters()))  # the model is put back


def test_the_morph_needs_the_torch_engine():
    class Onnx:
        name = "onnx"

    with pytest.raises(LiveSynthError, match="--engine torch"):
        MorphEngine(Onnx(), MorphCurve(0, 48, 0, 1))


def test_instrument_rows_mix_linearly_and_restore_exactly():
    model = CausalModel(CAUSAL_PRESETS["causal-tiny"], seed=1)
    program = model.slots.program.weight
    a, b = program[0].detach().clone(), program[48].detach().clone()
    morph = InstrumentMorph(model, 0, 48)
    morph.set(0.25)
    torch.testing.assert_close(program[0].detach(), a + 0.25 * (b - a))
    torch.testing.assert_close(model.prior.level[0].detach(), model.prior.level[6].detach() * 0.25
                               + morph.rows[3][2] * 0.75)
    morph.restore()
    assert torch.equal(program[0].detach(), a)


def test_a_live_morph_controller_is_placed_like_a_note_and_each_frame_takes_its_weight():
    from live_synth.causal_stream import CausalLiveStream
    from live_synth.live.morph import MorphLiveStream, MorphNoteState, parse_programs

    assert parse_programs(" 0 > 48 ") == (0, 48)
    for bad in ["0>128", "48", "a>b"]:
        with pytest.raises(LiveSynthError, match="--morph"):
            parse_programs(bad)
    notes = MorphNoteState(cc=74)
    notes.apply(0.30, [0xB0, 74, 127])
    notes.apply(0.10, [0xB1, 74, 64])  # placed earlier than the one before (a later arrival, a shorter delay)
    notes.apply(0.20, [0xB0, 1, 127])  # another controller: not the morph
    assert [notes.weight_at(t) for t in (0.0, 0.1, 0.25, 0.3, 9.0)] == [0.0, 64 / 127, 64 / 127, 1.0, 1.0]

    model = CausalModel(CAUSAL_PRESETS["causal-tiny"], seed=1).eval()
    engine = TorchFrameEngine(model)
    live = MorphLiveStream(CausalLiveStream(engine, steps=1), engine, 0, 48)
    seen = []
    for _ in range(20):
        live.generate(notes)
        seen.append(live.morph.weight)
    assert seen[:5] == [0.0] * 5 and seen[5:15] == [64 / 127] * 10 and seen[15:] == [1.0] * 5  # frames at 20 ms
    live.rewind(8)  # a rollback regenerates frame 8 on with the weights of those frames' times
    live.generate(notes)
    assert live.morph.weight == 64 / 127 and live.frame == 9
    live.morph.restore()
    with pytest.raises(LiveSynthError, match="--engine torch"):
        MorphLiveStream(CausalLiveStream(engine, steps=1), type("Onnx", (), {"name": "onnx"})(), 0, 48)


def test_render_morph_is_the_causal_familys_and_a_window_model_is_told_so_in_one_line():
    """The family decides (`Synth.render_morph`), not the CLI: the causal synth renders the morph through the
    morphing engine frame by frame; the window family has no instrument tables and says so in one line."""
    from live_synth.midi.notes import Note, NoteSequence
    from live_synth.synth import TAIL_FRAMES, SynthOptions, load_synth, song_frames

    song = NoteSequence.from_notes([Note(pitch=60 + 2 * k, velocity=90, start=0.05 + 0.3 * k, end=0.3 + 0.3 * k,
                                         program=0) for k in range(4)])
    curve = MorphCurve.parse("0>48:0-1s")
    with pytest.raises(LiveSynthError, match="causal-family"):
        load_synth("tiny", SynthOptions(engine="torch")).render_morph(song, curve)
    causal = load_synth("causal-tiny", SynthOptions(engine="torch", steps=1, seed=3))
    with torch.no_grad():  # instruments that differ (a new model's tables start equal)
        for table in (causal.model.slots.program.weight, causal.model.slots.family.weight):
            table.normal_(0, 1.0)
        causal.model.prior.family_table.normal_(0, 1.0)
    mel = causal.render_morph(song, curve)
    engine = MorphEngine(causal.engine, curve)
    try:
        expected = render_events(engine, NoteEvents.from_sequence(song), song_frames(song) + TAIL_FRAMES, 1, 3,
                                 chunks=1)
    finally:
        engine.close()
    np.testing.assert_allclose(mel, expected, atol=1e-5)
    assert np.abs(mel - causal.render(song)).max() > 1e-3  # the morph changed the timbre
