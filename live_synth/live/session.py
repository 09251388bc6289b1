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

import numpy as np

from live_synth.errors import DeviceLostError, LiveSynthError


@dataclass(frozen=True)
class PlaySettings:
    model: str = "default"
    midi_api: str | None = None
    midi_in: str = "virtual"
    midi_file: str | None = None
    audio_out: str | None = None
    steps: int | None = None  # None: the model's default_steps, else PLAY_STEPS
    # Window family: hop 4 (80 ms) / lead 200 ms with its default model in torch: no ring underruns over 5 minutes
    # of a dense MIDI file on the 2-core dev CPU (lead 100 had 47: single ticks take up to 155 ms), and about half
    # the latency of hop 16 / lead 250 (BENCHMARKS.md). The causal family ticks one frame at a time and rolls back.
    hop: int | None = None  # None: 4 frames for the window family, 1 for the causal family
    sampler: str = "ddim"
    strategy: str | None = None  # None: continuation for short-window models, inpaint for 256-frame ones
    lead_ms: float | None = None  # None: 200 for the window family; delay + `ahead` frames for the causal family
    ahead: int = 4  # causal family: speculative frames generated past the declared delay
    delay_ms: float | None = None  # causal family: arrival -> heard (D); None: from the measured tick time
    period: int = 256  # device frames per callback the ring's guard (2 periods) is sized for
    fx: str | None = None  # an effects chain (live_synth/fx.py): a preset name or a TOML file
    fx_blocks: int = 2  # periods the effects stage keeps processed ahead of the device
    vocoder: str | None = None
    record: str | None = None
    seed: int = 0
    engine: str = "auto"
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
    late_events: int = 0  # MIDI events that could not be placed where they belong (moved later)
    rollbacks: int = 0
    frames_regenerated: int = 0
    coalesced: int = 0
    deferred: int = 0
    latency: dict = field(default_factory=dict)  # the expected latency and its parts (ms), as `play` printed it
    late_ms_max: float = 0.0  # the most a late event was moved


# Counters the generation side publishes (floats in a small array; in shared memory across processes).
STATS = ("ticks", "late_ticks", "steps", "last_tick_ms", "active_notes", "late_events", "late_ms_max",
         "midi_received", "midi_dropped", "ready", "start_time", "finished", "port_lost", "rollbacks", "frames_regenerated",
         "coalesced", "deferred", "skipped_samples", "delay_ms", "lead_ms", "vocoder_ms", "resampler_ms",
         "guard_ms", "fx_ms", "parent_pid")


