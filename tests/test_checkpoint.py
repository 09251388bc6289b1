"""Weights in and out (spec §6): our own format round trip, single-file and fp16 variants, the diffusers-layout import,
and the safety of reading pickled `.bin` files.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from live_synth.errors import CheckpointError
from live_synth.model import ModelConfig, SpectrogramDiffusion, load_model, preset, save_model
from live_synth.model.checkpoint import CONFIG_FILE, METADATA_KEY, WEIGHTS_FILE, diffusers_key_to_ours


def tiny_model(seed: int = 0) -> SpectrogramDiffusion:
    torch.manual_seed(seed)
    return SpectrogramDiffusion(preset("tiny"), seed=seed).eval()


@torch.no_grad()
def encode_and_denoise(model: SpectrogramDiffusion, tau: float = 0.37):
    """Cross-attention memory and one ε prediction on fixed random inputs (a partly masked context)."""
    cfg = model.config
    gen = torch.Generator().manual_seed(1234)
    tokens = torch.randint(3, 1000, (1, 60), generator=gen)
    tokens[0, -1] = 1  # EOS
    context = torch.rand(1, cfg.context_length, cfg.input_dims, generator=gen) * 2 - 1
    mask = torch.ones(1, cfg.context_length, dtype=torch.bool)
    mask[:, 180:] = False
    z = torch.randn(1, cfg.target_length, cfg.input_dims, generator=gen)
    memory = model.encode(tokens, context, mask)
    return memory, model(z, torch.tensor([tau]), memory)


def assert_same_memory(a, b) -> None:
    assert torch.equal(a.bias, b.bias)
    assert len(a.kv) == len(b.kv)
    for (ka, va), (kb, vb) in zip(a.kv, b.kv):
        assert torch.equal(ka, kb) and torch.equal(va, vb)


# --- our own format ---------------------------------------------------------------------------------------------------


def test_save_load_round_trip_is_exact(tmp_path):
    model = tiny_model(seed=3)
    folder = save_model(model, tmp_path / "tiny")
    assert sorted(p.name for p in folder.iterdir()) == sorted([CONFIG_FILE, WEIGHTS_FILE]), "no temporary files left"

    loaded = load_model(folder)
    assert not loaded.random_weights
    assert loaded.source == str(folder)
    assert loaded.model.config == model.config
    assert loaded.model.config.description == model.config.description
    assert not loaded.model.training
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[key], value), key

    memory, eps = encode_and_denoise(model)
    memory2, eps2 = encode_and_denoise(loaded.model)
    assert_same_memory(memory, memory2)
    assert torch.equal(eps, eps2)
    assert eps.abs().max() > 0  # a real output, not a degenerate zero


def test_single_safetensors_file_carries_its_config(tmp_path):
    model = tiny_model(seed=4)
    folder = save_model(model, tmp_path / "saved")
    with safe_open(str(folder / WEIGHTS_FILE), framework="pt") as f:
        assert ModelConfig.from_dict(json.loads(f.metadata()[METADATA_KEY])) == model.config
    alone = tmp_path / "elsewhere" / "my-model.safetensors"
    alone.parent.mkdir()
    shutil.copy(folder / WEIGHTS_FILE, alone)  # no config.json anywhere near it

    loaded = load_model(alone)
    assert not loaded.random_weights and loaded.source == str(alone)
    assert loaded.model.config == model.config
    _, eps = encode_and_denoise(model)
    _, eps2 = encode_and_denoise(loaded.model)
    assert torch.equal(eps, eps2)


def test_config_json_wins_over_metadata(tmp_path):
    """A folder's config.json is the description that is read; here it disagrees on a shape, which is then caught."""
    folder = save_model(tiny_model(), tmp_path / "saved")
    cfg = json.loads((folder / CONFIG_FILE).read_text())
    cfg["d_ff"] = cfg["d_ff"] * 2
    (folder / CONFIG_FILE).write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="shape"):
        load_model(folder)


