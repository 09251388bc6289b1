"""Audio out: a PortAudio stream (sounddevice) that plays an SpscRing, and the producer side that fills the ring.

Consumer side (real time): `AudioOutput` opens a float32 output stream on any PortAudio host API (JACK, ALSA,
CoreAudio, WASAPI, ...) at the device's own sample rate; its callback only copies from the ring (see
`AudioOutput._callback` for the contract).

Producer side (the generation worker): `Resampler` takes the model's 16 kHz mono audio to the device rate,
`Recorder` keeps exactly what was written to the ring for `--record`, and `OutputFeed` chains the two in front of
`ring.write`. Nothing on the producer side runs in the audio callback.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from live_synth.constants import HOP, SAMPLE_RATE
from live_synth.errors import LiveSynthError, MissingDependencyError
from live_synth.live.ring import SpscRing


def _sounddevice():
    try:
        import sounddevice
    except ImportError as error:  # pragma: no cover - sounddevice is a core dependency
        raise MissingDependencyError("audio output needs sounddevice: pip install sounddevice") from error
    except OSError as error:  # the wheel is there but libportaudio is not
        raise MissingDependencyError(f"audio output needs PortAudio ({error}): apt install libportaudio2") from error
    return sounddevice


# --- devices -------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OutputDevice:
    index: int
    name: str
    hostapi: str
    channels: int
    samplerate: int
    default: bool  # the default output device (of the default host API)


@dataclass(frozen=True)
class DeviceList:
    hostapis: list[str]
    outputs: list[OutputDevice]

    def describe(self) -> str:
        """Human-readable listing for `live-synth devices`."""
        lines = ["audio host APIs: " + (", ".join(self.hostapis) or "none")]
        lines += [
            f"{'*' if d.default else ' '} {d.index:2d}  {d.name}  ({d.hostapi}, {d.channels} ch, {d.samplerate} Hz)"
            for d in self.outputs
        ]
        if not self.outputs:
            lines.append("  no audio output devices (no sound card? start a JACK server: jackd -d dummy)")
        return "\n".join(lines)


def list_devices() -> DeviceList:
    """PortAudio's host APIs and output devices (`--audio-out` takes an index or a name substring)."""
    sd = _sounddevice()
    hostapis = sd.query_hostapis()
    try:
        default_output = sd.query_devices(kind="output")["index"]
    except sd.PortAudioError:
        default_output = -1
    outputs = [
        OutputDevice(
            index=d["index"],
            name=d["name"],
            hostapi=hostapis[d["hostapi"]]["name"],
            channels=d["max_output_channels"],
            samplerate=int(d["default_samplerate"]),
            default=d["index"] == default_output,
        )
        for d in sd.query_devices()
        if d["max_output_channels"] > 0
    ]
    return DeviceList([h["name"] for h in hostapis], outputs)


_jack_client_name: ctypes.Array | None = None  # PortAudio keeps the pointer, so the buffer must outlive it


def set_jack_client_name(name: str) -> bool:
    """Name PortAudio's JACK client (PortAudio's default: "PortAudio"); JACK may append "-01" if it is taken.

    PortAudio reads the name when it initializes, so this re-initializes PortAudio: call it before any stream is
    opened in this process (control thread). Returns False where PortAudio was built without JACK.
    """
    global _jack_client_name
    sd = _sounddevice()
    libname = getattr(sd, "_libname", None) or ctypes.util.find_library("portaudio")
    try:
        setter = ctypes.CDLL(libname).PaJack_SetClientName
    except (OSError, AttributeError, TypeError):
        return False
    buffer = ctypes.create_string_buffer(name.encode())
    sd._terminate()
    try:
        if setter(buffer) != 0:
            return False
        _jack_client_name = buffer
    finally:
        sd._initialize()
    return True


DURATIONS = 1 << 16  # callbacks whose durations are kept (5.8 minutes of 256-frame periods at 48 kHz)


