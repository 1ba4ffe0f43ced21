"""Phase ``ranker``: the draft ranker (``engine.mulan.ranker``): ``python -m engine.train.mulan ranker --data
runs/corpus --features runs/mulan --tokens runs/tokens --init assets/mulan --out runs/mulan-ranker [--minutes M]``.

Data: each train clip's semantic ids (the stage trainer's token cache, ``engine.train.tokenize``) paired with the
MuLan text embeddings of its captions and paraphrases (the MuLan trainers' feature cache) and of ``--per-clip``
short prompts made from its tags (``engine.train.mulan.features.short_prompts``); the text projection is frozen. Each example
is a random 5-10 s crop of the clip's ids with one of its texts; loss: symmetric InfoNCE over the batch.

Validation: for every validation caption, the share of the other validation clips whose ids score below its own
clip's (``valid_rank``; 0.5 is chance): that is the ranker's job, telling which of several drafts fits a prompt.
Resumable: ``OUT/last.pt`` is written at every evaluation and a run with the same ``--out`` continues from it;
``OUT/best`` holds the best-scoring ranker; ``--ship`` copies it into ``--assets`` only when it scores higher there
than the ranker shipped (measured on the same validation clips).
"""
from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from ...mulan import MuLan
from ...mulan.ranker import DraftRanker, RankerConfig
from ...semantic import SemanticTokenizer
from ..loop import save_best, ship
from .features import build_features, embed_texts, frozen_start


def semantic_ids(tokens: Path, split: str, version: str, clip_ids: list[str]) -> torch.Tensor:
    """The token cache's semantic ids [N, T] in the order of ``clip_ids``."""
    path = tokens / f"semantic-{split}-{version}.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: tokenise the corpus first (python -m engine.train.tokenize)")
    blob = torch.load(path, weights_only=False)
    where = {c: i for i, c in enumerate(blob["ids"])}
    missing = [c for c in clip_ids if c not in where]
    if missing:
        raise ValueError(f"{path} lacks {len(missing)} clips of the corpus (e.g. {missing[0]}): re-run the tokenizer")
    return blob["tokens"][[where[c] for c in clip_ids]].long()


def texts(model: MuLan, feats: dict, short: dict | None) -> torch.Tensor:
    """-> [N, C, dim] MuLan text embeddings of every clip's captions (and short prompts)."""
    with torch.no_grad():
        return torch.cat([embed_texts(model, feats["text"]), *([] if short is None else [embed_texts(model, short["text"])])], 1)


def valid_rank(ranker: DraftRanker, ids: torch.Tensor, text: torch.Tensor) -> float:
    """Mean over validation captions of the share of other clips scoring below the caption's own clip."""
    was = ranker.training
    ranker.eval()
    with torch.no_grad():
        e = torch.cat([ranker(ids[i:i + 256]) for i in range(0, len(ids), 256)])  # [N, D]
    ranker.train(was)
    n = text.shape[0]
    if n < 2:
        raise ValueError(f"ranking needs at least 2 validation clips, got {n} (a bigger corpus, or --valid-split)")
    sim = torch.einsum("ncd,md->ncm", text, e)  # caption of clip i vs drafts m
    own = sim[torch.arange(n), :, torch.arange(n)]  # [N, C]
    below = (sim < own[..., None]).float().sum(-1) / (n - 1)
    return float(below.mean())


