"""Phase ``text``: MuLan's text projection retrained against its frozen audio tower: ``python -m engine.train.mulan
text --data runs/corpus --features runs/mulan --init assets/mulan --out runs/mulan-text [--minutes M]``.

Why: the contrastive pairs of the ``tower`` phase are whole captions, so a prompt naming one or two aspects
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
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ...data.captions import SHORT_ASPECTS, aspect_value
from ...mulan import MuLan, evaluate
from ..loop import save_best
from .features import build_features, embed_split, frozen_start, selection


def score(model: MuLan, feats: dict, audio: torch.Tensor, n: int | None = None) -> dict:
    n = n or len(audio)
    with torch.no_grad():
        text = model.text(feats["text"][:n, 0].float())
    m = {"recall@10": evaluate.retrieval(text, audio[:n]), "n_clips": n}
    m.update({f"zero_shot_{k}": v for k, v in evaluate.zero_shot(model, audio[:n], feats["tags"][:n]).items()})
    return m


def train(a: argparse.Namespace) -> dict:
    out = Path(a.out)
    model, feats, short = frozen_start(a)
    audio = {s: embed_split(model, f)[0].clone() for s, f in feats.items()}  # frozen tower: embed once
    values = {a: np.array([aspect_value(t, a) for t in feats["train"]["tags"]]) for a in SHORT_ASPECTS}
    text = feats["train"]["text"]
    N, C = text.shape[:2]
    scale = model.log_temp.exp().clamp(max=100).item()
    proj = model.text
    opt = torch.optim.AdamW(proj.parameters(), lr=a.lr, weight_decay=0.05)
    step, best, history = 0, selection(score(model, feats["valid"], audio["valid"])), []
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
            m.update(step=step, selection=selection(m))
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


DEFAULTS = {"resumable": False, "lr": 1e-4, "batch": 256, "eval_every": 250, "steps": 2000}


def add_args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--init", type=Path, default=Path("assets/mulan"))
    ap.add_argument("--per-clip", type=int, default=8, help="short prompts made per train clip")
    ap.add_argument("--short-weight", type=float, default=2.0)
