"""Which keys each semantic id belongs to: a key profile that steers the semantic stage towards a named key.

The tokenizer was trained to carry the tonic and mode in its ids, and it does: summing this table over a
validation clip's ids finds its key on 84% of clips (naive Bayes), more than an audio key finder reaches on the
rendered audio. The table is the pointwise mutual information of id and key over the tokenised train split,
``log P(key | id) - log P(key)``, add-one smoothed and clipped; two more columns hold the two modes (any tonic).
At generation a named key adds ``KEY_BIAS`` times its column to the semantic stage's logits (classifier guidance
with a per-token classifier), so the ids drawn are those of that key.
"""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors import safe_open

from ..weights import load_weights, save_weights

FILE = "keys.safetensors"
CLIP = 4.0  # nats: an id never seen in a key is discouraged, not forbidden


def key_id(tonic: int | None, mode: str) -> int:
    """A key's column in the profile: tonic (0-11 from C) + 12 for minor; 24 / 25: major / minor of any tonic (a
    prompt that names only the mode)."""
    minor = mode == "minor"
    return 24 + minor if tonic is None else int(tonic) % 12 + 12 * minor


def pmi(counts: torch.Tensor) -> torch.Tensor:
    """counts [V, C] of each token under each label -> ``log P(label | token) - log P(label)``, add-one smoothed and
    clipped to +-CLIP; a label never seen gets the floor (nothing in the data says which tokens are its)."""
    counts = counts.double()
    p_label = counts.sum(0) / counts.sum()
    p_label_token = (counts + 1) / (counts.sum(1, keepdim=True) + counts.shape[1])
    out = (p_label_token.log() - p_label.log()).clamp(-CLIP, CLIP)
    return out.masked_fill(p_label[None] == 0, -CLIP).float()


def fit_key_profile(ids: torch.Tensor, keys: torch.Tensor, vocab: int) -> torch.Tensor:
    """ids [N, T] semantic ids of N clips, keys [N] their key ids (tonic + 12 * minor) -> PMI table [vocab, 26]."""
    counts = torch.zeros(vocab, 24, dtype=torch.float64)
    for row, k in zip(ids.long(), keys.long()):
        counts[:, int(k)] += torch.bincount(row, minlength=vocab)[:vocab].double()
    modes = torch.stack([counts[:, :12].sum(1), counts[:, 12:].sum(1)], 1)
    return torch.cat([pmi(counts), pmi(modes)], 1)


def save_key_profile(table: torch.Tensor, directory: str | Path, version: str) -> Path:
    path = Path(directory) / FILE
    save_weights({"pmi": table.half()}, path, {"semantic": version})
    return path


def load_key_profile(directory: str | Path, version: str) -> torch.Tensor | None:
    """The table [vocab, 26] beside the semantic tokenizer ``version``; None when there is none, or when it was
    fitted on another tokenizer's ids (a retrained tokenizer's ids mean other things)."""
    path = Path(directory) / FILE
    if not path.exists():
        return None
    with safe_open(str(path), "pt") as f:
        if (f.metadata() or {}).get("semantic") != version:
            return None
    return load_weights(path)["pmi"]
