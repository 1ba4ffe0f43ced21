"""Oracle latents of train windows, for distilling into the codec's encoder: ``python -m
engine.train.codec_oracle_windows --data runs/corpus --tokens runs/tokens --init assets/codec --semantic
assets/semantic --out runs/oracle_windows [--minutes M]``.

Each batch of windows (the encoder tuner's windowing: ``--context`` warm-up frames + ``--seconds`` of scored audio,
a ``--voice-share`` of them from the voice renditions) is encoded, and the latents are moved by ``--steps`` Adam steps
through the frozen quantizer (straight-through) and decoder against the codec trainers' loss of the scored audio
(``engine.eval.codec_oracle.optimise_latent``, what ``bench oracle`` does per test clip). Stored per batch in
``OUT/bNNNNN.pt``: the source audio, the delayed target, the semantic ids, the moved latents z* and their codes, and
PESTO's agreement (hits, confident frames) of the scored second before and after; ``OUT/meta.json`` names the codec.
``codec_encoder_tune --distil OUT`` regresses the encoder onto z*. Resumable: batches already written are skipped, and
batch i always draws the same windows (``--seed``), so two processes with ``--start``/``--stride`` can share a run.

Why (session 51, assets/MODEL_CARD.md): on 1.5 s windows the oracle moves the renditions' agreement from about 70% to
over 90% within 20 steps (about 1 s a step for 8 windows on one thread), while training the encoder through the
straight-through estimator levels off near 79% on test melodies.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..codec.model import Codec
from ..eval.codec_oracle import optimise_latent, render
from .codec_decoder import CodeWindows, encoded_pool
from .tracker_loss import TrackerLoss


def agreement(target: torch.Tensor, audio: torch.Tensor, sr: int) -> list[list[int]]:
    """Per window [B, N] pair: (frames within half a semitone, confident frames of the target), as bench codec counts."""
    from ..eval.bench import _pitch, _pitch_agreement

    rows = []
    for t, y in zip(target, audio):
        tally = [0, 0]
        _pitch_agreement(tally, _pitch(t.numpy(), sr), y.numpy(), sr)
        rows.append(tally)
    return rows


def meta_of(codec: Codec, a: argparse.Namespace) -> dict:
    """What a store's latents are only valid for: the codec's quantizer and decoder, and the windowing."""
    return {"version": codec.cfg.version, "decoder_version": codec.cfg.decoder_version,
            "encoder_version": codec.cfg.encoder_version, "context": a.context, "seconds": a.seconds,
            "steps": a.steps, "lr_scale": a.lr_scale, "voice_share": a.voice_share, "seed": a.seed}


def run(a: argparse.Namespace) -> dict:
    torch.manual_seed(a.seed)
    codec = Codec.load(a.init).eval()
    for p in codec.parameters():
        p.requires_grad_(False)
    semantic = None
    if codec.conditioned:
        if not a.semantic:
            raise SystemExit(f"{a.init}'s decoder reads semantic ids: pass --semantic DIR (its tokenizer)")
        from ..semantic import SemanticTokenizer
        semantic = SemanticTokenizer.load(a.semantic)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = meta_of(codec, a)
    if (out / "meta.json").exists():
        old = json.loads((out / "meta.json").read_text())
        if old != meta:
            raise SystemExit(f"{out} holds windows of another codec or setting ({old}); use another --out")
    else:
        (out / "meta.json").write_text(json.dumps(meta, indent=1))
    cfg, sr = codec.cfg, codec.cfg.sample_rate
    tokens = Path(a.tokens)
    with torch.no_grad():
        data = CodeWindows(a.data, tokens, cfg.version, cfg.hop,
                           pool=encoded_pool(a.data, tokens, codec, semantic, a.mix_clips, voice=False))
        if a.voice_clips:
            data.add_voice(a.data, tokens, codec, semantic, a.voice_clips)
    tracker = TrackerLoss(sr, frames=a.tracker_frames)
    frames = a.context + round(a.seconds * sr / cfg.hop)
    skip = a.context * cfg.hop
    deadline = time.time() + a.minutes * 60 if a.minutes else float("inf")
    todo = [i for i in range(a.start, a.batches, a.stride) if not (out / f"b{i:05d}.pt").exists()]
    tally = {"before": [0, 0], "after": [0, 0]}
    done = 0
    bar = tqdm(todo, desc="oracle windows")
    for i in bar:
        if time.time() >= deadline:
            break
        rng = np.random.default_rng([a.seed, i])
        _, target, cond, source, from_voice = data.batch(rng, a.batch, frames, codec.delay, cfg.decoder_cond,
                                                         voice_share=a.voice_share if a.voice_clips else 0.0,
                                                         with_source=True)
        kw = codec._decoder_kwargs(cond)
        with torch.no_grad():
            z0 = codec.encoder(source[:, None])
        z = optimise_latent(codec, z0, kw, target[:, skip:], slice(skip, None), a.steps, tracker, a.lr_scale,
                            torch.Generator().manual_seed(a.seed * 7919 + i))
        with torch.no_grad():
            codes = codec.quantizer.encode(z)
            rows = {name: agreement(target[:, skip:], render(codec, latent, kw)[:, 0, skip:], sr)
                    for name, latent in (("before", z0), ("after", z))}
        tmp = out / f"b{i:05d}.tmp"
        torch.save({"source": source.half(), "target": target.half(), "cond": cond, "from_voice": from_voice,
                    "z": z.half(), "codes": codes.short(), **rows}, tmp)
        os.replace(tmp, out / f"b{i:05d}.pt")
        done += 1
        for name in tally:
            tally[name] = [tally[name][j] + sum(r[j] for r in rows[name]) for j in (0, 1)]
        bar.set_postfix({k: f"{v[0] / max(1, v[1]):.3f}" for k, v in tally.items()})
    bar.close()
    return {"batches": done, **{k: round(v[0] / max(1, v[1]), 4) for k, v in tally.items()},
            "frames": tally["before"][1]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m engine.train.codec_oracle_windows",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="runs/corpus")
    ap.add_argument("--tokens", default="runs/tokens", help="where the pools of encoded train clips are cached")
    ap.add_argument("--init", type=Path, default=Path("assets/codec"))
    ap.add_argument("--semantic", default=None, help="the semantic tokenizer the decoder reads (if it reads one)")
    ap.add_argument("--out", default="runs/oracle_windows")
    ap.add_argument("--batches", type=int, default=1000, help="batch indices 0..N-1 make up the run")
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--stride", type=int, default=1, help="take batches start, start + stride, ...")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=1.0, help="scored audio per window")
    ap.add_argument("--context", type=int, default=25, help="unscored warm-up frames per window")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--lr-scale", type=float, default=0.015, help="Adam's lr as a share of the latents' std")
    ap.add_argument("--tracker-frames", type=int, default=128)
    ap.add_argument("--mix-clips", type=int, default=800)
    ap.add_argument("--voice-clips", type=int, default=800)
    ap.add_argument("--voice-share", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--minutes", type=float, default=None, help="stop after this much wall time")
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args(argv)
    if a.steps < 1 or a.batch < 1 or a.stride < 1 or a.mix_clips < 1 or not 0.0 <= a.voice_share <= 1.0:
        ap.error(f"--steps, --batch, --stride and --mix-clips must be >= 1 and --voice-share within 0-1, got "
                 f"{a.steps}, {a.batch}, {a.stride}, {a.mix_clips}, {a.voice_share}")
    if a.threads:
        torch.set_num_threads(a.threads)
    print(json.dumps(run(a)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
