"""Train the note transcriber: ``python -m engine.train.transcriber --corpus runs/corpus10h-s1 [more corpora]
--out runs/transcriber [--ship]``.

Every corpus clip's notes are exact (``engine.data.build.clip_notes``: the lead's, which are the melody, and those
of the harmony, bass and pad; drums are not notes). Features and frame targets are computed once per corpus and
split and cached beside the run (``OUT/data-<corpus>-<split>.pt``).
Training reads random 5 s crops; the best model by validation loss is kept in ``OUT/best`` and ``--ship`` copies it
into ``assets/transcriber`` when it beats the shipped one.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import soundfile as sf
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..data.build import clip_notes, melody_pool
from ..transcribe import FRAME_RATE, N_FEATURES, N_KEYS, Transcriber, TranscriberConfig, features, targets
from .loop import add_run_args, fit, metrics_of, save_best, ship, start

CROP = 250  # frames: 5 s
TARGETS = ("melody", "melody_onset", "keys", "onsets")


def prepare(corpus: Path, split: str, out: Path, pools: dict, melodies: Path | None = Path("runs/cache")) -> dict:
    """Features [N, F, T] (fp16) and frame targets of a corpus split, cached in ``out``; ``pools``: the corpora's
    melody pools, made once (``melodies``: where the build's parsed melodies are cached)."""
    cache = out / f"data-{corpus.name}-{split}.pt"
    if cache.exists():
        return torch.load(cache, weights_only=False)
    records = [json.loads(line) for line in (corpus / f"{split}.jsonl").read_text().splitlines()]
    if corpus not in pools:
        try:
            pools[corpus] = melody_pool(corpus, melodies)
        except ValueError as e:
            raise SystemExit(str(e)) from None
    n = round(records[0]["duration"] * FRAME_RATE)
    # filled in place: appending each clip's small tensors between the big transient STFT buffers fragmented the
    # heap (~8 MB of resident memory per clip)
    data = {"ids": [r["id"] for r in records], "feats": torch.zeros(len(records), N_FEATURES, n, dtype=torch.float16),
            "melody": torch.zeros(len(records), n, dtype=torch.uint8),
            "melody_onset": torch.zeros(len(records), n, dtype=torch.uint8),
            "keys": torch.zeros(len(records), n, N_KEYS, dtype=torch.uint8),
            "onsets": torch.zeros(len(records), n, N_KEYS, dtype=torch.uint8)}
    for i, r in enumerate(tqdm(records, desc=f"transcriber data {corpus.name}/{split}", unit="clip")):
        audio, sr = sf.read(corpus / r["audio"], dtype="float32")
        f = features(torch.from_numpy(audio)[None])[0, :, :n]
        data["feats"][i, :, :f.shape[-1]] = f
        try:
            notes = clip_notes(r, pools[corpus])
        except ValueError as e:
            raise SystemExit(str(e)) from None
        for k, v in targets(*notes, n).items():
            data[k][i] = torch.from_numpy(v)
    out.mkdir(parents=True, exist_ok=True)
    torch.save(data, cache)
    return data


def losses(model: Transcriber, feats: torch.Tensor, tg: dict) -> tuple[dict, dict]:
    """(each head's loss, the model's logits) of a batch."""
    out = model(feats.float())
    tg = {k: v.long() if k == "melody" else v.float() for k, v in tg.items()}
    return {"melody": F.cross_entropy(out["melody"].reshape(-1, out["melody"].shape[-1]), tg["melody"].reshape(-1)),
            "melody_onset": F.binary_cross_entropy_with_logits(out["melody_onset"], tg["melody_onset"],
                                                               pos_weight=torch.tensor(5.0)),
            "keys": F.binary_cross_entropy_with_logits(out["keys"], tg["keys"]),
            "onsets": F.binary_cross_entropy_with_logits(out["onsets"], tg["onsets"], pos_weight=torch.tensor(5.0))}, out


class TranscriberTask:
    name = "transcriber"

    def __init__(self, model: Transcriber, train: dict, valid: dict, a: argparse.Namespace, out: Path):
        self.model, self.train, self.valid, self.a, self.out = model, train, valid, a, out

    def modules(self) -> dict:
        return {"model": self.model}

    def identity(self) -> dict:
        return {**dataclasses.asdict(self.model.cfg), "clips": len(self.train["ids"])}

    def loss(self, step: int, rank: int):
        g = torch.Generator().manual_seed(self.a.seed * 1_000_003 + step * 97 + rank)
        idx = torch.randint(0, len(self.train["ids"]), (self.a.batch,), generator=g)
        s = torch.randint(0, self.train["feats"].shape[-1] - CROP + 1, (self.a.batch,), generator=g)
        pairs = list(zip(idx.tolist(), s.tolist()))
        feats = torch.stack([self.train["feats"][i, :, a:a + CROP] for i, a in pairs])
        parts, _ = losses(self.model, feats, {k: torch.stack([self.train[k][i, a:a + CROP] for i, a in pairs])
                                           for k in TARGETS})
        total = sum(parts.values())
        return total, {"loss": float(total.detach())}

    @torch.inference_mode()
    def validate(self, step: int) -> dict:
        self.model.eval()
        sums, hit, voiced = {}, 0, 0
        for i in range(0, len(self.valid["ids"]), 16):
            sl = slice(i, i + 16)
            tg = {k: self.valid[k][sl] for k in TARGETS}
            parts, out = losses(self.model, self.valid["feats"][sl], tg)
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + float(v) * len(tg["melody"])
            pitch = out["melody"].argmax(-1)
            hit += int(((pitch == tg["melody"]) & (tg["melody"] > 0)).sum())
            voiced += int((tg["melody"] > 0).sum())
        self.model.train()
        n = len(self.valid["ids"])
        m = {f"valid_{k}": round(v / n, 4) for k, v in sums.items()}
        return {**m, "melody_frames_right": round(hit / max(voiced, 1), 4), "score": sum(v / n for v in sums.values())}

    def keep_best(self, metrics: dict, step: int) -> None:
        save_best(self.model, self.out, metrics)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m engine.train.transcriber", description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", type=Path, nargs="+", default=[Path("runs/corpus")],
                    help="corpus builds to train on (the first one's validation split is used)")
    ap.add_argument("--out", type=Path, default=Path("runs/transcriber"))
    ap.add_argument("--assets", type=Path, default=Path("assets"))
    ap.add_argument("--cache", type=Path, default=Path("runs/cache"), help="the corpus build's parsed melodies")
    ap.add_argument("--channels", type=int, default=TranscriberConfig.channels)
    add_run_args(ap, lr=1e-3, batch=12, eval_every=250, ckpt_every=250, warmup=100, final_lr=1e-5, steps=3000)
    ap.add_argument("--ship", action="store_true")
    a = ap.parse_args(argv)
    if a.ship:
        new, old = metrics_of(a.out / "best"), metrics_of(a.assets / "transcriber", "transcriber.metrics.json")
        if new is None:
            raise SystemExit(f"nothing trained in {a.out / 'best'}")

        def copy():
            dest = a.assets / "transcriber"
            dest.mkdir(parents=True, exist_ok=True)
            for f in (a.out / "best").iterdir():
                (dest / (f.name if f.name != "metrics.json" else "transcriber.metrics.json")).write_bytes(f.read_bytes())
        ship(a.out / "best", a.assets / "transcriber", copy, "transcriber", "validation loss", new["score"],
             None if old is None else old["score"])
        return 0
    start(a)
    pools: dict = {}
    parts = [prepare(c, "train", a.out, pools, a.cache) for c in a.corpus]
    train = {k: (sum((p[k] for p in parts), []) if k == "ids" else torch.cat([p[k] for p in parts])) for k in parts[0]}
    valid = prepare(a.corpus[0], "valid", a.out, pools, a.cache)
    cfg = TranscriberConfig(channels=a.channels, version=f"{'+'.join(c.name for c in a.corpus)}")
    model = Transcriber(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=0.01)
    print(f"transcriber: {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters, "
          f"{len(train['ids'])} train clips", file=sys.stderr)
    fit(TranscriberTask(model, train, valid, a, a.out), opt, a.out, a, 1, 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
