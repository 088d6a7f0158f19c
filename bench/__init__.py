"""Benchmarks and fault suites of syncd.

``python -m bench [--quick]`` runs the performance benchmarks of issue 5 (``bench/README.md``:
what each measures, the figures, how to rerun them) and prints one JSON line per benchmark;
``python -m bench.faults`` runs the fault scenarios. Load goes to 127.0.0.1 only.
"""
