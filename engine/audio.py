"""Reading user and dataset audio: any common format, any sample rate, mono or multichannel, with readable errors;
and a stream's audio cut to a player's chunk size.

``load_audio`` returns float32 mono at the requested rate. Formats libsndfile reads (WAV, FLAC, OGG, MP3 with
libsndfile >= 1.1) are decoded directly; anything else goes through ffmpeg if it is installed. Problems raise
``AudioError`` with one sentence a person can act on.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import soundfile as sf


class AudioError(ValueError):
    """The file cannot be used as audio; the message says why in plain words."""


def resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    if sr_in == sr_out:
        return x.astype(np.float32, copy=False)
    import soxr

    return soxr.resample(x.astype(np.float32), sr_in, sr_out, quality="HQ").astype(np.float32)


def to_mono(x: np.ndarray) -> np.ndarray:
    return x.mean(axis=1) if x.ndim == 2 else x


def rechunk(chunks: Iterable[np.ndarray], size: int | None) -> Iterator[np.ndarray]:
    """The same audio in pieces of ``size`` samples, the last one shorter (None: as it comes, empty pieces left out).
    A player that pads short pieces with silence, or schedules them as whole chunks, then hears no gaps."""
    buf = np.zeros(0, dtype=np.float32)
    for chunk in chunks:
        buf = np.concatenate([buf, chunk])
        while len(buf) and len(buf) >= (size or 0):
            piece, buf = (buf, buf[:0]) if size is None else (buf[:size], buf[size:])
            yield piece
    if len(buf):
        yield buf


RATE_RANGE = (8_000, 192_000)  # sample rates a file may declare; outside them it is damaged or not audio


def _ffmpeg_decode(path: Path, sr: int, max_seconds: float | None) -> np.ndarray:
    """Decode with ffmpeg, which stops a second past ``max_seconds``: a long file is never decoded whole."""
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise AudioError(f"{path.name}: this format needs ffmpeg to decode (sudo apt-get install ffmpeg), "
                         "or convert it to WAV or FLAC first.")
    limit = ["-t", f"{max_seconds + 1:g}"] if max_seconds is not None else []
    proc = subprocess.run([exe, "-v", "error", "-nostdin", "-i", str(path), *limit, "-f", "f32le", "-ac", "1", "-ar",
                           str(sr), "-"], capture_output=True, timeout=600, check=False)
    if proc.returncode != 0 or not proc.stdout:
        raise AudioError(f"{path.name} is not a readable audio file (ffmpeg: "
                         f"{proc.stderr.decode(errors='replace').strip().splitlines()[-1:] or ['no audio stream']}).")
    x = np.frombuffer(proc.stdout, dtype=np.float32).copy()
    if max_seconds is not None and len(x) > max_seconds * sr:
        raise AudioError(f"{path.name} is longer than the limit of {max_seconds:.0f} s.")
    return x


def load_audio(path: str | os.PathLike, sr: int = 24_000, max_seconds: float | None = None) -> np.ndarray:
    """Float32 mono audio at ``sr``. Raises AudioError for missing, empty, corrupt, too long or non-audio files; the
    length and sample rate are read from the header before anything is decoded."""
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path} does not exist.")
    if path.stat().st_size == 0:
        raise AudioError(f"{path.name} is empty (0 bytes).")
    try:
        try:
            info = sf.info(str(path))
        except sf.LibsndfileError:
            x = _ffmpeg_decode(path, sr, max_seconds)
        else:
            if not RATE_RANGE[0] <= info.samplerate <= RATE_RANGE[1]:
                raise AudioError(f"{path.name} declares a sample rate of {info.samplerate} Hz; audio from "
                                 f"{RATE_RANGE[0] // 1000} to {RATE_RANGE[1] // 1000} kHz is accepted.")
            if max_seconds is not None and info.duration > max_seconds:
                raise AudioError(f"{path.name} is {info.duration:.0f} s long; the limit is {max_seconds:.0f} s.")
            try:
                x, file_sr = sf.read(str(path), dtype="float32", always_2d=False)
                x = resample(to_mono(x), file_sr, sr)
            except sf.LibsndfileError:  # a header libsndfile reads but a body it cannot: ffmpeg may
                x = _ffmpeg_decode(path, sr, max_seconds)
    except MemoryError:
        raise AudioError(f"{path.name} is too large to decode.") from None
    if x.size == 0:
        raise AudioError(f"{path.name} contains no audio samples.")
    if not np.all(np.isfinite(x)):
        raise AudioError(f"{path.name} contains invalid (NaN or infinite) samples.")
    return x
