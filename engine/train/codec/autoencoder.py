"""Phase ``autoencoder``: the whole codec (encoder, residual VQ, decoder) from random crops of the corpus.

Multi-scale log-mel and spectral-convergence losses plus the RVQ commitment loss. The first ``--vq-warmup`` steps
train the autoencoder without quantization; the codebooks are then initialised on its latents (quantizing from step
0, early latents are a near-constant offset and every level collapses to a handful of codes). ``--init DIR`` takes
the architecture and weights of a saved codec and trains all of it; its codes change, so it needs a new
``--version`` (the stages trained on the old codes refuse the new ones). The best by validation mel_8 (plus
``--pitch-weight`` x the round trips' ``pitch_loss``) is kept; it ships when its mel_8 beats the shipped codec's.
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import torch

from ...codec.losses import codec_loss, pitch_loss
from ...codec.model import Codec, CodecConfig
from ...data.dataset import open_dataset
from ..loop import fit, metrics_of, save_best, ship, start
from .data import CropSampler
from .scoring import round_trip_mel, round_trip_pitch

DEFAULTS = {"lr": 6e-4, "batch": 8}


def add_args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--seconds", type=float, default=1.0, help="crop length")
    ap.add_argument("--pitch-weight", type=float, default=0.0, help="weight of pitch_loss (semitone bands)")
    ap.add_argument("--commit", type=float, default=0.25, help="weight of the VQ commitment + codebook losses")
    ap.add_argument("--channels", type=int, default=16)
    ap.add_argument("--max-channels", type=int, default=256)
    ap.add_argument("--dilations", type=int, nargs="+", default=[1, 3])
    ap.add_argument("--init", type=Path, default=None,
                    help="fine-tune a saved codec (e.g. assets/codec): its architecture, all of it trained")
    ap.add_argument("--version", default=None, help="name of the token space these codes form (needed with --init)")
    ap.add_argument("--vq-warmup", type=int, default=300, help="steps trained without quantization first")


class AutoencoderTask:
    name = "codec"

    def __init__(self, a: argparse.Namespace, model: Codec, device: str):
        self.a, self.model, self.device = a, model, device
        self.sampler = CropSampler(open_dataset(a.data, "train"), a.seconds, a.seed)
        valid = open_dataset(a.data, "valid")
        self.clips = [torch.from_numpy(valid[i].audio) for i in range(min(a.eval_clips, len(valid)))]

    def modules(self):
        return {"model": self.model}

    def identity(self):
        return dataclasses.asdict(self.model.cfg)

    def loss(self, step: int, rank: int):
        a, model = self.a, self.model
        ready = all(bool(lv.initialised) for lv in model.quantizer.levels)  # saved or resumed: quantize now
        if step >= a.vq_warmup and not ready:
            with torch.no_grad():  # codebooks start on the warmed-up latents of a large batch
                big = torch.cat([self.sampler.batch(10_000_000 + step * 8 + j, a.batch, rank) for j in range(6)])
                model.quantizer.init_from(model.encoder(big[:, None].to(self.device)))
        x = self.sampler.batch(step, a.batch, rank).to(self.device)
        o = model(x, quantize=ready or step >= a.vq_warmup)
        delay = model.delay  # output sample t + delay shows input sample t
        ref, est = x[:, : x.shape[-1] - delay], o.audio[:, 0, delay: x.shape[-1]]
        loss, parts = codec_loss(ref, est, model.cfg.sample_rate)
        if a.pitch_weight:
            p = pitch_loss(ref, est, model.cfg.sample_rate)
            parts["pitch"] = float(p.detach())
            loss = loss + a.pitch_weight * p
        parts["commit"] = float(o.commit_loss.detach())
        return loss + a.commit * o.commit_loss, {k: parts[k] for k in ("mel", "sc", "commit", "pitch") if k in parts}

    def validate(self, step: int) -> dict:
        m = round_trip_mel(self.model, self.clips)
        m["score"] = m["mel_8"]
        if self.a.pitch_weight:  # then the best trades mel against pitch as the training loss does
            m["pitch_8"] = round_trip_pitch(self.model, self.clips)
            m["score"] += self.a.pitch_weight * m["pitch_8"]
        return m

    def keep_best(self, metrics: dict, step: int) -> None:
        save_best(self.model, Path(self.a.out), metrics)


def train(a: argparse.Namespace) -> None:
    rank, world = start(a)
    device = f"cuda:{rank % torch.cuda.device_count()}" if torch.cuda.is_available() else "cpu"
    shipped = Codec.load(a.init) if a.init else None
    if shipped is not None:  # the architecture is the saved codec's; its codes get a new name
        if not a.version or a.version == shipped.cfg.version:
            raise SystemExit(f"--init changes the codes of {a.init}: name them with a new --version "
                             f"(not {shipped.cfg.version!r})")
        cfg = dataclasses.replace(shipped.cfg, version=a.version, decoder_version="")
    else:
        cfg = CodecConfig(channels=a.channels, max_channels=a.max_channels, dilations=tuple(a.dilations),
                          version=a.version or "0")
    model = Codec(cfg).to(device)
    if shipped is not None and not (Path(a.out) / "last.pt").exists():
        model.load_state_dict(shipped.state_dict())  # fp16 -> fp32; the codebooks are already initialised
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, betas=(0.8, 0.99), weight_decay=1e-4)
    fit(AutoencoderTask(a, model.train(), device), opt, Path(a.out), a, world, rank)


def ship_best(a: argparse.Namespace) -> bool:
    """The whole codec, when its validation mel_8 beats the shipped one's."""
    best = Path(a.out) / "best"
    old = metrics_of(a.assets)
    return ship(best, a.assets, tuple(f.name for f in best.iterdir()), "codec", "validation mel_8",
                metrics_of(best)["mel_8"], None if old is None else old["mel_8"])