def train(a: argparse.Namespace) -> dict:
    out = Path(a.out)
    vs = a.valid_split
    mulan, feats, short = frozen_start(a, vs)
    tokenizer = SemanticTokenizer.load(a.semantic)
    semver = tokenizer.cfg.version
    x, tx = semantic_ids(Path(a.tokens), "train", semver, feats["train"]["ids"]), texts(mulan, feats["train"], short)
    vx, vt = semantic_ids(Path(a.tokens), vs, semver, feats[vs]["ids"]), texts(mulan, feats[vs], None)
    del feats
    cfg = RankerConfig(vocab=tokenizer.cardinality, width=a.width, dim=mulan.cfg.dim, mulan=mulan.cfg.token_key,
                       semantic=semver)
    ck = torch.load(out / "last.pt", weights_only=False) if (out / "last.pt").is_file() else None
    if ck is not None:  # a resumed run keeps its own shape, whatever --width says now
        cfg = RankerConfig.from_dict(ck["config"])
        if (cfg.mulan, cfg.semantic) != (mulan.cfg.token_key, semver):
            raise SystemExit(f"{out / 'last.pt'} was trained on MuLan {cfg.mulan} and semantic ids {cfg.semantic}, "
                             f"not on {mulan.cfg.token_key} / {semver}: use another --out")
    ranker = DraftRanker(cfg)
    opt = torch.optim.AdamW(ranker.parameters(), lr=a.lr, weight_decay=a.weight_decay)
    state = {"step": 0, "best": -1.0, "history": []}
    if ck is not None:
        ranker.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        state = ck["state"]
        torch.set_rng_state(ck["rng"])
        print(f"resumed {out / 'last.pt'} at step {state['step']} (best valid_rank {state['best']:.4f})")
    deadline = time.time() + a.minutes * 60 if a.minutes else float("inf")
    n, T = x.shape
    bar = tqdm(range(state["step"] + 1, a.steps + 1), desc="draft ranker", initial=state["step"], total=a.steps)
    for step in bar:
        i = torch.randint(0, n, (a.batch,))
        length = int(torch.randint(T // 2, T + 1, ()))
        start = int(torch.randint(0, T - length + 1, ()))
        e = ranker(x[i, start:start + length])
        t = tx[i, torch.randint(0, tx.shape[1], (a.batch,))]
        logits = ranker.log_temp.exp().clamp(max=100) * e @ t.T
        y = torch.arange(a.batch)
        loss = (F.cross_entropy(logits, y) + F.cross_entropy(logits.T, y)) / 2
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        state["step"] = step
        if step % 25 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
        last = step == a.steps or time.time() >= deadline
        if step % a.eval_every == 0 or last:
            m = {"step": step, "loss": round(loss.item(), 4), "valid_rank": round(valid_rank(ranker, vx, vt), 4)}
            state["history"].append(m)
            tqdm.write(json.dumps(m))
            if m["valid_rank"] > state["best"]:
                state["best"] = m["valid_rank"]
                ranker.cfg.version = f"s{step}-w{cfg.width}"
                save_best(ranker, out, {**m, "train_clips": n, "valid_clips": len(vx)})
            tmp = out / "last.pt.tmp"
            torch.save({"model": ranker.state_dict(), "opt": opt.state_dict(), "state": state,
                        "rng": torch.get_rng_state(), "config": asdict(cfg)}, tmp)
            os.replace(tmp, out / "last.pt")
            if last:
                break
    bar.close()
    return state


def ship_best(a: argparse.Namespace) -> bool:
    """Copy OUT/best's ranker into the MuLan folder ``--assets`` if it ranks the validation clips better there."""
    best, assets = Path(a.out) / "best", Path(a.assets)
    new, old = DraftRanker.load(best), DraftRanker.load(assets)
    mulan = MuLan.load(assets)
    semver = SemanticTokenizer.load(a.semantic).cfg.version
    if new is None or not new.fits(mulan.cfg, semver):
        print(f"not shipped: {best} has no ranker for MuLan {mulan.cfg.token_key} and semantic ids {semver}")
        return False
    feats = build_features(a.data, a.valid_split, Path(a.features), 0)
    vx, vt = semantic_ids(Path(a.tokens), a.valid_split, semver, feats["ids"]), texts(mulan, feats, None)
    s_old = valid_rank(old, vx, vt) if old is not None and old.fits(mulan.cfg, semver) else 0.5  # none: chance
    return ship(best, assets, DraftRanker.FILES, "ranker", "valid_rank", valid_rank(new, vx, vt), s_old,
                higher_is_better=True)


DEFAULTS = {"resumable": False, "lr": 1e-3, "batch": 256, "eval_every": 100, "steps": 4000}


def add_args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--tokens", type=Path, default=Path("runs/tokens"), help="the stage trainer's token cache")
    ap.add_argument("--init", type=Path, default=Path("assets/mulan"), help="the frozen MuLan (its text projection)")
    ap.add_argument("--semantic", type=Path, default=Path("assets/semantic"), help="the tokenizer of the ids")
    ap.add_argument("--weight-decay", type=float, default=0.05)
    ap.add_argument("--width", type=int, default=96)
    ap.add_argument("--per-clip", type=int, default=8, help="short prompts per train clip (0: captions only)")
    ap.add_argument("--valid-split", default="valid", help="the split that scores checkpoints and gates --ship")
