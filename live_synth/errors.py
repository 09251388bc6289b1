"""User-facing errors: the CLI prints these as one line and exits non-zero, with no traceback.

Raise `LiveSynthError` for problems a user can cause and fix (a bad MIDI file, a wrong model folder, a missing
optional package). Bugs stay ordinary exceptions so that they keep their tracebacks.
"""


class LiveSynthError(Exception):
    """A problem with the user's input or environment, explained in one line."""


class MidiError(LiveSynthError):
    """A MIDI file that cannot be read or holds nothing to play."""


class CheckpointError(LiveSynthError):
    """A model folder or weight file that is missing, incomplete or of the wrong shape."""


class MissingDependencyError(LiveSynthError):
    """An optional package that a chosen feature needs is not installed."""


class DeviceLostError(LiveSynthError):
    """The audio device went away while playing (the JACK server died, an interface was unplugged): `play` says so
    in one line and exits with status 1."""
