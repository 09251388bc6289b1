"""One interface between the model families and what uses them: `render`, `play`, `bench` and the tools.

    synth = load_synth("default", SynthOptions(engine="onnx"))
    mel = synth.render(notes)                 # a whole song, offline
    stream = synth.live_stream(hop=4)         # the live worker's generator

Two families sit behind it, siblings (architecture.md):
- `WindowSynth`: the T5 encoders + FiLM decoder of the published weights (and the project's first default model):
  token windows, a sampler over whole windows, live by continuation or inpainting (`window_stream.py`);
- `CausalSynth`: the causal frame model (`model/causal.py`): one frame per engine step, live one frame at a time
  with rewind for rollback (`causal_stream.py`).
Each family's policy lives here too: its live defaults (`live_hop`, `live_lead_ms`, `declares_delay`), its export
(`export`: graphs or plans, checked against torch), what a benchmark times (`time_parts`) and whether it makes one
frame at a time (`frame_by_frame`). Neither the CLI, the live session, the benchmarks nor the tools branch on the
family; they ask the synth.

Also here, below the CLI so that imports run one way: which model "default" means (`resolve_model_spec`), the
package's own files (`packaged_path`) and reading a song (`load_song`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Protocol

import numpy as np

from live_synth.constants import FRAME_RATE, HOP, SAMPLE_RATE
from live_synth.errors import LiveSynthError, MidiError
from live_synth.midi import NoteSequence

DEFAULT_MODEL = "default"
SHIPPED = {DEFAULT_MODEL: "default_model"}  # names of the packaged models
FALLBACK_PRESET = "live"  # the shipped model's shape; used with random weights, and said so, if it is missing
RENDER_STEPS = 8  # sampling steps when neither --steps nor the model's config (default_steps) says (window family)
PLAY_STEPS = 4
WARMUP = 48  # frames a chunk of a causal offline render starts early (its history; causal_stream.render_events)
TAIL_FRAMES = 50  # a causal render goes on 1 s past the last note's end: the release tail (the data's renders have it)


def packaged_path(name: str) -> Path:
    return Path(str(resources.files("live_synth") / "assets" / name))


def resolve_model_spec(spec: str) -> tuple[str, str | None]:
    """(what to load, a warning to print or None). "default" is the shipped model when the package has one."""
    if spec not in SHIPPED:
        return spec, None
    shipped = packaged_path(SHIPPED[spec])
    if (shipped / "model.safetensors").is_file():
        return str(shipped), None
    if spec != DEFAULT_MODEL:
        raise LiveSynthError(f"this package ships no {spec!r} model ({shipped} is missing)")
    return FALLBACK_PRESET, (
        f"no trained default model is shipped yet: using RANDOM weights (preset '{FALLBACK_PRESET}') and "
        "the Griffin-Lim vocoder. Expect noise shaped by the notes' timing, not music. "
        "Pass --model PATH to use trained weights (e.g. a google/music-spectrogram-diffusion folder)."
    )


def load_song(path: str) -> NoteSequence:
    """A MIDI file's notes with the sustain pedal applied; one-line MidiError if it has none."""
    from live_synth.midi import apply_sustain, read_midi

    notes = read_midi(path)
    if notes.is_empty:
        raise MidiError(f"{path}: contains no notes")
    return apply_sustain(notes)


def song_frames(ns: NoteSequence) -> int:
    """Frames a render of `ns` has: the reference's count, one past the last note's end."""
    return int(ns.total_time * SAMPLE_RATE) // HOP + 1


@dataclass(frozen=True)
class SynthOptions:
    engine: str = "auto"  # each family says what auto is (`Synth.auto_engine`)
    device: str = "cpu"
    dtype: str = "float32"
    engine_dir: str | None = None
    cuda_graph: bool = False
    steps: int | None = None  # None: the model's default_steps, else the family's fallback
    sampler: str = "dpmpp"  # window family only
    guidance: float = 1.0  # window family only
    seed: int = 0
    chunks: int = 0  # causal render: songs cut into this many chunks rendered as one batch (0: by length)


