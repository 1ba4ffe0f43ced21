"""Train one stage: ``python -m engine.train.stage {semantic,coarse,fine} --tokens runs/tokens [more] --out runs/stages``.

Reads the token files of ``engine.train.tokenize`` made by the shipped codec, MuLan and semantic tokenizer (their
versions are recorded in the stage's config, and the generator refuses a stage trained on other tokens); several
``--tokens`` folders (builds of other seeds) train on all their train clips and validate on the first's (or
``--valid-tokens``'s). AdamW with warm-up, progress bar, validation loss and per-codebook accuracy every
``--eval-every`` steps; resumable from ``OUT/<stage>/last.pt``; the best model by validation loss is kept in
``OUT/<stage>/best`` and ``--ship`` copies it into ``assets/stages`` when it beats the shipped one; ``--candidate
DIR`` writes the assets with it swapped in, for the paired gate (``bench compare --b DIR``) that decides whether a
checkpoint really ships. Runs under ``torchrun`` (gradients all-reduced).

``--init DIR`` starts from a trained stage of the same width (fine-tuning): its weights are loaded by name, and a
conditioning stream the old stage did not have (the semantic stage's beat grid, the coarse stage's melody with
``--melody``) starts as a zero embedding, so the fine-tuned model begins exactly where the old one was. ``--n-layer``
may add blocks (identity at the start) and ``--prefix-rank`` factorise the MuLan prefix tables (``init_from``):
the trained tables are nearly low-rank (at rank 64 the coarse stage's validation loss moves by 0.0006).

``coarse --timbre-profile TOKENS...`` fits the coarse codes' timbre profile (``engine.lm.timbre``) into
``ASSETS/stages`` instead of training.

``--self-feed S``: a share S of each batch's input tokens are the model's own draws (``engine.lm.stages.self_feed``,
parallel scheduled sampling), so the stage learns to continue from its own mistakes as it must at generation; one
extra forward pass without gradients per step. The validation loss stays teacher-forced on real tokens only.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
from pathlib import Path

import torch

from ..lm.model import StageLM, masked_loss
from ..lm.stages import FRAME_RATE, LATE_MAX, default_config, make_batch, self_feed
from ..lm.timbre import LEVELS, fit_timbre_profile, no_drums_direction, save_timbre_profile
from ..mulan import MuLan
from ..mulan.model import MuLanConfig
from .loop import add_run_args, fit, metrics_of, save_best, ship, start
from .tokenize import load


def shipped_versions(assets: Path) -> dict:
    v = {}
    for kind, file in (("codec", "codec/codec.json"), ("mulan", "mulan/mulan.json"), ("semantic", "semantic/semantic.json")):
        v[kind] = json.loads((assets / file).read_text())["version"]
    return v


@torch.no_grad()
def init_from(model: StageLM, old: StageLM) -> None:
    """Copy ``old``'s weights into ``model`` so that it starts as the same function.

    ``model`` may be deeper (the extra blocks follow the old ones with zero output projections: identity residual
    blocks until trained), read streams ``old`` lacks (zero embeddings) and have another ``prefix_rank`` (the old
    prefix tables, at full width, are factorised by a truncated SVD: the trained tables are nearly low-rank)."""
    o, n = old.cfg, model.cfg
    if (o.d_model, o.vocab, o.n_head) != (n.d_model, n.vocab, n.n_head) or n.n_layer < o.n_layer:
        raise SystemExit(f"--init: the {o.name} stage there is {o.d_model} wide with {o.n_layer} layers and "
                         f"{o.n_head} heads; fine-tuning keeps the width and heads and may only add layers")
    state = old.state_dict()
    for name, p in model.state_dict().items():
        if name in state and state[name].shape == p.shape:
            p.copy_(state[name])
        elif name.startswith("cond."):
            p.zero_()
        elif name.startswith("blocks.") and int(name.split(".")[1]) >= o.n_layer:
            if name.split(".", 2)[2] in ("proj.weight", "proj.bias", "mlp.2.weight", "mlp.2.bias"):
                p.zero_()  # a new block adds nothing to the residual stream until it learns to
        elif not name.startswith("prefix") or n.prefix_rank == o.prefix_rank:
            raise SystemExit(f"--init: {name} does not match the old stage ({tuple(p.shape)})")
    if n.prefix_rank != o.prefix_rank:
        tables = old.prefix_tables()  # [P, V, D]
        if n.prefix_rank:
            P, V, D = tables.shape
            U, S, Vt = torch.linalg.svd(tables.reshape(P * V, D), full_matrices=False)
            tables = (U[:, :n.prefix_rank] * S[:n.prefix_rank]).reshape(P, V, n.prefix_rank)
            model.prefix_proj.weight.copy_(Vt[:n.prefix_rank].T)
        for tab, t in zip(model.prefix, tables):
            tab.weight.copy_(t)


@torch.inference_mode()
def validate(model: StageLM, tok: dict, n: int = 64, batch: int = 16) -> dict:
    model.eval()
    g = torch.Generator().manual_seed(0)
    losses, correct, total = [], torch.zeros(model.cfg.n_codebooks), torch.zeros(model.cfg.n_codebooks)
    for i in range(0, min(n, len(tok["ids"])), batch):
        idx = torch.arange(i, min(i + batch, n, len(tok["ids"])))
        b = make_batch(model.cfg, tok, idx, g, train=False)
        logits = model(b["inputs"], b["prefix"], b["cond"])
        losses.append(float(masked_loss(logits, b["targets"], model.cfg.vocab)) * len(idx))
        mask = b["targets"] != model.cfg.vocab
        hit = (logits.argmax(-1) == b["targets"]) & mask
        correct += hit.sum((0, 2)).float()
        total += mask.sum((0, 2)).float()
    model.train()
    n_done = min(n, len(tok["ids"]))
    return {"valid_loss": sum(losses) / n_done, "valid_acc": [round(float(x), 4) for x in correct / total]}


class StageTask:
    """Next-token training of one stage on the tokenised corpus."""

    def __init__(self, model: StageLM, train_tok: dict, valid_tok: dict, a: argparse.Namespace, out: Path):
        self.model, self.train_tok, self.valid_tok, self.a, self.out = model, train_tok, valid_tok, a, out
        self.name = model.cfg.name
        self.late_max = round(a.late_seconds * FRAME_RATE)

    def modules(self) -> dict:
        return {"model": self.model}

    def identity(self) -> dict:
        return dataclasses.asdict(self.model.cfg)

    def loss(self, step: int, rank: int):
        a, cfg = self.a, self.model.cfg
        g = torch.Generator().manual_seed(a.seed * 1_000_003 + step * 97 + rank)
        idx = torch.randint(0, len(self.train_tok["ids"]), (a.batch,), generator=g)
        b = self_feed(self.model, make_batch(cfg, self.train_tok, idx, g, late_max=self.late_max), a.self_feed, g)
        loss = masked_loss(self.model(b["inputs"], b["prefix"], b["cond"]), b["targets"], cfg.vocab)
        return loss, {"loss": float(loss.detach())}

    def validate(self, step: int) -> dict:
        m = validate(self.model, self.valid_tok)
        return {**m, "score": m["valid_loss"]}

    def keep_best(self, metrics: dict, step: int) -> None:
        save_best(self.model, self.out, {**metrics, "params": self.model.n_params(),
                                         "late_seconds": self.late_max / FRAME_RATE, "self_feed": self.a.self_feed})


def ship_stage(name: str, out: Path, assets: Path) -> bool:
    """Copy ``out/best`` into ``assets/stages`` when its validation loss beats the shipped stage's."""
    new = metrics_of(out / "best")
    old = metrics_of(assets / "stages", f"{name}.metrics.json")
    dest = assets / "stages"

    def copy():
        for f in (out / "best").iterdir():
            shutil.copy2(f, dest / (f.name if f.name != "metrics.json" else f"{name}.metrics.json"))
    return ship(out / "best", dest, copy, f"{name} stage", "validation loss", new["valid_loss"],
                None if old is None else old["valid_loss"])


