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

    python tools/expression_check.py --families [--model default] [--out reports/.../families]

The per-family suite (issue 20): for one representative program of each of the 16 General MIDI families, and for
drums, FluidSynth and the model offline render small files, measured alike (`family_cases`, `family_measure`):
- dynamics: one note at velocities 20/45/70/95/120, 1.5 s apart; each note's RMS level over its first 0.35 s,
  relative to the loudest. Target: within 3 dB of FluidSynth's curve at every velocity, and strictly rising.
- CC7 / CC11 static: a note with the controller at 127, then the controller set to 64 while nothing sounds, then
  the same note. Target: the second note 12 +- 2 dB quieter (General MIDI: 40 log10(64/127) = -11.9 dB).
- CC7 / CC11 moving: a held note, the controller 127 -> 64 at 2.0 s; the level drop over 1.0-1.9 s -> 2.3-3.2 s
  minus the same drop in the same note held with no change (so a decaying instrument's own decay cancels).
  Target 12 +- 2 dB.
- bend: a held note, the wheel to +2 semitones at 1.5 s; the pitch over 1.7-2.2 s. Target: within 20 cents of
  FluidSynth's.
- CC1: a held note, CC1 0 -> 127 at 2.5 s; the rise of the pitch track's sd (cents) from 0.8-2.3 s to 2.8-4.3 s.
  Target: at least half of FluidSynth's rise.
Each check is first measured on FluidSynth: where FluidSynth itself does not meet the check's premise (its bend not
within 30 cents of +200, its CC1 rise under 5 cents, its dynamics not rising), the family's check is reported as not
measurable rather than scored. Writes FAMILIES.md and families.json into --out.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
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


def timeline_file(program: int, events: list[tuple[float, mido.Message]], end_s: float, channel: int = 0) -> bytes:
    """A one-track file at 960 ticks per second: the program change at 0, then `events` (time s, message)."""
    midi = mido.MidiFile(ticks_per_beat=480)
    track = mido.MidiTrack()
    timeline = [(0.0, mido.Message("program_change", program=program, channel=channel))]
    timeline += [(t, m.copy(channel=channel)) for t, m in events]
    now = 0
    for t, message in sorted(timeline, key=lambda e: e[0]):
        tick = round(t * 960)
        track.append(message.copy(time=tick - now))
        now = tick
    track.append(mido.MetaMessage("end_of_track", time=round(end_s * 960) - now))
    midi.tracks.append(track)
    buffer = io.BytesIO()
    midi.save(file=buffer)
    return buffer.getvalue()


def midi_file(program: int, notes: list[int], hold_s: float, events: list[tuple[float, mido.Message]],
              end_s: float) -> bytes:
    """`notes` on together at 0.3 s for `hold_s`, with `events`; at one time a note-off and events come before a
    note-on."""
    timeline = [(0.3, 2, mido.Message("note_on", note=n, velocity=100)) for n in notes]
    timeline += [(0.3 + hold_s, 1, mido.Message("note_off", note=n, velocity=0)) for n in notes]
    timeline += [(t, 1, m) for t, m in events]
    return timeline_file(program, [(t, m) for t, _, m in sorted(timeline, key=lambda e: (e[0], e[1]))], end_s)


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


# One representative program per General MIDI family (the family is program // 8), and the pitch it plays.
FAMILY_PROGRAMS = {0: (0, 60), 1: (11, 72), 2: (19, 60), 3: (24, 55), 4: (33, 40), 5: (40, 67), 6: (48, 60),
                   7: (56, 67), 8: (65, 62), 9: (73, 72), 10: (81, 60), 11: (89, 60), 12: (98, 72), 13: (105, 60),
                   14: (114, 72), 15: (123, 72)}
VELOCITIES = (20, 45, 70, 95, 120)
DRUMS = 9  # the drum channel


def _note(t: float, length: float, pitch: int, velocity: int = 100) -> list[tuple[float, mido.Message]]:
    return [(t, mido.Message("note_on", note=pitch, velocity=velocity)),
            (t + length, mido.Message("note_off", note=pitch, velocity=0))]


def _cc(t: float, control: int, value: int) -> tuple[float, mido.Message]:
    return (t, mido.Message("control_change", control=control, value=value))


