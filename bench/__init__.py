"""Benchmarks for sigverify; results are written down in bench/RESULTS.md."""
