"""Live MIDI input with python-rtmidi: timestamp at arrival, a bounded queue, drops counted (architecture.md).

Threads:
- rtmidi's thread (with JACK it is the JACK process thread of our MIDI client) runs `_on_message` only: it
  timestamps the message, stores it in a preallocated slot and bumps counters. It never logs, waits or locks; it
  allocates nothing beyond what python-rtmidi already built (the message list, the clock's float).
- the generation worker calls `drain()` (the single consumer); the generation process's control loop
  (`live/generation.py`, `poll`) calls `is_alive()` about once a second;
- the control thread constructs, `open()`s and `close()`s.

The queue is a single-producer single-consumer ring of Python object slots. Under CPython's GIL a slot store and an
index store are each atomic, and each side stores its slot before it publishes its index, so no lock is needed.

Drop policy (the queue is full: the worker stalled, or a flood arrives faster than ticks drain it):
- the NEWEST message is dropped and counted, never the oldest: what is queued already arrived in order, and a
  queue that keeps its head can be replayed exactly.
- messages fall in two classes. *Priority* messages end sound or set persistent state: note-off, note-on with
  velocity 0, sustain pedal up (CC64 < 64), CC120..127 (all sound off, reset controllers, all notes off, mode
  changes, which imply all notes off) and program change. *Normal* messages are everything else (note-on, other
  controllers, pitch bend, aftertouch). The last `reserve` slots are kept for priority messages, so a flood of
  note-ons cannot crowd out the note-offs that end them. A dropped note-on only leaves a stray note-off behind,
  which the note state ignores.
- if even a release (note-off, pedal up, CC120..127) must be dropped, a note could hang forever. The final slot of
  the queue is kept for a recovery marker: the first lost release puts it there, at the exact place in the stream
  where the release was lost. `drain()` expands it into "sustain pedal up + all notes off" (CC64 = 0, CC123) on all
  16 channels, timestamped like the lost release. So a flood never leaves a stuck note; the price is that keys held
  through the overflow are released early. `lost_releases` counts these events.

Wake-up: every queued message also writes one byte into a non-blocking pipe (`wake_fd`), so the worker, which waits
on that pipe with `select` between ticks, sees a note the moment it arrives instead of at its next poll. A full
pipe means a wake-up is pending already, and the byte is skipped.

Port vanish: rtmidi has no disconnect callback, so `is_alive()` looks the opened source port up by name; the
generation process's `poll` asks about once a second and, when the port is gone, logs one line, releases every
sounding note and plays on.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from live_synth.errors import LiveSynthError, MissingDependencyError

log = logging.getLogger(__name__)

VIRTUAL = "virtual"
CLIENT_NAME = "live-synth"  # our rtmidi client, and the name of the virtual port a DAW connects to
MIDI_APIS = {  # --midi-api value -> rtmidi constant name
    "jack": "API_UNIX_JACK",
    "alsa": "API_LINUX_ALSA",
    "coremidi": "API_MACOSX_CORE",
    "windows": "API_WINDOWS_MM",
}

# A recovery marker in the queue (see the module docstring); never handed to the worker as such.
_RECOVER = ("live-synth: lost release",)


def _rtmidi():
    try:
        import rtmidi
    except ImportError as error:  # pragma: no cover - rtmidi is a core dependency
        raise MissingDependencyError("live MIDI input needs python-rtmidi: pip install python-rtmidi") from error
    return rtmidi


def default_midi_api() -> str:
    """The platform's usual MIDI API: ALSA on Linux, CoreMIDI on macOS, Windows MM on Windows, JACK elsewhere."""
    if sys.platform.startswith("linux"):
        return "alsa"
    if sys.platform == "darwin":
        return "coremidi"
    if sys.platform == "win32":
        return "windows"
    return "jack"


