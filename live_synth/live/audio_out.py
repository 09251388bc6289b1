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
          `underflows`; the callback never raises, so the stream never stops by itself;
        - Python callbacks hold the GIL: a worker that keeps the GIL for longer than the period delays this
          callback (tools/bench_callback.py measures that).
        """
        if status.output_underflow:
            self.underflows += 1
        self.callbacks += 1
        self.frames += frames
        ring = self._ring
        if self._direct:
            ring.read_into(outdata)
            return
        scratch, done = self._scratch, 0
        while done < frames:  # one pass unless the host asks for more than max_frames
            n = min(frames - done, len(scratch))
            ring.read_into(scratch[:n])
            outdata[done : done + n] = scratch[:n]
            done += n

    @property
    def active(self) -> bool:
        return self._stream is not None and self._stream.active

    @property
    def output_latency(self) -> float:
        """Seconds from a sample leaving the callback to the DAC, as PortAudio reports it (0 before start)."""
        return float(self._stream.latency) if self._stream is not None else 0.0

    def stop(self) -> None:
        """Stop and close the stream (control thread). Safe to call twice."""
        if self._stream is not None:
            self._stream.stop()
            self._stream.close()
            self._stream = None

    close = stop

    def __enter__(self) -> AudioOutput:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


# --- the producer side ---------------------------------------------------------------------------------------------
@dataclass
class ResamplerState:
    """A resampler's stream state: soxr's filter memory and how many samples went in and came out."""

    stream: object  # soxr.ResampleStream
    samples_in: int = 0
    samples_out: int = 0


class Resampler:
    """Streaming 16 kHz mono float32 -> `out_rate`, with soxr (worker thread; explicit state: `step(x, state)`).

    soxr compensates its filter's group delay itself: the streamed output is time-aligned with the input (sample k
    of the input lands at k * out_rate / in_rate) and equals the one-shot output (`resample`) exactly, for any chunk
    sizes. What streaming costs is samples held back until enough input follows: `delay` is the most output
    samples the stream holds back, measured at construction with frame-sized (320-sample) chunks. Measured with
    python-soxr 1.1 (16 kHz -> 48 kHz):
    - `variable_rate=True` (default, soxr's VR engine): a constant 15 ms (720 samples at 48 kHz, 662 at 44.1 kHz)
      once 240 input samples went in; flat to 7 kHz (-4.3 dB at 7.5 kHz), images below -114 dB;
    - `variable_rate=False, quality="HQ"`: between 290 and 1757 samples (6-37 ms, 21 ms on average) depending on
      where its block boundary falls; flat to 7.5 kHz, images below -135 dB. The output equals soxr.resample.
    For a live synth the constant, shorter hold-back wins; the mel features stop at 8 kHz anyway.
    """

    def __init__(
        self, out_rate: int, in_rate: int = SAMPLE_RATE, *, quality: str = "HQ", variable_rate: bool = True
    ):
        try:
            import soxr
        except ImportError as error:  # pragma: no cover - soxr is a core dependency
            raise MissingDependencyError("resampling needs soxr: pip install soxr") from error
        self._soxr = soxr
        self.in_rate, self.out_rate = int(in_rate), int(out_rate)
        self.quality, self.variable_rate = quality, variable_rate
        self.ratio = self.out_rate / self.in_rate
        self.delay = self._measure_delay()

    def init_state(self) -> ResamplerState:
        stream = self._soxr.ResampleStream(
            self.in_rate, self.out_rate, 1, dtype="float32", quality=self.quality, vr=self.variable_rate
        )
        return ResamplerState(stream)

    def step(self, x: np.ndarray, state: ResamplerState, last: bool = False) -> tuple[np.ndarray, ResamplerState]:
        """Resample the next chunk `x` [n] (any n, also 0); `last=True` flushes what is held back. Returns the
        output that is ready and the same state, advanced."""
        x = np.ascontiguousarray(x, np.float32).reshape(-1)
        y = state.stream.resample_chunk(x, last=last)
        state.samples_in += len(x)
        state.samples_out += len(y)
        return y, state

    def flush(self, state: ResamplerState) -> tuple[np.ndarray, ResamplerState]:
        return self.step(np.zeros(0, np.float32), state, last=True)

    def held_back(self, state: ResamplerState) -> float:
        """Output samples owed for the input so far that the stream has not produced yet."""
        return state.samples_in * self.ratio - state.samples_out

    def resample(self, x: np.ndarray) -> np.ndarray:
        """One-shot: the whole signal through a fresh stream (what streaming equals)."""
        y, state = self.step(x, self.init_state())
        tail, _ = self.flush(state)
        return np.concatenate([y, tail])

    def _measure_delay(self) -> int:
        state, worst = self.init_state(), 0.0
        silence = np.zeros(HOP, np.float32)
        for _ in range(2 * self.in_rate // HOP):  # two seconds: several of HQ's block cycles
            self.step(silence, state)
            worst = max(worst, self.held_back(state))
        return int(np.ceil(worst - 1e-6))


@dataclass
class Recorder:
    """`--record`: keeps exactly what the producer wrote to the ring; writes the WAV atomically at `close()`.

    Worker thread only (never the audio callback). Memory: 4 bytes per sample (11.5 MB per minute at 48 kHz)."""

    path: Path
    samplerate: int
    subtype: str = "PCM_16"
    _chunks: list[np.ndarray] = field(default_factory=list, repr=False)
    samples_written: int = 0

    def write(self, samples: np.ndarray) -> None:
        self._chunks.append(np.array(samples, np.float32, copy=True))
        self.samples_written += len(samples)

    def audio(self) -> np.ndarray:
        """Everything recorded so far, [samples] or [samples, channels]."""
        return np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.float32)

    def close(self) -> Path:
        from live_synth.audio import write_wav_atomic

        write_wav_atomic(self.path, self.audio(), self.samplerate, subtype=self.subtype)
        return Path(self.path)


class OutputFeed:
    """The producer end of audio out (worker thread): 16 kHz mono -> resampler -> ring, and the recorder.

    `push` returns how many device-rate samples went into the ring; samples that did not fit (the worker
    overfilled the ring) are dropped, counted in `overflow_samples`, and not recorded: the recording is what
    played.
    """

    def __init__(self, ring: SpscRing, resampler: Resampler, recorder: Recorder | None = None):
        self.ring, self.resampler, self.recorder = ring, resampler, recorder
        self.state = resampler.init_state()
        self.overflow_samples = 0

    def push(self, audio: np.ndarray, last: bool = False) -> int:
        y, self.state = self.resampler.step(audio, self.state, last=last)
        written = self.ring.write(y)
        self.overflow_samples += len(y) - written
        if self.recorder is not None and written:
            self.recorder.write(y[:written])
        return written
