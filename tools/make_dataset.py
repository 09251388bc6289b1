"""Make a training dataset (issue #3, item 1): procedural + music21 MIDI -> dry reference audio -> dataset shards.

    python tools/make_dataset.py OUT_DIR --seed 0 --procedural N --corpus M [--sparse N] [--expression N] \\
        [--levels N] --heldout-fraction 0.1 [--renderer fluidsynth|tinysoundfont] [--soundfont PATH] [--no-audio] \\
        [--workers K] [--max-seconds S] [--ray [ADDRESS]]

Pieces: N procedural pieces named procedural/00000.. (piece i is `procedural.generate(derive_seed(seed,
"procedural", i))`) and the first M usable music21 works in the seed's order (`corpus.select_works`), named
music21/<work>, then --sparse, --expression and --levels pieces (`gestures.generate_sparse` / `generate_expression` /
`generate_levels` of `derive_seed(seed, "sparse"|"expression"|"levels", i)`: notes after silence; bends / mod wheel /
volume / expression; lone notes and velocity runs with CC7 / CC11 set in silence), named sparse/NNNNN,
expression/NNNNN and levels/NNNNN. Each is rendered at 16 kHz mono with reverb and chorus off (FluidSynth +
FluidR3_GM unless told otherwise), and written as DATASET/{train,validation,test}/NNNNN.npz (format:
live_synth/training/shards.py) with DATASET/manifest.json. A piece's split is a seeded hash of its source work
(`shards.split_of(shards.work_key(...))`: a corpus piece's tune, a generated piece itself), so that adding pieces
never moves the others and one tune's harmonisations stay on one side; training reads train/ only, choices are made
on validation/, and test/ is only reported.

--ray renders the pieces on Ray through live-synth's corpus runner (live_synth/corpus/runner.py): one actor per CPU
of a local Ray started here, or of the cluster at ADDRESS (`auto`, HOST:PORT), each holding its renderer; the
actors return the pieces and this process writes them, so the nodes need no shared folder (but each needs
live-synth, FluidSynth and the soundfont). Needs the cluster extra (pip install 'live-synth[cluster]').

Deterministic: the same arguments give byte-identical piece files and manifest (whatever --workers is; with --ray
the pieces are the same bytes, and the manifest differs only in `created_by`, the command line).
--no-audio leaves the int16 audio out of the piece files (a compact features-only copy, e.g. for the GPU machine);
the mel features are the same either way.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import shlex
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

from live_synth.constants import HOP, N_MELS, SAMPLE_RATE  # noqa: E402
from live_synth.errors import LiveSynthError  # noqa: E402
from live_synth.training.procedural import GM_FAMILIES, gm_family  # noqa: E402
from live_synth.training.shards import HELDOUT_SPLITS, SPLITS, piece_path, split_of, work_key, write_manifest  # noqa: E402

# --- work done per piece (in worker processes when --workers > 1) ----------------------------------------------------

_RENDERER = None  # set once per process by _init_worker


def _init_worker(renderer_name: str, soundfont: str) -> None:
    import torch

    from live_synth.training.synth import make_renderer

    global _RENDERER
    torch.set_num_threads(1)  # one thread per process; also keeps the mel bit-identical between runs
    _RENDERER = make_renderer(renderer_name, soundfont)


@dataclass(frozen=True)
class Task:
    """One piece to render: its name, where it goes, and its MIDI (procedural pieces make theirs in the worker)."""

    name: str
    source: str
    split: str
    path: str
    keep_audio: bool
    max_seconds: float
    procedural_seed: int | None = None  # the seed of a generated piece (procedural, sparse, expression, levels)
    midi: bytes | None = None


def _generated_midi(source: str, seed: int, max_seconds: float) -> bytes:
    from live_synth.training.corpus import crop
    from live_synth.training.gestures import generate_expression, generate_levels, generate_sparse
    from live_synth.training.procedural import generate, midi_bytes

    midi = {"procedural": generate, "sparse": generate_sparse, "expression": generate_expression,
            "levels": generate_levels}[source](seed)
    crop(midi, max_seconds)
    return midi_bytes(midi)


def build_piece(task: Task) -> dict:
    """Render one piece, compute its features, write its file; return its statistics for the manifest."""
    from live_synth.training.shards import write_piece

    piece, stats = make_piece(task, _RENDERER)
    write_piece(task.path, piece)
    return stats


def make_piece(task: Task, renderer):
    """Render one piece and compute its features: (Piece, its statistics for the manifest)."""
    import torch

    from live_synth.audio.features import log_mel
    from live_synth.midi import apply_sustain, read_midi
    from live_synth.training.shards import AUDIO_SCALE, Piece, note_arrays
    from live_synth.training.synth import to_int16

    midi = task.midi if task.midi is not None else _generated_midi(task.source, task.procedural_seed,
                                                                   task.max_seconds)
    audio, clipped = to_int16(renderer.render(midi))
    with torch.inference_mode():
        mel = log_mel(torch.from_numpy(audio.astype(np.float32) / np.float32(AUDIO_SCALE))).numpy()
    notes, is_drum = note_arrays(apply_sustain(read_midi(midi, name=task.name)))
    piece = Piece(task.name, task.source, midi, notes, is_drum, mel.astype(np.float16),
                  audio if task.keep_audio else None)  # fmt: skip
    programs = collections.Counter("drums" if d else str(int(p)) for p, d in zip(notes[:, 4], is_drum))
    return piece, {"name": task.name, "split": task.split, "file": f"{task.split}/{Path(task.path).name}",
                   "seconds": len(audio) / SAMPLE_RATE, "notes": len(notes), "programs": dict(programs),
                   "clipped": clipped, "peak": int(np.abs(audio.astype(np.int32)).max(initial=0))}  # fmt: skip


class ReferenceJob:
    """What a Ray worker holds (--ray): its renderer, made once; a Task in, (Piece, statistics) out."""

    def __init__(self, renderer_name: str, soundfont: str):
        import torch

        from live_synth.training.synth import make_renderer

        torch.set_num_threads(1)  # as _init_worker: one thread per worker, bit-identical mel
        self.renderer = make_renderer(renderer_name, soundfont)

    def describe(self) -> dict:
        return self.renderer.describe()

    def __call__(self, task: Task):
        return make_piece(task, self.renderer)


def convert_work(work: str, seed: int, max_seconds: float):
    """A corpus work -> CorpusPiece, or the reason it was skipped (a string)."""
    from live_synth.training.corpus import CorpusSkip, corpus_midi

    try:
        return corpus_midi(work, seed, max_seconds)
    except CorpusSkip as skip:
        return str(skip)


# --- running tasks in order, in this process or in a pool ------------------------------------------------------------


class _Inline:
    """The executor interface, run in this process (--workers 1): simpler to debug, no start-up cost."""

    def submit(self, fn: Callable, *args) -> Future:
        future: Future = Future()
        future.set_result(fn(*args))
        return future

    def shutdown(self, cancel_futures: bool = False) -> None:
        pass


def _executor(workers: int, renderer: str, soundfont: str):
    if workers == 1:
        _init_worker(renderer, soundfont)
        return _Inline()
    # spawn, not fork: the parent has imported torch, and forking a process with OpenMP threads can hang.
    return ProcessPoolExecutor(workers, get_context("spawn"), initializer=_init_worker, initargs=(renderer, soundfont))


def _ordered(executor, fn: Callable, items: Iterable, window: int) -> Iterator:
    """fn(*item) for each item, results in input order, at most `window` in flight; stop early by closing it."""
    pending: collections.deque[Future] = collections.deque()
    iterator = iter(items)
    try:
        while True:
            while len(pending) < window:
                item = next(iterator, None)
                if item is None:
                    break
                pending.append(executor.submit(fn, *item))
            if not pending:
                return
            yield pending.popleft().result()
    finally:
        for future in pending:
            future.cancel()


def render_on_ray(tasks: list[Task], renderer, address: str | None, progress) -> list[dict]:
    """Every task's piece rendered by Ray workers and written here; statistics in task order. A piece that fails
    stops the dataset with its one-line error (a dataset is all its pieces or nothing)."""
    import functools

    from live_synth.corpus.runner import Pool, PoolOptions, import_ray
    from live_synth.training.shards import write_piece

    import_ray().cloudpickle.register_pickle_by_value(sys.modules[__name__])  # tools/ is not importable on nodes
    stats: list = [None] * len(tasks)
    job = functools.partial(ReferenceJob, renderer.name, str(renderer.soundfont))
    with Pool(job, PoolOptions(address=None if address == "local" else address)) as pool:
        pool.start()
        with progress(total=len(tasks), desc="render + features (ray)", unit="piece") as bar:
            for outcome in pool.run(enumerate(tasks)):
                if not outcome.ok:
                    raise LiveSynthError(f"{tasks[outcome.key].name}: {outcome.error}")
                piece, stats[outcome.key] = outcome.value
                write_piece(tasks[outcome.key].path, piece)
                bar.update()
    return stats


# --- the dataset -----------------------------------------------------------------------------------------------------


def select_corpus(executor, args, window: int, progress) -> tuple[list, list[str]]:
    """The first `args.corpus` usable works of the seed's order, and the reasons the others before them were skipped."""
    if args.corpus == 0:
        return [], []
    from live_synth.training.corpus import select_works

    works, skipped = [], []
    bar = progress(total=args.corpus, desc="music21 -> MIDI", unit="work")
    results = _ordered(executor, convert_work, ((w, args.seed, args.max_seconds) for w in select_works(args.seed)),
                       window)  # fmt: skip
    for result in results:
        if isinstance(result, str):
            skipped.append(result)
            continue
        works.append(result)
        bar.update()
        if len(works) == args.corpus:
            results.close()
            break
    bar.close()
    if len(works) < args.corpus:
        print(f"warning: only {len(works)} usable music21 works (asked for {args.corpus})", file=sys.stderr)
    return works, skipped


