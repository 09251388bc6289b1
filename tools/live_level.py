"""How loud does a model play live, next to offline? The live generation path, run faster than real time.

    python tools/live_level.py --model default [--model OTHER ...] [--midi FILE] [--hops 64 16 4] [--png out.png]
                               [--wav-dir DIR]

Live, every note-on is stamped at the committed end (the ring holds `--lead-ms` of audio ahead of the player), so a
note starts at the first frame of its window, and every window continues from frames the model made itself. This
tool runs exactly that code: a `GenerationWorker`'s `apply_midi` / `tick` with the model's torch fp32 engine on a
virtual clock (player time = committed end − lead), no audio device. Offline is `render_mel` on the same file (the
`render` command: 64-frame chunks, each continuing from the last).

Per run it prints the mel energy (mean of exp(log-mel) over bins): its mean, its 95th percentile over frames (the
notes) and its 5th percentile (the silence between them); live/offline ratios next to them. Default MIDI: six single
piano notes, velocity 100, held 0.7 s, 1.5 s apart (the MODEL_CARD's live-behaviour file).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engines.torch_engine import TorchEngine  # noqa: E402
from live_synth.audio import load_vocoder, save_spectrogram_rows_png, write_wav_atomic  # noqa: E402
from live_synth.cli import load_song, resolve_model_spec  # noqa: E402
from live_synth.constants import FRAME_RATE, HOP, SAMPLE_RATE  # noqa: E402
from live_synth.errors import LiveSynthError  # noqa: E402
from live_synth.live.generator import LiveGenerator, LivePolicy  # noqa: E402
from live_synth.live.midi_file import MidiFileSource  # noqa: E402
from live_synth.live.ring import SpscRing  # noqa: E402
from live_synth.live.worker import GenerationWorker  # noqa: E402
from live_synth.model import load_model  # noqa: E402
from live_synth.render import render_mel  # noqa: E402
from live_synth.sampling.samplers import make_sampler  # noqa: E402

PITCHES = (52, 57, 60, 64, 67, 71)


def six_notes(path: Path) -> Path:
    import mido

    midi = mido.MidiFile(ticks_per_beat=480)  # 120 bpm: 960 ticks per second
    track = mido.MidiTrack()
    midi.tracks.append(track)
    track.append(mido.Message("program_change", program=0, time=0))
    for i, pitch in enumerate(PITCHES):
        track.append(mido.Message("note_on", note=pitch, velocity=100, time=480 if i == 0 else 768))
        track.append(mido.Message("note_off", note=pitch, velocity=0, time=672))  # 0.7 s on, 0.8 s off
    track.append(mido.Message("note_off", note=PITCHES[0], velocity=0, time=960))  # 1 s of tail
    midi.save(str(path))
    return path


def live_mel(engine, midi: Path, hop: int, steps: int, sampler: str, lead_s: float, seed: int) -> np.ndarray:
    """The frames `play --midi-file` would commit, with the player `lead_s` behind the committed end."""
    gen = LiveGenerator(engine, LivePolicy(hop=hop, steps=steps, sampler=sampler), seed=seed)
    source = MidiFileSource(midi, clock=lambda: gen.frame / FRAME_RATE - lead_s)
    source.start = 0.0  # file time 0 = audio time 0
    frames: list[np.ndarray] = []

    def capture(mel: np.ndarray) -> np.ndarray:
        frames.append(mel)
        return np.zeros(len(mel) * HOP, np.float32)

    worker = GenerationWorker(gen, source, capture, SpscRing(16), push=len, lead_s=lead_s)
    worker.start_time = 0.0
    end = int((source.events[-1][0] + lead_s) * FRAME_RATE) + 1
    while gen.frame < end:
        worker.apply_midi()
        worker.tick()
    return np.concatenate(frames)[:end]


def energy_stats(mel: np.ndarray) -> dict[str, float]:
    frame_energy = np.exp(mel).mean(axis=1)
    return {"mean": float(frame_energy.mean()), "notes (p95)": float(np.percentile(frame_energy, 95)),
            "silence (p5)": float(np.percentile(frame_energy, 5))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", action="append", help="model folder or 'default' (repeatable)")
    parser.add_argument("--midi", type=Path, help="MIDI file (default: six single piano notes)")
    parser.add_argument("--hops", type=int, nargs="+", default=[64, 16, 4])
    parser.add_argument("--steps", type=int, help="sampling steps (default: the model's default_steps, else 1)")
    parser.add_argument("--sampler", default="ddim")
    parser.add_argument("--lead-ms", type=float, default=250.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--png", type=Path, help="offline and live spectrograms, one row per run")
    parser.add_argument("--wav-dir", type=Path, help="write each run's audio (the model's vocoder) here")
    args = parser.parse_args(argv)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            midi = args.midi or six_notes(Path(tmp) / "six_notes.mid")
            rows, table = [], []
            for spec in args.model or ["default"]:
                loaded = load_model(resolve_model_spec(spec)[0])
                engine = TorchEngine(loaded.model)
                vocoder = load_vocoder(loaded.vocoder_path) if args.wav_dir else None
                steps = loaded.model.config.sampling_steps(args.steps, 1)
                song = load_song(str(midi), loaded.model.config, [])
                runs = {"offline": render_mel(engine, song.segments, make_sampler(args.sampler, steps),
                                              generator=torch.Generator().manual_seed(args.seed), rolls=song.rolls)}
                for hop in args.hops:
                    runs[f"live hop {hop}"] = live_mel(engine, midi, hop, steps, args.sampler, args.lead_ms / 1e3,
                                                       args.seed)
                reference = energy_stats(runs["offline"])
                for name, mel in runs.items():
                    stats = energy_stats(mel)
                    table.append((spec, name, stats, {k: stats[k] / reference[k] for k in stats}))
                    rows.append((f"{spec} · {name} · {steps} step(s)", mel))
                    if vocoder is not None:
                        args.wav_dir.mkdir(parents=True, exist_ok=True)
                        label = f"{Path(spec).name}-{name.replace(' ', '-')}.wav"
                        write_wav_atomic(args.wav_dir / label, vocoder(mel), SAMPLE_RATE)
    except LiveSynthError as exc:
        print(f"live_level: error: {exc}", file=sys.stderr)
        return 2
    print(f"{'model':<28} {'run':<14} {'mean':>8} {'notes':>8} {'silence':>8}   live/offline: mean notes silence")
    for spec, name, stats, ratio in table:
        print(f"{Path(spec).name:<28} {name:<14} " + " ".join(f"{v:8.4f}" for v in stats.values())
              + "   " + " ".join(f"{v:5.2f}" for v in ratio.values()))
    if args.png:
        save_spectrogram_rows_png(args.png, rows)
        print(f"wrote {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
