"""Distil a faster codec encoder: ``python -m engine.train.codec_encoder --teacher assets/codec --data runs/corpus
--out runs/codec_encoder [--patch 8] [--minutes M]``.

The student is the teacher codec with ``encoder_patch`` set (``engine.codec.model.Encoder``): a front end working at
sample_rate / patch from the start replaces the teacher's leading encoder stages; every later encoder layer, the
quantizer and the decoder start as the teacher's. The quantizer and decoder stay frozen, so the student's codes are
in the teacher's token space and the stages trained on it need no retraining. Loss, on random crops of the corpus:
the normalised mean squared error of the front end's output against the teacher's activation at the same point
(what the kept layers expect); after ``--front-steps`` steps of that alone, plus the same error on the latent the
quantizer reads. The kept encoder layers train at ``--back-lr-scale`` of the learning rate, so that they can absorb
the front end's residual error without drifting. The learning rate decays linearly to ``--final-lr`` over each
call's budget: at a constant 1e-3, level-1 agreement swung between 0.64 and 0.86 from one evaluation to the next
(session 19).

Every ``--eval-every`` steps, on validation clips: code agreement with the teacher (level 1 and all levels) and the
project metric (``engine.eval.metrics.mel_distance``) of the 8-level round trip of student and teacher. The student
whose codes agree with the teacher's most often (all levels) is kept as an fp16 codec in ``OUT/best/``: in session
19, once the learning rate decayed, mel_8 of every evaluation stayed within -0.0006..+0.0016 of the teacher's on 16
clips while agreement rose from 0.64 to 0.72, so mel_8 could not tell the candidates apart. ``--ship OUT/best``
writes it into ``--assets`` only if its mel_8 is within ``--tolerance`` of the teacher's on the same clips, and only
if the codec there still has the quantizer and decoder the student was distilled with. Resumable from
``OUT/last.pt``; runs unchanged under ``torchrun`` (gradients averaged across ranks, each rank its own crops, all
ranks stop at the same step).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..codec.model import Codec, CodecConfig
from ..data.dataset import open_dataset
from ..eval.metrics import mel_distance
from .codec import CropSampler
from .distributed import agreed_stop, average_gradients, leave_group, setup
from .publish import save_best


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


@torch.inference_mode()
def teacher_reference(teacher: Codec, clips: list[torch.Tensor], cut: int) -> dict:
    """The teacher's codes, 8-level round-trip mel distance and, on each clip's first 2 s, activation after its first
    ``cut`` layers, on the validation clips (computed once)."""
    head = int(2 * teacher.sample_rate)
    return {"codes": [teacher.encode(x[None]) for x in clips],
            "mel_8": float(np.mean([float(mel_distance(x, teacher.reconstruct(x[None])[0])) for x in clips])),
            "front": torch.cat([teacher.encoder.convs[:cut](x[None, None, :head]) for x in clips], -1), "head": head}


@torch.inference_mode()
def evaluate(student: Codec, clips: list[torch.Tensor], ref: dict) -> dict:
    """Code agreement with the teacher (level 1, all levels), the 8-level round trip's mel distance, and the front
    end's normalised error against the teacher's activation."""
    student.eval()
    front = torch.cat([student.encoder.convs[:student.encoder.front_layers](x[None, None, :ref["head"]])
                       for x in clips], -1)
    agree1, agree, mel = [], [], []
    for x, ct in zip(clips, ref["codes"]):
        cs = student.encode(x[None])
        agree1.append(float((cs[:, 0] == ct[:, 0]).float().mean()))
        agree.append(float((cs == ct).float().mean()))
        mel.append(float(mel_distance(x, student.reconstruct(x[None])[0])))
    student.train()
    return {"agree_1": float(np.mean(agree1)), "agree_all": float(np.mean(agree)), "mel_8": float(np.mean(mel)),
            "teacher_mel_8": ref["mel_8"], "valid_front_nmse": float(nmse(front, ref["front"]))}


def train(a: argparse.Namespace) -> dict:
    rank, world = setup()
    device = f"cuda:{rank % torch.cuda.device_count()}" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(a.seed)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / "last.pt"
    teacher = Codec.load(a.teacher)
    student = make_student(teacher, a.patch, a.channels)
    cut_t = teacher_front_layers(teacher, student.cfg.patch_stages)
    cut_s = student.encoder.front_layers
    for p in list(student.quantizer.parameters()) + list(student.decoder.parameters()):
        p.requires_grad_(False)
    front = list(student.encoder.convs[:cut_s].parameters())
    back = [p for p in student.encoder.parameters() if all(p is not q for q in front)]
    opt = torch.optim.AdamW([{"params": front, "lr": a.lr}, {"params": back, "lr": a.lr * a.back_lr_scale}],
                            betas=(0.9, 0.99), weight_decay=0.0)
    cfg = dataclasses.asdict(student.cfg)
    step, best, history, trained_s = 0, float("inf"), [], 0.0
    if ckpt_path.exists():
        ck = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        if dataclasses.asdict(CodecConfig(**ck["config"])) != cfg:  # (fields added since take their defaults)
            raise SystemExit(f"{ckpt_path} was trained with another config; use another --out")
        student.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        step, best, history, trained_s = ck["step"], ck["best"], ck["history"], ck["trained_s"]
        print(f"resumed from {ckpt_path} at step {step}", file=sys.stderr)
    teacher.to(device).eval()
    student.to(device).train()

    sampler = CropSampler(open_dataset(a.data, "train"), a.seconds, a.seed, progress=rank == 0)
    valid = open_dataset(a.data, "valid")
    clips = [torch.from_numpy(valid[i].audio).to(device) for i in range(min(a.eval_clips, len(valid)))]
    if not clips:
        raise SystemExit(f"{a.data} has no validation clips")
    ref = teacher_reference(teacher, clips, cut_t) if rank == 0 else None

    t_start = t0 = time.time()
    deadline = t_start + a.minutes * 60 if a.minutes else float("inf")
    bar = tqdm(total=a.steps, initial=step, desc="codec encoder", disable=rank != 0)
    start_step = step
    stop = agreed_stop(time.time() >= deadline, world)
    while step < a.steps and not stop:
        lr = a.lr
        if a.final_lr is not None:  # linear decay over this call's budget (--minutes, else --steps)
            frac = (time.time() - t_start) / (deadline - t_start) if a.minutes else (step - start_step) / max(
                1, a.steps - start_step)
            lr = a.lr + (a.final_lr - a.lr) * min(1.0, frac)
        opt.param_groups[0]["lr"], opt.param_groups[1]["lr"] = lr, lr * a.back_lr_scale
        x = sampler.batch(step, a.batch, rank)[:, None].to(device)
        if step < a.front_steps:  # the front end alone against the teacher's activation: 3-4x cheaper steps
            with torch.no_grad():
                h_t = teacher.encoder.convs[:cut_t](x)
            l_front = nmse(student.encoder.convs[:cut_s](x), h_t)
            l_latent = torch.full((), float("nan"))
            loss = l_front
        else:
            with torch.no_grad():
                h_t, z_t = split_forward(teacher.encoder, x, cut_t)
            h_s, z_s = split_forward(student.encoder, x, cut_s)
            l_front, l_latent = nmse(h_s, h_t), nmse(z_s, z_t)
            loss = l_front + l_latent
        opt.zero_grad(set_to_none=True)
        loss.backward()
        average_gradients(student.encoder, world)
        torch.nn.utils.clip_grad_norm_(front + back, 1.0)
        opt.step()
        step += 1
        bar.update()
        l_front, l_latent = float(l_front.detach()), float(l_latent.detach())
        bar.set_postfix(front=f"{l_front:.4f}", latent=f"{l_latent:.4f}")
        stop = agreed_stop(time.time() >= deadline, world)
        last = step >= a.steps or stop
        if rank == 0 and (step % a.eval_every == 0 or last):
            trained_s += time.time() - t0
            m = evaluate(student, clips, ref)
            m.update(step=step, front_nmse=l_front, latent_nmse=l_latent,
                     train_hours=round(trained_s / 3600, 3))
            history.append(m)
            tqdm.write(json.dumps(m))
            if -m["agree_all"] < best:  # a stand-in for the teacher: the best reproduces its codes most often
                best = -m["agree_all"]
                save_best(student, out, m)
            t0 = time.time()
        if rank == 0 and (step % a.ckpt_every == 0 or last):
            tmp = out / "last.tmp"
            torch.save({"model": student.state_dict(), "opt": opt.state_dict(), "step": step, "best": best,
                        "history": history, "config": cfg, "trained_s": trained_s + time.time() - t0}, tmp)
            os.replace(tmp, ckpt_path)
    bar.close()
    leave_group(world)
    return {"step": step, **({"best_agree_all": -best} if rank == 0 else {})}  # other ranks never evaluate


def ship(best_dir: Path, assets: Path, tolerance: float) -> bool:
    """Copy a distilled codec into ``assets`` if its mel_8 is within ``tolerance`` of its teacher's (same clips) and
    the codec there still has the quantizer and decoder it was distilled against (else those would be rolled back)."""
    m = json.loads((best_dir / "metrics.json").read_text())
    if m["mel_8"] > m["teacher_mel_8"] + tolerance:
        print(f"not shipped: mel_8 {m['mel_8']:.4f} is worse than the teacher's {m['teacher_mel_8']:.4f} "
              f"+ {tolerance}")
        return False
    if (assets / "codec.safetensors").exists():
        old, new = Codec.load(assets).state_dict(), Codec.load(best_dir).state_dict()
        kept = [k for k in new if not k.startswith("encoder.")]
        if any(k not in old or not torch.equal(old[k], new[k]) for k in kept):
            print(f"not shipped: the quantizer or decoder in {assets} changed since this encoder was distilled; "
                  f"distil again from it")
            return False
    student = Codec.load(best_dir)
    student.cfg.encoder_version = f"patch{student.cfg.encoder_patch}-s{m['step']}"
    student.save(assets)  # fp16 as loaded: the kept weights stay bit-identical; assets' metrics.json is the decoder's
    print(f"shipped {best_dir} -> {assets} (encoder {student.cfg.encoder_version}: mel_8 {m['mel_8']:.4f}, teacher "
          f"{m['teacher_mel_8']:.4f}, level-1 code agreement {m['agree_1']:.3f})")
    return True


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m engine.train.codec_encoder", description=__doc__.split("\n\n")[0])
    ap.add_argument("--teacher", type=Path, default=Path("assets/codec"))
    ap.add_argument("--data", default="runs/corpus")
    ap.add_argument("--out", default="runs/codec_encoder")
    ap.add_argument("--patch", type=int, default=8, help="the front end's stride (a product of leading strides)")
    ap.add_argument("--channels", type=int, default=64, help="the front end's width")
    ap.add_argument("--steps", type=int, default=1_000_000)
    ap.add_argument("--minutes", type=float, default=None, help="stop after this much wall time")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=1.0, help="crop length")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--final-lr", type=float, default=2e-5, help="decay linearly to this by the end of the call")
    ap.add_argument("--front-steps", type=int, default=3000, help="first train the front end alone this many steps")
    ap.add_argument("--back-lr-scale", type=float, default=0.1, help="learning rate of the kept layers, relative")
    ap.add_argument("--eval-every", type=int, default=500)
    ap.add_argument("--eval-clips", type=int, default=16)
    ap.add_argument("--ckpt-every", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--ship", type=Path, default=None, help="copy this distilled codec into --assets if good enough")
    ap.add_argument("--assets", type=Path, default=Path("assets/codec"))
    ap.add_argument("--tolerance", type=float, default=0.005, help="mel_8 allowed above the teacher's")
    a = ap.parse_args(argv)
    if a.ship:
        return 0 if ship(a.ship, a.assets, a.tolerance) else 1
    if a.threads:
        torch.set_num_threads(a.threads)
    print(json.dumps(train(a)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