class LiveStream(Protocol):
    """What the live worker drives (generation thread only)."""

    frame: int  # the next frame to generate
    hop: int  # frames per `generate`
    steps: int  # sampling steps now (the worker lowers it when ticks run late)
    max_steps: int
    can_rewind: bool

    def generate(self, notes) -> np.ndarray:
        """The next `hop` log-mel frames [hop, 128] from a `live.notes.NoteState`."""

    def rewind(self, frame: int) -> None:
        """Regenerate from `frame` on (only where `can_rewind`)."""

    def earliest(self) -> int:
        """The oldest frame `rewind` accepts."""

    def lookahead_frames(self) -> int:
        """How far past a frame's start its notes must be known, in frames."""


@dataclass(frozen=True)
class ExportResult:
    """What `Synth.export` built (`folder`: ONNX graphs or TensorRT plans) and how it compares with torch fp32."""

    folder: Path
    report: object  # engines.parity.ParityReport
    bound: float  # the largest relative error that passes (engines/parity.py says why each bound)

    @property
    def passes(self) -> bool:
        return self.report.passes(self.bound)


PRECISION_DTYPES = {"fp16": "float16", "bf16": "bfloat16", "fp32": "float32"}


def median_ms(fn, repeats: int) -> float:
    import statistics
    import time

    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


class Synth:
    family: str
    steps: int
    live_hop: int  # frames per live tick unless asked (`play --hop`)
    declares_delay: bool  # live notes sound at arrival + a declared delay D (rollback), else at the generated end
    frame_by_frame: bool  # one frame per engine step from the model's own state: render == live, rewindable

    def __init__(self, loaded, options: SynthOptions, warning: str | None):
        self.loaded, self.options = loaded, options
        self.model, self.config = loaded.model, loaded.model.config
        self.warnings = [warning] if warning else []
        if warning is None and loaded.random_weights:
            self.warnings.append(f"model {loaded.source!r} has RANDOM weights: expect noise, not music")

    @property
    def source(self) -> str:
        return self.loaded.source

    @property
    def vocoder_path(self):
        return self.loaded.vocoder_path

    def render(self, ns: NoteSequence, progress=None, seed: int | None = None) -> np.ndarray:
        """Natural-log mel [frames, 128] of a song (sustain applied); `seed`: the options' seed unless given."""
        raise NotImplementedError

    def song_warnings(self, ns: NoteSequence, name: str) -> list[str]:
        return []

    @staticmethod
    def auto_engine(device: str) -> str:
        """The engine `auto` picks for this family on `device` (`SynthOptions.engine`)."""
        return "torch"  # the window family's live defaults were measured with torch

    def render_morph(self, ns: NoteSequence, curve, progress=None) -> np.ndarray:
        """`render --morph`: natural-log mel of a song with program A's timbre morphed towards B's along `curve`
        (engines/morph.py)."""
        raise LiveSynthError(f"--morph needs a causal-family model (the default): the {self.family} family has no "
                             "per-instrument tables to interpolate")

    def live_stream(self, hop: int, strategy: str | None = None) -> LiveStream:
        raise NotImplementedError

    def live_lead_ms(self, delay_ms: float, ahead: int) -> float:
        """Audio kept generated ahead of the playhead (ms) when `play --lead-ms` is not given, for a declared delay
        `delay_ms` and `ahead` speculative frames (the causal family; the window family declares no delay)."""
        raise NotImplementedError

    def export(self, root: Path, engine: str, precision: str = "fp16", progress=None) -> ExportResult:
        """Build `engine`'s graphs (onnx) or plans (tensorrt) under `root` and check them against torch fp32 on
        random inputs; the caller decides what a failed check means (`live-synth export` exits 1)."""
        raise NotImplementedError

    def time_parts(self, repeats: int) -> dict[str, float]:
        """Median ms of the engine's operations at batch 1 (`encode_cold`, `encode_warm`: NaN where the family has
        none; `step`: one denoise call, or one frame with its sampling steps), after `warm_up`."""
        raise NotImplementedError

    @property
    def sampler_name(self) -> str:
        return self.options.sampler

    def warm_up(self) -> None:
        self.engine.warm_up()

    def describe(self) -> str:
        return f"{self.family} family, {self.steps} steps, engine {self.engine.name}"


