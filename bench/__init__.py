"""Benchmarks: each prints its figures.  Run them all with `make bench` (or `python -m bench`)."""
