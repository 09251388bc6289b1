"""The declared delay D under load: sized from the ticks measured while playing, changed only in silence.

`play` places every MIDI event at its arrival + D (live/worker.py). D must cover the guard, the frames from a
note's first frame to its audio (feature + vocoder look-ahead) at the cost of a slow tick, and the effects stage.
Sized once from the pre-fill's ticks it is too small under dense music and a busy machine (BENCHMARKS.md: 472 late
events in a 5-minute soak): ticks get slower while playing than while pre-filling.

`DelayPolicy` keeps the last `window` tick times (worker thread) and proposes D = `base_ms` + `frames` x their
`quantile`, or more after a late event (D + how late it was). A larger D is adopted only at a declared moment: no
note is sounding (so a held note's note-off is placed with the same D as its note-on) and at least `min_interval_s`
after the last change; the worker calls `at_silence` then. D grows as soon as the recent ticks ask for `step_ms`
more, up to `max_ms`; it shrinks only on a full window of ticks (30 s) that asks for `shrink_ms` less and no late
event since the last change: a pre-fill measured while something else loaded the machine does not cost latency for
the whole session, and a jittery quantile does not move D every second. `play` prints each change and counts them
(`delay_changes`).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np


@dataclass
class DelayPolicy:
    delay_ms: float  # the D in force
    base_ms: float  # the part of D that does not scale with the tick: guard, effects stage, margin
    frames: int  # ticks from a note's first frame to its audio, each at a slow tick's cost
    quantile: float = 99.0  # percentile of the recent ticks a note must survive
    window: int = 1500  # recent ticks (30 s at one 20 ms frame per tick)
    min_ticks: int = 100  # ticks needed before the quantile says anything (2 s)
    step_ms: float = 1.0  # the least growth worth announcing
    shrink_ms: float = 5.0  # the least shrinking worth announcing (on a full window only)
    max_ms: float = 200.0  # never declare more than this
    min_interval_s: float = 1.0  # between two changes
    changes: int = 0
    _ticks: deque = field(default_factory=deque, repr=False)
    _late_ms: float = 0.0
    _late_seen: bool = False  # a late event since the last change: no shrinking
    _last_change: float = float("-inf")
    _last_check: float = float("-inf")

    def __post_init__(self) -> None:
        self._ticks = deque(maxlen=self.window)

    def observe(self, tick_ms: float) -> None:
        """A tick's compute time (worker thread, every tick)."""
        self._ticks.append(tick_ms)

    def late(self, moved_ms: float) -> None:
        """An event had to be moved `moved_ms` later than arrival + D: D was too small by at least that much."""
        self._late_ms = max(self._late_ms, moved_ms)
        self._late_seen = True

    def proposal(self) -> float:
        """The D the recent ticks and late events ask for (never less than the D in force)."""
        wanted = self.delay_ms
        if len(self._ticks) >= self.min_ticks:
            slow = float(np.percentile(np.fromiter(self._ticks, np.float64, len(self._ticks)), self.quantile))
            needed = self.base_ms + self.frames * slow
            if needed >= wanted + self.step_ms:
                wanted = needed
            elif len(self._ticks) == self.window and needed <= wanted - self.shrink_ms and not self._late_seen:
                wanted = needed
        if self._late_ms:
            wanted = max(wanted, self.delay_ms + self._late_ms + self.step_ms)
        return min(wanted, self.max_ms)

    def at_silence(self, now_s: float) -> float | None:
        """Called when no note is sounding: the new D if it changes now (and adopt it), else None."""
        if now_s - self._last_change < self.min_interval_s or now_s - self._last_check < 0.25:
            return None
        self._last_check = now_s  # a quantile over the window costs tens of microseconds: 4 times a second at most
        wanted = self.proposal()
        self._late_ms = 0.0
        if self.delay_ms - self.shrink_ms < wanted < self.delay_ms + self.step_ms:
            return None
        self.delay_ms, self._last_change, self._late_seen = wanted, now_s, False
        self.changes += 1
        return wanted
