"""Benchmarks: speed and success figures recorded in BENCHMARKS.md (never timed tests)."""
