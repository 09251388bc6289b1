"""Real-time factor of the streaming neural vocoder (offline path and streaming chunks) next to Griffin-Lim.

    python tools/bench_vocoder.py [--vocoder PATH | --preset base] [--seconds 10] [--threads 2 1] [--no-onnx]
                                  [--append BENCHMARKS.md]

Everything runs in one process, one after the other, on the same input: the log-mel of a synthetic piece of music
(overlapping harmonic notes; never zeros). Each measurement is warmed up once, then the median of --repeats runs is
reported. Streaming feeds the whole input through `step` in chunks of 1, 4 and 16 frames (20, 80, 320 ms) from a
fresh state, as the live engine would, and also reports the per-call latency (median and 99th percentile), which is
what a live tick pays. When onnxruntime is installed, the same streaming also runs through the exported step
graph (`export_step_onnx`) with ONNX Runtime's CPU provider at the same thread count. The cost does not depend on
the weights, so an untrained model (--preset) measures the same as a trained one. Prints a markdown block with
machine, git revision, load average and command. Run it on an otherwise idle machine: with 2 threads, torch's
OpenMP loses most of its speed when another process holds one of the two cores.
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from live_synth.audio.features import log_mel
from live_synth.audio.neural_vocoder import StreamingVocoder, load_streaming_vocoder, onnx_state_names, preset
from live_synth.audio.vocoders import GriffinLimVocoder
from live_synth.constants import HOP, SAMPLE_RATE
from live_synth.provenance import machine, revision

ROOT = Path(__file__).resolve().parents[1]


def music_like_mel(seconds: float) -> torch.Tensor:
    """Log-mel [T, 128] of overlapping decaying harmonic notes (a new note every 0.25 s)."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    audio = np.zeros_like(t)
    rng = np.random.default_rng(0)
    for start in np.arange(0.0, seconds, 0.25):
        f0 = 110.0 * 2 ** (rng.integers(0, 36) / 12)
        envelope = (t >= start) * np.exp(-4.0 * np.clip(t - start, 0.0, None))
        for harmonic in range(1, 8):
            audio += envelope * 0.1 / harmonic * np.sin(2 * np.pi * f0 * harmonic * t)
    return log_mel(torch.from_numpy(audio.astype(np.float32)))


def median_time(fn, repeats: int) -> tuple[float, list[float]]:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def stream_latencies(model: StreamingVocoder, mel: torch.Tensor, chunk: int) -> list[float]:
    """Seconds per `step` call over the whole input, from a fresh state."""
    state = model.initial_state(1)
    latencies = []
    for start in range(0, mel.shape[1], chunk):
        begin = time.perf_counter()
        _, state = model.step(mel[:, start : start + chunk], state)
        latencies.append(time.perf_counter() - begin)
    return latencies


def ort_stream_latencies(session, names: list[str], state: list[np.ndarray], mel: np.ndarray, chunk: int
                         ) -> list[float]:
    """Seconds per ONNX Runtime call of the step graph over the whole input, from `state`."""
    latencies = []
    for start in range(0, mel.shape[1], chunk):
        begin = time.perf_counter()
        _, *state = session.run(None, {"mel": mel[:, start : start + chunk], **dict(zip(names, state))})
        latencies.append(time.perf_counter() - begin)
    return latencies


def onnx_sessions(model: StreamingVocoder, threads: list[int]) -> dict[int, object]:
    """One ONNX Runtime session of the exported step graph per thread count ({} without onnxruntime)."""
    try:
        import onnxruntime as ort
    except ImportError:
        return {}
    import tempfile

    from live_synth.audio.neural_vocoder import export_step_onnx

    with tempfile.TemporaryDirectory() as folder:
        path = export_step_onnx(model, Path(folder) / "step.onnx")
        sessions = {}
        for count in threads:
            options = ort.SessionOptions()
            options.intra_op_num_threads = count
            options.inter_op_num_threads = 1
            sessions[count] = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return sessions


def latency_row(name: str, threads: int, runs: list[list[float]]) -> tuple[str, int, float, str]:
    wall = statistics.median(sum(run) for run in runs)
    calls = np.array([c for run in runs for c in run]) * 1e3
    return name, threads, wall, f"{np.median(calls):.2f} / {np.percentile(calls, 99):.2f}"






