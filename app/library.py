"""The clip library: every generated clip on disk, atomically, with what it takes to reproduce it.

Layout: ``ROOT/<id>/audio.wav`` (24 kHz 16-bit) + ``ROOT/<id>/meta.json`` (prompt or story, melody file name,
seed, settings, model versions, created, name). A clip is written into ``ROOT/.tmp-<id>/`` and renamed into place in
one ``os.replace``: a crash mid-write leaves only a ``.tmp-`` folder, which listings ignore and the next start
removes; nothing already saved is touched. Renames rewrite ``meta.json`` through a temporary file and
``os.replace`` as well. Ids are 12 hex digits; any id from outside is checked against that pattern before it
touches the file system, so a request cannot reach outside the library.

Bundles (``export_bundle`` / ``import_bundle``) are zip files with ``audio.wav`` and ``meta.json``: another Cantus
install imports them and can regenerate the clip from its seed and settings.
"""
from __future__ import annotations

import io
import json
import math
import os
import re
import secrets
import shutil
import time
import unicodedata
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

SAMPLE_RATE = 24_000
_ID = re.compile(r"^[0-9a-f]{12}$")
MAX_BUNDLE_BYTES = 200 * 1024 * 1024
MAX_META_BYTES = 64 * 1024
MAX_CLIP_SECONDS = 1_200  # a 5-minute clip extended a few times; an import beyond this is refused
PROMPT_CHARS, NAME_CHARS = 2_000, 120
RATE_RANGE = (8_000, 192_000)


class LibraryError(ValueError):
    """A library operation that cannot be done; the message is meant for the user."""


def clean_text(value, limit: int) -> str:
    """Text from outside as the library keeps it: control characters and unpaired surrogates dropped (they break
    file tags and JSON), white space folded, at most ``limit`` characters."""
    text = "".join(ch for ch in str(value) if unicodedata.category(ch) not in ("Cc", "Cs", "Co", "Cn") or ch in "\t\n")
    return " ".join(text.split())[:limit]


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _short_json(v, limit: int) -> bool:
    try:
        return len(json.dumps(v, allow_nan=False)) <= limit
    except (TypeError, ValueError):
        return False


BLOCKS = "▁▂▃▄▅▆▇█"
SHAPE_CHARS = 24

# What a clip's meta.json may hold: key -> (check, what it must be). Anything else is dropped on import.
META_FIELDS = {
    "id": (lambda v: isinstance(v, str) and bool(_ID.match(v)), "a 12-digit hex id"),
    "name": (lambda v: isinstance(v, str) and len(v) <= NAME_CHARS, f"text of at most {NAME_CHARS} characters"),
    "prompt": (lambda v: isinstance(v, str) and len(v) <= 8 * PROMPT_CHARS, "text"),
    "story": (lambda v: v is None or (isinstance(v, list) and len(v) <= 64 and all(
        isinstance(s, dict) and isinstance(s.get("prompt"), str) and len(s["prompt"]) <= PROMPT_CHARS
        and _is_num(s.get("seconds")) for s in v)), "a list of prompts with seconds"),
    "melody_file": (lambda v: v is None or (isinstance(v, str) and len(v) <= 255), "a file name"),
    "reference_file": (lambda v: v is None or (isinstance(v, str) and len(v) <= 255), "a file name"),
    "melody_tokens": (lambda v: v is None or (isinstance(v, list) and len(v) <= 30_000 and all(
        isinstance(t, int) and not isinstance(t, bool) and 0 <= t < 13 for t in v)), "melody tokens (0-12)"),
    "hum_notes": (lambda v: v is None or (isinstance(v, list) and len(v) <= 5_000 and all(
        isinstance(n, list) and len(n) == 3 and isinstance(n[0], int) and 0 <= n[0] <= 127 and _is_num(n[1])
        and _is_num(n[2]) for n in v)), "the hum's notes (pitch, start, end)"),
    "seed": (lambda v: isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2 ** 63, "a whole number"),
    "settings": (lambda v: isinstance(v, dict) and len(v) <= 32 and all(
        isinstance(k, str) and (v[k] is None or isinstance(v[k], (bool, str)) or _is_num(v[k])) for k in v)
        and _short_json(v, 4096), "a table of settings"),
    "continues": (lambda v: v is None or (isinstance(v, str) and bool(_ID.match(v))), "a clip id"),
    "versions": (lambda v: isinstance(v, dict) and _short_json(v, 4096), "model versions"),
    "created": (lambda v: isinstance(v, str) and len(v) <= 40, "a date"),
    "seconds": (lambda v: _is_num(v) and 0 <= v <= MAX_CLIP_SECONDS, "a duration"),
    "generation_seconds": (lambda v: _is_num(v) and v >= 0, "a duration"),
    "imported": (lambda v: isinstance(v, bool), "true or false"),
    "controls": (lambda v: isinstance(v, dict) and _short_json(v, 1024), "the controls followed"),
    "analysis": (lambda v: isinstance(v, dict) and (v.get("bpm") is None or _is_num(v["bpm"]))
                 and (v.get("key") is None or isinstance(v["key"], str)) and _short_json(v, 512), "tempo and key"),
    "shape": (lambda v: isinstance(v, str) and len(v) <= SHAPE_CHARS and set(v) <= set(BLOCKS), "a level contour"),
    "loop": (lambda v: v is None or (isinstance(v, dict) and isinstance(v.get("bars"), int) and 1 <= v["bars"] <= 64
                                     and _short_json(v, 512)), "a loop's bars and tempo"),
}