def family_cases(family: int | str) -> dict[str, bytes]:
    """The suite's files for one family (0..15) or "drums" (dynamics only: a kick and a snare)."""
    if family == "drums":
        events = [e for i, v in enumerate(VELOCITIES) for p in (36, 38) for e in _note(0.5 + 1.5 * i + 0.7 * (p == 38),
                                                                                       0.2, p, v)]
        return {"dynamics": timeline_file(0, events, 8.5, channel=DRUMS)}
    program, pitch = FAMILY_PROGRAMS[family]
    held = _note(0.5, 3.5, pitch)
    cases = {"dynamics": timeline_file(program, [e for i, v in enumerate(VELOCITIES)
                                                  for e in _note(0.5 + 1.5 * i, 1.0, pitch, v)], 8.0),
             "held": timeline_file(program, held, 4.5)}
    for name, control in (("cc7", 7), ("cc11", 11)):
        cases[f"{name}_static"] = timeline_file(program, [_cc(0.0, control, 127), *_note(0.5, 1.0, pitch),
                                                          _cc(2.0, control, 64), *_note(2.5, 1.0, pitch)], 4.0)
        cases[f"{name}_moving"] = timeline_file(program, [_cc(0.0, control, 127), *held, _cc(2.0, control, 64)], 4.5)
    bend = [(1.5 + 0.01 * k, mido.Message("pitchwheel", pitch=round(8191 * min(1.0, k / 5)))) for k in range(6)]
    cases["bend"] = timeline_file(program, [*held, *bend, (3.9, mido.Message("pitchwheel", pitch=0))], 4.5)
    cases["cc1"] = timeline_file(program, [_cc(0.0, 1, 0), *_note(0.5, 4.0, pitch)]
                                 + [_cc(2.5 + 0.02 * k, 1, min(127, 13 * k)) for k in range(11)], 5.0)
    return cases


def family_measure(audio: dict[str, np.ndarray], rate: int, pitch: int | None) -> dict:
    """The suite's raw measurements of one renderer's audio for one family (see the module docstring)."""
    out = {}
    if pitch is None:  # drums: kick and snare alternate; each hit's first 0.15 s
        onsets = [0.5 + 1.5 * i + 0.7 * k for i in range(len(VELOCITIES)) for k in (0, 1)]
        levels = [rms_db(span(audio["dynamics"], rate, t, t + 0.15)) for t in onsets]
        levels = [max(levels[2 * i], levels[2 * i + 1]) for i in range(len(VELOCITIES))]
    else:
        levels = [rms_db(span(audio["dynamics"], rate, 0.5 + 1.5 * i, 0.85 + 1.5 * i)) for i in range(len(VELOCITIES))]
    out["dynamics_db"] = [round(v - max(levels), 2) for v in levels]
    if pitch is None:
        return out
    level = lambda name, a, b: rms_db(span(audio[name], rate, a, b))  # noqa: E731
    held_drop = level("held", 1.0, 1.9) - level("held", 2.3, 3.2)
    for name in ("cc7", "cc11"):
        out[f"{name}_static_db"] = round(level(f"{name}_static", 0.55, 1.1) - level(f"{name}_static", 2.55, 3.1), 2)
        out[f"{name}_moving_db"] = round(level(f"{name}_moving", 1.0, 1.9) - level(f"{name}_moving", 2.3, 3.2)
                                         - held_drop, 2)
    out["bend_cents"] = pitch_cents(span(audio["bend"], rate, 1.7, 2.2), rate, pitch + 2) - 100 * pitch
    track = lambda a, b: [pitch_cents(span(audio["cc1"], rate, t, t + 0.04), rate, pitch)  # noqa: E731
                          for t in np.arange(a, b, 0.02)]
    out["cc1_sd_rise_cents"] = round(float(np.std(track(2.8, 4.3)) - np.std(track(0.8, 2.3))), 2)
    return out


def family_verdicts(ours: dict, ref: dict) -> dict:
    """Per check: True / False against its target, or None where FluidSynth does not meet the check's premise."""
    rising = lambda c: all(b > a for a, b in zip(c, c[1:]))  # noqa: E731
    v = {"dynamics": (rising(ours["dynamics_db"]) and max(abs(a - b) for a, b in zip(ours["dynamics_db"],
                                                                                    ref["dynamics_db"])) <= 3.0)
         if rising(ref["dynamics_db"]) else None}
    if "bend_cents" not in ref:
        return v
    for name in ("cc7_static", "cc7_moving", "cc11_static", "cc11_moving"):
        v[name] = abs(ours[f"{name}_db"] - 12.0) <= 2.0 if abs(ref[f"{name}_db"] - 12.0) <= 2.0 else None
    v["bend"] = abs(ours["bend_cents"] - ref["bend_cents"]) <= 20 if abs(ref["bend_cents"] - 200) <= 30 else None
    v["cc1"] = (ours["cc1_sd_rise_cents"] >= 0.5 * ref["cc1_sd_rise_cents"]
                if ref["cc1_sd_rise_cents"] >= 5 else None)
    return v


