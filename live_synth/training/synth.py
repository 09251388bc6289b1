"""Reference audio for training: MIDI -> 16 kHz mono float32 with a General MIDI soundfont, dry.

Two backends with one interface (`Renderer.render(midi_bytes) -> float32 [samples]`), chosen by `make_renderer`:

- "fluidsynth" (preferred, the default when the program is installed): the `fluidsynth` command-line program
  (Debian `fluidsynth`) with FluidR3_GM (Debian `fluid-soundfont-gm`). It is the reference the evaluation compares
  against. It renders stereo 32-bit float (no dither, so renders are reproducible sample for sample); we average the
  two channels.
- "tinysoundfont": the `tinysoundfont` wheel, with no system library: the fallback where apt is unavailable (the GPU
  machine). It ignores the sustain pedal, so this module applies CC64 itself (note-offs wait for the pedal to lift, as
  in FluidSynth). Its voices differ from FluidSynth's (interpolation, envelopes, no filter modulators), so the two
  backends' audio is similar but not equal: a dataset records its renderer in its manifest, and datasets made by
  different renderers should not be mixed or compared as if they were the same reference.

Reverb and chorus are OFF in both: training targets are dry, because reverb tails and chorus modulation are sound the
notes do not explain (training-notes.md). Velocity is kept as rendered (no normalisation per piece), so that loudness
answers to how hard a key is struck.

Length: every render lasts exactly `ceil((MIDI length + tail_s) * sample_rate)` samples, whatever the backend: the
MIDI's own length (its last event, end-of-track included) plus `tail_s` (1 s) of release, cut or zero-padded.
"""

from __future__ import annotations

import io
import math
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import mido
import numpy as np

from live_synth.constants import SAMPLE_RATE
from live_synth.errors import LiveSynthError, MissingDependencyError

DEFAULT_SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
SOUNDFONT_ENV = "LIVE_SYNTH_SOUNDFONT"  # another default soundfont, e.g. a small one carried to the GPU machine
RENDERERS = ("fluidsynth", "tinysoundfont")
TAIL_SECONDS = 1.0
# Output gains. FluidSynth's: the loudest of 60 procedural pieces peaked at 0.92 of full scale (median 0.29), so dense
# loud pieces rarely clip while soft ones stay far above the 16-bit floor (clipped samples are counted in the
# manifest). TinySoundFont's: on the same 60 pieces with FluidR3_GM its level is then FluidSynth's +0 dB (median;
# 10th-90th percentile -4.7..+5.1 dB: the two synthesizers weigh programs and velocities differently).
FLUIDSYNTH_GAIN = 0.5  # FluidSynth's linear master gain (its default is 0.2)
TINYSOUNDFONT_GAIN_DB = -14.5
INSTALL_HINT = (
    "install FluidSynth and FluidR3_GM (apt-get install fluidsynth fluid-soundfont-gm) "
    "or the fallback (pip install --no-deps tinysoundfont)"
)


class Renderer(Protocol):
    """MIDI bytes -> mono float32 audio at `sample_rate`. Call from the main or a worker thread/process."""

    name: str
    soundfont: Path
    sample_rate: int

    def render(self, midi: bytes) -> np.ndarray: ...

    def describe(self) -> dict: ...


def find_soundfont(path: str | os.PathLike | None = None) -> Path:
    """The soundfont to use: `path`, else $LIVE_SYNTH_SOUNDFONT, else FluidR3_GM. One-line error if it is missing."""
    chosen = Path(path or os.environ.get(SOUNDFONT_ENV) or DEFAULT_SOUNDFONT)
    if not chosen.is_file():
        hint = " (apt-get install fluid-soundfont-gm, or pass --soundfont)" if chosen == DEFAULT_SOUNDFONT else ""
        raise LiveSynthError(f"soundfont not found: {chosen}{hint}")
    return chosen


def available_renderers() -> list[str]:
    """The backends that can run here, preferred first."""
    found = []
    if shutil.which("fluidsynth"):
        found.append("fluidsynth")
    try:
        import tinysoundfont  # noqa: F401
    except ImportError:
        pass
    else:
        found.append("tinysoundfont")
    return found


