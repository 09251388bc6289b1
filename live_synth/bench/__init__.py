"""Benchmarks as commands (`live-synth bench latency | throughput`): end-to-end latency through JACK next to
FluidSynth, and per-engine throughput. Results go to JSON lines keyed by revision and machine; BENCHMARKS.md holds
the measured tables."""
