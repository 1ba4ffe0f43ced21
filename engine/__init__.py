"""Cantus engine: corpus, tokenizers, models, sampling. Never imports the app."""
