"""MIDI in, notes-encoder tokens out (spec §2): reading, sustain, the MT3 event codec and segment tokenization.

Token-identical to diffusers' `MidiProcessor` for the published model, without importing note_seq or diffusers.
"""

from live_synth.midi.codec import (
    EOS_ID,
    PAD_ID,
    SLAKH_CLASS_PROGRAMS,
    UNK_ID,
    EventCodec,
    program_to_slakh_program,
    velocity_to_bin,
)
from live_synth.midi.notes import ControlChange, Note, NoteSequence, PitchBend, apply_sustain, read_midi
from live_synth.midi.tokenize import TokenizedSong, TokenizerConfig, tokenize, tokenize_midi

__all__ = [
    "EOS_ID",
    "PAD_ID",
    "SLAKH_CLASS_PROGRAMS",
    "UNK_ID",
    "ControlChange",
    "EventCodec",
    "Note",
    "NoteSequence",
    "PitchBend",
    "TokenizedSong",
    "TokenizerConfig",
    "apply_sustain",
    "program_to_slakh_program",
    "read_midi",
    "tokenize",
    "tokenize_midi",
    "velocity_to_bin",
]
