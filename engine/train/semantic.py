"""Train the semantic tokenizer: ``python -m engine.train.semantic --data runs/corpus --features runs/mulan --out runs/semantic``.

Reads the front-end features MuLan training cached (``FEATURES/features-<split>.pt``; they are built here if
missing), trains the frame encoder on the corpus labels (melody pitch class, beat phase, tonic, mode) with random
200-frame crops, then fits ``n_tokens`` k-means centroids on train-split embeddings, runs the probes on the test
split (``engine.semantic.probe``) and writes ``OUT/best`` (model + metrics.json). Resumable from ``OUT/last.pt``;
``--ship`` copies ``OUT/best`` into ``assets/semantic`` when its probe scores are better.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..data.dataset import CorpusDataset
from ..kmeans import kmeans, usage
from ..semantic import probe
from ..semantic.model import HEADS, SemanticConfig, SemanticTokenizer, frame_labels
from .mulan import build_features

CROP = 200


def labelled(data: str, features: Path, split: str) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    f = build_features(data, split, features, 3)
    records = {r["id"]: r for r in CorpusDataset(data, split).records}
    n = f["frames"].shape[-1]
    labels = [frame_labels(records[i]["tags"], records[i]["melody"]["track"], n) for i in f["ids"]]
    return f["frames"], {k: torch.stack([lb[k] for lb in labels]) for k in HEADS}


def head_accuracy(model: SemanticTokenizer, frames: torch.Tensor, labels: dict) -> dict:
    model.eval()
    with torch.inference_mode():
        acc = {k: [] for k in HEADS}
        for i in range(0, len(frames), 64):
            lg = model.logits(model.embed(frames[i:i + 64].float()))
            for k in HEADS:
                acc[k].append((lg[k].argmax(1) == labels[k][i:i + 64]).float().mean().item())
    model.train()
    return {f"acc_{k}": float(np.mean(v)) for k, v in acc.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m engine.train.semantic", description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="runs/corpus")
    ap.add_argument("--features", type=Path, default=Path("runs/mulan"))
    ap.add_argument("--out", type=Path, default=Path("runs/semantic"))
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--minutes", type=float, default=None)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--n-tokens", type=int, default=512)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--version", default=time.strftime("%Y.%m.%d"))
    ap.add_argument("--probe-clips", type=int, default=40, help="test clips re-arranged for the probe (0 = skip)")
    ap.add_argument("--ship", action="store_true")
    ap.add_argument("--assets", type=Path, default=Path("assets/semantic"))
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.ship:
        new = json.loads((a.out / "best" / "metrics.json").read_text())
        old = a.assets / "metrics.json"
        if old.exists() and json.loads(old.read_text())["probe_pitch_class"] >= new["probe_pitch_class"]:
            print("not shipped: the shipped tokenizer's pitch-class probe is as good")
            return 0
        shutil.rmtree(a.assets, ignore_errors=True)
        shutil.copytree(a.out / "best", a.assets)
        print(f"shipped {a.out / 'best'} -> {a.assets}")
        return 0

    a.out.mkdir(parents=True, exist_ok=True)
    frames, labels = labelled(a.data, a.features, "train")
    vframes, vlabels = labelled(a.data, a.features, "valid")
    torch.manual_seed(a.seed)
    model = SemanticTokenizer(SemanticConfig(n_tokens=a.n_tokens))
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=0.01)
    step, history = 0, []
    ckpt = a.out / "last.pt"
    if ckpt.exists():
        ck = torch.load(ckpt, weights_only=False)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        step, history = ck["step"], ck["history"]
    deadline = time.time() + a.minutes * 60 if a.minutes else float("inf")
    bar = tqdm(total=a.steps, initial=step, desc="semantic")
    while step < a.steps and time.time() < deadline:
        g = torch.Generator().manual_seed(a.seed * 7919 + step)
        idx = torch.randint(0, len(frames), (a.batch,), generator=g)
        s = int(torch.randint(0, frames.shape[-1] - CROP + 1, (1,), generator=g))
        x = frames[idx, :, s:s + CROP].float()
        x = x + 0.03 * torch.randn(x.shape, generator=g)
        lg = model.logits(model.embed(x))
        loss = sum(F.cross_entropy(lg[k], labels[k][idx, s:s + CROP]) for k in HEADS)
        for grp in opt.param_groups:
            grp["lr"] = a.lr * min(1.0, (step + 1) / 100) * 0.5 * (1 + np.cos(np.pi * step / a.steps))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        bar.update()
        bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
        if step % 250 == 0 or step >= a.steps or time.time() >= deadline:
            m = head_accuracy(model, vframes, vlabels)
            m["step"] = step
            history.append(m)
            tqdm.write(json.dumps(m))
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step, "history": history},
                       a.out / "last.tmp")
            os.replace(a.out / "last.tmp", ckpt)
    bar.close()

    # k-means over train embeddings (a 1-in-4 frame subsample is plenty: ~180k points for 512 centroids)
    model.eval()
    with torch.inference_mode():
        emb = torch.cat([model.embed(frames[i:i + 64].float())[..., ::4].transpose(1, 2).reshape(-1, model.cfg.dim)
                         for i in range(0, len(frames), 64)])
    model.centroids.copy_(kmeans(emb, a.n_tokens, iters=25, seed=a.seed))
    model.cfg.version = f"{a.version}-s{step}"  # the stages record it: new tokens, new version
    tframes, tlabels = labelled(a.data, a.features, "test")
    test_tokens = torch.cat([model.tokens_from_features(tframes[i:i + 64].float()) for i in range(0, len(tframes), 64)])
    train_tokens = torch.cat([model.tokens_from_features(frames[i:i + 64].float()) for i in range(0, len(frames), 64)])
    m = {"train_steps": step, **history[-1], **usage(test_tokens.numpy(), a.n_tokens)}
    m.update(probe.pitch_class_probe(train_tokens, labels["pitch_class"], test_tokens, tlabels["pitch_class"]))
    if a.probe_clips:
        m.update(probe.arrangement_probe(model, a.data, n=a.probe_clips))
    tmp = a.out / "best.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save(tmp)
    (tmp / "metrics.json").write_text(json.dumps(m, indent=1))
    shutil.rmtree(a.out / "best", ignore_errors=True)
    tmp.rename(a.out / "best")
    print(json.dumps(m, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
