"""Phase ``decoder``: a new decoder on frozen codes (by default the frame-rate iSTFT decoder of
``engine.codec.istft``).

The encoder and residual VQ of ``--init`` stay as they are, so the codes, and every stage trained on them, stay
valid. Training reads the codes ``engine.train.tokenize`` cached for the train split (the very codes the stages
learned; ``--mix-clips N`` encodes N train clips here instead), so no encoder runs: each step decodes random windows
of codes and compares the audio with the clip delayed by the decoder's delay, with ``codec_loss`` plus
``--pitch-weight`` x ``pitch_loss`` and ``--phase-weight`` x ``phase_loss``. The first ``--context`` frames of each
window warm the causal state up and are not scored. A ``--level-dropout`` share of the windows use only the first
1-7 levels, so lower bitrates keep decoding. ``--semantic DIR``: the decoder also reads that tokenizer's semantic
ids (``--cond-dropout`` of the windows get none, so it still decodes without them); their embedding starts at zero
and learns at ``--cond-lr-scale`` x the learning rate. ``--voice-clips N``: a ``--voice-share`` of the windows come
from the voice-like renditions of the first N train clips. The best by validation mel_8 (+ weighted pitch) is kept
as a complete codec and ships when its mel_8 beats the shipped codec's.
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
import torch

from ...audio import resample
from ...codec.losses import codec_loss, phase_loss, pitch_loss
from ...codec.model import Codec
from ...data.dataset import CorpusDataset
from ..loop import fit, save_best, start
from .data import CodeWindows, encoded_pool
from .scoring import round_trip_mel, round_trip_pitch

DEFAULTS = {"lr": 1e-3, "batch": 16, "warmup": 200}


def add_args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--tokens", default="runs/tokens")
    ap.add_argument("--init", type=Path, default=Path("assets/codec"), help="codec whose encoder and RVQ are kept")
    ap.add_argument("--decoder", choices=("istft", "conv"), default="istft")
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--blocks", type=int, default=6)
    ap.add_argument("--seconds", type=float, default=1.0, help="scored audio per window")
    ap.add_argument("--context", type=int, default=8, help="unscored warm-up frames per window")
    ap.add_argument("--level-dropout", type=float, default=0.25)
    ap.add_argument("--pitch-weight", type=float, default=0.0, help="weight of pitch_loss")
    ap.add_argument("--pitch-low", type=int, default=48,
                    help="lowest MIDI note of the pitch loss's semitone bands (48 = C3; down to 24 = C1)")
    ap.add_argument("--phase-weight", type=float, default=0.0, help="weight of phase_loss")
    ap.add_argument("--semantic", default=None, help="semantic tokenizer whose ids the decoder also reads")
    ap.add_argument("--cond-dropout", type=float, default=0.3, help="share of windows decoded without semantic ids")
    ap.add_argument("--cond-lr-scale", type=float, default=5.0, help="learning-rate factor of the semantic embedding")
    ap.add_argument("--voice-clips", type=int, default=0,
                    help="also train on the voice-like renditions (hums, whistles, songs) of this many train clips")
    ap.add_argument("--voice-share", type=float, default=0.2, help="share of windows from those renditions")
    ap.add_argument("--mix-clips", type=int, default=0,
                    help="encode the first N train clips here instead of reading the tokenize cache")
    ap.add_argument("--init-decoder", action="store_true", help="start from --init's decoder instead of a new one")


def check_args(ap: argparse.ArgumentParser, a: argparse.Namespace) -> None:
    if not 24 <= a.pitch_low <= 96:
        ap.error(f"--pitch-low must be a MIDI note within 24-96, got {a.pitch_low}")
    if a.voice_clips < 0 or a.mix_clips < 0 or not 0.0 <= a.voice_share <= 1.0:
        ap.error(f"--voice-clips and --mix-clips must be >= 0 and --voice-share within 0-1, got {a.voice_clips}, "
                 f"{a.mix_clips} and {a.voice_share}")


class DecoderTask:
    name = "decoder"

    def __init__(self, a: argparse.Namespace, codec: Codec, semantic):
        self.a, self.codec, self.semantic = a, codec, semantic
        cfg = codec.cfg
        pool = encoded_pool(a.data, Path(a.tokens), codec, semantic, a.mix_clips, voice=False) if a.mix_clips else None
        self.data = CodeWindows(a.data, Path(a.tokens), cfg.version, cfg.hop,
                                semantic_version=semantic.cfg.version if semantic else None, pool=pool)
        valid = CorpusDataset(a.data, "valid", load_voice=a.voice_clips > 0)
        n = min(a.eval_clips, len(valid))
        self.clips = [torch.from_numpy(valid[i].audio) for i in range(n)]
        self.voices = []
        if a.voice_clips:
            self.data.add_voice(a.data, Path(a.tokens), codec, semantic, a.voice_clips)
            self.voices = [torch.from_numpy(resample(valid[i].voice, valid[i].voice_rate, cfg.sample_rate)
                                            .astype(np.float32)) for i in range(n)]
        self.frames = a.context + round(a.seconds * cfg.sample_rate / cfg.hop)

    def modules(self):
        return {"decoder": self.codec.decoder}

    def identity(self):
        return dataclasses.asdict(dataclasses.replace(self.codec.cfg, decoder_version=""))

    def loss(self, step: int, rank: int):
        a, codec, cfg = self.a, self.codec, self.codec.cfg
        rng = np.random.default_rng([a.seed, step])
        dec = codec.decoder
        codes, target, cond = self.data.batch(rng, a.batch, self.frames, dec.delay, cfg.decoder_cond, a.cond_dropout,
                                              a.voice_share if self.voices else 0.0)
        levels = torch.where(torch.from_numpy(rng.random(a.batch) < a.level_dropout),
                             torch.from_numpy(rng.integers(1, cfg.n_q, a.batch)), torch.full((a.batch,), cfg.n_q))
        keep = (torch.arange(cfg.n_q)[None] < levels[:, None])[:, :, None]
        with torch.no_grad():
            z = sum(codec.quantizer.levels[k].decode(codes[:, k]) * keep[:, k, :, None] for k in range(cfg.n_q))
        y = dec(z.permute(0, 2, 1), **codec._decoder_kwargs(cond))[:, 0]
        skip = a.context * cfg.hop
        ref, est = target[:, skip:], y[:, skip:]
        loss, parts = codec_loss(ref, est, cfg.sample_rate)
        if a.pitch_weight:
            p = pitch_loss(ref, est, cfg.sample_rate, a.pitch_low)
            loss, parts["pitch"] = loss + a.pitch_weight * p, float(p.detach())
        if a.phase_weight:
            p = phase_loss(ref, est, n_fft=4 * cfg.hop, hop=cfg.hop // 2)
            loss, parts["phase"] = loss + a.phase_weight * p, float(p.detach())
        return loss, {k: v for k, v in parts.items() if k != "sc"}

    def validate(self, step: int) -> dict:
        a, codec = self.a, self.codec
        m = round_trip_mel(codec, self.clips, self.semantic)
        m["score"] = m["mel_8"]
        if a.pitch_weight:  # then the best trades mel against pitch as the training loss does
            m["pitch_8"] = round_trip_pitch(codec, self.clips, self.semantic, a.pitch_low)
            m["score"] += a.pitch_weight * m["pitch_8"]
            if self.voices:  # the renditions' pitch counts as much as the mixes'
                m["voice_pitch_8"] = round_trip_pitch(codec, self.voices, self.semantic, a.pitch_low)
                m["score"] += a.pitch_weight * m["voice_pitch_8"]
        return m

    def keep_best(self, metrics: dict, step: int) -> None:
        self.codec.cfg.decoder_version = f"{self.a.decoder}-s{step}"
        save_best(self.codec, Path(self.a.out), metrics)
        self.codec.cfg.decoder_version = ""


def train(a: argparse.Namespace) -> None:
    start(a)
    base = Codec.load(a.init)
    semantic = None
    if a.semantic:
        from ...semantic import SemanticTokenizer
        semantic = SemanticTokenizer.load(a.semantic)
    cfg = dataclasses.replace(base.cfg, decoder=a.decoder, decoder_dim=a.dim, decoder_blocks=a.blocks,
                              decoder_version="", decoder_cond=semantic.cardinality if semantic else 0,
                              decoder_cond_version=semantic.cfg.version if semantic else "")
    codec = Codec(cfg, encoder=base.encoder, quantizer=base.quantizer)
    if a.init_decoder:  # the decoder of --init as the start (a new semantic embedding stays at zero)
        missing, unexpected = codec.decoder.load_state_dict(base.decoder.state_dict(), strict=False)
        if unexpected or any(not k.startswith("cond.") for k in missing):
            raise SystemExit(f"--init's decoder does not fit: missing {missing}, unexpected {unexpected}")
    for p in [*codec.encoder.parameters(), *codec.quantizer.parameters()]:
        p.requires_grad_(False)
    named = list(codec.decoder.named_parameters())  # the semantic embedding ("cond.*") learns at --cond-lr-scale x
    groups = [{"params": [p for n, p in named if not n.startswith("cond.")], "scale": 1.0},
              {"params": [p for n, p in named if n.startswith("cond.")], "scale": a.cond_lr_scale}]
    opt = torch.optim.AdamW([g for g in groups if g["params"]], lr=a.lr, betas=(0.8, 0.99), weight_decay=1e-4)
    fit(DecoderTask(a, codec, semantic), opt, Path(a.out), a)
