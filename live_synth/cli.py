"""Command line: `live-synth render | play | vocode | export | bench | devices | info | tokens` (`python -m
live_synth ...` works the same).

Arguments are bound to the library's dataclasses here and nowhere else. A user-caused problem (`LiveSynthError`)
prints one line on stderr and exits with status 2; bugs keep their tracebacks.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

from live_synth import __version__
from live_synth.errors import DeviceLostError, LiveSynthError
from live_synth.live.priority import GENERATION_PRIORITIES
from live_synth.live.session import PlaySettings

from live_synth.synth import (
    DEFAULT_MODEL,
    RENDER_STEPS,
    SynthOptions,
    check_engine_available,
    load_song,
    load_synth,
    packaged_path,
    resolve_model_spec,
)


def warn(message: str) -> None:
    print(f"live-synth: warning: {message}", file=sys.stderr)


def check_output_folder(path: str | None) -> None:
    """Fail before any work when an output could not be written (a missing or read-only folder)."""
    if path is None:
        return
    folder = Path(path).resolve().parent
    if not folder.is_dir():
        raise LiveSynthError(f"{path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise LiveSynthError(f"{path}: folder {folder} is not writable")


def cmd_render(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from live_synth.audio import load_vocoder, save_spectrogram_png, write_wav_atomic
    from live_synth.constants import SAMPLE_RATE

    if args.threads:
        torch.set_num_threads(args.threads)
    midi_path = str(packaged_path("demo.mid")) if args.demo else args.input
    if midi_path is None:
        raise LiveSynthError("render needs a MIDI file (or --demo)")
    check_output_folder(args.output)
    check_output_folder(args.spectrogram)
    check_engine_available(args.engine)
    from live_synth.sampling.samplers import make_sampler

    make_sampler(args.sampler, 1 if args.steps is None else args.steps)  # bad input fails before the model loads
    curve = None
    if args.morph:
        from live_synth.model.morph import MorphCurve

        curve = MorphCurve.parse(args.morph)
        if args.engine == "auto":
            args.engine = "torch"  # the morph rewrites weights frame by frame (live_synth/model/morph.py)
    song = load_song(midi_path)
    chain = None
    if args.fx:
        from live_synth.fx import load_chain

        chain = load_chain(args.fx)
    synth = load_synth(args.model, SynthOptions(
        engine=args.engine, device=args.device, dtype=args.dtype, engine_dir=args.engine_dir,
        cuda_graph=args.cuda_graph, steps=args.steps, sampler=args.sampler, guidance=args.guidance, seed=args.seed))
    warnings = synth.warnings + synth.song_warnings(song, midi_path)
    vocoder = load_vocoder(args.vocoder or synth.vocoder_path)
    for line in warnings:  # only once every input has been accepted: a bad input is one error line, nothing else
        warn(line)

    start = time.perf_counter()
    with tqdm(total=1000, unit="‰", desc="render", file=sys.stderr, disable=args.quiet) as bar:
        def progress(done: int, total: int) -> None:
            bar.update(round(1000 * done / max(total, 1)) - bar.n)

        mel = synth.render(song, progress=progress) if curve is None else synth.render_morph(song, curve, progress)
        bar.update(1000 - bar.n)
    from live_synth.midi.events import NoteEvents

    audio = vocoder(mel, events=NoteEvents.from_sequence(song))  # the excited vocoder is told the notes
    if chain is not None and not chain.empty:
        audio = chain.render(audio, SAMPLE_RATE)
    elapsed = time.perf_counter() - start
    write_wav_atomic(args.output, audio, SAMPLE_RATE)
    if args.spectrogram:
        save_spectrogram_png(args.spectrogram, mel, title=f"{Path(midi_path).name} · {synth.source} · "
                             f"{synth.describe()}")
    seconds = len(audio) / SAMPLE_RATE
    if not args.quiet:
        print(f"wrote {args.output}: {seconds:.2f} s of audio in {elapsed:.2f} s "
              f"({seconds / elapsed:.2f}x real time; model {synth.source}, {synth.describe()}, "
              f"vocoder {vocoder.name}" + (f", effects {chain.describe()}" if chain else "") + ")", file=sys.stderr)
    return 0


def cmd_render_corpus(args: argparse.Namespace) -> int:
    """Every MIDI file of a folder, list or glob rendered on Ray (live_synth/corpus/); resumable."""
    from live_synth.corpus import PoolOptions, RenderSettings, import_ray, render_corpus

    import_ray()  # the install hint before anything else
    if args.workers < 0 or args.retries < 0 or args.threads < 1 or args.max_seconds < 0:
        raise LiveSynthError("--workers and --retries must be >= 0, --threads >= 1, --max-seconds >= 0")
    if args.fx:
        from live_synth.fx import load_chain

        load_chain(args.fx)  # a bad chain is one line before Ray starts
    settings = RenderSettings(model=args.model, steps=args.steps, seed=args.seed, engine=args.engine,
                              engine_dir=args.engine_dir, device=args.device, dtype=args.dtype, vocoder=args.vocoder,
                              fx=args.fx, format=args.format, mel=args.mel, threads=args.threads,
                              max_seconds=args.max_seconds)
    pool = PoolOptions(address=args.address, workers=args.workers, cpus_per_worker=args.threads, retries=args.retries)
    run = render_corpus(args.input, args.output, settings, pool, quiet=args.quiet)
    if not args.quiet:
        print(f"{args.output}: {len(run.sources)} sources: {run.tally.line()} (manifest.jsonl, failures.jsonl)",
              file=sys.stderr)
    return 1 if run.tally.failed else 0


def cmd_vocode(args: argparse.Namespace) -> int:
    """Analyse a WAV into the models' log-mel and resynthesise it with a vocoder: what the vocoder alone does."""
    from live_synth.audio import load_vocoder, save_spectrogram_png, write_wav_atomic
    from live_synth.audio.wav import read_wav, resynthesize, to_model_rate
    from live_synth.constants import SAMPLE_RATE

    check_output_folder(args.output)
    check_output_folder(args.spectrogram)
    samples, rate = read_wav(args.input)
    if len(samples) == 0:
        raise LiveSynthError(f"{args.input}: holds no audio")
    spec = args.vocoder
    if spec in (None, DEFAULT_MODEL):
        model_spec, _ = resolve_model_spec(DEFAULT_MODEL)
        spec = model_spec if (Path(model_spec) / "vocoder.safetensors").is_file() else "griffin-lim"
    vocoder = load_vocoder(spec)
    start = time.perf_counter()
    audio, mel = resynthesize(to_model_rate(samples, rate), vocoder)
    elapsed = time.perf_counter() - start
    write_wav_atomic(args.output, audio, SAMPLE_RATE)
    if args.spectrogram:
        save_spectrogram_png(args.spectrogram, mel, title=f"{Path(args.input).name} (analysed log-mel)")
    if not args.quiet:
        print(f"wrote {args.output}: {len(audio) / SAMPLE_RATE:.2f} s through {vocoder.name} in {elapsed:.2f} s "
              f"({rate} Hz {'resampled to' if rate != SAMPLE_RATE else 'at'} {SAMPLE_RATE} Hz)", file=sys.stderr)
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from live_synth.model import load_model

    spec, warning = resolve_model_spec(args.model)
    loaded = load_model(spec)
    if warning:
        warn(warning)
    counts = loaded.model.parameter_counts()
    print(f"model: {loaded.source}{'  (RANDOM WEIGHTS)' if loaded.random_weights else ''}")
    print(f"vocoder: {loaded.vocoder_path or 'none in the model folder (Griffin-Lim unless --vocoder is given)'}")
    print("config:")
    print(loaded.model.config.to_json())
    print("parameters (frozen position tables included):")
    for name, n in counts.items():
        print(f"  {name:16s} {n:>13,d}  ({n / 1e6:.2f} M)")
    return 0