def plan(args, works: list) -> list[Task]:
    """Name, split and file of every piece (procedural first, then corpus; numbered per split in that order)."""
    from live_synth.training.procedural import derive_seed

    entries = [(f"procedural/{i:05d}", "procedural", derive_seed(args.seed, "procedural", i), None)
               for i in range(args.procedural)]  # fmt: skip
    entries += [(work.name, "music21", None, work.midi) for work in works]
    # After the corpus, so that a dataset made without them numbers its files exactly as before.
    for source in ("sparse", "expression", "levels"):
        entries += [(f"{source}/{i:05d}", source, derive_seed(args.seed, source, i), None)
                    for i in range(getattr(args, source))]
    counters = dict.fromkeys(SPLITS, 0)
    tasks = []
    for name, source, seed, midi in entries:
        split = split_of(work_key(name, midi), args.seed, args.heldout_fraction)
        path = piece_path(args.out, split, counters[split])
        counters[split] += 1
        tasks.append(Task(name, source, split, str(path), not args.no_audio, args.max_seconds, seed, midi))
    return tasks


def manifest(args, argv: list[str], renderer, stats: list[dict], works: list, skipped: list[str]) -> dict:
    per_split = {s: [x for x in stats if x["split"] == s] for s in SPLITS}
    programs = collections.Counter()
    for x in stats:
        programs.update(x["programs"])
    return {
        "created_by": "python tools/make_dataset.py " + shlex.join(argv),
        "seed": args.seed,
        "sample_rate": SAMPLE_RATE,
        "hop": HOP,
        "n_mels": N_MELS,
        "features": "natural-log mel (live_synth.audio.log_mel) of the int16 audio / 32767, float16",
        "audio_stored": not args.no_audio,
        "renderer": renderer.describe(),
        "soundfont": _soundfont_info(renderer.soundfont),
        "max_seconds": args.max_seconds,
        "heldout_fraction": args.heldout_fraction,
        "sources": {"procedural": args.procedural, "music21": len(works), "sparse": args.sparse,
                    "expression": args.expression,
                    **({"levels": args.levels} if args.levels else {})},  # a dataset without them reads as before
        "counts": {s: len(v) for s, v in per_split.items()},
        "hours": {s: round(sum(x["seconds"] for x in v) / 3600, 6) for s, v in per_split.items()},
        "notes": {s: sum(x["notes"] for x in v) for s, v in per_split.items()},
        "programs": {k: programs[k] for k in sorted(programs, key=_program_order)},
        "families": _families(programs),
        "clipped_samples": sum(x["clipped"] for x in stats),
        **{f"{s}_pieces": [x["name"] for x in per_split[s]] for s in HELDOUT_SPLITS},
        "pieces": {x["file"]: x["name"] for x in stats},
        "corpus": {
            "works": {w.name: {"ensemble": w.ensemble, "rights": w.rights} for w in works},
            "skipped": skipped,
        },
    }