# --- the consumer: a PortAudio stream --------------------------------------------------------------------------------
class AudioOutput:
    """A PortAudio output stream that plays an `SpscRing` (control thread: construct, start, stop, close).

    `device`: an index, a name substring (as in `live-synth devices`), or None for the default output. The stream
    runs at the device's default sample rate (read `samplerate` before building the ring and the resampler), in
    float32, with `channels` channels (default: all of the device's; a mono ring is copied to each), `blocksize`
    frames per callback (0: whatever the host API likes; JACK: its period) and PortAudio's "low" latency.
    """

    def __init__(
        self,
        device: str | int | None = None,
        *,
        channels: int | None = None,
        blocksize: int = 0,
        latency: str | float = "low",
        max_frames: int = 16384,
    ):
        sd = _sounddevice()
        if isinstance(device, str) and device.strip().isdigit():
            device = int(device)
        try:
            info = sd.query_devices(device, kind="output")
        except (ValueError, sd.PortAudioError) as error:
            if device is None:
                raise LiveSynthError("no default audio output (no sound card? start a JACK server: jackd -d dummy)")
            raise LiveSynthError(f"no audio output {device!r} ({error}); `live-synth devices` lists them") from None
        self.device_index: int = info["index"]
        self.device_name: str = info["name"]
        self.hostapi: str = sd.query_hostapis(info["hostapi"])["name"]
        self.samplerate = int(info["default_samplerate"])
        self.channels = channels or int(info["max_output_channels"])
        self.blocksize, self.latency = blocksize, latency
        self._scratch = np.zeros((max_frames, 1), np.float32)  # mono ring -> several channels, preallocated
        self._ring: SpscRing | None = None
        self._direct = False
        self._stream = None
        self.underflows = 0  # PortAudio reported an output underflow (the callback or the host was late)
        self.callbacks = 0
        self.frames = 0
        self.last_callback_ns = 0  # when the callback last ran (monotonic ns): a stream that stops calling is dead
        self.thread_id = 0  # the callback thread's native id, for its scheduling priority (live/priority.py)
        self.durations_ns = np.zeros(DURATIONS, np.int64)  # the last callbacks' own durations, by callback count
        self.duration_ns_max = 0
        self.gap_ns_max = 0  # the longest time from one callback's start to the next's (an xrun, a GIL wait)
        self.lost = False  # `stop` found the stream no longer called back (the device or server had gone)

    def start(self, ring: SpscRing) -> None:
        """Open the stream on `ring` (1 channel, or as many as the stream) and start playing."""
        sd = _sounddevice()
        self._attach(ring)
        try:
            self._stream = sd.OutputStream(
                samplerate=self.samplerate,
                blocksize=self.blocksize,
                device=self.device_index,
                channels=self.channels,
                dtype="float32",
                latency=self.latency,
                callback=self._callback,
            )
            self.last_callback_ns = time.monotonic_ns()
            self._stream.start()
        except sd.PortAudioError as error:
            self._stream = None
            raise LiveSynthError(f"cannot play on {self.device_name!r} ({self.hostapi}): {error}") from None

    def _attach(self, ring: SpscRing) -> None:
        ring_channels = ring.data.shape[1]
        if ring_channels not in (1, self.channels):
            raise ValueError(f"ring has {ring_channels} channels; the stream has {self.channels}")
        self._ring, self._direct = ring, ring_channels == self.channels

    def _callback(self, outdata: np.ndarray, frames: int, time_info, status) -> None:
        """PortAudio's real-time thread (with JACK: the JACK process thread). The contract:

        - copy `frames` samples from the ring into `outdata` (zeros where the ring is short: the ring counts that
          underrun) and bump counters. Nothing else: no logging, printing, locking, waiting, imports, torch/ORT;
        - no buffers are allocated here: the mono-to-channels scratch is preallocated (`max_frames`); what remains
          is what any Python callback costs (sounddevice's ndarray view of the C buffer, small ints and floats);
        - `status.output_underflow` (PortAudio or the host noticed that output was late) is counted in
          `underflows`; the callback never raises, so the stream never stops by itself. On JACK, PortAudio sets
          this flag on the callback after *any* xrun the server reports (pa_jack.c: `JackXRunCb` marks every
          stream; "Any way to tell which of these occurred?"), whichever client or the driver's own timer was
          late: there it counts server xruns, not our lateness; the ring's underruns count ours;
        - Python callbacks hold the GIL: a worker that keeps the GIL for longer than the period delays this
          callback (tools/bench_callback.py measures that);
        - it times itself: its own duration goes into a preallocated array (`callback_stats`: p50 / p99 / max
          against the period), the longest gap between two starts is kept (a skipped cycle, a wait for the GIL
          before this function was entered), and the first call records its thread id (`play` asks for real-time
          priority for that thread, live/priority.py).
        """
        ring, now_ns = self._ring, time.monotonic_ns()  # the clock stamp the worker places notes by
        if status.output_underflow:
            self.underflows += 1
        if self.callbacks:
            self.gap_ns_max = max(self.gap_ns_max, now_ns - self.last_callback_ns)
        else:
            self.thread_id = threading.get_native_id()
        self.last_callback_ns = now_ns
        if self._direct:
            ring.read_into(outdata, now_ns)
        else:
            scratch, done = self._scratch, 0
            while done < frames:  # one pass unless the host asks for more than max_frames
                n = min(frames - done, len(scratch))
                ring.read_into(scratch[:n], now_ns if done == 0 else 0)
                outdata[done : done + n] = scratch[:n]
                done += n
        took = time.monotonic_ns() - now_ns
        self.durations_ns[self.callbacks & (DURATIONS - 1)] = took
        self.duration_ns_max = max(self.duration_ns_max, took)
        self.callbacks += 1
        self.frames += frames

    def callback_stats(self) -> dict:
        """The callback's own duration (ms: p50, p99 over the last `DURATIONS` callbacks, max over all) against the
        period it must fit in, and the longest gap between two callbacks (control thread, any time)."""
        n = min(self.callbacks, DURATIONS)
        if not n:
            return {"callbacks": 0}
        took = self.durations_ns[:n] / 1e6
        period_ms = 1e3 * self.frames / self.callbacks / self.samplerate
        return {"callbacks": self.callbacks, "period_ms": round(period_ms, 3),
                "p50_ms": round(float(np.percentile(took, 50)), 4), "p99_ms": round(float(np.percentile(took, 99)), 4),
                "max_ms": round(self.duration_ns_max / 1e6, 4), "gap_max_ms": round(self.gap_ns_max / 1e6, 3)}

    @property
    def active(self) -> bool:
        return self._stream is not None and self._stream.active

    @property
    def output_latency(self) -> float:
        """Seconds from a sample leaving the callback to the DAC, as PortAudio reports it (0 before start)."""
        return float(self._stream.latency) if self._stream is not None else 0.0

    def stalled(self, after_s: float = 0.5) -> bool:
        """True when a started stream's callback has not run for `after_s` seconds: the device or its server is gone
        (a JACK server that died stops calling its clients; PortAudio reports nothing). A period is milliseconds."""
        return self._stream is not None and time.monotonic_ns() - self.last_callback_ns > after_s * 1e9

    def stop(self) -> None:
        """Stop and close the stream (control thread). Safe to call twice. A stalled stream is let go without
        PortAudio's stop and close, which wait forever on a dead JACK server (a futex no signal interrupts)."""
        if self._stream is not None:
            if self._still_called(0.25):
                self._stream.stop()
                self._stream.close()
            else:
                self.lost = True
            self._stream = None

    def _still_called(self, within_s: float) -> bool:
        """Whether the callback runs again within `within_s` (a live stream calls back every period)."""
        seen, deadline = self.last_callback_ns, time.monotonic() + within_s
        while self.last_callback_ns == seen:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True

    close = stop

    def __enter__(self) -> AudioOutput:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


