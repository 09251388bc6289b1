"""`live-synth play`: wire MIDI in → generation (note state, generator, vocoder, resampler) → ring → audio out.

Two processes by default. The audio process (the caller of `LiveSession.run`) owns the PortAudio stream, whose
Python callback copies samples out of an `SpscRing` in shared memory, and a control loop that only reads counters.
The generation process (`live_synth.live.engine_process`, spawned) owns everything heavy: model, engine, MIDI input,
note state, the worker, the streaming vocoder and resampler, the recorder; it writes into the shared ring. Why:
in one process the callback needs the GIL within each period (5.3 ms at 48 kHz / 256) while torch and the worker's
Python code hold it; tools/bench_callback.py measured device underflows that way even with a 1 ms switch interval
(BENCHMARKS.md). `--in-process` keeps the old single-process layout (threads), e.g. for debugging.

Order of start-up (heavy work before going live): open the audio device (its rate sizes the ring and the resampler),
then on the generation side load the model and vocoder, warm the engine up, open the MIDI input, pre-fill the ring
to the lead target with the sound of silence (so start-up costs no underruns); then start the stream, and give the
generation side the stream's start time. Audio time 0 is that moment; MIDI arrival times are measured on the same
system-wide monotonic clock in either process.

The control loop reads counters, prints the status line and stops everything. A vanished MIDI port is logged once,
every sounding note is released, and play goes on (a DAW or keyboard may come back on another port after a restart
of `play`); a `--midi-file` session ends two seconds after the file's last event.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from live_synth.errors import LiveSynthError


PLAY_STEPS = 4


@dataclass(frozen=True)
class PlaySettings:
    model: str = "default"
    midi_api: str | None = None
    midi_in: str = "virtual"
    midi_file: str | None = None
    audio_out: str | None = None
    steps: int | None = None  # None: the model's default_steps, else PLAY_STEPS
    # hop 4 (80 ms) / lead 200 ms with the default model in torch: no ring underruns over 5 minutes of a dense MIDI
    # file on the 2-core dev CPU (lead 100 had 47: single ticks take up to 155 ms), and about half the latency of
    # hop 16 / lead 250 (BENCHMARKS.md: soak and latency sections).
    hop: int = 4
    sampler: str = "ddim"
    strategy: str | None = None  # None: continuation for short-window models, inpaint for 256-frame ones
    lead_ms: float = 200.0
    vocoder: str | None = None
    record: str | None = None
    seed: int = 0
    engine: str = "torch"
    device: str = "cpu"
    dtype: str = "float32"
    engine_dir: str | None = None  # exported engines' root (default: the user cache)
    cuda_graph: bool = False
    seconds: float | None = None  # stop after this long (tests, benchmarks)
    threads: int = 0  # torch threads on the generation side (0: torch's default)
    in_process: bool = False  # generation in a thread of this process instead of its own process


@dataclass
class PlayReport:
    seconds: float
    ticks: int
    late_ticks: int
    underruns: int
    underflows: int
    midi_received: int
    midi_dropped: int
    tick_ms_median: float
    tick_ms_p99: float
    recorded: Path | None
    tick_ms: list[float] = field(default_factory=list)  # every tick's compute time (the last 100 000)
    late_events: int = 0  # MIDI events whose time was already committed (stamped at the committed end)


# Counters the generation side publishes (floats in a small array; in shared memory across processes).
STATS = ("ticks", "late_ticks", "steps", "last_tick_ms", "active_notes", "late_events", "midi_received",
         "midi_dropped", "ready", "start_time", "finished", "port_lost")


class Generation:
    """The generation side of a session: model, engine, MIDI input, worker, vocoder, resampler, recorder.

    Runs in the generation process (or, with `in_process`, in the audio process's threads). `prepare` does all the
    heavy start-up and pre-fills `ring`; `go(start_time)` starts the worker; `poll` watches the MIDI port and
    publishes counters into `stats`; `finish` stops and returns the report's fields.
    """

    def __init__(self, settings: PlaySettings, log=print):
        import torch

        from engines import load_engine
        from live_synth.audio import load_vocoder
        from live_synth.cli import resolve_model_spec
        from live_synth.live.generator import LiveGenerator, LivePolicy
        from live_synth.live.vocode import streaming_vocoder
        from live_synth.model import load_model

        if settings.threads:
            torch.set_num_threads(settings.threads)
        self.settings, self.log = settings, log
        spec, warning = resolve_model_spec(settings.model)
        loaded = load_model(spec, seed=settings.seed)
        if warning or loaded.random_weights:
            log(f"warning: {warning or f'model {settings.model!r} has RANDOM weights'}")
        cfg = loaded.model.config
        strategy = settings.strategy or ("inpaint" if cfg.target_length >= 256 else "continuation")
        self.engine = load_engine(settings.engine, loaded.model, device=settings.device, dtype=settings.dtype,
                                  root=settings.engine_dir, cuda_graph=settings.cuda_graph)
        steps = cfg.sampling_steps(settings.steps, PLAY_STEPS)
        self.generator = LiveGenerator(self.engine, LivePolicy(settings.hop, steps, settings.sampler, strategy),
                                       seed=settings.seed)
        self.vocoder = streaming_vocoder(load_vocoder(settings.vocoder or loaded.vocoder_path))
        log(f"model {loaded.source} ({strategy}, hop {settings.hop} frames = {settings.hop * 20} ms, "
            f"{steps} {settings.sampler} steps, engine {settings.engine}), vocoder {self.vocoder.name}")
        self.worker = self.midi = self.recorder = None
        self._last_port_check = 0.0

    def prepare(self, ring, samplerate: int, stats) -> None:
        from live_synth.live.audio_out import OutputFeed, Recorder, Resampler
        from live_synth.live.midi_file import MidiFileSource
        from live_synth.live.midi_in import MidiInput
        from live_synth.live.worker import GenerationWorker

        s = self.settings
        # Python's default 5 ms switch interval lets one thread keep the GIL that long; the worker's MIDI callback
        # (and, in-process, the audio callback) should not wait that long for it.
        sys.setswitchinterval(0.001)
        self.engine.warm_up()
        self.stats = stats
        self.recorder = Recorder(Path(s.record), samplerate) if s.record else None
        feed = OutputFeed(ring, Resampler(samplerate), self.recorder)
        self.midi = MidiFileSource(s.midi_file) if s.midi_file else MidiInput(s.midi_api)
        if not s.midi_file:
            port = self.midi.open(s.midi_in)
            self.log(f"MIDI in: {port} ({self.midi.api})")
        self.worker = GenerationWorker(self.generator, self.midi, self.vocoder, ring, push=feed.push,
                                       lead_s=s.lead_ms / 1000, ring_rate=samplerate)
        while ring.available() < s.lead_ms / 1000 * samplerate:  # pre-fill: silence, before going live
            self.worker.tick()
        self._publish()
        stats[STATS.index("ready")] = 1

    def go(self, start_time: float) -> None:
        self.worker.start_time = start_time
        self.worker.start()

    def poll(self) -> bool:
        """Publish counters, watch the MIDI port; False once the worker has stopped (or died)."""
        s, now = self.settings, time.monotonic()
        if s.midi_file and self.midi.finished and now - (self.midi.start or now) > self.midi.duration + 2.0:
            self.stats[STATS.index("finished")] = 1
        if not s.midi_file and now - self._last_port_check > 1.0:
            self._last_port_check = now
            if not self.stats[STATS.index("port_lost")] and not self.midi.is_alive():
                self.stats[STATS.index("port_lost")] = 1
                self.worker.release_all.set()
                self.log(f"MIDI port {self.midi.port_name!r} vanished: all notes released, still playing")
        self._publish()
        return self.worker.is_alive()

    def _publish(self) -> None:
        st, midi = self.worker.stats, self.midi
        values = {"ticks": st.ticks, "late_ticks": st.late_ticks, "steps": st.steps, "last_tick_ms": st.last_tick_ms,
                  "active_notes": st.active_notes, "late_events": st.late_events,
                  "midi_received": midi.received,
                  "midi_dropped": getattr(midi, "dropped", 0)}
        for name, value in values.items():
            self.stats[STATS.index(name)] = value

    def finish(self) -> dict:
        """Stop the worker, close MIDI, write the recording; the report's generation-side fields."""
        if self.worker is None:
            return {}
        self.worker.stop()
        if not self.settings.midi_file:
            self.midi.close()
        self._publish()
        if self.worker.stats.error:
            raise LiveSynthError(f"generation stopped: {self.worker.stats.error}")
        recorded = self.recorder.close() if self.recorder else None
        return {"tick_ms": [round(float(t), 3) for t in self.worker.stats.tick_ms],
                "recorded": str(recorded) if recorded else None}


class LiveSession:
    def __init__(self, settings: PlaySettings, log=print):
        self.settings, self.log = settings, log
        self.generation = Generation(settings, log) if settings.in_process else None

    def run(self) -> PlayReport:
        import numpy as np

        from live_synth.live.audio_out import AudioOutput
        from live_synth.live.engine_process import GenerationProcess, LocalGeneration

        s = self.settings
        audio = AudioOutput(s.audio_out)
        capacity = int(audio.samplerate * max(2.0, 4 * s.lead_ms / 1000))
        side = LocalGeneration(self.generation) if s.in_process else GenerationProcess(s, self.log)
        try:
            ring = side.start(capacity, audio.samplerate)
            self.log(f"audio out: {audio.device_name} ({audio.hostapi}, {audio.samplerate} Hz); Ctrl-C stops")
            start = time.monotonic()
            try:
                audio.start(ring)
                side.go(time.monotonic())
                self._control_loop(side, audio, ring, start)
            except KeyboardInterrupt:
                self.log("stopping")
            finally:
                audio.stop()
            fields = side.finish()
            seconds = time.monotonic() - start
            stats = np.array(side.stats)  # copies: the shared memory goes away at close
            underruns = ring.underruns
            del ring
        finally:
            side.close()
        get = lambda name: stats[STATS.index(name)]  # noqa: E731
        ticks = np.array(fields.get("tick_ms") or [0.0])
        return PlayReport(seconds, int(get("ticks")), int(get("late_ticks")), underruns, audio.underflows,
                          int(get("midi_received")), int(get("midi_dropped")), float(np.median(ticks)),
                          float(np.percentile(ticks, 99)),
                          Path(fields["recorded"]) if fields.get("recorded") else None,
                          fields.get("tick_ms", []), int(get("late_events")))

    def _control_loop(self, side, audio, ring, start: float) -> None:
        s = self.settings
        while side.alive():
            time.sleep(0.25)
            if s.seconds is not None and time.monotonic() - start >= s.seconds:
                return
            if side.stats[STATS.index("finished")]:
                return
            self._status(side.stats, audio, ring)

    def _status(self, stats, audio, ring) -> None:
        get = lambda name: stats[STATS.index(name)]  # noqa: E731
        fill_ms = ring.available() / audio.samplerate * 1000
        line = (f"notes {int(get('active_notes')):3d} | tick {get('last_tick_ms'):6.1f} ms ({int(get('steps'))} "
                f"steps) | ring {fill_ms:5.0f} ms | underruns {ring.underruns} | late ticks "
                f"{int(get('late_ticks'))} | midi dropped {int(get('midi_dropped'))}")
        if sys.stderr.isatty():
            print("\r" + line, end="", file=sys.stderr, flush=True)
