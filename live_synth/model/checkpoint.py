"""Loading and saving weights (spec §6).

Three sources, one loader (`load_model`):
- a preset name (`base`, `small`, `tiny`): a fresh model with random weights, said plainly wherever it is used;
- the project's own format: a folder with `config.json` + `model.safetensors` (or one `.safetensors` file whose
  metadata holds the config);
- a downloaded `google/music-spectrogram-diffusion` folder in diffusers' layout (spec §6.1). Its `.bin` pickles are
  read with `torch.load(weights_only=True)`, which refuses arbitrary objects, and diffusers is not needed.

Every user-caused problem (missing file, wrong key, wrong shape) is one `CheckpointError` line naming the file.
"""

from __future__ import annotations

import json
import os
import pickle
import re
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import Tensor

from live_synth.errors import CheckpointError
from live_synth.files import check_state, one_line, read_safetensors, write_bytes_atomic
from live_synth.model.causal import CAUSAL_PRESETS, FAMILY as CAUSAL_FAMILY, CausalConfig, CausalModel
from live_synth.model.config import PRESETS, ModelConfig, preset
from live_synth.model.network import SpectrogramDiffusion

FAMILIES = ("window", CAUSAL_FAMILY)  # a config's "family" key; absent means the window family

WEIGHTS_FILE = "model.safetensors"
VOCODER_LINK = "vocoder.link"  # a model folder's vocoder in another folder: a path relative to the model folder
CONFIG_FILE = "config.json"
METADATA_KEY = "live_synth_config"
DIFFUSERS_COMPONENTS = {  # diffusers sub-folder → our attribute
    "notes_encoder": "notes_encoder",
    "continuous_encoder": "context_encoder",
    "decoder": "decoder",
}

_ENCODER_RULES = [
    (r"token_embedder\.weight", "token_embed.weight"),
    (r"input_proj\.weight", "input_proj.weight"),
    (r"position_encoding\.weight", "pos_embed"),
    (r"encoders\.(\d+)\.layer\.0\.layer_norm\.weight", r"stack.layers.\1.attn_norm.weight"),
    (r"encoders\.(\d+)\.layer\.0\.SelfAttention\.([qkvo])\.weight", r"stack.layers.\1.attn.\2.weight"),
    (r"encoders\.(\d+)\.layer\.1\.layer_norm\.weight", r"stack.layers.\1.ff_norm.weight"),
    (r"encoders\.(\d+)\.layer\.1\.DenseReluDense\.(wi_0|wi_1|wo)\.weight", r"stack.layers.\1.ff.\2.weight"),
    (r"layer_norm\.weight", "stack.final_norm.weight"),
]
_DECODER_RULES = [
    (r"conditioning_emb\.([02])\.weight", r"time_mlp.\1.weight"),
    (r"position_encoding\.weight", "pos_embed"),
    (r"continuous_inputs_projection\.weight", "input_proj.weight"),
    (r"decoders\.(\d+)\.layer\.0\.layer_norm\.weight", r"layers.\1.self_norm.weight"),
    (r"decoders\.(\d+)\.layer\.0\.FiLMLayer\.scale_bias\.weight", r"layers.\1.self_film.weight"),
    (r"decoders\.(\d+)\.layer\.0\.attention\.to_([qkv])\.weight", r"layers.\1.self_attn.\2.weight"),
    (r"decoders\.(\d+)\.layer\.0\.attention\.to_out\.0\.weight", r"layers.\1.self_attn.o.weight"),
    (r"decoders\.(\d+)\.layer\.1\.layer_norm\.weight", r"layers.\1.cross_norm.weight"),
    (r"decoders\.(\d+)\.layer\.1\.attention\.to_([qkv])\.weight", r"layers.\1.cross_attn.\2.weight"),
    (r"decoders\.(\d+)\.layer\.1\.attention\.to_out\.0\.weight", r"layers.\1.cross_attn.o.weight"),
    (r"decoders\.(\d+)\.layer\.2\.layer_norm\.weight", r"layers.\1.ff_norm.weight"),
    (r"decoders\.(\d+)\.layer\.2\.film\.scale_bias\.weight", r"layers.\1.ff_film.weight"),
    (r"decoders\.(\d+)\.layer\.2\.DenseReluDense\.(wi_0|wi_1|wo)\.weight", r"layers.\1.ff.\2.weight"),
    (r"decoder_norm\.weight", "final_norm.weight"),
    (r"spec_out\.weight", "output_proj.weight"),
]
_RULES = {"notes_encoder": _ENCODER_RULES, "continuous_encoder": _ENCODER_RULES, "decoder": _DECODER_RULES}


@dataclass
class LoadedModel:
    """A model ready for inference, with what the CLI must tell the user about it."""

    model: SpectrogramDiffusion | CausalModel
    source: str  # a path, or "preset:<name>"
    random_weights: bool
    vocoder_path: Path | None = None  # the published MelGAN ONNX file when the folder has one


