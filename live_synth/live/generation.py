"""The generation side of `play`: its settings, the counters it publishes, and `Generation` (model, engine, MIDI
input, worker, vocoder, resampler, recorder).

Its own module so that the two sides of a session import it and not each other: `live/engine_process.py` runs a
`Generation` in a spawned process, `live/session.py` (the audio process) reads the counters it publishes (`STATS`).
Nothing here imports the audio process's code.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from live_synth.errors import LiveSynthError
from live_synth.live.delay import DelayPolicy
from live_synth.live.priority import WorkerPriority, compute_threads, lower_threads, thread_ids


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
    fx_stage: bool = False  # the loaded chain holds an effect (set by `LiveSession`; `fx` alone may be an empty chain)
    vocoder: str | None = None
    record: str | None = None
    seed: int = 0
    engine: str = "auto"
    device: str = "cpu"
    dtype: str = "float32"
    engine_dir: str | None = None  # exported engines' root (default: the user cache)
    cuda_graph: bool = False
    seconds: float | None = None  # stop after this long (tests, benchmarks)
    threads: int = 0  # intra-op threads (torch, ONNX Runtime) on the generation side (0: all cores but one)
    nice: int = 10  # the engines' pool threads: this nice value (all generation threads but MIDI's: SCHED_BATCH)
    priority: str = "auto"  # the worker thread's policy: idle (SCHED_IDLE, raised when starved), batch, auto
    in_process: bool = False  # generation in a thread of this process instead of its own process
    page: object = None  # `play --web`: a web.link.PageLink (the page's events in, the frames out), else None
    morph: str | None = None  # "A>B": program A's timbre morphed towards B's by controller `morph_cc` (live/morph.py)
    morph_cc: int = 74


# Counters the generation side publishes (floats in a small array; in shared memory across processes).
STATS = ("ticks", "late_ticks", "steps", "last_tick_ms", "active_notes", "late_events", "late_ms_max",
         "midi_received", "midi_dropped", "ready", "start_time", "finished", "port_lost", "rollbacks", "frames_regenerated",
         "coalesced", "deferred", "skipped_samples", "delay_ms", "lead_ms", "vocoder_ms", "resampler_ms",
         "guard_ms", "fx_ms", "parent_pid", "delay_changes", "go", "stop", "priority_raises")


# The rehearsal before going live (causal family): 8 notes (a piano chord and two drums) for 48 ticks, timed and
# rewound (`GenerationWorker.rehearse`); the first quarter is left out of the timing (first-call costs).
REHEARSAL = [[0x90, pitch, 100] for pitch in (48, 55, 60, 64, 67, 72)] + [[0x99, 36, 110], [0x99, 42, 90]]
REHEARSAL_TICKS = 48


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def effects_stage_ms(settings: PlaySettings, rate: int) -> float:
    """The effects stage's buffer (ms) that the declared delay must hold: `fx_blocks` periods, only when the chain
    holds an effect (with none, `play` runs no stage and the device reads the generation ring directly)."""
    return 1000 * settings.fx_blocks * settings.period / rate if settings.fx_stage else 0.0


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

        # ONNX Runtime's sessions take torch's thread count (engines/ort_frame.py, live/vocode.py): one core is
        # left to the audio side, whose threads must run within every JACK period (live/priority.py)
        torch.set_num_threads(settings.threads or compute_threads())
        self.settings, self.log = settings, log
        before = thread_ids()  # the threads the model's engines start: their pools (`prepare` lowers them)
        check_engine_available(settings.engine)
        self.synth = load_synth(settings.model, SynthOptions(
            engine=settings.engine, device=settings.device, dtype=settings.dtype, engine_dir=settings.engine_dir,
            cuda_graph=settings.cuda_graph, steps=settings.steps, seed=settings.seed))
        for line in self.synth.warnings:
            log(f"warning: {line}")
        hop = settings.hop or self.synth.live_hop
        self.stream = self.synth.live_stream(hop, settings.strategy, settings.sampler)
        self.vocoder = streaming_vocoder(load_vocoder(settings.vocoder or self.synth.vocoder_path),
                                         engine=self.synth.engine.name)
        self.pool_threads = thread_ids() - before
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
        before = thread_ids()
        self.midi = MidiFileSource(s.midi_file) if s.midi_file else MidiInput(s.midi_api)
        if not s.midi_file:
            port = self.midi.open(s.midi_in)
            self.log(f"MIDI in: {port} ({self.midi.api})")
        stream = self.stream
        if s.morph:
            from live_synth.live.morph import MorphLiveStream, parse_programs

            stream = MorphLiveStream(stream, self.synth.engine, *parse_programs(s.morph))
        rehearsed = stream  # the rehearsal's frames are not the page's
        if s.page is not None:  # the page's notes join the MIDI source's queue policy; its frames are tapped
            from live_synth.web.link import MelTap, PageSource

            self.midi, stream = PageSource(self.midi, s.page), MelTap(stream, s.page)
        if not s.in_process:  # before the pre-fill: D is sized from ticks at the priority they run at
            midi_threads = thread_ids() - before  # a JACK MIDI client's: the graph waits for them every cycle
            failed = [line for line in (lower_threads(0, exclude=midi_threads | self.pool_threads),
                                        lower_threads(s.nice, tids=self.pool_threads - midi_threads)) if line]
            self.log("; ".join(failed) or f"generation: {torch_threads()} intra-op thread(s); the main thread at "
                     f"normal priority with SCHED_BATCH, {len(self.pool_threads)} engine pool thread(s) at nice "
                     f"{s.nice}; {len(midi_threads)} MIDI thread(s) left as they were")
        self.worker = GenerationWorker(stream, self.midi, self.vocoder, feed)
        if not s.in_process:  # in-process, the worker shares the GIL with the audio callback: no SCHED_IDLE there
            self.worker.priority = WorkerPriority(s.priority)
            mode = self.worker.priority.resolve()
            self.log(self.worker.priority.note or f"generation worker: {self.worker.priority.policy}"
                     + (" while it keeps up, SCHED_BATCH while starved" if mode == "idle" else ""))
        if s.morph:  # the controller's moves are placed and rolled back like notes
            from live_synth.live.morph import MorphNoteState

            self.worker.notes = MorphNoteState(s.morph_cc)
        # Causal family: a rehearsal (a chord, timed, then rewound) sizes the declared delay; then the pre-fill (the
        # sound of silence, before going live).
        lead_s = (s.lead_ms or self.synth.live_lead_ms(0.0, s.ahead)) / 1000  # the window family's pre-fill target
        worker = self.worker
        self._rehearsal = worker.rehearse(REHEARSAL_TICKS, REHEARSAL, rehearsed) if self.stream.can_rewind else []
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
            ticks = np.array(self._rehearsal[REHEARSAL_TICKS // 4:] + list(worker.stats.tick_ms)[20:])
            p99 = float(np.percentile(ticks, 99))
            # the guard, then the frames from a note's first frame to its audio (feature + vocoder look-ahead) at
            # the tick's p99, then one more tick for the worker to wake up in the middle of one, and 2 ms
            frames = self.stream.lookahead_frames() + worker.timing.vocoder_frames + 1
            delay_ms = s.delay_ms if s.delay_ms is not None else guard_ms + frames * p99 + 2.0
            lead_ms = s.lead_ms if s.lead_ms is not None else self.synth.live_lead_ms(delay_ms, s.ahead)
            self.log(f"measured tick p99 {p99:.1f} ms over {len(ticks)} ticks (a rehearsed chord and the pre-fill)")
        else:
            delay_ms = None
            lead_ms = s.lead_ms or self.synth.live_lead_ms(0.0, s.ahead)
        # An effects stage consumes the generation ring `fx_blocks` periods ahead of the device: what it has read
        # is final, so a note must land that much later to be rolled back into.
        fx_ms = effects_stage_ms(s, rate)
        if delay_ms is not None:
            delay_ms += fx_ms
        worker.lead_s = (lead_ms + fx_ms) / 1000
        worker.delay_s = (delay_ms or 0.0) / 1000
        if self.stream.can_rewind and s.delay_ms is None:  # D grows with the ticks measured while playing
            worker.delay_policy = DelayPolicy(delay_ms, base_ms=guard_ms + 2.0 + fx_ms, frames=frames)
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
        if s.page is not None:
            s.page.publish(self.worker.stats.tick_ms, getattr(self.midi, "page", None))
        return self.worker.is_alive()

    def _publish(self) -> None:
        st, midi = self.worker.stats, self.midi
        values = {"ticks": st.ticks, "late_ticks": st.late_ticks, "steps": st.steps, "last_tick_ms": st.last_tick_ms,
                  "active_notes": st.active_notes, "late_events": st.late_events,
                  "midi_received": midi.received, "midi_dropped": getattr(midi, "dropped", 0),
                  "rollbacks": st.rollbacks, "frames_regenerated": st.frames_regenerated, "coalesced": st.coalesced,
                  "deferred": st.deferred, "skipped_samples": st.skipped_samples, "late_ms_max": st.late_ms_max}
        if self.worker.priority is not None:
            values["priority_raises"] = self.worker.priority.raises
        if self.worker.delay_policy is not None:  # the D in force (it grows only in silence: live/delay.py)
            values["delay_ms"] = self.worker.delay_policy.delay_ms
            values["delay_changes"] = self.worker.delay_policy.changes
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
