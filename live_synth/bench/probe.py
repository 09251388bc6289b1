"""The measuring instrument: one JACK client that sends MIDI notes and records audio on the same sample clock.

Both directions live in one process callback, so a note-on and the audio that answers it are stamped in JACK frames
of one clock: a note-on written at offset o of the cycle that starts at frame F happens at frame F + o, and input
sample i of the cycle that starts at frame G was captured at frame G + i. No wall clock is involved.

Notes are scheduled at random offsets, so their phase relative to the audio period is uniform (a synthesizer that
only reacts at period boundaries shows up as up-to-one-period jitter, as it would for a player).
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

import numpy as np

from live_synth.errors import LiveSynthError


@dataclass(frozen=True)
class ScheduledNote:
    on_frame: int  # relative to the probe's first cycle
    off_frame: int
    pitch: int
    velocity: int
    channel: int = 0


def schedule(n: int, rate: int, spacing_s: float, hold_s: float, start_s: float, seed: int,
             pitches: tuple[int, int] = (48, 72), velocity: int = 100) -> list[ScheduledNote]:
    """`n` notes, one per `spacing_s`, each at a uniformly random point of its first quarter (random period phase)."""
    rng = np.random.default_rng(seed)
    notes = []
    for i in range(n):
        on = int(round((start_s + i * spacing_s + rng.uniform(0, spacing_s / 4)) * rate))
        pitch = int(rng.integers(pitches[0], pitches[1] + 1))
        notes.append(ScheduledNote(on, on + int(hold_s * rate), pitch, velocity))
    return notes


class Probe:
    """A JACK client `name` with a MIDI output `midi_out` and an audio input `in` (import of `jack` is lazy)."""

    def __init__(self, name: str, seconds: float):
        try:
            import jack
        except (ImportError, OSError) as exc:
            raise LiveSynthError(f"the latency bench needs JACK-Client and libjack: {exc}") from None
        try:
            self.client = jack.Client(name, no_start_server=True)
        except jack.JackError as exc:
            raise LiveSynthError(f"no JACK server to measure through ({exc}); start one, e.g. "
                                 "`jackd -d dummy -r 48000 -p 256`") from None
        self.rate = self.client.samplerate
        self.period = self.client.blocksize
        self.midi_out = self.client.midi_outports.register("midi_out")
        self.audio_in = self.client.inports.register("in")
        self.audio = np.zeros(int(seconds * self.rate), np.float32)
        self.base: int | None = None  # frame time of the first cycle
        self.frames_seen = 0
        self.xruns = 0
        self._events: deque[tuple[int, bytes]] = deque()
        self.sent: list[tuple[int, bytes]] = []  # (frame relative to base, message) as written
        self._lock = threading.Lock()
        self.client.set_process_callback(self._process)
        self.client.set_xrun_callback(self._xrun)

    def _xrun(self, delay_us: float) -> None:
        self.xruns += 1

    def play(self, notes: list[ScheduledNote], offset_frames: int) -> None:
        """Queue the notes, shifted by `offset_frames` after the current cycle."""
        now = (self.client.frame_time - self.base) if self.base is not None else 0
        events = []
        for note in notes:
            events.append((now + offset_frames + note.on_frame, bytes([0x90 | note.channel, note.pitch,
                                                                        note.velocity])))
            events.append((now + offset_frames + note.off_frame, bytes([0x80 | note.channel, note.pitch, 0])))
        with self._lock:
            self._events = deque(sorted(events + list(self._events)))

    def _process(self, frames: int) -> None:
        start = self.client.last_frame_time
        if self.base is None:
            self.base = start
        rel = start - self.base
        self.midi_out.clear_buffer()
        if self._lock.acquire(blocking=False):  # never wait in the process callback; try again next cycle
            try:
                while self._events and self._events[0][0] < rel + frames:
                    at, message = self._events.popleft()
                    offset = max(0, at - rel)
                    self.midi_out.write_midi_event(offset, message)
                    self.sent.append((rel + offset, message))
            finally:
                self._lock.release()
        if rel + frames <= len(self.audio):
            self.audio[rel : rel + frames] = self.audio_in.get_array()
        self.frames_seen = rel + frames

    def __enter__(self) -> Probe:
        self.client.activate()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        try:
            self.client.deactivate()
        finally:
            self.client.close()

    def note_ons(self) -> list[tuple[int, int]]:
        """(frame, pitch) of every note-on actually written."""
        return [(at, msg[1]) for at, msg in self.sent if msg[0] & 0xF0 == 0x90 and msg[2] > 0]


def _envelope(x: np.ndarray, block: int, smooth: int) -> np.ndarray:
    """RMS per block, smoothed by a centred moving average of `smooth` blocks (power averaged)."""
    n = len(x) // block
    power = np.mean(x[: n * block].reshape(n, block).astype(np.float64) ** 2, axis=1)
    if smooth > 1 and n >= smooth:
        power = np.convolve(power, np.ones(smooth) / smooth, mode="same")
    return np.sqrt(power)


def detect_onsets(audio: np.ndarray, note_frames: list[int], rate: int, max_latency_s: float = 1.0,
                  block_s: float = 0.0005, smooth_s: float = 0.0025, rise: float = 0.1,
                  min_peak_ratio: float = 4.0, earliest_s: float = 0.0, hold_s: float = 0.01) -> list[int | None]:
    """First frame after each note-on where the envelope (0.5 ms block RMS, smoothed over 2.5 ms) rises `rise` of
    the way from the level just before the note (median over 50 ms) to the note's peak (within `max_latency_s`)
    and stays there for `hold_s` (a click is not a note); None when the peak is not at least `min_peak_ratio`
    times that level (no clear onset: counted as missed).
    The smoothed envelope decides whether and roughly where; the first unsmoothed block over the threshold near
    there is the onset (resolution: one block, 0.5 ms).

    `earliest_s`: no answer can be heard sooner (a synthesizer with `earliest_s` of audio already queued ahead of
    the note, as live-synth's ring lead): the search and the level "just before" start there, so the synth's own
    sound in between (the previous note, a noise floor) is not taken for the note's onset."""
    block = max(1, int(block_s * rate))
    smooth = max(1, int(round(smooth_s / block_s)))
    pre, delay = int(0.05 * rate), int(earliest_s * rate)
    hold = max(1, int(round(hold_s / block_s)))
    out: list[int | None] = []
    for k, note_on in enumerate(note_frames):
        on = note_on + delay
        stop = min(len(audio), note_on + int(max_latency_s * rate))
        if k + 1 < len(note_frames):
            stop = min(stop, note_frames[k + 1] + delay)
        if on - pre < 0 or stop - on < smooth * block:
            out.append(None)
            continue
        env = _envelope(audio[on - pre : stop], block, smooth)
        split = pre // block
        level, after = float(np.median(env[:split])), env[split:]
        peak = float(after.max())
        if peak < max(min_peak_ratio * level, 1e-5):
            out.append(None)
            continue
        threshold = level + rise * (peak - level)
        above = after >= threshold
        held = np.lib.stride_tricks.sliding_window_view(above, min(hold, len(above))).all(axis=1)
        if not held.any():
            out.append(None)
            continue
        rough = int(np.argmax(held))
        # The centred smoothing rises up to half its width early; refine on the unsmoothed blocks.
        raw = _envelope(audio[on : stop], block, 1)
        lo = max(0, rough - smooth)
        hits = np.flatnonzero(raw[lo : rough + smooth + 1] >= threshold)
        out.append(on + (lo + int(hits[0]) if hits.size else rough) * block)
    return out


def estimate_pitch(audio: np.ndarray, rate: int, lowest: float = 36.0, highest: float = 96.0) -> float:
    """The MIDI pitch (0.1 semitone grid) whose first 5 harmonics carry the most spectral magnitude (harmonic
    summation, 1/k weights): robust to a strong second harmonic, unlike the highest spectral peak."""
    n = 1 << 16
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio)), n=n))
    freqs = np.fft.rfftfreq(n, 1 / rate)
    candidates = np.arange(lowest, highest + 0.01, 0.1)
    f0 = 440.0 * 2 ** ((candidates - 69) / 12)
    scores = sum(np.interp(k * f0, freqs, spectrum) / k for k in range(1, 6))
    return float(candidates[int(np.argmax(scores))])