def cmd_tokens(args: argparse.Namespace) -> int:
    from live_synth.midi import TokenizerConfig, tokenize_midi

    cfg = TokenizerConfig(num_velocity_bins=args.velocity_bins, slakh_programs=not args.no_slakh)
    song = tokenize_midi(args.input, cfg)
    segments = song.segments
    if args.trim:
        from live_synth.render import real_length

        segments = [seg[: real_length(seg)] for seg in segments]
    json.dump(segments, sys.stdout, separators=(",", ":"))
    sys.stdout.write("\n")
    if song.dropped_tokens:
        warn(f"{song.dropped_tokens} token(s) dropped in {song.overflowed_segments} overfull segment(s)")
    return 0


def cmd_play(args: argparse.Namespace) -> int:
    from live_synth.live.session import LiveSession

    chain = None
    if args.fx:
        from live_synth.fx import load_chain

        chain = load_chain(args.fx)  # a bad chain is one line, before anything starts; the session keeps it
    if args.record:
        check_output_folder(args.record)
    check_output_folder(args.report_json)
    settings = PlaySettings(
        model=args.model, midi_api=args.midi_api, midi_in=args.midi_in, midi_file=args.midi_file,
        audio_out=args.audio_out, steps=args.steps, hop=args.hop, sampler=args.sampler, strategy=args.strategy,
        lead_ms=args.lead_ms, ahead=args.ahead, delay_ms=args.delay_ms, period=args.period, fx=args.fx,
        vocoder=args.vocoder, record=args.record, seed=args.seed, engine=args.engine,
        device=args.device, dtype=args.dtype, engine_dir=args.engine_dir, cuda_graph=args.cuda_graph,
        seconds=args.seconds, threads=args.threads, nice=args.nice, priority=args.priority, in_process=args.in_process,
    )
    log = lambda line: print(f"live-synth: {line}", file=sys.stderr)  # noqa: E731
    if args.morph:
        from live_synth.live.morph import parse_programs

        parse_programs(args.morph)  # a bad value is one line, before anything starts
        if not 0 <= args.morph_cc <= 119:
            raise LiveSynthError(f"--morph-cc {args.morph_cc}: a controller number 0..119")
        settings = dataclasses.replace(settings, morph=args.morph, morph_cc=args.morph_cc,
                                       engine="torch" if settings.engine == "auto" else settings.engine)
    page = None
    if args.web_token is not None and args.web is None:
        raise LiveSynthError("--web-token needs --web")
    if args.web is not None:  # bound before the model loads: a taken port is one line, at once
        from live_synth.web.server import start_page, stop_page

        settings, page = start_page(settings, args.web, args.web_token, log)
    session = LiveSession(settings, log=log, chain=chain, page=page)
    try:
        report = session.run()
    except LiveSynthError as exc:
        if page is not None:
            stop_page(page)
        # After the audio device (or the JACK server) has gone, PortAudio's exit handler can hang or abort
        # (pa_jack.c asserts in Terminate): say it in one line and leave without it; the session has already stopped
        # the generation process and written the recording.
        print(f"live-synth: error: {exc}", file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1 if isinstance(exc, DeviceLostError) else 2)
    finally:
        if page is not None:
            stop_page(page)
    if args.report_json:
        from live_synth.files import write_bytes_atomic

        fields = dataclasses.asdict(report)
        fields["recorded"] = str(report.recorded) if report.recorded else None
        write_bytes_atomic(args.report_json, (json.dumps(fields) + "\n").encode())
    print(f"\nplayed {report.seconds:.1f} s: {report.ticks} ticks (median {report.tick_ms_median:.1f} ms, p99 "
          f"{report.tick_ms_p99:.1f} ms), late ticks {report.late_ticks}, ring underruns {report.underruns}, "
          f"device underflows {report.underflows}, MIDI received {report.midi_received} / dropped "
          f"{report.midi_dropped}, rollbacks {report.rollbacks} ({report.frames_regenerated} frames regenerated, "
          f"{report.coalesced} events coalesced, {report.deferred} deferred), late events {report.late_events} "
          f"(by up to {report.late_ms_max:.1f} ms), declared delay {report.delay_ms:.1f} ms ({report.delay_changes} "
          f"change(s)); generation worker raised when starved {report.priority_raises} time(s); audio callback "
          f"{_callback_line(report.callback)}"
          + (f", JACK server xruns {report.server_xruns}" if report.server_xruns is not None else "")
          + (f"; recorded {report.recorded}" if report.recorded else ""), file=sys.stderr)
    return 0


