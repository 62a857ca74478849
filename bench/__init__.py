"""Benchmarks of openrooms: `python -m bench` (or `make bench`) writes bench/results/report.{md,json}."""
