"""Engines behind one interface: onnxruntime against torch fp32, exports keyed to their weights, the CLI's
`export` and `--engine`, and the GPU-only engines (CUDA graphs, TensorRT), which skip here with their reason."""

from __future__ import annotations

import copy
import dataclasses
import importlib.util
import json

import numpy as np
import pytest
import soundfile as sf
import torch

from engines import load_engine
from engines.onnx_export import GraphNames, export_onnx, read_manifest
from engines.parity import RELATIVE_BOUNDS, check_engine
from engines.tensorrt_engine import build_plan_settings, tensorrt_status
from engines.torch_engine import TorchEngine
from live_synth.cli import main as cli_main
from live_synth.engine_cache import weights_fingerprint
from live_synth.errors import LiveSynthError
from live_synth.midi import Note, NoteSequence
from live_synth.model.config import preset
from live_synth.model.network import SpectrogramDiffusion
from live_synth.render import render_mel, song_windows
from live_synth.sampling.samplers import make_sampler
from live_synth.window_stream import LiveGenerator, LivePolicy

pytest.importorskip("onnxruntime")
from engines.ort_engine import OnnxEngine  # noqa: E402

# The shipped model's features on a tiny shape: piano roll, pitch-shared projection, v-prediction with a roll prior.
ROLL_CFG = dataclasses.replace(preset("tiny"), target_length=16, context_length=12, max_tokens=64, pianoroll=True,
                               roll_pitch_shared=True, prediction="v", roll_prior=True,
                               num_velocity_bins=16, slakh_programs=False)


def model(cfg, seed=0):
    m = SpectrogramDiffusion(cfg, seed=seed).eval()
    if m.decoder.roll_prior is not None:  # zero at init; parity must see it do something
        torch.nn.init.normal_(m.decoder.roll_prior.weight, std=0.05, generator=torch.Generator().manual_seed(seed))
    return m


@pytest.fixture(scope="module")
def roll_export(tmp_path_factory):
    m = model(ROLL_CFG, seed=1)
    folder = export_onnx(m, tmp_path_factory.mktemp("engines") / "onnx")
    return m, folder


@pytest.mark.parametrize("cfg", [preset("tiny"), ROLL_CFG], ids=["tiny", "tiny+pianoroll"])
def test_onnxruntime_matches_torch_fp32_on_fresh_random_inputs(cfg, tmp_path):
    m = model(cfg, seed=2)
    engine = OnnxEngine(export_onnx(m, tmp_path / "onnx"), threads=1)
    report = check_engine(engine, m, seed=7)
    assert report.cases == 18 and report.finite
    assert report.passes(RELATIVE_BOUNDS["float32"]), str(report)


def test_parity_check_fails_on_wrong_weights_and_on_nan(roll_export):
    m, folder = roll_export
    other = model(ROLL_CFG, seed=9)
    assert not check_engine(OnnxEngine(folder), other).passes(RELATIVE_BOUNDS["float32"])

    class NanEngine(TorchEngine):
        def denoise(self, z, tau, memory):
            eps = super().denoise(z, tau, memory).clone()
            eps[0, 0, 0] = float("nan")
            return eps

    report = check_engine(NanEngine(m), m)
    assert not report.finite and not report.passes(1.0)


def test_export_leaves_the_model_in_eval_mode(tmp_path):
    m = model(preset("tiny"))
    export_onnx(m, tmp_path / "onnx")
    assert not any(module.training for module in m.modules())


def test_manifest_names_and_static_geometry(roll_export):
    import onnx

    m, folder = roll_export
    manifest = read_manifest(folder, weights_fingerprint(m))
    names = GraphNames(ROLL_CFG.decoder_layers, True)
    assert manifest["graphs"]["denoise"]["inputs"] == ["z", "tau"] + names.kv + ["cross_bias", "frame_bias"]
    graph = onnx.load(str(folder / "memory.onnx"), load_external_data=False).graph
    dims = {i.name: [d.dim_value or d.dim_param for d in i.type.tensor_type.shape.dim] for i in graph.input}
    assert dims["notes_hidden"] == [1, "tokens", ROLL_CFG.d_model]  # the one dynamic axis (see onnx_export)
    assert dims["context"] == [1, ROLL_CFG.context_length, 128]
    assert dims["roll"][1] == ROLL_CFG.target_length
    denoise = onnx.load(str(folder / "denoise.onnx"), load_external_data=False).graph
    z = next(i for i in denoise.input if i.name == "z")
    assert [d.dim_value or d.dim_param for d in z.type.tensor_type.shape.dim] == ["batch", 16, 128]


