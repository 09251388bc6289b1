"""Does a levels piece carry the signal? Per strike: its velocity, the CC7/CC11 in force, and FluidSynth's level
(peak 50 ms RMS in the first 300 ms, dBFS). Fit level ~ a*40log10(vel/127) + b*40log10(cc7/127) + c*40log10(cc11/127)."""
import sys, numpy as np, mido, io
from live_synth.training.gestures import generate_levels, midi_bytes
from live_synth.training.synth import make_renderer
r = make_renderer("fluidsynth")
rows = []
for seed in range(int(sys.argv[1]) if len(sys.argv) > 1 else 6):
    midi = generate_levels(1000 + seed)
    audio = r.render(midi_bytes(midi))
    sr = r.sample_rate
    cc = {7: 100, 11: 127}
    ev = []
    for track in midi.tracks:
        tick = 0
        for m in track:
            tick += m.time
            if not m.is_meta: ev.append((mido.tick2second(tick, midi.ticks_per_beat, 500000), m))
    ev.sort(key=lambda e: e[0])
    prog = 0
    for t, m in ev:
        if m.type == "program_change": prog = m.program
        if m.type == "control_change" and m.control in (7, 11): cc[m.control] = m.value
        if m.type == "note_on" and m.velocity > 0 and m.channel != 9:
            seg = audio[int(t * sr): int((t + 0.3) * sr)]
            w = int(0.05 * sr)
            rms = max(np.sqrt(np.mean(seg[i:i + w] ** 2)) for i in range(0, len(seg) - w, w // 2))
            rows.append((seed, prog, m.note, m.velocity, cc[7], cc[11], 20 * np.log10(rms + 1e-9)))
a = np.array(rows, float)
# per piece+pitch offset: compare strikes of one pitch in one piece
X = np.stack([40 * np.log10(a[:, 3] / 127), 40 * np.log10(a[:, 4] / 127), 40 * np.log10(a[:, 5] / 127)], 1)
keys = [(int(s), int(p)) for s, p in zip(a[:, 0], a[:, 2])]
groups = {k: i for i, k in enumerate(dict.fromkeys(keys))}
G = np.zeros((len(a), len(groups))); G[np.arange(len(a)), [groups[k] for k in keys]] = 1
coef, *_ = np.linalg.lstsq(np.concatenate([X, G], 1), a[:, 6], rcond=None)
print(f"{len(a)} strikes in {int(a[:,0].max())+1} pieces; level per unit of 40log10(x/127): velocity {coef[0]:.2f}, CC7 {coef[1]:.2f}, CC11 {coef[2]:.2f} (General MIDI: 1.0 each)")
print("CC7 values", sorted(set(a[:, 4].astype(int))), "CC11 values", sorted(set(a[:, 5].astype(int))))
