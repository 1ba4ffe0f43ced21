"""Retrain the codec's decoder on frozen codes: ``python -m engine.train.codec_decoder --data runs/corpus10h
--tokens runs/tokens --init assets/codec --out runs/codec_istft [--minutes M]``.

The encoder and the residual VQ of ``--init`` stay as they are, so the codes, and every stage trained on them, stay
valid; only the decoder is new (by default the frame-rate iSTFT decoder of ``engine.codec.istft``). Training reads
the codes ``engine.train.tokenize`` cached for the train split (the very codes the stages learned), so no encoder
runs: each step decodes random windows of codes and compares the audio with the clip delayed by the decoder's delay,
with the codec trainer's loss (multi-scale log-mel, spectral convergence, linear log-magnitude). The first
``--context`` frames of each window warm the causal state up and are not scored. A quarter of the windows use only
the first 1-7 levels, so lower bitrates keep decoding. Every ``--eval-every`` steps: the project's mel distance of
full round trips (``Codec.reconstruct``) on validation clips at 8 and 4 levels (plus, with ``--pitch-weight W``, their
pitch loss, and the best is then the lowest mel_8 + W * pitch_8; ``--phase-weight`` adds ``phase_loss`` to the
training loss only); the best is saved as a complete
codec in ``OUT/best/`` (ship with ``python -m engine.train.codec --ship OUT/best``). Resumable from ``OUT/last.pt``.

``--semantic DIR``: the decoder also reads the semantic ids of that tokenizer (``engine.codec.istft``, semantic
conditioning), from the tokenize cache; ``--cond-dropout`` of the windows get none, so it still decodes without them
(continuations of old clips, round trips without the tokenizer). Its embedding learns at ``--cond-lr-scale`` times
the learning rate: it starts at zero while the rest starts trained.

``--voice-clips N``: a ``--voice-share`` of the windows come from the voice-like renditions (hums, whistles, songs)
of the first N train clips instead of the mixes: the codec meets such audio when a hum is continued or round-tripped,
and the mixes alone never show it a lone sung line. Their codes and ids are made once (frozen encoder) and cached
next to the tokenize cache; validation then also scores the pitch of the valid clips' renditions.

``--mix-clips N``: the mixes' codes and ids come the same way, from the first N train clips, instead of from the
tokenize cache (which needs the MuLan features of every clip first).

``--tracker-weight W``: adds W x ``engine.train.tracker_loss`` (PESTO's pitch distribution on the decoded audio
against the original's, on ``--tracker-frames`` confident frames of the batch): the score the codec issue sets is
PESTO's, and the spectral terms did not reach it. Validation then also reports ``bench codec``'s pitch agreement of
the round trips (``agree_8``, ``voice_agree_8``) and the best also counts 1 - agreement of each.
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

from ..audio import resample
from ..codec.model import Codec, frame_ids
from ..data.dataset import CorpusDataset
from .codec import codec_loss, evaluate, phase_loss, pitch_loss, valid_pitch
from .publish import save_best
from .tracker_loss import TrackerLoss

CLIP_SAMPLES = 240_000  # the 10 s clips the tokenize cache encodes


def encoded_pool(data: str, tokens: Path, codec: Codec, semantic, n_clips: int, voice: bool,
                 progress: bool = True) -> tuple:
    """(codes [N, K, F], semantic ids [N, S] or None, int16 audio) of the first ``n_clips`` train clips, their
    voice-like renditions with ``voice``, encoded by ``codec``'s frozen encoder (what a round trip gives) with their
    semantic ids, cached in ``tokens/codec-{voice|mix}-train-<version>.pt`` (made again when it holds other clips or
    other ids). Without a tokenize cache this is how the mixes get their codes too (``--mix-clips``)."""
    path = Path(tokens) / f"codec-{'voice' if voice else 'mix'}-train-{codec.cfg.version}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    sem_version = semantic.cfg.version if semantic is not None else ""
    ds = CorpusDataset(data, "train", load_voice=voice)
    ids = ds.ids[:n_clips]
    cache = torch.load(path, weights_only=False) if path.exists() else None
    fresh = cache is None or cache["ids"] != ids or cache["semantic_version"] != sem_version
    codes, sem, audio = [], [], []
    for j in tqdm(range(len(ids)), desc="voice renditions" if voice else "mixes", disable=not progress):
        ex = ds[j]
        a = resample(ex.voice, ex.voice_rate, codec.sample_rate) if voice else ex.audio
        a = np.pad(a, (0, CLIP_SAMPLES))[:CLIP_SAMPLES]
        audio.append((np.clip(a, -1, 1) * 32767).astype(np.int16))
        if fresh:
            with torch.inference_mode():
                x = torch.from_numpy(a.astype(np.float32))[None]
                codes.append(codec.encode(x)[0, :, :CLIP_SAMPLES // codec.cfg.hop].to(torch.int16))
                sem.append(semantic.encode(x)[0].to(torch.int16) if semantic is not None else torch.zeros(0))
    if fresh:
        cache = {"ids": ids, "codes": torch.stack(codes), "semantic": torch.stack(sem),
                 "semantic_version": sem_version}
        torch.save(cache, path.with_suffix(".tmp"))
        os.replace(path.with_suffix(".tmp"), path)
    return cache["codes"].long(), cache["semantic"].long() if semantic is not None else None, audio


def valid_agreement(codec: Codec, clips: list[torch.Tensor], refs: list, semantic) -> float:
    """``bench codec``'s pitch agreement (PESTO within half a semitone on the original's confident frames) of full
    8-level round trips; ``refs``: the originals' ``bench._pitch`` tracks."""
    from ..eval.bench import _pitch_agreement

    codec.eval()
    tally = [0, 0]
    for x, ref in zip(clips, refs, strict=True):
        y = codec.reconstruct(x[None], semantic=semantic)[0, :x.shape[-1]].numpy()
        _pitch_agreement(tally, ref, y, codec.cfg.sample_rate)
    codec.train()
    return round(tally[0] / max(1, tally[1]), 4)


