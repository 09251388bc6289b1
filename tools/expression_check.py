"""Do pitch bend, volume and the mod wheel do what a player expects? FluidSynth next to the model, offline and live.

    python tools/expression_check.py [--model default] [--steps N] [--seed 0] [--out reports/expression]

Three MIDI files, each rendered by FluidSynth (the reference, which also validates the measurements), by the model
offline (`render`), and by the model live (the generation worker on a virtual clock, as tools/live_level.py runs it;
the file's events arrive in real time and are rolled back into the speculative frames):
- bend: A4 held 3 s on a flute (GM 73: a steady tone), the wheel at its top (+2 semitones, the General MIDI range)
  from 1.0 s to 2.0 s. Measured: the pitch (harmonic summation over 5 harmonics at 1-cent resolution) over 1.3-1.8 s
  against B4. Target: within 30 cents.
- volume: an organ chord (GM 19) held 3 s, CC7 at 127 until 1.5 s, then 64. Measured: the RMS level over 0.6-1.4 s
  minus that over 1.9-2.7 s. Target: 12 +- 2 dB (General MIDI: 40 log10(64/127) = -11.9 dB).
- mod wheel: a violin A4 (GM 40) held 4 s, CC1 at 0 until 2 s, then 127. Measured: the standard deviation of the
  pitch track (cents, 40 ms windows) over 0.6-1.8 s and over 2.6-3.8 s. Target: the second larger than the first.
Writes REPORT.md and results.json into --out.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

import mido
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

from live_synth.constants import SAMPLE_RATE  # noqa: E402
from live_synth.errors import LiveSynthError  # noqa: E402
from live_synth.files import atomic_output  # noqa: E402
from live_synth.provenance import machine, revision  # noqa: E402
from live_synth.synth import SynthOptions, load_song, load_synth  # noqa: E402
from live_synth.midi.events import NoteEvents  # noqa: E402


def midi_file(program: int, notes: list[int], hold_s: float, events: list[tuple[float, mido.Message]],
              end_s: float) -> bytes:
    midi = mido.MidiFile(ticks_per_beat=480)  # 120 bpm: 960 ticks per second
    track = mido.MidiTrack()
    timeline = [(0.0, 0, mido.Message("program_change", program=program))]
    timeline += [(0.3, 2, mido.Message("note_on", note=n, velocity=100)) for n in notes]
    timeline += [(0.3 + hold_s, 1, mido.Message("note_off", note=n, velocity=0)) for n in notes]
    timeline += [(t, 1, m) for t, m in events]
    now = 0
    for t, _, message in sorted(timeline, key=lambda e: (e[0], e[1])):
        tick = round(t * 960)
        track.append(message.copy(time=tick - now))
        now = tick
    track.append(mido.MetaMessage("end_of_track", time=round(end_s * 960) - now))
    midi.tracks.append(track)
    buffer = io.BytesIO()
    midi.save(file=buffer)
    return buffer.getvalue()


def cases() -> dict[str, bytes]:
    bend = [(1.0 + 0.01 * k, mido.Message("pitchwheel", pitch=round(8191 * min(1.0, k / 5)))) for k in range(6)]
    bend += [(2.0, mido.Message("pitchwheel", pitch=0))]
    return {
        "bend": midi_file(73, [69], 3.0, bend, 4.0),
        "volume": midi_file(19, [57, 60, 64], 3.0, [(0.0, mido.Message("control_change", control=7, value=127)),
                                                     (1.5, mido.Message("control_change", control=7, value=64))],
                            4.0),
        "modwheel": midi_file(40, [69], 4.0, [(2.0 + 0.02 * k, mido.Message("control_change", control=1,
                                                                             value=min(127, 13 * k)))
                                              for k in range(11)], 5.0),
    }


def pitch_cents(audio: np.ndarray, rate: int, near_midi: float) -> float:
    """MIDI pitch (in cents, 100 per semitone) of `audio` by harmonic summation (5 harmonics, 1/k weights) on a
    1-cent grid within 3 semitones of `near_midi`."""
    n = 1 << 17
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio)), n=n))
    freqs = np.fft.rfftfreq(n, 1 / rate)
    cents = np.arange(near_midi * 100 - 300, near_midi * 100 + 301)
    f0 = 440.0 * 2 ** ((cents / 100 - 69) / 12)
    scores = sum(np.interp(k * f0, freqs, spectrum) / k for k in range(1, 6))
    return float(cents[int(np.argmax(scores))])


def span(audio: np.ndarray, rate: int, a: float, b: float) -> np.ndarray:
    return audio[int(a * rate) : int(b * rate)]


def rms_db(audio: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(np.square(audio, dtype=np.float64)) + 1e-12))


def measure(name: str, audio: np.ndarray, rate: int) -> dict:
    if name == "bend":
        pitch = pitch_cents(span(audio, rate, 1.3, 1.8), rate, 71)
        return {"pitch_cents": pitch, "error_cents": pitch - 7100, "pass": abs(pitch - 7100) <= 30}
    if name == "volume":
        drop = rms_db(span(audio, rate, 0.6, 1.4)) - rms_db(span(audio, rate, 1.9, 2.7))
        return {"drop_db": drop, "pass": abs(drop - 12) <= 2}
    track = lambda a, b: [pitch_cents(span(audio, rate, t, t + 0.04), rate, 69)  # noqa: E731
                          for t in np.arange(a, b, 0.02)]
    before, after = np.std(track(0.6, 1.8)), np.std(track(2.6, 3.8))
    return {"vibrato_sd_cents_before": float(before), "vibrato_sd_cents_after": float(after),
            "pass": bool(after > before)}


def live_audio(synth, vocoder, midi_path: Path, delay_ms: float) -> np.ndarray:
    from live_level import live_mel

    from live_synth.live.generation import PlaySettings

    lead_s = synth.live_lead_ms(delay_ms, PlaySettings.ahead) / 1e3  # play's defaults
    mel, _ = live_mel(synth, midi_path, synth.live_hop, lead_s, delay_ms / 1e3)
    return vocoder(mel)


def jack_audio(model: str, midi_path: Path, steps: int | None) -> tuple[np.ndarray, int]:
    """`live-synth play --midi-file` through the running JACK server, recorded: (audio, rate), aligned to the
    file's time 0 by the first sample above the recording's silence minus the first note's time (0.3 s)."""
    import subprocess
    import tempfile

    import soundfile as sf

    with tempfile.TemporaryDirectory() as tmp:
        rec = Path(tmp) / "played.wav"
        command = [sys.executable, "-m", "live_synth", "play", "--midi-file", str(midi_path), "--model", model,
                   "--record", str(rec), "--seconds", "7"] + (["--steps", str(steps)] if steps else [])
        done = subprocess.run(command, capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            raise LiveSynthError(f"play failed: {done.stderr.strip().splitlines()[-1:]}")
        audio, rate = sf.read(rec, dtype="float32")
    envelope = np.abs(audio)
    first = int(np.argmax(envelope > 0.02 * envelope.max()))
    start = max(0, first - int(0.3 * rate))
    return audio[start:], rate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--steps", type=int)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--delay-ms", type=float, default=100.0, help="the live run's declared delay")
    parser.add_argument("--out", type=Path, default=Path("reports/expression"))
    parser.add_argument("--jack", action="store_true", help="also through `play` on the running JACK server")
    args = parser.parse_args(argv)
    import tempfile

    from live_synth.audio import load_vocoder
    from live_synth.training.synth import make_renderer

    try:
        synth = load_synth(args.model, SynthOptions(steps=args.steps, seed=args.seed))
        vocoder = load_vocoder(synth.vocoder_path)
        renderer = make_renderer("fluidsynth")
        results = {}
        with tempfile.TemporaryDirectory() as tmp:
            for name, midi in cases().items():
                path = Path(tmp) / f"{name}.mid"
                path.write_bytes(midi)
                song = load_song(str(path))
                offline = vocoder(synth.render(song), events=NoteEvents.from_sequence(song))
                results[name] = {
                    "fluidsynth": measure(name, renderer.render(midi), SAMPLE_RATE),
                    "offline": measure(name, offline, SAMPLE_RATE),
                    "live": measure(name, live_audio(synth, vocoder, path, args.delay_ms), SAMPLE_RATE),
                }
                if args.jack:
                    results[name]["jack"] = measure(name, *jack_audio(args.model, path, args.steps))
    except LiveSynthError as exc:
        print(f"expression_check: error: {exc}", file=sys.stderr)
        return 2
    lines = [f"# Expression checks: {args.model}", "",
             f"- command: `python tools/expression_check.py {' '.join(argv or sys.argv[1:])}`",
             f"- revision {revision()}; machine {machine()}; {synth.describe()}", "",
             "| check | FluidSynth | ours offline | ours live (virtual clock) | ours through JACK | target |",
             "|---|---|---|---|---|---|"]
    fmt = {"bend": lambda r: f"{r['error_cents']:+.0f} cents", "volume": lambda r: f"{r['drop_db']:.1f} dB",
           "modwheel": lambda r: f"sd {r['vibrato_sd_cents_before']:.1f} -> {r['vibrato_sd_cents_after']:.1f} c"}
    targets = {"bend": "+2 st within 30 cents", "volume": "12 +- 2 dB", "modwheel": "sd rises"}
    for name, r in results.items():
        cells = [fmt[name](r[k]) + (" ✓" if r[k]["pass"] else " ✗") if k in r else "–"
                 for k in ("fluidsynth", "offline", "live", "jack")]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {targets[name]} |")
    report = "\n".join(lines) + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    with atomic_output(args.out / "REPORT.md") as handle:
        handle.write(report.encode())
    with atomic_output(args.out / "results.json") as handle:
        handle.write(json.dumps(results, indent=2, default=float).encode())
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
