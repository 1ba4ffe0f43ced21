"""Clip files for download: WAV, FLAC or MP3 with the prompt, seed and settings in the file's tags.

WAV and FLAC are written by libsndfile (soundfile), whose tags are title / comment / software; MP3 goes through
ffmpeg (Debian package ``ffmpeg``), with ID3 title and comment. The comment holds the JSON settings, so a file
found later still says how to reproduce it.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from .library import clean_text

FORMATS = ("wav", "flac", "mp3")


class ExportError(RuntimeError):
    pass


def describe(meta: dict) -> tuple[str, str]:
    """(title, comment) for the tags; no control characters (a NUL ends an ffmpeg argument), the JSON escaped."""
    title = clean_text(meta.get("name") or meta.get("prompt") or "", 200) or "Cantus clip"
    keep = {k: meta[k] for k in ("prompt", "story", "seed", "settings", "melody_file", "versions", "id") if k in meta}
    return title, json.dumps(keep, ensure_ascii=True)


def export(audio: np.ndarray, sr: int, meta: dict, fmt: str, out_dir: str | Path) -> Path:
    fmt = fmt.lower()
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}: choose {', '.join(FORMATS)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    title, comment = describe(meta)
    stem = "".join(ch if ch.isalnum() or ch in "-_ " else "_" for ch in title)[:60].strip() or "cantus"
    path = out_dir / f"{stem}-{meta.get('id', 'clip')}.{fmt}"
    audio = np.clip(np.asarray(audio, dtype=np.float32), -1, 1)
    if fmt in ("wav", "flac"):
        with sf.SoundFile(path, "w", sr, 1, subtype="PCM_16", format=fmt.upper()) as f:
            f.title, f.comment, f.software = title, comment, "Cantus"
            f.write(audio)
        return path
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise ExportError("MP3 export needs ffmpeg: sudo apt-get install ffmpeg (WAV and FLAC work without it)")
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "in.wav"
        sf.write(wav, audio, sr, subtype="PCM_16")
        r = subprocess.run([ffmpeg, "-y", "-loglevel", "error", "-i", str(wav), "-codec:a", "libmp3lame", "-b:a", "192k",
                            "-metadata", f"title={title}", "-metadata", f"comment={comment}", "-id3v2_version", "3",
                            str(path)], capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise ExportError(f"ffmpeg could not write the MP3: {r.stderr.strip()[:300]}")
    return path
