"""tools/convert_checkpoint.py turns a diffusers-layout folder into our format with identical outputs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.parity
ref = pytest.importorskip("tests.diffusers_ref", reason="diffusers parity reference not installed")

from diffusers import SpectrogramDiffusionPipeline  # noqa: E402

from live_synth.model.checkpoint import load_model  # noqa: E402
from live_synth.model.config import ModelConfig  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import convert_checkpoint  # noqa: E402

CFG = ModelConfig(d_model=32, num_heads=2, d_kv=16, d_ff=48, notes_layers=1, context_layers=1, decoder_layers=2)


@pytest.mark.parametrize("fp16, tol", [(False, 0.0), (True, 5e-2)])
def test_convert_diffusers_folder(tmp_path, fp16, tol):
    notes, ctx, dec = ref.reference_modules(CFG, seed=5)
    src = tmp_path / "hub"
    SpectrogramDiffusionPipeline(notes, ctx, dec, ref.reference_scheduler(), melgan=None).save_pretrained(
        src, safe_serialization=False)
    (src / "melgan").mkdir()
    (src / "melgan" / "model.onnx").write_bytes(b"stand-in: copied, not parsed, by the converter")
    dst = tmp_path / "ours"
    assert convert_checkpoint.main([str(src), str(dst)] + (["--fp16"] if fp16 else [])) == 0
    assert json.loads((dst / "config.json").read_text())["max_decoder_noise_time"] == 20000.0
    assert (dst / "melgan.onnx").read_bytes() == (src / "melgan" / "model.onnx").read_bytes()
    loaded = load_model(dst)
    assert loaded.vocoder_path == dst / "melgan.onnx"
    diff = convert_checkpoint.max_difference(load_model(src).model, loaded.model)
    assert diff <= tol
    weights = (dst / "model.safetensors").stat().st_size
    n = sum(t.numel() for t in loaded.model.state_dict().values())
    assert weights < n * (2 if fp16 else 4) * 1.05 + 4096  # stored at the asked precision


def test_convert_refuses_a_preset(tmp_path, capsys):
    assert convert_checkpoint.main(["tiny", str(tmp_path / "x")]) == 2
    assert "preset" in capsys.readouterr().err
