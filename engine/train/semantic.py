"""Train the semantic tokenizer: ``python -m engine.train.semantic --data runs/corpus --features runs/mulan --out runs/semantic``.

Reads the front-end features MuLan training cached (``FEATURES/features-<split>.pt``; they are built here if
missing), trains the frame encoder on the corpus labels (melody pitch class, beat phase, tonic, mode) with random
200-frame crops, then fits ``n_tokens`` k-means centroids on train-split embeddings, runs the probes on the test
split (``engine.semantic.probe``) and writes ``OUT/best`` (model + metrics.json). Resumable from ``OUT/last.pt``;
``--ship`` copies ``OUT/best`` into ``assets/semantic`` when its pitch-class probe is better. The encoder kept is
the one whose validation pitch-class accuracy is highest. ``--key-profile TOKENS...`` fits the shipped tokenizer's
key profile (``engine.semantic.keys``) on the tokenised train split instead (the recipe runs it after tokenising).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..data.dataset import CorpusDataset
from ..kmeans import kmeans, usage
from ..semantic import probe
from ..semantic.keys import fit_key_profile, save_key_profile
from ..semantic.model import HEADS, SemanticConfig, SemanticTokenizer, frame_labels
from .loop import add_run_args, fit, metrics_of, save_best, ship, start
from .mulan.features import build_features

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


class SemanticTask:
    """The frame encoder on the corpus labels, random 200-frame crops."""

    name = "semantic"

    def __init__(self, a: argparse.Namespace, model: SemanticTokenizer):
        self.a, self.model = a, model
        self.frames, self.labels = labelled(a.data, a.features, "train")
        self.vframes, self.vlabels = labelled(a.data, a.features, "valid")

    def modules(self):
        return {"model": self.model}

    def identity(self):
        return dataclasses.asdict(self.model.cfg)

    def loss(self, step: int, rank: int):
        a, frames = self.a, self.frames
        g = torch.Generator().manual_seed(a.seed * 7919 + step)
        idx = torch.randint(0, len(frames), (a.batch,), generator=g)
        s = int(torch.randint(0, frames.shape[-1] - CROP + 1, (1,), generator=g))
        x = frames[idx, :, s:s + CROP].float()
        x = x + 0.03 * torch.randn(x.shape, generator=g)
        lg = self.model.logits(self.model.embed(x))
        loss = sum(F.cross_entropy(lg[k], self.labels[k][idx, s:s + CROP]) for k in HEADS)
        return loss, {"loss": float(loss.detach())}

    def validate(self, step: int) -> dict:
        m = head_accuracy(self.model, self.vframes, self.vlabels)
        return {**m, "score": -m["acc_pitch_class"]}

    def keep_best(self, metrics: dict, step: int) -> None:
        torch.save({"model": self.model.state_dict(), "metrics": metrics}, Path(self.a.out) / "best.pt")


def finish(a: argparse.Namespace, task: SemanticTask) -> dict:
    """k-means ids on the best encoder, the probes on the test split, and ``OUT/best``."""
    model, frames, labels = task.model, task.frames, task.labels
    best = torch.load(a.out / "best.pt", weights_only=False)
    model.load_state_dict(best["model"])
    step = best["metrics"]["step"]
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
    m = {"train_steps": step, **{k: v for k, v in best["metrics"].items() if k != "score"},
         **usage(test_tokens.numpy(), a.n_tokens)}
    m.update(probe.pitch_class_probe(train_tokens, labels["pitch_class"], test_tokens, tlabels["pitch_class"]))
    if a.probe_clips:
        m.update(probe.arrangement_probe(model, a.data, n=a.probe_clips))
    save_best(model, a.out, m)
    print(json.dumps(m, indent=1))
    return m


def key_profile(folders: list[Path], assets: Path) -> int:
    """Fit ``engine.semantic.keys`` on the train clips' semantic ids and keys and write it beside the tokenizer."""
    version = json.loads((assets / "semantic.json").read_text())["version"]
    ids, keys = [], []
    for d in folders:
        sem, mel = d / f"semantic-train-{version}.pt", d / "melody-train.pt"
        if not sem.exists() or not mel.exists():
            raise SystemExit(f"--key-profile: {d} has no train tokens of the semantic tokenizer {version} "
                             "(python -m engine.train.tokenize)")
        s, m = torch.load(sem, weights_only=False), torch.load(mel, weights_only=False)
        if s["ids"] != m["ids"] or "key" not in m:
            raise SystemExit(f"--key-profile: the token files in {d} disagree on the clips, or lack keys: re-tokenise")
        ids.append(s["tokens"])
        keys.append(m["key"])
    n = json.loads((assets / "semantic.json").read_text())["n_tokens"]
    path = save_key_profile(fit_key_profile(torch.cat(ids), torch.cat(keys), n), assets, version)
    print(f"key profile of {sum(len(k) for k in keys)} clips -> {path}")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m engine.train.semantic", description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="runs/corpus")
    ap.add_argument("--features", type=Path, default=Path("runs/mulan"))
    ap.add_argument("--out", type=Path, default=Path("runs/semantic"))
    add_run_args(ap, lr=2e-3, batch=32, eval_every=250, ckpt_every=250, warmup=100, final_lr=0.0, steps=3000)
    ap.add_argument("--n-tokens", type=int, default=512)
    ap.add_argument("--width", type=int, default=192, help="the frame encoder's width")
    ap.add_argument("--version", default=time.strftime("%Y.%m.%d"))
    ap.add_argument("--probe-clips", type=int, default=40, help="test clips re-arranged for the probe (0 = skip)")
    ap.add_argument("--ship", action="store_true", help="copy OUT/best into --assets if its pitch-class probe is better")
    ap.add_argument("--assets", type=Path, default=Path("assets/semantic"))
    ap.add_argument("--key-profile", type=Path, nargs="+", default=None, metavar="TOKENS",
                    help="instead of training: fit the key profile of the tokenizer in --assets on the tokenised "
                         "train split(s) in these folders (engine.train.tokenize) and write it there")
    a = ap.parse_args(argv)
    if a.key_profile:
        return key_profile(a.key_profile, a.assets)
    if a.ship:
        best, old = a.out / "best", metrics_of(a.assets)

        def replace():
            shutil.rmtree(a.assets, ignore_errors=True)
            shutil.copytree(best, a.assets)
        return 0 if ship(best, a.assets, replace, "semantic tokenizer", "pitch-class probe",
                         metrics_of(best)["probe_pitch_class"], None if old is None else old["probe_pitch_class"],
                         higher_is_better=True) else 1
    start(a)
    model = SemanticTokenizer(SemanticConfig(n_tokens=a.n_tokens, width=a.width))
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=0.01)
    task = SemanticTask(a, model)
    fit(task, opt, a.out, a)
    finish(a, task)
    return 0


if __name__ == "__main__":
    sys.exit(main())
