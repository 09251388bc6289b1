"""A live stream (`synth.LiveStream`) wrapped to do something around `generate`: everything else is the inner
stream's, the worker's step degradation (`steps = ...`) included. Thread: the generation worker."""

from __future__ import annotations


class WrappedStream:
    def __init__(self, stream):
        self.inner = stream
        self.can_rewind = stream.can_rewind

    @property
    def frame(self) -> int:
        return self.inner.frame

    @property
    def steps(self) -> int:
        return self.inner.steps

    @steps.setter
    def steps(self, value: int) -> None:
        self.inner.steps = value

    def __getattr__(self, name):  # max_steps, hop, earliest, rewind, lookahead_frames, horizon_s, ...
        return getattr(self.inner, name)

    def generate(self, notes):
        return self.inner.generate(notes)
