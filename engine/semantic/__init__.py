"""Semantic tokens (25 Hz k-means ids over frame embeddings that carry melody, harmony and rhythm)."""
from .model import SemanticConfig, SemanticTokenizer

DEFAULT_DIR = "assets/semantic"

__all__ = ["DEFAULT_DIR", "SemanticConfig", "SemanticTokenizer"]
