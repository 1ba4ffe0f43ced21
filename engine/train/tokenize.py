"""Tokenise the corpus for the stages: ``python -m engine.train.tokenize --data runs/corpus --out runs/tokens``.

Per split, one cached file per token kind, named after the model version that made it, so a new codec (say)
re-tokenises only the codec codes:
- ``codec-<split>-<version>.pt``: [N, 8, 500] RVQ codes of each 10 s clip (shipped codec);
- ``semantic-<split>-<version>.pt``: [N, 250] semantic ids;
- ``mulan-<split>-<token key>.pt``: audio tokens [N, 12] and the text tokens of every caption [N, C, 12];
- ``melody-<split>.pt``: [N, 250] melody tokens of the score's melody (``tokens_from_midi`` of the 25 Hz track)
  and each clip's tempo in BPM (the beat grid the semantic stage is conditioned on) and key (``key_id``: what the
  semantic ids' key profile is fitted on), lead program, style and whether drums play (what the timbre profile
  is fitted on);
  with ``--track-voice``, also the tokens ``engine.melody`` tracks from the clip's voice-like rendition (hum /
  whistle / song): the function the app runs on a user's hum. Tracking costs ~8 s per 10 s clip on 2 busy cores
  (PESTO's convolutions, two passes), ~8 h for the corpus, so training uses the score tokens with the tracker's
  measured error modes simulated (``engine.train.stage``), and tracked tokens serve evaluation.
Front-end features come from MuLan's cache (``--features``). A corpus grown in place (``engine.data.build`` with more
``--hours`` into the same folder) re-uses every cache: features and codec codes of the clips it already had are kept,
only the new clips are computed, and the cheap token files are remade for the new clip list.
``load(out, split, versions)`` gathers them.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..codec import Codec
from ..data.dataset import CorpusDataset
from ..melody import MelodyError, melody_from_audio, tokens_from_midi
from ..mulan import MuLan
from ..semantic import SemanticTokenizer
from ..semantic.keys import key_id
from .mulan.features import build_features

N_FRAMES = 250  # 10 s at 25 Hz
SAVE_EVERY = 500  # clips encoded between partial saves of the codec cache


def _save(obj, path: Path) -> None:
    torch.save(obj, path.with_suffix(".tmp"))
    os.replace(path.with_suffix(".tmp"), path)


def _cache(path: Path) -> dict | None:
    return torch.load(path, weights_only=False) if path.exists() else None


@torch.inference_mode()
def codec_tokens(data: str, split: str, codec: Codec, out: Path) -> Path:
    """Encode every clip of the split; a cache made on an earlier, smaller build of the corpus (``build --hours``
    grown in place) keeps its clips' codes and only the new clips are encoded (measured: the 2,899 train clips that
    growing the corpus from 10 h to 20 h added took 21 min on one thread, the other core busy). The cache is also
    saved every ``SAVE_EVERY`` clips, so an interrupted run loses at most that many."""
    path = out / f"codec-{split}-{codec.cfg.version}.pt"
    ds = CorpusDataset(data, split)
    ids, old = ds.ids, _cache(path)
    if old is not None and old["ids"] == ids:
        return path
    known = dict(zip(old["ids"], old["codes"])) if old is not None else {}
    todo = [i for i, c in enumerate(ids) if c not in known]
    for n, i in enumerate(tqdm(todo, desc=f"codec {split}" + (f" ({len(known)} clips cached)" if known else "")), 1):
        a = torch.from_numpy(np.pad(ds[i].audio, (0, 240_000))[:240_000])[None]
        known[ids[i]] = codec.encode(a)[0, :, :500].to(torch.int16)
        if n % SAVE_EVERY == 0 and n < len(todo):  # an interrupted run resumes from here (the 50 h train split: 44 min)
            _save({"ids": list(known), "codes": torch.stack(list(known.values()))}, path)
    _save({"ids": ids, "codes": torch.stack([known[c] for c in ids])}, path)
    return path


@torch.inference_mode()
def semantic_tokens(feats: dict, split: str, sem: SemanticTokenizer, out: Path) -> Path:
    path = out / f"semantic-{split}-{sem.cfg.version}.pt"
    old = _cache(path)
    if old is None or old["ids"] != feats["ids"]:  # absent, or made from an earlier build of the corpus
        ids = torch.cat([sem.tokens_from_features(feats["frames"][i:i + 64].float()) for i in range(0, len(feats["ids"]), 64)])
        _save({"ids": feats["ids"], "tokens": ids.to(torch.int16)}, path)
    return path


@torch.inference_mode()
def mulan_tokens(feats: dict, split: str, mulan: MuLan, out: Path) -> Path:
    path = out / f"mulan-{split}-{mulan.cfg.token_key}.pt"
    old = _cache(path)
    if old is None or old["ids"] != feats["ids"]:
        audio = torch.cat([mulan.audio(feats["frames"][i:i + 256].float(), feats["global"][i:i + 256])
                           for i in range(0, len(feats["ids"]), 256)])
        t = feats["text"].float()
        text = mulan.text(t.view(-1, t.shape[-1]))
        _save({"ids": feats["ids"], "audio": mulan.tokens(audio).to(torch.int16),
               "text": mulan.tokens(text).view(t.shape[0], t.shape[1], -1).to(torch.int16)}, path)
    return path


def melody_tokens(data: str, split: str, out: Path, track_voice: int = 0) -> Path:
    """Score tokens for every clip; tracked-hum tokens for the first ``track_voice`` clips (-1 = all)."""
    path = out / f"melody-{split}.pt"
    ds = CorpusDataset(data, split, load_voice=True)
    old = _cache(path)
    if old is not None and old["ids"] == ds.ids and "style" in old and old.get("n_tracked", 0) >= track_voice >= 0:
        return path
    truth = np.zeros((len(ds), N_FRAMES), dtype=np.int16)
    for i, r in enumerate(ds.records):
        t = tokens_from_midi(np.asarray(r["melody"]["track"], dtype=float))[:N_FRAMES]
        truth[i, : len(t)] = t
    n = len(ds) if track_voice < 0 else min(track_voice, len(ds))
    done = 0  # hums an earlier file of the same clips tracked already (hours of work) are kept
    if old is not None and old["ids"] == ds.ids:
        n, done = max(n, old.get("n_tracked", 0)), old.get("n_tracked", 0)
    tracked, failed = np.zeros((n, N_FRAMES), dtype=np.int16), old.get("failed", 0) if done else 0
    if done:
        tracked[:done] = old["tracked"].numpy()
    for i in tqdm(range(done, n), desc=f"tracking hums {split}", disable=n == done):
        ex = ds[i]
        try:
            t = melody_from_audio(ex.voice, ex.voice_rate).tokens[:N_FRAMES]
            tracked[i, : len(t)] = t
        except MelodyError:
            failed += 1
    tempo = torch.tensor([float(r["tags"]["tempo"]) for r in ds.records])
    key = torch.tensor([key_id(r["tags"]["tonic"], r["tags"]["mode"]) for r in ds.records])
    lead = torch.tensor([int(r["tags"]["programs"]["lead"]) for r in ds.records])
    drums = torch.tensor([bool(r["tags"]["programs"].get("drums") is not None) for r in ds.records])
    _save({"ids": [r["id"] for r in ds.records], "tokens": torch.from_numpy(truth), "tempo": tempo, "key": key,
           "lead": lead, "drums": drums, "style": [r["tags"]["style"] for r in ds.records],
           "n_tracked": n, "tracked": torch.from_numpy(tracked), "failed": failed}, path)
    return path


def load(out: Path, split: str, versions: dict, codec: bool = True, mulan_key: str | None = None) -> dict:
    """-> {"ids", "codec" [N,8,500], "semantic" [N,250], "mulan_audio" [N,12], "mulan_text" [N,C,12], "melody" [N,250],
    "tempo" [N] BPM}
    (no "codec" when ``codec`` is False: the semantic stage does not need it). ``mulan_key``: the MuLan's
    ``cfg.token_key`` (default: its version)."""
    s = torch.load(out / f"semantic-{split}-{versions['semantic']}.pt", weights_only=False)
    m = torch.load(out / f"mulan-{split}-{mulan_key or versions['mulan']}.pt", weights_only=False)
    mel = torch.load(out / f"melody-{split}.pt", weights_only=False)
    assert s["ids"] == m["ids"] == mel["ids"], f"token files of {split} disagree on the clips"
    tok = {"ids": s["ids"], "semantic": s["tokens"].long(), "mulan_audio": m["audio"].long(),
           "mulan_text": m["text"].long(), "melody": mel["tokens"].long(), "tempo": mel["tempo"].float()}
    if codec:
        c = torch.load(out / f"codec-{split}-{versions['codec']}.pt", weights_only=False)
        assert c["ids"] == s["ids"], f"codec tokens of {split} are of other clips"
        tok["codec"] = c["codes"].long()
    return tok


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m engine.train.tokenize", description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="runs/corpus")
    ap.add_argument("--features", type=Path, default=Path("runs/mulan"))
    ap.add_argument("--out", type=Path, default=Path("runs/tokens"))
    ap.add_argument("--codec", default="assets/codec")
    ap.add_argument("--mulan", default="assets/mulan")
    ap.add_argument("--semantic", default="assets/semantic")
    ap.add_argument("--only", nargs="+", default=["codec", "semantic", "mulan", "melody"])
    ap.add_argument("--splits", nargs="+", default=["train", "valid", "test"])
    ap.add_argument("--track-voice", type=int, default=0, help="test clips whose hums are tracked too (-1 = all)")
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    a.out.mkdir(parents=True, exist_ok=True)
    for split in a.splits:
        if "semantic" in a.only or "mulan" in a.only:
            feats = build_features(a.data, split, a.features, 3)
        if "semantic" in a.only:
            print(semantic_tokens(feats, split, SemanticTokenizer.load(a.semantic), a.out))
        if "mulan" in a.only:
            print(mulan_tokens(feats, split, MuLan.load(a.mulan), a.out))
        if "melody" in a.only:
            print(melody_tokens(a.data, split, a.out, a.track_voice if split == "test" else 0))
        if "codec" in a.only:
            print(codec_tokens(a.data, split, Codec.load(a.codec).eval(), a.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