def run_families(synth, vocoder, renderer, only_reference: bool = False) -> dict:
    results = {}
    for family in [*range(16), "drums"]:
        cases = family_cases(family)
        pitch = None if family == "drums" else FAMILY_PROGRAMS[family][1]
        ref_audio = {name: renderer.render(midi) for name, midi in cases.items()}
        row = {"program": None if family == "drums" else FAMILY_PROGRAMS[family][0], "pitch": pitch,
               "fluidsynth": family_measure(ref_audio, SAMPLE_RATE, pitch)}
        if not only_reference:
            ours = {}
            with tempfile.TemporaryDirectory() as tmp:
                for name, midi in cases.items():
                    path = Path(tmp) / f"{name}.mid"
                    path.write_bytes(midi)
                    song = load_song(str(path))
                    ours[name] = vocoder(synth.render(song), events=NoteEvents.from_sequence(song))
            row["ours"] = family_measure(ours, SAMPLE_RATE, pitch)
            row["pass"] = family_verdicts(row["ours"], row["fluidsynth"])
        results[str(family)] = row
        print(f"family {family}: {row.get('pass', row['fluidsynth'])}", flush=True)
    return results


def families_report(results: dict, header: list[str]) -> str:
    checks = ["dynamics", "cc7_static", "cc7_moving", "cc11_static", "cc11_moving", "bend", "cc1"]
    key = {"dynamics": "dynamics_db", "bend": "bend_cents", "cc1": "cc1_sd_rise_cents"}
    lines = header + ["", "Each cell: ours / FluidSynth, then ✓ met, ✗ missed, n/a where FluidSynth does not meet the "
                      "check's premise. dynamics: dB re the loudest at v20 45 70 95 120; CC7/CC11: dB drop 127 -> 64; "
                      "bend: cents above the note (+2 st = 200); CC1: rise of the pitch track's sd (cents).", "",
                      "| family (program, pitch) | " + " | ".join(checks) + " |", "|---|" + "---|" * len(checks)]
    score = {c: [0, 0] for c in checks}
    for family, row in results.items():
        cells = []
        for c in checks:
            k = key.get(c, f"{c}_db")
            if k not in row["fluidsynth"]:
                cells.append("–")
                continue
            ref, ours = row["fluidsynth"][k], row.get("ours", {}).get(k)
            show = (lambda x: " ".join(f"{v:.0f}" for v in x)) if c == "dynamics" else (lambda x: f"{x:.1f}")
            verdict = row.get("pass", {}).get(c, "?")
            mark = {True: "✓", False: "✗", None: "n/a"}.get(verdict, "")
            if verdict in (True, False):
                score[c][0] += verdict
                score[c][1] += 1
            cells.append(f"{show(ours) if ours is not None else '–'} / {show(ref)} {mark}")
        name = "drums" if family == "drums" else f"{family} ({row['program']}, {row['pitch']})"
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if any("pass" in r for r in results.values()):
        lines += ["", "Met / measurable: " + ", ".join(f"{c} {a}/{b}" for c, (a, b) in score.items())]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--steps", type=int)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--delay-ms", type=float, default=100.0, help="the live run's declared delay")
    parser.add_argument("--out", type=Path, default=Path("reports/expression"))
    parser.add_argument("--jack", action="store_true", help="also through `play` on the running JACK server")
    parser.add_argument("--families", action="store_true", help="the per-family suite instead (see above)")
    parser.add_argument("--reference-only", action="store_true", help="with --families: FluidSynth alone")
    args = parser.parse_args(argv)

    from live_synth.audio import load_vocoder
    from live_synth.training.synth import make_renderer

    if args.families:
        try:
            synth = None if args.reference_only else load_synth(args.model, SynthOptions(steps=args.steps,
                                                                                         seed=args.seed))
            vocoder = None if synth is None else load_vocoder(synth.vocoder_path)
            results = run_families(synth, vocoder, make_renderer("fluidsynth"), args.reference_only)
        except LiveSynthError as exc:
            print(f"expression_check: error: {exc}", file=sys.stderr)
            return 2
        header = [f"# Per-family expression checks: {'FluidSynth only' if synth is None else args.model}", "",
                  f"- command: `python tools/expression_check.py {' '.join(argv or sys.argv[1:])}`",
                  f"- revision {revision()}; machine {machine()}"
                  + ("" if synth is None else f"; {synth.describe()}")]
        return write_report(args.out, "FAMILIES.md", families_report(results, header), "families.json", results)

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
    return write_report(args.out, "REPORT.md", "\n".join(lines) + "\n", "results.json", results)


def write_report(out: Path, markdown_name: str, markdown: str, json_name: str, results: dict) -> int:
    out.mkdir(parents=True, exist_ok=True)
    with atomic_output(out / markdown_name) as handle:
        handle.write(markdown.encode())
    with atomic_output(out / json_name) as handle:
        handle.write(json.dumps(results, indent=2, default=float).encode())
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
