"""Does a Python audio callback (sounddevice on JACK, 48 kHz, period 256) stay glitch-free under inference load?

One process, side by side: `AudioOutput` plays a sine from an `SpscRing` that a worker-like producer thread keeps
100 ms ahead (through the 16 kHz -> 48 kHz `Resampler`), for `--seconds` each with
- `idle`: nothing else running;
- `torch`: a thread running the project's live model ("live" preset, random weights: encode + 4 decoder steps per
  tick) back to back, with `--threads` torch threads (default 2: the whole machine);
- `torch-process`: the same torch load in a child process (spawned), as `play` runs its generation by default;
- `python`: a thread running pure-Python code (holds the GIL except at the interpreter's forced switches, every
  `sys.getswitchinterval()` = 5 ms): the worst case of Python work in the worker (note state, windows, sampler).
Reported per phase: PortAudio output underflows (status flags seen by the callback), JACK xruns (a jack.Client
xrun callback on the same server), gaps between callback starts longer than 1.5 periods (a callback that started
more than half a period late), how far into the JACK period the callback started (JACK's clock,
`frames_since_cycle_start`: GIL wait and scheduling included, which is where a Python callback loses time; a
callback delayed past the next cycle start wraps around and looks early, so read it with the gaps), callback
duration, the longest gap, ring underruns (the producer starved) and the load's throughput.

By default the script starts its own JACK dummy server (`-n live-synth-bench-<pid>`, the CI command line) so that
other JACK users on the machine cannot add xruns; `--server default` uses the running default server instead,
`--realtime` starts the private server with real-time scheduling (needs the privilege; CI uses --no-realtime).

    python tools/bench_callback.py --seconds 60
    python tools/bench_callback.py --seconds 60 --phases torch,python --switch-interval 0.001
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from live_synth.provenance import machine, revision  # noqa: E402

PERIOD, RATE = 256, 48000
LEAD_S, HOP_SAMPLES = 0.1, 320  # producer: keep 100 ms in the ring, push 20 ms frames


# --- the JACK server ------------------------------------------------------------------------------------------------
def start_private_server(realtime: bool) -> tuple[subprocess.Popen, str]:
    """A JACK dummy server of our own; JACK_DEFAULT_SERVER makes every client in this process (PortAudio, rtmidi,
    JACK-Client) use it. Must run before sounddevice is imported (PortAudio connects at initialization)."""
    if shutil.which("jackd") is None:
        sys.exit("jackd is not installed (apt-get install jackd2)")
    name = f"live-synth-bench-{os.getpid()}"
    command = ["jackd", "-n", name, "-R" if realtime else "--no-realtime", "-d", "dummy", "-r", str(RATE),
               "-p", str(PERIOD)]  # fmt: skip
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.environ["JACK_DEFAULT_SERVER"] = name
    import jack

    jack.set_error_function(lambda message: None)
    for _ in range(100):
        try:
            jack.Client("probe", no_start_server=True).close()
            break
        except jack.JackError:
            time.sleep(0.1)
    else:
        server.terminate()
        sys.exit(f"could not start {' '.join(command)}")
    jack.set_error_function(None)
    return server, " ".join(command)


# --- the measured callback ----------------------------------------------------------------------------------------
def timed_output_class():
    from live_synth.live.audio_out import AudioOutput

    class TimedOutput(AudioOutput):
        """AudioOutput whose callback also records when it ran; the arrays are preallocated."""

        def __init__(self, device, jack_client, slots: int):
            super().__init__(device)
            self._jack = jack_client
            self.start_s = np.zeros(slots)  # perf_counter at entry
            self.duration_s = np.zeros(slots)
            self.entry_frames = np.zeros(slots, np.int64)  # frames into the JACK cycle at entry
            self.count = 0

        def _callback(self, outdata, frames, time_info, status):
            t0 = time.perf_counter()
            entry = self._jack.frames_since_cycle_start
            super()._callback(outdata, frames, time_info, status)
            i = self.count
            if i < len(self.start_s):
                self.start_s[i] = t0
                self.entry_frames[i] = entry
                self.duration_s[i] = time.perf_counter() - t0
            self.count = i + 1

    return TimedOutput


# --- producer and loads ---------------------------------------------------------------------------------------------
class Producer(threading.Thread):
    """The worker's audio side only: keep the ring LEAD_S ahead with a 440 Hz sine made at 16 kHz."""

    def __init__(self, feed, stop: threading.Event):
        super().__init__(daemon=True)
        self.feed, self.stop = feed, stop
        self.phase = 0

    def run(self) -> None:
        target = int(LEAD_S * self.feed.resampler.out_rate)
        while not self.stop.is_set():
            while self.feed.ring.available() < target:
                n = np.arange(self.phase, self.phase + HOP_SAMPLES)
                self.feed.push((0.3 * np.sin(2 * np.pi * 440 * n / 16000)).astype(np.float32))
                self.phase += HOP_SAMPLES
            time.sleep(0.005)