def _program_order(key: str) -> tuple[bool, int]:
    return (key == "drums", 0 if key == "drums" else int(key))


def _families(programs: collections.Counter) -> dict[str, int]:
    families = collections.Counter()
    for key, count in programs.items():
        families[gm_family(0, True) if key == "drums" else gm_family(int(key))] += count
    order = [*GM_FAMILIES, "drums"]
    return {f: families[f] for f in order if families[f]}


def _soundfont_info(path: Path) -> dict:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return {"path": str(path), "name": path.name, "bytes": path.stat().st_size, "sha256": digest.hexdigest()}


def summary(out: Path, m: dict, wall_s: float) -> str:
    total_h = sum(m["hours"].values())
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    renderer = m["renderer"]
    lines = [
        f"dataset {out}: {sum(m['counts'].values())} pieces ({m['counts']['train']} train, "
        f"{m['counts']['validation']} validation, {m['counts']['test']} test), {total_h:.3f} h of audio "
        f"({total_h * 60:.1f} min; train {m['hours']['train'] * 60:.1f} min, validation "
        f"{m['hours']['validation'] * 60:.1f} min, test {m['hours']['test'] * 60:.1f} min)",
        f"notes: {sum(m['notes'].values())} (train {m['notes']['train']}, validation {m['notes']['validation']}, "
        f"test {m['notes']['test']})",
        f"sources: {m['sources']['procedural']} procedural, {m['sources']['music21']} music21 "
        f"({len(m['corpus']['skipped'])} works skipped on the way), {m['sources']['sparse']} sparse, "
        f"{m['sources']['expression']} expression, {m['sources'].get('levels', 0)} levels",
        f"renderer: {renderer['name']} ({renderer['version']}), soundfont {m['soundfont']['name']}, "
        f"{m['sample_rate']} Hz mono, reverb and chorus off; clipped samples: {m['clipped_samples']}",
        f"audio stored: {'yes' if m['audio_stored'] else 'no (features only)'}; size on disk {size / 1e6:.1f} MB; "
        f"wall time {wall_s:.1f} s",
        "notes per GM family (programs):",
    ]
    by_family: dict[str, list[str]] = collections.defaultdict(list)
    for key in m["programs"]:
        by_family["drums" if key == "drums" else gm_family(int(key))].append(key)
    for family, count in m["families"].items():
        programs = ", ".join(p for p in by_family[family] if p != "drums")
        lines.append(f"  {family:<22}{count:>8}" + (f"  ({programs})" if programs else ""))
    for split in HELDOUT_SPLITS:
        held = m[f"{split}_pieces"]
        lines.append(f"{split} pieces ({len(held)}): " + (", ".join(held) if held else "none"))
    return "\n".join(lines)


