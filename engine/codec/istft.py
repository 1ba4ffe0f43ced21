"""A Vocos-style decoder: frame-rate ConvNeXt blocks predict an STFT frame, an inverse DFT and overlap-add make audio.

Every layer runs at the 50 Hz frame rate (the transposed-convolution decoder runs its last stages at 12 and 24 kHz),
and the output is a sum of windowed sinusoids, so a harmonic can sit exactly on its frequency instead of being
assembled by upsampling filters. All convolutions are causal; frame t's window (n_fft = 4 hops) covers output samples
[t*hop, t*hop + n_fft), so an output block of one hop is complete once its frame has arrived and streaming needs no
lookahead. The price is a fixed delay: output audio lags the encoded audio by ``delay = n_fft - hop`` samples
(60 ms at 24 kHz), which training builds in (the loss compares the output with the input delayed by that much) and
``Codec.reconstruct`` removes for round trips.

The inverse DFT is two small matrix products (``InverseRDFT``: the same arithmetic in torch and ONNX, so parity is
exact up to float rounding); overlap-add is four shifted sums. Streaming state: the causal convolutions' past frames
and the three hops of overlap-add tail.

Semantic conditioning (``cond_vocab > 0``): the decoder also reads one semantic id per frame (the 25 Hz ids repeated
twice; ``cond_vocab`` = absent), embedded and added to its input layer's output. The RVQ codes of the shipped codec
lose much of the melody (measured: the dominant pitch class of real test audio matches its hummed tune on 41% of
frames, its codec round trip on 23%), while the semantic ids carry it (the generated ids follow a hum on 66% of
frames); the generator has the ids of every frame before it decodes, so the decoder may use them. The embedding starts
at zero: a conditioned decoder initialised from an unconditioned one starts as exactly that decoder. It holds no
state (one id per frame), so streaming is unchanged.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .conv import CausalConv1d


class _ChannelNorm(nn.Module):
    """LayerNorm over channels of [B, C, T] (per frame, so it streams)."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.transpose(1, 2)).transpose(1, 2)


