"""Phase ``prior``: the prompt prior (``engine.mulan.prior``) on a frozen MuLan: ``python -m engine.train.mulan prior --data
runs/corpus --features runs/mulan --init assets/mulan --out runs/mulan-prior``, then the same with ``--ship``.

Data: each train clip's audio embedding from the frozen audio tower (its first 10 s, as ``engine.train.mulan``
embeds it), paired with the text embedding of each of its captions (the corpus's and the trainer's paraphrases,
from the feature cache ``engine.train.mulan`` keeps) and of ``--per-clip`` short prompts made from its tags (the
cache ``engine.train.mulan.features`` keeps): a short prompt fits many clips, so the cosine loss teaches the mean
direction of the music it describes. Loss: 1 - cosine of the prediction with the clip's audio embedding. The
features take minutes to build on a first run (cached, shared with the other MuLan trainers); the training itself
takes seconds, so a run restarts rather than resumes.

Selection: the validation score is the mean cosine of the prior's prediction with the clip's audio embedding, over
every validation caption; the plain text embedding's is the score to beat. ``OUT/best`` holds the whole MuLan with its prior; ``--ship`` copies
the prior's two files into ``--assets`` only when its score beats the shipped prior's on the same validation clips
(or the plain text's, with none shipped). That gate is necessary, not sufficient: a prior with a better validation
cosine has lowered the prompt adherence of generated clips, so a prior that would replace a shipped one is judged
by generation (``bench compare``) as well.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from tqdm import tqdm

from ...mulan import MuLan
from ...mulan.prior import PriorConfig, PromptPrior
from ..loop import save_best, ship
from .features import build_features, embed_split, embed_texts, frozen_start


def pairs(model: MuLan, feats: dict, short: dict | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """-> (text embeddings [M, D], index [M] of the clip each belongs to, the clips' audio embeddings [N, D])."""
    with torch.no_grad():
        audio, text = embed_split(model, feats)
        n, c = text.shape[:2]
        texts, owner = [text.reshape(n * c, -1)], [torch.arange(n).repeat_interleave(c)]
        if short is not None:
            texts.append(embed_texts(model, short["text"]).flatten(0, 1))
            owner.append(torch.arange(n).repeat_interleave(short["text"].shape[1]))
    return torch.cat(texts), torch.cat(owner), audio


def score(prior: PromptPrior | None, text: torch.Tensor, owner: torch.Tensor, audio: torch.Tensor) -> float:
    """Mean cosine of the prior's prediction (the plain text without a prior) with the owning clip's audio embedding."""
    with torch.no_grad():
        p = text if prior is None else prior(text)
    return float((p * audio[owner]).sum(-1).mean())


def train(a: argparse.Namespace) -> dict:
    out = Path(a.out)
    model, feats, short = frozen_start(a)
    x, owner, audio = pairs(model, feats["train"], short)
    vx, vowner, vaudio = pairs(model, feats["valid"], None)
    prior = PromptPrior(PriorConfig(dim=model.cfg.dim, hidden=a.hidden, mulan=model.cfg.token_key))
    plain = score(None, vx, vowner, vaudio)
    history = [{"step": 0, "valid_text_cosine": plain}]
    best, best_state = -1.0, None
    opt = torch.optim.AdamW(prior.parameters(), lr=a.lr, weight_decay=1e-2)
    deadline = time.time() + a.minutes * 60 if a.minutes else float("inf")
    g = torch.Generator().manual_seed(a.seed)
    bar = tqdm(range(1, a.steps + 1), desc="mulan prior")
    for step in bar:
        i = torch.randint(0, len(x), (a.batch,), generator=g)
        loss = 1 - (prior(x[i]) * audio[owner[i]]).sum(-1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 50 == 0:
            bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
        if step % a.eval_every == 0 or step == a.steps or time.time() >= deadline:
            with torch.no_grad():
                m = {"step": step, "valid_prior_cosine": score(prior, vx, vowner, vaudio)}
            history.append(m)
            tqdm.write(json.dumps(m))
            if m["valid_prior_cosine"] > best:
                best, best_state = m["valid_prior_cosine"], {k: v.clone() for k, v in prior.state_dict().items()}
            if time.time() >= deadline:
                break
    bar.close()
    prior.load_state_dict(best_state)
    best_step = max(history[1:], key=lambda h: h["valid_prior_cosine"])["step"]
    prior.cfg.version = f"s{best_step}-h{a.hidden}"
    model.prior = prior.eval().requires_grad_(False)
    metrics = {"valid_prior_cosine": best, "valid_text_cosine": plain, "steps": best_step,
               "train_pairs": len(x), "valid_pairs": len(vx), "history": history[-3:]}
    save_best(model, out, metrics)
    print(json.dumps(metrics, indent=1))
    return metrics


def ship_best(a: argparse.Namespace) -> bool:
    """Copy OUT/best's prior into the MuLan folder ``--assets`` if it scores higher there than what is shipped (the
    plain text embedding when no prior is)."""
    best, assets = Path(a.out) / "best", Path(a.assets)
    new, old = MuLan.load(best), MuLan.load(assets)
    if new.prior is None or not new.prior.fits(old.cfg):
        print(f"not shipped: {best} has no prior for MuLan {old.cfg.token_key}")
        return False
    vx, vowner, vaudio = pairs(old, build_features(a.data, "valid", Path(a.features), 0), None)
    return ship(best, assets, PromptPrior.FILES, "prior", "validation cosine", score(new.prior, vx, vowner, vaudio),
                score(old.prior, vx, vowner, vaudio), higher_is_better=True)


DEFAULTS = {"resumable": False, "lr": 3e-3, "batch": 512, "eval_every": 250, "steps": 3000}


def add_args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--init", type=Path, default=Path("assets/mulan"), help="the frozen MuLan")
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--per-clip", type=int, default=8, help="short prompts per train clip (0: captions only)")
