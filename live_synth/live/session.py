"""`live-synth play`: wire MIDI in → generation (note state, generator, vocoder, resampler) → ring → audio out.

Two processes by default. The audio process (the caller of `LiveSession.run`) owns the PortAudio stream, whose
Python callback copies samples out of an `SpscRing` in shared memory, and a control loop that only reads counters.
The generation process (`live_synth.live.engine_process`, spawned) owns everything heavy: model, engine, MIDI input,
note state, the worker, the streaming vocoder and resampler, the recorder; it writes into the shared ring. Why:
in one process the callback needs the GIL within each period (5.3 ms at 48 kHz / 256) while torch and the worker's
Python code hold it; tools/bench_callback.py measured device underflows that way even with a 1 ms switch interval
(BENCHMARKS.md). `--in-process` keeps the old single-process layout (threads), e.g. for debugging.

Order of start-up (heavy work before going live): open the audio device (its rate sizes the ring and the resampler),
then on the generation side load the model and vocoder, warm the engine up, open the MIDI input, rehearse (causal
family: a chord generated, timed and rewound, which sizes the declared delay), pre-fill the ring to the lead target
with the sound of silence (so start-up costs no underruns); then start the stream, and give the
generation side the stream's start time. Audio time 0 is that moment; MIDI arrival times are measured on the same
system-wide monotonic clock in either process.

The generation side's settings, the counters it publishes and `Generation` itself live in `live/generation.py`, which
both processes import (this module and `live/engine_process.py` do not import each other).

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
from live_synth.live.generation import STATS, Generation, PlaySettings  # noqa: F401  (PlaySettings: the CLI's)


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
    callback: dict = field(default_factory=dict)  # the audio callback's duration (ms) against the period
    server_xruns: int | None = None  # the JACK server's xruns while playing (None: not JACK)
    audio_priority: str = ""  # the audio callback thread's scheduling, or why it has no real-time priority
    delay_ms: float = 0.0  # the declared delay D at the end (it may grow in silence: live/delay.py)
    delay_changes: int = 0
    priority_raises: int = 0  # times the generation worker, starved at SCHED_IDLE, raised itself (live/priority.py)


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


class _Signals:
    """SIGTERM and SIGHUP (a service manager, a session manager, a closed terminal) stop `play` the way Ctrl-C
    does: the stream stops, the generation process is told to finish, the recording is written. Once `play` is
    stopping (`stopping()`: a signal, the end of `--seconds`, a lost device), SIGINT, SIGTERM and SIGHUP are
    noted and ignored: a second signal must not cut the stop short, e.g. raise KeyboardInterrupt out of the fault
    path after the JACK server died, where PortAudio's exit handler would then wait forever. `restore()` puts the
    previous handlers back. Main thread only (Python delivers signals there); elsewhere all of this does nothing."""

    NAMES = ("SIGINT", "SIGTERM", "SIGHUP")

    def __init__(self):
        import signal
        import threading

        self.saved, self.ignored = {}, 0
        if threading.current_thread() is not threading.main_thread():
            return
        for name in self.NAMES:
            number = getattr(signal, name, None)
            if number is not None:
                self.saved[number] = signal.getsignal(number)
                if name != "SIGINT":  # SIGINT raises KeyboardInterrupt already
                    signal.signal(number, self._interrupt)

    @staticmethod
    def _interrupt(signum, frame):
        raise KeyboardInterrupt

    def _ignore(self, signum, frame):
        self.ignored += 1

    def stopping(self) -> None:
        import signal

        for number in self.saved:
            signal.signal(number, self._ignore)

    def restore(self) -> None:
        import signal

        for number, handler in self.saved.items():
            signal.signal(number, handler)


class LiveSession:
    def __init__(self, settings: PlaySettings, log=print, chain=None, page=None):
        """`chain`: the effects chain of `settings.fx` if the caller has loaded it already (the CLI does, to refuse a
        bad chain before anything starts); it is loaded once, here otherwise. A chain without effects runs no stage
        and declares no stage latency (`settings.fx_stage`). `page`: a started `web.server.WebPage` (`play --web`;
        `settings.page` its link), shown the session once it plays; its owner stops it."""
        self.page = page
        from dataclasses import replace

        if chain is None and settings.fx:
            from live_synth.fx import load_chain

            chain = load_chain(settings.fx)
        self.chain = None if chain is None or chain.empty else chain
        self.settings, self.log = replace(settings, fx_stage=self.chain is not None), log
        self.generation = Generation(self.settings, log) if settings.in_process else None

    def run(self) -> PlayReport:
        import numpy as np

        from live_synth.live.audio_out import AudioOutput, JackXruns
        from live_synth.live.engine_process import GenerationProcess, LocalGeneration

        s, chain = self.settings, self.chain
        audio = AudioOutput(s.audio_out)
        capacity = int(audio.samplerate * max(2.0, 4 * (s.lead_ms or 200.0) / 1000))
        side = LocalGeneration(self.generation) if s.in_process else GenerationProcess(s, self.log)
        signals = _Signals()
        latency: dict = {}
        stage = xruns = None
        lost = None
        signalled = False
        priority = ""
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
                if self.page is not None:
                    from live_synth.web.server import SessionView

                    self.page.attach(SessionView(side.stats, STATS, ring, audio, latency, s.page))
                xruns = JackXruns.open(audio.hostapi)
                priority = self._audio_priority(audio)
                self._control_loop(side, audio, ring, start, xruns)
            except KeyboardInterrupt:
                self.log("stopping")
                signalled = True
            except DeviceLostError as error:
                lost = error
            finally:
                signals.stopping()
                audio.stop()  # a stalled stream is let go, not stopped (see AudioOutput.stop)
                if lost is None and audio.lost:  # stopped by a signal after the device had gone
                    lost = DeviceLostError(f"the audio device {audio.device_name!r} ({audio.hostapi}) stopped: no "
                                           "callback since before the stop (the JACK server died?)")
                if stage is not None:
                    stage.stop()
                if xruns is not None:
                    xruns.close(server_alive=lost is None)
            if lost is not None:  # the generation side gets a moment to write the recording, then is killed
                try:
                    side.finish(timeout_s=0.8)
                except LiveSynthError:
                    pass
                raise lost
            # A signal asks for a stop within 2 s: the generation side gets 1.2 s to report (it closes the recording
            # first), then `close` kills it.
            fields = side.finish(timeout_s=1.2 if signalled else 60.0)
            seconds = time.monotonic() - start
            stats = np.array(side.stats)  # copies: the shared memory goes away at close
            underruns = ring.underruns + (played.underruns if stage is not None else 0)
            if stage is not None and stage.error:
                raise LiveSynthError(f"the effects stage stopped: {stage.error}")
            del ring, played
        finally:
            signals.stopping()  # also when start-up failed or was interrupted
            if self.page is not None:
                self.page.detach()  # the page's server reads the ring and the counters: not once they are closed
            side.close()
            if lost is None:  # after a lost device the CLI leaves at once (os._exit): keep ignoring until then
                signals.restore()
        get = lambda name: stats[STATS.index(name)]  # noqa: E731
        ticks = np.array(fields.get("tick_ms") or [0.0])
        return PlayReport(seconds, int(get("ticks")), int(get("late_ticks")), underruns, audio.underflows,
                          int(get("midi_received")), int(get("midi_dropped")), float(np.median(ticks)),
                          float(np.percentile(ticks, 99)),
                          Path(fields["recorded"]) if fields.get("recorded") else None,
                          fields.get("tick_ms", []), int(get("late_events")), int(get("rollbacks")),
                          int(get("frames_regenerated")), int(get("coalesced")), int(get("deferred")), latency,
                          round(float(get("late_ms_max")), 2), audio.callback_stats(),
                          xruns.count if xruns is not None else None, priority, round(float(get("delay_ms")), 2),
                          int(get("delay_changes")), int(get("priority_raises")))

    def _audio_priority(self, audio) -> str:
        """Real-time priority for the audio callback's thread where the system allows it; one line either way."""
        import os

        from live_synth.live.priority import AUDIO_RT_PRIORITY, realtime_thread

        deadline = time.monotonic() + 0.5
        while not audio.thread_id and time.monotonic() < deadline:  # its first callback records it
            time.sleep(0.005)
        try:
            if audio.thread_id and os.sched_getscheduler(audio.thread_id) in (os.SCHED_FIFO, os.SCHED_RR):
                return "real-time (the audio server's)"  # a real-time JACK server made it so already
        except (AttributeError, OSError):
            pass
        why = realtime_thread(audio.thread_id)
        if why:
            self.log(why)
            return why
        return f"SCHED_FIFO {AUDIO_RT_PRIORITY}"

    def _control_loop(self, side, audio, ring, start: float, xruns=None) -> None:
        s = self.settings
        delay_ms = float(side.stats[STATS.index("delay_ms")])
        while side.alive():
            time.sleep(0.25)
            if xruns is not None and xruns.shutdown:
                raise DeviceLostError(f"the audio device {audio.device_name!r} ({audio.hostapi}) stopped: the JACK "
                                      f"server shut down ({xruns.shutdown})")
            if audio.stalled():
                raise DeviceLostError(f"the audio device {audio.device_name!r} ({audio.hostapi}) stopped: no "
                                      "callback for 0.5 s (the JACK server died or the interface is gone)")
            if s.seconds is not None and time.monotonic() - start >= s.seconds:
                return
            if side.stats[STATS.index("finished")]:
                return
            now_ms = float(side.stats[STATS.index("delay_ms")])
            if now_ms != delay_ms:
                self.log(f"declared delay D {delay_ms:.1f} -> {now_ms:.1f} ms, sized from the ticks measured while "
                         "playing (changed while no note was sounding)")
                delay_ms = now_ms
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