def diffusers_key_to_ours(component: str, key: str) -> str | None:
    """Our state-dict key for a diffusers key of `component` (e.g. 'decoder'), or None if it has no counterpart."""
    for pattern, repl in _RULES[component]:
        if re.fullmatch(pattern, key):
            return f"{DIFFUSERS_COMPONENTS[component]}.{re.sub(pattern, repl, key)}"
    return None


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing file") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: not a readable JSON file ({exc})") from None


def _config_from_diffusers(folder: Path) -> ModelConfig:
    notes = _read_json(folder / "notes_encoder" / "config.json")
    ctx = _read_json(folder / "continuous_encoder" / "config.json")
    dec = _read_json(folder / "decoder" / "config.json")
    for name, part in (("notes_encoder", notes), ("continuous_encoder", ctx)):
        if part.get("feed_forward_proj", "gated-gelu") != "gated-gelu":
            raise CheckpointError(f"{folder / name / 'config.json'}: feed_forward_proj must be 'gated-gelu'")
    for key in ("d_model", "num_heads", "d_kv", "d_ff"):
        values = {notes.get(key), ctx.get(key), dec.get(key)}
        if len(values) != 1 or None in values:
            raise CheckpointError(f"{folder}: components disagree on {key}: {sorted(map(str, values))}")
    try:
        return ModelConfig(
            d_model=dec["d_model"],
            num_heads=dec["num_heads"],
            d_kv=dec["d_kv"],
            d_ff=dec["d_ff"],
            notes_layers=notes["num_layers"],
            context_layers=ctx["num_layers"],
            decoder_layers=dec["num_layers"],
            vocab_size=notes["vocab_size"],
            max_tokens=notes["max_length"],
            context_length=ctx["targets_context_length"],
            target_length=dec["targets_length"],
            input_dims=dec["input_dims"],
            max_decoder_noise_time=float(dec["max_decoder_noise_time"]),
            dropout=float(dec.get("dropout_rate", 0.1)),
            description=f"imported from diffusers folder {folder.name}",
        )
    except KeyError as exc:
        raise CheckpointError(f"{folder}: config.json lacks key {exc}") from None


def _weights_only_reason(exc: Exception) -> str:
    """The cause inside torch's many-line weights_only refusal, e.g. 'Unsupported global: GLOBAL x.Y ...'."""
    for line in str(exc).splitlines():
        line = one_line(line).removeprefix("WeightsUnpickler error:").strip()
        if "nsupported" in line:
            return line.split(". ")[0].rstrip(".")
    return "it holds something other than tensors"


def _load_tensor_file(path: Path) -> dict[str, Tensor]:
    if not path.is_file():
        raise CheckpointError(f"{path}: missing file")
    try:
        if path.suffix == ".safetensors":
            return read_safetensors(path)[0]
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # weights_only refused the pickle (an object that is not a tensor, or not a pickle at all). torch explains
        # that over many lines and suggests weights_only=False; the user gets one line with the cause.
        raise CheckpointError(f"{path}: refused, not a plain tensor file (read with weights_only: "
                              f"{_weights_only_reason(exc)})") from None
    except Exception as exc:  # corrupt pickles raise many types; all mean the same to the user
        raise CheckpointError(f"{path}: cannot read weights ({type(exc).__name__}: {one_line(str(exc))})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a state dict, found {type(state).__name__}")
    return state


def _component_weights(folder: Path, component: str) -> tuple[Path, dict[str, Tensor]]:
    sub = folder / component
    for name in ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin"):
        if (sub / name).is_file():
            return sub / name, _load_tensor_file(sub / name)
    raise CheckpointError(f"{sub}: missing diffusion_pytorch_model.bin (or .safetensors)")


def _load_state(model: SpectrogramDiffusion | CausalModel, state: dict[str, Tensor], origin: dict[str, Path]) -> None:
    """Copy `state` into `model`, checking that every key exists and every shape fits."""
    check_state(model.state_dict(), state, lambda key: origin.get(key, "checkpoint"))
    model.load_state_dict({k: v.float() for k, v in state.items()})