def level_shape(audio: np.ndarray, n: int = SHAPE_CHARS) -> str:
    """The clip's loudness over time as ``n`` block characters ("▁▃▆█▇▅▂▁"): its waveform at a glance in the
    library's table. Each character is the RMS level of 1/n of the clip, from 36 dB below the loudest part (▁) up."""
    x = np.asarray(audio, dtype=np.float64)
    parts = np.array_split(x, min(n, max(1, len(x))))
    db = np.array([10 * np.log10(np.mean(p ** 2) + 1e-12) for p in parts])
    top = max(db.max(), -60.0)  # a silent clip stays at the bottom
    steps = np.clip((db - top + 36) / 36 * (len(BLOCKS) - 1), 0, len(BLOCKS) - 1)
    return "".join(BLOCKS[int(round(v))] for v in steps)


def check_meta(meta, drop_unknown: bool = False) -> dict:
    """``meta`` if every field has the type and size the app relies on (LibraryError naming the first that does
    not); with ``drop_unknown`` fields the app does not know are left out instead of refused."""
    if not isinstance(meta, dict):
        raise LibraryError("the clip description (meta.json) is not a table of fields")
    if not _short_json(meta, MAX_META_BYTES):
        raise LibraryError(f"the clip description (meta.json) is over {MAX_META_BYTES // 1024} KB or not plain JSON")
    out = {}
    for k, v in meta.items():
        if k not in META_FIELDS:
            if drop_unknown:
                continue
            raise LibraryError(f"the clip description has an unknown field {str(k)[:40]!r}")
        ok, what = META_FIELDS[k]
        if not ok(v):
            raise LibraryError(f"the clip description's {k!r} is not {what}")
        out[k] = v
    return out


def _fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable: the entry itself lives in the folder."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass
class Clip:
    id: str
    meta: dict
    audio_path: Path

    @property
    def name(self) -> str:
        return self.meta.get("name") or self.meta.get("prompt", "untitled")[:60]


def _check_id(clip_id: str) -> str:
    if not isinstance(clip_id, str) or not _ID.match(clip_id):
        raise LibraryError(f"there is no clip {str(clip_id)[:40]!r}")
    return clip_id


