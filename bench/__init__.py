"""Benchmarks and fault suites of syncd, run as ``python -m bench.<name>``."""
