"""Phase ``distil``: a faster encoder distilled from the codec's own.

The student is the teacher codec with ``encoder_patch`` set (``engine.codec.model.Encoder``): a front end working at
sample_rate / patch from the start replaces the teacher's leading encoder stages; every later encoder layer, the
quantizer and the decoder start as the teacher's, and the quantizer and decoder stay frozen, so the student's codes
are in the teacher's token space and the stages trained on it need no retraining. Loss, on random crops: the
normalised mean squared error of the front end's output against the teacher's activation at the same point; after
``--front-steps`` steps of that alone, plus the same error on the latent the quantizer reads. The kept encoder
layers learn at ``--back-lr-scale`` of the learning rate, so they can absorb the front end's residual error without
drifting; the learning rate decays to ``--final-lr`` over the budget (at a constant rate, code agreement swung
between evaluations). The student whose codes agree with the teacher's most often is kept: once the rate has
decayed, mel_8 barely tells candidates apart. It ships when its mel_8 is within ``--tolerance`` of the teacher's on
the same clips and the codec in assets still has the quantizer and decoder it was distilled against.
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
import torch

from ...codec.model import Codec
from ...data.dataset import open_dataset
from ...eval.metrics import mel_distance
from ..loop import fit, metrics_of, save_best, ship, start
from .data import CropSampler

DEFAULTS = {"lr": 1e-3, "batch": 8, "final_lr": 2e-5}


def add_args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--teacher", type=Path, default=Path("assets/codec"))
    ap.add_argument("--patch", type=int, default=8, help="the front end's stride (a product of leading strides)")
    ap.add_argument("--channels", type=int, default=64, help="the front end's width")
    ap.add_argument("--seconds", type=float, default=1.0, help="crop length")
    ap.add_argument("--front-steps", type=int, default=3000, help="first train the front end alone this many steps")
    ap.add_argument("--back-lr-scale", type=float, default=0.1, help="learning rate of the kept layers, relative")
    ap.add_argument("--tolerance", type=float, default=0.005, help="mel_8 allowed above the teacher's (--ship)")


def teacher_front_layers(teacher: Codec, stages: int) -> int:
    """Number of the teacher encoder's ``convs`` layers that make up its first ``stages`` stages."""
    if teacher.cfg.encoder_patch != 1:
        raise SystemExit("the teacher must be a full (encoder_patch 1) codec")
    return 1 + stages * (len(teacher.cfg.dilations) + 2)  # input conv; per stage: residual units, ELU, strided conv


def make_student(teacher: Codec, patch: int, channels: int) -> Codec:
    """The teacher with a patch front end: all later weights copied, the front end freshly initialised."""
    cfg = dataclasses.replace(teacher.cfg, encoder_patch=patch, encoder_patch_channels=channels)
    student = Codec(cfg)
    cut, front = teacher_front_layers(teacher, cfg.patch_stages), student.encoder.front_layers
    sd = {}
    for k, v in teacher.state_dict().items():
        if k.startswith("encoder.convs."):
            i = int(k.split(".")[2])
            if i < cut:
                continue
            k = k.replace(f"encoder.convs.{i}.", f"encoder.convs.{i - cut + front}.", 1)
        sd[k] = v
    missing, unexpected = student.load_state_dict(sd, strict=False)
    assert not unexpected and all(k.startswith("encoder.convs.") for k in missing), (missing, unexpected)
    return student


