"""Live vocoding streams: exact for the neural vocoder after delay alignment (odd chunk sizes), bounded
approximation for chunked Griffin-Lim."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from live_synth.audio.features import log_mel
from live_synth.audio.vocoders import GriffinLimVocoder
from live_synth.constants import HOP
from live_synth.live.vocode import GriffinLimStream, NeuralStream, streaming_vocoder

neural = pytest.importorskip("live_synth.audio.neural_vocoder")


def make_mel(frames: int = 60) -> np.ndarray:
    t = np.arange(frames * HOP) / 16000
    audio = 0.3 * np.sin(2 * np.pi * 440 * t) * (1 + np.sin(2 * np.pi * 2 * t)) / 2
    return log_mel(torch.from_numpy(audio.astype(np.float32))).numpy()[:frames]


@pytest.mark.parametrize("chunks", [[1] * 60, [3, 7, 1, 13, 36], [64 - 4]])
def test_neural_stream_equals_offline_after_delay(chunks):
    torch.manual_seed(0)
    wrapper = neural.NeuralVocoder(neural.StreamingVocoder())  # random weights: cost and geometry are the same
    mel = make_mel(sum(chunks))
    offline = wrapper(mel)
    stream = NeuralStream(wrapper)
    out, start = [], 0
    for n in chunks:
        out.append(stream(mel[start : start + n]))
        start += n
    streamed = np.concatenate(out)
    d = stream.delay_samples
    assert len(streamed) == len(offline)
    np.testing.assert_allclose(streamed[d:], offline[: len(offline) - d], atol=1e-4)


def test_griffin_lim_stream_has_the_declared_geometry_and_no_boundary_jumps():
    mel = make_mel(48)
    stream = GriffinLimStream(GriffinLimVocoder(n_iter=8), context=6)
    out = [stream(mel[i : i + 8]) for i in range(0, 48, 8)]
    assert [len(o) for o in out] == [8 * HOP] * 6
    audio = np.concatenate(out)
    assert np.isfinite(audio).all() and audio[HOP:].std() > 0.01
    # No sample-to-sample jump at chunk boundaries larger than the largest jump inside chunks (crossfaded).
    steps = np.abs(np.diff(audio))
    boundaries = [i * 8 * HOP + HOP - 1 for i in range(1, 6)]
    assert max(steps[b] for b in boundaries) <= steps.max()
    mel_out = log_mel(torch.from_numpy(audio[HOP:])).numpy()[: 40]
    assert np.abs(mel_out[5:35] - mel[5:35]).mean() < 1.5  # same sound, roughly (Griffin-Lim, 8 iterations)


def test_streaming_vocoder_picks_the_right_stream():
    assert isinstance(streaming_vocoder(GriffinLimVocoder()), GriffinLimStream)
    assert isinstance(streaming_vocoder(neural.NeuralVocoder(neural.StreamingVocoder())), NeuralStream)
