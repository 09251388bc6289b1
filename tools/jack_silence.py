"""Through JACK, is the silence between lone notes silent? Notes against the gaps between them, as `play` records.

    python tools/jack_silence.py [--model default] [-- PLAY ARGS ...]

Six lone piano notes (velocity 100, held 0.7 s, 1.5 s apart; tools/live_level.py's file) go through
`live-synth play --midi-file ... --record` on the running JACK server at play's defaults. In the recording (the
audio handed to the device, 48 kHz), per note: its level (the loudest 20 ms RMS while it is held) and the silence
before it (the median 20 ms RMS over the 0.3 s before its note-on, from the second note on). The recording is aligned
to the file by its first onset (the first 20 ms window within 40 dB of the loudest). Prints both in dBFS and their
difference; issue 12 asks for the silence at least 40 dB below the notes.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

from live_level import PITCHES, six_notes  # noqa: E402

FIRST_ON, SPACING, HOLD = 0.5, 1.5, 0.7  # seconds, as six_notes writes them


def rms_db(x: np.ndarray) -> float:
    return float(20 * np.log10(np.sqrt(np.mean(np.square(x, dtype=np.float64))) + 1e-10))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    model = argv[argv.index("--model") + 1] if "--model" in argv else "default"
    with tempfile.TemporaryDirectory() as tmp:
        midi, wav = six_notes(Path(tmp) / "six.mid"), Path(tmp) / "played.wav"
        done = subprocess.run([sys.executable, "-m", "live_synth", "play", "--midi-file", str(midi), "--model", model,
                               "--seconds", "11", "--record", str(wav), *extra], capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"play failed: {done.stderr.strip().splitlines()[-1:]}")
        audio, rate = sf.read(wav, dtype="float32")
    audio = audio.mean(axis=1) if audio.ndim > 1 else audio
    win = int(0.02 * rate)
    levels = np.array([rms_db(audio[i : i + win]) for i in range(0, len(audio) - win, win)])
    first = int(np.argmax(levels > levels.max() - 40)) * win  # the first note's onset in the recording
    offset = first / rate - FIRST_ON
    print(f"| note | pitch | level (dBFS) | silence before (dBFS) | difference (dB) |\n|---|---|---|---|---|")
    diffs = []
    for k, pitch in enumerate(PITCHES):
        on = offset + FIRST_ON + k * SPACING
        held = audio[int(on * rate) : int((on + HOLD) * rate)]
        level = max(rms_db(held[i : i + win]) for i in range(0, len(held) - win, win))
        if k == 0:
            print(f"| {k + 1} | {pitch} | {level:.1f} | – | – |")
            continue
        gap = audio[int((on - 0.3) * rate) : int(on * rate)]
        silence = float(np.median([rms_db(gap[i : i + win]) for i in range(0, len(gap) - win, win)]))
        diffs.append(level - silence)
        print(f"| {k + 1} | {pitch} | {level:.1f} | {silence:.1f} | {level - silence:.1f} |")
    print(f"smallest difference {min(diffs):.1f} dB (target: at least 40 dB); {model}, play {' '.join(extra)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
