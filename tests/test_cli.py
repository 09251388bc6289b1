"""The command line, end to end: `python -m live_synth render | info | tokens`.

What a user sees is tested where a user sees it: the render and bad-input cases run the real CLI in a subprocess
(exit status, stderr lines, tracebacks, warnings printed by libraries, files left on disk). Commands whose output is
plain data (`info`, `tokens`) and the atomic-write checks that need a monkeypatch run in-process through `main()`.

Issue text covered here: "Bad input: a file that is not MIDI, a truncated MIDI, a MIDI without notes, a model folder
with a missing file or a wrong tensor shape → one clear line on stderr, non-zero exit, no traceback, no output
file." and "WAV written atomically (temporary file, then rename)".
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import mido
import numpy as np
import pytest
import soundfile as sf
import torch

from live_synth import __version__
from live_synth.cli import main
from live_synth.synth import packaged_path
from live_synth.constants import SAMPLE_RATE, SEGMENT_SAMPLES
from live_synth.midi import EOS_ID, PAD_ID, tokenize_midi
from live_synth.model import ModelConfig, SpectrogramDiffusion, preset, save_model
from live_synth.render import real_length

REPO = Path(__file__).resolve().parents[1]
TIMEOUT_S = 180
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# --- helpers ---------------------------------------------------------------------------------------------------------


def run_cli(*args, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "live_synth", *map(str, args)],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT_S,
    )


def write_song(path: Path, notes: int = 12, gap_ticks: int = 240) -> Path:
    """A small type-1 MIDI file: one piano track, `notes` quarter-ish notes (480 ticks per beat, 120 qpm)."""
    midi = mido.MidiFile(type=1, ticks_per_beat=480)
    track = mido.MidiTrack()
    midi.tracks.append(track)
    track.append(mido.MetaMessage("set_tempo", tempo=500_000, time=0))
    track.append(mido.Message("program_change", program=0, time=0))
    for i in range(notes):
        pitch = 60 + (i * 5) % 17
        track.append(mido.Message("note_on", note=pitch, velocity=90, time=0 if i == 0 else gap_ticks))
        track.append(mido.Message("note_off", note=pitch, velocity=0, time=240))
    midi.save(path)
    return path


def write_no_notes(path: Path) -> Path:
    """A valid MIDI file holding only a tempo meta message."""
    midi = mido.MidiFile(type=1, ticks_per_beat=480)
    track = mido.MidiTrack()
    midi.tracks.append(track)
    track.append(mido.MetaMessage("set_tempo", tempo=500_000, time=0))
    midi.save(path)
    return path


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


def assert_one_error_line(stderr: str, expect: str | None = None) -> str:
    assert "Traceback" not in stderr, stderr
    lines = error_lines(stderr)
    assert len(lines) == 1, f"expected exactly one stderr line, got {len(lines)}:\n{stderr}"
    assert lines[0].startswith("live-synth: error:"), lines[0]
    assert len(lines[0]) > len("live-synth: error: "), "the error must say something"
    if expect is not None:
        assert expect.lower() in lines[0].lower(), f"{expect!r} not in {lines[0]!r}"
    return lines[0]


TINY_DIFFUSERS_CFG = ModelConfig(d_model=64, num_heads=4, d_kv=16, d_ff=96, notes_layers=2, context_layers=2,
                                 decoder_layers=2, max_decoder_noise_time=20000.0)


@pytest.fixture(scope="module")
def saved_tiny(tmp_path_factory) -> Path:
    """Our own format (config.json + model.safetensors) of a tiny model: loads without a random-weights warning."""
    torch.manual_seed(0)
    return save_model(SpectrogramDiffusion(preset("tiny")), tmp_path_factory.mktemp("own") / "tiny-model")


@pytest.fixture(scope="module")
def diffusers_folder(tmp_path_factory) -> Path:
    """A google/music-spectrogram-diffusion-style folder written by diffusers' own save_pretrained (pickled .bin)."""
    ref = pytest.importorskip("tests.diffusers_ref", reason="diffusers parity reference not installed")
    from diffusers import SpectrogramDiffusionPipeline

    notes, ctx, dec = ref.reference_modules(TINY_DIFFUSERS_CFG, seed=2)
    pipe = SpectrogramDiffusionPipeline(notes, ctx, dec, ref.reference_scheduler(), melgan=None)
    folder = tmp_path_factory.mktemp("diffusers") / "music-spectrogram-diffusion"
    pipe.save_pretrained(folder, safe_serialization=False)
    return folder


# --- render, end to end ----------------------------------------------------------------------------------------------


