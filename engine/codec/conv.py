"""Causal convolution blocks with explicit streaming state.

Every block has ``forward(x)`` for whole signals (left zero padding, so output t sees inputs <= t) and
``step(x, state) -> (y, state)`` for chunks, where ``state`` holds exactly the past the block needs. Starting from
``init_state`` (zeros) and stepping through a signal in chunks gives the same output as ``forward`` on all of it.
States are plain tensors so the streaming decoder exports to ONNX with states as inputs and outputs.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm


class CausalConv1d(nn.Module):
    """Conv1d padded on the left by (k-1)*dilation; streaming keeps that many past input samples."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, dilation: int = 1):
        super().__init__()
        self.conv = weight_norm(nn.Conv1d(cin, cout, kernel, stride=stride, dilation=dilation))
        self.stride = stride
        self.context = (kernel - 1) * dilation + 1 - stride  # left padding so T_out = T_in / stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [B, C, T]
        return self.conv(nn.functional.pad(x, (self.context, 0)))

    def init_state(self, batch: int, device=None) -> torch.Tensor:
        return torch.zeros(batch, self.conv.in_channels, self.context, device=device)

    def step(self, x: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        assert self.stride == 1, "streaming is for stride-1 convolutions"
        full = torch.cat([state, x], dim=-1)
        return self.conv(full), full[..., full.shape[-1] - self.context:]


class CausalConvTranspose1d(nn.Module):
    """Upsampling by ``stride`` with kernel 2*stride; streaming overlap-adds the last ``stride`` output samples."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv = weight_norm(nn.ConvTranspose1d(cin, cout, 2 * stride, stride=stride, bias=False))
        self.bias = nn.Parameter(torch.zeros(cout))
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)[..., : x.shape[-1] * self.stride]  # drop the tail that belongs to the future
        return y + self.bias[:, None]

    def init_state(self, batch: int, device=None) -> torch.Tensor:
        return torch.zeros(batch, self.conv.out_channels, self.stride, device=device)

    def step(self, x: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.conv(x)  # [B, C, T*s + s]
        n = x.shape[-1] * self.stride
        head = torch.cat([y[..., : self.stride] + state, y[..., self.stride:n]], dim=-1)
        return head + self.bias[:, None], y[..., n:]


class ResUnit(nn.Module):
    """ELU -> dilated causal conv (k=7, C -> C/2) -> ELU -> 1x1 conv (C/2 -> C), plus the input."""

    def __init__(self, channels: int, dilation: int):
        super().__init__()
        self.conv1 = CausalConv1d(channels, channels // 2, 7, dilation=dilation)
        self.conv2 = CausalConv1d(channels // 2, channels, 1)
        self.act = nn.ELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.act(self.conv1(self.act(x))))

    def init_state(self, batch: int, device=None) -> list[torch.Tensor]:
        return [self.conv1.init_state(batch, device)]

    def step(self, x: torch.Tensor, state: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        h, s = self.conv1.step(self.act(x), state[0])
        return x + self.conv2(self.act(h)), [s]
