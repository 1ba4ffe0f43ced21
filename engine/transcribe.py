"""Audio -> notes: the melody (one note at a time) and every pitched note of a clip, for its MIDI file.

A small non-causal convolutional network on 50 Hz frames (20 ms: onsets within the 50 ms a transcription is judged
by) of 64 log-mel bands and 84 semitone bands (MIDI 24-107, n_fft 16384 so that bass semitones separate). Four heads:
the melody's pitch (88 keys or none, one softmax per frame) and its note onsets, and every key's activity and onset
(multi-label), as in "Onsets and Frames" (Hawthorne et al., 2018). Trained on the corpus, whose notes are exact
(``engine.train.transcriber``); its weights are ``assets/transcriber``.

Decoding: a melody note starts where the pitch changes or the onset head fires, and lasts while the pitch holds;
an accompaniment note starts at an onset peak of its key and lasts while that key is active (both at least 40 ms).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .spectral import N_MELS, SAMPLE_RATE, mel_fb, normalise, semitone_fb
from .weights import config_from_dict, load_weights, read_config, save_model

HOP = 480  # 50 Hz
FRAME_RATE = SAMPLE_RATE / HOP
SEMI_LO, N_SEMI = 24, 84
N_FEATURES = N_MELS + N_SEMI
LOW, N_KEYS = 21, 88  # piano keys A0..C8
MIN_FRAMES = 2  # 40 ms: shorter notes are decoding noise


@dataclass
class TranscriberConfig:
    channels: int = 128
    dilations: tuple[int, ...] = (1, 2, 4, 8, 1, 2, 4, 8)
    version: str = "dev"

    @classmethod
    def from_dict(cls, d: dict) -> TranscriberConfig:
        return config_from_dict(cls, d)


@dataclass(frozen=True)
class Note:
    pitch: int  # MIDI
    start: float  # seconds
    end: float
    velocity: int = 80


def _bands(audio: torch.Tensor, n_fft: int, fb: torch.Tensor, n: int, chunk: int = 512) -> torch.Tensor:
    """[B, T] -> [B, bands, n]: the power spectrum of centred Hann frames (as ``torch.stft``) through ``fb``,
    ``chunk`` frames at a time, so a five-minute clip never holds its whole 16384-point spectrogram (~1 GB)."""
    x = F.pad(audio[:, None], (n_fft // 2, n_fft // 2), mode="reflect")[:, 0]
    frames = x.unfold(-1, n_fft, HOP)[:, :n]  # a view: no copy
    win = torch.hann_window(n_fft, device=audio.device)
    out = [torch.fft.rfft(frames[:, i:i + chunk] * win).abs().pow(2) @ fb for i in range(0, n, chunk)]
    return torch.cat(out, 1).transpose(1, 2)


def features(audio: torch.Tensor) -> torch.Tensor:
    """audio [B, T] at 24 kHz -> [B, N_FEATURES, ceil(T / HOP)] log features (frame t centred on t * 20 ms)."""
    audio = normalise(audio.float())
    n = -(-audio.shape[-1] // HOP)
    mel = _bands(audio, 2048, mel_fb(), n)
    semi = _bands(audio, 16384, semitone_fb(16384, SEMI_LO, N_SEMI), n)
    return torch.cat([torch.log10(mel + 1e-6), torch.log10(semi + 1e-6)], 1) / 2.0


class _Block(nn.Module):
    def __init__(self, c: int, dilation: int):
        super().__init__()
        self.norm = nn.GroupNorm(1, c)
        self.conv = nn.Conv1d(c, c, 3, padding=dilation, dilation=dilation)
        self.mix = nn.Conv1d(c, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.mix(F.gelu(self.conv(self.norm(x))))


class Transcriber(nn.Module):
    def __init__(self, cfg: TranscriberConfig):
        super().__init__()
        self.cfg = cfg
        c = cfg.channels
        self.inp = nn.Conv1d(N_FEATURES, c, 3, padding=1)
        self.blocks = nn.Sequential(*[_Block(c, d) for d in cfg.dilations])
        self.norm = nn.GroupNorm(1, c)
        # melody pitch (none + 88 keys), melody onset, 88 key activities, 88 key onsets
        self.out = nn.Conv1d(c, (N_KEYS + 1) + 1 + 2 * N_KEYS, 1)

    def forward(self, feats: torch.Tensor) -> dict[str, torch.Tensor]:
        """[B, N_FEATURES, T] -> logits {"melody" [B, T, 89], "melody_onset" [B, T], "keys" [B, T, 88],
        "onsets" [B, T, 88]}."""
        h = self.out(F.gelu(self.norm(self.blocks(self.inp(feats))))).transpose(1, 2)
        m = N_KEYS + 1
        return {"melody": h[..., :m], "melody_onset": h[..., m], "keys": h[..., m + 1:m + 1 + N_KEYS],
                "onsets": h[..., m + 1 + N_KEYS:]}

    def save(self, path: str | Path) -> None:
        save_model(self, path, "transcriber")

    @classmethod
    def load(cls, path: str | Path) -> Transcriber:
        model = cls(read_config(TranscriberConfig, path, "transcriber", "transcriber"))
        model.load_state_dict(load_weights(Path(path) / "transcriber.safetensors"))
        return model.eval()

    @torch.inference_mode()
    def transcribe(self, audio: np.ndarray) -> tuple[list[Note], list[Note]]:
        """24 kHz mono audio -> (melody notes, all pitched notes)."""
        out = self(features(torch.from_numpy(np.asarray(audio, dtype=np.float32))[None]))
        melody = melody_notes(out["melody"][0].softmax(-1).numpy(), torch.sigmoid(out["melody_onset"][0]).numpy())
        notes = key_notes(torch.sigmoid(out["keys"][0]).numpy(), torch.sigmoid(out["onsets"][0]).numpy())
        return melody, notes


def _peaks(x: np.ndarray, threshold: float) -> np.ndarray:
    """[T] -> bool [T]: local maxima above ``threshold``."""
    prev = np.concatenate([[-1.0], x[:-1]])
    nxt = np.concatenate([x[1:], [-1.0]])
    return (x > threshold) & (x >= prev) & (x > nxt)


def melody_notes(pitch_prob: np.ndarray, onset_prob: np.ndarray, threshold: float = 0.5) -> list[Note]:
    """pitch_prob [T, 89] (class 0: none), onset_prob [T] -> notes, one at a time."""
    pitch = pitch_prob.argmax(-1)
    onset = _peaks(onset_prob, threshold)
    T, notes, start = len(pitch), [], None
    for t in range(T + 1):
        p = pitch[t] if t < T else 0
        if start is not None and (t == T or p != pitch[start] or onset[t]):
            if t - start >= MIN_FRAMES:
                notes.append(Note(int(pitch[start]) - 1 + LOW, start / FRAME_RATE, t / FRAME_RATE))
            start = None
        if start is None and p != 0:
            start = t
    return notes


def key_notes(active: np.ndarray, onset_prob: np.ndarray, threshold: float = 0.5) -> list[Note]:
    """active [T, 88], onset_prob [T, 88] -> notes (several at once), sorted by start."""
    notes = []
    for k in range(active.shape[1]):
        starts = np.flatnonzero(_peaks(onset_prob[:, k], threshold))
        for i, s in enumerate(starts):
            stop = starts[i + 1] if i + 1 < len(starts) else len(active)
            e = s + 1
            while e < stop and active[e, k] > threshold:
                e += 1
            if e - s >= MIN_FRAMES:
                notes.append(Note(LOW + k, s / FRAME_RATE, e / FRAME_RATE))
    return sorted(notes, key=lambda n: (n.start, n.pitch))


def targets(melody: list[tuple[int, float, float]], notes: list[tuple[int, float, float]], n_frames: int) -> dict:
    """Exact notes (pitch, start, end in seconds) -> frame targets: melody class [T] (0: none), melody onsets [T],
    key activity and onsets [T, 88]."""
    mel = np.zeros(n_frames, dtype=np.int64)
    mel_on = np.zeros(n_frames, dtype=np.float32)
    keys = np.zeros((n_frames, N_KEYS), dtype=np.float32)
    ons = np.zeros((n_frames, N_KEYS), dtype=np.float32)

    def span(start: float, end: float) -> tuple[int, int]:
        a = int(np.ceil(start * FRAME_RATE - 0.5))  # frames whose centre lies in [start, end)
        return max(a, 0), min(max(int(np.ceil(end * FRAME_RATE - 0.5)), a + 1), n_frames)

    for pitch, start, end in melody:
        a, b = span(start, end)
        if LOW <= pitch < LOW + N_KEYS and a < n_frames:
            mel[a:b] = pitch - LOW + 1
            mel_on[a] = 1.0
    for pitch, start, end in notes:
        a, b = span(start, end)
        if LOW <= pitch < LOW + N_KEYS and a < n_frames:
            keys[a:b, pitch - LOW] = 1.0
            ons[a, pitch - LOW] = 1.0
    return {"melody": mel, "melody_onset": mel_on, "keys": keys, "onsets": ons}
