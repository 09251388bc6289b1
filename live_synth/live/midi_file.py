"""`play --midi-file`: a MIDI file played into the live path in real time, as if a keyboard were sending it.

It needs no thread: the generation worker polls `drain()`, which returns the events that have come due on the
session clock, stamped with the time they were due (the same (time, raw message) pairs the rtmidi input gives).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import mido

from live_synth.errors import MidiError

_USED = {"note_on", "note_off", "control_change", "program_change", "pitchwheel"}


def midi_file_events(path: str | Path) -> list[tuple[float, list[int]]]:
    """(seconds from the start, raw message bytes) for every channel message the synth uses, in file order."""
    try:
        midi = mido.MidiFile(str(path))
        events, now = [], 0.0
        for message in midi:  # merged tracks, tempo map applied, delta times in seconds
            now += message.time
            if message.type in _USED:
                events.append((now, list(message.bytes())))
    except FileNotFoundError:
        raise MidiError(f"{path}: no such file") from None
    except (OSError, EOFError, ValueError, KeyError, IndexError, TypeError) as exc:
        raise MidiError(f"{path}: not a readable MIDI file ({type(exc).__name__}: {exc})") from None
    if not any(m[0] & 0xF0 == 0x90 and m[2] > 0 for _, m in events):
        raise MidiError(f"{path}: contains no notes")
    return events


class MidiFileSource:
    def __init__(self, path: str | Path, clock: Callable[[], float] = time.monotonic, speed: float = 1.0):
        self.events = midi_file_events(path)
        self.clock, self.speed = clock, speed
        self.start: float | None = None
        self.next = 0

    @property
    def duration(self) -> float:
        return self.events[-1][0] / self.speed if self.events else 0.0

    @property
    def received(self) -> int:
        """Events delivered so far (the same counter a port input keeps)."""
        return self.next

    @property
    def finished(self) -> bool:
        return self.next >= len(self.events)

    wake_fd = None  # nothing arrives unannounced: the worker sleeps until `next_due`

    def next_due(self) -> float | None:
        """Clock time of the next event (None once all were delivered, or before the first `drain`)."""
        if self.start is None or self.finished:
            return None
        return self.start + self.events[self.next][0] / self.speed

    def drain(self) -> list[tuple[float, list[int]]]:
        now = self.clock()
        if self.start is None:
            self.start = now
        due = []
        while self.next < len(self.events) and self.start + self.events[self.next][0] / self.speed <= now:
            t, message = self.events[self.next]
            due.append((self.start + t / self.speed, message))
            self.next += 1
        return due
