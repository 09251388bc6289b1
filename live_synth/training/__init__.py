"""Training data, loops and metrics for the project's own models (never imported at run time)."""