class WindowSynth(Synth):
    family = "window"
    live_hop = 4  # 80 ms: the window family's live defaults were measured at hop 4 (BENCHMARKS.md)
    declares_delay = False
    frame_by_frame = False
    LEAD_MS = 200.0  # ring fill target: a window tick must finish before the ring drains

    def __init__(self, loaded, options: SynthOptions, warning: str | None):
        from engines.select import load_engine
        from live_synth.sampling.samplers import make_sampler

        super().__init__(loaded, options, warning)
        make_sampler(options.sampler, 1)  # an unknown sampler is one line, before the engine is built
        self.steps = self.config.sampling_steps(options.steps, RENDER_STEPS)
        self.engine = load_engine(options.engine, self.model, device=options.device, dtype=options.dtype,
                                  root=options.engine_dir, cuda_graph=options.cuda_graph)
        self._song: tuple[NoteSequence, object] | None = None  # (the last song, its windows)

    def _windows(self, ns: NoteSequence):
        """The song's windows, kept for the last song (`song_warnings` then `render` tokenize once). Kept by the
        object itself, not its id(): a new song may reuse a freed song's id."""
        from live_synth.render import song_windows

        if self._song is None or self._song[0] is not ns:
            self._song = (ns, song_windows(ns, self.config))
        return self._song[1]

    def song_warnings(self, ns: NoteSequence, name: str) -> list[str]:
        song = self._windows(ns)
        if not song.dropped_tokens:
            return []
        return [f"{name}: {song.overflowed_segments} window(s) hold more than {self.config.max_tokens - 1} tokens; "
                f"{song.dropped_tokens} token(s) beyond the notes encoder's length were dropped"]

    def render(self, ns: NoteSequence, progress=None, seed: int | None = None) -> np.ndarray:
        import torch

        from live_synth.render import render_mel
        from live_synth.sampling.samplers import make_sampler

        song = self._windows(ns)
        o = self.options
        generator = torch.Generator().manual_seed(o.seed if seed is None else seed)
        return render_mel(self.engine, song.segments, make_sampler(o.sampler, self.steps), o.guidance,
                          generator, on_segment=progress, rolls=song.rolls)

    def live_stream(self, hop: int, strategy: str | None = None, sampler: str = "ddim") -> LiveStream:
        from live_synth.window_stream import LiveGenerator, LivePolicy

        strategy = strategy or ("inpaint" if self.config.target_length >= 256 else "continuation")
        steps = self.config.sampling_steps(self.options.steps, PLAY_STEPS)
        return LiveGenerator(self.engine, LivePolicy(hop, steps, sampler, strategy, self.options.guidance),
                             seed=self.options.seed)

    def live_lead_ms(self, delay_ms: float, ahead: int) -> float:
        return self.LEAD_MS

    def export(self, root: Path, engine: str, precision: str = "fp16", progress=None) -> ExportResult:
        from engines.onnx_export import export_onnx
        from engines.parity import RELATIVE_BOUNDS, check_engine
        from live_synth.engine_cache import weights_fingerprint

        fingerprint = weights_fingerprint(self.model)
        onnx_dir = export_onnx(self.model, root / "onnx", progress=progress)
        if engine == "onnx":
            from engines.ort_engine import OnnxEngine

            report = check_engine(OnnxEngine(onnx_dir, fingerprint=fingerprint), self.model)
            return ExportResult(onnx_dir, report, RELATIVE_BOUNDS["float32"])
        from engines.tensorrt_engine import TensorRTEngine, build_plans
        from engines.torch_engine import TorchEngine

        plans = build_plans(onnx_dir, root / f"tensorrt-{precision}", precision, progress=progress)
        report = check_engine(TensorRTEngine(plans, fingerprint), self.model,
                              reference=TorchEngine(self.model, device="cuda"))
        return ExportResult(plans, report, RELATIVE_BOUNDS[PRECISION_DTYPES[precision]])

    def time_parts(self, repeats: int) -> dict[str, float]:
        """On the demo's windows; a cold encode runs the notes encoder (its cached output dropped first)."""
        import torch

        from live_synth.render import context_window, real_length, song_windows

        cfg, engine = self.config, self.engine
        song = song_windows(load_song(str(packaged_path("demo.mid"))), cfg)
        gen = torch.Generator().manual_seed(0)
        windows = [torch.tensor([list(s[: real_length(s)])]) for s in song.segments]
        rolls = [torch.from_numpy(r)[None] for r in song.rolls] if song.rolls else [None] * len(windows)
        context, mask = context_window(torch.rand(cfg.context_length, 128) * 8 - 6, cfg.context_length)
        k = iter(range(10**9))

        def cold():
            i = next(k) % len(windows)
            engine.forget_notes()
            return engine.encode(windows[i], context, mask, roll=rolls[i])

        encode_cold = median_ms(cold, repeats)
        memory = engine.encode(windows[0], context, mask, roll=rolls[0])
        encode_warm = median_ms(lambda: engine.encode(windows[0], context, mask, roll=rolls[0]), repeats)
        z = torch.randn(1, cfg.target_length, 128, generator=gen)
        step = median_ms(lambda: engine.denoise(z, 0.5, memory), repeats)
        return {"encode_cold": encode_cold, "encode_warm": encode_warm, "step": step}

    def describe(self) -> str:
        return f"window family, {self.options.sampler} {self.steps} steps, engine {self.engine.name}"


