"""Where a melody's pitch goes in the codec: ``python -m engine.eval.bench probe [--corpus DIR] [--train-clips N]
[--clips N] [--kinds melody mix]``.

The codec issue's last unmet target is pitch: PESTO on the round trip agrees with PESTO on the original on 95% of
the original's confident frames. A decoder can only put back the pitch its input still carries, so this measures,
per representation along the codec, how much of the original's pitch a small frame classifier (a probe) can read
from it. Every probe has the same shape (1x1 input projection, four residual 5-tap convolutions of width 128, a
semitone classifier over MIDI 24-107: 17 frames of context) and is trained on the same frames of the train split,
then scored on the test split's frames exactly as ``bench codec`` scores a reconstruction (class = the original's
PESTO pitch rounded to a semitone, on frames where PESTO is confident, > 0.9).

Representations, in the order audio flows through the codec:
- ``audio``: the original's log-magnitude spectrum (4,096-point STFT at the codec's 50 Hz, 0-2.5 kHz): what a probe
  of this size reads from the signal itself, the ceiling of the others.
- ``latent``: the encoder's output before quantization.
- ``codes_4`` / ``codes_8``: the RVQ's quantized latent from the first 4 / all 8 levels (what the decoder reads).
- ``codes_8_ids``: the same plus the clip's semantic ids (a conditioned decoder's whole input).
- ``roundtrip``: the decoded audio's spectrum (what the decoder made of it).

Beside them the round trip's own PESTO agreement on the same frames (``bench codec``'s number for these clips).
Reading it: a drop from ``audio`` to ``latent`` is the encoder's loss, from ``latent`` to ``codes_8`` the
quantizer's, from ``codes_8_ids`` to ``roundtrip`` the decoder's. Kinds: ``melody`` (each clip's voice-like rendition,
the issue's "reconstructed melodies") and ``mix``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

LOW, HIGH = 24, 108  # MIDI classes of the probe
REPRESENTATIONS = ("audio", "latent", "codes_4", "codes_8", "codes_8_ids", "roundtrip")
SPEC_FFT, SPEC_HZ = 4096, 2500.0


def spectrum(x: torch.Tensor, hop: int, sr: int) -> torch.Tensor:
    """audio [T] -> log-magnitude [bins, frames] at one frame per hop, bins up to SPEC_HZ."""
    bins = int(SPEC_HZ / sr * SPEC_FFT) + 1
    s = torch.stft(x, SPEC_FFT, hop, window=torch.hann_window(SPEC_FFT), center=True, return_complex=True)
    return torch.log(s.abs()[:bins] + 1e-4)


@dataclass
class ClipFeatures:
    """One clip's frames: every representation but the ids' [C, T] (float16; ``codes_8_ids`` reads ``codes_8`` and
    ``ids``, int64 [T]), PESTO targets of the original."""
    reps: dict[str, np.ndarray]
    ids: np.ndarray | None
    pitch: np.ndarray  # [T] the original's PESTO MIDI pitch
    sure: np.ndarray  # [T] bool: the original's PESTO confidence > 0.9
    rt_agree: np.ndarray  # [T] bool: the round trip's PESTO pitch within half a semitone of the original's


def clip_features(codec, semantic, x: np.ndarray) -> ClipFeatures:
    """One 24 kHz mono clip through the codec, every representation at the codec's frame rate."""
    from ..codec.model import frame_ids
    from .bench import _pitch

    sr, hop = codec.sample_rate, codec.cfg.hop
    xt = torch.from_numpy(np.asarray(x, dtype=np.float32))
    with torch.inference_mode():
        z = codec.encoder(codec._pad(xt[None]))
        codes = codec.quantizer.encode(z)
        rec = codec.reconstruct(xt[None], semantic=semantic)[0]
        ids = None
        if semantic is not None:
            ids = frame_ids(semantic.encode(xt[None]), codes.shape[-1], codec.cfg.decoder_cond)[0].numpy()
        reps = {"audio": spectrum(xt, hop, sr), "latent": z[0], "codes_4": codec.quantizer.decode(codes[:, :4])[0],
                "codes_8": codec.quantizer.decode(codes)[0], "roundtrip": spectrum(rec, hop, sr)}
    p_ref, c_ref = _pitch(np.asarray(x, dtype=np.float32), sr)
    p_rec, _ = _pitch(rec.numpy(), sr)
    n = min(z.shape[-1], len(p_ref), len(p_rec), *(r.shape[-1] for r in reps.values()))
    reps = {k: v[:, :n].numpy().astype(np.float16) for k, v in reps.items()}
    return ClipFeatures(reps, None if ids is None else ids[:n], p_ref[:n], c_ref[:n] > 0.9,
                        np.abs(p_ref[:n] - p_rec[:n]) < 0.5)


