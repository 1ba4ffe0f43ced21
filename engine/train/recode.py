"""Carry trained coarse/fine stages over to a new codec's codes: ``python -m engine.train.recode --tokens runs/tokens
--old assets --new runs/assets_p1 --out runs/recoded``.

A codec fine-tuned as a whole (encoder included) names the same sounds with other codes: measured for codec
2026.11.23-p1 (its step-5,951 checkpoint) against 2026.11.22-2 on 24 valid clips, 2.0% of level-1 codes are identical, and even the best
one-to-one relabelling (Hungarian matching on train co-occurrences) reaches only 4.6%. So the stages' code
embeddings and output heads are meaningless on the new codes, while their transformer bodies, MuLan and semantic
tables are not. This writes stages whose every code-indexed row (input embeddings, aligned conditioning tables, output
heads) for a new code ``j`` of level ``k`` is the average of the old rows weighted by how often the old codec chose
each old code where the new one chose ``j`` (the same train clips encoded by both), so training on the new codes
(``python -m engine.train.stage ... --init OUT``) starts from a soft translation instead of noise. Rows of new codes
never chosen on train, and the extra start/absent rows, keep the old values.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import torch

from ..lm.model import StageLM


def cooccurrence(old: torch.Tensor, new: torch.Tensor, size: int) -> torch.Tensor:
    """old, new: codes [N, K, F] of the same clips -> counts [K, size(old), size(new)]."""
    K = old.shape[1]
    o = old.permute(1, 0, 2).reshape(K, -1).long()
    n = new.permute(1, 0, 2).reshape(K, -1).long()
    out = torch.zeros(K, size * size, dtype=torch.float64)
    out.scatter_add_(1, o * size + n, torch.ones_like(o, dtype=torch.float64))
    return out.view(K, size, size)


def translate_rows(weight: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """weight [V(+extra), D] indexed by old codes, counts [V, V] (old, new) -> the same table indexed by new codes."""
    V = counts.shape[0]
    total = counts.sum(0)  # per new code
    mix = (counts / total.clamp(min=1)[None]).T.to(weight.dtype)  # [new, old]
    out = weight.clone()
    seen = total > 0
    out[:V][seen] = (mix @ weight[:V])[seen]
    return out


@torch.no_grad()
def recode(stage: StageLM, counts: torch.Tensor) -> StageLM:
    """Rewrite every table of ``stage`` indexed by codec codes; ``counts`` [8, V, V] covers levels 1-8."""
    name = stage.cfg.name
    out_levels = range(4) if name == "coarse" else range(4, 8)  # levels the stage writes (tok + heads)
    for i, k in enumerate(out_levels):
        stage.tok[i].weight.copy_(translate_rows(stage.tok[i].weight, counts[k]))
        stage.heads[i].weight.copy_(translate_rows(stage.heads[i].weight, counts[k]))
    if name == "fine":  # its aligned streams are levels 1-4
        for k in range(4):
            stage.cond[k].weight.copy_(translate_rows(stage.cond[k].weight, counts[k]))
    return stage


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m engine.train.recode", description=__doc__.split("\n\n")[0])
    ap.add_argument("--tokens", type=Path, default=Path("runs/tokens"))
    ap.add_argument("--old", type=Path, default=Path("assets"), help="assets whose codec the stages were trained on")
    ap.add_argument("--new", type=Path, required=True, help="assets holding the new codec")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--stages", nargs="+", default=["coarse", "fine"])
    a = ap.parse_args(argv)
    versions = [json.loads((d / "codec" / "codec.json").read_text())["version"] for d in (a.old, a.new)]
    if versions[0] == versions[1]:
        raise SystemExit(f"both codecs are version {versions[0]}: nothing to translate")
    blobs = []
    for v in versions:
        path = a.tokens / f"codec-train-{v}.pt"
        if not path.exists():
            raise SystemExit(f"{path} is missing: run python -m engine.train.tokenize --only codec --splits train")
        blobs.append(torch.load(path, weights_only=False))
    if list(blobs[0]["ids"]) != list(blobs[1]["ids"]):
        raise SystemExit("the two token files hold different clips; tokenise the same corpus with both codecs")
    size = json.loads((a.new / "codec" / "codec.json").read_text())["codebook_size"]
    counts = cooccurrence(blobs[0]["codes"], blobs[1]["codes"], size)
    top = counts.amax(1).sum(-1) / counts.sum((1, 2))
    print("share of frames whose new code is explained by its most frequent old code, per level:",
          [round(float(t), 3) for t in top], file=sys.stderr)
    a.out.mkdir(parents=True, exist_ok=True)
    for name in a.stages:
        stage = recode(StageLM.load(a.old / "stages", name), counts)
        stage.cfg = dataclasses.replace(stage.cfg, version=f"recoded-to-{versions[1]}")
        stage.save(a.out)
        print(f"wrote {a.out / name}.safetensors", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
