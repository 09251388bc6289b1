"""Atomic outputs get ordinary permissions (the umask decides), not mkstemp's private 0600."""

from __future__ import annotations

import os
import stat

import torch

from live_synth.files import write_bytes_atomic
from live_synth.model import load_model, save_model


def test_written_files_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        write_bytes_atomic(tmp_path / "x.bin", b"abc")
        folder = save_model(load_model("tiny").model, tmp_path / "model")
    finally:
        os.umask(old)
    for path in (tmp_path / "x.bin", folder / "model.safetensors", folder / "config.json"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path
    assert (tmp_path / "x.bin").read_bytes() == b"abc"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    assert torch.equal(load_model(folder).model.state_dict()["decoder.pos_embed"],
                       load_model("tiny").model.state_dict()["decoder.pos_embed"])