class Probe(nn.Module):
    def __init__(self, n_in: int, n_ids: int = 0, width: int = 128, blocks: int = 4):
        super().__init__()
        self.inp = nn.Conv1d(n_in, width, 1)
        self.ids = nn.Embedding(n_ids, width) if n_ids else None
        self.blocks = nn.ModuleList(nn.Sequential(nn.Conv1d(width, width, 5, padding=2), nn.GELU(),
                                                  nn.Conv1d(width, width, 1)) for _ in range(blocks))
        self.out = nn.Conv1d(width, HIGH - LOW, 1)

    def forward(self, x: torch.Tensor, ids: torch.Tensor | None = None) -> torch.Tensor:  # [B, C, T] -> [B, cls, T]
        h = self.inp(x)
        if self.ids is not None:
            h = h + self.ids(ids).transpose(1, 2)
        for b in self.blocks:
            h = h + b(h)
        return self.out(h)


def _targets(f: ClipFeatures) -> np.ndarray:
    """Semitone class per frame, -1 where the original is not confidently pitched or out of the probe's range."""
    c = np.round(f.pitch).astype(int) - LOW
    return np.where(f.sure & (c >= 0) & (c < HIGH - LOW), c, -1)


def _input(rep: str) -> tuple[str, bool]:
    """A representation's name -> (the array it reads, whether it also reads the semantic ids)."""
    return rep.removesuffix("_ids"), rep.endswith("_ids")


def train_probe(train: list[ClipFeatures], rep: str, steps: int = 1000, batch: int = 16, crop: int = 128,
                seed: int = 0, n_ids: int = 0, progress=None) -> tuple[Probe, np.ndarray, np.ndarray]:
    """A probe of ``rep`` on the train clips' frames (``n_ids``: the id vocabulary of a ``_ids`` representation);
    returns it with the input's mean and std (per channel)."""
    g = np.random.default_rng(seed)
    torch.manual_seed(seed)
    name, use_ids = _input(rep)
    xs = [f.reps[name].astype(np.float32) for f in train]
    ys = [_targets(f) for f in train]
    idss = [f.ids for f in train] if use_ids else None
    cat = np.concatenate(xs, 1)
    mean, std = cat.mean(1, keepdims=True), cat.std(1, keepdims=True) + 1e-3
    probe = Probe(cat.shape[0], n_ids if use_ids else 0)
    opt = torch.optim.AdamW(probe.parameters(), lr=1e-3, weight_decay=1e-2)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-3, total_steps=steps, pct_start=0.1)
    usable = [i for i, y in enumerate(ys) if len(y) >= crop and (y >= 0).any()]
    if not usable:
        raise ValueError(f"no train clip has {crop} frames with a confident pitch")
    for step in range(steps):
        xb, yb, ib = [], [], []
        for i in g.choice(usable, batch):
            s = int(g.integers(0, len(ys[i]) - crop + 1))
            xb.append((xs[i][:, s:s + crop] - mean) / std)
            yb.append(ys[i][s:s + crop])
            if use_ids:
                ib.append(idss[i][s:s + crop])
        logits = probe(torch.from_numpy(np.stack(xb)), torch.from_numpy(np.stack(ib)) if use_ids else None)
        y = torch.from_numpy(np.stack(yb)).long()
        if (y >= 0).any():
            loss = nn.functional.cross_entropy(logits, y, ignore_index=-1)
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
        if progress:
            progress(step + 1, steps)
    return probe.eval(), mean, std


