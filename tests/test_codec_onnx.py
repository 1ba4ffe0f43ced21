"""The ONNX encoder and streaming decoder agree with torch (onnxruntime, CPU execution provider here)."""
import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from engine.codec import Codec
from engine.export.codec_onnx import OnnxCodec, export_codec

from .test_codec import TINY, TINY_ISTFT

TINY_COND = dataclasses.replace(TINY_ISTFT, decoder_cond=16)  # reads semantic ids too
TINY_PATCH = dataclasses.replace(TINY_ISTFT, encoder_patch=8, encoder_patch_channels=8)  # distilled encoder's shape


@pytest.fixture(scope="module", params=[TINY, TINY_ISTFT, TINY_COND, TINY_PATCH],
                ids=["conv", "istft", "istft-semantic", "istft-patch-encoder"])
def pair(request, tmp_path_factory):
    torch.manual_seed(0)
    m = Codec(request.param)
    m.train()
    with torch.no_grad():
        m(torch.randn(2, 24_000) * 0.1)
        if m.conditioned:
            m.decoder.cond.weight.normal_()  # as if trained (it starts at zero)
    m.eval()
    d = export_codec(m, tmp_path_factory.mktemp("onnx"))
    return m, OnnxCodec(d)


def test_onnx_encoder_matches_torch(pair):
    m, o = pair
    x = torch.randn(2, 24_000 + 700) * 0.1
    ref = m.encode(x).numpy()
    got = o.encode(x.numpy())
    assert got.shape == ref.shape
    assert (got == ref).mean() > 0.95
    # float reordering may flip a near-tie, nothing more: where a frame's codes first differ, the two codes are
    # (almost) equally near torch's residual; the flip then changes that frame's later residuals, so they may differ
    with torch.no_grad():
        z = m.encoder(nn.functional.pad(x, (0, (-x.shape[-1]) % m.cfg.hop))[:, None])
        residual = z.permute(0, 2, 1).reshape(-1, z.shape[1])
        same = np.ones(ref.shape[0] * ref.shape[2], bool)
        for k, level in enumerate(m.quantizer.levels):
            a, b = (torch.from_numpy(c[:, k].reshape(-1)) for c in (ref, got))
            flip = torch.from_numpy(same) & (a != b)
            if flip.any():
                z_e = level.in_proj(residual[flip])
                d_a = (z_e - level.codebook(a[flip])).pow(2).sum(-1)
                d_b = (z_e - level.codebook(b[flip])).pow(2).sum(-1)
                assert torch.all((d_b - d_a).abs() <= 1e-3 * d_a + 1e-6), (k, d_a, d_b)
            same &= (a == b).numpy()
            residual = residual - level.decode(a)


def test_onnx_streaming_decoder_matches_torch_batch(pair):
    m, o = pair
    codes = m.encode(torch.randn(1, 48_000) * 0.1)
    ids = torch.randint(0, 17, codes.shape[::2]) if m.conditioned else None  # 16 = absent
    ref = m.decode(codes, ids).numpy()
    state, pieces, t = None, [], 0
    for n in (1, 9, 40, 50):
        y, state = o.decode_step(codes[..., t:t + n].numpy(), state, None if ids is None else ids[:, t:t + n].numpy())
        pieces.append(y)
        t += n
    got = np.concatenate(pieces, -1)
    assert got.shape == ref.shape
    assert np.max(np.abs(got - ref)) < 1e-4


@pytest.mark.parametrize("cfg", [TINY, TINY_PATCH], ids=["full", "patch"])
def test_onnx_encoder_has_no_pad_copies(tmp_path, cfg):
    """Every causal convolution's left padding is folded into the Conv (a Pad node copies the whole activation)."""
    import onnx

    torch.manual_seed(0)
    d = export_codec(Codec(cfg).eval(), tmp_path)
    ops = [n.op_type for n in onnx.load(str(d / "codec_encoder.onnx")).graph.node]
    assert "Conv" in ops and "Pad" not in ops
