"""The shipped default model responds to expression: a pitch bend moves the pitch, and a volume (CC7) or expression
(CC11) pedal lowers the level. What the model makes, not what the vocoder is told: the pitch is measured on
Griffin-Lim's audio of the model's mel (a vocoder that hears the mel alone), the level on the mel itself.

Each case is a ~2 s file rendered offline with the torch engine (about a second each on a 2-core CPU).
tools/expression_check.py measures the same against FluidSynth, live as well, with General MIDI's targets.
"""

from __future__ import annotations

import sys
from pathlib import Path

import mido
import numpy as np
import pytest

from live_synth.audio.vocoders import GriffinLimVocoder
from live_synth.constants import FRAME_RATE, SAMPLE_RATE
from live_synth.synth import SynthOptions, load_song, load_synth, packaged_path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
from expression_check import midi_file, pitch_cents  # noqa: E402  (the tool's MIDI files and pitch measure)

pytestmark = pytest.mark.skipif(not (packaged_path("default_model") / "model.safetensors").is_file(),
                                reason="the package ships no default model (live_synth/assets/default_model)")


@pytest.fixture(scope="module")
def synth():
    return load_synth("default", SynthOptions(engine="torch"))


def render(synth, tmp_path, name: str, program: int, notes: list[int], hold_s: float,
           events: list[tuple[float, mido.Message]]) -> np.ndarray:
    """Natural-log mel of `notes` (velocity 100) from 0.3 s for `hold_s`, with `events` at their times (s)."""
    path = tmp_path / f"{name}.mid"
    path.write_bytes(midi_file(program, notes, hold_s, events, 0.3 + hold_s + 0.4))
    return synth.render(load_song(str(path)))


def pitch_at(audio: np.ndarray, start_s: float, stop_s: float, near_midi: float) -> float:
    """MIDI pitch in cents (harmonic summation, tools/expression_check.py) over [start, stop)."""
    return pitch_cents(audio[int(start_s * SAMPLE_RATE) : int(stop_s * SAMPLE_RATE)], SAMPLE_RATE, near_midi)


def level_db(mel: np.ndarray, start_s: float, stop_s: float) -> float:
    """Mean power of the mel bins over [start, stop) in dB."""
    span = mel[int(start_s * FRAME_RATE) : int(stop_s * FRAME_RATE)].astype(np.float64)
    return float(10 * np.log10(np.mean(np.exp(2 * span))))


def test_a_pitch_bend_moves_the_pitch(synth, tmp_path):
    # A4 on a flute (GM 73, a steady tone) held 1.6 s; the wheel ramps to its top (+2 semitones, General MIDI's
    # range) over 50 ms from 1.0 s. Measured: +222 cents bent, +10 without the bend.
    wheel = [(1.0 + 0.01 * k, mido.Message("pitchwheel", pitch=round(8191 * min(1.0, k / 5)))) for k in range(6)]
    vocoder = GriffinLimVocoder(n_iter=32)
    for name, events, low, high in (("bend", wheel, 150, 250), ("still", [], -30, 30)):
        audio = vocoder(render(synth, tmp_path, name, 73, [69], 1.6, events))
        moved = pitch_at(audio, 1.2, 1.6, 70) - pitch_at(audio, 0.5, 0.9, 69)
        assert low <= moved <= high, f"{name}: the pitch moved {moved:+.0f} cents"


@pytest.mark.parametrize("control", [7, 11], ids=["volume-cc7", "expression-cc11"])
def test_a_volume_or_expression_pedal_lowers_the_level(synth, tmp_path, control):
    # An organ chord (GM 19) held 1.8 s; the controller at 127, then 64 from 1.2 s (General MIDI: 40 log10(64/127) =
    # -11.9 dB). The drop beyond the same chord's own decay without the controller; measured 10.5 dB (CC7) and
    # 9.8 dB (CC11).
    pedal = [(0.0, mido.Message("control_change", control=control, value=127)),
             (1.2, mido.Message("control_change", control=control, value=64))]
    drops = {}
    for name, events in (("pedal", pedal), ("none", [])):
        mel = render(synth, tmp_path, f"{name}-{control}", 19, [57, 60, 64], 1.8, events)
        drops[name] = level_db(mel, 0.5, 1.1) - level_db(mel, 1.5, 2.0)
    assert drops["pedal"] - drops["none"] >= 6.0, drops
