"""Training entry points: python -m engine.train.<model>."""