class Generation:
    """The generation side of a session: model, engine, MIDI input, worker, vocoder, resampler, recorder.

    Runs in the generation process (or, with `in_process`, in the audio process's threads). `prepare` does all the
    heavy start-up and pre-fills `ring`; `go(start_time)` starts the worker; `poll` watches the MIDI port and
    publishes counters into `stats`; `finish` stops and returns the report's fields.
    """

    def __init__(self, settings: PlaySettings, log=print):
        import torch

        from live_synth.audio import load_vocoder
        from live_synth.live.vocode import streaming_vocoder
        from live_synth.synth import SynthOptions, check_engine_available, load_synth

        if settings.threads:
            torch.set_num_threads(settings.threads)
        self.settings, self.log = settings, log
        check_engine_available(settings.engine)
        self.synth = load_synth(settings.model, SynthOptions(
            engine=settings.engine, device=settings.device, dtype=settings.dtype, engine_dir=settings.engine_dir,
            cuda_graph=settings.cuda_graph, steps=settings.steps, seed=settings.seed))
        for line in self.synth.warnings:
            log(f"warning: {line}")
        causal = self.synth.family == "causal"
        hop = settings.hop or (1 if causal else 4)
        self.stream = self.synth.live_stream(hop, settings.strategy, settings.sampler)
        self.vocoder = streaming_vocoder(load_vocoder(settings.vocoder or self.synth.vocoder_path),
                                         engine=self.synth.engine.name)
        log(f"model {self.synth.source} ({self.synth.family} family, hop {hop} frame(s) = {hop * 20} ms, "
            f"{self.stream.steps} steps, engine {self.synth.engine.name}), vocoder {self.vocoder.name}")
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
        self.synth.warm_up()
        self.stats = stats
        ring.guard = 2 * s.period
        self.recorder = Recorder(Path(s.record), samplerate) if s.record else None
        feed = OutputFeed(ring, Resampler(samplerate), self.recorder)
        self.midi = MidiFileSource(s.midi_file) if s.midi_file else MidiInput(s.midi_api)
        if not s.midi_file:
            port = self.midi.open(s.midi_in)
            self.log(f"MIDI in: {port} ({self.midi.api})")
        self.worker = GenerationWorker(self.stream, self.midi, self.vocoder, feed)
        # Pre-fill (the sound of silence, before going live), timing the ticks: the causal family's declared delay
        # is sized from them.
        lead_s = (s.lead_ms or 200.0) / 1000
        worker = self.worker
        while True:
            worker.tick()
            if self.stream.can_rewind and worker.stats.ticks >= 100:
                break
            if not self.stream.can_rewind and ring.available() >= lead_s * samplerate:
                break
        self._size(ring, samplerate, feed)
        while ring.available() < worker.lead_s * samplerate:
            worker.tick()
        self._publish()
        stats[STATS.index("ready")] = 1

    def _size(self, ring, rate: int, feed) -> None:
        """Declared delay and lead (causal family: from the pre-fill's tick times) and the latency's parts."""
        s, worker = self.settings, self.worker
        vocoder_ms = 1000 * getattr(self.vocoder, "delay_samples", 0) / 16000
        resampler_ms = 1000 * feed.resampler.delay / rate
        guard_ms = 1000 * ring.guard / rate
        if self.stream.can_rewind:
            ticks = np.array(list(worker.stats.tick_ms)[20:] or [0.0])
            p99 = float(np.percentile(ticks, 99))
            # the guard, then the frames from a note's first frame to its audio (feature + vocoder look-ahead) at
            # the tick's p99, then one more tick for the worker to wake up in the middle of one, and 2 ms
            frames = self.stream.lookahead_frames() + worker.timing.vocoder_frames + 1
            delay_ms = s.delay_ms if s.delay_ms is not None else guard_ms + frames * p99 + 2.0
            lead_ms = s.lead_ms if s.lead_ms is not None else delay_ms + s.ahead * 20.0
            self.log(f"measured tick p99 {p99:.1f} ms over {len(ticks)} pre-fill ticks")
        else:
            delay_ms = None
            lead_ms = s.lead_ms or 200.0
        # An effects stage consumes the generation ring `fx_blocks` periods ahead of the device: what it has read
        # is final, so a note must land that much later to be rolled back into.
        fx_ms = 1000 * s.fx_blocks * s.period / rate if s.fx and s.fx != "none" else 0.0
        if delay_ms is not None:
            delay_ms += fx_ms
        worker.lead_s = (lead_ms + fx_ms) / 1000
        worker.delay_s = (delay_ms or 0.0) / 1000
        for name, value in (("delay_ms", delay_ms or 0.0), ("lead_ms", lead_ms), ("vocoder_ms", vocoder_ms),
                            ("resampler_ms", resampler_ms), ("guard_ms", guard_ms), ("fx_ms", fx_ms)):
            self.stats[STATS.index(name)] = value
        worker.stats.tick_ms.clear()
        worker.stats.ticks = worker.stats.late_ticks = 0

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
                  "midi_received": midi.received, "midi_dropped": getattr(midi, "dropped", 0),
                  "rollbacks": st.rollbacks, "frames_regenerated": st.frames_regenerated, "coalesced": st.coalesced,
                  "deferred": st.deferred, "skipped_samples": st.skipped_samples, "late_ms_max": st.late_ms_max}
        for name, value in values.items():
            self.stats[STATS.index(name)] = value

    def finish(self) -> dict:
        """Stop the worker, write the recording, close MIDI; the report's generation-side fields. The recording is
        closed first: after a fault (a dead JACK server) closing the MIDI client may never return, and the
        recording must be valid up to the fault whatever happens after."""
        if self.worker is None:
            return {}
        self.worker.stop()
        recorded = self.recorder.close() if self.recorder else None
        if not self.settings.midi_file:
            self.midi.close()
        self._publish()
        if self.worker.stats.error:
            raise LiveSynthError(f"generation stopped: {self.worker.stats.error}")
        return {"tick_ms": [round(float(t), 3) for t in self.worker.stats.tick_ms],
                "recorded": str(recorded) if recorded else None}


def latency_parts(stats, device_ms: float, fx_plugin_ms: float = 0.0) -> dict:
    """The latency `play` expects from note-on to sound leaving the device, and its parts, in ms (the way a plugin
    reports its latency to a host). Causal family: the declared delay D (it holds the guard, the regeneration
    deadline and the effects stage's buffer, and hides the vocoder and resampler delays behind rollback) + the
    plugins' own latency + the device's output latency. Window family: lead + up to a hop + vocoder + resampler +
    effects + device."""
    get = lambda name: float(stats[STATS.index(name)])  # noqa: E731
    parts = {"device": round(device_ms, 1), "vocoder": round(get("vocoder_ms"), 1),
             "resampler": round(get("resampler_ms"), 1), "guard": round(get("guard_ms"), 1)}
    fx = get("fx_ms") + fx_plugin_ms
    if fx:
        parts["fx"] = round(fx, 1)
    if get("delay_ms") > 0:
        parts["delay"] = round(get("delay_ms"), 1)
        parts["total"] = round(get("delay_ms") + fx_plugin_ms + device_ms, 1)
    else:
        parts["lead"] = round(get("lead_ms"), 1)
        parts["total"] = round(get("lead_ms") + parts["vocoder"] + parts["resampler"] + fx + device_ms, 1)
    return parts


