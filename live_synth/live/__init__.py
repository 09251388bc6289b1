"""The live path: MIDI in, note state, rolling windows, generation worker, ring buffer, audio out."""
