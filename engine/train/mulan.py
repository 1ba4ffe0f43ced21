"""Train MuLan: ``python -m engine.train.mulan --data runs/corpus --out runs/mulan [--minutes M] [--ship]``.

1. Features, cached in ``OUT/features-<split>.pt``: the music front end of every clip (``engine.spectral``) and the
   frozen MiniLM embeddings of its captions: the corpus's 3 plus ``--paraphrases`` more written by
   ``make_caption`` from the clip's tags (train only), so one clip is seen under many wordings.
2. Contrastive training (symmetric InfoNCE, learned temperature) of the audio tower and the text projection on
   (random 8 s crop, random caption) pairs; AdamW; resumable from ``OUT/last.pt``; validation recall@10 and
   zero-shot tag accuracy every ``--eval-every`` steps; the best by their mean is kept.
3. The 12 x 1024 residual k-means fitted on the best model's train embeddings, audio and text together.
4. Test-split report in ``OUT/best/metrics.json``; ``--ship`` copies the best to ``assets/mulan`` if it scores better
   than the shipped one. Runs under ``torchrun`` too (each rank a different batch; gradients all-reduced).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from .. import spectral
from ..data.captions import make_caption
from ..data.dataset import open_dataset
from ..kmeans import ResidualKMeans
from ..mulan import evaluate
from ..mulan.model import MuLan, MuLanConfig
from ..mulan.text import encode_sentences
from .distributed import average_gradients, setup
from .publish import save_best

CROP = 200  # frames (8 s) per training example


def build_features(data: str, split: str, out: Path, paraphrases: int) -> dict:
    path = out / f"features-{split}.pt"
    if path.exists():
        return torch.load(path, weights_only=False)
    out.mkdir(parents=True, exist_ok=True)
    ds = open_dataset(data, split)
    frames, glob, caps, tags, ids = [], [], [], [], []
    for i in tqdm(range(len(ds)), desc=f"features {split}"):
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
        ids.append(ex.id)
    n_caps = min(len(c) for c in caps)
    flat = [c for cs in caps for c in cs[:n_caps]]
    text = torch.from_numpy(encode_sentences(flat, progress=True)).view(len(caps), n_caps, -1).half()
    feats = {"frames": torch.stack(frames), "global": torch.stack(glob), "text": text, "captions": caps,
             "tags": tags, "ids": ids}
    torch.save(feats, path.with_suffix(".tmp"))
    os.replace(path.with_suffix(".tmp"), path)
    return feats


@torch.inference_mode()
def embed_split(model: MuLan, feats: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """-> (audio [N, D] on the full 10 s, text [N, C, D] for every caption)."""
    model.eval()
    audio = torch.cat([model.audio(feats["frames"][i:i + 256].float(), feats["global"][i:i + 256])
                       for i in range(0, len(feats["frames"]), 256)])
    t = feats["text"].float()
    text = model.text(t.view(-1, t.shape[-1])).view(t.shape[0], t.shape[1], -1)
    model.train()
    return audio, text


def score(model: MuLan, feats: dict, n: int | None = None) -> dict:
    audio, text = embed_split(model, feats)
    n = n or len(audio)
    m = {"recall@10": evaluate.retrieval(text[:n, 0], audio[:n]), "n_clips": n}
    if feats["tags"][0] is not None:
        m.update({f"zero_shot_{k}": v for k, v in evaluate.zero_shot(model, audio[:n], feats["tags"][:n]).items()})
    return m


def _selection(m: dict) -> float:
    return float(np.mean([v for k, v in m.items() if k == "recall@10" or k.startswith("zero_shot")]))


def train(a: argparse.Namespace) -> dict:
    rank, world = setup()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    train_f = build_features(a.data, "train", out, a.paraphrases)
    valid_f = build_features(a.data, "valid", out, 0)
    torch.manual_seed(a.seed)
    cfg = MuLanConfig(dim=a.dim, width=a.width)
    model = MuLan(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=0.05)
    step, best, history = 0, -1.0, []
    ckpt = out / "last.pt"
    if ckpt.exists():
        ck = torch.load(ckpt, weights_only=False)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        step, best, history = ck["step"], ck["best"], ck["history"]
        print(f"resumed from {ckpt} at step {step}", file=sys.stderr)
    N, C = train_f["text"].shape[:2]
    deadline = time.time() + a.minutes * 60 if a.minutes else float("inf")
    bar = tqdm(total=a.steps, initial=step, desc="mulan", disable=rank != 0)
    while step < a.steps and time.time() < deadline:
        g = torch.Generator().manual_seed(a.seed * 1_000_003 + step * 101 + rank)
        idx = torch.randperm(N, generator=g)[: a.batch]
        start = torch.randint(0, 250 - CROP + 1, (a.batch,), generator=g)
        fr = torch.stack([train_f["frames"][i, :, s:s + CROP] for i, s in zip(idx.tolist(), start.tolist())]).float()
        fr = fr + 0.05 * torch.randn(fr.shape, generator=g)
        cap = train_f["text"][idx, torch.randint(0, C, (a.batch,), generator=g)].float()
        lr = a.lr * min(1.0, (step + 1) / 200)
        for grp in opt.param_groups:
            grp["lr"] = lr
        au = model.audio(fr, train_f["global"][idx])
        te = model.text(cap)
        logits = au @ te.t() * model.log_temp.exp().clamp(max=100)
        labels = torch.arange(len(idx))
        loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2
        opt.zero_grad(set_to_none=True)
        loss.backward()
        average_gradients(model, world)
        opt.step()
        step += 1
        bar.update()
        bar.set_postfix(loss=f"{float(loss.detach()):.3f}", temp=f"{float(model.log_temp.exp()):.1f}")
        last = step >= a.steps or time.time() >= deadline
        if rank == 0 and (step % a.eval_every == 0 or last):
            m = score(model, valid_f)
            m["step"] = step
            history.append(m)
            tqdm.write(json.dumps(m))
            if _selection(m) > best:
                best = _selection(m)
                torch.save(model.state_dict(), out / "best.pt")
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step, "best": best,
                        "history": history}, out / "last.tmp")
            os.replace(out / "last.tmp", ckpt)
    bar.close()
    return {"step": step, "best_valid": best}


def finish(a: argparse.Namespace) -> dict:
    """Fit the token RVQ on the best model and write OUT/best with test metrics."""
    out = Path(a.out)
    model = MuLan(MuLanConfig(dim=a.dim, width=a.width, version=a.version))
    model.load_state_dict(torch.load(out / "best.pt", weights_only=True))
    model.eval()
    train_f = build_features(a.data, "train", out, a.paraphrases)
    audio, text = embed_split(model, train_f)
    pts = torch.cat([audio, text.reshape(-1, text.shape[-1])])
    model.rvq = ResidualKMeans.fit(pts, model.cfg.token_levels, model.cfg.token_size, iters=15, seed=a.seed,
                                   progress=lambda lv, r: print(f"rvq level {lv + 1}: residual {r:.4f}", file=sys.stderr))
    test_f = build_features(a.data, "test", out, 0)
    m = score(model, test_f, n=min(500, len(test_f["frames"])))
    t_audio, t_text = embed_split(model, test_f)
    m["token_cosine_text"] = evaluate.token_fidelity(model, t_text[:, 0])
    m["token_cosine_audio"] = evaluate.token_fidelity(model, t_audio)
    m["pair_cosine"] = float((t_audio * t_text[:, 0]).sum(-1).mean())
    ck = torch.load(out / "last.pt", weights_only=False)
    m["train_steps"] = ck["step"]
    model.cfg.version = f"{a.version}-s{ck['step']}"  # the stages record it: new tokens, new version
    m["valid_history"] = ck["history"][-3:]
    save_best(model, out, m)
    print(json.dumps(m, indent=1))
    return m


def ship(best: Path, assets: Path) -> None:
    new = json.loads((best / "metrics.json").read_text())
    old = assets / "metrics.json"
    if old.exists() and _selection(json.loads(old.read_text())) >= _selection(new):
        print(f"not shipped: {_selection(new):.4f} does not beat the shipped {_selection(json.loads(old.read_text())):.4f}")
        return
    shutil.rmtree(assets, ignore_errors=True)
    shutil.copytree(best, assets)
    print(f"shipped {best} -> {assets}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m engine.train.mulan", description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="runs/corpus")
    ap.add_argument("--out", default="runs/mulan")
    ap.add_argument("--steps", type=int, default=100_000)
    ap.add_argument("--minutes", type=float, default=None)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--paraphrases", type=int, default=3)
    ap.add_argument("--eval-every", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--version", default=time.strftime("%Y.%m.%d"))
    ap.add_argument("--skip-train", action="store_true", help="only fit the token RVQ and score the best model")
    ap.add_argument("--ship", action="store_true", help="copy OUT/best into --assets if it scores better")
    ap.add_argument("--assets", type=Path, default=Path("assets/mulan"))
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.ship:
        ship(Path(a.out) / "best", a.assets)
        return 0
    if not a.skip_train:
        print(json.dumps(train(a)))
    if int(os.environ.get("RANK", "0")) == 0:
        finish(a)
    return 0


if __name__ == "__main__":
    sys.exit(main())
