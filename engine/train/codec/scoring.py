"""How the codec phases score a codec on validation clips: the project's mel distance of full round trips at 8 and
4 levels, ``pitch_loss`` of the round trips, and PESTO's pitch agreement with the originals."""
from __future__ import annotations

import numpy as np
import torch

from ...codec.losses import pitch_loss
from ...codec.model import Codec
from ...eval.metrics import mel_distance, pitch_agreement, pitch_track


@torch.inference_mode()
def round_trip_mel(codec: Codec, clips: list[torch.Tensor], semantic=None) -> dict:
    """``mel_8`` and ``mel_4``: the mean mel distance of the clips' round trips with 8 and 4 levels."""
    was = codec.training
    codec.eval()
    res = {f"mel_{k}": float(np.mean([float(mel_distance(x, codec.reconstruct(x[None], n_q=k, semantic=semantic)[0]))
                                      for x in clips])) for k in (4, 8)}
    codec.train(was)
    return res


@torch.no_grad()
def round_trip_pitch(codec: Codec, clips: list[torch.Tensor], semantic=None, low: int = 48) -> float:
    """Mean ``pitch_loss`` of full 8-level round trips."""
    was = codec.training
    codec.eval()
    d = [float(pitch_loss(x[None], codec.reconstruct(x[None], semantic=semantic)[:, :x.shape[-1]],
                          codec.cfg.sample_rate, low)) for x in clips]
    codec.train(was)
    return float(np.mean(d))


def pitch_refs(clips: list[torch.Tensor], sr: int) -> list:
    """The originals' PESTO tracks (``pitch_track``), made once per run."""
    return [pitch_track(x.numpy(), sr) for x in clips]


@torch.no_grad()
def round_trip_agreement(codec: Codec, clips: list[torch.Tensor], refs: list, semantic=None) -> float:
    """``bench codec``'s pitch agreement of full 8-level round trips, pooled over the clips' confident frames."""
    was = codec.training
    codec.eval()
    hits = frames = 0
    for x, ref in zip(clips, refs, strict=True):
        h, n = pitch_agreement(ref, codec.reconstruct(x[None], semantic=semantic)[0, :x.shape[-1]].numpy(),
                               codec.cfg.sample_rate)
        hits, frames = hits + h, frames + n
    codec.train(was)
    return round(hits / max(1, frames), 4)
