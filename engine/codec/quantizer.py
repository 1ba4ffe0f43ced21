"""Residual vector quantizer with EMA codebooks, k-means initialisation, dead-code restart and quantizer dropout.

Level k quantizes the residual left by levels < k. Codebooks are not trained by gradient: each keeps an
exponential moving average of the vectors assigned to its codes (SoundStream / EnCodec). A code that has gone
unused (EMA count below ``dead_threshold``) is restarted on a random residual from the current batch, which keeps
every codebook fully used. The encoder gets the straight-through gradient and a commitment loss.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class QuantizedResult:
    quantized: torch.Tensor  # [B, D, T] sum of the selected levels' code vectors (straight-through in training)
    codes: torch.Tensor  # [B, K, T] int64
    commit_loss: torch.Tensor  # scalar
    n_q: torch.Tensor  # [B] levels used per item (quantizer dropout)


def _kmeans(x: torch.Tensor, k: int, iters: int = 10) -> torch.Tensor:
    """k-means on rows of x [N, D]; samples with replacement when N < k."""
    if x.shape[0] < k:  # fewer vectors than codes: duplicates, nudged apart
        centres = x[torch.randint(0, x.shape[0], (k,), device=x.device)]
        centres = centres + 0.01 * x.std(0) * torch.randn_like(centres)
    else:
        centres = x[torch.randperm(x.shape[0], device=x.device)[:k]].clone()
    for _ in range(iters):
        assign = torch.cdist(x, centres).argmin(1)
        sums = torch.zeros_like(centres).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=k).float()
        filled = counts > 0
        centres[filled] = sums[filled] / counts[filled, None]
    return centres


class EMACodebook(nn.Module):
    def __init__(self, dim: int, size: int, decay: float = 0.99, dead_fraction: float = 0.03):
        super().__init__()
        # a code is dead when its EMA count falls below this fraction of a uniformly used code's count; relative,
        # because with CPU-sized batches (400 frames for 1024 codes) an absolute threshold of 1 kills every code
        self.decay, self.dead_fraction, self.size = decay, dead_fraction, size
        self.register_buffer("embed", torch.randn(size, dim) * 0.01)
        self.register_buffer("embed_avg", self.embed.clone())
        self.register_buffer("cluster_size", torch.ones(size))
        self.register_buffer("initialised", torch.tensor(False))

    def nearest(self, x: torch.Tensor) -> torch.Tensor:  # x: [N, D] -> [N]
        d = (x.pow(2).sum(1, keepdim=True) - 2 * x @ self.embed.t() + self.embed.pow(2).sum(1)[None])
        return d.argmin(1)

    @torch.no_grad()
    def update(self, x: torch.Tensor, codes: torch.Tensor) -> None:
        if not bool(self.initialised):
            c = _kmeans(x, self.size)
            self.embed.copy_(c)
            self.embed_avg.copy_(c * (x.shape[0] / self.size))
            self.cluster_size.fill_(x.shape[0] / self.size)
            self.initialised.fill_(True)
            return
        onehot_counts = torch.bincount(codes, minlength=self.size).float()
        sums = torch.zeros_like(self.embed).index_add_(0, codes, x)
        self.cluster_size.mul_(self.decay).add_(onehot_counts, alpha=1 - self.decay)
        self.embed_avg.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        n = self.cluster_size.sum()
        smoothed = (self.cluster_size + 1e-5) / (n + self.size * 1e-5) * n
        self.embed.copy_(self.embed_avg / smoothed[:, None])
        expected = x.shape[0] / self.size
        dead = self.cluster_size < self.dead_fraction * expected
        if dead.any():
            pick = x[torch.randint(0, x.shape[0], (int(dead.sum()),), device=x.device)]
            self.embed[dead] = pick
            self.embed_avg[dead] = pick * expected
            self.cluster_size[dead] = expected


class ResidualVQ(nn.Module):
    def __init__(self, dim: int = 128, n_q: int = 8, codebook_size: int = 1024, decay: float = 0.99,
                 dropout_p: float = 0.5):
        super().__init__()
        self.levels = nn.ModuleList(EMACodebook(dim, codebook_size, decay) for _ in range(n_q))
        self.n_q, self.codebook_size, self.dropout_p = n_q, codebook_size, dropout_p

    def forward(self, z: torch.Tensor, n_q: int | None = None) -> QuantizedResult:
        """z: [B, D, T]. In training, each item uses a random number of levels with probability dropout_p."""
        B, D, T = z.shape
        n_q = n_q or self.n_q
        if self.training and self.dropout_p > 0:
            drop = torch.rand(B, device=z.device) < self.dropout_p
            per_item = torch.where(drop, torch.randint(1, n_q + 1, (B,), device=z.device), torch.full((B,), n_q, device=z.device))
        else:
            per_item = torch.full((B,), n_q, device=z.device)
        x = z.permute(0, 2, 1).reshape(B * T, D)
        residual, quantized = x, torch.zeros_like(x)
        codes, commit = [], z.new_zeros(())
        for k, cb in enumerate(self.levels[:n_q]):
            idx = cb.nearest(residual.detach())
            if self.training:
                cb.update(residual.detach(), idx)
            q = cb.embed[idx]
            active = (per_item > k).repeat_interleave(T)[:, None].float()
            commit = commit + F.mse_loss(residual * active, q.detach() * active)
            quantized = quantized + q * active
            residual = residual - q * active
            codes.append(idx.view(B, T))
        quantized = x + (quantized - x).detach()  # straight-through estimator
        return QuantizedResult(quantized.view(B, T, D).permute(0, 2, 1), torch.stack(codes, 1), commit, per_item)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes: [B, K, T] (K <= n_q) -> [B, D, T]."""
        out = 0
        for k in range(codes.shape[1]):
            out = out + self.levels[k].embed[codes[:, k]]  # [B, T, D]
        return out.permute(0, 2, 1)