class JackXruns:
    """Counts the JACK server's xruns (any client late, or the driver) and notices its shutdown at once, through a
    client of its own with no process callback: such a client is not in the graph, so it costs the graph nothing.

    Control thread: `open`, read `count` / `shutdown`, `close`. `open` returns None where the output is not JACK
    or JACK-Client is missing. After a shutdown `close` does nothing: libjack's close waits forever on a dead server.
    """

    def __init__(self, client):
        self.client, self.count, self.shutdown = client, 0, ""
        client.set_xrun_callback(self._xrun)
        client.set_shutdown_callback(self._shutdown)
        client.activate()

    @classmethod
    def open(cls, hostapi: str, name: str = "live-synth-xruns") -> JackXruns | None:
        if "JACK" not in hostapi:
            return None
        try:
            import jack

            return cls(jack.Client(name, no_start_server=True))
        except Exception:  # no JACK-Client, no libjack, no server: the count is simply not there
            return None

    def _xrun(self, delay_us: float) -> None:  # libjack's notification thread
        self.count += 1

    def _shutdown(self, status, reason: str) -> None:  # libjack's thread, when the server goes away
        self.shutdown = reason or "the server shut down"

    def close(self, server_alive: bool = True) -> None:
        if self.client is not None and server_alive and not self.shutdown:
            self.client.deactivate()
            self.client.close()
        self.client = None