def split_forward(encoder, audio: torch.Tensor, cut: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(activation after the first ``cut`` conv layers, latent) of an Encoder."""
    h = encoder.convs[:cut](audio)
    z = encoder.convs[cut:](h)
    if encoder.lstm is not None:
        z, _ = encoder.lstm(z)
    return h, encoder.out(z)


def nmse(est: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the reference's per-channel variance."""
    return ((est - ref).square().mean(dim=(0, 2)) / (ref.var(dim=(0, 2)) + 1e-8)).mean()


class DistilTask:
    name = "codec encoder"

    def __init__(self, a: argparse.Namespace, teacher: Codec, student: Codec, device: str, rank: int):
        self.a, self.teacher, self.student, self.device = a, teacher, student, device
        self.cut_t = teacher_front_layers(teacher, student.cfg.patch_stages)
        self.cut_s = student.encoder.front_layers
        self.sampler = CropSampler(open_dataset(a.data, "train"), a.seconds, a.seed, progress=rank == 0)
        valid = open_dataset(a.data, "valid")
        self.clips = [torch.from_numpy(valid[i].audio).to(device) for i in range(min(a.eval_clips, len(valid)))]
        if not self.clips:
            raise SystemExit(f"{a.data} has no validation clips")
        self.ref = self.reference() if rank == 0 else None

    @torch.inference_mode()
    def reference(self) -> dict:
        """The teacher's codes, round-trip mel_8 and, on each clip's first 2 s, activation after its front layers."""
        t, head = self.teacher, int(2 * self.teacher.sample_rate)
        return {"codes": [t.encode(x[None]) for x in self.clips],
                "mel_8": float(np.mean([float(mel_distance(x, t.reconstruct(x[None])[0])) for x in self.clips])),
                "front": torch.cat([t.encoder.convs[:self.cut_t](x[None, None, :head]) for x in self.clips], -1),
                "head": head}

    def modules(self):
        return {"model": self.student}

    def identity(self):
        return dataclasses.asdict(self.student.cfg)

    def loss(self, step: int, rank: int):
        a, te, st = self.a, self.teacher.encoder, self.student.encoder
        x = self.sampler.batch(step, a.batch, rank)[:, None].to(self.device)
        if step < a.front_steps:  # the front end alone against the teacher's activation: 3-4x cheaper steps
            with torch.no_grad():
                h_t = te.convs[:self.cut_t](x)
            loss = nmse(st.convs[:self.cut_s](x), h_t)
            return loss, {"front": float(loss.detach())}
        with torch.no_grad():
            h_t, z_t = split_forward(te, x, self.cut_t)
        h_s, z_s = split_forward(st, x, self.cut_s)
        l_front, l_latent = nmse(h_s, h_t), nmse(z_s, z_t)
        return l_front + l_latent, {"front": float(l_front.detach()), "latent": float(l_latent.detach())}

    @torch.inference_mode()
    def validate(self, step: int) -> dict:
        """Code agreement with the teacher (level 1, all levels), the round trip's mel_8 and the front end's error."""
        s, ref = self.student, self.ref
        s.eval()
        front = torch.cat([s.encoder.convs[:self.cut_s](x[None, None, :ref["head"]]) for x in self.clips], -1)
        agree1, agree, mel = [], [], []
        for x, ct in zip(self.clips, ref["codes"]):
            cs = s.encode(x[None])
            agree1.append(float((cs[:, 0] == ct[:, 0]).float().mean()))
            agree.append(float((cs == ct).float().mean()))
            mel.append(float(mel_distance(x, s.reconstruct(x[None])[0])))
        s.train()
        return {"agree_1": float(np.mean(agree1)), "agree_all": float(np.mean(agree)), "mel_8": float(np.mean(mel)),
                "teacher_mel_8": ref["mel_8"], "valid_front_nmse": float(nmse(front, ref["front"])),
                "score": -float(np.mean(agree))}  # the best reproduces the teacher's codes most often

    def keep_best(self, metrics: dict, step: int) -> None:
        save_best(self.student, Path(self.a.out), metrics)


def train(a: argparse.Namespace) -> None:
    rank, world = start(a)
    device = f"cuda:{rank % torch.cuda.device_count()}" if torch.cuda.is_available() else "cpu"
    teacher = Codec.load(a.teacher)
    student = make_student(teacher, a.patch, a.channels)
    for p in list(student.quantizer.parameters()) + list(student.decoder.parameters()):
        p.requires_grad_(False)
    cut_s = student.encoder.front_layers
    front = list(student.encoder.convs[:cut_s].parameters())
    back = [p for p in student.encoder.parameters() if all(p is not q for q in front)]
    opt = torch.optim.AdamW([{"params": front, "scale": 1.0}, {"params": back, "scale": a.back_lr_scale}],
                            lr=a.lr, betas=(0.9, 0.99), weight_decay=0.0)
    teacher.to(device).eval()
    task = DistilTask(a, teacher, student.to(device).train(), device, rank)
    fit(task, opt, Path(a.out), a, world, rank)


def kept_unchanged(new: Codec, assets: Path) -> tuple[str, ...]:
    """A veto when the codec in ``assets`` no longer has the quantizer and decoder ``new`` was trained against."""
    if not (Path(assets) / "codec.safetensors").exists():
        return ()
    old = Codec.load(assets).state_dict()
    if any(k not in old or not torch.equal(old[k], v) for k, v in new.state_dict().items()
           if not k.startswith("encoder.")):
        return (f"the quantizer or decoder in {assets} changed since this encoder was trained; train it again",)
    return ()


def ship_best(a: argparse.Namespace) -> bool:
    """The encoder, when the student's mel_8 is within ``--tolerance`` of its teacher's on the same clips."""
    best = Path(a.out) / "best"
    m = metrics_of(best)
    student = Codec.load(best)
    student.cfg.encoder_version = f"patch{student.cfg.encoder_patch}-s{m['step']}"
    return ship(best, a.assets, lambda: student.save(a.assets), "distilled encoder", "mel_8 - tolerance",
                m["mel_8"] - a.tolerance, m["teacher_mel_8"], vetoes=kept_unchanged(student, a.assets))
