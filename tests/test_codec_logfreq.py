"""The encoder's log-frequency front end (engine.codec.logfreq): it reads a note's semitone, sees no future, adds
nothing until trained (so a shipped encoder keeps its codes when it is added), is rebuilt rather than stored, and
exports to ONNX with the same codes."""
import dataclasses
import math

import numpy as np
import pytest
import torch

from engine.codec import Codec
from engine.codec.logfreq import LogFreqFront, filterbank
from engine.export.codec_onnx import OnnxCodec, export_codec
from engine.train.codec_encoder_tune import with_spectral

from .test_codec import TINY_ISTFT

SR, HOP = 24_000, 480


def tone(midi: float, seconds: float = 1.0) -> torch.Tensor:
    t = torch.arange(round(seconds * SR)) / SR
    return torch.sin(2 * math.pi * 440 * 2 ** ((midi - 69) / 12) * t)[None, None]


# the window holds 34 periods from MIDI 55 up (neighbours on its first null); below, its 4096 samples hold fewer
@pytest.mark.parametrize("midi,db", [(36, 1.5), (40, 3), (52, 15), (60, 30), (72, 30), (84, 30), (100, 30)])
def test_a_sine_peaks_in_its_semitone_bin_and_its_neighbours_are_below(midi, db):
    front = LogFreqFront(96, 8, HOP, SR)
    s = front.spectrum(tone(midi))[0, :, -1]  # the last frame: its whole window holds the tone
    b = midi - 24
    assert int(s.argmax()) == b
    assert float(s[b]) == pytest.approx(1.0, abs=0.01)  # full scale reads 0 dB
    assert float(s[b] - max(s[b - 1], s[b + 1])) * 30 > db  # mapped log10 power x 30 = dB


def test_frames_see_no_future_samples():
    front = LogFreqFront(96, 8, HOP, SR)
    x = torch.randn(1, 1, 20 * HOP) * 0.1
    y = x.clone()
    y[..., 10 * HOP:] = torch.randn(1, 1, 10 * HOP)
    a, b = front.spectrum(x), front.spectrum(y)
    assert a.shape == (1, 96, 20)
    assert torch.equal(a[..., :10], b[..., :10])
    assert not torch.allclose(a[..., 10], b[..., 10])


def test_bins_above_nyquist_are_refused():
    with pytest.raises(ValueError, match="Nyquist"):
        filterbank(120, HOP, 16_000)


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    m = Codec(TINY_ISTFT)
    m.train()
    with torch.no_grad():
        m(torch.randn(2, 24_000) * 0.1)
    return m.eval()


def test_adding_the_front_end_keeps_the_codes_until_it_is_trained(trained):
    x = torch.randn(1, 2 * SR) * 0.1
    added = with_spectral(trained, 24)
    assert added.cfg.encoder_spectral == 24
    assert torch.equal(added.encode(x), trained.encode(x))
    with torch.no_grad():
        added.encoder.spectral.out.weight.normal_(0, 1.0)
    assert not torch.equal(added.encode(x), trained.encode(x))


@pytest.fixture(scope="module")
def spectral_codec(trained):
    m = with_spectral(trained, 24)
    with torch.no_grad():
        m.encoder.spectral.out.weight.normal_(0, 0.3)  # as if trained
    return m


def test_save_load_rebuilds_the_filterbank_instead_of_storing_it(spectral_codec, tmp_path):
    spectral_codec.save(tmp_path)
    from safetensors import safe_open
    with safe_open(str(tmp_path / "codec.safetensors"), "pt") as f:
        assert not any("basis" in k for k in f.keys())  # noqa: SIM118 (safe_open is no dict)
    back = Codec.load(tmp_path)
    assert back.cfg == spectral_codec.cfg
    assert torch.equal(back.encoder.spectral.basis, spectral_codec.encoder.spectral.basis)
    x = torch.randn(1, SR) * 0.1
    assert (back.encode(x) == spectral_codec.encode(x)).float().mean() > 0.9  # fp16 weights may flip near-ties


def test_onnx_encoder_with_the_front_end_gives_torch_codes(spectral_codec, tmp_path):
    o = OnnxCodec(export_codec(spectral_codec, tmp_path))
    x = torch.randn(2, SR + 700) * 0.1
    ref, got = spectral_codec.encode(x).numpy(), o.encode(x.numpy())
    assert got.shape == ref.shape and (got == ref).mean() > 0.95
    assert (got[:, 0] == ref[:, 0]).mean() > 0.99  # the first level, before any near-tie flip propagates
    assert dataclasses.asdict(spectral_codec.cfg)["encoder_spectral"] == 24 and np.isfinite(got).all()