def test_render_demo_writes_wav_and_png(tmp_path):
    out = tmp_path / "demo.wav"
    png = tmp_path / "demo.png"
    result = run_cli("render", "--demo", "-o", out, "--model", "tiny", "--steps", "2", "--spectrogram", png,
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "RANDOM" in result.stderr and "warning" in result.stderr  # random weights are never silent

    info = sf.info(str(out))
    assert (info.samplerate, info.channels) == (SAMPLE_RATE, 1)
    segments = len(tokenize_midi(packaged_path("demo.mid")).segments)
    assert segments >= 2, "the demo is several 5.12 s segments long"
    assert info.frames % SEGMENT_SAMPLES == 0
    assert info.frames == segments * SEGMENT_SAMPLES
    audio, _ = sf.read(str(out), dtype="float32")
    assert np.isfinite(audio).all() and np.abs(audio).max() > 0

    assert png.read_bytes()[:8] == PNG_MAGIC
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo.png", "demo.wav"], "no temporary files left"


def test_version():
    result = run_cli("--version", cwd=REPO)
    assert result.returncode == 0
    assert result.stdout.strip() == f"live-synth {__version__}"


# --- bad inputs: exit 2, one line, no traceback, no output file -------------------------------------------------------
# Each builder makes its bad input inside `tmp` and returns the arguments that go after `render -o OUT`.


def _not_midi(tmp: Path, fx) -> list:
    path = tmp / "noise.mid"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes())
    return [path, "--model", "tiny"]


