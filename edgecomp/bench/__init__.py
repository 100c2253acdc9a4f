"""Latency measurement: each engine in its own worker process, rounds interleaved."""
