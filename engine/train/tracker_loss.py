"""The pitch tracker as a loss: how far PESTO's pitch distribution on a reconstruction is from its distribution on
the original, on the frames where the original is confidently pitched.

The codec issue scores pitch with PESTO (``bench codec``: the round trip's PESTO pitch within half a semitone of the
original's on the original's confident frames). The decoder's spectral terms (``pitch_loss``'s semitone bands
included) reward energy in the right bands; a tracker reads the pattern of harmonics, which is what went wrong in the
low register (session 29: the round trip loses the fundamental, and the tracker jumps an octave). PESTO is a torch
module shipped with its weights in the ``pesto-pitch`` package, so it is differentiable: this is its forward pass,
in its own modules, with two changes for training: the network (the costly part: a per-frame conv net over 219 CQT
bins) runs only on ``frames`` random confident frames of the batch, and the reference's pass has no gradient.

The loss is KL(p_ref || p_est) over PESTO's 384 pitch bins (a third of a semitone each), averaged over the chosen
frames, computed from the logits (its gradient there is p_est - p_ref, which a wrong note does not saturate): zero
for the same audio. PESTO's logits span hundreds (measured on a harmonic A3: the top bin 756, the median -134), so
both sides are softened by ``temperature`` (100: the top bin then holds 47% of the mass, the semitone around it 95%,
and the octave above is still visible), which keeps a wrong note's loss and gradient in the range of the other
terms. Measured in its test: a 1 s harmonic tone against itself plus noise 30 dB down
scores far below the tone against the same tone a semitone up.

Measured in use (session 41, assets/MODEL_CARD.md): fine-tuning the shipped decoder on mixes with weight 3 lowered
the validation clips' PESTO agreement (53.3% -> 51.7% after 600 steps); with weight 1 beside voice windows the lone
melodies' agreement rose (as voice windows alone had raised it in session 31), and generation followed the hum less.
On the decoder, not a loss that pays; session 42 uses it on the encoder (``engine.train.codec_encoder_tune``).
"""
from __future__ import annotations

import math

import torch
from torch import nn

CONFIDENT = 0.9  # the confidence ``bench codec`` requires of the original's frames


class TrackerLoss(nn.Module):
    def __init__(self, sr: int, step_ms: float = 20.0, frames: int = 256, temperature: float = 100.0):
        super().__init__()
        from pesto.loader import load_model

        self.pesto = load_model("mir-1k_g7", step_ms, sampling_rate=sr)
        self.pesto.eval()
        for p in self.pesto.parameters():
            p.requires_grad_(False)
        self.sr, self.frames, self.temperature = sr, frames, temperature

    def _cqt(self, audio: torch.Tensor) -> torch.Tensor:
        """[B, N] -> log-power CQT frames [B * T, 1, bins] (PESTO's encoder input before the crop)."""
        return self.pesto.preprocessor(audio, sr=self.sr).flatten(0, 1) * (math.log(10) / 10)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """CQT frames [F, 1, bins] -> pitch logits [F, 384] (PESTO's encoder up to its softmax: a loss on the
        softmax's output has no gradient once that is one-hot, as PESTO's mostly is; one on its logits has)."""
        enc = self.pesto.encoder
        h = enc.conv1(enc.layernorm(self.pesto.crop_cqt(x)))
        for layer in enc.prefilt_layers:
            h = layer(h) + h if enc.residual else layer(h)
        out = enc.fc(enc.flatten(enc.conv_layers(h)))
        return out.roll(-round(self.pesto.shift.item() * self.pesto.bins_per_semitone), -1)

    def confidence(self, x: torch.Tensor) -> torch.Tensor:
        return self.pesto.confidence(x.exp().squeeze(1))

    def forward(self, ref: torch.Tensor, est: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """ref, est [B, N] aligned audio -> scalar loss (0 when no frame of ref is confidently pitched)."""
        with torch.no_grad():
            xr = self._cqt(ref)
            sure = torch.nonzero(self.confidence(xr) > CONFIDENT)[:, 0]
            if len(sure) > self.frames:
                sure = sure[torch.randperm(len(sure), generator=generator)[: self.frames]]
            log_ref = (self.logits(xr[sure]) / self.temperature).log_softmax(-1) if len(sure) else None
        if log_ref is None:  # still part of the graph, so a caller's backward() works
            return est.sum() * 0.0
        log_est = (self.logits(self._cqt(est)[sure]) / self.temperature).log_softmax(-1)
        return (log_ref.exp() * (log_ref - log_est)).sum(-1).mean()
