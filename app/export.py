"""Clip files for download: WAV, FLAC or MP3 with the prompt, seed and settings in the file's tags, and the clip's
tempo and key where DAWs read them.

WAV and FLAC are written by libsndfile (soundfile), whose tags are title / comment / software; MP3 goes through
ffmpeg (Debian package ``ffmpeg``), with ID3 title and comment. The comment holds the JSON settings, so a file
found later still says how to reproduce it. The clip's analysed tempo and key (``meta["analysis"]``) are then added
with mutagen: ID3 TBPM and TKEY (in an ``id3 `` chunk of the WAV, and in the MP3), Vorbis BPM and INITIALKEY in
the FLAC. TKEY is written as ID3 spells keys ("Am", "F#", "Dbm").

MIDI (``export_midi``): the clip transcribed (``engine.clip_midi``: melody, all notes, and the hum's notes when it
was hummed), at the loop's exact tempo, else the detected one, in the key it was asked for, else the detected one.
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
    keep = {k: meta[k] for k in ("prompt", "story", "seed", "settings", "controls", "analysis", "melody_file",
                                 "versions", "id") if k in meta}
    return title, json.dumps(keep, ensure_ascii=True)


def file_name(meta: dict, ext: str) -> str:
    """"<title>-<id>.<ext>", the title cut to 60 safe characters."""
    stem = "".join(ch if ch.isalnum() or ch in "-_ " else "_" for ch in describe(meta)[0])[:60].strip() or "cantus"
    return f"{stem}-{meta.get('id', 'clip')}.{ext}"


def export(audio: np.ndarray, sr: int, meta: dict, fmt: str, out_dir: str | Path) -> Path:
    fmt = fmt.lower()
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}: choose {', '.join(FORMATS)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    title, comment = describe(meta)
    path = out_dir / file_name(meta, fmt)
    audio = np.clip(np.asarray(audio, dtype=np.float32), -1, 1)
    if fmt in ("wav", "flac"):
        with sf.SoundFile(path, "w", sr, 1, subtype="PCM_16", format=fmt.upper()) as f:
            f.title, f.comment, f.software = title, comment, "Cantus"
            f.write(audio)
        _tempo_and_key(path, fmt, meta.get("analysis") or {})
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
    _tempo_and_key(path, fmt, meta.get("analysis") or {})
    return path


def export_midi(audio: np.ndarray, meta: dict, out_dir: str | Path, assets: str | Path = "assets") -> Path:
    """The clip as a .mid file beside its audio downloads (ExportError when the transcriber is not installed)."""
    from engine import clip_midi

    analysis, loop = meta.get("analysis") or {}, meta.get("loop") or {}
    bpm = loop.get("bpm") or analysis.get("bpm") or 120.0
    key = (meta.get("controls") or {}).get("key") or analysis.get("key")
    path = Path(out_dir) / file_name(meta, "mid")
    if path.exists():  # a clip's audio never changes: shown again, it is not transcribed again
        return path
    try:
        return clip_midi(path, audio, min(max(bpm, 20), 400), key,
                         meta.get("hum_notes"), assets)
    except FileNotFoundError as e:
        raise ExportError(f"MIDI export needs the transcriber's weights: {e}") from None


def id3_key(key: str) -> str:
    """"A minor" -> "Am", "F# major" -> "F#" (ID3's TKEY: at most three characters)."""
    note, _, mode = key.partition(" ")
    return note + ("m" if mode == "minor" else "")


def _tempo_and_key(path: Path, fmt: str, analysis: dict) -> None:
    bpm, key = analysis.get("bpm"), analysis.get("key")
    if bpm is None and key is None:
        return
    if fmt == "flac":
        from mutagen.flac import FLAC
        f = FLAC(path)
        if bpm is not None:
            f["BPM"] = str(round(bpm))
        if key is not None:
            f["INITIALKEY"] = id3_key(key)
        f.save()
        return
    from mutagen.id3 import ID3, TBPM, TKEY
    if fmt == "wav":
        from mutagen.wave import WAVE
        f = WAVE(path)
        if f.tags is None:
            f.add_tags()
        tags = f.tags
    else:
        f, tags = None, ID3(path)
    if bpm is not None:
        tags.add(TBPM(encoding=3, text=str(round(bpm))))
    if key is not None:
        tags.add(TKEY(encoding=3, text=id3_key(key)))
    if f is not None:
        f.save()
    else:
        tags.save(path, v2_version=3)