class CodeWindows:
    """Aligned (codes, delayed audio) windows of the train split: codes from the tokenize cache, audio as int16."""

    def __init__(self, data: str, tokens: Path, version: str, hop: int, progress: bool = True,
                 semantic_version: str | None = None, pool: tuple | None = None):
        """The train split's tokenize cache, or (``pool``) an ``encoded_pool`` of the mixes instead."""
        self.hop = hop
        if pool is not None:
            self.pools = [pool]
            return

        def cached(path: Path) -> dict:
            if not path.exists():
                raise SystemExit(f"{path} is missing: run python -m engine.train.tokenize --data {data} --out {tokens}"
                                 " (or pass --mix-clips N to encode N train clips here)")
            return torch.load(path, weights_only=False)
        blob = cached(tokens / f"codec-train-{version}.pt")
        semantic = None  # [N, S] at 25 Hz
        if semantic_version is not None:
            sem = cached(tokens / f"semantic-train-{semantic_version}.pt")
            if sem["ids"] != blob["ids"]:
                raise SystemExit(f"the cached semantic ids and codec codes in {tokens} are of other clips: re-tokenise")
            semantic = sem["tokens"].long()
        ds = CorpusDataset(data, "train")
        by_id = {r["id"]: i for i, r in enumerate(ds.records)}
        audio = []
        for cid in tqdm(blob["ids"], desc="loading audio", disable=not progress):
            a = ds[by_id[cid]].audio
            audio.append((np.clip(a, -1, 1) * 32767).astype(np.int16))
        self.pools = [(blob["codes"].long(), semantic, audio)]  # (codes [N, K, F], ids [N, S] or None, audio)

    def add_voice(self, data: str, tokens: Path, codec: Codec, semantic, n_clips: int, progress: bool = True) -> None:
        """A second pool of windows: the voice-like renditions (hums, whistles, songs) of the first ``n_clips`` train
        clips (``encoded_pool``)."""
        self.pools.append(encoded_pool(data, tokens, codec, semantic, n_clips, voice=True, progress=progress))

    def batch(self, rng: np.random.Generator, size: int, frames: int, delay: int, cond_absent: int = 0,
              cond_dropout: float = 0.0, voice_share: float = 0.0, with_source: bool = False) -> tuple:
        """-> codes [B, K, frames], the delayed audio, and (with semantic ids) one id per frame [B, frames],
        all 'absent' (``cond_absent``) in a ``cond_dropout`` share of the windows; a ``voice_share`` of the windows
        come from the voice renditions (``add_voice``). ``with_source``: also the audio the codes were encoded from
        (the same window undelayed), for training an encoder, and which windows are renditions [B] bool."""
        K = self.pools[0][0].shape[1]
        codes = torch.empty(size, K, frames, dtype=torch.long)
        cond = None if self.pools[0][1] is None else torch.full((size, frames), cond_absent, dtype=torch.long)
        audio = np.zeros((size, frames * self.hop), dtype=np.float32)
        source = np.zeros_like(audio) if with_source else None
        from_voice = np.zeros(size, dtype=bool)
        for b in range(size):
            from_voice[b] = len(self.pools) > 1 and rng.random() < voice_share
            pool = self.pools[1] if from_voice[b] else self.pools[0]
            all_codes, all_sem, all_audio = pool
            n, _, F = all_codes.shape
            i, s = int(rng.integers(n)), int(rng.integers(0, F - frames + 1))
            codes[b] = all_codes[i, :, s:s + frames]
            if cond is not None and rng.random() >= cond_dropout:
                cond[b] = frame_ids(all_sem[i:i + 1], F, cond_absent)[0, s:s + frames]
            lo = s * self.hop - delay  # output sample 0 of this window shows input sample lo
            a = all_audio[i][max(0, lo): lo + frames * self.hop].astype(np.float32) / 32767
            audio[b, max(0, -lo): max(0, -lo) + len(a)] = a
            if source is not None:
                source[b] = all_audio[i][s * self.hop: (s + frames) * self.hop].astype(np.float32) / 32767
        if source is not None:
            return codes, torch.from_numpy(audio), cond, torch.from_numpy(source), torch.from_numpy(from_voice)
        return codes, torch.from_numpy(audio), cond


