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
import os
import re
import secrets
import shutil
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

SAMPLE_RATE = 24_000
_ID = re.compile(r"^[0-9a-f]{12}$")
MAX_BUNDLE_BYTES = 200 * 1024 * 1024


class LibraryError(ValueError):
    """A library operation that cannot be done; the message is meant for the user."""


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
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1, ensure_ascii=False)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


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
        clip_id = _check_id(clip_id) if clip_id else secrets.token_hex(6)
        if (self.root / clip_id).exists():
            raise LibraryError(f"a clip {clip_id} already exists")
        tmp = self.root / f".tmp-{clip_id}"
        tmp.mkdir()
        try:
            with open(tmp / "audio.wav", "wb") as f:
                sf.write(f, np.clip(audio, -1, 1), SAMPLE_RATE, subtype="PCM_16", format="WAV")
                f.flush()
                os.fsync(f.fileno())
            meta = {**meta, "id": clip_id, "created": meta.get("created") or time.strftime("%Y-%m-%dT%H:%M:%S"),
                    "seconds": round(len(audio) / SAMPLE_RATE, 2)}
            _write_json(tmp / "meta.json", meta)
            os.replace(tmp, self.root / clip_id)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return self.get(clip_id)

    def rename(self, clip_id: str, name: str) -> Clip:
        clip = self.get(clip_id)
        name = " ".join(str(name).split())[:120]
        if not name:
            raise LibraryError("the new name is empty")
        _write_json(self.root / clip.id / "meta.json", {**clip.meta, "name": name})
        return self.get(clip.id)

    def delete(self, clip_id: str) -> None:
        clip = self.get(clip_id)
        trash = self.root / f".tmp-del-{clip.id}"
        os.replace(self.root / clip.id, trash)  # disappears from listings at once, then is removed
        shutil.rmtree(trash, ignore_errors=True)

    # ----------------------------------------------------------------------------------------------- read
    def get(self, clip_id: str) -> Clip:
        d = self.root / _check_id(clip_id)
        try:
            meta = json.loads((d / "meta.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            raise LibraryError(f"there is no clip {clip_id}") from None
        return Clip(clip_id, meta, d / "audio.wav")

    def list(self, query: str = "") -> list[Clip]:
        """Newest first; ``query`` matches words of the name, prompt, seed or id (case-insensitive)."""
        words = query.lower().split()
        clips = []
        for d in self.root.iterdir():
            if d.is_dir() and _ID.match(d.name):
                try:
                    clip = self.get(d.name)
                except LibraryError:
                    continue
                text = " ".join(str(clip.meta.get(k, "")) for k in ("name", "prompt", "seed", "id")).lower()
                if all(w in text for w in words):
                    clips.append(clip)
        return sorted(clips, key=lambda c: c.meta.get("created", ""), reverse=True)

    def audio(self, clip_id: str) -> np.ndarray:
        a, _ = sf.read(self.get(clip_id).audio_path, dtype="float32")
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
        if isinstance(data, (str, Path)):
            p = Path(data)
            if p.stat().st_size > MAX_BUNDLE_BYTES:
                raise LibraryError("that bundle is too large")
            data = p.read_bytes()
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as z:
                names = set(z.namelist())
                if not {"audio.wav", "meta.json"} <= names:
                    raise LibraryError("not a Cantus clip bundle: it needs audio.wav and meta.json")
                if sum(i.file_size for i in z.infolist()) > MAX_BUNDLE_BYTES:
                    raise LibraryError("that bundle is too large")
                meta = json.loads(z.read("meta.json").decode("utf-8"))
                audio, sr = sf.read(io.BytesIO(z.read("audio.wav")), dtype="float32")
        except zipfile.BadZipFile:
            raise LibraryError("not a Cantus clip bundle (the file is not a zip archive)") from None
        except (json.JSONDecodeError, UnicodeDecodeError, RuntimeError, sf.LibsndfileError) as e:
            raise LibraryError(f"the bundle is damaged: {e}") from None
        if not isinstance(meta, dict):
            raise LibraryError("the bundle's meta.json is not a clip description")
        if audio.ndim > 1:
            audio = audio.mean(1)
        if sr != SAMPLE_RATE:
            from engine import resample
            audio = resample(audio, sr, SAMPLE_RATE)
        meta = {k: v for k, v in meta.items() if k not in ("id", "seconds")}
        meta["imported"] = True
        return self.save(audio, meta)
