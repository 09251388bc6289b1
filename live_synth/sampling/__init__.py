"""Samplers and noise schedules (spec §4), independent of the networks."""
