"""Benchmarks: ``python -m mistersmith.bench runtime``."""