def make_renderer(
    name: str | None = None, soundfont: str | os.PathLike | None = None, sample_rate: int = SAMPLE_RATE
) -> Renderer:
    """A renderer by name, or the preferred available one (FluidSynth, then TinySoundFont) when `name` is None."""
    if name is not None and name not in RENDERERS:
        raise LiveSynthError(f"unknown renderer {name!r}: choose one of {', '.join(RENDERERS)}")
    available = available_renderers()
    if name is None:
        if not available:
            raise MissingDependencyError(f"no MIDI renderer available: {INSTALL_HINT}")
        name = available[0]
    elif name not in available:
        hint = "apt-get install fluidsynth" if name == "fluidsynth" else "pip install --no-deps tinysoundfont"
        raise MissingDependencyError(f"renderer {name!r} is not available here ({hint})")
    font = find_soundfont(soundfont)
    if name == "fluidsynth":
        return FluidSynthRenderer(font, sample_rate)
    return TinySoundFontRenderer(font, sample_rate)


def midi_seconds(midi: bytes) -> float:
    """Length of a MIDI file in seconds: its last event, end-of-track included, through its tempo map."""
    return float(mido.MidiFile(file=io.BytesIO(midi)).length)


def render_length(midi: bytes, sample_rate: int = SAMPLE_RATE, tail_s: float = TAIL_SECONDS) -> int:
    """Samples every backend returns for `midi`."""
    return math.ceil((midi_seconds(midi) + tail_s) * sample_rate)


def _fit_length(audio: np.ndarray, length: int) -> np.ndarray:
    out = np.zeros(length, np.float32)
    out[: min(length, len(audio))] = audio[:length]
    return out


@dataclass
class FluidSynthRenderer:
    """The `fluidsynth` program in fast-render mode, reverb and chorus off, 32-bit float output."""

    soundfont: Path
    sample_rate: int = SAMPLE_RATE
    gain: float = FLUIDSYNTH_GAIN
    tail_s: float = TAIL_SECONDS
    name: str = "fluidsynth"

    def command(self, midi_path: Path, wav_path: Path) -> list[str]:
        return [
            shutil.which("fluidsynth") or "fluidsynth", "-n", "-i", "-q",
            "-R", "0", "-C", "0",  # reverb and chorus off: dry targets
            "-g", str(self.gain), "-r", str(self.sample_rate),
            "-O", "float", "-T", "wav", "-F", str(wav_path), str(self.soundfont), str(midi_path),
        ]  # fmt: skip

    def render(self, midi: bytes) -> np.ndarray:
        import soundfile as sf

        with tempfile.TemporaryDirectory(prefix="live-synth-render-") as folder:
            midi_path, wav_path = Path(folder) / "in.mid", Path(folder) / "out.wav"
            midi_path.write_bytes(midi)
            done = subprocess.run(self.command(midi_path, wav_path), capture_output=True, text=True)
            if done.returncode != 0 or not wav_path.exists():
                lines = (done.stderr or done.stdout).strip().splitlines() or [f"exit status {done.returncode}"]
                raise LiveSynthError(f"fluidsynth could not render the MIDI file: {lines[-1]}")
            audio, rate = sf.read(str(wav_path), dtype="float32", always_2d=True)
        if rate != self.sample_rate:
            raise LiveSynthError(f"fluidsynth wrote {rate} Hz instead of {self.sample_rate} Hz")
        return _fit_length(audio.mean(axis=1, dtype=np.float32), render_length(midi, self.sample_rate, self.tail_s))

    def describe(self) -> dict:
        version = subprocess.run(["fluidsynth", "--version"], capture_output=True, text=True).stdout.splitlines()
        return {"name": self.name, "version": version[0] if version else "?", "gain": self.gain, "reverb": False,
                "chorus": False, "tail_s": self.tail_s, "sample_rate": self.sample_rate}  # fmt: skip


