"""The music front end shared by MuLan's audio tower and the semantic tokenizer: 25 Hz frames at 24 kHz.

``frames(audio)`` -> [B, 136, T]: 64 log-mel bands (n_fft 2048, 0-12 kHz: timbre, loudness, onsets) stacked on 72
semitone bands MIDI 36-107 (n_fft 8192 = 2.9 Hz bins, narrow enough to separate semitones down to C2: melody and
harmony). ``global_features(audio)`` -> [B, 199]: a tempogram (autocorrelation of a 100 Hz onset envelope at lags
0.25-2 s: tempo) and the correlations of the mean chroma with the 24 Krumhansl-Kessler key profiles (key, mode).
Audio is RMS-normalised to -20 dBFS first, the corpus's level, so the features do not depend on input gain.
Frame t covers samples [t*960, (t+1)*960) (centred windows).
"""
from __future__ import annotations

import functools

import numpy as np
import torch
import torchaudio

SAMPLE_RATE = 24_000
FRAME_RATE = 25
HOP = SAMPLE_RATE // FRAME_RATE  # 960
N_MELS, MIDI_LO, N_SEMITONES = 64, 36, 72
N_FRAME_FEATURES = N_MELS + N_SEMITONES
ONSET_RATE = 100
LAGS = np.arange(25, 201)  # onset-envelope lags in 10 ms steps: 0.25 .. 2.0 s (240 .. 30 BPM periods)
N_GLOBAL = len(LAGS) + 24 - 1  # 199 (lag 25..200 minus one: the first lag is dropped after differencing)
TARGET_RMS = 10 ** (-20 / 20)

# Krumhansl-Kessler probe-tone profiles (C major / C minor)
_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])
KEY_PROFILES = {"major": _MAJOR, "minor": _MINOR}


@functools.cache
def mel_fb() -> torch.Tensor:
    """[1025, 64] Slaney mel filters of a 2048-point FFT at 24 kHz."""
    return torchaudio.functional.melscale_fbanks(1025, 0.0, SAMPLE_RATE / 2, N_MELS, SAMPLE_RATE, "slaney", "slaney")


@functools.cache
def semitone_fb(n_fft: int = 8192, lo: int = MIDI_LO, n: int = N_SEMITONES, sr: int = SAMPLE_RATE) -> torch.Tensor:
    """[n_fft // 2 + 1, n] triangular filters one semitone wide on each side, in MIDI (log-frequency) units, centred
    on MIDI lo..lo+n-1, each summing to one."""
    f = np.fft.rfftfreq(n_fft, 1 / sr)
    midi = 69 + 12 * np.log2(np.maximum(f, 1e-3) / 440)
    w = np.maximum(0.0, 1 - np.abs(midi[:, None] - (lo + np.arange(n))[None]))
    if (w.sum(0) == 0).any():
        raise ValueError(f"{n_fft}-point bins are too coarse for semitone bands from MIDI {lo}")
    return torch.from_numpy((w / w.sum(0, keepdims=True)).astype(np.float32))


@functools.cache
def _key_profiles() -> torch.Tensor:
    """[24, 12]: zero-mean unit-norm profiles, major keys C..B then minor keys C..B."""
    rows = [np.roll(p, k) for p in (_MAJOR, _MINOR) for k in range(12)]
    m = np.array(rows) - np.mean(rows, axis=1, keepdims=True)
    return torch.from_numpy((m / np.linalg.norm(m, axis=1, keepdims=True)).astype(np.float32))


def normalise(audio: torch.Tensor) -> torch.Tensor:
    """[B, T] -> the same at -20 dBFS RMS (silence stays silence)."""
    rms = audio.pow(2).mean(-1, keepdim=True).sqrt()
    return audio * (TARGET_RMS / rms.clamp_min(1e-5))


def _power(audio: torch.Tensor, n_fft: int, hop: int) -> torch.Tensor:
    win = torch.hann_window(n_fft, device=audio.device)
    return torch.stft(audio, n_fft, hop, window=win, return_complex=True).abs().pow(2)  # [B, F, frames]


def frames(audio: torch.Tensor, n_frames: int | None = None) -> torch.Tensor:
    """audio [B, T] at 24 kHz -> [B, 136, n_frames] log features (n_frames defaults to T // 960)."""
    audio = normalise(audio.float())
    n = n_frames or audio.shape[-1] // HOP
    mel = torch.einsum("bft,fm->bmt", _power(audio, 2048, HOP), mel_fb().to(audio.device))
    semi = torch.einsum("bft,fm->bmt", _power(audio, 8192, HOP), semitone_fb().to(audio.device))
    x = torch.cat([torch.log10(mel + 1e-6), torch.log10(semi + 1e-6)], 1)
    x = x[..., :n]
    if x.shape[-1] < n:
        x = torch.nn.functional.pad(x, (0, n - x.shape[-1]), value=-6.0)  # log10(1e-6): silence
    return x / 2.0  # corpus clips: mean ~0, std ~0.45 per value


def chroma(feats: torch.Tensor) -> torch.Tensor:
    """Frame features [B, 136, T] -> chroma [B, 12, T] (pitch class 0 = C), from linear semitone energy."""
    semi = 10 ** (feats[:, N_MELS:] * 2.0)
    pitch_class = (MIDI_LO + torch.arange(N_SEMITONES, device=feats.device)) % 12
    return torch.zeros(feats.shape[0], 12, feats.shape[-1], device=feats.device).index_add_(1, pitch_class, semi)


def global_features(audio: torch.Tensor) -> torch.Tensor:
    """audio [B, T] at 24 kHz -> [B, 199]: tempogram (175) + key-profile correlations (24)."""
    audio = normalise(audio.float())
    mel = torch.einsum("bft,fm->bmt", _power(audio, 1024, SAMPLE_RATE // ONSET_RATE), _mel_fb1024().to(audio.device))
    onset = torch.relu(torch.diff(torch.log10(mel + 1e-6), dim=-1)).mean(1)  # [B, T100]
    onset = onset - onset.mean(-1, keepdim=True)
    T = onset.shape[-1]
    spec = torch.fft.rfft(onset, n=2 * T)
    ac = torch.fft.irfft(spec.abs().pow(2), n=2 * T)[..., :T]
    ac = ac / ac[..., :1].clamp_min(1e-8)
    lags = torch.as_tensor(LAGS[LAGS < T], device=audio.device)
    tempo = torch.zeros(audio.shape[0], len(LAGS), device=audio.device)
    tempo[:, : len(lags)] = ac[:, lags]
    tempo = torch.diff(tempo, dim=-1) * 10  # differencing removes the slow decay; peaks survive
    c = chroma(frames(audio)).mean(-1)
    c = c - c.mean(-1, keepdim=True)
    c = c / c.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    return torch.cat([tempo, 2 * c @ _key_profiles().to(audio.device).t()], -1)


@functools.cache
def _mel_fb1024() -> torch.Tensor:
    return torchaudio.functional.melscale_fbanks(513, 0.0, SAMPLE_RATE / 2, 40, SAMPLE_RATE, "slaney", "slaney")
