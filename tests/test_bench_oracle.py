"""The codec oracle (analysis by synthesis through the frozen quantizer and decoder): with no steps it reproduces the
encoder's own round trip exactly; with steps it moves the codes, and the bench runs end to end on a tiny codec."""
import numpy as np
import torch

from engine.codec import Codec
from engine.eval.codec_oracle import markdown, oracle_clip, run
from engine.train.tracker_loss import TrackerLoss


def _melody(sr: int = 24_000, seconds: float = 2.0) -> torch.Tensor:
    t = np.arange(int(sr * seconds)) / sr
    f0 = np.where(t < seconds / 2, 220.0, 330.0)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    return torch.from_numpy((0.3 * sum(np.sin(h * phase) / h for h in range(1, 4))).astype(np.float32))


def test_without_steps_the_oracle_is_the_encoders_round_trip(tiny_assets):
    codec = Codec.load(tiny_assets / "codec").eval()
    for p in codec.parameters():
        p.requires_grad_(False)
    x = _melody()
    tracker = TrackerLoss(codec.cfg.sample_rate, frames=16)
    r = oracle_clip(codec, None, x, 0, tracker)
    assert r["codes_changed"] == 0.0 and r["before"] == r["after"]
    assert r["before"]["agree"][1] > 0  # the tones are confidently pitched frames
    moved = oracle_clip(codec, None, x, 3, tracker, lr_scale=1.0)
    assert moved["codes_changed"] > 0.0 and moved["before"] == r["before"]


def test_oracle_bench_runs_on_a_tiny_codec(tiny_corpus, tiny_assets):
    r = run(tiny_corpus, 1, 1, ["melody", "mix"], tiny_assets / "codec")
    for kind in ("melody", "mix"):
        assert r[kind]["frames"] >= 0 and 0 <= r[kind]["after"]["agreement"] <= 1
        assert 0 <= r[kind]["codes_changed"] <= 1
    text = markdown(r, "x86_64", "2026-12-03")
    assert "| melody |" in text and "| mix |" in text
