"""Fine-tune the codec's encoder by analysis-by-synthesis: ``python -m engine.train.codec_encoder_tune --data
runs/corpus --tokens runs/tokens --init assets/codec --semantic assets/semantic --out runs/enc_tune [--minutes M]``.

The quantizer and the decoder of ``--init`` stay frozen (the quantizer also in eval mode: no dead-code restart), so
the codes keep their meaning: every stage trained on them still decodes to the same audio, and generation, which runs
no encoder, is unchanged. Only which codes a round trip picks changes. Each step encodes windows of train audio
(mixes, and with ``--voice-clips`` a ``--voice-share`` of the voice-like renditions), quantizes them with the
straight-through estimator, decodes them with the clips' semantic ids, and scores the decoded audio against the input
delayed by the decoder's delay (both at a random level within ``--level-db``, none by default, and a ``--silence-share``
of them silent) with
the decoder trainer's terms (``codec_loss``, ``--pitch-weight`` x ``pitch_loss``,
``--tracker-weight`` x PESTO's ``TrackerLoss``, on every window or with ``--tracker-on voice`` on the renditions
only) plus ``--commit-weight`` x the quantizer's commitment loss. The first
``--context`` frames of a window warm the encoder's and decoder's causal state up and are not scored. A
``--level-dropout`` share of the windows is quantized with 1-7 levels, so lower bitrates keep decoding.

Why (session 42, ``python -m engine.eval.bench oracle``, assets/MODEL_CARD.md): choosing each test melody's codes
by gradient descent through the frozen quantizer and decoder raised PESTO agreement from 67.0% to 93.8% (10 clips):
the frozen decoder and codebooks can render the pitch; the encoder does not pick the codes that do. Session 49:
the silent windows keep digital silence silent (rms 4.7e-4, shipped 5.4e-4); a -10..+5 dB level change on top cost
validation mel_8 0.0044 on average over ten evaluations and left the pitch gain about the same (test, melody
alone: +11.7 points with it, +10.7 without), so it is off by default.
Tuned this way, melody-alone agreement on the test split rises about 11 points (66 -> 77-78%) for about 0.012 of mel
distance, and none of session 49's runs met ``--ship``'s mel test. Session 50: with ``--spectral 96``
(engine.codec.logfreq) 79.1% for 0.009 of mel distance (50 test clips), not shipped either; the mel terms on mixes
only (``--pitch-weight 0 --tracker-weight 0 --voice-clips 0``, 22 min) lowered test mel by 0.0038 and shipped.
Session 51: regressing the encoder onto an oracle's latents of 408 train windows (commit 080fd94, ``--distil``,
removed after) added about 2 points of validation rendition agreement for about 0.0014 of mel_8; not worth keeping.

Every ``--eval-every`` steps, on validation clips: the project's mel distance of full round trips at 8 and 4 levels
and ``bench codec``'s pitch agreement of the mixes and (with ``--voice-clips``) of the renditions; the best by
mel_8 + (1 - agreement) per kind is saved as a complete codec in ``OUT/best/``, its metrics also holding the
``--init`` codec's scores on the same clips. ``--ship OUT/best`` copies it into ``--assets`` only if it beats those
scores and the codec there still has the quantizer and decoder it was tuned against. Resumable from ``OUT/last.pt``.
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
from ..codec.model import Codec
from ..data.dataset import CorpusDataset
from .codec import codec_loss, evaluate, pitch_loss
from .codec_decoder import CodeWindows, encoded_pool, valid_agreement
from .publish import save_best
from .tracker_loss import TrackerLoss

SILENCE_RMS = 1e-3  # what a round trip of digital silence may return (the shipped codec: 5.4e-4)


def score(m: dict) -> float:
    """What the best minimises: mel_8 plus the share of confident frames off pitch, per kind of clip."""
    return m["mel_8"] + (1.0 - m["agree_8"]) + (1.0 - m.get("voice_agree_8", 1.0))


def validate(codec: Codec, clips: list, voices: list, refs: dict, semantic) -> dict:
    m = evaluate(codec, clips, semantic)
    m["agree_8"] = valid_agreement(codec, clips, refs["clips"], semantic)
    if voices:
        m["voice_agree_8"] = valid_agreement(codec, voices, refs["voices"], semantic)
    codec.eval()  # (the helpers above leave the whole codec in train mode; only the encoder trains here)
    return m


def quantize(codec: Codec, z: torch.Tensor, levels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Straight-through quantization with the first ``levels`` levels -> (decoder input, commitment loss)."""
    q = codec.quantizer(z, n_q=levels)
    return q.quantized, q.commit_loss / levels


