"""What every MuLan phase reads: the corpus's front-end features and caption embeddings, cached once per split in
``FEATURES/features-<split>.pt`` (the corpus's 3 captions plus ``paraphrases`` more written from the clip's tags, train
only, so one clip is seen under many wordings), and the short prompts made from each train clip's tags."""
from __future__ import annotations

import os
import zlib
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ... import spectral
from ...data.captions import make_caption, make_short_prompt
from ...data.dataset import open_dataset
from ...mulan import MuLan, evaluate
from ...mulan.text import DIM as TEXT_DIM
from ...mulan.text import encode_sentences


def frozen_start(a, valid_split: str = "valid") -> tuple[MuLan, dict, dict | None]:
    """What the phases on a frozen MuLan start from: ``a.init`` loaded, the train and validation features, and the
    train clips' short prompts (``a.per_clip`` of them, None for 0); the run's folder made, the seed set."""
    torch.manual_seed(a.seed)
    Path(a.out).mkdir(parents=True, exist_ok=True)
    feats = {s: build_features(a.data, s, Path(a.features), 3 if s == "train" else 0) for s in ("train", valid_split)}
    short = short_prompts(feats["train"], a.per_clip, Path(a.features)) if a.per_clip else None
    return MuLan.load(a.init), feats, short


def selection(m: dict) -> float:
    """What a MuLan is selected and shipped by (higher is better): the mean of validation recall@10 and the
    zero-shot tag accuracies."""
    return float(np.mean([v for k, v in m.items() if k == "recall@10" or k.startswith("zero_shot")]))


def build_features(data: str, split: str, out: Path, paraphrases: int) -> dict:
    """The split's features, cached in ``out/features-<split>.pt``. A cache of an earlier, smaller build of the
    corpus keeps the clips it has (front end and caption embeddings: MiniLM on the 20 h corpus's captions took 13 min
    on one thread); only the new clips are computed."""
    path = out / f"features-{split}.pt"
    ds = open_dataset(data, split)
    ids = ds.ids
    old = torch.load(path, weights_only=False) if path.exists() else None
    if old is not None and old["ids"] == ids:
        return old
    out.mkdir(parents=True, exist_ok=True)
    known = {c: j for j, c in enumerate(old["ids"])} if old is not None and len(set(ids)) == len(ids) else {}
    frames, glob, caps, tags, new = [], [], [], [], []
    for i in tqdm(range(len(ds)), desc=f"features {split}" + (f" ({len(known)} clips cached)" if known else "")):
        if ids[i] in known:
            j = known[ids[i]]
            frames.append(old["frames"][j])
            glob.append(old["global"][j])
            caps.append(old["captions"][j])
            tags.append(old["tags"][j])
            continue
        ex = ds[i]
        a = torch.from_numpy(ex.audio[: int(10 * spectral.SAMPLE_RATE)])[None]
        frames.append(spectral.frames(a, 250)[0].half())
        glob.append(spectral.global_features(a)[0])
        c = list(ex.captions)
        if ex.tags is not None and split == "train":
            rng = np.random.default_rng(zlib.crc32(ex.id.encode()))
            c += [make_caption(ex.tags, rng) for _ in range(paraphrases)]
        caps.append(c)
        tags.append(ex.tags)
        new.append(i)
    n_caps = min(len(c) for c in caps)
    if old is not None and known:
        n_caps = min(n_caps, old["text"].shape[1])
    flat = [c for i in new for c in caps[i][:n_caps]]
    fresh = torch.from_numpy(encode_sentences(flat, progress=True)).view(len(new), n_caps, -1).half() if new else None
    rows = {i: k for k, i in enumerate(new)}
    text = torch.stack([fresh[rows[i]] if i in rows else old["text"][known[ids[i]], :n_caps] for i in range(len(ds))])
    feats = {"frames": torch.stack(frames), "global": torch.stack(glob), "text": text, "captions": caps,
             "tags": tags, "ids": ids}
    torch.save(feats, path.with_suffix(".tmp"))
    os.replace(path.with_suffix(".tmp"), path)
    return feats


def embed_texts(model: MuLan, sentences: torch.Tensor) -> torch.Tensor:
    """Cached MiniLM embeddings [N, C, 384] (a clip's captions or short prompts) -> MuLan text embeddings [N, C, D]."""
    t = sentences.float()
    return model.text(t.reshape(-1, t.shape[-1])).view(t.shape[0], t.shape[1], -1)


@torch.inference_mode()
def embed_split(model: MuLan, feats: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """-> (audio [N, D] on the full 10 s, text [N, C, D] for every caption)."""
    model.eval()
    audio = torch.cat([model.audio(feats["frames"][i:i + 256].float(), feats["global"][i:i + 256])
                       for i in range(0, len(feats["frames"]), 256)])
    text = embed_texts(model, feats["text"])
    model.train()
    return audio, text


def score(model: MuLan, feats: dict, n: int | None = None) -> dict:
    audio, text = embed_split(model, feats)
    n = n or len(audio)
    m = {"recall@10": evaluate.retrieval(text[:n, 0], audio[:n]), "n_clips": n}
    if feats["tags"][0] is not None:
        m.update({f"zero_shot_{k}": v for k, v in evaluate.zero_shot(model, audio[:n], feats["tags"][:n]).items()})
    return m


def short_prompts(feats: dict, per_clip: int, out: Path) -> dict:
    """Cached MiniLM embeddings of ``per_clip`` short prompts per clip, with the aspects each names, row for row with
    ``feats["ids"]``. A cache of another clip list (a corpus grown in place) keeps the clips it has; only the others'
    prompts are made and embedded (a clip's prompts depend on its id and tags alone); a cache that does not record
    its clip list is remade."""
    path = out / f"short-prompts-{per_clip}.pt"
    old = torch.load(path, weights_only=False) if path.exists() else None
    ids = list(feats["ids"])
    if old is not None and old.get("ids") == ids:
        return old
    known = {c: j for j, c in enumerate(old["ids"])} if old is not None and "ids" in old else {}
    made = {}  # clip id -> its [(prompt, aspects named)], for the clips the cache lacks
    for cid, tags in zip(ids, feats["tags"]):
        if cid not in known:
            rng = np.random.default_rng(zlib.crc32(("short " + cid).encode()))
            made[cid] = [make_short_prompt(tags, rng) for _ in range(per_clip)]
    flat = [t for pairs in made.values() for t, _ in pairs]
    emb = dict(zip(made, torch.from_numpy(encode_sentences(flat, progress=True)).view(-1, per_clip, TEXT_DIM).half()))
    text, named, prompts = [], [], []
    for cid in ids:
        if cid in known:
            j = known[cid]
            text.append(old["text"][j])
            named.append(old["named"][j])
            prompts += old["prompts"][j * per_clip:(j + 1) * per_clip]
        else:
            text.append(emb[cid])
            named.append([n for _, n in made[cid]])
            prompts += [t for t, _ in made[cid]]
    blob = {"text": torch.stack(text), "named": named, "prompts": prompts, "ids": ids}
    out.mkdir(parents=True, exist_ok=True)
    torch.save(blob, path.with_suffix(".tmp"))
    os.replace(path.with_suffix(".tmp"), path)
    return blob
