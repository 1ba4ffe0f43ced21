"""Distilling oracle latents into the codec's encoder: ``engine.train.codec_oracle_windows`` stores train windows
whose latents were moved through the frozen quantizer and decoder (resumable, reproducible, tied to its codec), and
``codec_encoder_tune --distil`` regresses the encoder onto them in the quantizer's own projections."""
import json

import pytest
import torch

from engine.codec import Codec, CodecConfig
from engine.train import codec_encoder_tune, codec_oracle_windows
from engine.train.codec_encoder_tune import code_space_loss, code_space_scales

from .conftest import save_tiny_codec

WINDOWS = ["--batch", "2", "--seconds", "0.2", "--context", "2", "--steps", "3", "--mix-clips", "2",
           "--voice-clips", "2", "--tracker-frames", "8", "--lr-scale", "0.05"]
TUNE = ["--batch", "2", "--seconds", "0.2", "--context", "2", "--eval-every", "3", "--eval-clips", "2",
        "--ckpt-every", "2", "--mix-clips", "2", "--voice-clips", "2", "--tracker-frames", "8", "--lr", "1e-2",
        "--final-lr", "1e-2", "--warmup", "1"]


def test_the_distillation_loss_reads_only_what_the_quantizer_reads():
    torch.manual_seed(0)
    codec = Codec(CodecConfig(channels=4, max_channels=16, dim=32, n_q=2, codebook_size=32)).eval()
    z = torch.randn(2, 32, 5)
    scales = code_space_scales(codec, z)
    assert scales.shape == (2,) and bool((scales > 0).all())
    assert float(code_space_loss(codec, z, z, scales).detach()) == 0.0
    reads = torch.cat([level.in_proj.weight for level in codec.quantizer.levels])  # [2 x 8, 32]
    unread = torch.linalg.svd(reads).Vh[-1]  # a direction neither level's projection sees
    moved = z + 5.0 * unread[None, :, None]
    assert torch.equal(codec.quantizer.encode(moved), codec.quantizer.encode(z))
    assert float(code_space_loss(codec, moved, z, scales).detach()) < 1e-8
    off = (z + 0.3 * torch.randn_like(z)).requires_grad_(True)
    loss = code_space_loss(codec, off, z, scales)
    loss.backward()
    assert float(loss.detach()) > 1e-3 and float(off.grad.abs().sum()) > 0


def test_oracle_windows_are_stored_once_reproducibly_and_for_their_codec(tiny_corpus, tmp_path, capsys):
    save_tiny_codec(tmp_path / "init")
    common = ["--data", str(tiny_corpus), "--tokens", str(tmp_path / "tokens"), "--init", str(tmp_path / "init")]
    out = tmp_path / "windows"
    assert codec_oracle_windows.main([*common, "--out", str(out), "--batches", "2", *WINDOWS]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["batches"] == 2
    first = torch.load(out / "b00000.pt", weights_only=False)
    assert first["source"].shape == (2, 12 * 480) and first["z"].shape == (2, 16, 12)
    assert first["codes"].shape == (2, 8, 12) and len(first["before"]) == len(first["after"]) == 2
    assert not torch.equal(first["z"], first["z"] * 0)  # the latents moved (steps > 0)

    assert codec_oracle_windows.main([*common, "--out", str(out), "--batches", "3", *WINDOWS]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["batches"] == 1  # only batch 2 was new
    again = tmp_path / "again"  # batch 1 alone in another run draws the same windows and moves them the same way
    assert codec_oracle_windows.main([*common, "--out", str(again), "--start", "1", "--batches", "2", *WINDOWS]) == 0
    a, b = (torch.load(d / "b00001.pt", weights_only=False) for d in (out, again))
    assert torch.equal(a["source"], b["source"]) and torch.allclose(a["z"].float(), b["z"].float(), atol=1e-3)

    with pytest.raises(SystemExit, match="another codec or setting"):
        codec_oracle_windows.main([*common, "--out", str(out), "--batches", "3", *WINDOWS[:-1], "0.1"])

    run = tmp_path / "run"
    tune = [*common, "--out", str(run), "--distil", str(out), *TUNE]
    assert codec_encoder_tune.main([*tune, "--steps", "3"]) == 0
    ck = torch.load(run / "last.pt", weights_only=False)
    assert {"distil_held", "code1_match_held"} <= set(ck["base"]) and "distil_windows" in ck["history"][-1]
    assert ck["history"][-1]["distil_windows"] == 4  # batches 1 and 2; batch 0 is held out

    other = save_tiny_codec(tmp_path / "other")
    other.cfg.decoder_version = "retrained"
    Codec(other.cfg, encoder=other.encoder, quantizer=other.quantizer, decoder=other.decoder).save(tmp_path / "other")
    with pytest.raises(SystemExit, match="optimised for codec"):
        codec_encoder_tune.main(["--data", str(tiny_corpus), "--tokens", str(tmp_path / "tokens"), "--init",
                                 str(tmp_path / "other"), "--out", str(tmp_path / "run2"), "--distil", str(out),
                                 *TUNE, "--steps", "1"])