def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vocoder", type=Path, help="a trained vocoder (folder or .safetensors)")
    parser.add_argument("--preset", default="base", help="an untrained vocoder of this shape (default base)")
    parser.add_argument("--seconds", type=float, default=10.0, help="audio per run")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, nargs="+", default=[2, 1])
    parser.add_argument("--chunks", type=int, nargs="+", default=[1, 4, 16], help="streaming chunk sizes in frames")
    parser.add_argument("--griffin-lim-iters", type=int, default=64)
    parser.add_argument("--no-onnx", action="store_true", help="skip the ONNX Runtime rows")
    parser.add_argument("--append", type=Path, help="also append the markdown block to this file")
    args = parser.parse_args(argv)

    model = load_streaming_vocoder(args.vocoder) if args.vocoder else StreamingVocoder(preset(args.preset)).eval()
    mel = music_like_mel(args.seconds)[None]
    seconds = mel.shape[1] * HOP / SAMPLE_RATE
    griffin_lim = GriffinLimVocoder(n_iter=args.griffin_lim_iters)
    rows = []
    sessions = {} if args.no_onnx else onnx_sessions(model, args.threads)
    names, initial = onnx_state_names(model), model.initial_state(1)
    load_before = load_average()
    with torch.inference_mode():
        for threads in args.threads:
            torch.set_num_threads(threads)
            wall, _ = median_time(lambda: model(mel), args.repeats)
            rows.append(("neural, offline", threads, wall, "-"))
            for chunk in args.chunks:
                runs = [stream_latencies(model, mel, chunk) for _ in range(args.repeats + 1)][1:]  # 1st: warm-up
                rows.append(latency_row(f"neural, streaming {chunk} frame{'s' * (chunk > 1)} ({chunk * 20} ms)",
                                        threads, runs))
            if threads in sessions:
                state = [t.numpy() for t in (*initial.caches, initial.tail)]
                for chunk in args.chunks:
                    runs = [ort_stream_latencies(sessions[threads], names, state, mel.numpy(), chunk)
                            for _ in range(args.repeats + 1)][1:]
                    rows.append(latency_row(f"neural ONNX Runtime, streaming {chunk} frame{'s' * (chunk > 1)}",
                                            threads, runs))
            wall, _ = median_time(lambda: griffin_lim(mel[0].numpy()), max(1, args.repeats // 2))
            rows.append((f"Griffin-Lim {args.griffin_lim_iters} it, offline", threads, wall, "-"))
    load_after = load_average()

    cfg = model.config
    source = str(args.vocoder) if args.vocoder else f"preset {args.preset} (untrained; cost does not depend on weights)"
    lines = [
        f"### Streaming vocoder real-time factor ({time.strftime('%Y-%m-%d')})",
        f"- machine: {machine()}; torch {torch.__version__}; revision {revision()}",
        f"- load average before / after: {load_before} / {load_after} (the machine may be shared)",
        f"- command: `python {' '.join(shlex.quote(a) for a in [Path(sys.argv[0]).as_posix(), *sys.argv[1:]])}`",
        f"- vocoder: {source}; {model.num_parameters / 1e6:.2f} M parameters (dim {cfg.dim}, MLP {cfg.hidden}, "
        f"{cfg.layers} blocks, kernel {cfg.kernel}, look-ahead {cfg.lookahead} frame = {model.delay_samples} samples)",
        f"- input: {seconds:.2f} s of music-like log-mel ({mel.shape[1]} frames); median of {args.repeats} runs "
        "after a warm-up; fp32, batch 1, torch.inference_mode"
        + (f"; onnxruntime {__import__('onnxruntime').__version__}" if sessions else ""),
        "",
        "| path | threads | wall time per run | real-time factor (audio s / wall s) | per call p50 / p99 (ms) |",
        "|---|---|---|---|---|",
    ]
    for name, threads, wall, latency in rows:
        lines.append(f"| {name} | {threads} | {wall * 1e3:.1f} ms | {seconds / wall:.1f}x | {latency} |")
    block = "\n".join(lines) + "\n"
    print(block)
    if args.append:
        with open(args.append, "a") as handle:
            handle.write("\n" + block)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