def torch_load(stop: threading.Event, counter: list, threads: int) -> None:
    import torch

    from live_synth.midi.pianoroll import ROLL_FEATURES
    from live_synth.model.config import preset
    from live_synth.model.network import SpectrogramDiffusion

    torch.set_num_threads(threads)
    cfg = preset("live")
    model = SpectrogramDiffusion(cfg).eval()
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(1, cfg.vocab_size, (1, cfg.max_tokens), generator=g)
    context = torch.rand(1, cfg.context_length, cfg.input_dims, generator=g) * 2 - 1
    mask = torch.ones(1, cfg.context_length, dtype=torch.bool)
    roll = (torch.rand(1, cfg.target_length, ROLL_FEATURES, generator=g) > 0.99).float()
    z = torch.randn(1, cfg.target_length, cfg.input_dims, generator=g)
    with torch.inference_mode():
        while not stop.is_set():
            memory = model.encode(tokens, context, mask, roll)
            for step in range(4):
                z = model(z, torch.full((1,), 1.0 - step / 4), memory).clamp(-3, 3)
            counter[0] += 1


def python_load(stop: threading.Event, counter: list, threads: int) -> None:
    while not stop.is_set():
        total = 0
        for i in range(20_000):  # ~1 ms of bytecode between checks of `stop`
            total += i * i
        counter[0] += 1


def _torch_process_main(stop, counter, threads: int) -> None:  # in the child process
    shared = [0]

    class Mirror(threading.Thread):
        def run(self):
            while not stop.is_set():
                counter.value = shared[0]
                time.sleep(0.1)

    Mirror(daemon=True).start()
    torch_load(stop, shared, threads)


class ProcessLoad:
    """The torch load in its own process (what `play` does by default): no GIL shared with the callback."""

    def __init__(self, threads: int):
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        self.stop, self.counter = ctx.Event(), ctx.Value("q", 0)
        self.process = ctx.Process(target=_torch_process_main, args=(self.stop, self.counter, threads), daemon=True)


LOADS = {"idle": None, "torch": torch_load, "python": python_load, "torch-process": ProcessLoad}


# --- one phase ------------------------------------------------------------------------------------------------------
def run_phase(name: str, seconds: float, output, ring, xruns: list, threads: int) -> dict:
    stop, counter = threading.Event(), [0]
    load = LOADS[name]
    if load is ProcessLoad:
        process_load = ProcessLoad(threads)
        worker, stop = process_load.process, process_load.stop
        ticks = lambda: process_load.counter.value  # noqa: E731
    else:
        worker = threading.Thread(target=load, args=(stop, counter, threads), daemon=True) if load else None
        ticks = lambda: counter[0]  # noqa: E731
    if worker:
        worker.start()
        time.sleep(3.0 if load is not ProcessLoad else 8.0)  # construction and warm-up before the clock starts
    loadavg = os.getloadavg()[0]
    first, underflows, underruns = output.count, output.underflows, ring.underruns
    xrun0, ticks0 = len(xruns), ticks()
    time.sleep(seconds)
    last = min(output.count, len(output.start_s))
    result = {
        "phase": name,
        "callbacks": last - first,
        "underflows": output.underflows - underflows,
        "xruns": len(xruns) - xrun0,
        "ring_underruns": ring.underruns - underruns,
        "ticks_per_s": (ticks() - ticks0) / seconds,
        "loadavg": loadavg,
        **callback_stats(output, first, last),
    }
    stop.set()
    if worker:
        worker.join(timeout=30)
    return result


def callback_stats(output, first: int, last: int) -> dict:
    duration_us = output.duration_s[first:last] * 1e6
    entry_ms = output.entry_frames[first:last] / RATE * 1e3
    gaps_ms = np.diff(output.start_s[first:last]) * 1e3
    return {
        # a callback that starts more than half a period late leaves a gap of more than 1.5 periods before it
        "late": int((gaps_ms > 1.5 * PERIOD / RATE * 1e3).sum()),
        "entry_p50_ms": float(np.percentile(entry_ms, 50)),
        "entry_p99_ms": float(np.percentile(entry_ms, 99)),
        "entry_max_ms": float(entry_ms.max()),
        "dur_p50_us": float(np.percentile(duration_us, 50)),
        "dur_p99_us": float(np.percentile(duration_us, 99)),
        "dur_max_us": float(duration_us.max()),
        "gap_max_ms": float(gaps_ms.max()) if len(gaps_ms) else 0.0,
    }