class ConvNeXtBlock(nn.Module):
    """Causal depthwise conv (k=7) -> LayerNorm -> 1x1 expand (x3) -> GELU -> 1x1 project, scaled, plus the input."""

    def __init__(self, dim: int, kernel: int = 7):
        super().__init__()
        self.kernel = kernel
        self.dw = nn.Conv1d(dim, dim, kernel, groups=dim)
        self.norm = _ChannelNorm(dim)
        self.pw1 = nn.Conv1d(dim, 3 * dim, 1)
        self.pw2 = nn.Conv1d(3 * dim, dim, 1)
        self.scale = nn.Parameter(torch.full((dim, 1), 0.1))

    def _mix(self, h: torch.Tensor) -> torch.Tensor:
        return self.scale * self.pw2(nn.functional.gelu(self.pw1(self.norm(h))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.dw(nn.functional.pad(x, (self.kernel - 1, 0)))
        return x + self._mix(h)

    def init_state(self, batch: int, device=None) -> torch.Tensor:
        return torch.zeros(batch, self.dw.in_channels, self.kernel - 1, device=device)

    def step(self, x: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        full = torch.cat([state, x], dim=-1)
        return x + self._mix(self.dw(full)), full[..., full.shape[-1] - (self.kernel - 1):]


class InverseRDFT(nn.Module):
    """Hann-windowed inverse real DFT: one-sided spectra (re, im) [..., n_fft/2 + 1] -> frames [..., n_fft], i.e.
    ``irfft(re + i im, n_fft) * hann``, factored Cooley-Tukey style as n_fft = n1 x n2 into two small matrix products
    (about n1 + n2 multiply-adds per output sample instead of n_fft), so torch and ONNX run the same arithmetic.

    With k = n2 k1 + k2 and n = m1 + n1 m2: x[n] = Re sum_k2 e^{2 pi i k2 n / N} sum_k1 c[k] e^{2 pi i k1 m1 / n1},
    where c = re + i im, doubled except at DC and Nyquist: n2 DFTs of n1 points, a twiddle, n1 DFTs of n2 points.
    Measured on the shipped decoder (n_fft 1920 = 40 x 48, 500 frames, 2 threads, onnxruntime): the dense basis
    product took 20.6 ms of the 59 ms decode of 10 s."""

    def __init__(self, n_fft: int):
        super().__init__()
        n1 = min((d for d in range(1, n_fft + 1) if n_fft % d == 0), key=lambda d: abs(d * d - n_fft))
        n2 = n_fft // n1
        self.n_fft, self.n1, self.n2, self.bins = n_fft, n1, n2, n_fft // 2 + 1
        self.k1 = -(-self.bins // n2)  # rows of k1 holding a bin (the rest are zero)
        weight = torch.full((self.bins,), 2.0, dtype=torch.float64)
        weight[0] = weight[-1] = 1.0  # DC and Nyquist appear once in a real signal's spectrum
        ang1 = 2 * math.pi * torch.outer(torch.arange(self.k1, dtype=torch.float64), torch.arange(n1)) / n1
        # [re | im] over k1 -> [Re A | Im A] over m1, for each k2
        m1 = torch.cat([torch.cat([ang1.cos(), ang1.sin()], 1), torch.cat([-ang1.sin(), ang1.cos()], 1)], 0)
        tw = 2 * math.pi * torch.outer(torch.arange(n2, dtype=torch.float64), torch.arange(n1)) / n_fft  # [k2, m1]
        ang2 = 2 * math.pi * torch.outer(torch.arange(n2, dtype=torch.float64), torch.arange(n2)) / n2  # [k2, m2]
        m2 = torch.cat([ang2.cos(), -ang2.sin()], 0)  # (Re B | Im B) over k2 -> m2
        win = torch.hann_window(n_fft, periodic=True, dtype=torch.float64).reshape(n2, n1) / n_fft  # [m2, m1]
        self.register_buffer("weight", weight.float(), persistent=False)
        self.register_buffer("m1", m1.float(), persistent=False)
        self.register_buffer("twiddle", torch.stack([tw.cos(), tw.sin()]).float(), persistent=False)
        self.register_buffer("m2", m2.float(), persistent=False)
        self.register_buffer("window", win.float(), persistent=False)

    def forward(self, re: torch.Tensor, im: torch.Tensor) -> torch.Tensor:
        lead = re.shape[:-1]
        c = nn.functional.pad(torch.stack([re, im], -2) * self.weight, (0, self.k1 * self.n2 - self.bins))
        c = c.reshape(*lead, 2 * self.k1, self.n2).transpose(-1, -2)  # [..., k2, (re | im) over k1]
        a = (c @ self.m1).reshape(*lead, self.n2, 2, self.n1)  # [..., k2, re/im, m1]
        cos, sin = self.twiddle[0], self.twiddle[1]
        b_re = a[..., 0, :] * cos - a[..., 1, :] * sin  # B = A e^{2 pi i k2 m1 / N}: [..., k2, m1]
        b_im = a[..., 0, :] * sin + a[..., 1, :] * cos
        x = torch.cat([b_re, b_im], -2).transpose(-1, -2) @ self.m2  # [..., m1, m2]
        return (x.transpose(-1, -2) * self.window).reshape(*lead, self.n_fft)  # n = m1 + n1 m2


class ISTFTDecoder(nn.Module):
    """Latent [B, D, T] at the frame rate -> audio [B, 1, T * hop] delayed by ``n_fft - hop`` samples."""

    def __init__(self, latent_dim: int, hop: int, dim: int = 256, blocks: int = 6, overlap: int = 4,
                 cond_vocab: int = 0):
        super().__init__()
        self.cond_vocab = cond_vocab
        self.cond = None
        if cond_vocab:
            self.cond = nn.Embedding(cond_vocab + 1, dim)
            nn.init.zeros_(self.cond.weight)
        self.hop, self.overlap, self.n_fft = hop, overlap, hop * overlap
        self.bins = self.n_fft // 2 + 1
        self.inp = CausalConv1d(latent_dim, dim, 7)
        self.blocks = nn.ModuleList(ConvNeXtBlock(dim) for _ in range(blocks))
        self.norm = _ChannelNorm(dim)
        self.head = nn.Conv1d(dim, 2 * self.bins, 1)
        self.idft = InverseRDFT(self.n_fft)

    @property
    def delay(self) -> int:
        return self.n_fft - self.hop

    def _frames(self, h: torch.Tensor) -> torch.Tensor:
        """Features [B, C, T] -> windowed time-domain frames [B, T, n_fft]."""
        out = self.head(self.norm(h)).transpose(1, 2)  # [B, T, 2F]
        log_mag, phase = out[..., : self.bins], out[..., self.bins:]
        mag = torch.exp(log_mag.clamp(max=6.0))
        return self.idft(mag * torch.cos(phase), mag * torch.sin(phase))

    def _overlap_add(self, frames: torch.Tensor) -> torch.Tensor:
        """[B, T, overlap * hop] -> [B, T + overlap - 1, hop]: frame t's k-th hop lands on block t + k."""
        o = self.overlap
        segs = frames.unflatten(-1, (o, self.hop))
        return sum(nn.functional.pad(segs[:, :, k], (0, 0, k, o - 1 - k)) for k in range(o))

    def _conditioned(self, h: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        """h [B, C, T] + the embedding of cond [B, T] (None: all absent; ignored without ``cond_vocab``)."""
        if self.cond is None:
            return h
        if cond is None:
            cond = torch.full(h.shape[:1] + h.shape[2:], self.cond_vocab, dtype=torch.long, device=h.device)
        return h + self.cond(cond).transpose(1, 2)

    def forward(self, z: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        h = self._conditioned(self.inp(z), cond)
        for b in self.blocks:
            h = b(h)
        blocks = self._overlap_add(self._frames(h))[:, : z.shape[-1]]
        return blocks.reshape(z.shape[0], 1, -1)

    # ---- streaming: a flat list of tensors in a fixed order, for ONNX
    def init_state(self, batch: int, device=None) -> list[torch.Tensor]:
        return [self.inp.init_state(batch, device), *(b.init_state(batch, device) for b in self.blocks),
                torch.zeros(batch, self.overlap - 1, self.hop, device=device)]

    def step(self, z: torch.Tensor, state: list[torch.Tensor],
             cond: torch.Tensor | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        h, s = self.inp.step(z, state[0])
        h = self._conditioned(h, cond)
        new = [s]
        for b, st in zip(self.blocks, state[1:-1]):
            h, s = b.step(h, st)
            new.append(s)
        blocks = self._overlap_add(self._frames(h))
        tail = state[-1]
        blocks = torch.cat([blocks[:, : tail.shape[1]] + tail, blocks[:, tail.shape[1]:]], dim=1)
        T = z.shape[-1]
        new.append(blocks[:, T:])
        return blocks[:, :T].reshape(z.shape[0], 1, -1), new
