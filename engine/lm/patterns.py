"""MusicGen's delay pattern: K parallel codebooks, codebook k shifted right by k steps, so one transformer step
predicts all K codes (codebook k at frame t - k) and every code still sees the lower codebooks of its own frame.
T frames take T + K - 1 steps instead of K * T when flattened (measured cost per step is the same).

Pure functions on tensors; ``pad`` fills the positions with no code (the start and end triangles).
"""
from __future__ import annotations

import torch


def delay(codes: torch.Tensor, pad: int) -> torch.Tensor:
    """codes [B, K, T] -> [B, K, T + K - 1] with out[:, k, t] = codes[:, k, t - k] where 0 <= t - k < T, else pad."""
    B, K, T = codes.shape
    out = codes.new_full((B, K, T + K - 1), pad)
    for k in range(K):
        out[:, k, k:k + T] = codes[:, k]
    return out


def undelay(delayed: torch.Tensor) -> torch.Tensor:
    """[B, K, S] -> codes [B, K, S - K + 1]: the inverse of ``delay``."""
    _B, K, S = delayed.shape
    T = S - K + 1
    return torch.stack([delayed[:, k, k:k + T] for k in range(K)], 1)


def valid_mask(K: int, T: int) -> torch.Tensor:
    """[K, T + K - 1] bool: True where the delayed layout holds a real code."""
    s = torch.arange(T + K - 1)[None]
    k = torch.arange(K)[:, None]
    return (s >= k) & (s < k + T)


def frame_of(step: int, k: int) -> int:
    """Frame whose codebook-k code is produced at ``step`` (negative or >= T outside the valid region)."""
    return step - k
