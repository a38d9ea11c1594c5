"""Benchmarks of coplane."""
