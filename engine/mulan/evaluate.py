"""MuLan's measured targets, on embeddings already computed for a split.

- ``retrieval``: text-to-audio recall@10: each clip's first caption ranks all ``n`` audio clips; a hit when its own
  clip is among the top 10 (chance: 10 / n).
- ``zero_shot``: tags read from audio by the nearest text prompt, where the prompts use wordings no training caption
  uses (``PROBES``; training captions come from ``engine.data.captions.make_caption``). Style: "Music in the style of
  <style phrase>."; main-instrument family: the best of "The melody is performed on <instrument>." over the family's
  instruments; tempo bucket: "A recording whose speed is <tempo word>."; mode: "This music is written in a <mode>
  tonality." A class's score is the max over its prompts.
- ``token_fidelity``: mean cosine between text embeddings and their 12-token RVQ reconstruction.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch
import torch.nn.functional as F

from ..data.captions import TEMPO_WORDS
from ..data.instruments import INSTRUMENTS
from ..data.styles import STYLES


def probes() -> dict[str, dict[str, list[str]]]:
    """{tag: {class: [prompts]}} with wordings absent from training captions."""
    families = defaultdict(list)
    for ins in INSTRUMENTS.values():
        if ins.family not in ("drums", "percussion"):
            families[ins.family].append(f"The melody is performed on {ins.name}.")
    return {
        "style": {s: [f"Music in the style of {p}." for p in st.caption] for s, st in STYLES.items()},
        "family": dict(families),
        "tempo_bucket": {b: [f"A recording whose speed is {w}." for w in words] for b, words in TEMPO_WORDS.items()},
        "mode": {m: [f"This music is written in a {m} tonality."] for m in ("major", "minor")},
    }


def true_tag(tags: dict, tag: str) -> str:
    if tag == "family":
        return INSTRUMENTS[tags["programs"]["lead"]].family
    if tag == "drums":
        return "none" if tags["programs"].get("drums") is None else "drums"
    return tags[tag]


def retrieval(text: torch.Tensor, audio: torch.Tensor, k: int = 10) -> float:
    """text, audio: [N, D] unit vectors, row i of each from clip i -> recall@k."""
    sims = text @ audio.t()
    rank = (sims > sims.diag()[:, None]).sum(1)
    return float((rank < k).float().mean())


def zero_shot(model, audio: torch.Tensor, tags: list[dict]) -> dict[str, float]:
    """audio [N, D] embeddings of clips with known tags -> accuracy per tag."""
    out = {}
    for tag, classes in probes().items():
        names = list(classes)
        prompts = [p for c in names for p in classes[c]]
        owner = torch.tensor([i for i, c in enumerate(names) for _ in classes[c]])
        t = model.embed_text(prompts)
        sims = audio @ t.t()  # [N, P]
        per_class = torch.full((len(audio), len(names)), -2.0).scatter_reduce(1, owner.expand(len(audio), -1), sims,
                                                                              "amax")
        pred = per_class.argmax(1)
        truth = [true_tag(tg, tag) for tg in tags]
        keep = [i for i, tr in enumerate(truth) if tr in names]
        out[tag] = float(np.mean([names[int(pred[i])] == truth[i] for i in keep]))
    return out


def token_fidelity(model, text: torch.Tensor) -> float:
    rec = model.detokenize(model.tokens(text))
    return float(F.cosine_similarity(rec, text, dim=-1).mean())