def _truncated_midi(tmp: Path, fx) -> list:
    data = write_song(tmp / "whole.mid", notes=40).read_bytes()
    path = tmp / "truncated.mid"
    path.write_bytes(data[: len(data) // 2])
    return [path, "--model", "tiny"]


def _no_notes(tmp: Path, fx) -> list:
    return [write_no_notes(tmp / "tempo_only.mid"), "--model", "tiny"]


def _missing_midi(tmp: Path, fx) -> list:
    return [tmp / "does_not_exist.mid", "--model", "tiny"]


def _missing_model_path(tmp: Path, fx) -> list:
    return [write_song(tmp / "song.mid"), "--model", tmp / "no_such_model"]


def _unknown_preset(tmp: Path, fx) -> list:
    return [write_song(tmp / "song.mid"), "--model", "gigantic"]


def _diffusers_missing_bin(tmp: Path, fx) -> list:
    folder = shutil.copytree(fx.getfixturevalue("diffusers_folder"), tmp / "msd")
    (folder / "decoder" / "diffusion_pytorch_model.bin").unlink()
    return [write_song(tmp / "song.mid"), "--model", folder]


def _diffusers_wrong_shape(tmp: Path, fx) -> list:
    folder = shutil.copytree(fx.getfixturevalue("diffusers_folder"), tmp / "msd")
    weights = folder / "decoder" / "diffusion_pytorch_model.bin"
    state = torch.load(weights, map_location="cpu", weights_only=True)
    state["spec_out.weight"] = state["spec_out.weight"][:-1].clone()  # [128, d] -> [127, d]
    torch.save(state, weights)
    return [write_song(tmp / "song.mid"), "--model", folder]


def _bin_holding_an_object(tmp: Path, fx) -> list:
    # A hand-written diffusers layout (no diffusers needed) whose first .bin pickles a class instance.
    from tests.test_checkpoint import NotATensor, write_diffusers_configs

    folder = write_diffusers_configs(tmp / "msd", preset("tiny"))
    torch.save({"token_embedder.weight": NotATensor()}, folder / "notes_encoder" / "diffusion_pytorch_model.bin")
    return [write_song(tmp / "song.mid"), "--model", folder]


def _truncated_bin(tmp: Path, fx) -> list:
    from tests.test_checkpoint import write_diffusers_configs

    folder = write_diffusers_configs(tmp / "msd", preset("tiny"))
    weights = folder / "notes_encoder" / "diffusion_pytorch_model.bin"
    torch.save({f"t{i}": torch.zeros(64, 64) for i in range(8)}, weights)
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    return [write_song(tmp / "song.mid"), "--model", folder]


def _own_missing_config(tmp: Path, fx) -> list:
    # A folder with weights but no config anywhere: no config.json and no config in the safetensors metadata.
    # (A save_model folder that only lost config.json still loads: the weight file carries a copy of the config.)
    from safetensors.torch import load_file, save_file

    folder = tmp / "own"
    folder.mkdir()
    save_file(load_file(str(fx.getfixturevalue("saved_tiny") / "model.safetensors")), str(folder / "model.safetensors"))
    return [write_song(tmp / "song.mid"), "--model", folder]


def _own_corrupt_safetensors(tmp: Path, fx) -> list:
    folder = shutil.copytree(fx.getfixturevalue("saved_tiny"), tmp / "own")
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # an interrupted download
    return [write_song(tmp / "song.mid"), "--model", folder]


def _own_garbage_safetensors(tmp: Path, fx) -> list:
    folder = shutil.copytree(fx.getfixturevalue("saved_tiny"), tmp / "own")
    (folder / "model.safetensors").write_bytes(b"this is not a safetensors file at all" * 10)
    return [write_song(tmp / "song.mid"), "--model", folder]


def _unknown_sampler(tmp: Path, fx) -> list:
    return [write_song(tmp / "song.mid"), "--model", "tiny", "--sampler", "euler"]


def _zero_steps(tmp: Path, fx) -> list:
    return [write_song(tmp / "song.mid"), "--model", "tiny", "--steps", "0"]


def _no_input(tmp: Path, fx) -> list:
    return ["--model", "tiny"]


parity = pytest.mark.parity
BAD_INPUTS = [
    pytest.param(_not_midi, "not a readable MIDI file", id="not-midi"),
    pytest.param(_truncated_midi, "not a readable MIDI file", id="truncated-midi"),
    pytest.param(_no_notes, "no notes", id="midi-without-notes"),
    pytest.param(_missing_midi, "does_not_exist.mid", id="missing-midi"),
    pytest.param(_missing_model_path, "no_such_model", id="missing-model-path"),
    pytest.param(_unknown_preset, "gigantic", id="unknown-preset"),
    pytest.param(_diffusers_missing_bin, "diffusion_pytorch_model.bin", id="diffusers-missing-bin", marks=parity),
    pytest.param(_diffusers_wrong_shape, "shape", id="diffusers-wrong-shape", marks=parity),
    pytest.param(_bin_holding_an_object, "weights_only", id="bin-holding-an-object"),
    pytest.param(_truncated_bin, "diffusion_pytorch_model.bin", id="truncated-bin"),
    pytest.param(_own_missing_config, "config.json", id="own-missing-config"),
    pytest.param(_own_corrupt_safetensors, "model.safetensors", id="own-truncated-safetensors"),
    pytest.param(_own_garbage_safetensors, "model.safetensors", id="own-garbage-safetensors"),
    pytest.param(_unknown_sampler, "euler", id="unknown-sampler"),
    pytest.param(_zero_steps, "step", id="zero-steps"),
    pytest.param(_no_input, "MIDI", id="no-input"),
]


@pytest.mark.parametrize("build, expect", BAD_INPUTS)
def test_bad_input_is_one_line_exit_2_and_no_output(tmp_path, request, build, expect):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    args = build(inputs, request)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out, png = out_dir / "song.wav", out_dir / "song.png"
    steps = [] if "--steps" in args else ["--steps", "1"]
    result = run_cli("render", *args, "-o", out, "--spectrogram", png, *steps, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert_one_error_line(result.stderr, expect)
    assert result.stdout == ""
    assert not out.exists() and not png.exists()
    assert list(out_dir.iterdir()) == [], "no temporary files may be left beside the output"


@pytest.mark.parametrize("missing", ["output", "spectrogram"])
def test_missing_output_folder_fails_before_rendering_and_writes_nothing(tmp_path, missing):
    song = write_song(tmp_path / "song.mid")
    out, png = tmp_path / "song.wav", tmp_path / "song.png"
    if missing == "output":
        out = tmp_path / "no_such_folder" / "song.wav"
    else:
        png = tmp_path / "no_such_folder" / "song.png"
    result = run_cli("render", song, "--model", "tiny", "--steps", "1", "-o", out, "--spectrogram", png, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert_one_error_line(result.stderr, "no_such_folder")
    assert not out.exists() and not png.exists()


def test_bad_midi_for_tokens_and_bad_model_for_info(tmp_path, capsys):
    bad = tmp_path / "bad.mid"
    bad.write_bytes(b"MThd" + bytes(20))
    assert main(["tokens", str(bad)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert_one_error_line(captured.err, "bad.mid")

    assert main(["info", str(tmp_path / "nothing_here")]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert_one_error_line(captured.err, "nothing_here")


# --- atomic output: a failed render never touches an existing file ----------------------------------------------------


def _existing_outputs(folder: Path) -> tuple[Path, Path]:
    out, png = folder / "song.wav", folder / "song.png"
    out.write_bytes(b"previous render, must survive")
    png.write_bytes(b"previous picture, must survive")
    return out, png


def test_failed_render_leaves_existing_output_untouched(tmp_path, capsys):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out, png = _existing_outputs(out_dir)
    bad = tmp_path / "truncated.mid"
    data = write_song(tmp_path / "whole.mid", notes=40).read_bytes()
    bad.write_bytes(data[: len(data) // 2])

    code = main(["render", str(bad), "-o", str(out), "--spectrogram", str(png), "--model", "tiny", "--steps", "1",
                 "-q"])
    assert code == 2
    assert_one_error_line(capsys.readouterr().err, "truncated.mid")
    assert out.read_bytes() == b"previous render, must survive"
    assert png.read_bytes() == b"previous picture, must survive"
    assert sorted(p.name for p in out_dir.iterdir()) == ["song.png", "song.wav"]


def test_write_failure_mid_file_keeps_old_output_and_leaves_no_temp_file(tmp_path, capsys, monkeypatch, saved_tiny):
    """The disk fills up halfway through the WAV: the old file stays, the partial temp file is removed."""
    import live_synth.audio.wav as wav

    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out, _ = _existing_outputs(out_dir)
    song = write_song(tmp_path / "song.mid", notes=4)
    seen = {}

    def failing_write(handle, *args, **kwargs):
        seen["during"] = sorted(p.name for p in out_dir.iterdir())
        handle.write(b"RIFF\x00\x00half a wav")
        handle.flush()
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(wav.sf, "write", failing_write)
    code = main(["render", str(song), "-o", str(out), "--model", str(saved_tiny), "--steps", "1", "-q"])
    assert code == 2
    line = assert_one_error_line(capsys.readouterr().err, "No space left on device")
    assert str(out) in line
    temporary = [name for name in seen["during"] if name not in ("song.png", "song.wav")]
    assert len(temporary) == 1, f"the WAV goes to one temporary file beside the target: {seen['during']}"
    assert out.read_bytes() == b"previous render, must survive"
    assert sorted(p.name for p in out_dir.iterdir()) == ["song.png", "song.wav"]


def test_render_with_saved_model_is_quiet_and_replaces_output(tmp_path, capsys, saved_tiny):
    """A model with real (saved) weights gives no warning; -q prints nothing; the old file is replaced whole."""
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out, _ = _existing_outputs(out_dir)
    song = write_song(tmp_path / "song.mid", notes=4)
    code = main(["render", str(song), "-o", str(out), "--model", str(saved_tiny), "--steps", "1", "-q",
                 "--sampler", "ddim"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert captured.err == "" and captured.out == ""
    info = sf.info(str(out))
    assert (info.samplerate, info.channels) == (SAMPLE_RATE, 1)
    assert info.frames == len(tokenize_midi(song).segments) * SEGMENT_SAMPLES
    assert sorted(p.name for p in out_dir.iterdir()) == ["song.png", "song.wav"]


# --- info and tokens --------------------------------------------------------------------------------------------------


def test_info_tiny_prints_parameter_counts(capsys):
    assert main(["info", "tiny"]) == 0
    out = capsys.readouterr().out
    assert "RANDOM WEIGHTS" in out
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("parameters"))
    printed = {}
    for line in lines[start + 1:]:
        name, count = line.split()[:2]
        printed[name] = int(count.replace(",", ""))
    expected = SpectrogramDiffusion(preset("tiny")).parameter_counts()
    assert printed == expected
    assert expected["total"] == sum(v for k, v in expected.items() if k != "total")
    # The config is printed as JSON and is the tiny preset's.
    config_text = out[out.index("config:\n") + len("config:\n"): out.index("parameters")]
    assert ModelConfig.from_dict(json.loads(config_text)) == preset("tiny")


@pytest.fixture
def multi_segment_song(tmp_path) -> Path:
    return write_song(tmp_path / "song.mid", notes=40)  # 40 notes, 0.5 s apart: 4 segments


def test_tokens_prints_the_segments_as_json(multi_segment_song, capsys):
    assert main(["tokens", str(multi_segment_song)]) == 0
    printed = json.loads(capsys.readouterr().out)
    expected = tokenize_midi(multi_segment_song).segments
    assert len(expected) >= 2
    assert printed == expected
    assert all(len(segment) == 2048 for segment in printed)


def test_tokens_trim_drops_padding(multi_segment_song, capsys):
    assert main(["tokens", str(multi_segment_song), "--trim"]) == 0
    trimmed = json.loads(capsys.readouterr().out)
    full = tokenize_midi(multi_segment_song).segments
    assert len(trimmed) == len(full)
    for short, whole in zip(trimmed, full):
        assert short == whole[: real_length(whole)]
        assert short[-1] == EOS_ID and len(short) < 2048
        assert all(t == PAD_ID for t in whole[len(short):])


def test_vocode_resynthesises_any_wav_through_a_vocoder(tmp_path, capsys):
    import soundfile as sf

    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(44100) / 44100)).astype(np.float32)
    sf.write(tmp_path / "in.wav", np.stack([tone, tone], 1), 44100)  # stereo, 44.1 kHz
    out = tmp_path / "out.wav"
    assert main(["vocode", str(tmp_path / "in.wav"), "-o", str(out), "--vocoder", "griffin-lim", "-q"]) == 0
    audio, rate = sf.read(out, dtype="float32")
    assert rate == 16000 and abs(len(audio) - 16000) <= 320
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    assert abs(np.fft.rfftfreq(len(audio), 1 / 16000)[np.argmax(spectrum)] - 440) < 10


def test_vocode_uses_the_shipped_vocoder_by_default_and_keeps_the_pitch(tmp_path, capsys):
    import soundfile as sf

    from live_synth.synth import packaged_path

    if not (packaged_path("default_model") / "vocoder.safetensors").is_file():
        pytest.skip("the package ships no default vocoder")
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(66150) / 44100)).astype(np.float32)
    sf.write(tmp_path / "in.wav", tone, 44100)
    out = tmp_path / "out.wav"
    assert main(["vocode", str(tmp_path / "in.wav"), "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert ":default_model" in err and "griffin-lim" not in err  # the shipped vocoder, not a fall-back
    audio, rate = sf.read(out, dtype="float32")
    audio = audio[4000:-4000]  # the steady part
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio)), n=8 * len(audio)))
    # the vocoder hears the mel alone here; measured 440 Hz with the excited vocoder, 450 Hz with the earlier
    # mel-only one: within a semitone's 26 Hz, no octave error
    assert abs(np.argmax(spectrum) * rate / (8 * len(audio)) - 440) <= 20
    assert np.sqrt(np.mean(audio**2)) > 0.01  # it sounds (measured 3.7 and 18.6 dB under the input's RMS)


def test_vocode_refuses_a_broken_file_in_one_line_and_writes_nothing(tmp_path, capsys):
    (tmp_path / "bad.wav").write_bytes(b"RIFF????WAVEnot really")
    assert main(["vocode", str(tmp_path / "bad.wav"), "-o", str(tmp_path / "out.wav")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot read audio file" in err[0]
    assert not (tmp_path / "out.wav").exists()


# -- one-line errors through the CLI for the effects chain and play's inputs ---------------------------------------


def _one_line_error(capsys) -> str:
    err = [line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith("live-synth: warning")]
    assert len(err) == 1 and err[0].startswith("live-synth: error: "), err
    return err[0]


def test_render_with_a_bad_effects_chain_is_one_line_and_writes_nothing(tmp_path, capsys):
    pytest.importorskip("pedalboard", reason="the effects chain needs pedalboard (the fx extra)")
    chain = tmp_path / "bad.toml"
    chain.write_text('[[effect]]\ntype = "reverb"\nroom_size = "huge"\n')
    out = tmp_path / "out.wav"
    assert main(["render", "--demo", "--model", "tiny", "--fx", str(chain), "-o", str(out), "-q"]) == 2
    assert "room_size" in _one_line_error(capsys)
    assert not out.exists()


@pytest.mark.parametrize("command", [["render", "--demo", "--model", "tiny", "-q"], ["play", "--model", "tiny"]],
                         ids=["render", "play"])
def test_effects_without_pedalboard_are_one_line_with_the_install_hint(tmp_path, capsys, monkeypatch, command):
    monkeypatch.setitem(sys.modules, "pedalboard", None)  # what `import pedalboard` does when it is not installed
    out = ["-o", str(tmp_path / "out.wav")] if command[0] == "render" else []
    assert main([*command, "--fx", "hall", *out]) == 2
    assert "pip install 'live-synth[fx]'" in _one_line_error(capsys)


@pytest.mark.parametrize("args, message", [
    (["--fx", "no-such-chain"], "no-such-chain"),
    (["--record", "/no/such/folder/take.wav"], "does not exist"),
    (["--report-json", "/no/such/folder/report.json"], "does not exist"),
    (["--web-token", "secret"], "--web-token needs --web"),
], ids=["fx", "record", "report", "web-token"])
def test_play_refuses_bad_input_in_one_line_before_anything_starts(capsys, args, message):
    assert main(["play", "--model", "tiny", *args]) == 2
    assert message in _one_line_error(capsys)
