"""One loader for the rendered corpus and for external MusicCaps-style datasets.

- ``CorpusDataset(root, split)`` reads ``root/<split>.jsonl`` written by ``engine.data.build``: audio, captions,
  tags, the 25 Hz melody track and (optionally) the voice-like rendition.
- ``ExternalDataset(index_file)`` reads a folder of audio files described by a CSV or JSONL index with a caption
  column and either ``path`` (relative to the index's folder) or MusicCaps' ``ytid`` (the file is ``<ytid>.<ext>``
  in that folder); optional ``start_s``/``end_s`` crop the audio, as in MusicCaps.
- ``open_dataset(path, split)`` picks the right one, so training entry points take either.
Both yield ``Example``; external examples have no tags, melody or voice.
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..audio import AudioError, load_audio

SAMPLE_RATE = 24_000
AUDIO_EXTS = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aiff")


@dataclass
class Example:
    id: str
    audio: np.ndarray  # float32 mono [T] at sample_rate
    sample_rate: int
    caption: str
    captions: list[str]
    tags: dict | None = None
    melody_track: np.ndarray | None = None  # [frames] MIDI pitch at 25 Hz, 0 = no melody
    voice: np.ndarray | None = None  # float32 mono, voice-like rendition of the melody
    voice_rate: int | None = None


class CorpusDataset:
    def __init__(self, root: str | Path, split: str = "train", load_voice: bool = False):
        self.root = Path(root)
        index = self.root / f"{split}.jsonl"
        if not index.is_file():
            raise FileNotFoundError(f"{index} not found: build the corpus with "
                                    f"python -m engine.data.build --hours H --out {self.root}")
        self.records = [json.loads(line) for line in index.read_text().splitlines() if line.strip()]
        self.load_voice = load_voice

    def __len__(self) -> int:
        return len(self.records)

    @property
    def ids(self) -> list[str]:
        """Clip ids in index order, without reading any audio (caches are keyed by them)."""
        return [r["id"] for r in self.records]

    def __getitem__(self, i: int) -> Example:
        r = self.records[i]
        ex = Example(r["id"], load_audio(self.root / r["audio"], SAMPLE_RATE), SAMPLE_RATE, r["caption"],
                     r["captions"], r["tags"], np.asarray(r["melody"]["track"], dtype=np.int16))
        if self.load_voice:
            ex.voice_rate = int(r["voice_info"]["sample_rate"])
            ex.voice = load_audio(self.root / r["voice"], ex.voice_rate)
        return ex


class ExternalDataset:
    def __init__(self, index_file: str | Path, sample_rate: int = SAMPLE_RATE):
        self.index_file = Path(index_file)
        self.folder = self.index_file.parent
        self.sample_rate = sample_rate
        rows = self._read_index()
        self.rows, missing = [], []
        for row in rows:
            path = self._resolve(row)
            if path is None:
                missing.append(row.get("path") or row.get("ytid") or "?")
            else:
                self.rows.append((path, row))
        self.missing = missing
        if not self.rows:
            raise FileNotFoundError(f"none of the {len(rows)} files listed in {self.index_file} were found in "
                                    f"{self.folder} (first missing: {missing[:3]})")

    def _read_index(self) -> list[dict]:
        text = self.index_file.read_text(encoding="utf-8")
        if self.index_file.suffix.lower() in (".jsonl", ".json"):
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            rows = list(csv.DictReader(text.splitlines()))
        if not rows:
            raise ValueError(f"{self.index_file} lists no clips")
        if "caption" not in rows[0] or not ({"path", "ytid"} & set(rows[0])):
            raise ValueError(f"{self.index_file} needs a 'caption' column and a 'path' (or MusicCaps 'ytid') column; "
                             f"it has {sorted(rows[0])}")
        return rows

    def _resolve(self, row: dict) -> Path | None:
        if row.get("path"):
            p = Path(row["path"])
            p = p if p.is_absolute() else self.folder / p
            return p if p.is_file() else None
        for ext in AUDIO_EXTS:
            p = self.folder / f"{row['ytid']}{ext}"
            if p.is_file():
                return p
        return None

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def ids(self) -> list[str]:
        return [path.stem for path, _ in self.rows]

    def __getitem__(self, i: int) -> Example:
        path, row = self.rows[i]
        audio = load_audio(path, self.sample_rate)
        if row.get("start_s") not in (None, ""):
            a = int(float(row["start_s"]) * self.sample_rate)
            b = int(float(row["end_s"]) * self.sample_rate) if row.get("end_s") not in (None, "") else len(audio)
            audio = audio[a:b]
            if audio.size == 0:
                raise AudioError(f"{path.name}: start_s/end_s select no audio")
        caption = str(row["caption"])
        return Example(path.stem, audio, self.sample_rate, caption, [caption])


def open_dataset(path: str | Path, split: str = "train", **kw) -> CorpusDataset | ExternalDataset:
    path = Path(path)
    if path.is_dir():
        if (path / "build.json").is_file():
            return CorpusDataset(path, split, **kw)
        for name in ("captions.jsonl", "captions.csv", "musiccaps-public.csv", "metadata.csv", "index.jsonl"):
            if (path / name).is_file():
                return ExternalDataset(path / name)
        raise FileNotFoundError(f"{path} is neither a Cantus corpus (build.json) nor a folder with a caption index "
                                "(captions.csv / captions.jsonl)")
    return ExternalDataset(path)
