"""A corpus clip as the drum remover learns from it: re-rendered from its plan as two stems, the drums and everything
else (unnormalised, then scaled by the gain that normalised their mix, so they add up to it); ``prepare`` makes a
split's drummed clips and a share of drumless ones (whose rest is the whole mix), the mix after a round trip through
the shipped codec (the audio the generator makes) beside the clean rest, once per corpus, split and size, cached in
``out`` (fp16). Training (``engine.train.demix``) and evaluation (``engine.eval.instruments``) read the same data.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..codec import Codec
from ..semantic import SemanticTokenizer
from .build import clip_arrangement, melody_pool
from .render import Renderer, normalize


def stems(renderer: Renderer, arr) -> tuple[np.ndarray, np.ndarray]:
    """(the mix, everything but the drums), at the level the corpus normalises the mix to."""
    drums = renderer.render(arr, ("drums",), normalized=False) if any(t.is_drums for t in arr.tracks) else None
    rest = renderer.render(arr, tuple(t.role for t in arr.tracks if not t.is_drums), normalized=False)
    mix = rest if drums is None else rest + drums
    gain = float(np.dot(normalize(mix), mix) / max(float(np.dot(mix, mix)), 1e-12))  # normalize is a gain
    return (mix * gain).astype(np.float32), (rest * gain).astype(np.float32)


def pick(records: list[dict], n: int, drumless: float) -> list[dict]:
    """Up to ``n`` clips, a ``drumless`` share of them without drums, in corpus order."""
    with_drums = [r for r in records if "drums" in r["tags"]["programs"]]
    without = [r for r in records if "drums" not in r["tags"]["programs"]]
    k = min(len(without), round(n * drumless))
    return with_drums[: n - k] + without[:k]


def prepare(corpus: Path, split: str, n: int, drumless: float, out: Path, assets: Path,
            melodies: Path | None = Path("runs/cache")) -> dict:
    """{"mix": codec round trips [N, T], "rest": clean targets [N, T]} of a split (fp16), cached in ``out``."""
    cache = out / f"data-{corpus.name}-{split}-{n}.pt"
    if cache.exists():
        return torch.load(cache, weights_only=False)
    records = pick([json.loads(line) for line in (corpus / f"{split}.jsonl").read_text().splitlines()], n, drumless)
    if not records:
        raise SystemExit(f"{corpus}/{split}.jsonl has no clips")
    try:
        pool = melody_pool(corpus, melodies)
    except ValueError as e:
        raise SystemExit(str(e)) from None
    codec, semantic = Codec.load(assets / "codec"), SemanticTokenizer.load(assets / "semantic")
    renderer = Renderer()
    T = round(records[0]["duration"] * codec.sample_rate)
    data = {"ids": [r["id"] for r in records], "codec": codec.cfg.version,
            "mix": torch.zeros(len(records), T, dtype=torch.float16), "rest": torch.zeros(len(records), T, dtype=torch.float16)}
    for i, r in enumerate(tqdm(records, desc=f"drum stems {corpus.name}/{split}", unit="clip")):
        try:
            mix, rest = stems(renderer, clip_arrangement(r, pool))
        except ValueError as e:
            raise SystemExit(str(e)) from None
        heard = codec.reconstruct(torch.from_numpy(mix)[None], semantic=semantic)[0]
        data["mix"][i, : min(T, len(heard))] = heard[:T].clamp(-1, 1).half()
        data["rest"][i, : min(T, len(rest))] = torch.from_numpy(rest[:T]).half()
    renderer.close()
    out.mkdir(parents=True, exist_ok=True)
    torch.save(data, cache)
    return data
