"""A causal log-frequency spectrum at the codec's frame rate, for the encoder to read pitch from.

Why: a probe reads the semitone of a lone melody on 93.6% of frames from its spectrum but on 79.5% from the shipped
encoder's latent (session 41, ``bench probe``), and tuning that encoder through the frozen quantizer and decoder
levels off at 77-78% PESTO agreement (session 49) while codes worth 93.8% exist (session 42's oracle). The
encoder's first layers work on raw samples at 3 kHz with short kernels; this front end gives it the frequency
resolution directly: one bin per semitone from ``low_midi`` up, each a Hann-windowed complex sinusoid whose window
ends at the frame's last sample (so nothing comes from the future) and spans ``cycles`` periods of its frequency,
clipped to [``2 * hop``, ``window``] samples (4096 = 171 ms at 24 kHz, 5.6 periods of C1; the low notes are read
from their harmonics). 34 periods put the neighbouring semitones on the window's first spectral null; with 16, a
sine at C4 read only 5 dB lower in the bins a semitone off. Measured, a sine's nearer neighbour bin reads 2 / 4 / 18
/ 32 / 35 dB below its own at MIDI 36 / 40 / 52 / 55 / 60 (the window is capped below MIDI 55). log10 power goes
through a small causal convolution to the encoder's width; its last layer starts at zero, so a trained encoder with
this front end added first encodes exactly as before.

The filterbank is a fixed buffer rebuilt from the config (not saved: 96 bins x 4096 taps would be 1.5 MB of fp16).

Measured (session 50, assets/MODEL_CARD.md): added with 96 bins to the shipped encoder and tuned as session 49's H
(``codec_encoder_tune --spectral 96``, 88 min), then paired with H on 50 test clips: melody-alone agreement 76.9 ->
79.1% (+2.1 +- 0.7 points), mel distance at 4 kbps -0.0030 +- 0.0015; notes from MIDI 79 up 79.2 -> 86.2%, under
MIDI 48 44.9 -> 39.8%. Not shipped: it cost test mel (+0.0088) against the codec shipped at the time.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .conv import CausalConv1d


def filterbank(bins: int, hop: int, sample_rate: int, low_midi: int = 24, window: int = 4096,
               cycles: float = 34.0) -> torch.Tensor:
    """[2 * bins, 1, window] kernels: cosine and sine rows per bin, aligned to end at the window's last tap, scaled
    so a full-scale sinusoid at the bin's frequency has magnitude 1."""
    k = torch.zeros(2 * bins, 1, window, dtype=torch.float64)
    for b in range(bins):
        f = 440.0 * 2 ** ((low_midi + b - 69) / 12)
        if f >= sample_rate / 2:
            raise ValueError(f"bin {b} (MIDI {low_midi + b}, {f:.0f} Hz) is above Nyquist at {sample_rate} Hz")
        n = int(min(window, max(2 * hop, round(cycles * sample_rate / f))))
        t = torch.arange(n, dtype=torch.float64)
        w = torch.hann_window(n, periodic=False, dtype=torch.float64)
        w = 2 * w / w.sum()
        phase = 2 * math.pi * f * t / sample_rate
        k[2 * b, 0, window - n:] = w * torch.cos(phase)
        k[2 * b + 1, 0, window - n:] = w * torch.sin(phase)
    return k.float()


class LogFreqFront(nn.Module):
    """audio [B, 1, T * hop] -> [B, out_channels, T]: frame t reads samples up to (t + 1) * hop - 1."""

    def __init__(self, bins: int, out_channels: int, hop: int, sample_rate: int, hidden: int = 128,
                 window: int = 4096):
        super().__init__()
        self.hop, self.window = hop, window
        self.register_buffer("basis", filterbank(bins, hop, sample_rate, window=window), persistent=False)
        self.proj = nn.Sequential(CausalConv1d(bins, hidden, 3), nn.ELU())
        self.out = nn.Conv1d(hidden, out_channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def spectrum(self, audio: torch.Tensor) -> torch.Tensor:
        """log10 power per semitone bin, mapped from [-6, 0] to about [-1, 1]: [B, bins, T]."""
        x = nn.functional.conv1d(nn.functional.pad(audio, (self.window - self.hop, 0)), self.basis, stride=self.hop)
        power = x[:, 0::2] ** 2 + x[:, 1::2] ** 2
        return torch.log10(power + 1e-6) / 3 + 1

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return self.out(self.proj(self.spectrum(audio)))