# --- command line ----------------------------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("out", type=Path, metavar="OUT_DIR", help="dataset folder to create (must be new or empty)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--procedural", type=int, default=40, metavar="N", help="procedural pieces (default 40)")
    parser.add_argument("--corpus", type=int, default=20, metavar="M", help="music21 works (default 20)")
    parser.add_argument("--sparse", type=int, default=0, metavar="N",
                        help="pieces of gestures after silence (training/gestures.py; default 0)")
    parser.add_argument("--expression", type=int, default=0, metavar="N",
                        help="pieces moved by pitch bend, CC1, CC7, CC11 (training/gestures.py; default 0)")
    parser.add_argument("--levels", type=int, default=0, metavar="N",
                        help="pieces of lone notes and velocity runs with CC7 / CC11 set in silence (default 0)")
    parser.add_argument("--heldout-fraction", type=float, default=0.1, metavar="F",
                        help="share of pieces held out for evaluation (default 0.1)")  # fmt: skip
    parser.add_argument("--renderer", choices=("fluidsynth", "tinysoundfont"), default=None,
                        help="default: fluidsynth if installed, else tinysoundfont")  # fmt: skip
    parser.add_argument("--soundfont", default=None, metavar="PATH",
                        help="sf2/sf3 file (default: $LIVE_SYNTH_SOUNDFONT or /usr/share/sounds/sf2/FluidR3_GM.sf2)")
    parser.add_argument("--no-audio", action="store_true", help="leave the audio out of the piece files")
    parser.add_argument("--workers", type=int, default=1, metavar="K", help="processes (default 1)")
    parser.add_argument("--max-seconds", type=float, default=40.0, metavar="S",
                        help="cut every piece after S seconds (default 40)")  # fmt: skip
    parser.add_argument("--overwrite", action="store_true", help="replace a dataset already in OUT_DIR")
    parser.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                        help="render the pieces on Ray: a local Ray started here, or the cluster at ADDRESS "
                             "(needs pip install 'live-synth[cluster]')")  # fmt: skip
    args = parser.parse_args(argv)
    counts = (args.procedural, args.corpus, args.sparse, args.expression, args.levels)
    if min(counts) < 0 or sum(counts) == 0:
        parser.error("--procedural, --corpus, --sparse, --expression and --levels must be >= 0, and not all 0")
    if not 0.0 <= args.heldout_fraction < 1.0:
        parser.error("--heldout-fraction must be in [0, 1)")
    if args.workers < 1 or args.max_seconds <= 0:
        parser.error("--workers must be >= 1 and --max-seconds > 0")
    return args


