"""The streaming neural vocoder: streaming equals offline, explicit state, files, the Vocoder wrapper, training."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from live_synth.audio import Vocoder, load_vocoder, log_mel, stft
from live_synth.audio.neural_vocoder import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    NeuralVocoder,
    StreamingVocoder,
    VocoderConfig,
    export_step_onnx,
    load_streaming_vocoder,
    onnx_state_names,
    preset,
    save_vocoder,
    synthesis_basis,
    synthesis_window,
)
from live_synth.constants import HOP, LOG_MEL_MIN, N_FFT, N_MELS, SAMPLE_RATE, WIN_LENGTH
from live_synth.errors import CheckpointError
from live_synth.training.vocoder_trainer import CropSampler, VocoderTrainConfig, VocoderTrainer

# Random weights at unit gain (the training init is much smaller) so that every layer matters; look-ahead 2 frames.
TINY = dataclasses.replace(preset("tiny"), lookahead=2)


def random_vocoder(cfg: VocoderConfig = TINY, seed: int = 0) -> StreamingVocoder:
    torch.manual_seed(seed)
    model = StreamingVocoder(cfg).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" not in name:
                param.normal_(0.0, 1.0 / math.sqrt(param.shape[1]) if param.dim() > 1 else 0.3)
    return model


def random_mel(frames: int, batch: int = 2, seed: int = 1) -> torch.Tensor:
    """Music-like log-mel: a loud, changing spectrum with stretches of silence."""
    gen = torch.Generator().manual_seed(seed)
    mel = torch.rand(batch, frames, N_MELS, generator=gen) * 10.0 - 8.0
    mel[:, frames // 3 : frames // 3 + 5] = LOG_MEL_MIN
    return mel


def stream(model: StreamingVocoder, mel: torch.Tensor, chunk: int) -> torch.Tensor:
    state = model.initial_state(mel.shape[0])
    pieces = []
    for start in range(0, mel.shape[1], chunk):
        audio, state = model.step(mel[:, start : start + chunk], state)
        pieces.append(audio)
    pieces.append(model.flush(state)[0])
    return torch.cat(pieces, dim=1)


# --- streaming equals offline --------------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64, 65])
def test_streaming_equals_offline_after_the_declared_delay(chunk: int) -> None:
    model = random_vocoder()
    mel = random_mel(150)
    with torch.no_grad():
        offline = model(mel)
        streamed = stream(model, mel, chunk)
    delay = model.delay_samples
    assert delay == model.lookahead_frames * HOP == 2 * HOP
    assert offline.shape == (2, 150 * HOP)
    assert streamed.shape == (2, 150 * HOP + delay)  # the flush delivers exactly the delayed end
    assert offline.abs().max() > 0.1  # not a trivially silent comparison
    # fp32 tolerance: the two paths sum the same products in different orders (conv1d vs unfold, chunked matmuls).
    assert (streamed[:, delay:] - offline).abs().max() <= 1e-5
    # Shifted by any other amount it would not match: the delay is exact, not approximate.
    assert (streamed[:, delay - HOP : -HOP] - offline).abs().max() > 1e-3


def test_streaming_equals_offline_for_the_shipped_shape() -> None:
    model = random_vocoder(preset("base"))
    mel = random_mel(100, batch=1)
    with torch.no_grad():
        offline, streamed = model(mel), stream(model, mel, 3)
    assert (streamed[:, model.delay_samples :] - offline).abs().max() <= 1e-5


@pytest.mark.parametrize("lookahead", [0, 1, 6])
def test_any_declared_lookahead_streams_exactly(lookahead: int) -> None:
    model = random_vocoder(dataclasses.replace(TINY, lookahead=lookahead))
    mel = random_mel(40)
    with torch.no_grad():
        offline, streamed = model(mel), stream(model, mel, 5)
    assert streamed.shape[1] == offline.shape[1] + lookahead * HOP
    assert (streamed[:, lookahead * HOP :] - offline).abs().max() <= 1e-5


def test_output_frame_waits_for_exactly_the_lookahead() -> None:
    # Changing input frame j must not change any output sample before the hop of frame j - lookahead.
    model = random_vocoder()
    mel = random_mel(30, batch=1)
    changed = mel.clone()
    changed[:, 20] += 3.0
    with torch.no_grad():
        a, b = model(mel), model(changed)
    first_changed = int(torch.nonzero((a - b).abs()[0] > 0)[0])
    assert first_changed // HOP == 20 - model.lookahead_frames


# --- explicit state ------------------------------------------------------------------------------------------------


def test_two_interleaved_streams_equal_separate_runs() -> None:
    model = random_vocoder()
    mel_a, mel_b = random_mel(40, batch=1, seed=2), random_mel(40, batch=1, seed=3)
    with torch.no_grad():
        alone_a, alone_b = stream(model, mel_a, 3), stream(model, mel_b, 3)
        state_a, state_b = model.initial_state(), model.initial_state()
        out_a, out_b = [], []
        for start in range(0, 40, 3):  # a, b, a, b, ... on the same module
            audio, state_a = model.step(mel_a[:, start : start + 3], state_a)
            out_a.append(audio)
            audio, state_b = model.step(mel_b[:, start : start + 3], state_b)
            out_b.append(audio)
        out_a.append(model.flush(state_a)[0])
        out_b.append(model.flush(state_b)[0])
    torch.testing.assert_close(torch.cat(out_a, 1), alone_a, rtol=0, atol=0)
    torch.testing.assert_close(torch.cat(out_b, 1), alone_b, rtol=0, atol=0)


def test_step_keeps_no_state_of_its_own() -> None:
    model = random_vocoder()
    mel = random_mel(10, batch=1)
    with torch.no_grad():
        state = model.initial_state()
        first, next_state = model.step(mel, state)
        again, _ = model.step(mel, state)  # the same state again gives the same audio: nothing was kept
    torch.testing.assert_close(first, again, rtol=0, atol=0)
    assert all(isinstance(t, torch.Tensor) for t in (*next_state.caches, next_state.tail))
    assert not any(isinstance(v, torch.Tensor) for v in vars(model).values())  # no tensors outside the state


def test_state_shapes_are_fixed() -> None:
    model = random_vocoder()
    with torch.no_grad():
        state = model.initial_state(3)
        _, after = model.step(random_mel(5, batch=3), state)
    assert [tuple(t.shape) for t in state.caches] == [tuple(t.shape) for t in after.caches]
    assert state.tail.shape == after.tail.shape == (3, HOP)


def test_empty_chunk_returns_no_audio_and_the_same_state() -> None:
    model = random_vocoder()
    state = model.initial_state(2)
    audio, after = model.step(torch.zeros(2, 0, N_MELS), state)
    assert audio.shape == (2, 0) and after is state


# --- synthesis -----------------------------------------------------------------------------------------------------


def test_synthesis_inverts_the_feature_stft() -> None:
    # Windowed inverse FFT + overlap-add with `synthesis_window` is the exact inverse of features.stft (after the first
    # hop); the vocoder only has to predict the spectrum.
    audio = torch.randn(SAMPLE_RATE, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    frames = torch.fft.irfft(stft(audio), n=N_FFT)[..., :WIN_LENGTH] * synthesis_window()
    rebuilt = (frames[1:, :HOP] + frames[:-1, HOP:]).reshape(-1)
    torch.testing.assert_close(rebuilt, audio[HOP : HOP + rebuilt.numel()], rtol=0, atol=1e-10)


def test_matmul_synthesis_basis_equals_the_irfft_path() -> None:
    model = random_vocoder()
    features = torch.randn(1, 9, TINY.dim)
    with torch.no_grad():
        magnitude, phase = model.spectrum(features)
        spectrum = torch.cat([magnitude * torch.cos(phase), magnitude * torch.sin(phase)], -1)
        torch.testing.assert_close(spectrum @ synthesis_basis().float(), model.frames(features), rtol=0, atol=1e-5)


# --- files ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["folder", "single.safetensors"])
def test_save_load_round_trip_is_exact(tmp_path: Path, name: str) -> None:
    model = random_vocoder()
    path = save_vocoder(model, tmp_path / name)
    loaded = load_streaming_vocoder(path)
    assert loaded.config == model.config
    for key, value in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value, rtol=0, atol=0)
    mel = random_mel(20)
    with torch.no_grad():
        torch.testing.assert_close(loaded(mel), model(mel), rtol=0, atol=0)


def test_fp16_export_loads_as_float32_close_to_the_original(tmp_path: Path) -> None:
    model = StreamingVocoder(TINY).eval()
    loaded = load_streaming_vocoder(save_vocoder(model, tmp_path / "v", fp16=True))
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    assert (tmp_path / "v" / WEIGHTS_FILE).stat().st_size < 0.6 * 4 * model.num_parameters
    mel = random_mel(20)
    with torch.no_grad():
        assert (loaded(mel) - model(mel)).abs().max() < 1e-3


def _corruptions(tmp_path: Path) -> dict[str, Path]:
    good = save_vocoder(random_vocoder(), tmp_path / "good")
    weights = (good / WEIGHTS_FILE).read_bytes()
    cases = {}
    truncated = save_vocoder(random_vocoder(), tmp_path / "truncated")
    (truncated / WEIGHTS_FILE).write_bytes(weights[: len(weights) // 2])
    cases["truncated"] = truncated
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00\x01 not safetensors at all")
    cases["garbage"] = garbage
    bad_json = save_vocoder(random_vocoder(), tmp_path / "bad_json")
    (bad_json / CONFIG_FILE).write_text("{ not json")
    cases["bad_json"] = bad_json
    wrong_shape = save_vocoder(random_vocoder(), tmp_path / "wrong_shape")
    cfg = json.loads((wrong_shape / CONFIG_FILE).read_text())
    (wrong_shape / CONFIG_FILE).write_text(json.dumps({**cfg, "dim": 48}))
    cases["wrong_shape"] = wrong_shape
    not_vocoder = save_vocoder(random_vocoder(), tmp_path / "not_vocoder")
    (not_vocoder / CONFIG_FILE).write_text(json.dumps({**cfg, "kind": "diffusion"}))
    cases["not_vocoder"] = not_vocoder
    cases["missing"] = tmp_path / "nowhere"
    return cases


@pytest.mark.parametrize("case", ["truncated", "garbage", "bad_json", "wrong_shape", "not_vocoder", "missing"])
def test_a_bad_file_is_a_one_line_checkpoint_error(tmp_path: Path, case: str) -> None:
    path = _corruptions(tmp_path)[case]
    with pytest.raises(CheckpointError) as raised:
        load_streaming_vocoder(path)
    message = str(raised.value)
    assert "\n" not in message and path.name in message


def test_config_rejects_a_lookahead_beyond_the_receptive_field() -> None:
    with pytest.raises(ValueError, match="lookahead"):
        VocoderConfig(kernel=3, embed_kernel=3, layers=1, lookahead=5)


# --- the Vocoder wrapper -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("frames", [0, 1, 7, 256])
def test_wrapper_returns_hop_float32_samples_per_frame(frames: int) -> None:
    vocoder = NeuralVocoder(random_vocoder())
    assert isinstance(vocoder, Vocoder) and vocoder.sample_rate == SAMPLE_RATE and vocoder.hop == HOP
    audio = vocoder(np.full((frames, N_MELS), -4.0, dtype=np.float64))
    assert audio.shape == (frames * HOP,) and audio.dtype == np.float32


def test_wrapper_runs_the_offline_path(tmp_path: Path) -> None:
    model = random_vocoder()
    mel = random_mel(30, batch=1)
    with torch.no_grad():
        expected = model(mel)[0].numpy()
    np.testing.assert_array_equal(NeuralVocoder(model)(mel[0].numpy()), expected)
    vocoder = NeuralVocoder(save_vocoder(model, tmp_path / "v"))
    assert vocoder.name == "neural:v" and vocoder.delay_samples == model.delay_samples
    np.testing.assert_array_equal(vocoder(mel[0].numpy()), expected)


def test_wrapper_rejects_wrong_shapes() -> None:
    with pytest.raises(ValueError, match="128"):
        NeuralVocoder(random_vocoder())(np.zeros((4, 80), dtype=np.float32))


def test_load_vocoder_accepts_a_folder_or_a_safetensors_file(tmp_path: Path) -> None:
    model = random_vocoder()
    folder = save_vocoder(model, tmp_path / "folder")
    single = save_vocoder(model, tmp_path / "one.safetensors")
    for spec in (folder, str(folder), single):
        vocoder = load_vocoder(spec)
        assert isinstance(vocoder, NeuralVocoder) and isinstance(vocoder, Vocoder)
    with pytest.raises(CheckpointError, match="broken.safetensors"):
        (tmp_path / "broken.safetensors").write_bytes(b"nope")
        load_vocoder(tmp_path / "broken.safetensors")


# --- training ------------------------------------------------------------------------------------------------------


def harmonic_audio(seconds: float, f0s: tuple[float, ...], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    audio = np.zeros_like(t)
    for i, f0 in enumerate(f0s):
        start = i * seconds / len(f0s)
        envelope = (t >= start) * np.exp(-2.0 * np.clip(t - start, 0.0, None))
        for harmonic in range(1, 5):
            audio += envelope * 0.15 / harmonic * np.sin(2 * np.pi * f0 * harmonic * t + rng.uniform(0, 2 * np.pi))
    return np.round(audio * 32767).astype(np.int16)


def test_crops_hold_the_frames_the_model_needs() -> None:
    cfg = TINY
    pieces = [harmonic_audio(1.0, (220.0,), 0)]
    sampler = CropSampler(pieces, cfg, crop_frames=8, gain_db=0.0, seed=0)
    audio = sampler.sample(3)
    mel, target = sampler.features_and_target(audio)
    assert mel.shape == (3, cfg.context_frames + 8 + cfg.lookahead, N_MELS)
    assert target.shape == (3, 8 * HOP)
    model = StreamingVocoder(cfg)
    assert model.forward_valid(mel).shape == target.shape


def test_a_short_training_run_lowers_the_loss() -> None:
    torch.set_num_threads(min(torch.get_num_threads(), 2))
    pieces = [harmonic_audio(2.0, (220.0, 330.0), 0), harmonic_audio(2.0, (261.6, 392.0, 146.8), 1)]
    cfg = VocoderTrainConfig(crop_frames=12, batch_size=4, lr=3e-3, warmup_steps=5, total_steps=60, gain_db=0.0)
    model_cfg = dataclasses.replace(preset("tiny"), dim=48, hidden=96)
    trainer = VocoderTrainer(model_cfg, cfg, pieces)
    fixed = CropSampler(pieces, model_cfg, cfg.crop_frames, 0.0, seed=99).sample(8)  # held fixed: before vs after
    with torch.no_grad():
        before = trainer.loss(fixed)[0].item()
    for _ in range(60):
        parts = trainer.step()
        assert math.isfinite(parts["loss"])
    with torch.no_grad():
        after = trainer.loss(fixed)[0].item()
    assert after < 0.8 * before, (before, after)  # measured: 9.1 -> 5.4 (seeds 0-2)


# --- ONNX ----------------------------------------------------------------------------------------------------------


def test_the_step_graph_exports_to_onnx_and_streams_the_same(tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    model = random_vocoder()
    session = ort.InferenceSession(str(export_step_onnx(model, tmp_path / "step.onnx")),
                                   providers=["CPUExecutionProvider"])
    names = onnx_state_names(model)
    assert [i.name for i in session.get_inputs()] == ["mel", *names]
    mel = random_mel(40, batch=1)
    with torch.no_grad():
        offline = model(mel).numpy()
        state = model.initial_state(1)
    feeds = [t.numpy() for t in (*state.caches, state.tail)]
    pieces = []
    for start in range(0, 40, 3):  # one graph, any chunk length (the last chunk is 1 frame)
        audio, *feeds = session.run(None, {"mel": mel[:, start : start + 3].numpy(), **dict(zip(names, feeds))})
        pieces.append(audio)
    streamed = np.concatenate(pieces, axis=1)
    delay = model.delay_samples
    np.testing.assert_allclose(streamed[:, delay:], offline[:, : streamed.shape[1] - delay], rtol=0, atol=1e-5)


# --- the training tool ---------------------------------------------------------------------------------------------


def write_dataset(root: Path) -> Path:
    from live_synth.training.shards import Piece, piece_path, write_piece

    for split, index, f0s in (("train", 0, (220.0, 330.0)), ("train", 1, (196.0,)), ("validation", 2, (440.0,))):
        audio = harmonic_audio(1.5, f0s, index)
        mel = log_mel(torch.from_numpy(audio.astype(np.float32) / 32767.0)).numpy().astype(np.float16)
        piece = Piece(name=f"test/{index}", source="procedural", midi=b"", notes=np.zeros((0, 5), np.float32),
                      is_drum=np.zeros(0, np.bool_), mel=mel, audio=audio)
        path = piece_path(root, split, index)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_piece(path, piece)
    return root


def test_the_tool_trains_in_chunks_resumes_and_exports(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
    import train_vocoder

    dataset, out = write_dataset(tmp_path / "data"), tmp_path / "run"
    common = [str(dataset), "--out", str(out), "--model", "tiny", "--batch-size", "2", "--crop-frames", "8",
              "--log-every", "2", "--valid-every", "4", "--device", "cpu"]
    assert train_vocoder.main([*common, "--max-steps", "4"]) == 0
    assert train_vocoder.main([*common, "--max-steps", "6", "--export", str(tmp_path / "shipped")]) == 0
    ckpt = torch.load(out / "ckpt.pt", map_location="cpu", weights_only=True)
    assert ckpt["step"] == 6
    rows = (out / "loss.csv").read_text().splitlines()
    assert rows[0].startswith("step,") and [r.split(",")[0] for r in rows[1:]] == ["1", "2", "4", "6"]
    assert (out / "loss.png").read_bytes()[:4] == b"\x89PNG"
    vocoder = load_vocoder(tmp_path / "shipped")
    assert isinstance(vocoder, NeuralVocoder) and vocoder(np.full((3, N_MELS), -5.0)).shape == (3 * HOP,)
    # A different model shape for an existing run is refused in one line.
    assert train_vocoder.main([*common, "--max-steps", "8", "--dim", "64"]) == 2
    assert "dim=32" in capsys.readouterr().err


def test_adversarial_training_runs_saves_its_discriminators_and_resumes(tmp_path: Path) -> None:
    """With gan_weight > 0 the discriminators train from gan_start on, their losses are logged, their weights and
    optimiser are in the checkpoint, and a resumed run picks them up; a new run can start from shipped weights."""
    import csv

    from live_synth.training.vocoder_trainer import train

    dataset, out = write_dataset(tmp_path / "data"), tmp_path / "run"
    cfg = VocoderTrainConfig(model="tiny", batch_size=2, crop_frames=8, log_every=1, valid_every=100,
                             gan_weight=1.0, gan_start=2)
    assert train(dataset, out, cfg, max_steps=4) == 4
    rows = list(csv.DictReader(open(out / "loss.csv")))
    assert rows[0]["d_loss"] == "" and rows[-1]["d_loss"] != "" and float(rows[-1]["fm"]) > 0
    ckpt = torch.load(out / "ckpt.pt", map_location="cpu", weights_only=True)
    assert "discriminators" in ckpt and "d_optimizer" in ckpt
    assert train(dataset, out, cfg, max_steps=5) == 5
    from live_synth.training.vocoder_trainer import export

    shipped = export(out, tmp_path / "shipped")
    fresh = train(dataset, tmp_path / "again", dataclasses.replace(cfg, init=str(shipped)), max_steps=1)
    assert fresh == 1
