""""Sounds like this": a recording's MuLan audio embedding as the style the stages follow, alone or blended with the
prompt. MusicLM conditions on audio through the same joint space: the prompt prior already turns text into a
predicted audio embedding, so a reference's own embedding takes its place, or a weighted share of it.

A reference must be music the tower can hear: at least MIN_SECONDS, not silent, not noise (median spectral flatness
over MAX_FLATNESS; music stays far below it, white noise far above). The first MAX_SECONDS are used. Its tempo
and key (``tempo_and_key``) conduct the beat grid and pull the semantic ids as a named BPM and key would.
"""
from __future__ import annotations

import numpy as np
import torch

from .settings import SAMPLE_RATE, GenerationError

MIN_SECONDS, MAX_SECONDS = 2.0, 30.0
MAX_FLATNESS = 0.3


def check_reference(audio: np.ndarray) -> np.ndarray:
    """24 kHz mono audio -> its first MAX_SECONDS, or GenerationError saying why it cannot be a reference."""
    x = np.asarray(audio, dtype=np.float32)
    if x.ndim != 1 or not np.isfinite(x).all():
        raise GenerationError("the reference must be mono audio with valid samples")
    seconds = len(x) / SAMPLE_RATE
    if seconds < MIN_SECONDS:
        raise GenerationError(f"the reference is {seconds:.1f} s long; give at least {MIN_SECONDS:g} s of music")
    x = x[: int(MAX_SECONDS * SAMPLE_RATE)]
    if float(np.sqrt(np.mean(x ** 2))) < 1e-4:
        raise GenerationError("the reference is silent")
    import librosa
    flatness = float(np.median(librosa.feature.spectral_flatness(y=x, n_fft=2048, hop_length=512)))
    if flatness > MAX_FLATNESS:
        raise GenerationError("the reference sounds like noise, not music (give a recording of the music you mean)")
    return x


def style_embedding(reference: torch.Tensor, prompt: torch.Tensor | None, weight: float) -> torch.Tensor:
    """The embedding the stages' prefix tokens are made from: the reference's [dim] alone (no prompt), or
    ``weight`` of it blended with the prompt's (the prior's prediction), re-normalised."""
    if prompt is None:
        return reference
    mixed = weight * reference + (1 - weight) * prompt
    return mixed / mixed.norm().clamp_min(1e-8)


def tempo_and_key(audio: np.ndarray) -> tuple[float | None, int]:
    """A reference's tempo (the beat tracker's, folded into 60-180 BPM: the corpus's range) and key (its column in
    ``engine.semantic.keys``): the music made from it keeps its pace and its key unless the words name others."""
    from .analysis import detect_key, detect_tempo, felt_bpm
    from .semantic.keys import key_id
    bpm = felt_bpm(detect_tempo(audio, SAMPLE_RATE))
    tonic, mode = detect_key(audio)
    return (round(bpm, 1) if bpm > 0 else None), key_id(tonic, mode)