def jack_server_running() -> bool:
    """Whether a JACK server answers (the one JACK_DEFAULT_SERVER names, else the default). Never starts one."""
    try:
        import jack
    except (ImportError, OSError):  # JACK-Client or libjack missing
        return False
    jack.set_error_function(lambda message: None)  # "cannot connect to server" is the answer, not an error
    try:
        client = jack.Client(f"{CLIENT_NAME}-probe", no_start_server=True)
    except jack.JackError:
        return False
    finally:
        jack.set_error_function(None)
    client.close()
    return True


def _open_rtmidi(api: str | None, client_name: str):
    """(rtmidi.MidiIn, api name): the chosen API, or the platform default with a JACK fallback."""
    rtmidi = _rtmidi()
    chosen = api or default_midi_api()
    if chosen not in MIDI_APIS:
        raise LiveSynthError(f"unknown MIDI API {chosen!r}; choose one of {', '.join(MIDI_APIS)}")
    constant = getattr(rtmidi, MIDI_APIS[chosen])
    try:
        if constant not in rtmidi.get_compiled_api():
            raise LiveSynthError(f"this python-rtmidi build has no {chosen} MIDI support")
        if chosen == "jack" and not jack_server_running():
            raise LiveSynthError("no JACK server is running: start one (jackd -d dummy) or choose another --midi-api")
        return rtmidi.MidiIn(constant, client_name), chosen
    except (LiveSynthError, rtmidi.RtMidiError) as error:
        if api is None and chosen != "jack" and jack_server_running():
            log.warning("MIDI: %s input failed (%s); falling back to JACK MIDI", chosen, _first_line(error))
            return rtmidi.MidiIn(rtmidi.API_UNIX_JACK, client_name), "jack"
        if isinstance(error, LiveSynthError):
            raise
        raise LiveSynthError(_hint(chosen, error)) from error


def _hint(api: str, error: Exception) -> str:
    if api == "alsa":
        return "no ALSA sequencer (/dev/snd missing?): start a JACK server or pass --midi-api jack"
    return f"cannot open {api} MIDI ({_first_line(error)}): try another --midi-api, e.g. jack with a JACK server"


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def list_ports(api: str | None = None) -> list[str]:
    """MIDI sources that `MidiInput.open` can connect to (names as the API spells them; JACK: "client:port")."""
    midi_in, _ = _open_rtmidi(api, f"{CLIENT_NAME}-list")
    try:
        return list(midi_in.get_ports())
    finally:
        midi_in.delete()


def is_release(message) -> bool:
    """Note-off, note-on with velocity 0, sustain pedal up, or CC120..127 (ends sound)."""
    if len(message) < 3:
        return False
    status = message[0] & 0xF0
    return (
        status == 0x80
        or (status == 0x90 and message[2] == 0)
        or (status == 0xB0 and (message[1] >= 120 or (message[1] == 64 and message[2] < 64)))
    )


def recovery_messages() -> list[list[int]]:
    """What a recovery marker expands to: sustain pedal up and all notes off, on every channel."""
    return [[0xB0 | ch, cc, 0] for ch in range(16) for cc in (64, 123)]


@dataclass(frozen=True)
class MidiStats:
    received: int  # queued for the worker
    dropped: int  # arrived but not queued (queue full); received + dropped = messages rtmidi delivered
    lost_releases: int  # dropped releases, each covered by an all-notes-off recovery
    high_water: int  # most slots ever in use (recovery marker included); never above capacity
    capacity: int