def test_an_export_refuses_other_weights_and_for_model_re_exports(roll_export, tmp_path, capsys):
    m, folder = roll_export
    other = model(ROLL_CFG, seed=5)
    with pytest.raises(LiveSynthError, match="other weights"):
        OnnxEngine(folder, fingerprint=weights_fingerprint(other))
    engine = OnnxEngine.for_model(other, tmp_path)  # nothing there yet: exported once, then reused
    assert "exporting" in capsys.readouterr().err
    OnnxEngine.for_model(other, tmp_path)
    assert "exporting" not in capsys.readouterr().err
    assert check_engine(engine, other).passes(RELATIVE_BOUNDS["float32"])
    (tmp_path / "onnx" / "denoise.onnx").unlink()
    with pytest.raises(LiveSynthError, match="missing denoise.onnx"):
        OnnxEngine(tmp_path / "onnx")
    with pytest.raises(LiveSynthError, match="not an exported engine folder"):
        OnnxEngine(tmp_path)


def song() -> NoteSequence:
    return NoteSequence.from_notes([Note(pitch=60 + i, velocity=40 + 10 * i, start=0.15 * i, end=0.15 * i + 0.4,
                                         program=8 * i) for i in range(8)])


def test_render_and_live_ticks_through_onnxruntime_equal_torch(roll_export):
    m, folder = roll_export
    windows = song_windows(song(), ROLL_CFG)
    mels = [render_mel(engine, windows.segments, make_sampler("dpmpp", 3), guidance=2.0,
                       generator=torch.Generator().manual_seed(3), rolls=windows.rolls)
            for engine in (TorchEngine(m), OnnxEngine(folder))]
    np.testing.assert_allclose(mels[1], mels[0], atol=1e-3)
    engine = OnnxEngine(folder)
    live = LiveGenerator(engine, LivePolicy(hop=4, steps=2, sampler="ddim"), seed=0)
    ref = LiveGenerator(TorchEngine(m), LivePolicy(hop=4, steps=2, sampler="ddim"), seed=0)
    ns = NoteSequence.from_notes([Note(pitch=60, velocity=90, start=0.0, end=3.0, program=0)])
    for _ in range(6):
        np.testing.assert_allclose(live.tick(ns)[0], ref.tick(ns)[0], atol=1e-3)
    assert engine.cache_hits > 0  # a held note: the window's tokens repeat and the notes graph is not re-run