def load_diffusers_folder(folder: Path) -> LoadedModel:
    """Import a `google/music-spectrogram-diffusion` folder (diffusers layout) without diffusers."""
    cfg = _config_from_diffusers(folder)
    model = SpectrogramDiffusion(cfg)
    state: dict[str, Tensor] = {}
    origin: dict[str, Path] = {}
    for component in DIFFUSERS_COMPONENTS:
        path, weights = _component_weights(folder, component)
        for key, tensor in weights.items():
            ours = diffusers_key_to_ours(component, key)
            if ours is None:
                raise CheckpointError(f"{path}: unexpected tensor {key}")
            state[ours], origin[ours] = tensor, path
    for attr in DIFFUSERS_COMPONENTS.values():  # name the component file in "missing tensor" errors
        for key in model.state_dict():
            if key.startswith(attr + "."):
                origin.setdefault(key, folder / [c for c, a in DIFFUSERS_COMPONENTS.items() if a == attr][0])
    _load_state(model, state, origin)
    melgan = folder / "melgan" / "model.onnx"
    return LoadedModel(model.eval(), str(folder), False, melgan if melgan.is_file() else None)


def _load_own(path: Path) -> LoadedModel:
    weights = path / WEIGHTS_FILE if path.is_dir() else path
    state, meta = read_safetensors(weights)
    if path.is_dir() and (path / CONFIG_FILE).is_file():
        cfg_dict = _read_json(path / CONFIG_FILE)
        source = path / CONFIG_FILE
    elif METADATA_KEY in meta:
        cfg_dict, source = json.loads(meta[METADATA_KEY]), weights
    else:
        raise CheckpointError(f"{path}: missing {CONFIG_FILE} (and no config in the weight file's metadata)")
    family = cfg_dict.get("family", "window") if isinstance(cfg_dict, dict) else None
    if family not in FAMILIES:
        raise CheckpointError(f"{source}: unknown model family {family!r} (known: {', '.join(FAMILIES)})")
    if family == CAUSAL_FAMILY:
        model = CausalModel(CausalConfig.from_dict(cfg_dict, str(source)))
    else:
        model = SpectrogramDiffusion(ModelConfig.from_dict(cfg_dict, str(source)))
    _load_state(model, state, {k: weights for k in set(state) | set(model.state_dict())})
    vocoder = None
    if path.is_dir():  # a vocoder shipped next to the model: ours (vocoder.safetensors) or a MelGAN ONNX file
        if (path / "vocoder.safetensors").is_file():
            vocoder = path
        elif (path / "melgan.onnx").is_file():
            vocoder = path / "melgan.onnx"
        elif (path / VOCODER_LINK).is_file():  # another folder's vocoder (two shipped models share one)
            target = (path / (path / VOCODER_LINK).read_text().strip()).resolve()
            if not (target / "vocoder.safetensors").is_file():
                raise CheckpointError(f"{path / VOCODER_LINK}: names {target}, which holds no vocoder.safetensors")
            vocoder = target
    return LoadedModel(model.eval(), str(path), False, vocoder)


def load_model(spec: str | os.PathLike, seed: int = 0) -> LoadedModel:
    """Load a model from a preset name, our own format, or a diffusers-layout folder."""
    text = str(spec)
    if text in CAUSAL_PRESETS and not Path(text).exists():
        cfg = replace(CAUSAL_PRESETS[text], description=f"{CAUSAL_PRESETS[text].description}; RANDOM WEIGHTS "
                      f"(seed {seed})")
        return LoadedModel(CausalModel(cfg, seed=seed).eval(), f"preset:{text}", True)
    if text in PRESETS and not Path(text).exists():
        cfg = replace(preset(text), description=f"{preset(text).description}; RANDOM WEIGHTS (seed {seed})")
        torch.manual_seed(seed)
        return LoadedModel(SpectrogramDiffusion(cfg, seed=seed).eval(), f"preset:{text}", True)
    path = Path(text)
    if not path.exists():
        presets = sorted(PRESETS) + sorted(CAUSAL_PRESETS)
        raise CheckpointError(f"{path}: no such model folder or file (presets: {presets})")
    if path.is_dir() and (path / "model_index.json").is_file():
        return load_diffusers_folder(path)
    if path.is_dir() or path.suffix == ".safetensors":
        return _load_own(path)
    raise CheckpointError(f"{path}: not a model folder (expected config.json + {WEIGHTS_FILE}, or model_index.json)")


def save_causal_model(model: CausalModel, folder: str | os.PathLike) -> Path:
    """A causal model as a shipped folder: fp16 weights (config in their metadata too) + config.json."""
    return save_model(model, folder, fp16=True)


def save_model(model: SpectrogramDiffusion | CausalModel, folder: str | os.PathLike, fp16: bool = False) -> Path:
    """Write `folder/config.json` + `folder/model.safetensors` (config also in the metadata). Atomic per file."""
    from safetensors.torch import save

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    dtype = torch.float16 if fp16 else torch.float32
    state = {k: v.detach().to(dtype).contiguous() for k, v in model.state_dict().items()}
    cfg_json = model.config.to_json()
    write_bytes_atomic(folder / WEIGHTS_FILE, save(state, metadata={METADATA_KEY: cfg_json}))
    write_bytes_atomic(folder / CONFIG_FILE, (cfg_json + "\n").encode())
    return folder
