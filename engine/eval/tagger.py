"""An attribute tagger trained on real corpus audio: the evaluation's second embedding, independent of generation.

MusicLM scores generated audio with a classifier trained on real music (its KLD and a Fréchet distance on that
classifier's embedding). Ours: per-clip summary features (mean and standard deviation over time of the 136 spectral
bands of ``engine.spectral.frames``, plus the 199 tempogram/key features of ``global_features``), standardised, an
MLP with a 64-d embedding, and one softmax head per tag (style, lead instrument family, tempo bucket, mode). Nothing
in generation uses it. Trained full batch on the corpus train split in seconds; cached in ``runs/eval``.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from .. import spectral
from ..data.dataset import CorpusDataset
from ..mulan.evaluate import true_tag

TAGS = ("style", "family", "tempo_bucket", "mode")


def features(audio: np.ndarray) -> torch.Tensor:
    """24 kHz mono audio -> [471] summary features."""
    a = torch.from_numpy(np.asarray(audio, dtype=np.float32))[None]
    f = spectral.frames(a)[0]
    return torch.cat([f.mean(-1), f.std(-1), spectral.global_features(a)[0]])


class Tagger(nn.Module):
    def __init__(self, classes: dict[str, list[str]], n_in: int = 471, dim: int = 64):
        super().__init__()
        self.classes = classes
        self.register_buffer("mu", torch.zeros(n_in))
        self.register_buffer("sd", torch.ones(n_in))
        self.body = nn.Sequential(nn.Linear(n_in, 256), nn.GELU(), nn.Dropout(0.2), nn.Linear(256, dim), nn.GELU())
        self.heads = nn.ModuleDict({t: nn.Linear(dim, len(c)) for t, c in classes.items()})

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.body((x - self.mu) / self.sd)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        e = self.embed(x)
        return {t: h(e) for t, h in self.heads.items()}

    @torch.inference_mode()
    def probs(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        self.eval()
        return {t: v.softmax(-1) for t, v in self(x).items()}


def split_features(corpus: Path, split: str, cache: Path) -> tuple[torch.Tensor, list[dict]]:
    """Features and tags of every clip of a split, cached by the split index's content."""
    index = (Path(corpus) / f"{split}.jsonl").read_bytes()
    path = cache / f"tagger-features-{split}-{hashlib.sha256(index).hexdigest()[:12]}.pt"
    if path.exists():
        d = torch.load(path)
        return d["x"], d["tags"]
    ds = CorpusDataset(corpus, split)
    xs, tags = [], []
    for i in tqdm(range(len(ds)), desc=f"tagger features ({split})"):
        ex = ds[i]
        xs.append(features(ex.audio))
        tags.append(ex.tags)
    x = torch.stack(xs)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")  # atomic: another bench process may be reading the cache
    torch.save({"x": x, "tags": tags}, tmp)
    os.replace(tmp, path)
    return x, tags


def labels(tags: list[dict], classes: dict[str, list[str]]) -> dict[str, torch.Tensor]:
    return {t: torch.tensor([c.index(true_tag(tg, t)) if true_tag(tg, t) in c else -100 for tg in tags])
            for t, c in classes.items()}


def train(corpus: Path, cache: Path = Path("runs/eval"), epochs: int = 600, seed: int = 0,
          heads: tuple[str, ...] = TAGS) -> tuple[Tagger, dict]:
    """-> (tagger, accuracy per tag on the real test split). ``heads``: its tags (any tag ``true_tag`` reads, e.g.
    "drums"; the report's embedding is the one trained on ``TAGS``)."""
    x, tags = split_features(corpus, "train", cache)
    classes = {t: sorted({true_tag(tg, t) for tg in tags}) for t in heads}
    y = labels(tags, classes)
    torch.manual_seed(seed)
    model = Tagger(classes, x.shape[1])
    model.mu.copy_(x.mean(0))
    model.sd.copy_(x.std(0).clamp_min(1e-4))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-2)
    loss_fn = nn.CrossEntropyLoss(ignore_index=-100)
    model.train()
    for _ in range(epochs):
        out = model(x)
        loss = sum(loss_fn(out[t], y[t]) for t in heads)
        opt.zero_grad()
        loss.backward()
        opt.step()
    xt, tt = split_features(corpus, "test", cache)
    yt = labels(tt, classes)
    p = model.probs(xt)
    acc = {t: float((p[t].argmax(-1) == yt[t])[yt[t] >= 0].float().mean()) for t in heads}
    return model, acc
