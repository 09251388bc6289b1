"""`live-synth play`: wire MIDI in → worker (note state, generator, vocoder, resampler) → ring → audio out.

Order of start-up (heavy work before going live): load the model and the vocoder, warm the engine up, open the audio
device (its rate sizes the ring and the resampler), open the MIDI input, pre-fill the ring to the lead target with
the sound of silence (so start-up costs no underruns), start the stream, start the worker. Audio time 0 is the
moment the stream starts; MIDI arrival times are measured on the same monotonic clock.

The control thread (the caller of `run`) only reads counters, prints the status line, watches the MIDI port and
stops everything. A vanished MIDI port is logged once, every sounding note is released, and play goes on (a DAW
or keyboard may come back on another port after a restart of `play`); a `--midi-file` session ends two seconds
after the file's last event.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from live_synth.errors import LiveSynthError


@dataclass(frozen=True)
class PlaySettings:
    model: str = "default"
    midi_api: str | None = None
    midi_in: str = "virtual"
    midi_file: str | None = None
    audio_out: str | None = None
    steps: int = 4
    hop: int = 16
    sampler: str = "ddim"
    strategy: str | None = None  # None: continuation for short-window models, inpaint for 256-frame ones
    lead_ms: float = 250.0
    vocoder: str | None = None
    record: str | None = None
    seed: int = 0
    engine: str = "torch"
    device: str = "cpu"
    dtype: str = "float32"
    engine_dir: str | None = None  # exported engines' root (default: the user cache)
    cuda_graph: bool = False
    seconds: float | None = None  # stop after this long (tests, benchmarks)


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


class LiveSession:
    def __init__(self, settings: PlaySettings, log=print):
        from engines import load_engine
        from live_synth.audio import load_vocoder
        from live_synth.cli import resolve_model_spec
        from live_synth.live.generator import LiveGenerator, LivePolicy
        from live_synth.live.vocode import streaming_vocoder
        from live_synth.model import load_model

        self.settings, self.log = settings, log
        spec, warning = resolve_model_spec(settings.model)
        loaded = load_model(spec, seed=settings.seed)
        if warning or loaded.random_weights:
            log(f"warning: {warning or f'model {settings.model!r} has RANDOM weights'}")
        cfg = loaded.model.config
        strategy = settings.strategy or ("inpaint" if cfg.target_length >= 256 else "continuation")
        self.engine = load_engine(settings.engine, loaded.model, device=settings.device, dtype=settings.dtype,
                                  root=settings.engine_dir, cuda_graph=settings.cuda_graph)
        self.generator = LiveGenerator(self.engine, LivePolicy(settings.hop, settings.steps, settings.sampler,
                                                               strategy), seed=settings.seed)
        self.vocoder = streaming_vocoder(load_vocoder(settings.vocoder or loaded.vocoder_path))
        log(f"model {loaded.source} ({strategy}, hop {settings.hop} frames = {settings.hop * 20} ms, "
            f"{settings.steps} {settings.sampler} steps), vocoder {self.vocoder.name}")

    def run(self) -> PlayReport:
        from live_synth.live.audio_out import AudioOutput, OutputFeed, Recorder, Resampler
        from live_synth.live.midi_file import MidiFileSource
        from live_synth.live.midi_in import MidiInput
        from live_synth.live.ring import SpscRing
        from live_synth.live.worker import GenerationWorker

        s = self.settings
        # The audio callback is Python: it needs the GIL within a period (5.3 ms at 48 kHz / 256). With Python's
        # default 5 ms switch interval it often waited ~5 ms for a busy thread to yield it; measured with
        # tools/bench_callback.py, 1 ms removed most of those glitches (real-time JACK removed the rest).
        sys.setswitchinterval(0.001)
        self.engine.warm_up()
        audio = AudioOutput(s.audio_out)
        ring = SpscRing(int(audio.samplerate * max(2.0, 4 * s.lead_ms / 1000)))
        recorder = Recorder(Path(s.record), audio.samplerate) if s.record else None
        feed = OutputFeed(ring, Resampler(audio.samplerate), recorder)
        midi = MidiFileSource(s.midi_file) if s.midi_file else MidiInput(s.midi_api)
        if not s.midi_file:
            port = midi.open(s.midi_in)
            self.log(f"MIDI in: {port} ({midi.api})")
        worker = GenerationWorker(self.generator, midi, self.vocoder, ring, push=feed.push,
                                  lead_s=s.lead_ms / 1000, ring_rate=audio.samplerate)
        while ring.available() < s.lead_ms / 1000 * audio.samplerate:  # pre-fill: silence, before going live
            worker.tick()
        self.log(f"audio out: {audio.device_name} ({audio.hostapi}, {audio.samplerate} Hz); Ctrl-C stops")
        start = time.monotonic()
        try:
            audio.start(ring)
            worker.start_time = time.monotonic()
            worker.start()
            self._control_loop(worker, midi, audio, ring, start)
        except KeyboardInterrupt:
            self.log("stopping")
        finally:
            worker.stop()
            audio.stop()
            if not s.midi_file:
                midi.close()
        if worker.stats.error:
            raise LiveSynthError(f"generation stopped: {worker.stats.error}")
        recorded = recorder.close() if recorder else None
        return self._report(worker, midi, audio, ring, time.monotonic() - start, recorded)

    def _control_loop(self, worker, midi, audio, ring, start: float) -> None:
        s = self.settings
        last_port_check = 0.0
        port_lost = False
        while worker.is_alive():
            time.sleep(0.25)
            now = time.monotonic()
            if s.seconds is not None and now - start >= s.seconds:
                return
            if s.midi_file and midi.finished and now - (midi.start or now) > midi.duration + 2.0:
                return
            if not s.midi_file and now - last_port_check > 1.0:
                last_port_check = now
                if not port_lost and not midi.is_alive():
                    port_lost = True
                    worker.release_all.set()
                    self.log(f"\nMIDI port {midi.port_name!r} vanished: all notes released, still playing")
            self._status(worker, midi, audio, ring)

    def _status(self, worker, midi, audio, ring) -> None:
        st = worker.stats
        fill_ms = ring.available() / audio.samplerate * 1000
        dropped = getattr(midi, "dropped", 0)
        line = (f"notes {st.active_notes:3d} | tick {st.last_tick_ms:6.1f} ms ({st.steps} steps) | "
                f"ring {fill_ms:5.0f} ms | underruns {ring.underruns} | late ticks {st.late_ticks} | "
                f"midi dropped {dropped}")
        if sys.stderr.isatty():
            print("\r" + line, end="", file=sys.stderr, flush=True)

    def _report(self, worker, midi, audio, ring, seconds, recorded) -> PlayReport:
        import numpy as np

        ticks = np.array(worker.stats.tick_ms) if worker.stats.tick_ms else np.zeros(1)
        return PlayReport(seconds, worker.stats.ticks, worker.stats.late_ticks, ring.underruns, audio.underflows,
                          getattr(midi, "received", len(getattr(midi, "events", []))), getattr(midi, "dropped", 0),
                          float(np.median(ticks)), float(np.percentile(ticks, 99)), recorded,
                          [round(float(t), 3) for t in worker.stats.tick_ms], worker.stats.late_events)