def test_fp16_save_loads_within_fp16_tolerance(tmp_path):
    model = tiny_model(seed=5)
    full = save_model(model, tmp_path / "fp32")
    half = save_model(model, tmp_path / "fp16", fp16=True)
    with safe_open(str(half / WEIGHTS_FILE), framework="pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}
    assert (half / WEIGHTS_FILE).stat().st_size < 0.6 * (full / WEIGHTS_FILE).stat().st_size

    loaded = load_model(half).model
    for key, value in model.state_dict().items():
        got = loaded.state_dict()[key]
        assert got.dtype == torch.float32, key  # loaded for fp32 inference
        assert torch.equal(got, value.half().float()), key  # exactly the fp16 rounding, nothing else

    _, eps = encode_and_denoise(model)
    _, eps16 = encode_and_denoise(loaded)
    scale = eps.abs().max()
    assert (eps16 - eps).abs().max() <= 1e-2 * scale  # fp16 weights: ~3 significant digits
    assert not torch.equal(eps16, eps)  # the rounding did happen


def test_corrupt_safetensors_and_unknown_config_key_are_checkpoint_errors(tmp_path):
    folder = save_model(tiny_model(), tmp_path / "saved")
    cfg = json.loads((folder / CONFIG_FILE).read_text())
    (folder / CONFIG_FILE).write_text(json.dumps({**cfg, "n_layers_typo": 3}))
    with pytest.raises(CheckpointError, match="n_layers_typo"):
        load_model(folder)
    (folder / CONFIG_FILE).write_text(json.dumps(cfg))
    (folder / WEIGHTS_FILE).write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match=WEIGHTS_FILE):
        load_model(folder)


# --- .bin pickles are read with weights_only -------------------------------------------------------------------------


class NotATensor:
    """An arbitrary class instance: torch.load(weights_only=True) must refuse to build it."""

    def __init__(self, note: str = "arbitrary object"):
        self.note = note


