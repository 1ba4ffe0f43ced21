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

``--aux-weight W`` adds linear classifiers of the four tags the zero-shot probes read (style, lead family, tempo
bucket, mode; cross-entropy, weight W), each twice: on the audio embedding, and per frame on the tower's hidden
frames before pooling (dense supervision, as the semantic tokenizer gets); the heads are dropped after training.
Why: a linear probe on the session-2 audio embeddings read mode at 0.64 on the test split: in-batch contrast over
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
from ..semantic import SemanticTokenizer
from .distributed import agreed_stop, average_gradients, leave_group, setup
from .publish import save_best

CROP = 200  # frames (8 s) per training example


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
    model = MuLan.load(a.init) if a.init else MuLan(MuLanConfig(dim=a.dim, width=a.width))
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


def _selection(m: dict) -> float:
    return float(np.mean([v for k, v in m.items() if k == "recall@10" or k.startswith("zero_shot")]))


def train(a: argparse.Namespace) -> dict:
    rank, world = setup()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    train_f = build_features(a.data, "train", out, a.paraphrases)
    valid_f = build_features(a.data, "valid", out, 0)
    torch.manual_seed(a.seed)
    model = initial_model(a).train()
    tag_y = tag_labels(train_f["tags"]) if a.aux_weight and train_f["tags"][0] is not None else {}
    classes = {t: len(c) for t, c in evaluate.probes().items() if t in tag_y}
    heads = torch.nn.ModuleDict({**{t: torch.nn.Linear(model.cfg.dim, n) for t, n in classes.items()},
                                 **{f"{t}_frames": torch.nn.Conv1d(model.cfg.width, n, 1) for t, n in classes.items()}})
    opt = torch.optim.AdamW([p for p in [*model.parameters(), *heads.parameters()] if p.requires_grad], lr=a.lr,
                            weight_decay=0.05)
    step, best, history = 0, -1.0, []
    ckpt = out / "last.pt"
    if ckpt.exists():
        ck = torch.load(ckpt, weights_only=False)
        model.load_state_dict(ck["model"])
        heads.load_state_dict(ck.get("heads", {}))
        opt.load_state_dict(ck["opt"])
        step, best, history = ck["step"], ck["best"], ck["history"]
        print(f"resumed from {ckpt} at step {step}", file=sys.stderr)
    N, C = train_f["text"].shape[:2]
    deadline = time.time() + a.minutes * 60 if a.minutes else float("inf")
    bar = tqdm(total=a.steps, initial=step, desc="mulan", disable=rank != 0)
    stop = agreed_stop(time.time() >= deadline, world)
    while step < a.steps and not stop:
        g = torch.Generator().manual_seed(a.seed * 1_000_003 + step * 101 + rank)
        idx = torch.randperm(N, generator=g)[: a.batch]
        start = torch.randint(0, 250 - CROP + 1, (a.batch,), generator=g)
        fr = torch.stack([train_f["frames"][i, :, s:s + CROP] for i, s in zip(idx.tolist(), start.tolist())]).float()
        fr = fr + 0.05 * torch.randn(fr.shape, generator=g)
        cap = train_f["text"][idx, torch.randint(0, C, (a.batch,), generator=g)].float()
        lr = a.lr * min(1.0, (step + 1) / 200)
        for grp in opt.param_groups:
            grp["lr"] = lr
        hid = model.audio.trunk(fr)
        au = model.audio.pool(hid, train_f["global"][idx])
        te = model.text(cap)
        logits = au @ te.t() * model.log_temp.exp().clamp(max=100)
        labels = torch.arange(len(idx))
        loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2
        if heads:  # unit vectors: scale them so a linear head can be confident
            aux = torch.stack([F.cross_entropy(heads[t](au * 10), tag_y[t][idx], ignore_index=-100)
                               + F.cross_entropy(heads[f"{t}_frames"](hid), tag_y[t][idx, None].expand(-1, hid.shape[-1]),
                                                 ignore_index=-100) for t in classes]).sum() / (2 * len(classes))
            loss = loss + a.aux_weight * aux
        opt.zero_grad(set_to_none=True)
        loss.backward()
        average_gradients(model, world)
        average_gradients(heads, world)
        opt.step()
        step += 1
        bar.update()
        bar.set_postfix(loss=f"{float(loss.detach()):.3f}", temp=f"{model.log_temp.exp().item():.1f}")
        stop = agreed_stop(time.time() >= deadline, world)
        last = step >= a.steps or stop
        if rank == 0 and (step % a.eval_every == 0 or last):
            m = score(model, valid_f)
            m["step"] = step
            history.append(m)
            tqdm.write(json.dumps(m))
            if _selection(m) > best:
                best = _selection(m)
                torch.save(model.state_dict(), out / "best.pt")
            torch.save({"model": model.state_dict(), "heads": heads.state_dict(), "opt": opt.state_dict(),
                        "step": step, "best": best, "history": history}, out / "last.tmp")
            os.replace(out / "last.tmp", ckpt)
    bar.close()
    leave_group(world)
    return {"step": step, "best_valid": best}


def finish(a: argparse.Namespace) -> dict:
    """Fit the token RVQ on the best model and write OUT/best with test metrics."""
    out = Path(a.out)
    model = initial_model(a)
    model.load_state_dict(torch.load(out / "best.pt", weights_only=True))
    model.eval()
    if not a.freeze_text:
        model.cfg.text_version = ""  # the text projection trained here with the tower
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
    if a.freeze_text:  # text tokens unchanged: the stages stay valid; the audio side gets its own version
        model.cfg.audio_version = f"{a.version}-s{ck['step']}"
    else:
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
    ap.add_argument("--init", type=Path, default=None, help="continue from this saved MuLan (e.g. assets/mulan)")
    ap.add_argument("--semantic", type=Path, default=None,
                    help="feed the tower this semantic tokenizer's frame embeddings too (frozen; e.g. assets/semantic)")
    ap.add_argument("--freeze-text", action="store_true",
                    help="train the audio tower only, keeping --init's text projection and token RVQ (stages stay valid)")
    ap.add_argument("--aux-weight", type=float, default=0.0, help="weight of the tag classifiers on audio embeddings")
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
