"""The codec's training losses: what ``engine.train.codec`` minimises in every phase.

``codec_loss`` is the reconstruction loss (multi-scale log-mel, spectral convergence, linear log-magnitude);
``pitch_loss`` moves energy between semitone bands, so a wrong note costs more than the mel terms make it cost;
``phase_loss`` compares the phase advance of the iSTFT decoder's output with the original's.
"""
from __future__ import annotations

import torch

from ..eval.metrics import log_mel
from ..spectral import semitone_fb

LOSS_SCALES = ((128, 16), (256, 32), (512, 64), (1024, 80), (2048, 128))


def codec_loss(ref: torch.Tensor, est: torch.Tensor, sr: int) -> tuple[torch.Tensor, dict]:
    """Log-mel L1 over five scales (the project metric's three plus two finer ones), STFT spectral convergence, and
    a linear-frequency log-magnitude L1 at n_fft 2048 (11.7 Hz bins: resolves the harmonics a pitch tracker reads,
    which mel bands above ~1 kHz merge)."""
    mel = torch.stack([(log_mel(ref, sr, f, m) - log_mel(est, sr, f, m)).abs().mean() for f, m in LOSS_SCALES]).mean()
    sc, lin = 0.0, 0.0
    for n_fft in (512, 2048):
        win = torch.hann_window(n_fft, device=ref.device)
        R = torch.stft(ref, n_fft, n_fft // 4, window=win, return_complex=True).abs()
        E = torch.stft(est, n_fft, n_fft // 4, window=win, return_complex=True).abs()
        sc = sc + torch.linalg.norm(R - E) / (torch.linalg.norm(R) + 1e-7)
        if n_fft == 2048:
            lin = (torch.log10(R.square() + 1e-5) - torch.log10(E.square() + 1e-5)).abs().mean()
    return mel + 0.5 * sc + 0.5 * lin, {"mel": float(mel.detach()), "sc": float(sc.detach()), "lin": float(lin.detach())}


def pitch_loss(ref: torch.Tensor, est: torch.Tensor, sr: int, low: int = 48) -> torch.Tensor:
    """L1 of log energies in semitone bands from MIDI ``low`` (default C3) to B7. The mel and linear terms weigh every
    band or bin alike, so a note a semitone off costs them little; here it moves energy between two bands. A 4,096-point
    STFT (5.9 Hz bins) resolves semitones down to C3; from a lower ``low`` every band uses 8,192 points (2.9 Hz bins,
    down to C1)."""
    n_fft = 4096 if low >= 48 else 8192
    win = torch.hann_window(n_fft, device=ref.device)
    fb = semitone_fb(n_fft, low, 108 - low, sr).to(ref.device)
    R, E = (torch.stft(x, n_fft, n_fft // 4, window=win, return_complex=True).abs().square() for x in (ref, est))
    R, E = (torch.einsum("bft,fm->bmt", x, fb) for x in (R, E))
    return (torch.log10(R + 1e-5) - torch.log10(E + 1e-5)).abs().mean()


def phase_loss(ref: torch.Tensor, est: torch.Tensor, n_fft: int = 1920, hop: int = 240) -> torch.Tensor:
    """Anti-wrapping phase losses (APNet's instantaneous frequency and group delay) on the iSTFT decoder's window
    (4 hops; the defaults are the shipped codec's 480-sample hop):
    1 - cos of the difference between the two signals' phase advance from one hop to the next and from one bin to the
    next, weighted by the reference's magnitude there (the partials a pitch tracker reads). Zero for the same signal;
    0.02 for a 1-radian phase offset of a 1 s tone, ~1.2 for the tone a semitone off, ~0.4 for white noise against it."""
    win = torch.hann_window(n_fft, device=ref.device)
    R, E = (torch.stft(x, n_fft, hop, window=win, return_complex=True) for x in (ref, est))  # [B, F, T]
    loss = ref.new_zeros(())
    for dim in (-1, -2):  # over time (instantaneous frequency), over frequency (group delay)
        n = R.shape[dim]
        a = R.narrow(dim, 1, n - 1) * R.narrow(dim, 0, n - 1).conj()
        b = E.narrow(dim, 1, n - 1) * E.narrow(dim, 0, n - 1).conj()
        cos = (a * b.conj()).real / (a.abs() * b.abs() + 1e-7)
        w = a.abs().sqrt()  # geometric mean of the reference's two magnitudes
        loss = loss + (w * (1 - cos)).sum() / (w.sum() + 1e-7)
    return loss / 2