# --- report ---------------------------------------------------------------------------------------------------------




def report(results: list[dict], args, server: str, output) -> str:
    import sounddevice as sd
    import torch

    lines = [
        f"### Python audio callback under load: sounddevice on JACK ({time.strftime('%Y-%m-%d')})",
        f"- machine: {machine()}; revision {revision()}; Python {platform.python_version()}, torch "
        f"{torch.__version__} ({args.threads} threads in the torch phase), sounddevice {sd.__version__}, "
        f"{sd.get_portaudio_version()[1]}",
        f"- JACK: `{server}`; stream: {output.hostapi}, {output.samplerate} Hz, {output.channels} ch, float32, "
        f"blocksize {output.blocksize or 'host'}, reported output latency {output.output_latency * 1e3:.1f} ms",
        f"- command: `python tools/bench_callback.py {' '.join(sys.argv[1:])}`; {args.seconds:g} s per phase; "
        f"producer keeps {LEAD_S * 1e3:.0f} ms in the ring; GIL switch interval {sys.getswitchinterval() * 1e3:g} ms",
        "",
        "| phase | load ticks/s | callbacks | PortAudio underflows | JACK xruns | gaps > 1.5 periods "
        "| start in period p50 / p99 / max (ms) | duration p50 / p99 / max (µs) | longest gap (ms) "
        "| ring underruns | load avg |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['phase']} | {r['ticks_per_s']:.1f} | {r['callbacks']} | {r['underflows']} | {r['xruns']} "
            f"| {r['late']} | {r['entry_p50_ms']:.2f} / {r['entry_p99_ms']:.2f} / {r['entry_max_ms']:.2f} "
            f"| {r['dur_p50_us']:.0f} / {r['dur_p99_us']:.0f} / {r['dur_max_us']:.0f} | {r['gap_max_ms']:.1f} "
            f"| {r['ring_underruns']} | {r['loadavg']:.2f} |"
        )
    lines.append("")
    lines.append(f"One JACK period is {PERIOD / RATE * 1e3:.2f} ms; 'torch' ticks are encode + 4 decoder steps of "
                 "the live preset; 'python' ticks are ~1 ms of pure-Python bytecode.")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="per phase")
    parser.add_argument("--phases", default="idle,torch,python", help=f"comma-separated, from {list(LOADS)}")
    parser.add_argument("--threads", type=int, default=2, help="torch threads in the torch phase")
    parser.add_argument("--server", default="private", help="'private' (start one) or 'default' (use the running)")
    parser.add_argument("--realtime", action="store_true", help="start the private server with -R")
    parser.add_argument("--switch-interval", type=float, default=None,
                        help="sys.setswitchinterval in seconds (Python's default: 0.005): how long another thread "
                        "may keep the GIL while the callback waits")
    args = parser.parse_args()
    if args.switch_interval:
        sys.setswitchinterval(args.switch_interval)

    server_process, server = None, "the running default server"
    if args.server == "private":
        server_process, server = start_private_server(args.realtime)
    try:
        print(run(args, server))
    finally:
        if server_process is not None:
            server_process.terminate()
            server_process.wait(timeout=10)


def run(args, server: str) -> str:
    import jack

    from live_synth.live.audio_out import OutputFeed, Resampler, list_devices, set_jack_client_name
    from live_synth.live.ring import SpscRing

    set_jack_client_name("live-synth-bench")
    devices = [d for d in list_devices().outputs if "JACK" in d.hostapi]
    if not devices:
        sys.exit("PortAudio sees no JACK output device")
    client = jack.Client("live-synth-bench-probe", no_start_server=True)
    xruns: list[float] = []
    client.set_xrun_callback(xruns.append)
    client.activate()
    phases = args.phases.split(",")
    output = timed_output_class()(devices[0].index, client, slots=int(len(phases) * (args.seconds + 10) * 200))
    ring = SpscRing(RATE)
    feed = OutputFeed(ring, Resampler(output.samplerate))
    stop = threading.Event()
    producer = Producer(feed, stop)
    producer.start()
    time.sleep(0.2)
    output.start(ring)
    time.sleep(1.0)  # settle
    results = []
    try:
        for phase in phases:
            print(f"phase {phase}: {args.seconds:g} s ...", file=sys.stderr, flush=True)
            results.append(run_phase(phase, args.seconds, output, ring, xruns, args.threads))
    finally:
        stop.set()
        text = report(results, args, server, output)
        output.stop()
        client.deactivate()
        client.close()
        import sounddevice as sd

        sd._terminate()  # before the private server goes away (PortAudio's JACK client must close first)
    return text


if __name__ == "__main__":
    main()