def with_spectral(codec: Codec, bins: int) -> Codec:
    """The codec with ``engine.codec.logfreq.LogFreqFront`` added to its encoder; it encodes exactly as before until
    the front end's zero-initialised output layer is trained."""
    from ..codec.model import Encoder

    cfg = dataclasses.replace(codec.cfg, encoder_spectral=bins)
    enc = Encoder(cfg)
    missing, unexpected = enc.load_state_dict(codec.encoder.state_dict(), strict=False)
    assert not unexpected and all(k.startswith("spectral.") for k in missing), (missing, unexpected)
    return Codec(cfg, encoder=enc, quantizer=codec.quantizer, decoder=codec.decoder).eval()


def train(a: argparse.Namespace) -> dict:
    torch.manual_seed(a.seed)
    codec = Codec.load(a.init)
    semantic = None
    if codec.conditioned:
        if not a.semantic:
            raise SystemExit(f"{a.init}'s decoder reads semantic ids: pass --semantic DIR (its tokenizer)")
        from ..semantic import SemanticTokenizer
        semantic = SemanticTokenizer.load(a.semantic)
        if semantic.cfg.version != codec.cfg.decoder_cond_version:
            raise SystemExit(f"{a.semantic} is tokenizer {semantic.cfg.version}; the decoder reads "
                             f"{codec.cfg.decoder_cond_version}")
    if a.spectral and not codec.cfg.encoder_spectral:  # add the log-frequency front end (zero at first: same codes)
        codec = with_spectral(codec, a.spectral)
    cfg = codec.cfg
    for p in [*codec.quantizer.parameters(), *codec.decoder.parameters()]:
        p.requires_grad_(False)
    codec.eval()
    enc = codec.encoder
    opt = torch.optim.AdamW(enc.parameters(), lr=a.lr, betas=(0.9, 0.99), weight_decay=0.0)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / "last.pt"
    step, best, history, trained_s, base = 0, float("inf"), [], 0.0, None
    if ckpt_path.exists():
        ck = torch.load(ckpt_path, weights_only=False)
        if ck["config"] != dataclasses.asdict(cfg):
            raise SystemExit(f"{ckpt_path} was tuned from another codec; use another --out")
        enc.load_state_dict(ck["encoder"])
        opt.load_state_dict(ck["opt"])
        step, best, history, trained_s, base = ck["step"], ck["best"], ck["history"], ck["trained_s"], ck["base"]
        print(f"resumed from {ckpt_path} at step {step}", file=sys.stderr)

    # the pools' codes are the frozen encoder's (made once, cached); only their audio and semantic ids are used
    with torch.no_grad():
        init = Codec.load(a.init) if step else codec
        data = CodeWindows(a.data, Path(a.tokens), cfg.version, cfg.hop,
                           pool=encoded_pool(a.data, Path(a.tokens), init, semantic, a.mix_clips, voice=False))
        if a.voice_clips:
            data.add_voice(a.data, Path(a.tokens), init, semantic, a.voice_clips)
    valid = CorpusDataset(a.data, "valid", load_voice=a.voice_clips > 0)
    n_valid = min(a.eval_clips, len(valid))
    if not n_valid:
        raise SystemExit(f"{a.data} has no validation clips")
    clips = [torch.from_numpy(valid[i].audio) for i in range(n_valid)]
    voices = [torch.from_numpy(resample(valid[i].voice, valid[i].voice_rate, cfg.sample_rate).astype(np.float32))
              for i in range(n_valid)] if a.voice_clips else []
    from ..eval.bench import _pitch
    refs = {name: [_pitch(x.numpy(), cfg.sample_rate) for x in group]
            for name, group in (("clips", clips), ("voices", voices))}
    if base is None:  # the --init codec on the same clips: what a tuned encoder has to beat
        base = validate(codec, clips, voices, refs, semantic)
        base["score"] = score(base)
        tqdm.write(json.dumps({"init": base}))
    tracker = TrackerLoss(cfg.sample_rate, frames=a.tracker_frames) if a.tracker_weight else None

    frames = a.context + round(a.seconds * cfg.sample_rate / cfg.hop)
    skip, delay = a.context * cfg.hop, codec.delay
    t_start = t0 = time.time()
    deadline = t_start + a.minutes * 60 if a.minutes else float("inf")
    start_step = step
    bar = tqdm(total=a.steps, initial=step, desc="encoder tune")
    enc.train()
    while step < a.steps and time.time() < deadline:
        frac = (time.time() - t_start) / (deadline - t_start) if a.minutes else (step - start_step) / max(
            1, a.steps - start_step)
        lr = a.lr * min(1.0, (step + 1) / a.warmup)
        opt.param_groups[0]["lr"] = lr + (a.final_lr - lr) * min(1.0, frac) if a.final_lr is not None else lr
        rng = np.random.default_rng([a.seed, step])
        _, target, cond, source, from_voice = data.batch(rng, a.batch, frames, delay, cfg.decoder_cond,
                                             voice_share=a.voice_share if voices else 0.0, with_source=True)
        # the same level change on input and target (--level-db), and a --silence-share of digital silence: without
        # them the session-42 run's encoder turned a silent lead-in into -50 dBFS hiss (the shipped one: -65)
        gain = 10 ** (rng.uniform(*a.level_db, a.batch) / 20) * (rng.random(a.batch) >= a.silence_share)
        gain = torch.from_numpy(gain.astype(np.float32))[:, None]
        source, target = source * gain, target * gain
        z = enc(source[:, None])
        n_low = round(a.batch * a.level_dropout)  # the first n_low windows decode with fewer levels
        parts_q = [quantize(codec, z[n_low:], cfg.n_q)]
        if n_low:
            parts_q.insert(0, quantize(codec, z[:n_low], int(rng.integers(1, cfg.n_q))))
        q = torch.cat([p[0] for p in parts_q])
        commit = sum(p[1] for p in parts_q) / len(parts_q)
        y = codec.decoder(q, **codec._decoder_kwargs(cond))[:, 0]
        ref, est = target[:, skip:], y[:, skip:]
        loss, parts = codec_loss(ref, est, cfg.sample_rate)
        parts["commit"] = float(commit.detach())
        loss = loss + a.commit_weight * commit
        if a.pitch_weight:
            parts["pitch"] = float((p := pitch_loss(ref, est, cfg.sample_rate, a.pitch_low)).detach())
            loss = loss + a.pitch_weight * p
        scored = from_voice if a.tracker_on == "voice" else torch.ones_like(from_voice)
        if tracker is not None and scored.any():
            t = tracker(ref[scored], est[scored], torch.Generator().manual_seed(a.seed * 7919 + step))
            parts["tracker"] = float(t.detach())
            loss = loss + a.tracker_weight * t
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(enc.parameters(), 1.0)
        opt.step()
        step += 1
        bar.update()
        bar.set_postfix({k: f"{v:.3f}" for k, v in parts.items() if k != "sc"})
        last = step >= a.steps or time.time() >= deadline
        if step % a.eval_every == 0 or last:
            trained_s += time.time() - t0
            m = validate(codec, clips, voices, refs, semantic)
            enc.train()
            m.update(step=step, score=score(m), train_hours=round(trained_s / 3600, 3))
            history.append(m)
            tqdm.write(json.dumps(m))
            if m["score"] < best:
                best = m["score"]
                tuned = Codec(dataclasses.replace(cfg, encoder_version=f"{cfg.encoder_version}+tune-s{step}"),
                              encoder=enc, quantizer=codec.quantizer, decoder=codec.decoder)
                save_best(tuned, out, {**m, "init": base})
            t0 = time.time()
        if step % a.ckpt_every == 0 or last:
            tmp = out / "last.tmp"
            torch.save({"encoder": enc.state_dict(), "opt": opt.state_dict(), "step": step, "best": best,
                        "history": history, "config": dataclasses.asdict(cfg), "base": base,
                        "trained_s": trained_s + time.time() - t0}, tmp)
            os.replace(tmp, ckpt_path)
    bar.close()
    return {"step": step, "best_score": best, "init_score": base["score"]}