def _callback_line(callback: dict) -> str:
    if not callback.get("callbacks"):
        return "never ran"
    return (f"p50 {callback['p50_ms']:.3f} / p99 {callback['p99_ms']:.3f} / max {callback['max_ms']:.2f} ms of a "
            f"{callback['period_ms']:.2f} ms period (longest gap {callback['gap_max_ms']:.1f} ms)")


def cmd_devices(args: argparse.Namespace) -> int:
    from live_synth.live.audio_out import list_devices
    from live_synth.live.midi_in import list_ports

    print("MIDI inputs:")
    try:
        ports = list_ports(args.midi_api)
        print("\n".join(f"  [{i}] {name}" for i, name in enumerate(ports)) or "  (none)")
    except LiveSynthError as exc:
        print(f"  unavailable: {exc}")
    print("  [virtual] a port named 'live-synth' that a DAW or keyboard connects to")
    print(list_devices().describe())
    return 0


def add_engine_args(parser: argparse.ArgumentParser) -> None:
    from engines.select import ENGINES

    group = parser.add_argument_group("engine")
    group.add_argument("--engine", choices=ENGINES, default="auto",
                       help="auto (default: onnx for the causal family on a CPU, torch otherwise), torch (the "
                       "reference), onnx (onnxruntime; graphs exported on first use) or tensorrt (plans built by "
                       "`live-synth export --engine tensorrt`)")
    group.add_argument("--engine-dir", help="root of exported engines (default: ~/.cache/live-synth/engines/<weights>)")
    group.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    group.add_argument("--dtype", default="float32", help="float32 | bfloat16 | float16")
    group.add_argument("--cuda-graph", action="store_true", help="torch on CUDA: replay the decoder step as a graph")