def test_cli_export_and_render_with_the_onnx_engine(tmp_path, capsys):
    root = tmp_path / "engines"
    assert cli_main(["export", "--engine", "onnx", "--model", "tiny", "--out", str(root)]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == str(root)
    assert "onnxruntime vs torch fp32" in captured.err and "NON-FINITE" not in captured.err
    manifest = json.loads((root / "onnx" / "manifest.json").read_text())
    assert manifest["opset"] == 17 and manifest["geometry"]["target_length"] == preset("tiny").target_length
    audio = {}
    for engine in ("torch", "onnx"):
        out = tmp_path / f"{engine}.wav"
        assert cli_main(["render", "--demo", "--model", "tiny", "--steps", "2", "--engine", engine,
                         "--engine-dir", str(root), "-o", str(out)]) == 0
        assert f"engine {engine}," in capsys.readouterr().err  # the render says which engine ran it
        audio[engine], _ = sf.read(out, dtype="float32")
    # The same song within float tolerance (measured: relative RMS difference 1.5e-4, from the graphs' reordered
    # float32 sums carried through 2 sampling steps and Griffin-Lim; 16-bit WAVs)
    assert audio["torch"].shape == audio["onnx"].shape
    rms = lambda a: float(np.sqrt(np.mean(np.square(a))))  # noqa: E731
    assert rms(audio["onnx"] - audio["torch"]) < 1e-2 * rms(audio["torch"])


def test_cuda_graph_key_buckets_pad_memory_without_changing_the_step(roll_export):
    """What the CUDA-graph paths do on the GPU, checked on the CPU: a memory padded into its key bucket (zeros, masked
    bias) gives the same decoder output as the memory itself."""
    from engines.base import key_bucket, padded_like

    m, _ = roll_export
    engine = TorchEngine(m)
    tokens = torch.randint(3, 100, (1, 23))
    context, mask = torch.rand(1, 12, 128), torch.ones(1, 12, dtype=torch.bool)
    roll = torch.zeros(1, 16, 4224)
    z = torch.randn(1, 16, 128)
    for guided in (False, True):
        memory = engine.encode(tokens, context, mask, roll, guided=guided)
        keys = memory.bias.shape[-1]
        bucket = key_bucket(keys, ROLL_CFG.max_tokens + ROLL_CFG.context_length, step=32)
        assert bucket == 64 and keys == 35
        padded = padded_like(memory, bucket)
        torch.testing.assert_close(engine.denoise(z, 0.3, padded), engine.denoise(z, 0.3, memory),
                                   atol=1e-5, rtol=1e-5)


def test_engine_errors_are_one_line():
    m = model(preset("tiny"))
    with pytest.raises(LiveSynthError, match="fp32 graphs"):
        load_engine("onnx", m, dtype="float16")
    with pytest.raises(LiveSynthError, match="choose one of auto, torch, onnx, tensorrt"):
        load_engine("magic", m)
    with pytest.raises(LiveSynthError, match="CUDA graphs need"):
        load_engine("torch", m, cuda_graph=True)


def test_the_noise_schedule_of_a_v_model_is_named_nodes_tensorrt_keeps_in_fp32(roll_export):
    import onnx

    from engines.tensorrt_engine import FP32_NAME_PARTS

    _, folder = roll_export
    names = [n.name for n in onnx.load(str(folder / "denoise.onnx")).graph.node]
    assert "noise_level" in FP32_NAME_PARTS
    assert any("noise_level" in n and "Tan" in n for n in names), ("tan near pi/2 must stay fp32", names[:20])


def test_tensorrt_build_settings_cover_every_input_of_the_exported_graphs(roll_export):
    _, folder = roll_export
    manifest = read_manifest(folder)
    settings = build_plan_settings(manifest, "fp16")
    assert set(settings["denoise"]["profile"]) == set(manifest["graphs"]["denoise"]["inputs"])
    lo, opt, hi = settings["denoise"]["profile"]["k0"]
    keys = ROLL_CFG.max_tokens + ROLL_CFG.context_length
    assert lo[0] == 1 and hi[0] == 2 and lo[2] == ROLL_CFG.context_length + 1 and hi[2] == keys
    assert settings["memory"]["profile"]["notes_hidden"][2] == (1, ROLL_CFG.max_tokens, ROLL_CFG.d_model)
    assert settings["notes"]["profile"]["tokens"][2] == (1, ROLL_CFG.max_tokens)
    with pytest.raises(LiveSynthError):
        build_plan_settings(manifest, "int8")


@pytest.mark.skipif(bool(tensorrt_status()), reason=tensorrt_status() or "")
@pytest.mark.parametrize("precision,dtype", [("fp16", "float16"), ("bf16", "bfloat16")])
def test_tensorrt_matches_torch_fp32(precision, dtype, tmp_path):  # pragma: no cover - needs TensorRT and a GPU
    from engines.tensorrt_engine import TensorRTEngine

    m = model(preset("small"), seed=0)
    engine = TensorRTEngine.for_model(m, tmp_path, precision=precision, build_if_missing=True)
    report = check_engine(engine, m)
    assert report.passes(RELATIVE_BOUNDS[dtype]), str(report)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU visible to torch (CPU-only machine)")
@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
@pytest.mark.parametrize("cuda_graph", [False, True])
def test_torch_cuda_matches_cpu_fp32(dtype, cuda_graph):  # pragma: no cover - needs a GPU
    m = model(preset("small"), seed=0)
    reference = TorchEngine(copy.deepcopy(m))
    engine = TorchEngine(m, device="cuda", dtype=dtype, cuda_graph=cuda_graph)
    report = check_engine(engine, None, reference=reference)
    assert report.passes(RELATIVE_BOUNDS[dtype]), str(report)


# -- the causal family ------------------------------------------------------------------------------------------


def _random_causal(seed=0):
    from live_synth.model.causal import CAUSAL_PRESETS, CausalModel

    model = CausalModel(CAUSAL_PRESETS["causal-tiny"], seed=seed).eval()
    with torch.no_grad():  # the zero-initialised output layers would make every parity trivially exact
        for p in model.parameters():
            if (p == 0).all():
                p.normal_(0, 0.05)
    return model


def test_the_causal_frame_step_in_onnxruntime_matches_torch_fp32_on_fresh_random_inputs(tmp_path):
    from engines.ort_frame import OrtFrameEngine
    from engines.parity import FRAME_BOUND, check_frame_engine

    model = _random_causal()
    engine = OrtFrameEngine.for_model(model, tmp_path)
    report = check_frame_engine(engine, model)
    assert report.cases == 6 and report.passes(FRAME_BOUND), report
    other = OrtFrameEngine.for_model(_random_causal(seed=1), tmp_path / "other")
    assert not check_frame_engine(other, model).passes(FRAME_BOUND)  # other weights fail


def test_a_causal_render_through_onnxruntime_equals_torch(tmp_path):
    import numpy as np

    from engines.ort_frame import OrtFrameEngine
    from live_synth.causal_stream import render_events
    from live_synth.midi.events import NoteEvents

    model = _random_causal()
    events = NoteEvents(np.array([[0.1 * i, 0.1 * i + 0.3, 50 + 3 * i, 90, 8 * i, 0, 0] for i in range(8)]))
    ours = render_events(OrtFrameEngine.for_model(model, tmp_path), events, 80, steps=2, seed=1, chunks=2)
    reference = render_events(model, events, 80, steps=2, seed=1, chunks=2)
    assert np.abs(ours - reference).max() < 0.05  # log-mel; the frames feed back, so tiny differences add up


def test_cli_export_of_a_causal_model_checks_parity_and_tensorrt_says_why_not(tmp_path, capsys):
    assert cli_main(["export", "--engine", "onnx", "--model", "causal-tiny", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "onnx-causal" / "step_2.onnx").is_file()
    assert "onnxruntime vs torch fp32 on random inputs" in capsys.readouterr().err
    if importlib.util.find_spec("tensorrt") is None:
        assert cli_main(["export", "--engine", "tensorrt", "--model", "causal-tiny", "--out", str(tmp_path)]) == 2
        assert "needs NVIDIA TensorRT" in capsys.readouterr().err


@pytest.mark.parametrize("model, bound", [("causal-tiny", "FRAME_BOUND"), ("tiny", "RELATIVE_BOUNDS")])
def test_cli_export_exits_1_when_the_engine_fails_its_parity_check(tmp_path, capsys, monkeypatch, model, bound):
    """The real check against a bound no float engine meets (0): the graphs differ from torch by ~1e-7..1e-4."""
    import engines.parity

    monkeypatch.setattr(engines.parity, bound, 0.0 if bound == "FRAME_BOUND" else {"float32": 0.0})
    assert cli_main(["export", "--engine", "onnx", "--model", model, "--out", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""  # no engine folder printed for a script to use
    assert "onnxruntime vs torch fp32 on random inputs" in captured.err and "FAILED" in captured.err


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is None or not torch.cuda.is_available(),
                    reason="the TensorRT export's check needs NVIDIA TensorRT and a CUDA GPU (neither is here)")
@pytest.mark.parametrize("model", ["causal-tiny", "tiny"])
def test_cli_tensorrt_export_checks_its_plans(tmp_path, capsys, monkeypatch, model):
    import engines.parity

    assert cli_main(["export", "--engine", "tensorrt", "--precision", "fp16", "--model", model,
                     "--out", str(tmp_path)]) == 0
    assert "TensorRT vs torch fp32 on random inputs" in capsys.readouterr().err
    monkeypatch.setattr(engines.parity, "FRAME_BOUND", 0.0)
    monkeypatch.setattr(engines.parity, "RELATIVE_BOUNDS", {"float16": 0.0})
    assert cli_main(["export", "--engine", "tensorrt", "--precision", "fp16", "--model", model,
                     "--out", str(tmp_path)]) == 1


def test_tensorrt_frame_plan_settings_cover_every_input_of_the_causal_graphs(tmp_path):
    import json

    from engines.ort_frame import export_frame_onnx
    from engines.tensorrt_engine import frame_plan_settings

    folder = export_frame_onnx(_random_causal(), tmp_path / "onnx-causal", steps=(1,))
    manifest = json.loads((folder / "manifest.json").read_text())
    settings = frame_plan_settings(manifest, "fp16")
    import onnx

    graph = onnx.load(str(folder / "step_1.onnx")).graph
    for inp in graph.input:
        lo, opt, hi = settings["step_1"]["profile"][inp.name]
        dims = [d.dim_value for d in inp.type.tensor_type.shape.dim][1:]
        assert list(lo[1:]) == dims and lo[0] == 1 and hi[0] == 8