def ship(best_dir: Path, assets: Path) -> bool:
    """Copy a tuned codec into ``assets`` if it beats the codec it was tuned from on its validation clips (mel_8
    no worse, score lower), keeps digital silence silent, and the codec there still has the quantizer and decoder it
    was tuned against."""
    m = json.loads((best_dir / "metrics.json").read_text())
    init = m["init"]
    if m["score"] >= init["score"] or m["mel_8"] > init["mel_8"]:
        print(f"not shipped: score {m['score']:.4f} (mel_8 {m['mel_8']:.4f}) against the initial codec's "
              f"{init['score']:.4f} ({init['mel_8']:.4f})")
        return False
    new = Codec.load(best_dir)
    hiss = float(new.reconstruct(torch.zeros(1, 2 * new.sample_rate)).pow(2).mean().sqrt())
    if hiss >= SILENCE_RMS:
        print(f"not shipped: digital silence comes back at rms {hiss:.1e} (limit {SILENCE_RMS:.0e}, -60 dBFS)")
        return False
    if (assets / "codec.safetensors").exists():
        old = Codec.load(assets).state_dict()
        if any(k not in old or not torch.equal(old[k], v) for k, v in new.state_dict().items()
               if not k.startswith("encoder.")):
            print(f"not shipped: the quantizer or decoder in {assets} changed since this encoder was tuned; tune again")
            return False
    new.save(assets)  # fp16 as loaded: the quantizer and decoder stay bit-identical; assets' metrics.json stays
    print(f"shipped {best_dir} -> {assets} (encoder {new.cfg.encoder_version}: mel_8 {init['mel_8']:.4f} -> "
          f"{m['mel_8']:.4f}, agreement {init['agree_8']:.3f} -> {m['agree_8']:.3f})")
    return True


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m engine.train.codec_encoder_tune", description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="runs/corpus")
    ap.add_argument("--tokens", default="runs/tokens", help="where the pools of encoded train clips are cached")
    ap.add_argument("--init", type=Path, default=Path("assets/codec"), help="codec whose quantizer and decoder stay")
    ap.add_argument("--semantic", default=None, help="the semantic tokenizer the decoder reads (if it reads one)")
    ap.add_argument("--out", default="runs/enc_tune")
    ap.add_argument("--steps", type=int, default=1_000_000)
    ap.add_argument("--minutes", type=float, default=None, help="stop after this much wall time")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=1.0, help="scored audio per window")
    ap.add_argument("--context", type=int, default=25, help="unscored warm-up frames per window")
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--final-lr", type=float, default=1e-5, help="decay linearly to this by the end of the call")
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--level-dropout", type=float, default=0.25, help="share of windows decoded with 1-7 levels")
    ap.add_argument("--commit-weight", type=float, default=1.0)
    ap.add_argument("--pitch-weight", type=float, default=2.0, help="weight of engine.train.codec.pitch_loss")
    ap.add_argument("--pitch-low", type=int, default=36, help="lowest MIDI note of the pitch loss's bands")
    ap.add_argument("--tracker-weight", type=float, default=1.0, help="weight of engine.train.tracker_loss")
    ap.add_argument("--tracker-frames", type=int, default=128)
    ap.add_argument("--tracker-on", choices=("all", "voice"), default="all",
                    help="windows the tracker loss scores: all, or the voice renditions only (PESTO reads one pitch)")
    ap.add_argument("--mix-clips", type=int, default=800, help="train clips whose mixes are windowed")
    ap.add_argument("--voice-clips", type=int, default=800, help="train clips whose voice renditions are windowed")
    ap.add_argument("--voice-share", type=float, default=0.3, help="share of windows from those renditions")
    ap.add_argument("--silence-share", type=float, default=0.05, help="share of windows made digital silence")
    ap.add_argument("--level-db", type=float, nargs=2, default=(0.0, 0.0), metavar=("LOW", "HIGH"),
                    help="range of the random level change of each window, in dB (0 0: none)")
    ap.add_argument("--spectral", type=int, default=0, metavar="BINS",
                    help="add a log-frequency front end of this many semitone bins (from C1) to an encoder without one")
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--eval-clips", type=int, default=16)
    ap.add_argument("--ckpt-every", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--ship", type=Path, default=None, help="copy this tuned codec into --assets if it is better")
    ap.add_argument("--assets", type=Path, default=Path("assets/codec"))
    a = ap.parse_args(argv)
    if a.ship:
        return 0 if ship(a.ship, a.assets) else 1
    if a.mix_clips < 1 or a.voice_clips < 0 or not 0.0 <= a.voice_share <= 1.0 or not 0.0 <= a.level_dropout < 1.0 \
            or not 0.0 <= a.silence_share < 1.0 or a.level_db[0] > a.level_db[1]:
        ap.error("--mix-clips must be >= 1, --voice-clips >= 0, --voice-share within 0-1, --level-dropout and "
                 "--silence-share within 0-1 and --level-db LOW <= HIGH, got "
                 f"{a.mix_clips}, {a.voice_clips}, {a.voice_share}, {a.level_dropout}, {a.silence_share}, {a.level_db}")
    if a.threads:
        torch.set_num_threads(a.threads)
    print(json.dumps(train(a)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