class CausalSynth(Synth):
    family = "causal"
    live_hop = 1  # one 20 ms frame per tick: a note waits for no hop, and rollback regenerates few frames
    declares_delay = True
    frame_by_frame = True

    def __init__(self, loaded, options: SynthOptions, warning: str | None):
        from engines.select import load_frame_engine

        super().__init__(loaded, options, warning)
        self.steps = self.config.sampling_steps(options.steps)
        self.engine = load_frame_engine(options.engine, self.model, device=options.device, dtype=options.dtype,
                                        root=options.engine_dir)

    def warm_up(self) -> None:
        self.engine.warm_up(self.steps)

    @staticmethod
    def auto_engine(device: str) -> str:
        from engines.select import auto_frame_engine

        return auto_frame_engine(device)

    def render_morph(self, ns: NoteSequence, curve, progress=None) -> np.ndarray:
        from engines.morph import MorphEngine
        from live_synth.causal_stream import render_events
        from live_synth.midi.events import NoteEvents

        engine = MorphEngine(self.engine, curve)  # one frame at a time: the curve is read per frame
        try:
            return render_events(engine, NoteEvents.from_sequence(ns), song_frames(ns) + TAIL_FRAMES, self.steps,
                                 self.options.seed, chunks=1, progress=progress)
        finally:
            engine.close()

    def render(self, ns: NoteSequence, progress=None, seed: int | None = None) -> np.ndarray:
        from live_synth.causal_stream import render_events
        from live_synth.midi.events import NoteEvents

        frames = song_frames(ns) + TAIL_FRAMES  # causal: earlier frames do not depend on it (only the chunk split moves)
        # Up to 16 chunks side by side, each starting WARMUP frames early (measured on the demo: 21.7x real time
        # instead of 8.1x sequential; seams no more of a jump than the same frames of a sequential render, 0.76
        # against 0.71; log-mel distance to the sequential render 0.027, level +0.07 dB; tools/seam_check.py).
        chunks = self.options.chunks or max(1, min(16, frames // 40))
        return render_events(self.engine, NoteEvents.from_sequence(ns), frames, self.steps,
                             self.options.seed if seed is None else seed, chunks=chunks, warmup=WARMUP,
                             progress=progress)

    def live_stream(self, hop: int = 1, strategy: str | None = None, sampler: str | None = None) -> LiveStream:
        from live_synth.causal_stream import CausalLiveStream

        return CausalLiveStream(self.engine, self.steps, self.options.seed, hop=hop)

    def live_lead_ms(self, delay_ms: float, ahead: int) -> float:
        return delay_ms + ahead * 1000.0 / FRAME_RATE  # the delay, then `ahead` speculative frames

    @property
    def sampler_name(self) -> str:
        return "causal DDIM"

    def export(self, root: Path, engine: str, precision: str = "fp16", progress=None) -> ExportResult:
        from engines.ort_frame import OrtFrameEngine, export_frame_onnx
        from engines.parity import FRAME_BOUND, RELATIVE_BOUNDS, check_frame_engine
        from live_synth.engine_cache import weights_fingerprint

        fingerprint = weights_fingerprint(self.model)
        onnx_dir = export_frame_onnx(self.model, root / "onnx-causal", progress=progress)
        if engine == "onnx":
            report = check_frame_engine(OrtFrameEngine(onnx_dir, fingerprint=fingerprint), self.model)
            return ExportResult(onnx_dir, report, FRAME_BOUND)
        from engines.tensorrt_engine import TensorRTFrameEngine, build_frame_plans

        plans = build_frame_plans(onnx_dir, root / f"tensorrt-causal-{precision}", precision, progress=progress)
        trt = TensorRTFrameEngine(plans, [s.numpy() for s in self.model.initial_state(1)])
        return ExportResult(plans, check_frame_engine(trt, self.model),
                            max(FRAME_BOUND, RELATIVE_BOUNDS[PRECISION_DTYPES[precision]]))

    def time_parts(self, repeats: int) -> dict[str, float]:
        """One frame step at batch 1 with the synth's sampling steps, on random inputs (no encoder: NaN)."""
        from live_synth.model.frame_features import FEATURES

        engine, nan = self.engine, float("nan")
        rng = np.random.default_rng(0)
        state = engine.initial_state()
        slots = np.zeros((1, self.config.slots, FEATURES), np.float32)
        prev = rng.uniform(-1, 0, (1, 128)).astype(np.float32)
        noise = rng.standard_normal((1, 2, 128)).astype(np.float32)
        step = median_ms(lambda: engine.step(slots, prev, state, noise, self.steps), repeats)
        return {"encode_cold": nan, "encode_warm": nan, "step": step}


def load_synth(spec: str, options: SynthOptions = SynthOptions()) -> Synth:
    """The synth for a model spec (a folder, a preset, or "default"); one-line errors for bad models or engines."""
    from live_synth.model import load_model
    from live_synth.model.causal import CausalModel

    path, warning = resolve_model_spec(spec)
    loaded = load_model(path, seed=options.seed)
    cls = CausalSynth if isinstance(loaded.model, CausalModel) else WindowSynth
    options = replace(options, engine=cls.auto_engine(options.device) if options.engine == "auto" else options.engine)
    return cls(loaded, options, warning)


def check_engine_available(name: str) -> None:
    """A missing optional package for an engine is one line with the install hint, before any work."""
    if name == "onnx":
        for module in ("onnx", "onnxruntime"):
            try:
                __import__(module)
            except ImportError:
                raise LiveSynthError(f"--engine onnx needs the onnx extra: pip install 'live-synth[onnx]' "
                                     f"(missing {module})") from None
