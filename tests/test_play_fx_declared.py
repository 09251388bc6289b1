"""`play --fx`: the effects stage's latency is declared only when the chain holds an effect, and the chain is loaded
once (issue 21 item 4). No audio device needed: the session is constructed, not run."""

from __future__ import annotations

import pytest

from live_synth.live.generation import PlaySettings, effects_stage_ms


@pytest.fixture
def loads(monkeypatch):
    """Counts `load_chain` calls (the real one still runs)."""
    import live_synth.fx as fx

    calls = []
    real = fx.load_chain

    def counting(spec):
        calls.append(spec)
        return real(spec)

    monkeypatch.setattr(fx, "load_chain", counting)
    return calls


@pytest.fixture
def empty_chain(tmp_path):
    path = tmp_path / "nothing.toml"
    path.write_text("tail_seconds = 0.5\n")  # a custom chain without a single [[effect]]
    return str(path)


def test_a_chain_without_effects_declares_no_stage(loads, empty_chain):
    from live_synth.live.session import LiveSession

    for spec in (empty_chain, "none"):
        session = LiveSession(PlaySettings(fx=spec))
        assert session.chain is None and not session.settings.fx_stage
        assert effects_stage_ms(session.settings, 48000) == 0.0
    assert loads == [empty_chain, "none"]  # once each


def test_a_chain_with_an_effect_declares_its_stage(loads):
    pytest.importorskip("pedalboard")
    from live_synth.live.session import LiveSession

    session = LiveSession(PlaySettings(fx="hall"))
    assert session.chain is not None and session.settings.fx_stage
    assert effects_stage_ms(session.settings, 48000) == pytest.approx(1000 * 2 * 256 / 48000)  # 10.7 ms
    assert loads == ["hall"]


def test_the_cli_loads_the_chain_once_and_hands_it_to_the_session(loads, empty_chain, monkeypatch):
    import live_synth.live.session as session_module
    from live_synth import cli

    real_session = session_module.LiveSession

    seen = {}

    class Stop(Exception):
        pass

    class FakeSession:
        def __init__(self, settings, log=print, chain=None, **other):
            seen["chain"], seen["settings"] = chain, settings

        def run(self):
            raise Stop

    monkeypatch.setattr(session_module, "LiveSession", FakeSession)
    args = cli.build_parser().parse_args(["play", "--fx", empty_chain])
    with pytest.raises(Stop):
        cli.cmd_play(args)
    assert loads == [empty_chain] and seen["chain"] is not None and seen["chain"].empty
    # the real session, handed that chain, does not load it again
    session = real_session(seen["settings"], chain=seen["chain"])
    assert loads == [empty_chain] and not session.settings.fx_stage
