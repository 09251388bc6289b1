"""`live-synth bench throughput`: offline real-time factor and per-tick compute, per engine × model × steps × hop.

Every configuration runs in one process, one after the other, on the same input (the packaged demo MIDI):
- encode, cold / warm (window family): notes + context encoders and the cross-attention memory for a window whose
  tokens changed / did not (the notes encoder's output reused, as in most live ticks); the causal family has none;
- step: one decoder denoise call (window family, batch 1, its window) or one frame step with its sampling steps
  (causal family: backbone + head, batch 1);
- vocoder: the streaming vocoder for one hop of frames;
- tick: the live stream's `generate` (what the worker calls: note state -> frames) + vocoder for one hop, on a held
  chord;
- offline: `Synth.render` of the demo + vocoding, as audio seconds per wall second (real-time factor).
Each operation is warmed up first; medians (and the tick's p99) over repeats are reported.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from live_synth.constants import FRAME_RATE, SAMPLE_RATE
from live_synth.provenance import machine, revision
from live_synth.synth import median_ms


@dataclass
class ThroughputRow:
    model: str
    engine: str
    device: str
    dtype: str
    steps: int
    hop: int
    params_m: float
    encode_cold_ms: float
    encode_warm_ms: float
    decoder_step_ms: float
    vocoder_hop_ms: float
    tick_ms_p50: float
    tick_ms_p99: float
    tick_budget_ms: float
    offline_rtf: float
    vocoder: str

    def markdown(self) -> str:
        return (f"| {self.model} | {self.engine} {self.device} {self.dtype} | {self.steps} | {self.hop} | "
                f"{self.encode_cold_ms:.2f} / {self.encode_warm_ms:.2f} | {self.decoder_step_ms:.2f} | "
                f"{self.vocoder_hop_ms:.2f} | {self.tick_ms_p50:.1f} / {self.tick_ms_p99:.1f} "
                f"(budget {self.tick_budget_ms:.0f}) | {self.offline_rtf:.1f}x |")


TABLE_HEAD = ("| model | engine | steps | hop | encode cold / warm (ms) | step (ms) | vocoder per hop (ms) | "
              "tick p50 / p99 (ms) | offline RTF |\n|---|---|---|---|---|---|---|---|---|")


def measure(model_spec: str, engine_name: str, steps: int, hop: int, device: str = "cpu", dtype: str = "float32",
            repeats: int = 20, ticks: int = 40, engine_dir: str | None = None, vocoder_spec: str | None = None,
            sampler: str = "ddim") -> ThroughputRow:
    from live_synth.audio import load_vocoder
    from live_synth.live.notes import NoteState
    from live_synth.live.vocode import streaming_vocoder
    from live_synth.synth import SynthOptions, load_song, load_synth, packaged_path

    synth = load_synth(model_spec, SynthOptions(engine=engine_name, device=device, dtype=dtype,
                                                engine_dir=engine_dir, steps=steps or None, sampler=sampler))
    hop = hop or synth.live_hop
    stream = synth.live_stream(hop)
    params = sum(p.numel() for p in synth.model.parameters()) / 1e6
    synth.warm_up()
    parts = synth.time_parts(repeats)

    vocoder = load_vocoder(vocoder_spec or synth.vocoder_path)
    vstream = streaming_vocoder(vocoder, engine=synth.engine.name)  # as `play` streams it
    frames = np.random.default_rng(0).uniform(-6, 1, (hop, 128)).astype(np.float32)
    notes = NoteState()
    for pitch in (60, 64, 67):  # a held chord: the excited vocoder's excitation has three notes to make
        notes.apply(0.0, [0x90, pitch, 90])
    vstream(frames, notes.events())
    vocoder_ms = median_ms(lambda: vstream(frames, notes.events()), repeats)

    tick_times = []
    for i in range(ticks + 2):
        start = time.perf_counter()
        vstream(stream.generate(notes), notes.events())
        if i >= 2:
            tick_times.append((time.perf_counter() - start) * 1e3)

    song = load_song(str(packaged_path("demo.mid")))
    start = time.perf_counter()
    from live_synth.midi.events import NoteEvents

    audio = vocoder(synth.render(song), events=NoteEvents.from_sequence(song))
    rtf = len(audio) / SAMPLE_RATE / (time.perf_counter() - start)
    return ThroughputRow(synth.source, engine_name, device, dtype, stream.steps, hop, round(params, 2),
                         parts["encode_cold"], parts["encode_warm"], parts["step"], vocoder_ms,
                         float(np.percentile(tick_times, 50)), float(np.percentile(tick_times, 99)),
                         hop / FRAME_RATE * 1e3, rtf, vstream.name)


def run_throughput_bench(models: list[str], engines: list[str], steps: list[int], hops: list[int],
                         out_jsonl: Path | None, device: str = "cpu", dtype: str = "float32",
                         engine_dir: str | None = None, vocoder: str | None = None, ticks: int = 40,
                         log=print) -> list[ThroughputRow]:
    rows = []
    key = {"revision": revision(), "machine": machine(), "threads": torch.get_num_threads()}
    for model in models:
        for engine in engines:
            for n in steps:
                for hop in hops:
                    row = measure(model, engine, n, hop, device, dtype, ticks=ticks, engine_dir=engine_dir,
                                  vocoder_spec=vocoder, repeats=max(5, min(20, ticks)))
                    log(row.markdown())
                    rows.append(row)
                    if out_jsonl is not None:
                        out_jsonl.parent.mkdir(parents=True, exist_ok=True)
                        with open(out_jsonl, "a") as handle:
                            handle.write(json.dumps({**key, **{k: (round(v, 3) if isinstance(v, float) else v)
                                                               for k, v in row.__dict__.items()}}) + "\n")
    return rows
