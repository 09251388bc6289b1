"""The benchmarks' pure logic: onset detection, note schedules, the latency summary (the JACK side runs in
tests/jack_cases/bench_latency.py)."""

from __future__ import annotations

import numpy as np

from live_synth.bench.latency import LatencyResult, summary_table
from live_synth.bench.probe import detect_onsets, estimate_pitch, schedule

RATE = 48000


def burst_track(onsets: list[int], seconds: float = 4.0, noise: float = 1e-3, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    audio = rng.normal(0, noise, int(seconds * RATE)).astype(np.float32)
    t = np.arange(int(0.3 * RATE)) / RATE
    tone = (0.3 * np.sin(2 * np.pi * 440 * t) * np.exp(-t * 8)).astype(np.float32)
    for on in onsets:
        audio[on : on + len(tone)] += tone[: len(audio) - on]
    return audio


def test_onsets_of_tone_bursts_are_found_within_a_millisecond():
    notes = [int(0.5 * RATE), int(1.3 * RATE), int(2.2 * RATE)]
    delays = [480, 1234, 4000]  # 10 ms, 25.7 ms, 83 ms
    audio = burst_track([n + d for n, d in zip(notes, delays)])
    found = detect_onsets(audio, notes, RATE)
    for on, delay, got in zip(notes, delays, found):
        assert got is not None and abs((got - on) - delay) <= RATE // 1000, (delay, got - on)


def test_noise_without_a_note_is_a_missed_note_not_a_zero_latency():
    audio = burst_track([], noise=0.05)
    assert detect_onsets(audio, [int(1.0 * RATE), int(2.0 * RATE)], RATE) == [None, None]


def test_schedule_spreads_phases_and_keeps_order():
    notes = schedule(50, RATE, spacing_s=0.8, hold_s=0.3, start_s=0.5, seed=3)
    ons = [n.on_frame for n in notes]
    assert ons == sorted(ons) and all(n.off_frame - n.on_frame == int(0.3 * RATE) for n in notes)
    phases = np.array(ons) % 256
    assert phases.std() > 50  # roughly uniform over a 256-frame period (uniform: 74)


def test_summary_reports_percentiles_missed_notes_and_the_ratio():
    ours = LatencyResult("live-synth", {}, RATE, 256, 4, [100.0, 120.0, None, 110.0], [0, 1, 2, 3], 0,
                         {"underruns": 0, "tick_ms": [50.0, 60.0]})
    ref = LatencyResult("fluidsynth", {}, RATE, 256, 4, [5.0, 6.0, 5.5, 6.5], [0, 1, 2, 3], 0)
    stats = ours.stats()
    assert stats["missed"] == 1 and stats["p50_ms"] == 110.0 and stats["tick_ms"]["n"] == 2
    table = summary_table([ours, ref])
    assert "ratio live-synth / fluidsynth" in table and f"{110 / 5.75:.1f}x" in table
    assert "tick compute (2 ticks): p50 55.0" in table


def test_pitch_estimate_prefers_the_fundamental_over_a_strong_second_harmonic():
    t = np.arange(int(0.3 * RATE)) / RATE
    for midi in (48, 60, 67, 72):
        f0 = 440 * 2 ** ((midi - 69) / 12)
        tone = 0.5 * np.sin(2 * np.pi * f0 * t) + 0.8 * np.sin(2 * np.pi * 2 * f0 * t) + 0.3 * np.sin(6 * np.pi * f0 * t)
        assert abs(estimate_pitch(tone, RATE) - midi) <= 0.2


def test_onsets_are_sought_from_the_earliest_time_an_answer_can_be_heard():
    """Live, audio already queued (the ring lead) plays before any answer to a note: a blip from the synth's own
    floor right after the note-on is not its onset; from `earliest_s` on, the real one is found."""
    notes = [int(0.5 * RATE), int(1.5 * RATE)]
    audio = burst_track([n + int(0.26 * RATE) for n in notes])
    for n in notes:
        audio[n + 240 : n + 2640] += 0.2  # 50 ms of the synth's own sound, 5 ms after the note-on
    plain = detect_onsets(audio, notes, RATE)
    assert all(abs((got - on) - 240) <= 48 for got, on in zip(plain, notes)), "its own sound fools a plain search"
    found = detect_onsets(audio, notes, RATE, earliest_s=0.2)
    assert all(abs((got - on) - int(0.26 * RATE)) <= RATE // 1000 for got, on in zip(found, notes)), found
    silent = burst_track([], noise=1e-3)
    silent[notes[0] + 240 : notes[0] + 2640] += 0.2
    assert detect_onsets(silent, notes[:1], RATE, earliest_s=0.2) == [None], "after it: no note, missed"


def test_a_click_before_the_note_is_not_its_onset():
    """A rise counts only if it holds (10 ms): a tick-boundary click of 2 ms between silence and the note is not
    the note's onset."""
    notes = [int(0.5 * RATE), int(1.5 * RATE)]
    audio = burst_track([n + int(0.3 * RATE) for n in notes], noise=1e-5)
    for n in notes:
        audio[n + int(0.1 * RATE) : n + int(0.102 * RATE)] += 0.2
    found = detect_onsets(audio, notes, RATE)
    assert all(abs((got - on) - int(0.3 * RATE)) <= RATE // 1000 for got, on in zip(found, notes)), found


def test_latency_png_has_histogram_timeline_and_tick_panels(tmp_path):
    from live_synth.bench.latency import plot_latencies

    ours = LatencyResult("live-synth", {}, RATE, 256, 3, [300.0, 320.0, None], [0.5, 1.3, 2.1], 0,
                         {"tick_ms": [40.0, 42.0, 55.0]})
    ref = LatencyResult("fluidsynth", {}, RATE, 256, 3, [5.0, 6.0, 5.5], [0.5, 1.3, 2.1], 0)
    plot_latencies([ours, ref], tmp_path / "lat.png")
    assert (tmp_path / "lat.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