def _write_json(path: Path, obj: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=1, ensure_ascii=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


class ClipLibrary:
    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser()
        self.root.mkdir(parents=True, exist_ok=True)
        for stale in self.root.glob(".tmp-*"):  # left by a crash mid-save: never listed, safe to remove
            shutil.rmtree(stale, ignore_errors=True)

    # ---------------------------------------------------------------------------------------------- write
    def save(self, audio: np.ndarray, meta: dict, clip_id: str | None = None) -> Clip:
        audio = np.asarray(audio, dtype=np.float32)
        if audio.ndim != 1 or audio.size == 0 or not np.isfinite(audio).all():
            raise LibraryError("refusing to save an empty or invalid clip")
        if audio.size > MAX_CLIP_SECONDS * SAMPLE_RATE:
            raise LibraryError(f"a clip may last {MAX_CLIP_SECONDS // 60} minutes at most")
        clip_id = _check_id(clip_id) if clip_id else secrets.token_hex(6)
        if (self.root / clip_id).exists():
            raise LibraryError(f"a clip {clip_id} already exists")
        meta = check_meta({**meta, "id": clip_id, "created": meta.get("created") or time.strftime("%Y-%m-%dT%H:%M:%S"),
                           "seconds": round(len(audio) / SAMPLE_RATE, 2), "shape": level_shape(audio)})
        tmp = self.root / f".tmp-{clip_id}"
        tmp.mkdir()
        try:
            with open(tmp / "audio.wav", "wb") as f:
                sf.write(f, np.clip(audio, -1, 1), SAMPLE_RATE, subtype="PCM_16", format="WAV")
                f.flush()
                os.fsync(f.fileno())
            _write_json(tmp / "meta.json", meta)
            os.replace(tmp, self.root / clip_id)
            _fsync_dir(self.root)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return self.get(clip_id)

    def rename(self, clip_id: str, name: str) -> Clip:
        clip = self.get(clip_id)
        name = clean_text(name, NAME_CHARS)
        if not name:
            raise LibraryError("the new name is empty")
        _write_json(self.root / clip.id / "meta.json", {**clip.meta, "name": name})
        return self.get(clip.id)

    def delete(self, clip_id: str) -> None:
        """Removes a clip, a damaged one too (one ``get`` would refuse)."""
        d = self.root / _check_id(clip_id)
        if not d.is_dir():
            raise LibraryError(f"there is no clip {clip_id}")
        trash = self.root / f".tmp-del-{clip_id}"
        os.replace(d, trash)  # disappears from listings at once, then is removed
        _fsync_dir(self.root)
        shutil.rmtree(trash, ignore_errors=True)

    # ----------------------------------------------------------------------------------------------- read
    def get(self, clip_id: str) -> Clip:
        d = self.root / _check_id(clip_id)
        try:
            with open(d / "meta.json", "rb") as f:
                raw = f.read(MAX_META_BYTES + 1)
        except OSError:
            raise LibraryError(f"there is no clip {clip_id}") from None
        try:
            meta = check_meta(json.loads(raw.decode("utf-8")), drop_unknown=True)
            if meta.get("id", clip_id) != clip_id:
                raise LibraryError("its description names another clip")
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError, LibraryError) as e:
            raise LibraryError(f"clip {clip_id} is damaged ({e}); delete it or restore its meta.json") from None
        return Clip(clip_id, meta, d / "audio.wav")

    def scan(self, query: str = "") -> tuple[list[Clip], list[str]]:
        """(clips newest first, ids of damaged clips); ``query`` matches words of the name, prompt, seed, id, key
        ("a minor") or tempo ("120bpm"), case-insensitive. A damaged clip is reported, never a reason for the listing to fail."""
        words = query.lower().split()
        clips, damaged = [], []
        for d in self.root.iterdir():
            if d.is_dir() and _ID.match(d.name):
                try:
                    clip = self.get(d.name)
                except LibraryError:
                    damaged.append(d.name)
                    continue
                found = clip.meta.get("analysis") or {}
                text = " ".join([*(str(clip.meta.get(k, "")) for k in ("name", "prompt", "seed", "id")),
                                 str(found.get("key", "")), f"{found.get('bpm', 0):.0f}bpm" if found.get("bpm") else ""])
                text = text.lower()
                if all(w in text for w in words):
                    clips.append(clip)
        return sorted(clips, key=lambda c: c.meta.get("created", ""), reverse=True), sorted(damaged)

    def list(self, query: str = "") -> list[Clip]:
        """The clips ``scan`` finds, newest first."""
        return self.scan(query)[0]

    def audio(self, clip_id: str) -> np.ndarray:
        try:
            a, _ = sf.read(self.get(clip_id).audio_path, dtype="float32")
        except (sf.LibsndfileError, OSError):
            raise LibraryError(f"clip {clip_id}'s audio is damaged; delete it") from None
        return a

    # -------------------------------------------------------------------------------------------- bundles
    def export_bundle(self, clip_id: str) -> bytes:
        clip = self.get(clip_id)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            z.write(clip.audio_path, "audio.wav")
            z.writestr("meta.json", json.dumps(clip.meta, indent=1, ensure_ascii=False))
        return buf.getvalue()

    def import_bundle(self, data: bytes | str | Path) -> Clip:
        """A bundle from outside -> a new clip. Everything is checked before anything is written: the zip's entries
        (each name once), meta.json's size and fields, the audio's sample rate and length from its header."""
        if isinstance(data, (str, Path)):
            p = Path(data)
            if p.stat().st_size > MAX_BUNDLE_BYTES:
                raise LibraryError("that bundle is too large")
            data = p.read_bytes()
        try:
            meta, audio = _read_bundle(data)
        except MemoryError:
            raise LibraryError("that bundle is too large to read") from None
        return self.save(audio, {**meta, "imported": True})