def train(a: argparse.Namespace) -> dict:
    torch.manual_seed(a.seed)
    base = Codec.load(a.init)
    semantic = None
    if a.semantic:
        from ..semantic import SemanticTokenizer
        semantic = SemanticTokenizer.load(a.semantic)
    cfg = dataclasses.replace(base.cfg, decoder=a.decoder, decoder_dim=a.dim, decoder_blocks=a.blocks,
                              decoder_version="",  # set when a best is saved; --init may carry one
                              decoder_cond=semantic.cardinality if semantic else 0,
                              decoder_cond_version=semantic.cfg.version if semantic else "")
    codec = Codec(cfg, encoder=base.encoder, quantizer=base.quantizer)
    if a.init_decoder:  # the decoder of --init as the start (a new semantic embedding stays at zero)
        missing, unexpected = codec.decoder.load_state_dict(base.decoder.state_dict(), strict=False)
        if unexpected or any(not k.startswith("cond.") for k in missing):
            raise SystemExit(f"--init's decoder does not fit: missing {missing}, unexpected {unexpected}")
    for p in [*codec.encoder.parameters(), *codec.quantizer.parameters()]:
        p.requires_grad_(False)
    dec = codec.decoder
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / "last.pt"
    named = list(dec.named_parameters())  # the semantic embedding ("cond.*") learns at --cond-lr-scale x lr
    groups = [{"params": [p for n, p in named if not n.startswith("cond.")], "scale": 1.0},
              {"params": [p for n, p in named if n.startswith("cond.")], "scale": a.cond_lr_scale}]
    opt = torch.optim.AdamW([g for g in groups if g["params"]], lr=a.lr, betas=(0.8, 0.99), weight_decay=1e-4)
    step, best, history, trained_s = 0, float("inf"), [], 0.0
    if ckpt_path.exists():
        ck = torch.load(ckpt_path, weights_only=False)
        if ck["config"] != dataclasses.asdict(cfg):  # decoder_version is "" until the first best is saved
            raise SystemExit(f"{ckpt_path} was trained with another config; use another --out")
        dec.load_state_dict(ck["decoder"])
        opt.load_state_dict(ck["opt"])
        step, best, history, trained_s = ck["step"], ck["best"], ck["history"], ck["trained_s"]
        print(f"resumed from {ckpt_path} at step {step}", file=sys.stderr)

    pool = encoded_pool(a.data, Path(a.tokens), codec, semantic, a.mix_clips, voice=False) if a.mix_clips else None
    data = CodeWindows(a.data, Path(a.tokens), cfg.version, cfg.hop,
                       semantic_version=semantic.cfg.version if semantic else None, pool=pool)
    valid = CorpusDataset(a.data, "valid", load_voice=a.voice_clips > 0)
    clips = [torch.from_numpy(valid[i].audio) for i in range(min(a.eval_clips, len(valid)))]
    voices = []
    if a.voice_clips:
        data.add_voice(a.data, Path(a.tokens), codec, semantic, a.voice_clips)
        voices = [torch.from_numpy(resample(valid[i].voice, valid[i].voice_rate, cfg.sample_rate).astype(np.float32))
                  for i in range(min(a.eval_clips, len(valid)))]
    frames = a.context + round(a.seconds * cfg.sample_rate / cfg.hop)
    skip = a.context * cfg.hop
    tracker, refs = None, {}
    if a.tracker_weight:  # and the validation originals' PESTO tracks, made once
        from ..eval.bench import _pitch
        tracker = TrackerLoss(cfg.sample_rate, frames=a.tracker_frames)
        refs = {name: [_pitch(x.numpy(), cfg.sample_rate) for x in group]
                for name, group in (("clips", clips), ("voices", voices))}

    t_start = time.time()
    deadline = t_start + a.minutes * 60 if a.minutes else float("inf")
    bar = tqdm(total=a.steps, initial=step, desc="decoder")
    t0 = time.time()
    while step < a.steps and time.time() < deadline:
        frac = min(1.0, (time.time() - t_start) / (deadline - t_start)) if a.minutes else step / a.steps
        lr = a.lr * min(1.0, (step + 1) / a.warmup)
        lr = lr + (a.final_lr - lr) * frac if a.final_lr is not None else lr
        for g in opt.param_groups:
            g["lr"] = lr * g["scale"]
        rng = np.random.default_rng([a.seed, step])
        codes, target, cond = data.batch(rng, a.batch, frames, dec.delay, cfg.decoder_cond, a.cond_dropout,
                                         a.voice_share if voices else 0.0)
        levels = torch.where(torch.from_numpy(rng.random(a.batch) < a.level_dropout),
                             torch.from_numpy(rng.integers(1, cfg.n_q, a.batch)), torch.full((a.batch,), cfg.n_q))
        keep = (torch.arange(cfg.n_q)[None] < levels[:, None])[:, :, None]
        with torch.no_grad():
            z = sum(codec.quantizer.levels[k].decode(codes[:, k]) * keep[:, k, :, None] for k in range(cfg.n_q))
        y = dec(z.permute(0, 2, 1), **codec._decoder_kwargs(cond))[:, 0]
        loss, parts = codec_loss(target[:, skip:], y[:, skip:], cfg.sample_rate)
        if a.pitch_weight:
            parts["pitch"] = pitch_loss(target[:, skip:], y[:, skip:], cfg.sample_rate, a.pitch_low)
            loss = loss + a.pitch_weight * parts["pitch"]
        if a.phase_weight:
            parts["phase"] = phase_loss(target[:, skip:], y[:, skip:], n_fft=4 * cfg.hop, hop=cfg.hop // 2)
            loss = loss + a.phase_weight * parts["phase"]
        if tracker is not None:
            parts["tracker"] = tracker(target[:, skip:], y[:, skip:], torch.Generator().manual_seed(a.seed * 7919 + step))
            loss = loss + a.tracker_weight * parts["tracker"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(dec.parameters(), 1.0)
        opt.step()
        step += 1
        bar.update()
        bar.set_postfix(mel=f"{parts['mel']:.3f}", lin=f"{parts['lin']:.3f}", lr=f"{lr:.1e}",
                        **{k: f"{parts[k].item():.3f}" for k in ("phase", "tracker") if k in parts})
        last = step >= a.steps or time.time() >= deadline
        if step % a.eval_every == 0 or last:
            trained_s += time.time() - t0
            t0 = time.time()
            m = evaluate(codec, clips, semantic)
            score = m["mel_8"]
            if a.pitch_weight:  # then the best trades mel against pitch as the training loss does
                m["pitch_8"] = valid_pitch(codec, clips, semantic, a.pitch_low)
                score += a.pitch_weight * m["pitch_8"]
                if voices:  # the renditions' pitch counts as much as the mixes'
                    m["voice_pitch_8"] = valid_pitch(codec, voices, semantic, a.pitch_low)
                    score += a.pitch_weight * m["voice_pitch_8"]
            if tracker is not None:  # then the share of frames off pitch counts too, for the renditions as well
                m["agree_8"] = valid_agreement(codec, clips, refs["clips"], semantic)
                score += 1.0 - m["agree_8"]
                if voices:
                    m["voice_agree_8"] = valid_agreement(codec, voices, refs["voices"], semantic)
                    score += 1.0 - m["voice_agree_8"]
            m.update(step=step, train_hours=round(trained_s / 3600, 3))
            history.append(m)
            tqdm.write(json.dumps(m))
            if score < best:
                best = score
                codec.cfg.decoder_version = f"{a.decoder}-s{step}"
                save_best(codec, out, m)
        if step % a.ckpt_every == 0 or last:
            tmp = out / "last.tmp"
            torch.save({"decoder": dec.state_dict(), "opt": opt.state_dict(), "step": step, "best": best,
                        "history": history, "config": dataclasses.asdict(dataclasses.replace(cfg, decoder_version="")),
                        "trained_s": trained_s + time.time() - t0}, tmp)
            os.replace(tmp, ckpt_path)
    bar.close()
    return {"step": step, "best_mel_8": best}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m engine.train.codec_decoder", description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="runs/corpus")
    ap.add_argument("--tokens", default="runs/tokens")
    ap.add_argument("--init", type=Path, default=Path("assets/codec"), help="codec whose encoder and RVQ are kept")
    ap.add_argument("--out", default="runs/codec_istft")
    ap.add_argument("--decoder", choices=("istft", "conv"), default="istft")
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--blocks", type=int, default=6)
    ap.add_argument("--steps", type=int, default=1_000_000)
    ap.add_argument("--minutes", type=float, default=None, help="stop after this much wall time")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=1.0, help="scored audio per window")
    ap.add_argument("--context", type=int, default=8, help="unscored warm-up frames per window")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--final-lr", type=float, default=None, help="decay linearly to this by the end (--minutes)")
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--level-dropout", type=float, default=0.25)
    ap.add_argument("--pitch-weight", type=float, default=0.0, help="weight of engine.train.codec.pitch_loss")
    ap.add_argument("--pitch-low", type=int, default=48,
                    help="lowest MIDI note of the pitch loss's semitone bands (48 = C3; down to 24 = C1)")
    ap.add_argument("--phase-weight", type=float, default=0.0, help="weight of engine.train.codec.phase_loss")
    ap.add_argument("--semantic", default=None, help="semantic tokenizer whose ids the decoder also reads")
    ap.add_argument("--cond-dropout", type=float, default=0.3, help="share of windows decoded without semantic ids")
    ap.add_argument("--cond-lr-scale", type=float, default=5.0, help="learning-rate factor of the semantic embedding")
    ap.add_argument("--voice-clips", type=int, default=0,
                    help="also train on the voice-like renditions (hums, whistles, songs) of this many train clips")
    ap.add_argument("--voice-share", type=float, default=0.2, help="share of windows from those renditions")
    ap.add_argument("--mix-clips", type=int, default=0,
                    help="encode the first N train clips here instead of reading the tokenize cache")
    ap.add_argument("--tracker-weight", type=float, default=0.0,
                    help="weight of engine.train.tracker_loss (PESTO's pitch distribution, original vs decoded)")
    ap.add_argument("--tracker-frames", type=int, default=128, help="confident frames the tracker loss scores per step")
    ap.add_argument("--init-decoder", action="store_true", help="start from --init's decoder instead of a new one")
    ap.add_argument("--eval-every", type=int, default=500)
    ap.add_argument("--eval-clips", type=int, default=16)
    ap.add_argument("--ckpt-every", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args(argv)
    if not 24 <= a.pitch_low <= 96:
        ap.error(f"--pitch-low must be a MIDI note within 24-96, got {a.pitch_low}")
    if a.voice_clips < 0 or not 0.0 <= a.voice_share <= 1.0:
        ap.error(f"--voice-clips must be >= 0 and --voice-share within 0-1, got {a.voice_clips} and {a.voice_share}")
    if a.mix_clips < 0 or a.tracker_weight < 0 or a.tracker_frames < 1:
        ap.error("--mix-clips and --tracker-weight must be >= 0 and --tracker-frames >= 1, got "
                 f"{a.mix_clips}, {a.tracker_weight} and {a.tracker_frames}")
    if a.threads:
        torch.set_num_threads(a.threads)
    print(json.dumps(train(a)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
