"""What a finished clip is, as a musician's tools ask: its tempo (librosa's beat tracker) and key (the
Krumhansl-Kessler profile that best fits its mean chroma, from the music front end). Stored with every clip,
shown in the app, searchable in the library and written into downloaded files' BPM and key tags."""
from __future__ import annotations

import numpy as np
import torch

from . import spectral
from .controls import NOTE_NAMES


def detect_tempo(audio: np.ndarray, sr: int = 24_000) -> float:
    """Beats per minute (librosa's beat tracker; like any tracker it may answer half or double the felt tempo)."""
    import librosa
    return float(np.atleast_1d(librosa.beat.beat_track(y=np.asarray(audio, dtype=np.float32), sr=sr)[0])[0])


def felt_bpm(bpm: float, low: float = 60.0, high: float = 180.0) -> float:
    """A tracked tempo moved by octaves into ``low``-``high`` BPM (the corpus's music is felt there): beat trackers
    often answer double or half time."""
    while bpm > high:
        bpm /= 2
    while 0 < bpm < low:
        bpm *= 2
    return bpm


def detect_key(audio: np.ndarray) -> tuple[int, str]:
    """(tonic pitch class, "major" | "minor") of 24 kHz audio."""
    g = spectral.global_features(torch.from_numpy(np.asarray(audio, dtype=np.float32))[None])[0, -24:]
    k = int(g.argmax())
    return k % 12, "major" if k < 12 else "minor"


def analyse(audio: np.ndarray, sr: int = 24_000) -> dict:
    """{"bpm": 120.2, "key": "A minor"} of a clip (24 kHz, the generator's rate)."""
    tonic, mode = detect_key(audio)
    return {"bpm": round(detect_tempo(audio, sr), 1), "key": f"{NOTE_NAMES[mode][tonic]} {mode}"}
