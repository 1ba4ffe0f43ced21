"""The text-music training corpus: python -m engine.data.build."""
