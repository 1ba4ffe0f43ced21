"""Render arrangements to audio with FluidSynth (libfluidsynth through pyfluidsynth) and the FluidR3_GM soundfont.

One ``Renderer`` loads the soundfont once and renders clips in order; it is reset between clips (all sounds off,
one second of silence to drain reverb and chorus), so a clip's audio depends only on the clips rendered before it
by the same renderer. The corpus builder gives each renderer a fixed group of clips, which makes builds
bit-identical whatever the number of workers.

Loudness: each clip is normalised to -20 dBFS RMS over its non-silent 50 ms blocks, then peak-limited to -1 dBFS.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .arrange import Arrangement

SAMPLE_RATE = 24_000
SOUNDFONT_PATHS = ("/usr/share/sounds/sf2/FluidR3_GM.sf2", "/usr/share/soundfonts/FluidR3_GM.sf2")
TARGET_RMS_DB = -20.0
PEAK_DB = -1.0
_GAIN = 0.25  # synth master gain: low enough that dense arrangements never clip the 16-bit synth output


class SynthUnavailable(RuntimeError):
    """FluidSynth or its General MIDI soundfont is missing; the message says which Debian package to install."""


def find_soundfont(path: str | os.PathLike | None = None) -> Path:
    """The soundfont to use: ``path`` if given, else $CANTUS_SOUNDFONT, else Debian's FluidR3_GM."""
    if path is not None:
        candidates = [Path(path)]
    elif os.environ.get("CANTUS_SOUNDFONT"):
        candidates = [Path(os.environ["CANTUS_SOUNDFONT"])]
    else:
        candidates = [Path(p) for p in SOUNDFONT_PATHS]
    for c in candidates:
        if c.is_file():
            return c
    raise SynthUnavailable(
        "The General MIDI soundfont was not found (looked for " + ", ".join(str(c) for c in candidates)
        + "). Install it with: sudo apt-get install fluid-soundfont-gm (or set CANTUS_SOUNDFONT=/path/to/file.sf2)."
    )


def _fluidsynth():
    try:
        import fluidsynth  # pyfluidsynth
    except ImportError as exc:  # the Python package or libfluidsynth.so is missing
        raise SynthUnavailable(
            "FluidSynth is not available (" + str(exc) + "). Install the library with: sudo apt-get install "
            "fluidsynth, and the Python binding with: pip install pyfluidsynth."
        ) from exc
    if not hasattr(fluidsynth, "Synth"):
        raise SynthUnavailable("The 'fluidsynth' Python module found is not pyfluidsynth; pip install pyfluidsynth.")
    return fluidsynth


class Renderer:
    def __init__(self, soundfont: str | os.PathLike | None = None, sample_rate: int = SAMPLE_RATE):
        fs = _fluidsynth()
        self.sample_rate = sample_rate
        self.synth = fs.Synth(gain=_GAIN, samplerate=float(sample_rate))
        for key, val in (("synth.reverb.active", 1), ("synth.chorus.active", 1), ("synth.polyphony", 256)):
            try:
                self.synth.setting(key, val)
            except Exception:  # older libfluidsynth: settings fixed at creation, defaults are fine
                pass
        self.sfid = self.synth.sfload(str(find_soundfont(soundfont)))
        if self.sfid < 0:
            raise SynthUnavailable(f"FluidSynth could not load the soundfont {find_soundfont(soundfont)}.")

    def render(self, arr: Arrangement, roles: tuple[str, ...] | None = None, normalized: bool = True) -> np.ndarray:
        """Mono float32 audio of exactly ``arr.duration`` seconds, loudness-normalised unless ``normalized`` is False
        (stems that must add up to their mix)."""
        s = self.synth
        events: list[tuple[int, int, int, int, int]] = []  # (sample, order, channel, pitch, velocity)
        melodic = iter([c for c in range(16) if c != 9])
        for track in arr.tracks:
            if roles is not None and track.role not in roles:
                continue
            ch = 9 if track.is_drums else next(melodic)
            if track.is_drums:
                s.program_select(ch, self.sfid, 128, track.program - 128)
            else:
                s.program_select(ch, self.sfid, 0, track.program)
            s.cc(ch, 91, int(np.clip(track.reverb, 0, 127)))
            s.cc(ch, 93, 20 if not track.is_drums else 0)
            s.cc(ch, 10, track.pan)
            s.cc(ch, 7, 100)
            for n in track.notes:
                events.append((round(n.start * self.sample_rate), 1, ch, n.pitch, n.velocity))
                events.append((round(n.end * self.sample_rate), 0, ch, n.pitch, 0))
        events.sort()
        total = round(arr.duration * self.sample_rate)
        chunks, pos = [], 0
        for t, is_on, ch, pitch, vel in events:
            t = min(t, total)
            if t > pos:
                chunks.append(s.get_samples(t - pos))
                pos = t
            if pos >= total:
                break
            if is_on:
                s.noteon(ch, pitch, vel)
            else:
                s.noteoff(ch, pitch)
        if total > pos:
            chunks.append(s.get_samples(total - pos))
        self._reset()
        stereo = np.concatenate(chunks).astype(np.float32).reshape(-1, 2) / 32768.0
        return normalize(stereo.mean(axis=1)) if normalized else stereo.mean(axis=1)

    def _reset(self) -> None:
        for ch in range(16):
            self.synth.cc(ch, 120, 0)  # all sound off
            self.synth.cc(ch, 121, 0)  # reset controllers
        self.synth.get_samples(self.sample_rate)  # drain reverb/chorus tails

    def close(self) -> None:
        self.synth.delete()


def normalize(x: np.ndarray, target_db: float = TARGET_RMS_DB, peak_db: float = PEAK_DB) -> np.ndarray:
    """Gain to ``target_db`` RMS over non-silent 50 ms blocks, then limit the peak; silence stays silence."""
    x = np.asarray(x, dtype=np.float32)
    block = 1200
    n = len(x) // block * block
    if n == 0 or not np.any(x):
        return x
    rms = np.sqrt(np.mean(x[:n].reshape(-1, block) ** 2, axis=1) + 1e-12)
    loud = rms[rms > rms.max() * 10 ** (-40 / 20)]
    level = np.sqrt(np.mean(loud ** 2))
    y = x * (10 ** (target_db / 20) / level)
    peak = np.abs(y).max()
    limit = 10 ** (peak_db / 20)
    if peak > limit:
        y *= limit / peak
    return y.astype(np.float32)
