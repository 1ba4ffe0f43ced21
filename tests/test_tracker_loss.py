"""The pitch tracker as a loss (engine.train.tracker_loss): PESTO's pitch distribution on a reconstruction against
the original's. A decoder trained on it must be charged for a wrong note far more than for noise, nothing for the
original itself, and get a gradient it can follow (a saturated softmax would give none)."""
import numpy as np
import torch

from engine.train.tracker_loss import TrackerLoss

SR = 24_000


def tone(midi: float, seconds: float = 1.0, harmonics: int = 5) -> torch.Tensor:
    t = torch.arange(int(SR * seconds)) / SR
    f = 440 * 2 ** ((midi - 69) / 12)
    return sum(torch.sin(2 * np.pi * f * k * t) / k for k in range(1, harmonics + 1))[None] * 0.3


def test_a_wrong_note_costs_far_more_than_noise_and_the_original_nothing():
    loss, x = TrackerLoss(SR), tone(57)
    noisy = x + torch.randn(x.shape, generator=torch.Generator().manual_seed(0)) * x.std() * 10 ** (-30 / 20)
    same, noise, semitone, octave = (loss(x, y).item() for y in (x, noisy, tone(58), tone(69)))
    assert same < 1e-5
    assert semitone > 5 * noise and octave > 5 * noise, (noise, semitone, octave)


def test_the_gradient_points_a_wrong_note_somewhere_and_silence_costs_nothing():
    loss = TrackerLoss(SR, frames=16)
    est = tone(58).requires_grad_(True)
    loss(tone(57), est).backward()
    assert est.grad is not None and est.grad.abs().max() > 1e-8
    quiet = torch.zeros(1, SR, requires_grad=True)  # no confident frame in the original: nothing to match
    value = loss(quiet.detach(), quiet)
    value.backward()
    assert value.item() == 0.0 and quiet.grad is not None
