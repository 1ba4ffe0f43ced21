"""Phase ``tune``: the codec's encoder fine-tuned by analysis by synthesis, the quantizer and decoder frozen.

The quantizer (in eval mode: no dead-code restart) and the decoder of ``--init`` stay as they are, so the codes keep
their meaning: every stage trained on them decodes to the same audio and generation, which runs no encoder, is
unchanged; only which codes a round trip picks changes. Each step encodes windows of train audio (mixes, and with
``--voice-clips`` a ``--voice-share`` of the voice-like renditions), quantizes them with the straight-through
estimator, decodes them with the clips' semantic ids, and scores the decoded audio against the input delayed by the
decoder's delay with ``codec_loss`` (+ ``--pitch-weight`` x ``pitch_loss``) plus ``--commit-weight`` x the
commitment loss. A ``--silence-share`` of the windows is digital silence (without it a tuned encoder turned a silent
lead-in into -50 dBFS hiss). The first ``--context`` frames of a window warm the causal state up and are not scored;
a ``--level-dropout`` share is quantized with 1-7 levels. The shipped encoder was tuned on the mixes' mel terms
alone (``--pitch-weight 0 --voice-clips 0``): the pitch terms bought melody agreement at a cost in mel distance.

The best by mel_8 + (1 - pitch agreement) per kind of clip is kept; it ships when it beats the ``--init`` codec's
score on the same clips with no worse mel_8, keeps digital silence under -60 dBFS, and the codec in assets still has
the quantizer and decoder it was tuned against.
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
import torch

from ...audio import resample
from ...codec.losses import codec_loss, pitch_loss
from ...codec.model import Codec
from ...data.dataset import CorpusDataset
from ..loop import fit, metrics_of, save_best, ship, start
from .data import CodeWindows, encoded_pool
from .distil import kept_unchanged
from .scoring import pitch_refs, round_trip_agreement, round_trip_mel

DEFAULTS = {"lr": 1e-4, "batch": 8, "warmup": 50, "final_lr": 1e-5, "eval_every": 250, "ckpt_every": 50}
SILENCE_RMS = 1e-3  # what a round trip of digital silence may return (-60 dBFS)


def add_args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--tokens", default="runs/tokens", help="where the pools of encoded train clips are cached")
    ap.add_argument("--init", type=Path, default=Path("assets/codec"), help="codec whose quantizer and decoder stay")
    ap.add_argument("--semantic", default=None, help="the semantic tokenizer the decoder reads (if it reads one)")
    ap.add_argument("--seconds", type=float, default=1.0, help="scored audio per window")
    ap.add_argument("--context", type=int, default=25, help="unscored warm-up frames per window")
    ap.add_argument("--level-dropout", type=float, default=0.25, help="share of windows decoded with 1-7 levels")
    ap.add_argument("--commit-weight", type=float, default=1.0)
    ap.add_argument("--pitch-weight", type=float, default=0.0, help="weight of pitch_loss")
    ap.add_argument("--pitch-low", type=int, default=36, help="lowest MIDI note of the pitch loss's bands")
    ap.add_argument("--mix-clips", type=int, default=800, help="train clips whose mixes are windowed")
    ap.add_argument("--voice-clips", type=int, default=0, help="train clips whose voice renditions are windowed")
    ap.add_argument("--voice-share", type=float, default=0.3, help="share of windows from those renditions")
    ap.add_argument("--silence-share", type=float, default=0.05, help="share of windows made digital silence")


def check_args(ap: argparse.ArgumentParser, a: argparse.Namespace) -> None:
    if a.mix_clips < 1 or a.voice_clips < 0 or not 0.0 <= a.voice_share <= 1.0 or not 0.0 <= a.level_dropout < 1.0 \
            or not 0.0 <= a.silence_share < 1.0:
        ap.error("--mix-clips must be >= 1, --voice-clips >= 0, --voice-share within 0-1, and --level-dropout and "
                 f"--silence-share within 0-1, got {a.mix_clips}, {a.voice_clips}, {a.voice_share}, "
                 f"{a.level_dropout} and {a.silence_share}")


def score(m: dict) -> float:
    """What the best minimises: mel_8 plus the share of confident frames off pitch, per kind of clip."""
    return m["mel_8"] + (1.0 - m["agree_8"]) + (1.0 - m.get("voice_agree_8", 1.0))


class TuneTask:
    name = "encoder tune"

    def __init__(self, a: argparse.Namespace, codec: Codec, semantic, init: Codec):
        self.a, self.codec, self.semantic = a, codec, semantic
        cfg = codec.cfg
        with torch.no_grad():  # the pools' codes are the frozen encoder's; only their audio and ids are used
            self.data = CodeWindows(a.data, Path(a.tokens), cfg.version, cfg.hop,
                                    pool=encoded_pool(a.data, Path(a.tokens), init, semantic, a.mix_clips, voice=False))
            if a.voice_clips:
                self.data.add_voice(a.data, Path(a.tokens), init, semantic, a.voice_clips)
        valid = CorpusDataset(a.data, "valid", load_voice=a.voice_clips > 0)
        n = min(a.eval_clips, len(valid))
        if not n:
            raise SystemExit(f"{a.data} has no validation clips")
        self.clips = [torch.from_numpy(valid[i].audio) for i in range(n)]
        self.voices = [torch.from_numpy(resample(valid[i].voice, valid[i].voice_rate, cfg.sample_rate)
                                        .astype(np.float32)) for i in range(n)] if a.voice_clips else []
        self.refs = {"clips": pitch_refs(self.clips, cfg.sample_rate), "voices": pitch_refs(self.voices, cfg.sample_rate)}
        self.frames = a.context + round(a.seconds * cfg.sample_rate / cfg.hop)

    def modules(self):
        return {"encoder": self.codec.encoder}

    def identity(self):
        return dataclasses.asdict(self.codec.cfg)

    def measure(self) -> dict:
        codec, sem = self.codec, self.semantic
        m = round_trip_mel(codec, self.clips, sem)
        m["agree_8"] = round_trip_agreement(codec, self.clips, self.refs["clips"], sem)
        if self.voices:
            m["voice_agree_8"] = round_trip_agreement(codec, self.voices, self.refs["voices"], sem)
        m["score"] = score(m)
        return m

    def loss(self, step: int, rank: int):
        a, codec, cfg = self.a, self.codec, self.codec.cfg
        rng = np.random.default_rng([a.seed, step])
        _, target, cond, source, _ = self.data.batch(rng, a.batch, self.frames, codec.delay, cfg.decoder_cond,
                                                     voice_share=a.voice_share if self.voices else 0.0,
                                                     with_source=True)
        gain = torch.from_numpy((rng.random(a.batch) >= a.silence_share).astype(np.float32))[:, None]
        source, target = source * gain, target * gain
        z = codec.encoder(source[:, None])
        n_low = round(a.batch * a.level_dropout)  # the first n_low windows decode with fewer levels
        parts_q = [codec.quantizer(z[n_low:], n_q=cfg.n_q)]
        levels = [cfg.n_q]
        if n_low:
            levels.insert(0, int(rng.integers(1, cfg.n_q)))
            parts_q.insert(0, codec.quantizer(z[:n_low], n_q=levels[0]))
        q = torch.cat([p.quantized for p in parts_q])
        commit = sum(p.commit_loss / n for p, n in zip(parts_q, levels)) / len(parts_q)
        y = codec.decoder(q, **codec._decoder_kwargs(cond))[:, 0]
        skip = a.context * cfg.hop
        ref, est = target[:, skip:], y[:, skip:]
        loss, parts = codec_loss(ref, est, cfg.sample_rate)
        loss = loss + a.commit_weight * commit
        parts["commit"] = float(commit.detach())
        if a.pitch_weight:
            p = pitch_loss(ref, est, cfg.sample_rate, a.pitch_low)
            loss, parts["pitch"] = loss + a.pitch_weight * p, float(p.detach())
        return loss, {k: v for k, v in parts.items() if k != "sc"}

    def validate(self, step: int) -> dict:
        m = self.measure()
        self.codec.eval()
        self.codec.encoder.train()
        return m

    def keep_best(self, metrics: dict, step: int) -> None:
        cfg = self.codec.cfg
        tuned = Codec(dataclasses.replace(cfg, encoder_version=f"{cfg.encoder_version}+tune-s{step}"),
                      encoder=self.codec.encoder, quantizer=self.codec.quantizer, decoder=self.codec.decoder)
        save_best(tuned, Path(self.a.out), {**metrics, "init": self.init_scores})


def train(a: argparse.Namespace) -> None:
    start(a)
    codec = Codec.load(a.init)
    semantic = None
    if codec.conditioned:
        if not a.semantic:
            raise SystemExit(f"{a.init}'s decoder reads semantic ids: pass --semantic DIR (its tokenizer)")
        from ...semantic import SemanticTokenizer
        semantic = SemanticTokenizer.load(a.semantic)
        if semantic.cfg.version != codec.cfg.decoder_cond_version:
            raise SystemExit(f"{a.semantic} is tokenizer {semantic.cfg.version}; the decoder reads "
                             f"{codec.cfg.decoder_cond_version}")
    for p in [*codec.quantizer.parameters(), *codec.decoder.parameters()]:
        p.requires_grad_(False)
    task = TuneTask(a, codec.eval(), semantic, Codec.load(a.init))
    task.init_scores = task.measure()  # the --init codec on the same clips: what a tuned encoder has to beat
    codec.encoder.train()
    opt = torch.optim.AdamW(codec.encoder.parameters(), lr=a.lr, betas=(0.9, 0.99), weight_decay=0.0)
    fit(task, opt, Path(a.out), a)


def ship_best(a: argparse.Namespace) -> bool:
    """The tuned encoder, when it beats the codec it was tuned from on its validation clips (score lower, mel_8 no
    worse), keeps digital silence silent, and the quantizer and decoder in assets are the ones it was tuned against."""
    best = Path(a.out) / "best"
    m = metrics_of(best)
    new = Codec.load(best)
    vetoes = []
    if m["mel_8"] > m["init"]["mel_8"]:
        vetoes.append(f"its mel_8 {m['mel_8']:.4f} is worse than the initial codec's {m['init']['mel_8']:.4f}")
    hiss = float(new.reconstruct(torch.zeros(1, 2 * new.sample_rate)).pow(2).mean().sqrt())
    if hiss >= SILENCE_RMS:
        vetoes.append(f"digital silence comes back at rms {hiss:.1e} (limit {SILENCE_RMS:.0e}, -60 dBFS)")
    return ship(best, a.assets, lambda: new.save(a.assets), "tuned encoder", "validation score", m["score"],
                m["init"]["score"], vetoes=(*vetoes, *kept_unchanged(new, a.assets)))
