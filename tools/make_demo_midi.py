"""Write the packaged demo MIDI (live_synth/assets/demo.mid): 12 s of piano, strings, bass and drums.

Deterministic; rerun only to change the demo. Usage: python tools/make_demo_midi.py [OUT]
"""

from __future__ import annotations

import sys
from pathlib import Path

import mido

TICKS = 480  # per quarter note; 120 bpm → 0.5 s per beat


def track(channel: int, program: int | None, notes: list[tuple[float, float, int, int]], name: str) -> mido.MidiTrack:
    """notes: (start beat, length in beats, pitch, velocity)."""
    events = []
    for start, length, pitch, velocity in notes:
        events.append((round(start * TICKS), mido.Message("note_on", channel=channel, note=pitch, velocity=velocity)))
        events.append((round((start + length) * TICKS), mido.Message("note_off", channel=channel, note=pitch)))
    events.sort(key=lambda e: (e[0], e[1].type == "note_on"))
    out = mido.MidiTrack([mido.MetaMessage("track_name", name=name)])
    if program is not None:
        out.append(mido.Message("program_change", channel=channel, program=program))
    now = 0
    for tick, msg in events:
        out.append(msg.copy(time=tick - now))
        now = tick
    return out


def demo() -> mido.MidiFile:
    chords = [(48, [60, 64, 67]), (45, [57, 60, 64]), (41, [57, 60, 65]), (43, [59, 62, 67])]  # C Am F G
    melody = [72, 74, 76, 79, 76, 74, 72, 71, 69, 71, 72, 74, 76, 74, 72, 67, 69, 72, 74, 76, 77, 76, 74, 72]
    piano = [(i * 1.0, 0.9, p, 70 + 8 * (i % 4 == 0)) for i, p in enumerate(melody)]
    strings, bass, drums = [], [], []
    for bar in range(6):
        root, chord = chords[bar % 4]
        strings += [(bar * 4.0, 3.9, p, 60) for p in chord]
        bass += [(bar * 4.0 + b, 0.9, root - 12, 90) for b in (0, 1.5, 2, 3)]
        drums += [(bar * 4.0 + b, 0.25, 36, 100) for b in (0, 2)] + [(bar * 4.0 + b, 0.25, 38, 90) for b in (1, 3)]
        drums += [(bar * 4.0 + b / 2, 0.2, 42, 60) for b in range(8)]
    mid = mido.MidiFile(ticks_per_beat=TICKS)
    meta = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=500_000)])
    mid.tracks += [meta, track(0, 0, piano, "piano"), track(1, 48, strings, "strings"),
                   track(2, 33, bass, "bass"), track(9, None, drums, "drums")]
    return mid


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "live_synth/assets/demo.mid"
    demo().save(out)
    print(f"wrote {out}")