def _stop_on_signals():
    """SIGTERM and SIGHUP (a service manager, a session manager, a closed terminal) stop `play` the way Ctrl-C
    does: the stream stops, the generation process is told to finish, the recording is written. Returns a function
    that puts the previous handlers back. Main thread only (Python delivers signals there)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    saved = {}
    for name in ("SIGTERM", "SIGHUP"):
        number = getattr(signal, name, None)
        if number is not None:
            saved[number] = signal.signal(number, interrupt)
    return lambda: [signal.signal(number, handler) for number, handler in saved.items()]


class LiveSession:
    def __init__(self, settings: PlaySettings, log=print):
        self.settings, self.log = settings, log
        self.generation = Generation(settings, log) if settings.in_process else None

    def run(self) -> PlayReport:
        import numpy as np

        from live_synth.live.audio_out import AudioOutput
        from live_synth.live.engine_process import GenerationProcess, LocalGeneration

        s = self.settings
        chain = None
        if s.fx:
            from live_synth.fx import load_chain

            chain = load_chain(s.fx)
            chain = None if chain.empty else chain
        audio = AudioOutput(s.audio_out)
        capacity = int(audio.samplerate * max(2.0, 4 * (s.lead_ms or 200.0) / 1000))
        side = LocalGeneration(self.generation) if s.in_process else GenerationProcess(s, self.log)
        restore = _stop_on_signals()
        latency: dict = {}
        stage = None
        lost = None
        try:
            ring = side.start(capacity, audio.samplerate)
            self.log(f"audio out: {audio.device_name} ({audio.hostapi}, {audio.samplerate} Hz); Ctrl-C stops")
            played = ring
            if chain is not None:
                from live_synth.fx import FxStage
                from live_synth.live.ring import SpscRing

                played = SpscRing(8 * s.period * s.fx_blocks)
                stage = FxStage(chain, ring, played, audio.samplerate, block=s.period, blocks=s.fx_blocks)
                stage.prime()
                self.log(f"effects: {chain.describe()} (latency {stage.latency_ms:.1f} ms)")
            start = time.monotonic()
            try:
                audio.start(played)
                side.go(time.monotonic())
                if stage is not None:
                    stage.start()
                fx_plugin_ms = 1000 * chain.latency_samples / audio.samplerate if chain is not None else 0.0
                latency = latency_parts(side.stats, 1000 * audio.output_latency, fx_plugin_ms)
                self.log("expected latency note-on -> sound out: " + ", ".join(
                    f"{k} {v:.1f} ms" for k, v in latency.items()))
                self._control_loop(side, audio, ring, start)
            except KeyboardInterrupt:
                self.log("stopping")
            except DeviceLostError as error:
                lost = error
            finally:
                audio.stop()  # a stalled stream is let go, not stopped (see AudioOutput.stop)
                if lost is None and audio.lost:  # stopped by a signal after the device had gone
                    lost = DeviceLostError(f"the audio device {audio.device_name!r} ({audio.hostapi}) stopped: no "
                                           "callback since before the stop (the JACK server died?)")
                if stage is not None:
                    stage.stop()
                restore()
            if lost is not None:  # the generation side gets a moment to write the recording, then is killed
                try:
                    side.finish(timeout_s=0.8)
                except LiveSynthError:
                    pass
                raise lost
            fields = side.finish()
            seconds = time.monotonic() - start
            stats = np.array(side.stats)  # copies: the shared memory goes away at close
            underruns = ring.underruns + (played.underruns if stage is not None else 0)
            if stage is not None and stage.error:
                raise LiveSynthError(f"the effects stage stopped: {stage.error}")
            del ring, played
        finally:
            side.close()
        get = lambda name: stats[STATS.index(name)]  # noqa: E731
        ticks = np.array(fields.get("tick_ms") or [0.0])
        return PlayReport(seconds, int(get("ticks")), int(get("late_ticks")), underruns, audio.underflows,
                          int(get("midi_received")), int(get("midi_dropped")), float(np.median(ticks)),
                          float(np.percentile(ticks, 99)),
                          Path(fields["recorded"]) if fields.get("recorded") else None,
                          fields.get("tick_ms", []), int(get("late_events")), int(get("rollbacks")),
                          int(get("frames_regenerated")), int(get("coalesced")), int(get("deferred")), latency,
                          round(float(get("late_ms_max")), 2))

    def _control_loop(self, side, audio, ring, start: float) -> None:
        s = self.settings
        while side.alive():
            time.sleep(0.25)
            if audio.stalled():
                raise DeviceLostError(f"the audio device {audio.device_name!r} ({audio.hostapi}) stopped: no "
                                      "callback for 0.5 s (the JACK server died or the interface is gone)")
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
                f"{int(get('late_ticks'))} | rollbacks {int(get('rollbacks'))} | midi dropped "
                f"{int(get('midi_dropped'))}")
        if sys.stderr.isatty():
            print("\r" + line, end="", file=sys.stderr, flush=True)
