"""How much pitch the frozen quantizer and decoder can still render: ``python -m engine.eval.bench oracle [--corpus
DIR] [--clips N] [--steps S] [--kinds melody mix]``.

Analysis by synthesis, per test clip: start from the encoder's latent of the clip and move it by gradient descent
(Adam, ``--steps`` steps, the straight-through estimator through the residual VQ, quantizer and decoder frozen) to
lower the codec trainers' loss of the decoded clip against the original (``codec_loss`` + ``pitch_loss`` from C2 +
PESTO's ``TrackerLoss``); then quantize hard and decode, and score the result as ``bench codec`` does (PESTO agreement
on the original's confident frames, project mel distance). The result is an upper bound of what a better encoder
could reach with this quantizer and decoder (it fits each clip alone), and a lower bound of what the decoder can
render. Reading it: if the oracle's agreement is near 95%, the codes that render the pitch exist and the encoder is
the lever (``engine.train.codec_encoder_tune``); if it stays low, the decoder or the codebooks are.

Measured on the shipped codec (session 42, assets/MODEL_CARD.md, 100 steps): 10 test melodies 67.0% -> 93.8% of
3,136 frames, 83-95% of the codes changed (the same procedure in a session script, before it became this module);
5 test mixes with this module 60.4% -> 86.3%, mel distance 0.435 -> 0.358.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

KINDS = ("melody", "mix")


def oracle_clip(codec, semantic, x: torch.Tensor, steps: int, tracker, lr_scale: float = 0.01) -> dict:
    """One clip [N] -> agreement tallies, mel distances and share of codes changed, before and after."""
    from ..codec.model import frame_ids
    from ..train.codec import codec_loss, pitch_loss
    from .bench import _pitch, _pitch_agreement
    from .metrics import mel_distance

    sr, d, N = codec.cfg.sample_rate, codec.delay, x.shape[-1]
    ref = _pitch(x.numpy(), sr)
    with torch.no_grad():
        z0 = codec.encoder(codec._pad(torch.nn.functional.pad(x[None], (0, d))))
        cond = None
        if codec.conditioned and semantic is not None:
            cond = frame_ids(semantic.encode(x[None]), z0.shape[-1], codec.cfg.decoder_cond)
    kw = codec._decoder_kwargs(cond)

    def render(z: torch.Tensor, hard: bool) -> torch.Tensor:
        q = codec.quantizer.decode(codec.quantizer.encode(z)) if hard else codec.quantizer(z).quantized
        return codec.decoder(q, **kw)[:, 0, d: d + N]

    z = z0.clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=lr_scale * float(z0.std()))
    for _ in range(steps):
        y = render(z, False)
        loss, _ = codec_loss(x[None], y, sr)
        loss = loss + pitch_loss(x[None], y, sr, 36) + tracker(x[None], y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    out = {}
    with torch.no_grad():
        for name, latent in (("before", z0), ("after", z.detach())):
            y = render(latent, True)[0]
            tally = [0, 0]
            _pitch_agreement(tally, ref, y.numpy(), sr)
            out[name] = {"agree": tally, "mel": float(mel_distance(x, y))}
        out["codes_changed"] = float((codec.quantizer.encode(z) != codec.quantizer.encode(z0)).float().mean())
    return out


def run(corpus: Path, n_clips: int, steps: int, kinds: list[str], model_dir: Path, progress=None) -> dict:
    from ..audio import resample
    from ..codec import Codec
    from ..data.dataset import CorpusDataset
    from ..train.tracker_loss import TrackerLoss

    torch.manual_seed(0)  # the tracker loss's choice of frames
    codec = Codec.load(model_dir).eval()
    for p in codec.parameters():
        p.requires_grad_(False)
    semantic = None
    if codec.conditioned:
        from ..semantic import SemanticTokenizer
        semantic = SemanticTokenizer.load(Path(model_dir).parent / "semantic")
    sr = codec.cfg.sample_rate
    tracker = TrackerLoss(sr, frames=256)
    ds = CorpusDataset(corpus, "test", load_voice="melody" in kinds)
    if not len(ds):
        raise ValueError(f"{corpus} has no test clips")
    # every 5th of the 50 clips bench codec scores, so the first ten are the same clips as in session 42
    idx = np.linspace(0, len(ds) - 1, min(50, len(ds))).round().astype(int)[::5][:n_clips]
    result = {"clips": len(idx), "steps": steps}
    for kind in kinds:
        rows = []
        for i in idx:
            ex = ds[int(i)]
            if kind == "melody":
                if ex.voice is None:
                    raise ValueError(f"{corpus} has no voice renditions: build it with them to probe melodies")
                x = resample(ex.voice, ex.voice_rate, sr).astype(np.float32)
            else:
                x = ex.audio
            rows.append(oracle_clip(codec, semantic, torch.from_numpy(x), steps, tracker))
            if progress:
                progress(kind, len(rows), len(idx))
        row = {}
        for name in ("before", "after"):
            hits, frames = (sum(r[name]["agree"][j] for r in rows) for j in (0, 1))
            row[name] = {"agreement": round(hits / max(1, frames), 4),
                         "mel_distance": round(float(np.mean([r[name]["mel"] for r in rows])), 4)}
        row["frames"] = sum(r["before"]["agree"][1] for r in rows)
        row["codes_changed"] = round(float(np.mean([r["codes_changed"] for r in rows])), 3)
        result[kind] = row
    return result


def markdown(r: dict, machine: str, day: str) -> str:
    lines = [f"### Codec oracle (analysis by synthesis through the frozen quantizer and decoder), {day}, {machine}",
             "",
             (f"{r['clips']} test clips, {r['steps']} Adam steps on each clip's latent; PESTO agreement on the "
              "original's confident frames and mel distance of the hard-quantized result."),
             "",
             ("| kind | frames | agreement, encoder | agreement, oracle | mel distance, encoder | mel distance, oracle "
              "| codes changed |"),
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for kind in KINDS:
        if kind in r:
            k = r[kind]
            lines.append(f"| {kind} | {k['frames']} | {k['before']['agreement']:.1%} | {k['after']['agreement']:.1%} "
                         f"| {k['before']['mel_distance']:.4f} | {k['after']['mel_distance']:.4f} "
                         f"| {k['codes_changed']:.1%} |")
    return "\n".join(lines) + "\n"