def _read_bundle(data: bytes) -> tuple[dict, np.ndarray]:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            infos = z.infolist()
            names = [i.filename for i in infos]
            if not {"audio.wav", "meta.json"} <= set(names):
                raise LibraryError("not a Cantus clip bundle: it needs audio.wav and meta.json")
            if names.count("audio.wav") > 1 or names.count("meta.json") > 1:
                raise LibraryError("the bundle holds audio.wav or meta.json twice")
            if sum(i.file_size for i in infos) > MAX_BUNDLE_BYTES:
                raise LibraryError("that bundle is too large")
            if z.getinfo("meta.json").file_size > MAX_META_BYTES:
                raise LibraryError(f"the bundle's meta.json is over {MAX_META_BYTES // 1024} KB")
            meta = json.loads(z.read("meta.json").decode("utf-8"))
            wav = z.read("audio.wav")
        info = sf.info(io.BytesIO(wav))
        if not RATE_RANGE[0] <= info.samplerate <= RATE_RANGE[1]:
            raise LibraryError(f"the bundle's audio declares {info.samplerate} Hz; "
                               f"{RATE_RANGE[0] // 1000}-{RATE_RANGE[1] // 1000} kHz is accepted")
        if info.frames / info.samplerate > MAX_CLIP_SECONDS or not 1 <= info.channels <= 8:
            raise LibraryError(f"the bundle's audio lasts {info.frames / info.samplerate:.0f} s in {info.channels} "
                               f"channels; a clip is at most {MAX_CLIP_SECONDS} s")
        audio, sr = sf.read(io.BytesIO(wav), dtype="float32")
    except zipfile.BadZipFile:
        raise LibraryError("not a Cantus clip bundle (the file is not a zip archive)") from None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError, RuntimeError, EOFError, zlib.error,
            NotImplementedError, OSError, sf.LibsndfileError, ValueError) as e:
        if isinstance(e, LibraryError):
            raise
        raise LibraryError(f"the bundle is damaged: {str(e)[:200]}") from None
    if isinstance(meta, dict):  # what this library assigns itself is not taken from outside
        meta = {k: v for k, v in meta.items() if k not in ("id", "seconds", "imported")}
    meta = check_meta(meta, drop_unknown=True)
    if audio.ndim > 1:
        audio = audio.mean(1)
    if audio.size == 0 or not np.isfinite(audio).all():
        raise LibraryError("the bundle's audio is empty or invalid")
    if sr != SAMPLE_RATE:
        from engine import resample
        audio = resample(audio, sr, SAMPLE_RATE)
    return meta, audio
