"""Codec invariants on tiny configs of both decoders (transposed convolutions and frame-rate iSTFT): causality,
streaming equals batch, round trips, save/load, a training step."""
import dataclasses

import numpy as np
import pytest
import torch

from engine.codec import Codec, CodecConfig

TINY = CodecConfig(channels=4, max_channels=16, dim=16, n_q=4, codebook_size=32)
TINY_ISTFT = dataclasses.replace(TINY, decoder="istft", decoder_dim=16, decoder_blocks=2)


@pytest.fixture(scope="module", params=[TINY, TINY_ISTFT], ids=["conv", "istft"])
def model(request):
    torch.manual_seed(0)
    m = Codec(request.param)
    m.train()
    with torch.no_grad():  # initialise the codebooks (k-means) on some audio
        m(torch.randn(2, 24_000) * 0.1)
    return m.eval()


@pytest.mark.parametrize("length", [480, 4_800, 24_000 + 123])
def test_round_trip_shapes(model, length):
    x = torch.randn(2, length) * 0.1
    codes = model.encode(x)
    T = -(-length // 480)
    assert codes.shape == (2, 4, T) and codes.dtype == torch.int64
    assert int(codes.min()) >= 0 and int(codes.max()) < 32
    assert model.decode(codes).shape == (2, T * 480)
    assert model.decode(codes[:, :2]).shape == (2, T * 480)  # fewer levels decode too


def test_streaming_decode_equals_batch(model):
    codes = model.encode(torch.randn(1, 24_000 * 2) * 0.1)
    full = model.decode(codes)
    state, pieces = None, []
    for chunk in (1, 3, 7, 25, 14, 50):  # uneven chunks of frames
        start = sum(p.shape[-1] for p in pieces) // 480
        y, state = model.decode_step(codes[..., start:start + chunk], state)
        pieces.append(y)
    streamed = torch.cat(pieces, -1)
    assert streamed.shape == full.shape
    assert torch.max(torch.abs(streamed - full)) < 1e-4


def test_a_semantic_conditioned_decoder_starts_as_the_plain_one_and_streams_exactly():
    """The semantic embedding starts at zero (a conditioned decoder initialised from a plain one decodes exactly as it
    did); once trained, the ids change the audio, and streaming with them equals batch decoding."""
    from engine.codec.model import frame_ids
    torch.manual_seed(0)
    plain = Codec(TINY_ISTFT)
    plain.train()
    with torch.no_grad():
        plain(torch.randn(2, 24_000) * 0.1)
    plain.eval()
    cond = Codec(dataclasses.replace(TINY_ISTFT, decoder_cond=16), encoder=plain.encoder, quantizer=plain.quantizer)
    cond.decoder.load_state_dict(plain.decoder.state_dict(), strict=False)
    cond.eval()
    codes = plain.encode(torch.randn(1, 24_000 * 2) * 0.1)
    ids = frame_ids(torch.randint(0, 16, (1, 50)), codes.shape[-1], 16)
    assert ids.shape == (1, 100) and torch.equal(ids[0, :4:2], ids[0, 1:4:2])
    assert torch.equal(cond.decode(codes, ids), plain.decode(codes))
    with torch.no_grad():
        cond.decoder.cond.weight.normal_()
    full = cond.decode(codes, ids)
    assert not torch.allclose(full, cond.decode(codes)), "the ids matter once learned"
    state, pieces, start = None, [], 0
    for chunk in (1, 3, 7, 25, 14, 50):
        y, state = cond.decode_step(codes[..., start:start + chunk], state, ids[:, start:start + chunk])
        pieces.append(y)
        start += chunk
    assert torch.max(torch.abs(torch.cat(pieces, -1) - full)) < 1e-4


def test_reconstruct_is_aligned_with_the_input(model):
    x = torch.randn(2, 24_000 + 123) * 0.1
    y = model.reconstruct(x)
    assert y.shape == x.shape
    codes = model.encode(torch.nn.functional.pad(x, (0, model.delay)))
    assert torch.equal(y, model.decode(codes)[:, model.delay: model.delay + x.shape[-1]])


def test_istft_decoder_is_causal_and_its_inverse_dft_is_exact():
    from engine.codec.istft import InverseRDFT, ISTFTDecoder

    for n_fft in (1920, 960, 320, 2 * 97):  # 40 x 48 (the shipped codec), 30 x 32, 16 x 20, 2 x 97
        spec = torch.randn(2, 3, n_fft // 2 + 1, dtype=torch.complex64)
        spec[..., 0], spec[..., -1] = spec[..., 0].real, spec[..., -1].real
        ref = torch.fft.irfft(spec, n=n_fft) * torch.hann_window(n_fft)
        assert torch.allclose(InverseRDFT(n_fft)(spec.real, spec.imag), ref, atol=1e-5), n_fft
    torch.manual_seed(0)
    dec = ISTFTDecoder(16, 480, dim=16, blocks=2).eval()
    assert dec.delay == 3 * 480
    z = torch.randn(1, 16, 20)
    z2 = z.clone()
    z2[..., 12:] = torch.randn(1, 16, 8)  # change frames 12.. only
    with torch.no_grad():
        a, b = dec(z), dec(z2)
    assert torch.equal(a[..., : 12 * 480], b[..., : 12 * 480])  # the past is untouched: no lookahead
    assert not torch.allclose(a[..., 12 * 480: 13 * 480], b[..., 12 * 480: 13 * 480])  # frame 12 sounds at once


def test_encoder_is_causal(model):
    x = torch.randn(1, 9_600) * 0.1
    y = x.clone()
    y[:, 4_800:] = torch.randn(1, 4_800)  # change only the future
    with torch.inference_mode():
        za, zb = model.encoder(x[:, None]), model.encoder(y[:, None])
    assert torch.allclose(za[..., :10], zb[..., :10], atol=1e-6)
    assert not torch.allclose(za[..., 10:], zb[..., 10:])


def test_save_load_fp16_round_trip(model, tmp_path):
    model.save(tmp_path)
    back = Codec.load(tmp_path)
    x = torch.randn(1, 4_800) * 0.1
    assert back.cfg == model.cfg and not back.training
    a, b = model.decode(model.encode(x)), back.decode(model.encode(x))
    assert torch.max(torch.abs(a - b)) < 1e-2  # fp16 weights


def test_missing_weights_error_says_how_to_train(tmp_path):
    with pytest.raises(FileNotFoundError, match="engine.train.codec"):
        Codec.load(tmp_path)


@pytest.mark.parametrize("cfg", [TINY, TINY_ISTFT], ids=["conv", "istft"])
def test_quantizer_straight_through_and_training_reduces_loss(cfg):
    from engine.codec.losses import codec_loss

    torch.manual_seed(1)
    m = Codec(cfg)
    opt = torch.optim.Adam(m.parameters(), 3e-3)
    t = torch.arange(4_800) / 24_000
    x = (0.3 * torch.sin(2 * np.pi * 220 * t) * torch.ones(4, 1))
    losses = []
    for _ in range(30):
        o = m(x)
        loss, _ = codec_loss(x, o.audio[:, 0], 24_000)
        opt.zero_grad()
        (loss + o.commit_loss).backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.7 * losses[0]
    enc_grads = [p.grad for p in m.encoder.parameters() if p.grad is not None]
    assert enc_grads and all(torch.isfinite(g).all() for g in enc_grads)  # gradient reaches the encoder through VQ
