"""Metrics, evaluations and benchmarks."""
