"""Benchmarks: `python -m bench.NAME`; each prints one JSON line last."""