def candidate(name: str, out: Path, assets: Path, dest: Path) -> Path:
    """``assets`` with ``out/best`` as its ``name`` stage, written to ``dest``: the B side of ``bench compare``
    (``python -m engine.eval.bench compare --b DEST``), the paired gate a stage passes before it ships.
    Everything else is a copy of the shipped files (copies, not links: a later write into the candidate must never
    reach the shipped assets)."""
    if dest.resolve() == assets.resolve():
        raise SystemExit("--candidate must be another folder than --assets")
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(assets, dest)
    for f in (out / "best").iterdir():
        target = dest / "stages" / (f.name if f.name != "metrics.json" else f"{name}.metrics.json")
        target.unlink(missing_ok=True)
        shutil.copy2(f, target)
    print(f"candidate assets with {out / 'best'} as the {name} stage -> {dest}")
    return dest


def timbre_profile(folders: list[Path], assets: Path) -> int:
    """Fit ``engine.lm.timbre`` on the train clips' coarse codes, leads and drums; written beside the stages."""
    versions = shipped_versions(assets)
    mulan = MuLan.load(assets / "mulan")
    codes, leads, drums, emb, styles = [], [], [], [], []
    for d in folders:
        cod, mel = d / f"codec-train-{versions['codec']}.pt", d / "melody-train.pt"
        mul = d / f"mulan-train-{mulan.cfg.token_key}.pt"
        if not cod.exists() or not mel.exists() or not mul.exists():
            raise SystemExit(f"--timbre-profile: {d} lacks train tokens of the shipped codec or MuLan "
                             "(python -m engine.train.tokenize)")
        c, m, u = (torch.load(f, weights_only=False) for f in (cod, mel, mul))
        if not c["ids"] == m["ids"] == u["ids"] or "style" not in m:
            raise SystemExit(f"--timbre-profile: the token files in {d} disagree on the clips, or lack the leads: "
                             "re-tokenise (python -m engine.train.tokenize --only melody)")
        codes.append(c["codes"][:, :LEVELS])
        leads.append(m["lead"])
        drums.append(m["drums"])
        emb.append(mulan.detokenize(u["audio"].long()))  # the clips' audio embeddings, as their 12 tokens keep them
        styles += m["style"]
    size = json.loads((assets / "codec" / "codec.json").read_text())["codebook_size"]
    try:
        with torch.no_grad():
            direction = no_drums_direction(torch.cat(emb), torch.cat(drums), styles)
    except ValueError as e:  # a corpus too small to say; the codes' columns still pull
        print(f"timbre profile without a no-drums direction: {e}", file=sys.stderr)
        direction = None
    profile = fit_timbre_profile(torch.cat(codes), torch.cat(leads), torch.cat(drums), size, direction)
    path = save_timbre_profile(profile, assets / "stages", versions["codec"], versions["mulan"])
    print(f"timbre profile of {sum(len(x) for x in leads)} clips, families {', '.join(profile.families)} -> {path}")
    return 0