class MidiQueue:
    """The bounded single-producer single-consumer queue of timestamped MIDI messages behind every live source
    (policy: module docstring): `MidiInput` (rtmidi) and the web page's inbox (`live_synth.web.link`) share it, so
    a flood from either is dropped, kept and recovered the same way."""

    def __init__(self, *, capacity: int = 4096, reserve: int | None = None,
                 clock: Callable[[], float] = time.monotonic):
        reserve = max(capacity // 4, 2) if reserve is None else reserve
        if capacity < 4 or not 2 <= reserve < capacity:
            raise ValueError(f"need capacity >= 4 and 2 <= reserve < capacity, got {capacity}, {reserve}")
        self.capacity = capacity
        self._normal_limit = capacity - reserve  # normal messages while fill < this
        self._priority_limit = capacity - 1  # priority messages while fill < this; the last slot: recovery marker
        self._times: list[float] = [0.0] * capacity
        self._messages: list = [None] * capacity
        self._write = 0  # producer-owned; messages ever queued (marker included)
        self._read = 0  # consumer-owned
        self._received = self._dropped = self._lost_releases = self._high_water = 0
        self._clock = clock
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)

    # -- the producer thread only (rtmidi's, or the page's inbox) ---------------------------------------------------
    def push(self, t: float, message) -> None:
        """Enqueue `message` that arrived at `t`; drop the newest when full (policy: module docstring). Nothing
        else. One producer thread per queue."""
        write = self._write
        fill = write - self._read
        if fill < self._normal_limit or (fill < self._priority_limit and _is_priority(message)):
            slot = write % self.capacity
            self._times[slot] = t
            self._messages[slot] = message
            self._write = write + 1  # publish after the slot is filled
            self._received += 1
            if fill >= self._high_water:
                self._high_water = fill + 1
            self._wake()
            return
        self._dropped += 1
        if is_release(message):
            self._lost_releases += 1
            if fill < self.capacity:  # the last slot is free: place the recovery marker here, once
                slot = write % self.capacity
                self._times[slot] = t
                self._messages[slot] = _RECOVER
                self._write = write + 1
                self._high_water = self.capacity
                self._wake()

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"\x01")
        except (BlockingIOError, OSError):  # a wake-up is pending already (or the input is closing)
            pass

    # -- worker thread ----------------------------------------------------------------------------------------------
    @property
    def wake_fd(self) -> int:
        """A file descriptor that becomes readable when a message is queued (`select` on it; `drain` clears it)."""
        return self._wake_r

    def next_due(self) -> float | None:
        """A live port has no schedule: None (the worker waits on `wake_fd`)."""
        return None

    def drain(self) -> list[tuple[float, list[int]]]:
        """Every queued (arrival time, raw message) in arrival order; recovery markers expanded (see module doc)."""
        try:
            while os.read(self._wake_r, 4096):
                pass
        except (BlockingIOError, OSError):
            pass
        read, write = self._read, self._write
        out: list[tuple[float, list[int]]] = []
        for k in range(read, write):
            slot = k % self.capacity
            t, message = self._times[slot], self._messages[slot]
            self._messages[slot] = None  # let the message go; the producer cannot reuse the slot before we publish
            if message is _RECOVER:
                out.extend((t, m) for m in recovery_messages())
            else:
                out.append((t, message))
        self._read = write  # publish: the slots are free again
        return out

    # -- any thread: counters ---------------------------------------------------------------------------------------
    def pending(self) -> int:
        """Slots in use now (messages queued and not yet drained, a recovery marker included)."""
        return self._write - self._read

    @property
    def received(self) -> int:
        return self._received

    @property
    def dropped(self) -> int:
        return self._dropped

    @property
    def lost_releases(self) -> int:
        return self._lost_releases

    def stats(self) -> MidiStats:
        return MidiStats(self._received, self._dropped, self._lost_releases, self._high_water, self.capacity)

    def close_queue(self) -> None:
        """Close the wake-up pipe (after the producer has stopped)."""
        for fd in (self._wake_r, self._wake_w):
            os.close(fd)


