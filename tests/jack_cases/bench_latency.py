"""The latency bench's instrument on a real JACK server, measured on FluidSynth (a synth with a known, small latency):
every note found, latencies positive and within a few periods, the note schedule's random phases kept."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from live_synth.bench.latency import DEFAULT_SOUNDFONT, measure, summary_table
from live_synth.bench.probe import estimate_pitch, schedule
from tests.jack_cases.live_io import TAG, jack_server  # noqa: F401  (fixture)


@pytest.mark.skipif(shutil.which("fluidsynth") is None or not Path(DEFAULT_SOUNDFONT).is_file(),
                    reason="fluidsynth and fluid-soundfont-gm are needed (apt-get install fluidsynth fluid-soundfont-gm)")
def test_fluidsynth_latency_is_measured_note_by_note(jack_server):
    notes = schedule(8, 48000, spacing_s=0.5, hold_s=0.25, start_s=0.3, seed=1)
    result = measure("fluidsynth", notes, seconds=8.0, tag=f"{TAG}b", play_args=[], log=lambda line: None)
    assert result.notes == 8
    found = [x for x in result.latencies_ms if x is not None]
    assert len(found) == 8, result.latencies_ms
    period_ms = result.period / result.rate * 1e3
    # FluidSynth answers within its next cycles: more than 0, less than a few periods plus its own buffer.
    assert 0 < min(found) and max(found) < 6 * period_ms + 20, found
    phases = np.array([t * result.rate % result.period for t in result.note_times_s])
    assert len(set(phases.round())) > 4  # note-ons land at different offsets inside the period
    assert "fluidsynth" in summary_table([result])
    # The pitch check used on the default model (play_e2e.py), validated here on a real piano sound.
    detected = [estimate_pitch(result.audio[o + 2400 : o + 2400 + 9600], result.rate) for o in result.onset_frames]
    assert all(abs(d - p) <= 1.0 for d, p in zip(detected, result.pitches)), list(zip(result.pitches, detected))


@pytest.mark.skipif(shutil.which("fluidsynth") is None or not Path(DEFAULT_SOUNDFONT).is_file(),
                    reason="fluidsynth and fluid-soundfont-gm are needed (apt-get install fluidsynth fluid-soundfont-gm)")
def test_the_probe_counts_the_servers_xruns_while_the_notes_play(jack_server):
    """The xrun count that BENCHMARKS.md rates per minute (issue 21): JACK's own xrun notifications over the window
    the notes play in, start-up excluded. A client beside FluidSynth that overruns its period in every cycle of that
    window must show up in it."""
    import threading
    import time

    import jack

    late = jack.Client(f"{TAG}-late", no_start_server=True)
    overrun = threading.Event()
    late.set_process_callback(lambda frames: time.sleep(0.012) if overrun.is_set() else None)
    late.activate()
    notes = schedule(4, 48000, spacing_s=0.5, hold_s=0.25, start_s=0.3, seed=2)
    timer = threading.Timer(2.5, overrun.set)  # FluidSynth is up and the notes play by then (1 s settle + 0.3 s)
    timer.start()
    try:
        result = measure("fluidsynth", notes, seconds=4.0, tag=f"{TAG}x", play_args=[], log=lambda line: None)
    finally:
        timer.cancel()
        late.deactivate()
        late.close()
    stats = result.stats()
    assert result.playing_s > 2.0 and result.xruns_playing >= 5, stats
    assert stats["xruns_per_min"] == pytest.approx(60 * result.xruns_playing / result.playing_s)
    assert result.xruns >= result.xruns_playing
