"""k-means codebooks: one level (semantic tokens) or residual levels (MuLan's 12 conditioning tokens).

``kmeans`` is plain Lloyd's algorithm with k-means++-style seeding from a random subset, run in float32 torch in
chunks so 10^5-10^6 points x 1024 centroids fit in memory; an empty cluster is re-seeded on the point farthest
from its centroid. ``ResidualKMeans`` fits level k on the residuals left by levels < k (the RVQ of SoundStream,
fitted offline instead of learned by gradient: the embeddings it quantises are frozen before it is fitted).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .weights import load_weights, save_weights


def nearest(x: torch.Tensor, c: torch.Tensor, chunk: int = 16384) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest centroid of each row of x [N, D] among c [K, D] -> (ids [N], squared distances [N])."""
    ids, dists = [], []
    cn = c.pow(2).sum(1)
    for i in range(0, len(x), chunk):
        xb = x[i:i + chunk]
        d = xb.pow(2).sum(1, keepdim=True) - 2 * xb @ c.t() + cn[None]
        m, j = d.min(1)
        ids.append(j)
        dists.append(m.clamp_min(0))
    return torch.cat(ids), torch.cat(dists)


def kmeans(x: torch.Tensor, k: int, iters: int = 25, seed: int = 0) -> torch.Tensor:
    """Centroids [k, D] of x [N, D] (float32). With N <= k every point becomes a centroid (padded by copies)."""
    x = x.float()
    g = torch.Generator().manual_seed(seed)
    if len(x) <= k:
        return x[torch.arange(k) % len(x)].clone()
    # seeding: greedy farthest-point on a subsample (cheap k-means++), then Lloyd iterations on everything
    sub = x[torch.randperm(len(x), generator=g)[: min(len(x), 20 * k)]]
    c = sub[torch.randint(len(sub), (1,), generator=g)]
    d = (sub - c).pow(2).sum(1)
    picks = [int(torch.multinomial(d / d.sum(), 1, generator=g))]
    c = sub[picks]
    d = (sub - c[0]).pow(2).sum(1)
    batch = max(1, k // 16)  # add centroids a batch at a time (sampled by distance) to keep seeding O(k/batch)
    while len(c) < k:
        n = min(batch, k - len(c))
        new = torch.multinomial(d / d.sum() if d.sum() > 0 else torch.ones_like(d), n, replacement=False, generator=g)
        c = torch.cat([c, sub[new]])
        d = torch.minimum(d, nearest(sub, sub[new])[1])
    for _ in range(iters):
        ids, dist = nearest(x, c)
        sums = torch.zeros_like(c).index_add_(0, ids, x)
        counts = torch.bincount(ids, minlength=k).float()
        empty = counts == 0
        c = torch.where(empty[:, None], c, sums / counts.clamp_min(1)[:, None])
        if empty.any():  # re-seed empty clusters on the worst-fitted points
            far = dist.topk(int(empty.sum())).indices
            c[empty] = x[far]
    return c


class ResidualKMeans:
    """``levels`` codebooks of ``size`` centroids; ``encode`` [N, D] -> [N, levels], ``decode`` the reverse."""

    def __init__(self, codebooks: torch.Tensor):
        self.codebooks = codebooks.float()  # [L, K, D]

    @property
    def levels(self) -> int:
        return self.codebooks.shape[0]

    @property
    def size(self) -> int:
        return self.codebooks.shape[1]

    @classmethod
    def fit(cls, x: torch.Tensor, levels: int, size: int, iters: int = 20, seed: int = 0,
            progress=None) -> ResidualKMeans:
        residual, books = x.float().clone(), []
        for level in range(levels):
            c = kmeans(residual, size, iters, seed + level)
            ids, _ = nearest(residual, c)
            residual = residual - c[ids]
            books.append(c)
            if progress:
                progress(level, float(residual.pow(2).sum(1).mean()))
        return cls(torch.stack(books))

    def encode(self, x: torch.Tensor, levels: int | None = None) -> torch.Tensor:
        residual, out = x.float().clone(), []
        for c in self.codebooks[: levels or self.levels]:
            ids, _ = nearest(residual, c)
            residual = residual - c[ids]
            out.append(ids)
        return torch.stack(out, 1)

    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        return sum(self.codebooks[level][ids[:, level]] for level in range(ids.shape[1]))

    def save(self, path: str | Path, name: str) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        save_weights({"codebooks": self.codebooks}, path / f"{name}.safetensors")

    @classmethod
    def load(cls, path: str | Path, name: str) -> ResidualKMeans:
        return cls(load_weights(Path(path) / f"{name}.safetensors")["codebooks"])


def usage(ids: np.ndarray, size: int) -> dict:
    """Share of codes used and perplexity of a flat id array."""
    counts = np.bincount(np.asarray(ids).ravel(), minlength=size).astype(np.float64)
    p = counts / max(1.0, counts.sum())
    nz = p[p > 0]
    return {"used": float((counts > 0).mean()), "perplexity": float(np.exp(-(nz * np.log(nz)).sum()))}


__all__ = ["ResidualKMeans", "kmeans", "usage"]
