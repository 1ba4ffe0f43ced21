"""Voice-like renditions of a clip's melody — hummed, whistled or sung on a vowel — for melody-conditioning training.

Source-filter synthesis at the recording's own sample rate, with what makes a person's rendition imperfect: the
singer's own register (whistles sit two octaves up), sometimes a phrase in the wrong octave, slow pitch drift within
±30 cents, vibrato that sets in on held notes, scoops into onsets and glides between legato notes, timing jitter,
breaths in the rests, aspiration noise, a small room and its background noise, and a random microphone level.
Pitch classes are never changed, so the clip's melody labels are the truth for the rendition too.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import fftconvolve, lfilter

from .arrange import TimedNote

_VOWELS = {  # formant centre frequencies (Hz) and bandwidths
    "a": ((800, 1150, 2900), (80, 90, 120)), "o": ((450, 800, 2830), (70, 80, 100)),
    "u": ((325, 700, 2530), (50, 60, 170)), "e": ((400, 1600, 2700), (60, 80, 120)),
    "i": ((270, 2140, 2950), (60, 90, 100)),
}
_HUM = ((250, 1200, 2500), (60, 300, 400))  # nasal murmur: strong first formant, little above
CONTROL_RATE = 200  # Hz, pitch and amplitude trajectories


@dataclass
class VoiceRendition:
    audio: np.ndarray  # float32 mono at ``sample_rate``
    sample_rate: int
    kind: str
    octave_shift: int  # semitones added to the melody for this singer (a multiple of 12)
    wrong_octave_notes: int  # notes sung an octave off from the rest
    drift_cents: float  # largest slow pitch drift applied


def _envelope(freqs: np.ndarray, formants) -> np.ndarray:
    centres, bws = formants
    amp = np.zeros_like(freqs)
    for i, (f, b) in enumerate(zip(centres, bws)):
        amp += (1.0 / (1 + ((freqs - f) / b) ** 2)) * (0.5 ** i)
    return amp + 0.02


def render_voice(notes: list[TimedNote], duration: float, kind: str, sample_rate: int, seed: int) -> VoiceRendition:
    rng = np.random.default_rng(seed)
    n_ctrl = int(np.ceil(duration * CONTROL_RATE)) + 1
    pitches = np.array([n.pitch for n in notes]) if notes else np.array([60])
    centre = {"hum": rng.choice([50, 62]), "sing": rng.choice([52, 64]), "whistle": rng.choice([79, 84])}[kind]
    octave = round((centre - np.median(pitches)) / 12) * 12

    midi = np.full(n_ctrl, np.nan)
    gain = np.zeros(n_ctrl)
    wrong = 0
    t_ctrl = np.arange(n_ctrl) / CONTROL_RATE
    prev_end, prev_pitch = -1.0, None
    wrong_span = None
    if len(notes) > 6 and rng.random() < 0.12:  # a run of notes in the wrong octave
        a = int(rng.integers(0, len(notes) - 3))
        wrong_span = (a, a + int(rng.integers(2, 6)), 12 if rng.random() < 0.5 else -12)
    for i, n in enumerate(notes):
        start = max(0.0, n.start + rng.normal(0, 0.025))
        end = min(duration, max(start + 0.06, n.end + rng.normal(0, 0.03)))
        legato = prev_pitch is not None and start - prev_end < 0.08
        if legato:
            start = prev_end
        p = n.pitch + octave
        if wrong_span and wrong_span[0] <= i < wrong_span[1]:
            p += wrong_span[2]
            wrong += 1
        i0, i1 = int(start * CONTROL_RATE), min(int(end * CONTROL_RATE), n_ctrl)
        if i1 <= i0:
            continue
        seg = np.full(i1 - i0, float(p))
        k = np.arange(i1 - i0) / CONTROL_RATE
        if legato and prev_pitch is not None:  # glide from the previous note
            glide = rng.uniform(0.03, 0.08)
            seg += (prev_pitch - p) * np.clip(1 - k / glide, 0, 1)
        else:  # scoop up into the note
            seg -= rng.uniform(0.3, 1.0) * np.exp(-k / rng.uniform(0.02, 0.06))
        if (end - start) > 0.35:  # vibrato on held notes, rising in after onset
            rate, depth = rng.uniform(4.5, 6.5), rng.uniform(0.1, 0.45) * (1.3 if kind == "sing" else 1.0)
            seg += depth * np.clip((k - 0.2) / 0.3, 0, 1) * np.sin(2 * np.pi * rate * k + rng.uniform(0, 6.3))
        midi[i0:i1] = seg
        att, rel = rng.uniform(0.02, 0.07), rng.uniform(0.04, 0.1)
        env = np.minimum(1, k / att) * np.clip((k[-1] - k) / rel, 0, 1) * rng.uniform(0.7, 1.0)
        gain[i0:i1] = np.maximum(gain[i0:i1], env)
        prev_end, prev_pitch = end, p

    # slow pitch drift, bounded to ±30 cents
    walk = np.cumsum(rng.normal(0, 1, n_ctrl))
    walk = lfilter([0.02], [1, -0.98], walk - walk.mean())
    drift = 0.3 * walk / (np.abs(walk).max() + 1e-9) * rng.uniform(0.3, 1.0)
    midi = midi + drift

    sr = sample_rate
    n = round(duration * sr)
    t = np.arange(n) / sr
    voiced_ctrl = ~np.isnan(midi)
    f0_ctrl = np.where(voiced_ctrl, 440.0 * 2 ** ((np.nan_to_num(midi, nan=60) - 69) / 12), 0.0)
    # hold pitch through unvoiced gaps so phase stays continuous
    idx = np.where(voiced_ctrl, np.arange(n_ctrl), 0)
    np.maximum.accumulate(idx, out=idx)
    f0_ctrl = np.where(voiced_ctrl, f0_ctrl, f0_ctrl[idx] if voiced_ctrl.any() else 200.0)
    f0 = np.interp(t, t_ctrl, f0_ctrl)
    amp = np.interp(t, t_ctrl, gain)
    phase = 2 * np.pi * np.cumsum(f0) / sr

    out = np.zeros(n)
    if kind == "whistle":
        out += np.sin(phase) + 0.03 * np.sin(2 * phase)
        breath = lfilter(*_bandpass(np.median(f0_ctrl), sr), rng.normal(0, 1, n))
        out += 0.08 * breath
    else:
        formants = _HUM if kind == "hum" else _VOWELS[str(rng.choice(list(_VOWELS)))]
        tilt = 1.5 if kind == "hum" else 1.1
        fmax = min(0.45 * sr, 8000.0)
        for h in range(1, 41):
            hf_ctrl = h * f0_ctrl
            if hf_ctrl.min() > fmax:
                break
            a_ctrl = _envelope(hf_ctrl, formants) * h ** -tilt * (hf_ctrl < fmax)
            out += np.interp(t, t_ctrl, a_ctrl) * np.sin(h * phase)
        out /= np.abs(out).max() + 1e-9
        out += 0.02 * rng.normal(0, 1, n)  # aspiration
    out *= amp

    # breaths in long rests
    rest = np.convolve(gain == 0, np.ones(int(0.25 * CONTROL_RATE)), "same") >= int(0.25 * CONTROL_RATE) - 1
    starts = np.where(np.diff(rest.astype(int)) == 1)[0]
    for s in starts:
        if rng.random() < 0.6:
            i0 = int(s / CONTROL_RATE * sr)
            length = int(rng.uniform(0.12, 0.3) * sr)
            burst = lfilter(*_bandpass(1500, sr), rng.normal(0, 1, length)) * np.hanning(length) * 0.15
            out[i0:i0 + length] += burst[: max(0, min(length, n - i0))]

    # room: short exponentially decaying noise impulse response, then background noise at 15-40 dB SNR
    rt60 = rng.uniform(0.15, 0.6)
    ir_len = int(rt60 * sr)
    ir = rng.normal(0, 1, ir_len) * np.exp(-6.9 * np.arange(ir_len) / ir_len)
    ir[0] = 1.0 / rng.uniform(0.05, 0.3)
    out = fftconvolve(out, ir / np.abs(ir).sum() * 8)[:n]
    sig_rms = np.sqrt(np.mean(out[amp > 0.1] ** 2)) if np.any(amp > 0.1) else 1e-3
    noise = lfilter([1], [1, -0.95], rng.normal(0, 1, n))  # reddish room noise
    noise *= sig_rms / (np.sqrt(np.mean(noise ** 2)) + 1e-12) * 10 ** (-rng.uniform(15, 40) / 20)
    if rng.random() < 0.2:  # mains hum
        noise += sig_rms * 0.01 * np.sin(2 * np.pi * rng.choice([50, 60]) * t)
    out = out + noise
    out *= 10 ** (-rng.uniform(3, 14) / 20) / (np.abs(out).max() + 1e-9)
    return VoiceRendition(out.astype(np.float32), sr, kind, octave, wrong, float(np.abs(drift).max() * 100))


def _bandpass(centre: float, sr: int) -> tuple[np.ndarray, np.ndarray]:
    """A two-pole resonator at ``centre`` Hz (kept under Nyquist)."""
    f = min(centre, 0.45 * sr) / sr
    r = 0.97
    return np.array([1 - r]), np.array([1, -2 * r * np.cos(2 * np.pi * f), r * r])
