"""From a hummed, whistled or sung recording to a 25 Hz pitch track and melody tokens.

PESTO (weights shipped in the ``pesto-pitch`` package) tracks pitch every 10 ms at 16 kHz; four estimates make one
40 ms frame (median of the confident ones). A frame is voiced when PESTO is confident and the frame is within 35 dB
of the recording's loudest; isolated voiced or unvoiced frames are smoothed away.

Tokens fold octaves: people hum in their own register, often an octave or two from the tune, and sometimes jump
octaves mid-phrase, so the token is the pitch class (1..12 for C..B) and 0 means no melody. Vocabulary 13.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

from ..audio import resample, to_mono

FRAME_RATE = 25
VOCAB = 13  # 0 = unvoiced, 1 + pitch class
MIN_SECONDS, MAX_SECONDS = 0.5, 300.0
_SR = 16_000
_MAX_FLATNESS = 0.15
_CONFIDENCE = 0.5
_GATE_DB = 35.0
_LAG = 2  # 10 ms steps
CHUNK_S, CONTEXT_S = 20.0, 1.0  # long recordings are tracked in pieces (_pesto_track)


class MelodyError(ValueError):
    """The recording cannot give a melody; the message says why in words a musician understands."""


@dataclass
class MelodyTrack:
    midi: np.ndarray  # [T] float MIDI pitch at 25 Hz, NaN where no melody
    confidence: np.ndarray  # [T] PESTO confidence
    tokens: np.ndarray  # [T] int64 in [0, VOCAB)

    @property
    def voiced(self) -> np.ndarray:
        return ~np.isnan(self.midi)

    def to_json(self) -> dict:
        return {"frame_rate": FRAME_RATE,
                "midi": [None if np.isnan(m) else round(float(m), 2) for m in self.midi],
                "tokens": self.tokens.tolist()}


@functools.lru_cache(maxsize=1)
def _pesto():
    import pesto

    model = pesto.load_model("mir-1k_g7", step_size=10.0, sampling_rate=_SR)
    return model.eval()


def tokens_from_midi(midi: np.ndarray) -> np.ndarray:
    """MIDI pitches (NaN or <= 0 for none) -> octave-folded tokens."""
    midi = np.asarray(midi, dtype=float)
    voiced = np.isfinite(midi) & (midi > 0)
    tok = np.zeros(midi.shape, dtype=np.int64)
    tok[voiced] = 1 + np.round(midi[voiced]).astype(np.int64) % 12
    return tok


def _smooth(voiced: np.ndarray, min_run: int = 2) -> np.ndarray:
    """Flip runs shorter than ``min_run`` frames (a lone voiced blip or a one-frame dropout)."""
    v = voiced.copy()
    for target in (True, False):
        i = 0
        while i < len(v):
            j = i
            while j < len(v) and v[j] == v[i]:
                j += 1
            if v[i] == target and j - i < min_run and i > 0 and j < len(v):
                v[i:j] = not target
            i = j
    return v


def _flatness(x16: np.ndarray, n: int, win: int = 1024) -> np.ndarray:
    """Spectral flatness (geometric / arithmetic mean power, 50 Hz-4 kHz) of 64 ms windows every 10 ms.

    PESTO reports confident pitches on white noise now and then (measured: 30-93% of frames of Gaussian noise,
    more once clipped). A hum, whistle or sung vowel is harmonic: median flatness <= 0.015 on 20 corpus renditions,
    against 0.56 for white noise; frames above ``_MAX_FLATNESS`` are not melody."""
    hop = _SR // 100
    padded = np.pad(x16, (win // 2, win))
    frames = np.lib.stride_tricks.sliding_window_view(padded, win)[::hop][:n]
    p = np.abs(np.fft.rfft(frames * np.hanning(win), axis=1))[:, 3:256] ** 2 + 1e-12
    return np.exp(np.log(p).mean(1)) / p.mean(1)


def _pesto_run(x: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray]:
    with torch.inference_mode():
        pred, conf, _, _ = _pesto()(torch.from_numpy(np.ascontiguousarray(x)), sr=sr, convert_to_freq=False,
                                    return_activations=True)
    return pred.numpy().astype(float), conf.numpy().astype(float)


def _pesto_track(x: np.ndarray, sr: int = _SR) -> tuple[np.ndarray, np.ndarray]:
    """PESTO pitch (semitones, MIDI scale) and confidence every 10 ms of audio read at ``sr``. A recording longer than
    CHUNK_S goes through in pieces of CHUNK_S with CONTEXT_S of audio either side, keeping each piece's own frames:
    memory then stays that of one piece however long the hum (a 5-minute hum in one pass took 9 GB)."""
    hop, chunk, ctx = sr // 100, int(CHUNK_S * sr), int(CONTEXT_S * sr)
    if len(x) <= chunk + ctx:
        return _pesto_run(x, sr)
    n = len(x) // hop + 1  # PESTO's frame count: frames centred on every hop, the first on sample 0
    semis, conf = np.empty(n), np.empty(n)
    for start in range(0, len(x), chunk):  # chunk is a whole number of hops
        lo = max(0, start - ctx)
        p, c = _pesto_run(x[lo:start + chunk + ctx], sr)
        f0, f1 = start // hop, min(n, (start + chunk) // hop)
        skip = (start - lo) // hop
        semis[f0:f1], conf[f0:f1] = p[skip:skip + f1 - f0], c[skip:skip + f1 - f0]
    return semis, conf


def melody_from_audio(audio: np.ndarray, sr: int) -> MelodyTrack:
    """Pitch track and tokens of a recording (any rate 8-96 kHz, mono or [T, channels])."""
    x = np.asarray(audio, dtype=np.float32)
    if x.ndim == 2 and x.shape[0] < x.shape[1] and x.shape[0] <= 8:  # [channels, T] -> [T, channels]
        x = x.T
    x = to_mono(x)
    if not 8_000 <= sr <= 192_000:
        raise MelodyError(f"sample rate {sr} Hz is not supported (8 kHz to 192 kHz)")
    seconds = len(x) / sr
    if seconds < MIN_SECONDS:
        raise MelodyError(f"the recording is {seconds:.1f} s long; hum for at least {MIN_SECONDS} s")
    if seconds > MAX_SECONDS:
        raise MelodyError(f"the recording is {seconds / 60:.1f} minutes long; the limit is {MAX_SECONDS / 60:.0f} minutes")
    if not np.all(np.isfinite(x)):
        raise MelodyError("the recording contains invalid samples (NaN or infinity)")
    x = x - x.mean()  # DC offset
    peak = np.abs(x).max()
    if peak < 1e-4:
        raise MelodyError("no melody detected: the recording is silent (check the microphone)")
    x16 = resample(x / peak, sr, _SR)

    semis, conf = _pesto_track(x16)
    # PESTO loses whistles above ~1.3 kHz (MIDI 88). Played at half speed they sit an octave lower, where it hears
    # them; octaves fold away in the tokens, so the slowed estimate (+12) fills frames the direct one missed.
    slow_semis, slow_conf = _pesto_track(resample(x16, _SR, 2 * _SR))
    slow_semis, slow_conf = slow_semis[::2][: len(semis)] + 12, slow_conf[::2][: len(semis)]
    use_slow = (slow_conf > conf) & (conf < _CONFIDENCE)
    semis = np.where(use_slow[: len(slow_semis)], slow_semis, semis[: len(slow_semis)])
    conf = np.where(use_slow[: len(slow_conf)], slow_conf, conf[: len(slow_conf)])
    # loudness gate, per 10 ms
    hop = _SR // 100
    n10 = len(semis)
    pad = np.pad(x16, (0, max(0, n10 * hop - len(x16))))[: n10 * hop]
    rms_db = 10 * np.log10(np.mean(pad.reshape(n10, hop) ** 2, axis=1) + 1e-10)
    ok = (conf > _CONFIDENCE) & (rms_db > rms_db.max() - _GATE_DB) & (_flatness(x16, n10) < _MAX_FLATNESS)

    n = round(seconds * FRAME_RATE)
    midi = np.full(n, np.nan)
    cframe = np.zeros(n)
    for k in range(n):  # PESTO reports a pitch ~20 ms late: frame k takes estimates 2..5 of its 40 ms
        a, b = 4 * k + _LAG, min(4 * k + 4 + _LAG, n10)
        if a >= n10:
            break
        cframe[k] = conf[a:b].mean()
        good = semis[a:b][ok[a:b]]
        if len(good) >= 2:
            midi[k] = float(np.median(good))
    voiced = _smooth(~np.isnan(midi))
    for k in np.where(voiced & np.isnan(midi))[0]:  # filled one-frame dropouts take their neighbours' pitch
        neighbours = midi[max(0, k - 1):k + 2]
        midi[k] = np.nanmedian(neighbours) if np.any(~np.isnan(neighbours)) else np.nan
    midi[~voiced] = np.nan
    if np.mean(~np.isnan(midi)) < 0.1 or np.sum(~np.isnan(midi)) < 5:
        raise MelodyError("no melody detected: hum, whistle or sing a tune clearly, closer to the microphone")
    return MelodyTrack(midi, cframe, tokens_from_midi(midi))
