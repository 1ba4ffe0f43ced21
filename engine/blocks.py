"""The residual dilated conv block shared by MuLan's audio tower and the semantic encoder."""
from __future__ import annotations

import torch.nn.functional as F
from torch import nn


class DilatedResBlock(nn.Module):
    """x + [proj](conv(gelu(norm(x)))); ``proj`` adds a 1x1 conv after a GELU (MuLan's tower)."""

    def __init__(self, width: int, dilation: int, proj: bool = False):
        super().__init__()
        self.norm = nn.GroupNorm(8, width)
        self.conv = nn.Conv1d(width, width, 3, padding=dilation, dilation=dilation)
        if proj:
            self.proj = nn.Conv1d(width, width, 1)

    def forward(self, x):
        h = self.conv(F.gelu(self.norm(x)))
        return x + (self.proj(F.gelu(h)) if hasattr(self, "proj") else h)
