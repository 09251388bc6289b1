"""The effects chain: presets and TOML files, one-line errors, block-size invariance with built-ins and a real VST3
plugin (zam-plugins), the reverb tail of `render --fx hall`, and the live stage between the two rings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pedalboard = pytest.importorskip("pedalboard", reason="the effects chain needs pedalboard (the fx extra)")

from live_synth.errors import LiveSynthError  # noqa: E402
from live_synth.fx import FxStage, load_chain  # noqa: E402
from live_synth.live.ring import SpscRing  # noqa: E402

ZAMCOMP = Path("/usr/lib/vst3/ZamComp.vst3")
BLOCKS = [1, 64, 65, 8192]


def noise_bursts(seconds: float = 1.5, rate: int = 16000) -> np.ndarray:
    rng = np.random.default_rng(0)
    x = rng.standard_normal(int(seconds * rate)).astype(np.float32) * 0.2
    x[int(0.3 * rate) :] = 0.0  # a burst, then silence: the tail is all effect
    return x


def test_presets_load_and_none_is_empty():
    assert load_chain("none").empty
    hall = load_chain("hall")
    assert hall.effects == ["highpass", "reverb", "limiter"] and hall.tail_s == 4.0
    assert load_chain("room").effects == ["reverb", "compressor"]


@pytest.mark.parametrize("text, message", [
    ('[[effect]]\ntype = "flanger"\n', "unknown effect type 'flanger'"),
    ('[[effect]]\ntype = "reverb"\nroom = 1\n', "reverb has no parameter 'room'"),
    ('[[effect]]\ntype = "reverb"\nroom_size = "big"\n', "room_size = 'big' refused"),
    ('[[effect]]\ntype = "vst3"\npath = "/no/such.vst3"\n', "does not load"),
    ('[[effect]]\ntype = "vst3"\n', "needs path"),
    ('tail_seconds = -1\n', "tail_seconds must be"),
    ('effects = 1\n', "unknown keys"),
    ('[[effect\n', "not a readable TOML"),
])
def test_a_bad_chain_is_one_line(tmp_path, text, message):
    path = tmp_path / "chain.toml"
    path.write_text(text)
    with pytest.raises(LiveSynthError, match=message) as error:
        load_chain(str(path))
    assert "\n" not in str(error.value)


def test_a_missing_file_is_one_line():
    with pytest.raises(LiveSynthError, match="no such effects chain file"):
        load_chain("/no/such/chain.toml")


def block_outputs(chain, x, rate):
    whole = chain.process(x, rate, reset=True)
    outs = {}
    for block in BLOCKS:
        chain.board.reset()
        outs[block] = np.concatenate([chain.process(x[i : i + block], rate, reset=False)
                                      for i in range(0, len(x), block)])
    return whole, outs


def test_block_size_does_not_change_the_output_of_the_built_ins():
    chain = load_chain("hall")
    whole, outs = block_outputs(chain, noise_bursts(), 16000)
    for block, out in outs.items():
        np.testing.assert_allclose(out, whole, atol=1e-6, err_msg=f"block {block}")
    assert np.abs(whole[int(0.5 * 16000) :]).max() > 1e-3  # the reverb goes on after the burst


@pytest.mark.skipif(not ZAMCOMP.exists(), reason="zam-plugins' VST3 bundles are not installed (apt zam-plugins)")
def test_a_real_vst3_plugin_loads_by_path_with_parameters_by_name_and_streams_in_any_block(tmp_path):
    path = tmp_path / "chain.toml"
    path.write_text(f'[[effect]]\ntype = "vst3"\npath = "{ZAMCOMP}"\n[effect.parameters]\nthreshold_db = -30.0\n'
                    f'ratio = 4.0\n\n[[effect]]\ntype = "gain"\ngain_db = 6.0\n')
    chain = load_chain(str(path))
    assert chain.effects == ["vst3 ZamComp", "gain"]
    x = noise_bursts(rate=48000)
    whole, outs = block_outputs(chain, x, 48000)
    for block, out in outs.items():
        np.testing.assert_allclose(out, whole, atol=1e-6, err_msg=f"block {block}")
    # The compressor, not only the gain: noise at -14 dBFS, 16 dB over a -30 dB threshold at 4:1, comes out ~12 dB
    # under the +6 dB gain alone (measured 11.1 dB; 0.0 dB with the threshold at 0 dB, where ZamComp does nothing).
    gain_only = x * 10 ** (6.0 / 20)
    drop_db = 10 * np.log10(np.mean(gain_only**2) / np.mean(whole**2))
    assert drop_db > 8.0, f"ZamComp lowered the level by only {drop_db:.1f} dB"


def test_the_live_stage_makes_what_the_chain_makes_and_keeps_the_callback_fed():
    chain = load_chain("room")
    x = noise_bursts(1.0, 48000)
    source, sink = SpscRing(1 << 16), SpscRing(4096)
    source.write(x)
    stage = FxStage(chain, source, sink, 48000, block=256, blocks=2)
    stage.prime()
    assert sink.available() == 512 and stage.latency_ms == pytest.approx(1000 * 512 / 48000)
    got = []
    out = np.empty((256, 1), np.float32)
    stage.start()
    while len(got) * 256 < len(x) - 256:
        if sink.available() >= 256:
            sink.read_into(out)
            got.append(out[:, 0].copy())
    stage.stop()
    assert not stage.error
    played = np.concatenate(got)
    expected = chain.process(x, 48000, reset=True)[: len(played)]
    np.testing.assert_allclose(played, expected, atol=1e-6)


def test_render_with_the_hall_keeps_a_reverb_tail_after_the_last_note(tmp_path):
    import soundfile as sf

    from live_synth.cli import main
    from live_synth.synth import load_song, packaged_path

    audio = {}
    for fx in ("none", "hall"):
        out = tmp_path / f"{fx}.wav"
        assert main(["render", "--demo", "--model", "causal-tiny", "--vocoder", "griffin-lim", "-o", str(out),
                     "--fx", fx, "-q"]) == 0
        audio[fx], rate = sf.read(out, dtype="float32")
    dry_end = len(audio["none"])  # the dry render ends 1 s after the last note's end (its own release tail)
    assert dry_end / rate >= load_song(str(packaged_path("demo.mid"))).total_time + 1.0 - 0.05
    assert len(audio["hall"]) >= dry_end + 3.5 * rate  # the reverb's tail was rendered past it
    tail = audio["hall"][dry_end + rate // 2 :]  # 0.5 s after everything the dry render holds
    body = audio["hall"][:dry_end]
    assert np.sqrt(np.mean(tail**2)) > 1e-4 and np.sqrt(np.mean(tail**2)) > 1e-3 * np.sqrt(np.mean(body**2))