@torch.inference_mode()
def probe_accuracy(probe: Probe, mean: np.ndarray, std: np.ndarray, clips: list[ClipFeatures], rep: str) -> tuple[int, int]:
    """(frames whose predicted semitone is the original's, frames scored) over the clips' confident frames."""
    hits = total = 0
    for f in clips:
        y = _targets(f)
        name, use_ids = _input(rep)
        x = torch.from_numpy((f.reps[name].astype(np.float32) - mean) / std)[None]
        ids = torch.from_numpy(f.ids)[None].long() if use_ids else None
        pred = probe(x, ids)[0].argmax(0).numpy()
        hits += int(((pred == y) & (y >= 0)).sum())
        total += int((y >= 0).sum())
    return hits, total


def collect(corpus: Path, split: str, n_clips: int, kind: str, codec, semantic, progress=None) -> list[ClipFeatures]:
    """Features of n_clips of a split, spread over it as ``bench codec`` picks them."""
    from ..audio import resample
    from ..data.dataset import CorpusDataset

    ds = CorpusDataset(corpus, split, load_voice=kind == "melody")
    if not len(ds):
        raise ValueError(f"{corpus} has no {split} clips")
    out = []
    idx = np.linspace(0, len(ds) - 1, min(n_clips, len(ds))).round().astype(int)
    for n, i in enumerate(idx):
        ex = ds[int(i)]
        if kind == "melody":
            if ex.voice is None:
                continue
            x = resample(ex.voice, ex.voice_rate, codec.sample_rate).astype(np.float32)
        else:
            x = ex.audio
        out.append(clip_features(codec, semantic, x))
        if progress:
            progress(n + 1, len(idx))
    return out


def run(corpus: Path, train_clips: int, test_clips: int, kinds: list[str], model_dir: Path, steps: int = 1000,
        reps: tuple[str, ...] = REPRESENTATIONS, seed: int = 0, bar=None) -> dict:
    from tqdm import tqdm

    from ..codec import Codec

    codec = Codec.load(model_dir)
    semantic = None
    if codec.conditioned:
        from ..semantic import SemanticTokenizer
        semantic = SemanticTokenizer.load(Path(model_dir).parent / "semantic")
    n_ids = codec.cfg.decoder_cond + 1 if codec.conditioned else 0  # the ids and 'absent'
    results = {}
    for kind in kinds:
        feats = {}
        for split, n in (("train", train_clips), ("test", test_clips)):
            b = tqdm(total=n, desc=f"{kind} {split} features")
            feats[split] = collect(corpus, split, n, kind, codec, semantic, progress=lambda k, t: b.update(1))
            b.close()
        rt = [sum(int(f.rt_agree[_targets(f) >= 0].sum()) for f in feats["test"]),
              sum(int((_targets(f) >= 0).sum()) for f in feats["test"])]
        row = {"clips": [len(feats["train"]), len(feats["test"])], "roundtrip_pesto": round(rt[0] / max(1, rt[1]), 4),
               "frames": rt[1], "probe": {}}
        for rep in reps:
            if _input(rep)[1] and not n_ids:
                continue
            b = tqdm(total=steps, desc=f"{kind} probe {rep}")
            probe, mean, std = train_probe(feats["train"], rep, steps, seed=seed, n_ids=n_ids,
                                           progress=lambda k, t: b.update(1))
            b.close()
            h, t = probe_accuracy(probe, mean, std, feats["test"], rep)
            row["probe"][rep] = round(h / max(1, t), 4)
            print(f"{kind} {rep}: {row['probe'][rep]:.1%}", flush=True)
        results[kind] = row
    return results


def markdown(r: dict, machine: str, day: str, steps: int) -> str:
    lines = [f"### Codec pitch probe ({day}, {machine}, `python -m engine.eval.bench probe`, {steps} steps per probe)",
             "", "| kind | train / test clips | test frames | round trip, PESTO | "
             + " | ".join(f"probe: {rep}" for rep in REPRESENTATIONS) + " |",
             "| --- | --- | --- | --- | " + " | ".join("---" for _ in REPRESENTATIONS) + " |"]
    for kind, row in r.items():
        cells = [f"{row['probe'][rep]:.1%}" if rep in row["probe"] else "-" for rep in REPRESENTATIONS]
        lines.append(f"| {kind} | {row['clips'][0]} / {row['clips'][1]} | {row['frames']} | "
                     f"{row['roundtrip_pesto']:.1%} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
