"""Phase ``tower``: MuLan's audio tower and text projection, contrastive, then its token RVQ:
``python -m engine.train.mulan tower --data runs/corpus --out runs/mulan [--minutes M]``.

1. Features, cached in ``FEATURES/features-<split>.pt`` (``features.build_features``): the music front end of
   every clip (``engine.spectral``) and the frozen MiniLM embeddings of its captions: the corpus's 3 plus ``--paraphrases`` more written by
   ``make_caption`` from the clip's tags (train only), so one clip is seen under many wordings.
2. Contrastive training (symmetric InfoNCE, learned temperature) of the audio tower and the text projection on
   (random 8 s crop, random caption) pairs; AdamW; resumable from ``OUT/last.pt``; validation recall@10 and
   zero-shot tag accuracy every ``--eval-every`` steps; the best by their mean is kept.
3. The 12 x 1024 residual k-means fitted on the best model's train embeddings, audio and text together.
4. Test-split report in ``OUT/best/metrics.json``; ``--ship`` copies the best to ``assets/mulan`` if it scores better
   than the shipped one. Runs under ``torchrun`` too (each rank a different batch; gradients all-reduced).

``--aux-weight W`` adds linear classifiers of the four tags the zero-shot probes read (style, lead family, tempo
bucket, mode; cross-entropy, weight W), each twice: on the audio embedding, and per frame on the tower's hidden
frames before pooling (dense supervision, as the semantic tokenizer gets); the heads are dropped after training.
Why: a linear probe on the first audio embeddings read mode at 0.64 on the test split: in-batch contrast over
whole captions barely asks for mode (half of any batch shares it).
``--init DIR`` continues from a saved MuLan (architecture and weights); with ``--semantic DIR`` the tower's input
also takes the frame embeddings of that (frozen) semantic tokenizer, its new input weights starting at zero so the
model starts out computing what it did. Why: with the heads alone the tower learned the mode of the train clips
(head 0.90 on 400 train clips) but not of unseen ones (0.59-0.60 on validation after 300-400 steps): it memorises
clips, while the semantic encoder, trained per frame on pitch class, beat, tonic and mode with no instrument target,
reads the mode of 91.0% of test clips (mean of its per-frame mode head).
``--freeze-text`` (with ``--init``) trains the audio tower alone against the saved text projection and keeps the saved
token RVQ: text tokens, which are what the stages read for a prompt, stay the same, so the shipped stages stay valid;
``audio_version`` records the new audio side. Why: a new token space means retraining all three stages (hours).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ...kmeans import ResidualKMeans
from ...mulan import evaluate
from ...mulan.model import MuLan, MuLanConfig
from ...semantic import SemanticTokenizer
from ..loop import fit, metrics_of, save_best, ship, start
from .features import build_features, embed_split, score, selection

CROP = 200  # frames (8 s) per training example


def tag_labels(tags: list[dict]) -> dict[str, torch.Tensor]:
    """{tag: [N] class index in ``evaluate.probes()`` order, -100 where the clip's value has no probe}."""
    out = {}
    for tag, classes in evaluate.probes().items():
        names = list(classes)
        out[tag] = torch.tensor([names.index(t) if (t := evaluate.true_tag(tg, tag)) in names else -100 for tg in tags])
    return out


def initial_model(a: argparse.Namespace) -> MuLan:
    """A new MuLan, or ``--init``'s; with ``--semantic``, its tower widened to take the semantic encoder's frame
    embeddings (zero input weights: same function at the start). No token RVQ (``finish`` fits one), unless the text
    side is frozen: then the saved RVQ is kept."""
    model = MuLan.load(a.init) if a.init else MuLan(MuLanConfig(dim=a.dim, width=a.width, token_size=a.token_size))
    if a.semantic is not None and model.cfg.semantic is None:
        sem = SemanticTokenizer.load(a.semantic)
        wide = MuLan(dataclasses.replace(model.cfg, semantic=dataclasses.asdict(sem.cfg)))
        sd = model.state_dict()
        w = sd["audio.inp.weight"]
        sd["audio.inp.weight"] = torch.cat([w, w.new_zeros(w.shape[0], sem.cfg.dim, w.shape[2])], 1)
        sd.update({f"audio.sem.{k}": v for k, v in sem.state_dict().items()})
        wide.load_state_dict(sd)
        wide.rvq = model.rvq
        model = wide
    if a.freeze_text:
        if not a.init or model.rvq is None:
            raise SystemExit("--freeze-text needs --init with a saved MuLan that has token codebooks")
        model.text.requires_grad_(False)
    else:
        model.rvq = None
    return model


class TowerTask:
    """Contrastive training of the audio tower and text projection, with the optional tag heads."""

    name = "mulan"

    def __init__(self, a: argparse.Namespace, model: MuLan, train_f: dict, valid_f: dict):
        self.a, self.model, self.train_f, self.valid_f = a, model, train_f, valid_f
        self.tag_y = tag_labels(train_f["tags"]) if a.aux_weight and train_f["tags"][0] is not None else {}
        self.classes = {t: len(c) for t, c in evaluate.probes().items() if t in self.tag_y}
        n = self.classes
        self.heads = torch.nn.ModuleDict({**{t: torch.nn.Linear(model.cfg.dim, k) for t, k in n.items()},
                                          **{f"{t}_frames": torch.nn.Conv1d(model.cfg.width, k, 1) for t, k in n.items()}})

    def modules(self):
        return {"model": self.model, "heads": self.heads}

    def identity(self):
        return {"config": dataclasses.asdict(self.model.cfg), "aux": sorted(self.classes), "data": self.train_f["ids"]}

    def loss(self, step: int, rank: int):
        a, model, f = self.a, self.model, self.train_f
        N, C = f["text"].shape[:2]
        g = torch.Generator().manual_seed(a.seed * 1_000_003 + step * 101 + rank)
        idx = torch.randperm(N, generator=g)[: a.batch]
        start = torch.randint(0, 250 - CROP + 1, (len(idx),), generator=g)
        fr = torch.stack([f["frames"][i, :, s:s + CROP] for i, s in zip(idx.tolist(), start.tolist())]).float()
        fr = fr + 0.05 * torch.randn(fr.shape, generator=g)
        cap = f["text"][idx, torch.randint(0, C, (len(idx),), generator=g)].float()
        hid = model.audio.trunk(fr)
        au = model.audio.pool(hid, f["global"][idx])
        te = model.text(cap)
        logits = au @ te.t() * model.log_temp.exp().clamp(max=100)
        labels = torch.arange(len(idx))
        loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2
        if self.classes:  # unit vectors: scale them so a linear head can be confident
            h, y = self.heads, self.tag_y
            aux = torch.stack([F.cross_entropy(h[t](au * 10), y[t][idx], ignore_index=-100)
                               + F.cross_entropy(h[f"{t}_frames"](hid), y[t][idx, None].expand(-1, hid.shape[-1]),
                                                 ignore_index=-100) for t in self.classes]).sum() / (2 * len(self.classes))
            loss = loss + a.aux_weight * aux
        return loss, {"loss": float(loss.detach()), "temp": float(model.log_temp.exp().detach())}

    def validate(self, step: int) -> dict:
        m = score(self.model, self.valid_f)
        return {**m, "score": -selection(m)}

    def keep_best(self, metrics: dict, step: int) -> None:
        torch.save(self.model.state_dict(), Path(self.a.out) / "best.pt")


def train(a: argparse.Namespace) -> None:
    rank, world = start(a)
    train_f = build_features(a.data, "train", Path(a.features), a.paraphrases)
    valid_f = build_features(a.data, "valid", Path(a.features), 0)
    model = initial_model(a).train()
    task = TowerTask(a, model, train_f, valid_f)
    opt = torch.optim.AdamW([p for p in [*model.parameters(), *task.heads.parameters()] if p.requires_grad], lr=a.lr,
                            weight_decay=0.05)
    fit(task, opt, Path(a.out), a, world, rank)
    if rank == 0:
        finish(a)


def finish(a: argparse.Namespace) -> dict:
    """Fit the token RVQ on the best model and write OUT/best with test metrics."""
    out = Path(a.out)
    model = initial_model(a)
    model.load_state_dict(torch.load(out / "best.pt", weights_only=True))
    model.eval()
    if not a.freeze_text:
        model.cfg.text_version = ""  # the text projection trained here with the tower
        train_f = build_features(a.data, "train", Path(a.features), a.paraphrases)
        audio, text = embed_split(model, train_f)
        pts = torch.cat([audio, text.reshape(-1, text.shape[-1])])
        model.rvq = ResidualKMeans.fit(pts, model.cfg.token_levels, model.cfg.token_size, iters=15, seed=a.seed,
                                       progress=lambda lv, r: print(f"rvq level {lv + 1}: residual {r:.4f}", file=sys.stderr))
    test_f = build_features(a.data, "test", Path(a.features), 0)
    m = score(model, test_f, n=min(500, len(test_f["frames"])))
    t_audio, t_text = embed_split(model, test_f)
    m["token_cosine_text"] = evaluate.token_fidelity(model, t_text[:, 0])
    m["token_cosine_audio"] = evaluate.token_fidelity(model, t_audio)
    m["pair_cosine"] = float((t_audio * t_text[:, 0]).sum(-1).mean())
    ck = torch.load(out / "last.pt", weights_only=False)
    m["train_steps"] = ck["step"]
    if a.freeze_text:  # text tokens unchanged: the stages stay valid; the audio side gets its own version
        model.cfg.audio_version = f"{a.version}-s{ck['step']}"
    else:
        model.cfg.version = f"{a.version}-s{ck['step']}"  # the stages record it: new tokens, new version
    m["valid_history"] = ck["history"][-3:]
    save_best(model, out, m)
    print(json.dumps(m, indent=1))
    return m


def ship_best(a: argparse.Namespace) -> bool:
    """The whole MuLan (a new token space: every stage must be retrained on it) when its test selection score beats
    the shipped one's."""
    best, assets = Path(a.out) / "best", Path(a.assets)
    old = metrics_of(assets)

    def replace():
        shutil.rmtree(assets, ignore_errors=True)
        shutil.copytree(best, assets)
    return ship(best, assets, replace, "MuLan", "selection score", selection(metrics_of(best)),
                None if old is None else selection(old), higher_is_better=True)


DEFAULTS = {"lr": 1e-3, "batch": 128, "eval_every": 200, "ckpt_every": 200, "warmup": 200, "steps": 100_000}


def add_args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--token-size", type=int, default=1024, help="codes per level of the 12-level token RVQ")
    ap.add_argument("--paraphrases", type=int, default=3)
    ap.add_argument("--init", type=Path, default=None, help="continue from this saved MuLan (e.g. assets/mulan)")
    ap.add_argument("--semantic", type=Path, default=None,
                    help="feed the tower this semantic tokenizer's frame embeddings too (frozen; e.g. assets/semantic)")
    ap.add_argument("--freeze-text", action="store_true",
                    help="train the audio tower only, keeping --init's text projection and token RVQ (stages stay valid)")
    ap.add_argument("--aux-weight", type=float, default=0.0, help="weight of the tag classifiers on audio embeddings")
    ap.add_argument("--version", default=time.strftime("%Y.%m.%d"))
