"""Retrain MuLan's text projection against its frozen audio tower: ``python -m engine.train.mulan_text --data
runs/corpus --features runs/mulan --init assets/mulan --out runs/mulan_text [--minutes M] [--ship]``.

Why: the contrastive pairs of ``engine.train.mulan`` are whole captions, so a prompt naming one or two aspects
("slow music featuring a flute", what people type) lands wherever MiniLM puts it, not near the clips it describes.
Measured on the shipped model: a linear probe on the frozen audio embeddings reads the lead instrument's family at
0.85 and the tempo bucket at 0.94 on the test split, while zero-shot prompts read them at 0.52 and 0.61; the audio
side knows, the text side does not say it.

Here the audio tower and the token RVQ stay fixed (audio tokens, and the stages trained on them, stay valid; the
model version is kept and ``text_version`` records the change). The projection trains on two losses against the
audio embeddings of whole 10 s train clips: the symmetric InfoNCE of whole captions, and for short prompts made from
the clip's tags (``make_short_prompt``) a multi-positive cross-entropy whose target is spread evenly over every clip
in the batch that fits the prompt. Selection by the mean of validation recall@10 and zero-shot accuracies (the
probe wordings appear in no training caption or prompt); test metrics in ``OUT/best/metrics.json``; ``--ship``
copies the best into ``--assets`` only if that mean beats the shipped model's, as ``engine.train.mulan`` does.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..data.captions import SHORT_ASPECTS, aspect_value, make_short_prompt
from ..mulan import MuLan, evaluate
from ..mulan.text import DIM as TEXT_DIM
from ..mulan.text import encode_sentences
from .mulan import _selection, build_features, embed_split, ship
from .publish import save_best


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


def score(model: MuLan, feats: dict, audio: torch.Tensor, n: int | None = None) -> dict:
    n = n or len(audio)
    with torch.no_grad():
        text = model.text(feats["text"][:n, 0].float())
    m = {"recall@10": evaluate.retrieval(text, audio[:n]), "n_clips": n}
    m.update({f"zero_shot_{k}": v for k, v in evaluate.zero_shot(model, audio[:n], feats["tags"][:n]).items()})
    return m


def train(a: argparse.Namespace) -> dict:
    torch.manual_seed(a.seed)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    model = MuLan.load(a.init)
    feats = {s: build_features(a.data, s, Path(a.features), 3 if s == "train" else 0) for s in ("train", "valid")}
    audio = {s: embed_split(model, f)[0].clone() for s, f in feats.items()}  # frozen tower: embed once
    short = short_prompts(feats["train"], a.per_clip, Path(a.features))
    values = {a: np.array([aspect_value(t, a) for t in feats["train"]["tags"]]) for a in SHORT_ASPECTS}
    text = feats["train"]["text"]
    N, C = text.shape[:2]
    scale = model.log_temp.exp().clamp(max=100).item()
    proj = model.text
    opt = torch.optim.AdamW(proj.parameters(), lr=a.lr, weight_decay=0.05)
    step, best, history = 0, _selection(score(model, feats["valid"], audio["valid"])), []
    history.append({"step": 0, "selection": best})
    tqdm.write(json.dumps(history[-1]))
    torch.save(proj.state_dict(), out / "best_text.pt")
    deadline = time.time() + a.minutes * 60 if a.minutes else float("inf")
    bar = tqdm(total=a.steps, desc="mulan text")
    while step < a.steps and time.time() < deadline:
        g = torch.Generator().manual_seed(a.seed * 1_000_003 + step)
        idx = torch.randperm(N, generator=g)[: a.batch]
        au = audio["train"][idx]
        cap = proj(text[idx, torch.randint(0, C, (len(idx),), generator=g)].float())
        logits = au @ cap.t() * scale
        labels = torch.arange(len(idx))
        full = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2
        j = torch.randint(0, a.per_clip, (len(idx),), generator=g)
        sp = proj(short["text"][idx, j].float())
        named = [short["named"][int(i)][int(k)] for i, k in zip(idx, j)]
        ix = idx.numpy()
        fits = np.ones((len(ix), len(ix)), dtype=bool)  # [prompt, clip]: the clip has what the prompt names
        for r, n in enumerate(named):
            for aspect, v in n.items():
                fits[r] &= values[aspect][ix] == v
        fits = torch.from_numpy(fits.astype(np.float32))
        target = fits / fits.sum(1, keepdim=True)
        part = -(target * F.log_softmax(sp @ au.t() * scale, dim=1)).sum(1).mean()
        loss = full + a.short_weight * part
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        bar.update()
        bar.set_postfix(full=f"{full.item():.3f}", short=f"{part.item():.3f}")
        if step % a.eval_every == 0 or step >= a.steps or time.time() >= deadline:
            m = score(model, feats["valid"], audio["valid"])
            m.update(step=step, selection=_selection(m))
            history.append(m)
            tqdm.write(json.dumps(m))
            if m["selection"] > best:
                best = m["selection"]
                torch.save(proj.state_dict(), out / "best_text.pt")
    bar.close()
    return finish(a, model, history)


def finish(a: argparse.Namespace, model: MuLan, history: list) -> dict:
    out = Path(a.out)
    model.text.load_state_dict(torch.load(out / "best_text.pt", weights_only=True))
    model.eval()
    test = build_features(a.data, "test", Path(a.features), 0)
    t_audio, _ = embed_split(model, test)
    m = score(model, test, t_audio, n=min(500, len(t_audio)))
    with torch.no_grad():
        t_text = model.text(test["text"][:, 0].float())
    m["token_cosine_text"] = evaluate.token_fidelity(model, t_text)
    m["token_cosine_audio"] = evaluate.token_fidelity(model, t_audio)
    m["pair_cosine"] = float((t_audio * t_text).sum(-1).mean())
    best_step = max((h for h in history), key=lambda h: h["selection"])["step"]
    m["text_train_steps"] = best_step
    m["valid_history"] = history[-3:]
    model.cfg.text_version = f"short-prompts-s{best_step}" if best_step else model.cfg.text_version
    save_best(model, out, m)
    print(json.dumps(m, indent=1))
    return m


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m engine.train.mulan_text", description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="runs/corpus")
    ap.add_argument("--features", default="runs/mulan", help="where engine.train.mulan cached the features")
    ap.add_argument("--init", type=Path, default=Path("assets/mulan"))
    ap.add_argument("--out", default="runs/mulan_text")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--minutes", type=float, default=None)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--per-clip", type=int, default=8, help="short prompts made per train clip")
    ap.add_argument("--short-weight", type=float, default=2.0)
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--ship", action="store_true", help="copy OUT/best into --assets if it scores better")
    ap.add_argument("--assets", type=Path, default=Path("assets/mulan"))
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    train(a)
    if a.ship:
        ship(Path(a.out) / "best", a.assets)
    return 0


if __name__ == "__main__":
    sys.exit(main())
