"""Train the drum remover (``engine.demix``): ``python -m engine.train.demix --corpus runs/corpus10h-x3
--out runs/demix [--ship]``.

Data (``engine.data.stems``): clips of a corpus build re-rendered from their plans as two stems, the drums and
everything else, the drummed clips and a share of drumless ones (whose target is the whole mix: the remover must leave
music without drums alone). The input is the mix after a round trip through the shipped codec, the audio the
generator makes; the target the clean rest stem. Cached beside the run (``OUT/data-<corpus>-<split>-<n>.pt``).
Loss: L1 between the square roots of the masked input's magnitude and the target's, on random 64-frame crops;
validation on whole clips. A build with crossover (drummed styles played without drums) teaches the remover what a
drummed style sounds like without them.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import torch

from ..data.stems import prepare
from ..demix import DemixConfig, DrumRemover
from .loop import add_run_args, fit, metrics_of, save_best, ship, start

CROP = 64  # frames: 0.7 s, four times the mask's reach each side


def loss_of(model: DrumRemover, mix: torch.Tensor, rest: torch.Tensor, masked: bool = True) -> torch.Tensor:
    """L1 between square-root magnitudes: the masked mix's (the mix's as it is if not ``masked``) and the rest
    stem's (square roots weigh quiet bins up)."""
    x, y = model.spectrum(mix.float()).abs(), model.spectrum(rest.float()).abs()
    return (((model(x) * x) if masked else x).clamp_min(1e-8).sqrt() - y.sqrt()).abs().mean()


class DemixTask:
    name = "drum remover"

    def __init__(self, model: DrumRemover, train: dict, valid: dict, a: argparse.Namespace, out: Path):
        self.model, self.train, self.valid, self.a, self.out = model, train, valid, a, out
        self.crop = (CROP - 1) * model.cfg.hop

    def modules(self) -> dict:
        return {"model": self.model}

    def identity(self) -> dict:
        return {**dataclasses.asdict(self.model.cfg), "clips": self.train["ids"]}

    def loss(self, step: int, rank: int):
        g = torch.Generator().manual_seed(self.a.seed * 1_000_003 + step * 97 + rank)
        idx = torch.randint(0, len(self.train["ids"]), (self.a.batch,), generator=g)
        at = torch.randint(0, self.train["mix"].shape[-1] - self.crop, (self.a.batch,), generator=g)
        mix = torch.stack([self.train["mix"][i, s:s + self.crop] for i, s in zip(idx.tolist(), at.tolist())])
        rest = torch.stack([self.train["rest"][i, s:s + self.crop] for i, s in zip(idx.tolist(), at.tolist())])
        loss = loss_of(self.model, mix, rest)
        return loss, {"loss": float(loss.detach())}

    @torch.inference_mode()
    def validate(self, step: int) -> dict:
        self.model.eval()
        total = as_is = 0.0
        for i in range(0, len(self.valid["ids"]), 8):
            mix, rest = self.valid["mix"][i:i + 8], self.valid["rest"][i:i + 8]
            total += float(loss_of(self.model, mix, rest)) * len(mix)
            as_is += float(loss_of(self.model, mix, rest, masked=False)) * len(mix)
        self.model.train()
        n = len(self.valid["ids"])
        return {"valid_l1": round(total / n, 4), "mix_as_is_l1": round(as_is / n, 4), "score": total / n}

    def keep_best(self, metrics: dict, step: int) -> None:
        save_best(self.model, self.out, metrics)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m engine.train.demix", description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", type=Path, default=Path("runs/corpus10h-x3"))
    ap.add_argument("--out", type=Path, default=Path("runs/demix"))
    ap.add_argument("--assets", type=Path, default=Path("assets"), help="the codec of the round trip; --ship's target")
    ap.add_argument("--cache", type=Path, default=Path("runs/cache"), help="the corpus build's parsed melodies")
    ap.add_argument("--clips", type=int, default=600, help="train clips")
    ap.add_argument("--valid-clips", type=int, default=100)
    ap.add_argument("--init", type=Path, default=None, help="start from this remover's weights (e.g. assets/demix)")
    ap.add_argument("--drumless", type=float, default=0.2, help="the share of clips without drums")
    ap.add_argument("--channels", type=int, default=DemixConfig.channels)
    add_run_args(ap, lr=2e-3, batch=8, eval_every=100, ckpt_every=100, warmup=50, final_lr=1e-4, steps=1500)
    ap.add_argument("--ship", action="store_true", help="copy the best into ASSETS/demix if it beats the shipped one")
    a = ap.parse_args(argv)
    if a.ship:
        new, old = metrics_of(a.out / "best"), metrics_of(a.assets / "demix")
        if new is None:
            raise SystemExit(f"nothing trained in {a.out / 'best'}")
        ship(a.out / "best", a.assets / "demix", ("drums.json", "drums.safetensors", "metrics.json"), "drum remover",
             "validation L1", new["score"], None if old is None else old["score"])
        return 0
    start(a)
    train = prepare(a.corpus, "train", a.clips, a.drumless, a.out, a.assets, a.cache)
    valid = prepare(a.corpus, "valid", a.valid_clips, a.drumless, a.out, a.assets, a.cache)
    model = DrumRemover(DemixConfig(channels=a.channels, version=f"{a.corpus.name}+codec {train['codec']}"))
    if a.init is not None:
        model.load_state_dict(DrumRemover.load(a.init).state_dict())
    opt = torch.optim.Adam(model.parameters(), lr=a.lr)
    print(f"drum remover: {sum(p.numel() for p in model.parameters())} parameters, {len(train['ids'])} train clips",
          file=sys.stderr)
    fit(DemixTask(model, train, valid, a, a.out), opt, a.out, a, 1, 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
