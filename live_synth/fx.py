"""The effects chain on live-synth's output: real effects hosted with pedalboard (Spotify's JUCE-based library).

A chain is a TOML file (or a shipped preset: `hall`, `room`, `none`, in assets/fx/):

    tail_seconds = 4.0              # how long `render` keeps going after the music (reverb and delay tails)

    [[effect]]                      # applied in order
    type = "reverb"                 # reverb, chorus, delay, compressor, limiter, gain, highpass, lowpass, vst3
    room_size = 0.85                # the effect's parameters by name (pedalboard's names)

    [[effect]]
    type = "vst3"
    path = "/usr/lib/vst3/ZamComp.vst3"
    [effect.parameters]             # the plugin's own parameters by name (a wrong name's error lists them all)
    threshold_db = -20.0

A wrong file, an unknown effect or parameter, a value the effect refuses, or a plugin that does not load is one
`LiveSynthError` line naming the file and the effect: `render` and `play` load the chain before anything else.

Offline, `process` runs the whole song (plus `tail_seconds` of silence) through the chain. Live, `FxStage` runs it
in blocks on a thread of the audio process, never in the audio callback, and only on audio that can no longer be
rolled back: it is the consumer of the generation ring (a sample it has read is final, `SpscRing.truncate`), and
it feeds the audio callback through a second ring that it keeps `blocks` blocks ahead. Its latency (that fill, plus
what the plugins report) is added to what `play` declares. Effects keep their state across blocks (a reverb tail
goes on), and the block size does not change the output (tested: blocks of 1, 64, 65, 8192 and one piece).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from live_synth.errors import LiveSynthError, MissingDependencyError

PRESETS = ("hall", "room", "none")
BUILTINS = {  # TOML type -> pedalboard class name
    "reverb": "Reverb", "chorus": "Chorus", "delay": "Delay", "compressor": "Compressor", "limiter": "Limiter",
    "gain": "Gain", "highpass": "HighpassFilter", "lowpass": "LowpassFilter",
}  # fmt: skip


def _pedalboard():
    try:
        import pedalboard
    except ImportError:
        raise MissingDependencyError("--fx needs pedalboard: pip install 'live-synth[fx]'") from None
    return pedalboard


def _toml(path: Path) -> dict:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise LiveSynthError(f"{path}: no such effects chain file (presets: {', '.join(PRESETS)})") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise LiveSynthError(f"{path}: not a readable TOML effects chain ({exc})") from None


@dataclass
class FxChain:
    board: object  # pedalboard.Pedalboard
    name: str
    tail_s: float = 0.0
    latency_samples: int = 0  # what the plugins report (at the rate the chain was prepared for)
    effects: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.effects

    def process(self, audio: np.ndarray, rate: int, reset: bool = True) -> np.ndarray:
        """Mono float32 audio through the chain (state kept across calls when `reset` is False)."""
        out = self.board(np.asarray(audio, np.float32)[None], rate, reset=reset)
        return np.ascontiguousarray(out[0], np.float32)

    def render(self, audio: np.ndarray, rate: int) -> np.ndarray:
        """Offline: the whole song and `tail_s` of silence after it, from a fresh state."""
        tail = np.zeros(int(round(self.tail_s * rate)), np.float32)
        return self.process(np.concatenate([np.asarray(audio, np.float32), tail]), rate, reset=True)

    def describe(self) -> str:
        return f"{self.name}: " + (" -> ".join(self.effects) or "no effects")


def _effect(pb, entry: dict, where: str):
    kind = str(entry.get("type", "")).lower()
    if kind == "vst3":
        path = entry.get("path")
        if not path:
            raise LiveSynthError(f"{where}: a vst3 effect needs path = \"/path/plugin.vst3\"")
        try:
            plugin = pb.load_plugin(str(path))
        except Exception as exc:  # noqa: BLE001 - plugin loaders raise anything; all mean "does not load"
            raise LiveSynthError(f"{where}: the plugin {path} does not load ({' '.join(str(exc).split())})") from None
        params = entry.get("parameters", {})
        extra = sorted(set(entry) - {"type", "path", "parameters"})
        if extra:
            raise LiveSynthError(f"{where}: unknown keys {extra} (a vst3 effect takes path and [parameters])")
        known = set(plugin.parameters.keys())
        label = f"vst3 {Path(path).stem}"
    elif kind in BUILTINS:
        plugin = getattr(pb, BUILTINS[kind])()
        params = {k: v for k, v in entry.items() if k != "type"}
        known = {a for a in dir(plugin) if not a.startswith("_") and not callable(getattr(plugin, a))
                 and a not in ("is_effect", "is_instrument")}
        label = kind
    else:
        raise LiveSynthError(f"{where}: unknown effect type {kind!r} (choose {', '.join([*BUILTINS, 'vst3'])})")
    for name, value in params.items():
        if name not in known:
            raise LiveSynthError(f"{where}: {label} has no parameter {name!r} (it has {', '.join(sorted(known))})")
        try:
            setattr(plugin, name, value)
        except (ValueError, TypeError) as exc:
            raise LiveSynthError(f"{where}: {label}: {name} = {value!r} refused ({' '.join(str(exc).split())})") \
                from None
    return plugin, label


def load_chain(spec: str) -> FxChain:
    """A preset name or a TOML file -> FxChain; every problem is one LiveSynthError line."""
    if spec in PRESETS:
        path = Path(str(resources.files("live_synth") / "assets" / "fx" / f"{spec}.toml"))
    else:
        path = Path(spec)
    data = _toml(path)
    unknown = sorted(set(data) - {"effect", "tail_seconds"})
    if unknown:
        raise LiveSynthError(f"{path}: unknown keys {unknown} (a chain has tail_seconds and [[effect]] tables)")
    entries = data.get("effect", [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise LiveSynthError(f"{path}: effects must be [[effect]] tables")
    tail = data.get("tail_seconds", 0.0)
    if not isinstance(tail, (int, float)) or not 0 <= tail <= 60:
        raise LiveSynthError(f"{path}: tail_seconds must be a number of seconds between 0 and 60")
    if not entries:
        return FxChain(None, spec if spec in PRESETS else path.name, float(tail))
    pb = _pedalboard()
    plugins, labels = [], []
    for i, entry in enumerate(entries):
        plugin, label = _effect(pb, entry, f"{path}: effect {i + 1}")
        plugins.append(plugin)
        labels.append(label)
    latency = sum(int(getattr(p, "reported_latency_samples", 0) or 0) for p in plugins)
    return FxChain(pb.Pedalboard(plugins), spec if spec in PRESETS else path.name, float(tail), latency, labels)


class FxStage(threading.Thread):
    """Audio process: generation ring -> chain -> output ring, in blocks, kept `blocks` blocks ahead of the device.

    The one consumer of `source` and the one producer of `sink` (the audio callback reads `sink`). Never blocks the
    callback: if the chain falls behind, the callback underruns on `sink` (counted there) like it would on the
    generation ring."""

    def __init__(self, chain: FxChain, source, sink, rate: int, block: int = 256, blocks: int = 2):
        super().__init__(name="live-synth-fx", daemon=True)
        self.chain, self.source, self.sink, self.rate = chain, source, sink, rate
        self.block, self.blocks = block, blocks
        self.stop_event = threading.Event()
        self._buffer = np.zeros((block, 1), np.float32)
        self.error = ""
        self.processed = 0

    @property
    def latency_ms(self) -> float:
        return 1000.0 * (self.block * self.blocks + self.chain.latency_samples) / self.rate

    def prime(self) -> None:
        """Fill the output ring before the stream starts (the same blocks the thread would make)."""
        while self.sink.available() < self.block * self.blocks:
            self._step(stamp=False)

    def _step(self, stamp: bool = True) -> None:
        # stamp the read with the time the device will take these samples: now plus what the sink still holds
        # (not while priming: the device has not started)
        now_ns = time.monotonic_ns() + int(1e9 * self.sink.available() / self.rate) if stamp else 0
        self.source.read_into(self._buffer, now_ns)
        out = self.chain.process(self._buffer[:, 0], self.rate, reset=False)
        self.sink.write(out)
        self.processed += len(out)

    def run(self) -> None:
        pause = self.block / self.rate / 4
        try:
            while not self.stop_event.is_set():
                if self.sink.available() < self.block * self.blocks:
                    self._step()
                else:
                    time.sleep(pause)
        except Exception as exc:  # noqa: BLE001 - shown by the control loop, which then stops
            self.error = f"{type(exc).__name__}: {exc}"

    def stop(self) -> None:
        self.stop_event.set()
        if self.is_alive():
            self.join(timeout=2.0)