def _prepare(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise LiveSynthError(f"{out} exists and is not a folder")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise LiveSynthError(f"{out} is not empty (choose a new folder, or pass --overwrite to replace a dataset)")
        if not (out / "manifest.json").exists():
            raise LiveSynthError(f"{out} is not empty and holds no dataset: refusing to overwrite it")
        for split in SPLITS:
            shutil.rmtree(out / split, ignore_errors=True)
        (out / "manifest.json").unlink()
    for split in SPLITS:
        (out / split).mkdir(parents=True, exist_ok=True)


def run(args: argparse.Namespace, argv: list[str]) -> dict:
    """Make the dataset; return its manifest."""
    import torch
    from tqdm import tqdm

    from live_synth.training.synth import make_renderer

    renderer = make_renderer(args.renderer, args.soundfont)  # fails early, with one line, if nothing can render
    if getattr(args, "ray", None):
        from live_synth.corpus.runner import import_ray

        import_ray()  # the install hint before any work
    _prepare(args.out, args.overwrite)
    threads = torch.get_num_threads()
    executor = _executor(args.workers, renderer.name, str(renderer.soundfont))
    try:
        window = 2 * args.workers if args.workers > 1 else 1
        works, skipped = select_corpus(executor, args, window, tqdm)
        tasks = plan(args, works)
        stats = []
        if getattr(args, "ray", None):
            stats = render_on_ray(tasks, renderer, args.ray, tqdm)
        else:
            with tqdm(total=len(tasks), desc="render + features", unit="piece") as bar:
                for result in _ordered(executor, build_piece, ((t,) for t in tasks), window):
                    stats.append(result)
                    bar.update()
    finally:
        executor.shutdown(cancel_futures=True)
        torch.set_num_threads(threads)
    m = manifest(args, argv, renderer, stats, works, skipped)
    write_manifest(args.out, m)
    return m


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    start = time.perf_counter()
    try:
        m = run(args, argv)
    except LiveSynthError as error:
        print(f"make_dataset: error: {error}", file=sys.stderr)
        return 1
    print(summary(args.out, m, time.perf_counter() - start))
    return 0


if __name__ == "__main__":
    sys.exit(main())