def cmd_export(args: argparse.Namespace) -> int:
    """Build an engine ahead of time and check it against the torch fp32 engine on random inputs; exit 1 when the
    check fails (what was built stays on disk for inspection, and the line says where)."""
    from live_synth.engine_cache import engine_root

    check_engine_available("onnx")
    synth = load_synth(args.model, SynthOptions(engine="torch", seed=args.seed))  # torch: the reference, built fast
    for line in synth.warnings:
        warn(line)
    root = Path(args.out) if args.out else engine_root(synth.model)
    say = (lambda line: None) if args.quiet else (lambda line: print(f"export: {line}", file=sys.stderr))
    start = time.perf_counter()
    result = synth.export(root, args.engine, args.precision, progress=say)
    say(f"{args.engine} engine in {result.folder} ({time.perf_counter() - start:.1f} s)")
    runtime = {"onnx": "onnxruntime", "tensorrt": "TensorRT"}[args.engine]
    verdict = f"{runtime} vs torch fp32 on random inputs: {result.report} (bound {result.bound:.0e})"
    if not result.passes:
        print(f"live-synth: error: {verdict}: FAILED; do not use {result.folder}", file=sys.stderr)
        return 1
    say(f"{verdict}: passes")
    print(root)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    say = lambda line: print(line, file=sys.stderr)  # noqa: E731
    out = Path(args.out) if args.out else None
    if out is not None:
        check_output_folder(str(out))
    if args.engine is None:
        args.engine = ["torch", "onnx"] if args.kind == "throughput" else ["auto"]
    if args.kind == "throughput":
        from live_synth.bench.throughput import TABLE_HEAD, run_throughput_bench

        say(TABLE_HEAD)
        rows = run_throughput_bench(args.model, args.engine, args.steps, args.hop, out, device=args.device,
                                    dtype=args.dtype, engine_dir=args.engine_dir, vocoder=args.vocoder,
                                    ticks=args.ticks, log=say)
        print(TABLE_HEAD)
        print("\n".join(row.markdown() for row in rows))
        return 0
    from live_synth.bench.latency import run_latency_bench, runs_table, summary_table

    check_output_folder(args.png)
    if len(args.model) > 1 or len(args.engine) > 1 or len(args.steps) > 1 or len(args.hop) > 1:
        raise LiveSynthError("bench latency measures one configuration per run (one --model/--engine/--steps/--hop)")
    play_args = ["--model", args.model[0], "--engine", args.engine[0], "--device", args.device, "--dtype", args.dtype]
    play_args += ["--hop", str(args.hop[0])] if args.hop[0] else []
    play_args += ["--lead-ms", str(args.lead_ms)] if args.lead_ms else []
    play_args += ["--delay-ms", str(args.delay_ms)] if args.delay_ms else []
    play_args += ["--steps", str(args.steps[0])] if args.steps[0] else []
    play_args += (["--vocoder", args.vocoder] if args.vocoder else []) + \
        (["--threads", str(args.threads)] if args.threads else [])
    key = {"model": args.model[0], "engine": args.engine[0], "steps": args.steps[0] or "model default",
           "hop": args.hop[0], "lead_ms": args.lead_ms}
    results = run_latency_bench(args.notes, play_args, out or Path("bench-latency.jsonl"),
                                Path(args.png) if args.png else None, seed=args.seed,
                                with_fluidsynth=not args.no_fluidsynth, key=key, log=say, runs=args.runs,
                                busy=args.busy)
    print(summary_table(results))
    if args.runs > 1:
        print()
        print(runs_table(results))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="live-synth", description="Real-time neural synthesizer (Spectrogram "
                                     "Diffusion): render MIDI files, inspect models and tokens.")
    parser.add_argument("--version", action="version", version=f"live-synth {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    render = sub.add_parser("render", help="render a MIDI file to a WAV file")
    render.add_argument("input", nargs="?", help="MIDI file")
    render.add_argument("-o", "--output", required=True, help="WAV file to write (16 kHz mono)")
    render.add_argument("--demo", action="store_true", help="render the packaged demo MIDI instead of INPUT")
    render.add_argument("--model", default=DEFAULT_MODEL,
                        help="model folder/file, or a preset name (base, small, tiny: random weights)")
    render.add_argument("--sampler", default="dpmpp", help="dpmpp | ddim | ancestral | ddpm (diffusers parity)")
    render.add_argument("--steps", type=int, help="sampling steps per segment (default: the model's own choice, "
                        f"else {RENDER_STEPS})")
    render.add_argument("--guidance", type=float, default=1.0, help="classifier-free guidance weight (1 = off)")
    render.add_argument("--seed", type=int, default=0)
    render.add_argument("--vocoder", help="griffin-lim, or a MelGAN .onnx file (default: the model's own)")
    add_engine_args(render)
    render.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    render.add_argument("--spectrogram", help="also save the generated log-mel as a PNG")
    render.add_argument("--fx", help="effects chain: hall, room, none, or a TOML file (see live_synth/fx.py)")
    render.add_argument("--morph", metavar="A>B:SECONDS", help="causal models: morph program A's timbre into "
                        "program B's, e.g. 0>48:8s (over the first 8 s) or 0>48:2-10s (torch engine, one frame at "
                        "a time)")
    render.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    render.set_defaults(func=cmd_render)

    play = sub.add_parser("play", help="play live: MIDI in (keyboard, DAW, or --midi-file) → audio out")
    play.add_argument("--midi-in", default="virtual", help="port name, index, or 'virtual' (a port named live-synth)")
    play.add_argument("--midi-api", help="jack | alsa | coremidi | windows (default: the platform's, else JACK)")
    play.add_argument("--midi-file", help="play this MIDI file through the live path in real time (demo)")
    play.add_argument("--audio-out", help="output device name or index (see `live-synth devices`)")
    play.add_argument("--model", default=DEFAULT_MODEL)
    play.add_argument("--steps", type=int, help="sampling steps per tick, lowered when ticks run late (default: the "
                      "model's own choice, else 4)")
    play.add_argument("--hop", type=int, help="frames per tick, 20 ms each (default: 1 for the causal family, 4 for "
                      "the window family)")
    play.add_argument("--sampler", default="ddim", help="ddim | dpmpp")
    play.add_argument("--strategy", choices=["continuation", "inpaint"], help="default: by the model's window")
    play.add_argument("--lead-ms", type=float, help="audio kept generated ahead of the playhead (default: window "
                      "family 200; causal family the delay + --ahead frames)")
    play.add_argument("--ahead", type=int, default=PlaySettings.ahead,
                      help="causal family: speculative frames past the delay, regenerated when a note arrives")
    play.add_argument("--delay-ms", type=float, help="causal family: note-on -> sound leaving live-synth, constant "
                      "(default: from the measured tick time; play prints it)")
    play.add_argument("--period", type=int, default=PlaySettings.period,
                      help="device frames per callback; a rollback never rewrites the next two periods")
    play.add_argument("--vocoder", help="griffin-lim, or a neural vocoder folder (default: the model's own)")
    play.add_argument("--record", help="also write what was played to this WAV file (before the effects)")
    play.add_argument("--fx", help="effects chain: hall, room, none, or a TOML file (see live_synth/fx.py)")
    play.add_argument("--seed", type=int, default=0)
    add_engine_args(play)
    play.add_argument("--threads", type=int, default=0,
                      help="generation's intra-op threads (torch, ONNX Runtime; 0: all cores but one)")
    play.add_argument("--nice", type=int, default=PlaySettings.nice,
                      help="nice value of the generation engines' pool threads (all generation threads but MIDI's "
                           "run with SCHED_BATCH, so that the audio graph's threads come first)")
    play.add_argument("--priority", choices=GENERATION_PRIORITIES, default=PlaySettings.priority,
                      help="the generation worker's scheduling: idle (SCHED_IDLE: the audio graph's threads always "
                           "come first; raised to SCHED_BATCH while starved), batch, or auto (idle where raising it "
                           "back is permitted)")
    play.add_argument("--seconds", type=float, help="stop after this many seconds")
    play.add_argument("--web", nargs="?", const="127.0.0.1:8765", metavar="[HOST:]PORT",
                      help="also serve a page (spectrogram, stats, a keyboard) on this address (default "
                      "127.0.0.1:8765; loopback unless a host is named; needs the web extra)")
    play.add_argument("--web-token", help="the page and its socket require ?token=TOKEN (printed in the URL)")
    play.add_argument("--morph", metavar="A>B", help="causal models: a controller (--morph-cc, the page's slider) "
                      "morphs program A's timbre into program B's, e.g. 0>48 (torch engine)")
    play.add_argument("--morph-cc", type=int, default=74, help="the morph's controller (default 74)")
    play.add_argument("--in-process", action="store_true",
                      help="generate in a thread of the audio process (default: its own process; see BENCHMARKS.md)")
    play.add_argument("--report-json", help="write the session's counters and every tick's compute time as JSON")
    play.set_defaults(func=cmd_play)

    export = sub.add_parser("export", help="build an onnx or tensorrt engine ahead of time (render/play/bench "
                            "--engine use it)")
    export.add_argument("--engine", choices=["onnx", "tensorrt"], required=True)
    export.add_argument("--model", default=DEFAULT_MODEL)
    export.add_argument("--out", help="engines root to write (default: ~/.cache/live-synth/engines/<weights>)")
    export.add_argument("--precision", choices=["fp16", "bf16", "fp32"], default="fp16", help="tensorrt only")
    export.add_argument("--seed", type=int, default=0, help="weights of a preset (random models)")
    export.add_argument("-q", "--quiet", action="store_true")
    export.set_defaults(func=cmd_export)

    bench = sub.add_parser("bench", help="measure latency through JACK (next to FluidSynth) or throughput")
    bench.add_argument("kind", choices=["latency", "throughput"])
    bench.add_argument("--model", nargs="+", default=[DEFAULT_MODEL])
    bench.add_argument("--engine", nargs="+", help="auto torch onnx tensorrt (throughput: several; default torch "
                       "onnx); latency: one, default play's own (auto)")
    bench.add_argument("--engine-dir")
    bench.add_argument("--device", default="cpu")
    bench.add_argument("--dtype", default="float32")
    bench.add_argument("--steps", type=int, nargs="+", default=[0],
                       help="sampling steps (default 0: each model's own choice, as play uses it)")
    bench.add_argument("--hop", type=int, nargs="+", default=[0], help="frames per tick (0: play's default)")
    bench.add_argument("--lead-ms", type=float, help="latency: live-synth's ring lead (default: play's)")
    bench.add_argument("--delay-ms", type=float, help="latency: the causal family's declared delay (default: play's)")
    bench.add_argument("--vocoder")
    bench.add_argument("--threads", type=int, default=0)
    bench.add_argument("--notes", type=int, default=40, help="latency: notes per synthesizer")
    bench.add_argument("--ticks", type=int, default=40, help="throughput: live ticks timed per configuration")
    bench.add_argument("--seed", type=int, default=0)
    bench.add_argument("--no-fluidsynth", action="store_true", help="latency: measure live-synth only")
    bench.add_argument("--runs", type=int, default=1,
                       help="latency: rounds of live-synth then FluidSynth; medians and worst run are printed")
    bench.add_argument("--busy", action="store_true", help="latency: a second process spins on the CPU throughout")
    bench.add_argument("--out", help="JSON lines to append to (latency default: bench-latency.jsonl)")
    bench.add_argument("--png", help="latency: histogram + per-note timeline")
    bench.set_defaults(func=cmd_bench)

    vocode = sub.add_parser("vocode", help="resynthesise a WAV through a vocoder (what the vocoder alone does)")
    vocode.add_argument("input", help="audio file (WAV, FLAC, ...; mono or stereo, any sample rate)")
    vocode.add_argument("-o", "--output", required=True, help="WAV file to write (16 kHz mono)")
    vocode.add_argument("--vocoder", help="default (the default model's), griffin-lim, a neural vocoder folder or "
                        "an .onnx MelGAN")
    vocode.add_argument("--spectrogram", help="also save the analysed log-mel as a PNG")
    vocode.add_argument("-q", "--quiet", action="store_true")
    vocode.set_defaults(func=cmd_vocode)

    devices = sub.add_parser("devices", help="list MIDI inputs and audio outputs")
    devices.add_argument("--midi-api")
    devices.set_defaults(func=cmd_devices)

    info = sub.add_parser("info", help="print a model's config and parameter counts")
    info.add_argument("model", nargs="?", default=DEFAULT_MODEL)
    info.set_defaults(func=cmd_info)

    tokens = sub.add_parser("tokens", help="print the token ids per 5.12 s segment as JSON (what the model sees)")
    tokens.add_argument("input", help="MIDI file")
    tokens.add_argument("--velocity-bins", type=int, default=1, help="1 for the published model")
    tokens.add_argument("--no-slakh", action="store_true", help="keep GM programs instead of folding to Slakh")
    tokens.add_argument("--trim", action="store_true", help="drop the PAD ids after EOS")
    tokens.set_defaults(func=cmd_tokens)

    corpus = sub.add_parser("render-corpus", help="render every MIDI file of a folder, list or glob on Ray "
                            "(local, or a cluster with --address); resumable")
    corpus.add_argument("input", help="a folder (searched recursively), a text file listing MIDI paths, or a glob")
    corpus.add_argument("output", help="folder for the audio, sidecars (.json), mel arrays and manifest.jsonl")
    corpus.add_argument("--address", help="join this Ray cluster (auto, HOST:PORT, ray://HOST:PORT; default: a "
                        "local Ray started here)")
    corpus.add_argument("--workers", type=int, default=0, help="workers, each holding a loaded synth (default: one "
                        "per --threads CPUs of the cluster)")
    corpus.add_argument("--threads", type=int, default=1, help="CPUs (intra-op threads) per worker")
    corpus.add_argument("--model", default=DEFAULT_MODEL)
    corpus.add_argument("--steps", type=int, help="sampling steps (default: the model's own choice)")
    corpus.add_argument("--seed", type=int, default=0)
    corpus.add_argument("--vocoder", help="griffin-lim, or a vocoder folder/.onnx (default: the model's own)")
    corpus.add_argument("--fx", help="effects chain: hall, room, none, or a TOML file")
    corpus.add_argument("--format", choices=["wav", "flac"], default="wav", help="16-bit, 16 kHz mono")
    corpus.add_argument("--mel", action="store_true", help="also write the model's log-mel frames (NAME.mel.npy)")
    corpus.add_argument("--max-seconds", type=float, default=600.0,
                        help="longer songs are recorded as failures (default 600; 0: no limit)")
    corpus.add_argument("--retries", type=int, default=2, help="times a file goes to another worker after its "
                        "worker died (default 2)")
    add_engine_args(corpus)
    corpus.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    corpus.set_defaults(func=cmd_render_corpus)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except LiveSynthError as exc:
        print(f"live-synth: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("live-synth: interrupted", file=sys.stderr)
        return 130
