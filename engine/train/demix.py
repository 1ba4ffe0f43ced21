"""Train the drum remover (``engine.demix``): ``python -m engine.train.demix --corpus runs/corpus10h-x3
--out runs/demix [--ship]``.

Data: clips of a corpus build re-rendered from their plans as two stems, the drums and everything else (unnormalised,
then scaled by the gain that normalised their mix, so they add up to it), the drummed clips and a share of drumless
ones (whose target is the whole mix: the remover must leave music without drums alone). The input is the mix after a
round trip through the shipped codec, the audio the generator makes; the target the clean rest stem. Made once per
corpus and split and cached beside the run (``OUT/data-<corpus>-<split>.pt``, fp16).
Loss: L1 between the square roots of the masked input's magnitude and the target's, on random 64-frame crops;
validation on whole clips. A build with crossover (drummed styles played without drums) teaches the remover what a
drummed style sounds like without them.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..codec import Codec
from ..data.build import clip_arrangement, melody_pool
from ..data.render import Renderer, normalize
from ..demix import DemixConfig, DrumRemover
from ..semantic import SemanticTokenizer
from .loop import add_run_args, fit, metrics_of, save_best, ship, start

CROP = 64  # frames: 0.7 s, four times the mask's reach each side


def stems(renderer: Renderer, arr) -> tuple[np.ndarray, np.ndarray]:
    """(the mix, everything but the drums), at the level the corpus normalises the mix to."""
    drums = renderer.render(arr, ("drums",), normalized=False) if any(t.is_drums for t in arr.tracks) else None
    rest = renderer.render(arr, tuple(t.role for t in arr.tracks if not t.is_drums), normalized=False)
    mix = rest if drums is None else rest + drums
    gain = float(np.dot(normalize(mix), mix) / max(float(np.dot(mix, mix)), 1e-12))  # normalize is a gain
    return (mix * gain).astype(np.float32), (rest * gain).astype(np.float32)


def pick(records: list[dict], n: int, drumless: float) -> list[dict]:
    """Up to ``n`` clips, a ``drumless`` share of them without drums, in corpus order."""
    with_drums = [r for r in records if "drums" in r["tags"]["programs"]]
    without = [r for r in records if "drums" not in r["tags"]["programs"]]
    k = min(len(without), round(n * drumless))
    return with_drums[: n - k] + without[:k]


def prepare(corpus: Path, split: str, n: int, drumless: float, out: Path, assets: Path,
            melodies: Path | None = Path("runs/cache")) -> dict:
    """{"mix": codec round trips [N, T], "rest": clean targets [N, T]} of a split (fp16), cached in ``out``."""
    cache = out / f"data-{corpus.name}-{split}-{n}.pt"
    if cache.exists():
        return torch.load(cache, weights_only=False)
    records = pick([json.loads(line) for line in (corpus / f"{split}.jsonl").read_text().splitlines()], n, drumless)
    if not records:
        raise SystemExit(f"{corpus}/{split}.jsonl has no clips")
    try:
        pool = melody_pool(corpus, melodies)
    except ValueError as e:
        raise SystemExit(str(e)) from None
    codec, semantic = Codec.load(assets / "codec"), SemanticTokenizer.load(assets / "semantic")
    renderer = Renderer()
    T = round(records[0]["duration"] * codec.sample_rate)
    data = {"ids": [r["id"] for r in records], "codec": codec.cfg.version,
            "mix": torch.zeros(len(records), T, dtype=torch.float16), "rest": torch.zeros(len(records), T, dtype=torch.float16)}
    for i, r in enumerate(tqdm(records, desc=f"drum stems {corpus.name}/{split}", unit="clip")):
        try:
            mix, rest = stems(renderer, clip_arrangement(r, pool))
        except ValueError as e:
            raise SystemExit(str(e)) from None
        heard = codec.reconstruct(torch.from_numpy(mix)[None], semantic=semantic)[0]
        data["mix"][i, : min(T, len(heard))] = heard[:T].clamp(-1, 1).half()
        data["rest"][i, : min(T, len(rest))] = torch.from_numpy(rest[:T]).half()
    renderer.close()
    out.mkdir(parents=True, exist_ok=True)
    torch.save(data, cache)
    return data


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
