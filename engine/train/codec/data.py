"""Training audio for the codec phases: random crops of the corpus (``CropSampler``), and aligned (codes, audio)
windows of clips whose codes a frozen encoder made (``CodeWindows``), for the phases that keep the codes."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ...audio import resample
from ...codec.model import Codec, frame_ids
from ...data.dataset import CorpusDataset

CLIP_SAMPLES = 240_000  # the 10 s clips the tokenize cache encodes


class CropSampler:
    """All training audio held in memory as int16; random fixed-length crops, deterministic per (seed, step)."""

    def __init__(self, dataset, seconds: float, seed: int, progress: bool = True):
        self.audio = []
        for i in tqdm(range(len(dataset)), desc="loading audio", disable=not progress):
            a = dataset[i].audio
            self.audio.append((np.clip(a, -1, 1) * 32767).astype(np.int16))
        self.length = int(seconds * dataset[0].sample_rate) if len(dataset) else 0
        self.seed = seed

    def batch(self, step: int, size: int, rank: int = 0) -> torch.Tensor:
        rng = np.random.default_rng([self.seed, step, rank])
        out = np.zeros((size, self.length), dtype=np.float32)
        for b in range(size):
            a = self.audio[int(rng.integers(len(self.audio)))]
            start = int(rng.integers(0, max(1, len(a) - self.length)))
            seg = a[start:start + self.length].astype(np.float32) / 32767
            out[b, :len(seg)] = seg * float(10 ** rng.uniform(-0.5, 0.25))  # level augmentation -10..+5 dB
        return torch.from_numpy(out)



def encoded_pool(data: str, tokens: Path, codec: Codec, semantic, n_clips: int, voice: bool,
                 progress: bool = True) -> tuple:
    """(codes [N, K, F], semantic ids [N, S] or None, int16 audio) of the first ``n_clips`` train clips, their
    voice-like renditions with ``voice``, encoded by ``codec``'s frozen encoder (what a round trip gives) with their
    semantic ids, cached in ``tokens/codec-{voice|mix}-train-<version>.pt`` (made again when it holds other clips or
    other ids). Without a tokenize cache this is how the mixes get their codes too (``--mix-clips``)."""
    path = Path(tokens) / f"codec-{'voice' if voice else 'mix'}-train-{codec.cfg.version}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    sem_version = semantic.cfg.version if semantic is not None else ""
    ds = CorpusDataset(data, "train", load_voice=voice)
    ids = ds.ids[:n_clips]
    cache = torch.load(path, weights_only=False) if path.exists() else None
    fresh = cache is None or cache["ids"] != ids or cache["semantic_version"] != sem_version
    codes, sem, audio = [], [], []
    for j in tqdm(range(len(ids)), desc="voice renditions" if voice else "mixes", disable=not progress):
        ex = ds[j]
        a = resample(ex.voice, ex.voice_rate, codec.sample_rate) if voice else ex.audio
        a = np.pad(a, (0, CLIP_SAMPLES))[:CLIP_SAMPLES]
        audio.append((np.clip(a, -1, 1) * 32767).astype(np.int16))
        if fresh:
            with torch.inference_mode():
                x = torch.from_numpy(a.astype(np.float32))[None]
                codes.append(codec.encode(x)[0, :, :CLIP_SAMPLES // codec.cfg.hop].to(torch.int16))
                sem.append(semantic.encode(x)[0].to(torch.int16) if semantic is not None else torch.zeros(0))
    if fresh:
        cache = {"ids": ids, "codes": torch.stack(codes), "semantic": torch.stack(sem),
                 "semantic_version": sem_version}
        torch.save(cache, path.with_suffix(".tmp"))
        os.replace(path.with_suffix(".tmp"), path)
    return cache["codes"].long(), cache["semantic"].long() if semantic is not None else None, audio



class CodeWindows:
    """Aligned (codes, delayed audio) windows of the train split: codes from the tokenize cache, audio as int16."""

    def __init__(self, data: str, tokens: Path, version: str, hop: int, progress: bool = True,
                 semantic_version: str | None = None, pool: tuple | None = None):
        """The train split's tokenize cache, or (``pool``) an ``encoded_pool`` of the mixes instead."""
        self.hop = hop
        if pool is not None:
            self.pools = [pool]
            return

        def cached(path: Path) -> dict:
            if not path.exists():
                raise SystemExit(f"{path} is missing: run python -m engine.train.tokenize --data {data} --out {tokens}"
                                 " (or pass --mix-clips N to encode N train clips here)")
            return torch.load(path, weights_only=False)
        blob = cached(tokens / f"codec-train-{version}.pt")
        semantic = None  # [N, S] at 25 Hz
        if semantic_version is not None:
            sem = cached(tokens / f"semantic-train-{semantic_version}.pt")
            if sem["ids"] != blob["ids"]:
                raise SystemExit(f"the cached semantic ids and codec codes in {tokens} are of other clips: re-tokenise")
            semantic = sem["tokens"].long()
        ds = CorpusDataset(data, "train")
        by_id = {r["id"]: i for i, r in enumerate(ds.records)}
        audio = []
        for cid in tqdm(blob["ids"], desc="loading audio", disable=not progress):
            a = ds[by_id[cid]].audio
            audio.append((np.clip(a, -1, 1) * 32767).astype(np.int16))
        self.pools = [(blob["codes"].long(), semantic, audio)]  # (codes [N, K, F], ids [N, S] or None, audio)

    def add_voice(self, data: str, tokens: Path, codec: Codec, semantic, n_clips: int, progress: bool = True) -> None:
        """A second pool of windows: the voice-like renditions (hums, whistles, songs) of the first ``n_clips`` train
        clips (``encoded_pool``)."""
        self.pools.append(encoded_pool(data, tokens, codec, semantic, n_clips, voice=True, progress=progress))

    def batch(self, rng: np.random.Generator, size: int, frames: int, delay: int, cond_absent: int = 0,
              cond_dropout: float = 0.0, voice_share: float = 0.0, with_source: bool = False) -> tuple:
        """-> codes [B, K, frames], the delayed audio, and (with semantic ids) one id per frame [B, frames],
        all 'absent' (``cond_absent``) in a ``cond_dropout`` share of the windows; a ``voice_share`` of the windows
        come from the voice renditions (``add_voice``). ``with_source``: also the audio the codes were encoded from
        (the same window undelayed), for training an encoder, and which windows are renditions [B] bool."""
        K = self.pools[0][0].shape[1]
        codes = torch.empty(size, K, frames, dtype=torch.long)
        cond = None if self.pools[0][1] is None else torch.full((size, frames), cond_absent, dtype=torch.long)
        audio = np.zeros((size, frames * self.hop), dtype=np.float32)
        source = np.zeros_like(audio) if with_source else None
        from_voice = np.zeros(size, dtype=bool)
        for b in range(size):
            from_voice[b] = len(self.pools) > 1 and rng.random() < voice_share
            pool = self.pools[1] if from_voice[b] else self.pools[0]
            all_codes, all_sem, all_audio = pool
            n, _, F = all_codes.shape
            i, s = int(rng.integers(n)), int(rng.integers(0, F - frames + 1))
            codes[b] = all_codes[i, :, s:s + frames]
            if cond is not None and rng.random() >= cond_dropout:
                cond[b] = frame_ids(all_sem[i:i + 1], F, cond_absent)[0, s:s + frames]
            lo = s * self.hop - delay  # output sample 0 of this window shows input sample lo
            a = all_audio[i][max(0, lo): lo + frames * self.hop].astype(np.float32) / 32767
            audio[b, max(0, -lo): max(0, -lo) + len(a)] = a
            if source is not None:
                source[b] = all_audio[i][s * self.hop: (s + frames) * self.hop].astype(np.float32) / 32767
        if source is not None:
            return codes, torch.from_numpy(audio), cond, torch.from_numpy(source), torch.from_numpy(from_voice)
        return codes, torch.from_numpy(audio), cond