class Gadget:
    """Unpickling this with plain pickle would create a file: proof that code ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def write_diffusers_configs(folder: Path, cfg: ModelConfig) -> Path:
    """A hand-written diffusers-layout folder skeleton (configs only; no diffusers needed)."""
    common = {"d_model": cfg.d_model, "num_heads": cfg.num_heads, "d_kv": cfg.d_kv, "d_ff": cfg.d_ff,
              "dropout_rate": cfg.dropout, "feed_forward_proj": "gated-gelu"}
    configs = {
        "notes_encoder": {**common, "num_layers": cfg.notes_layers, "vocab_size": cfg.vocab_size,
                          "max_length": cfg.max_tokens},
        "continuous_encoder": {**common, "num_layers": cfg.context_layers, "input_dims": cfg.input_dims,
                               "targets_context_length": cfg.context_length},
        "decoder": {**common, "num_layers": cfg.decoder_layers, "input_dims": cfg.input_dims,
                    "targets_length": cfg.target_length, "max_decoder_noise_time": cfg.max_decoder_noise_time},
    }
    for component, config in configs.items():
        (folder / component).mkdir(parents=True, exist_ok=True)
        (folder / component / "config.json").write_text(json.dumps(config))
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "SpectrogramDiffusionPipeline"}))
    return folder


@pytest.mark.parametrize("payload", ["instance", "gadget"])
def test_bin_pickles_are_read_with_weights_only(tmp_path, payload):
    folder = write_diffusers_configs(tmp_path / "msd", preset("tiny"))
    marker = tmp_path / "code_ran"
    for component in ("notes_encoder", "continuous_encoder"):
        torch.save({}, folder / component / "diffusion_pytorch_model.bin")
    evil = {"spec_out.weight": torch.zeros(128, 64),
            "extra": NotATensor() if payload == "instance" else Gadget(marker)}
    torch.save(evil, folder / "decoder" / "diffusion_pytorch_model.bin")
    if payload == "gadget":  # the file really is dangerous to an unrestricted unpickler: it runs os.mkdir
        torch.load(folder / "decoder" / "diffusion_pytorch_model.bin", weights_only=False)
        assert marker.is_dir()
        marker.rmdir()

    with pytest.raises(CheckpointError) as info:
        load_model(folder)
    message = str(info.value)
    assert message.startswith(str(folder / "decoder" / "diffusion_pytorch_model.bin"))
    assert "weights_only" in message
    assert "\n" not in message and "\x1b" not in message, "one plain line for the CLI"
    assert ("NotATensor" if payload == "instance" else "mkdir") in message  # names what was refused
    assert not marker.exists(), "the pickle's code was executed"


def test_bin_holding_a_non_dict_is_refused(tmp_path):
    folder = write_diffusers_configs(tmp_path / "msd", preset("tiny"))
    torch.save([torch.zeros(3)], folder / "notes_encoder" / "diffusion_pytorch_model.bin")
    with pytest.raises(CheckpointError, match="state dict"):
        load_model(folder)


def test_diffusers_config_mismatch_and_missing_key(tmp_path):
    folder = write_diffusers_configs(tmp_path / "msd", preset("tiny"))
    cfg_path = folder / "decoder" / "config.json"
    good = json.loads(cfg_path.read_text())
    cfg_path.write_text(json.dumps({**good, "d_model": 96}))
    with pytest.raises(CheckpointError, match="d_model"):
        load_model(folder)
    cfg_path.write_text(json.dumps({k: v for k, v in good.items() if k != "targets_length"}))
    with pytest.raises(CheckpointError, match="targets_length"):
        load_model(folder)


# --- diffusers layout written by diffusers itself (parity) ------------------------------------------------------------

# Shapes like tests/test_render_parity.py; max_decoder_noise_time 20000 as the published weights need.
DIFFUSERS_CFG = ModelConfig(d_model=64, num_heads=4, d_kv=16, d_ff=96, notes_layers=2, context_layers=2,
                            decoder_layers=2, max_decoder_noise_time=20000.0)
COMPONENTS = ("notes_encoder", "continuous_encoder", "decoder")


@pytest.fixture(scope="module")
def diffusers_saved(tmp_path_factory):
    ref = pytest.importorskip("tests.diffusers_ref", reason="diffusers parity reference not installed")
    from diffusers import SpectrogramDiffusionPipeline

    modules = ref.reference_modules(DIFFUSERS_CFG, seed=21)
    pipe = SpectrogramDiffusionPipeline(*modules, ref.reference_scheduler(), melgan=None)
    folder = tmp_path_factory.mktemp("diffusers") / "music-spectrogram-diffusion"
    pipe.save_pretrained(folder, safe_serialization=False)
    return modules, folder


@pytest.mark.parity
def test_diffusers_folder_config_is_imported(diffusers_saved, tmp_path):
    _, folder = diffusers_saved
    assert json.loads((folder / "decoder" / "config.json").read_text())["max_decoder_noise_time"] == 20000
    loaded = load_model(folder)
    cfg = loaded.model.config
    assert cfg == DIFFUSERS_CFG  # every shape field, max_decoder_noise_time 20000.0 and dropout included
    assert (cfg.max_decoder_noise_time, cfg.vocab_size, cfg.max_tokens) == (20000.0, 1536, 2048)
    assert (cfg.context_length, cfg.target_length, cfg.input_dims) == (256, 256, 128)
    assert loaded.model.decoder.max_noise_time == 20000.0
    assert not loaded.random_weights and loaded.vocoder_path is None

    # The value really comes from the file (diffusers' class default is 2000, ours 20000).
    edited = shutil.copytree(folder, tmp_path / "edited")
    dec_cfg = json.loads((edited / "decoder" / "config.json").read_text())
    (edited / "decoder" / "config.json").write_text(json.dumps({**dec_cfg, "max_decoder_noise_time": 2000.0,
                                                                 "dropout_rate": 0.25}))
    edited_cfg = load_model(edited).model.config
    assert (edited_cfg.max_decoder_noise_time, edited_cfg.dropout) == (2000.0, 0.25)


@pytest.mark.parity
@torch.no_grad()
def test_diffusers_folder_gives_the_diffusers_decoder_output(diffusers_saved):
    (notes, ctx, dec), folder = diffusers_saved
    model = load_model(folder).model
    state = model.state_dict()
    for component, module in zip(COMPONENTS, (notes, ctx, dec)):  # the weights arrive bit for bit
        for key, value in module.state_dict().items():
            assert torch.equal(state[diffusers_key_to_ours(component, key)], value), f"{component}.{key}"

    gen = torch.Generator().manual_seed(8)
    tokens = torch.zeros(1, DIFFUSERS_CFG.max_tokens, dtype=torch.long)
    tokens[0, :80] = torch.randint(3, 1391, (80,), generator=gen)
    tokens[0, 79] = 1
    frames = torch.rand(1, DIFFUSERS_CFG.context_length, 128, generator=gen) * 2 - 1
    cmask = torch.ones(1, DIFFUSERS_CFG.context_length, dtype=torch.bool)
    cmask[:, 200:] = False
    z = torch.randn(1, DIFFUSERS_CFG.target_length, 128, generator=gen)
    full = torch.ones_like(cmask)  # diffusers has no terminal-relative context positions (test_model_parity)
    for tau in (0.05, 0.6):
        t = torch.tensor([tau])
        enc = [notes(encoder_input_tokens=tokens, encoder_inputs_mask=tokens > 0), ctx(frames, cmask)]
        expected = dec(encodings_and_masks=enc, decoder_input_tokens=z, decoder_noise_time=t)
        assert (model(z, t, model.decoder.memory(enc)) - expected).abs().max() <= 1e-5  # the decoder alone

        enc = [notes(encoder_input_tokens=tokens, encoder_inputs_mask=tokens > 0), ctx(frames, full)]
        expected = dec(encodings_and_masks=enc, decoder_input_tokens=z, decoder_noise_time=t)
        assert (model(z, t, model.encode(tokens[:, :80], frames, full)) - expected).abs().max() <= 1e-5


@pytest.mark.parity
def test_diffusers_folder_with_safetensors_weights_also_loads(diffusers_saved, tmp_path):
    """diffusers' default save format (safe_serialization=True) is read too."""
    (notes, ctx, dec), folder = diffusers_saved
    copy = shutil.copytree(folder, tmp_path / "st")
    for component, module in zip(COMPONENTS, (notes, ctx, dec)):
        (copy / component / "diffusion_pytorch_model.bin").unlink()
        save_file({k: v.contiguous() for k, v in module.state_dict().items()},
                  str(copy / component / "diffusion_pytorch_model.safetensors"))
    a, b = load_model(folder).model, load_model(copy).model
    for key, value in a.state_dict().items():
        assert torch.equal(b.state_dict()[key], value), key


def test_a_model_folder_may_name_another_folders_vocoder(tmp_path):
    from live_synth.audio.neural_vocoder import StreamingVocoder, preset as vocoder_preset, save_vocoder
    from live_synth.errors import CheckpointError
    from live_synth.model import load_model, save_model
    from live_synth.model.network import SpectrogramDiffusion

    save_vocoder(StreamingVocoder(vocoder_preset("tiny")), tmp_path / "a")
    save_model(SpectrogramDiffusion(preset("tiny")), tmp_path / "b")
    (tmp_path / "b" / "vocoder.link").write_text("../a\n")
    assert load_model(tmp_path / "b").vocoder_path == (tmp_path / "a").resolve()
    (tmp_path / "b" / "vocoder.link").write_text("../nowhere\n")
    with pytest.raises(CheckpointError, match="holds no vocoder"):
        load_model(tmp_path / "b")