@dataclass
class TinySoundFontRenderer:
    """TinySoundFont (pip `tinysoundfont`, used with --no-deps: its pyaudio dependency is for live playback only).

    The soundfont is parsed once per process and cloned for each render, so every render starts from a fresh synth
    (renders do not depend on what was rendered before). No reverb or chorus exists in TinySoundFont.
    """

    soundfont: Path
    sample_rate: int = SAMPLE_RATE
    gain_db: float = TINYSOUNDFONT_GAIN_DB
    tail_s: float = TAIL_SECONDS
    name: str = "tinysoundfont"
    _master: object = field(default=None, init=False, repr=False, compare=False)

    def __getstate__(self) -> dict:  # worker processes parse their own copy
        return {**self.__dict__, "_master": None}

    def _fresh_synth(self):
        from tinysoundfont import _tinysoundfont as tsf

        if self._master is None:
            try:
                self._master = tsf.SoundFont(str(self.soundfont))
            except Exception as error:  # noqa: BLE001 - the C++ loader raises a bare exception on a bad file
                raise LiveSynthError(f"tinysoundfont cannot load {self.soundfont}: {error}") from error
        synth = tsf.SoundFont(self._master)
        synth.set_output(tsf.OutputMode.Mono, self.sample_rate, self.gain_db)
        synth.set_max_voices(256)
        for channel in range(16):
            synth.channel_set_bank(channel, 128 if channel == 9 else 0)
            synth.channel_set_preset_number(channel, 0, channel == 9)
        return synth

    def render(self, midi: bytes) -> np.ndarray:
        synth = self._fresh_synth()
        length = render_length(midi, self.sample_rate, self.tail_s)
        audio = np.zeros(length, np.float32)
        pedal = _Pedal(synth)
        done, now = 0, 0.0
        for message in mido.MidiFile(file=io.BytesIO(midi)):
            now += message.time
            until = min(length, round(now * self.sample_rate))
            if until > done:
                synth.render(audio[done:until].view(np.uint8))
                done = until
            pedal.send(message)
        if done < length:
            synth.render(audio[done:].view(np.uint8))
        return audio

    def describe(self) -> dict:
        from importlib.metadata import version

        return {"name": self.name, "version": f"tinysoundfont {version('tinysoundfont')}", "gain_db": self.gain_db,
                "reverb": False, "chorus": False, "tail_s": self.tail_s, "sample_rate": self.sample_rate,
                "sustain": "applied by live_synth (tinysoundfont ignores CC64)"}  # fmt: skip


class _Pedal:
    """Sends MIDI messages to a TinySoundFont synth, applying the sustain pedal (CC64) that it ignores itself."""

    def __init__(self, synth):
        self.synth = synth
        self.down = [False] * 16
        self.held: list[set[int]] = [set() for _ in range(16)]  # keys released while the pedal was down

    def send(self, message: mido.Message) -> None:
        synth, kind = self.synth, message.type
        if kind == "note_on" and message.velocity > 0:
            if message.note in self.held[message.channel]:  # a re-strike ends the ringing note first
                self.held[message.channel].discard(message.note)
                synth.channel_note_off(message.channel, message.note)
            synth.channel_note_on(message.channel, message.note, message.velocity / 127.0)
        elif kind in ("note_on", "note_off"):
            if self.down[message.channel] and message.channel != 9:
                self.held[message.channel].add(message.note)
            else:
                synth.channel_note_off(message.channel, message.note)
        elif kind == "control_change" and message.control == 64:
            self._pedal(message.channel, message.value >= 64)
        elif kind == "control_change":
            synth.channel_midi_control(message.channel, message.control, message.value)
        elif kind == "program_change":
            synth.channel_set_preset_number(message.channel, message.program, message.channel == 9)
        elif kind == "pitchwheel":
            synth.channel_set_pitch_wheel(message.channel, message.pitch + 8192)

    def _pedal(self, channel: int, down: bool) -> None:
        self.down[channel] = down
        if not down:
            for key in sorted(self.held[channel]):
                self.synth.channel_note_off(channel, key)
            self.held[channel].clear()


def to_int16(audio: np.ndarray) -> tuple[np.ndarray, int]:
    """Float audio in [-1, 1] -> int16 (rounded, clipped) and the number of samples that had to be clipped."""
    scaled = np.round(np.asarray(audio, np.float64) * 32767.0)
    clipped = int(np.count_nonzero(np.abs(scaled) > 32767))
    return np.clip(scaled, -32767, 32767).astype(np.int16), clipped