class MidiInput(MidiQueue):
    """One MIDI source (or our virtual port) feeding a bounded queue. Use as a context manager or `close()`.

    `api`: "jack", "alsa", "coremidi", "windows", or None for the platform's usual API (falling back to JACK when
    that fails and a JACK server runs). `capacity` queue slots, of which the last `reserve` are kept for priority
    messages (default: a quarter). `clock` timestamps arrivals (time.monotonic, or the session clock).
    """

    def __init__(
        self,
        api: str | None = None,
        *,
        capacity: int = 4096,
        reserve: int | None = None,
        client_name: str = CLIENT_NAME,
        clock: Callable[[], float] = time.monotonic,
    ):
        super().__init__(capacity=capacity, reserve=reserve, clock=clock)
        self._midi_in, self.api = _open_rtmidi(api, client_name)
        self.port_name: str | None = None  # the source we connected to, or our virtual port's name
        self.virtual = False

    # -- control thread ---------------------------------------------------------------------------------------------
    def open(self, port: str | int = VIRTUAL) -> str:
        """Connect to a source by index, by (case-insensitive) name substring, or open our virtual port ("virtual",
        named "live-synth"). Returns the port's name. A port that does not exist is a LiveSynthError listing them."""
        if self.port_name is not None:
            raise RuntimeError("MidiInput is already open")
        midi_in = self._midi_in
        midi_in.ignore_types(sysex=True, timing=True, active_sense=True)
        midi_in.set_callback(self._on_message)
        rtmidi = _rtmidi()
        try:
            if port == VIRTUAL:
                midi_in.open_virtual_port(CLIENT_NAME)
                self.port_name, self.virtual = CLIENT_NAME, True
            else:
                index, name = self._resolve(port)
                midi_in.open_port(index, f"{CLIENT_NAME} in")
                self.port_name = name
        except (NotImplementedError, rtmidi.RtMidiError) as error:
            midi_in.cancel_callback()
            raise LiveSynthError(f"cannot open MIDI input {port!r} ({self.api}): {_first_line(error)}") from error
        return self.port_name

    def _resolve(self, port: str | int) -> tuple[int, str]:
        ports = list(self._midi_in.get_ports())
        listing = f"available ({self.api}): {ports}" if ports else f"no MIDI sources on {self.api}"
        if isinstance(port, int) or str(port).isdigit():
            index = int(port)
            if not 0 <= index < len(ports):
                raise LiveSynthError(f"no MIDI input number {index}; {listing}")
            return index, ports[index]
        exact = [i for i, name in enumerate(ports) if name == port]
        matches = exact or [i for i, name in enumerate(ports) if str(port).lower() in name.lower()]
        if len(matches) != 1:
            what = "no MIDI input matches" if not matches else "several MIDI inputs match"
            raise LiveSynthError(f"{what} {port!r}; {listing}")
        return matches[0], ports[matches[0]]

    def close(self) -> None:
        """Stop the callback and release the port and the rtmidi client. Safe to call twice."""
        if self._midi_in is None:
            return
        self._midi_in.cancel_callback()
        # A JACK (or ALSA) thread may be inside _on_message right now, waiting for the GIL that we hold. Closing the
        # port while holding it stalls the client close until JACK cancels that thread in the middle of taking the
        # GIL, which leaves the GIL's mutex locked and hangs the whole process (seen in a clean-clone test run).
        # Sleeping releases the GIL for longer than a few JACK periods, so an in-flight callback can finish; after
        # cancel_callback() no new one starts.
        time.sleep(0.05)
        self._midi_in.close_port()
        self._midi_in.delete()
        self._midi_in = None
        self.close_queue()

    def __enter__(self) -> MidiInput:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- rtmidi's thread only ---------------------------------------------------------------------------------------
    def _on_message(self, event, data=None) -> None:
        """Timestamp and enqueue (`push`). Nothing else."""
        self.push(self._clock(), event[0])

    def is_alive(self) -> bool:
        """Whether the source is still there (looked up by name). Our own virtual port cannot vanish: True while
        open. Call from the worker or the control thread, about once a second (it asks the MIDI API for ports)."""
        if self._midi_in is None or self.port_name is None:
            return False
        if self.virtual:
            return True
        return self.port_name in self._midi_in.get_ports()

def _is_priority(message) -> bool:
    return (message[0] & 0xF0) == 0xC0 or is_release(message)