def joined(parts: list[dict]) -> dict:
    """Token sets of several corpus builds as one (each clip keeps as many captions as every build has)."""
    if len(parts) == 1:
        return parts[0]
    captions = min(p["mulan_text"].shape[1] for p in parts)
    out = {"ids": [i for p in parts for i in p["ids"]]}
    for k in set.intersection(*(set(p) for p in parts)) - {"ids"}:
        out[k] = torch.cat([p[k][:, :captions] if k == "mulan_text" else p[k] for p in parts])
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m engine.train.stage", description=__doc__.split("\n\n")[0])
    ap.add_argument("stage", choices=["semantic", "coarse", "fine"])
    ap.add_argument("--tokens", type=Path, nargs="+", default=[Path("runs/tokens")])
    ap.add_argument("--valid-tokens", type=Path, default=None, help="validate on this folder's clips (default: the first --tokens)")
    ap.add_argument("--out", type=Path, default=Path("runs/stages"))
    ap.add_argument("--assets", type=Path, default=Path("assets"))
    add_run_args(ap, lr=1e-3, batch=8, eval_every=200, ckpt_every=200, warmup=300)
    ap.add_argument("--d-model", type=int, default=256)
    ap.add_argument("--n-layer", type=int, default=4)
    ap.add_argument("--n-head", type=int, default=4)
    ap.add_argument("--prefix-rank", type=int, default=0,
                    help="width of each MuLan token table before one shared projection (0: full width)")
    ap.add_argument("--dropout", type=float, default=0.0)
    ap.add_argument("--init", type=Path, default=None, help="start from the stage in this folder (fine-tuning)")
    ap.add_argument("--melody", action="store_true", help="coarse: read the melody tokens as well as the semantic ids")
    ap.add_argument("--late-seconds", type=float, default=LATE_MAX / FRAME_RATE,
                    help="half of the training clips start up to this late (mid-piece starts, as in long form)")
    ap.add_argument("--self-feed", type=float, default=0.0,
                    help="share of the input tokens replaced by the model's own draws (parallel scheduled sampling)")
    ap.add_argument("--ship", action="store_true")
    ap.add_argument("--candidate", type=Path, default=None,
                    help="write the assets with OUT/best as this stage to this folder, for bench compare --b")
    ap.add_argument("--timbre-profile", type=Path, nargs="+", default=None, metavar="TOKENS",
                    help="coarse: fit the codes' timbre profile on these token folders' train clips, into ASSETS/stages")
    a = ap.parse_args(argv)
    if a.timbre_profile:
        if a.stage != "coarse":
            ap.error("--timbre-profile profiles the coarse stage's codes")
        return timbre_profile(a.timbre_profile, a.assets)
    if a.melody and a.stage != "coarse":
        ap.error("--melody is for the coarse stage (the semantic stage always reads the melody)")
    if not 0 <= a.self_feed < 1:
        ap.error("--self-feed is a share, from 0 to under 1")
    if not 0 <= a.late_seconds < 10:
        ap.error("--late-seconds is from 0 to under 10 (a clip is 10 s)")
    out = a.out / a.stage
    if a.candidate:
        candidate(a.stage, out, a.assets, a.candidate)
        return 0
    if a.ship:
        ship_stage(a.stage, out, a.assets)
        return 0
    rank, world = start(a)
    versions = shipped_versions(a.assets)
    need_codec = a.stage != "semantic"
    key = MuLanConfig.from_dict(json.loads((a.assets / "mulan" / "mulan.json").read_text())).token_key
    train_tok = joined([load(t, "train", versions, need_codec, key) for t in a.tokens])
    valid_tok = load(a.valid_tokens or a.tokens[0], "valid", versions, need_codec, key)
    sizes = {"n_semantic": json.loads((a.assets / "semantic" / "semantic.json").read_text())["n_tokens"],
             "codec_size": json.loads((a.assets / "codec" / "codec.json").read_text())["codebook_size"],
             "mulan_size": json.loads((a.assets / "mulan" / "mulan.json").read_text())["token_size"]}
    cfg = default_config(a.stage, **sizes, melody=a.melody, d_model=a.d_model, n_layer=a.n_layer, n_head=a.n_head,
                         prefix_rank=a.prefix_rank, dropout=a.dropout, version=json.dumps(versions, sort_keys=True))
    model = StageLM(cfg)
    if a.init is not None:
        init_from(model, StageLM.load(a.init, a.stage))
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, betas=(0.9, 0.95), weight_decay=0.05)
    if rank == 0:
        print(f"{a.stage}: {model.n_params() / 1e6:.2f}M parameters, {len(train_tok['ids'])} train clips", file=sys.stderr)
    fit(StageTask(model, train_tok, valid_tok, a, out), opt, out, a, world, rank)
    return 0


if __name__ == "__main__":
    sys.exit(main())
