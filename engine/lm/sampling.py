"""Turning logits into codes: classifier-free guidance, temperature, top-k, top-p, seeded draws.

Guidance runs the conditional and the unconditional input as one batch of 2B; ``guide`` mixes their logits as
``uncond + scale * (cond - uncond)`` (scale 1 = no guidance). Draws use an explicit ``torch.Generator`` so the same
seed gives the same codes; temperature 0 means argmax.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class SamplingParams:
    temperature: float = 1.0
    top_k: int = 0  # 0 = off
    top_p: float = 1.0  # 1 = off
    guidance: float = 1.0
    bias: torch.Tensor | None = None  # [V] added to the (guided) logits before the temperature: a named key's pull

    def validate(self, name: str = "") -> SamplingParams:
        where = f" ({name})" if name else ""
        if not 0.0 <= self.temperature <= 5.0:
            raise ValueError(f"temperature{where} must be between 0 and 5, got {self.temperature}")
        if self.top_k < 0:
            raise ValueError(f"top-k{where} must be 0 (off) or positive, got {self.top_k}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top-p{where} must be in (0, 1], got {self.top_p}")
        if not 0.0 <= self.guidance <= 20.0:
            raise ValueError(f"guidance{where} must be between 0 and 20, got {self.guidance}")
        return self


def guide(logits: torch.Tensor, scale: float) -> torch.Tensor:
    """logits [2B, ...] (conditional first, then unconditional) -> [B, ...]."""
    cond, uncond = logits.chunk(2)
    return uncond + scale * (cond - uncond)


def sample(logits: torch.Tensor, p: SamplingParams, generator: torch.Generator) -> torch.Tensor:
    """logits [..., V] -> ids [...]."""
    shape = logits.shape[:-1]
    logits = logits.reshape(-1, logits.shape[-1]).float()
    if p.bias is not None:
        logits = logits + p.bias
    if p.temperature == 0:
        return logits.argmax(-1).view(shape)
    logits = logits / p.temperature
    if p.top_k and p.top_k < logits.shape[-1]:
        kth = logits.topk(p.top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if p.top_p < 1.0:
        srt, idx = logits.sort(-1, descending=True)
        cum = srt.softmax(-1).cumsum(-1)
        drop = cum - srt.softmax(-1) > p.top_p  # keep the smallest prefix whose mass reaches top_p
        logits = logits.scatter(-1, idx, srt.masked_fill(drop, float("-inf")))
    # inverse CDF with one uniform draw per row: exact, and ~10x cheaper than torch.multinomial on [4, 1024] rows
    # (multinomial was 10% of a whole generation's time)
    cdf = logits.softmax(-1).cumsum(-1)
    u = torch.rand(cdf.shape[0], 1, generator=generator) * cdf[:, -1:]
    return (cdf < u).sum(-1).clamp_(max=cdf.shape[-1] - 1).view(shape)