# --- the producer side ---------------------------------------------------------------------------------------------
class Resampler:
    """Streaming 16 kHz mono float32 -> `out_rate`: a polyphase windowed-sinc FIR whose state is explicit and small.

    Why not soxr (what this used to be): the live loop rewinds the resampler to an earlier frame when a MIDI event
    makes it regenerate audio (rollback, `live/worker.py`), so the resampler's state must be a value that can be
    kept per frame and restored; soxr's stream state is opaque. And soxr's variable-rate engine held back a constant
    15 ms, a filter of `taps` input samples per phase holds back `delay` = taps / 2 input samples (1.5 ms at 48
    taps): the latency a player hears.

    `step(x, state) -> (y, state)` takes any number of whole 20 ms frames (320 samples) and returns exactly
    `out_rate / 50` samples per frame (an integer for every rate divisible by 50: 44.1, 48, 88.2, 96 kHz); the state
    (the last `taps - 1` input samples) is never modified, so a caller may keep the states of earlier frames.
    Output sample j of the stream is the input interpolated at time j / out_rate - delay / in_rate: a constant
    delay, no hold-back. The prototype filter is a Kaiser-windowed sinc (beta 8.6) cut at `cutoff` of the 8 kHz
    input Nyquist, each phase normalised to unit gain. Measured with the defaults at 48 and 44.1 kHz (tones, peak
    of a 2 s render): flat to 6 kHz, -1.2 dB at 7 kHz, -4.8 dB at 7.3 kHz, -13 dB at 7.6 kHz; images above 8 kHz
    at least 84 dB under the tone (soxr's HQ: flat to 7.5 kHz, images under -114 dB, 15 ms held back).
    """

    def __init__(self, out_rate: int, in_rate: int = SAMPLE_RATE, *, taps: int = 48, cutoff: float = 0.92):
        from math import gcd

        self.in_rate, self.out_rate = int(in_rate), int(out_rate)
        if (self.out_rate * HOP) % self.in_rate:
            raise LiveSynthError(f"device rate {out_rate} Hz: live-synth needs a rate divisible by 50 "
                                 "(a whole number of samples per 20 ms frame), e.g. 44100 or 48000")
        g = gcd(self.in_rate, self.out_rate)
        self.up, self.down = self.out_rate // g, self.in_rate // g
        self.taps = int(taps)
        self.ratio = self.out_rate / self.in_rate
        self.per_frame = self.out_rate * HOP // self.in_rate
        # prototype filter at the up-sampled rate, length taps * up, gain `up` (interpolation by zero-stuffing)
        n = np.arange(self.taps * self.up) - (self.taps * self.up - 1) / 2
        fc = cutoff * 0.5 * min(1.0, self.up / self.down) / self.up  # cycles per up-sampled sample
        h = 2 * fc * np.sinc(2 * fc * n) * np.kaiser(len(n), 8.6) * self.up
        # one frame's gather pattern: output j reads input base_j - k with coefficient h[phase_j + k * up]
        j = np.arange(self.per_frame)
        base, phase = (j * self.down) // self.up, (j * self.down) % self.up
        k = np.arange(self.taps)
        self._index = (self.taps - 1 + base)[:, None] - k[None, :]  # into [history, frame]
        coef = h[phase[:, None] + k[None, :] * self.up]
        self._coef = (coef / coef.sum(axis=1, keepdims=True)).astype(np.float32)  # unit gain at DC in every phase
        self.delay_in = (self.taps * self.up - 1) / 2 / self.up  # input samples
        self.delay = int(round(self.delay_in * self.ratio))  # output samples

    def init_state(self) -> np.ndarray:
        return np.zeros(self.taps - 1, np.float32)

    def step(self, x: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Resample whole frames `x` [k * 320] -> ([k * out_rate / 50], the next state)."""
        x = np.asarray(x, np.float32).reshape(-1)
        if len(x) % HOP:
            raise ValueError(f"the resampler takes whole 20 ms frames ({HOP} samples), got {len(x)}")
        ext = np.concatenate([state, x])
        out = np.empty(len(x) // HOP * self.per_frame, np.float32)
        for f in range(len(x) // HOP):
            out[f * self.per_frame : (f + 1) * self.per_frame] = np.einsum(
                "jk,jk->j", ext[f * HOP + self._index], self._coef)
        return out, ext[len(ext) - (self.taps - 1) :].copy()

    def resample(self, x: np.ndarray) -> np.ndarray:
        """One-shot (zero-padded to whole frames): what streaming equals."""
        x = np.asarray(x, np.float32).reshape(-1)
        padded = np.concatenate([x, np.zeros(-len(x) % HOP, np.float32)])
        return self.step(padded, self.init_state())[0][: round(len(x) * self.ratio)]


@dataclass
class Recorder:
    """`--record`: keeps exactly what was played, by ring position; writes the WAV atomically at `close()`.

    Worker thread only (never the audio callback). A rollback rewrites audio that has not been played yet, so the
    recorder is written by position (`write(position, samples)`) and cut back with the ring (`truncate`): what it
    holds at the end is what the ring held, sample for sample. Memory: 4 bytes per sample (11.5 MB/min at 48 kHz).
    """

    path: Path
    samplerate: int
    subtype: str = "PCM_16"
    _buffer: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32), repr=False)
    samples_written: int = 0  # the end of the recording (a ring position)

    def write(self, position: int, samples: np.ndarray) -> None:
        end = position + len(samples)
        if end > len(self._buffer):
            grown = np.zeros(max(end, 2 * len(self._buffer), 1 << 16), np.float32)
            grown[: self.samples_written] = self._buffer[: self.samples_written]
            self._buffer = grown
        self._buffer[position:end] = np.asarray(samples, np.float32).reshape(-1)
        self.samples_written = end

    def truncate(self, position: int) -> None:
        self.samples_written = min(self.samples_written, position)

    def audio(self) -> np.ndarray:
        """Everything recorded so far."""
        return self._buffer[: self.samples_written].copy()

    def close(self) -> Path:
        from live_synth.audio import write_wav_atomic

        write_wav_atomic(self.path, self.audio(), self.samplerate, subtype=self.subtype)
        return Path(self.path)


class OutputFeed:
    """The producer end of audio out (worker thread): 16 kHz mono frames -> resampler -> ring (and the recorder),
    with a position per frame so that a rollback can rewrite what has not been played.

    `push` appends; `rewind(position, state)` cuts the ring back to `position` (or to the first sample it may
    still rewrite, if that is later: `SpscRing.truncate`) and restores the resampler state that went with it; the
    next pushes then overwrite from there. Samples a rewind could not take back (they were within the ring's guard
    of the playhead) are skipped from the new audio, crossfaded over `crossfade` samples into what stays, and
    counted in `skipped_samples`. Samples that do not fit (an overfilled ring) are dropped and counted in
    `overflow_samples`, and not recorded: the recording is what played.
    """

    def __init__(self, ring: SpscRing, resampler: Resampler, recorder: Recorder | None = None, crossfade: int = 96):
        self.ring, self.resampler, self.recorder = ring, resampler, recorder
        self.state = resampler.init_state()
        self.overflow_samples = 0
        self.skipped_samples = 0
        self._skip = 0  # samples of the next pushes that stand for audio the ring could not take back
        self._seam = 0  # old samples kept in the ring past the cut, to crossfade from
        self.crossfade = crossfade
        self._fade = (np.arange(crossfade, dtype=np.float32) + 0.5) / crossfade

    @property
    def position(self) -> int:
        """The ring position the next pushed sample goes to."""
        return self.ring.write_index + self._skip

    def push(self, audio: np.ndarray) -> int:
        """Append 16 kHz audio (whole 20 ms frames); returns the device-rate samples that went into the ring."""
        y, self.state = self.resampler.step(audio, self.state)
        if self._skip:
            n = min(self._skip, len(y))
            self._skip -= n
            self.skipped_samples += n
            y = y[n:]
            if not self._skip and len(y) and self._seam:  # the seam: fade from the old audio into the new
                xf = min(self.crossfade, len(y), self._seam)
                old = self.ring.peek(self.ring.write_index, xf)
                y = y.copy()
                y[:xf] = old[:xf] * (1.0 - self._fade[:xf]) + y[:xf] * self._fade[:xf]
        position = self.ring.write_index
        written = self.ring.write(y)
        self.overflow_samples += len(y) - written
        if self.recorder is not None and written:
            self.recorder.write(position, y[:written])
        return written

    def rewind(self, position: int, state: np.ndarray, keep_until: int = 0) -> int:
        """Cut back to ring `position` with the resampler `state` that produced it, keeping the ring's audio before
        `keep_until` (and before its guard); returns the samples that are kept (skipped from the next pushes)."""
        end = self.ring.write_index
        cut = self.ring.truncate(max(position, keep_until))
        self.state = state
        self._skip = max(cut - position, 0)
        self._seam = end - cut  # the old samples still in memory after the cut
        if self.recorder is not None:
            self.recorder.truncate(cut)
        return self._skip
