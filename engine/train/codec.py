"""Train the codec: ``python -m engine.train.codec --data runs/corpus --out runs/codec [--minutes M]``.

Random crops of the corpus (or any dataset ``engine.data.dataset.open_dataset`` reads), multi-scale log-mel and
spectral-convergence losses plus the RVQ commitment loss, AdamW. The first ``--vq-warmup`` steps train the
autoencoder without quantization; the codebooks are then initialised on its latents (measured: quantizing from
step 0, early latents are a near-constant offset and every level collapses to a handful of codes). Resumable: ``OUT/last.pt`` is written every
``--ckpt-every`` steps and read back on start. Every ``--eval-every`` steps the model is scored on validation
clips with the project metric (``engine.eval.metrics.mel_distance``) at 4 and 8 levels, and the best is kept as an
fp16 model in ``OUT/best/`` (ship it with ``python -m engine.train.codec --ship OUT/best``). Runs unchanged under
``torchrun`` (DistributedDataParallel).

Fine-tuning the whole codec: ``--init assets/codec --version NAME`` takes the architecture (also the iSTFT decoder)
and the weights of a saved codec and trains encoder, RVQ and decoder together; the decoder's fixed delay is
removed before the loss. ``--pitch-weight W`` adds ``pitch_loss`` and picks the best by mel_8 + W * pitch_8, as
``engine.train.codec_decoder`` does. Why the encoder too: with encoder and RVQ frozen, 110 min of decoder training
with the pitch loss moved pitch agreement only 31.0% -> 33.4%, and on the corpus's monophonic voice renditions the
8-level round trip kept the pitch on 62% of frames against 98% for Opus at 6 kbps (10 test clips): the codes
themselves lose the note, because the mel loss barely notices a semitone. New codes need a new ``--version``
(the stages trained on the old ones refuse it) and retrained coarse and fine stages.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..codec.model import Codec, CodecConfig
from ..data.dataset import open_dataset
from ..eval.metrics import log_mel, mel_distance
from ..spectral import semitone_fb
from .distributed import agreed_stop, leave_group, setup
from .publish import save_best

LOSS_SCALES = ((128, 16), (256, 32), (512, 64), (1024, 80), (2048, 128))


def codec_loss(ref: torch.Tensor, est: torch.Tensor, sr: int) -> tuple[torch.Tensor, dict]:
    """Log-mel L1 over five scales (the project metric's three plus two finer ones), STFT spectral convergence, and
    a linear-frequency log-magnitude L1 at n_fft 2048 (11.7 Hz bins: resolves the harmonics a pitch tracker reads,
    which mel bands above ~1 kHz merge; added at step 7,200 because pitch agreement was 10.5%)."""
    mel = torch.stack([(log_mel(ref, sr, f, m) - log_mel(est, sr, f, m)).abs().mean() for f, m in LOSS_SCALES]).mean()
    sc, lin = 0.0, 0.0
    for n_fft in (512, 2048):
        win = torch.hann_window(n_fft, device=ref.device)
        R = torch.stft(ref, n_fft, n_fft // 4, window=win, return_complex=True).abs()
        E = torch.stft(est, n_fft, n_fft // 4, window=win, return_complex=True).abs()
        sc = sc + torch.linalg.norm(R - E) / (torch.linalg.norm(R) + 1e-7)
        if n_fft == 2048:
            lin = (torch.log10(R.square() + 1e-5) - torch.log10(E.square() + 1e-5)).abs().mean()
    return mel + 0.5 * sc + 0.5 * lin, {"mel": float(mel.detach()), "sc": float(sc.detach()), "lin": float(lin.detach())}


@torch.no_grad()
def valid_pitch(codec: Codec, clips: list[torch.Tensor], semantic=None, low: int = 48) -> float:
    """Mean ``pitch_loss`` of full 8-level round trips (``semantic``: see ``Codec.reconstruct``)."""
    codec.eval()
    d = [float(pitch_loss(x[None], codec.reconstruct(x[None], semantic=semantic)[:, :x.shape[-1]],
                          codec.cfg.sample_rate, low)) for x in clips]
    codec.train()
    return float(np.mean(d))


def pitch_loss(ref: torch.Tensor, est: torch.Tensor, sr: int, low: int = 48) -> torch.Tensor:
    """L1 of log energies in semitone bands from MIDI ``low`` (default C3) to B7. The mel and linear terms weigh every
    band or bin alike, so a note a semitone off costs them little; here it moves energy between two bands. A 4,096-point
    STFT (5.9 Hz bins) resolves semitones down to C3; from a lower ``low`` every band uses 8,192 points (2.9 Hz bins,
    down to C1)."""
    n_fft = 4096 if low >= 48 else 8192
    win = torch.hann_window(n_fft, device=ref.device)
    fb = semitone_fb(n_fft, low, 108 - low, sr).to(ref.device)
    R, E = (torch.stft(x, n_fft, n_fft // 4, window=win, return_complex=True).abs().square() for x in (ref, est))
    R, E = (torch.einsum("bft,fm->bmt", x, fb) for x in (R, E))
    return (torch.log10(R + 1e-5) - torch.log10(E + 1e-5)).abs().mean()


def phase_loss(ref: torch.Tensor, est: torch.Tensor, n_fft: int = 1920, hop: int = 240) -> torch.Tensor:
    """Anti-wrapping phase losses (APNet's instantaneous frequency and group delay) on the iSTFT decoder's window
    (4 hops; the defaults are the shipped codec's 480-sample hop, ``engine.train.codec_decoder`` passes its own):
    1 - cos of the difference between the two signals' phase advance from one hop to the next and from one bin to the
    next, weighted by the reference's magnitude there (the partials a pitch tracker reads). Zero for the same signal;
    0.02 for a 1-radian phase offset of a 1 s tone, ~1.2 for the tone a semitone off, ~0.4 for white noise against it."""
    win = torch.hann_window(n_fft, device=ref.device)
    R, E = (torch.stft(x, n_fft, hop, window=win, return_complex=True) for x in (ref, est))  # [B, F, T]
    loss = ref.new_zeros(())
    for dim in (-1, -2):  # over time (instantaneous frequency), over frequency (group delay)
        n = R.shape[dim]
        a = R.narrow(dim, 1, n - 1) * R.narrow(dim, 0, n - 1).conj()
        b = E.narrow(dim, 1, n - 1) * E.narrow(dim, 0, n - 1).conj()
        cos = (a * b.conj()).real / (a.abs() * b.abs() + 1e-7)
        w = a.abs().sqrt()  # geometric mean of the reference's two magnitudes
        loss = loss + (w * (1 - cos)).sum() / (w.sum() + 1e-7)
    return loss / 2


class CropSampler:
    """All training audio held in memory as int16; random fixed-length crops, deterministic per (seed, step)."""

    def __init__(self, dataset, seconds: float, seed: int, progress: bool = True):
        self.audio = []
        for i in tqdm(range(len(dataset)), desc="loading audio", disable=not progress):
            a = dataset[i].audio
            self.audio.append((np.clip(a, -1, 1) * 32767).astype(np.int16))
        self.length = int(seconds * dataset[0].sample_rate) if len(dataset) else 0
        self.seed = seed

    def batch(self, step: int, size: int, rank: int = 0) -> torch.Tensor:
        rng = np.random.default_rng([self.seed, step, rank])
        out = np.zeros((size, self.length), dtype=np.float32)
        for b in range(size):
            a = self.audio[int(rng.integers(len(self.audio)))]
            start = int(rng.integers(0, max(1, len(a) - self.length)))
            seg = a[start:start + self.length].astype(np.float32) / 32767
            out[b, :len(seg)] = seg * float(10 ** rng.uniform(-0.5, 0.25))  # level augmentation -10..+5 dB
        return torch.from_numpy(out)


@torch.inference_mode()
def evaluate(model: Codec, clips: list[torch.Tensor], semantic=None) -> dict:
    model.eval()
    res = {}
    for k in (4, 8):
        d = [float(mel_distance(x, model.reconstruct(x[None], n_q=k, semantic=semantic)[0])) for x in clips]
        res[f"mel_{k}"] = float(np.mean(d))
    model.train()
    return res


def train(a: argparse.Namespace) -> dict:
    rank, world = setup()
    device = f"cuda:{rank % torch.cuda.device_count()}" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(a.seed)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / "last.pt"
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
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, betas=(0.8, 0.99), weight_decay=1e-4)
    step, best, history, trained_s = 0, float("inf"), [], 0.0
    if ckpt_path.exists():
        ck = torch.load(ckpt_path, map_location=device, weights_only=False)
        if ck["config"] != dataclasses.asdict(cfg):
            raise SystemExit(f"{ckpt_path} was trained with another config; use another --out")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        step, best, history, trained_s = ck["step"], ck["best"], ck["history"], ck.get("trained_s", 0.0)
        for g in opt.param_groups:  # the command line's learning rate wins (e.g. a lower one to finish a run)
            g["lr"] = a.lr
        print(f"resumed from {ckpt_path} at step {step}", file=sys.stderr)
    elif shipped is not None:  # fp16 -> fp32; the codebooks are already initialised
        model.load_state_dict(shipped.state_dict())
        print(f"initialised from {a.init}", file=sys.stderr)
    # unused parameters vary by step (no quantizer before --vq-warmup, quantizer dropout picks the levels)
    ddp_model = torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=True) if world > 1 else model

    sampler = CropSampler(open_dataset(a.data, "train"), a.seconds, a.seed, progress=rank == 0)
    valid = open_dataset(a.data, "valid")
    clips = [torch.from_numpy(valid[i].audio) for i in range(min(a.eval_clips, len(valid)))]

    t_start, start_step = time.time(), step
    deadline = t_start + a.minutes * 60 if a.minutes else float("inf")
    bar = tqdm(total=a.steps, initial=step, desc="codec", disable=rank != 0)
    t0 = time.time()
    delay = model.delay  # output sample t + delay shows input sample t
    stop = agreed_stop(time.time() >= deadline, world)
    while step < a.steps and not stop:
        if a.final_lr is not None:
            frac = min(1.0, (time.time() - t_start) / (deadline - t_start)) if a.minutes else step / a.steps
            for g in opt.param_groups:
                g["lr"] = a.lr + (a.final_lr - a.lr) * frac
        ready = all(bool(l.initialised) for l in model.quantizer.levels)  # saved or resumed: quantize now
        if step >= a.vq_warmup and not ready:
            with torch.no_grad():  # codebooks start on the warmed-up latents of a large batch
                big = torch.cat([sampler.batch(10_000_000 + step * 8 + j, a.batch, rank) for j in range(6)])
                model.quantizer.init_from(model.encoder(big[:, None].to(device)))
        x = sampler.batch(step, a.batch, rank).to(device)
        o = ddp_model(x, quantize=ready or step >= a.vq_warmup)
        ref, est = x[:, : x.shape[-1] - delay], o.audio[:, 0, delay: x.shape[-1]]
        loss, parts = codec_loss(ref, est, cfg.sample_rate)
        if a.pitch_weight:
            parts["pitch"] = float((p := pitch_loss(ref, est, cfg.sample_rate)).detach())
            loss = loss + a.pitch_weight * p
        total = loss + a.commit * o.commit_loss
        opt.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        bar.update()
        bar.set_postfix(mel=f"{parts['mel']:.3f}", sc=f"{parts['sc']:.3f}", commit=f"{float(o.commit_loss.detach()):.3f}",
                        aps=f"{(step - start_step) * a.batch * a.seconds * world / max(1e-9, time.time() - t_start):.1f}")
        stop = agreed_stop(time.time() >= deadline, world)
        last = step >= a.steps or stop
        if rank == 0 and (step % a.eval_every == 0 or last):
            trained_s += time.time() - t0
            t0 = time.time()
            m = evaluate(model, clips)
            score = m["mel_8"]
            if a.pitch_weight:  # then the best trades mel against pitch as the training loss does
                m["pitch_8"] = valid_pitch(model, clips)
                score += a.pitch_weight * m["pitch_8"]
            m.update(step=step, train_hours=round(trained_s / 3600, 3), audio_seconds_seen=step * a.batch * a.seconds * world)
            history.append(m)
            tqdm.write(json.dumps(m))
            if score < best:
                best = score
                save_best(model, out, m)
        if rank == 0 and (step % a.ckpt_every == 0 or last):
            tmp = out / "last.tmp"
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step, "best": best,
                        "history": history, "config": dataclasses.asdict(cfg), "trained_s": trained_s + time.time() - t0}, tmp)
            os.replace(tmp, ckpt_path)
    bar.close()
    leave_group(world)
    return {"step": step, "best_score": best}


def ship(best_dir: Path, assets: Path) -> None:
    """Copy a trained model into assets/ only if it beats the shipped one's recorded validation score."""
    new = json.loads((best_dir / "metrics.json").read_text())
    old_file = assets / "metrics.json"
    if old_file.exists() and json.loads(old_file.read_text())["mel_8"] <= new["mel_8"]:
        print(f"not shipped: {new['mel_8']:.4f} does not beat the shipped {json.loads(old_file.read_text())['mel_8']:.4f}")
        return
    assets.mkdir(parents=True, exist_ok=True)
    for f in best_dir.iterdir():
        shutil.copy2(f, assets / f.name)
    print(f"shipped {best_dir} -> {assets} (mel_8 {new['mel_8']:.4f})")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m engine.train.codec", description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="runs/corpus")
    ap.add_argument("--out", default="runs/codec")
    ap.add_argument("--steps", type=int, default=1_000_000)
    ap.add_argument("--minutes", type=float, default=None, help="stop after this much wall time")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=1.0, help="crop length")
    ap.add_argument("--lr", type=float, default=6e-4)
    ap.add_argument("--final-lr", type=float, default=None, help="decay linearly to this by the end (--minutes or --steps)")
    ap.add_argument("--pitch-weight", type=float, default=0.0, help="weight of pitch_loss (semitone bands)")
    ap.add_argument("--commit", type=float, default=0.25, help="weight of the VQ commitment + codebook losses")
    ap.add_argument("--channels", type=int, default=16)
    ap.add_argument("--max-channels", type=int, default=256)
    ap.add_argument("--dilations", type=int, nargs="+", default=[1, 3])
    ap.add_argument("--init", type=Path, default=None,
                    help="fine-tune a saved codec (e.g. assets/codec): its architecture, all of it trained")
    ap.add_argument("--version", default=None, help="name of the token space these codes form (needed with --init)")
    ap.add_argument("--vq-warmup", type=int, default=300, help="steps trained without quantization first")
    ap.add_argument("--eval-every", type=int, default=500)
    ap.add_argument("--eval-clips", type=int, default=16)
    ap.add_argument("--ckpt-every", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--ship", type=Path, default=None, help="copy this trained model dir into --assets if it is better")
    ap.add_argument("--assets", type=Path, default=Path("assets/codec"))
    a = ap.parse_args(argv)
    if a.ship:
        ship(a.ship, a.assets)
        return 0
    if a.threads:
        torch.set_num_threads(a.threads)
    print(json.dumps(train(a)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
