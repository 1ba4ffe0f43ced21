"""Distilling a faster codec encoder (engine.train.codec_encoder) on a tiny config: the student keeps the teacher's
later encoder layers, quantizer and decoder (its codes are in the same token space), its front end learns the
teacher's activation, training resumes, and --ship refuses a student that round-trips worse than its teacher."""
import json

import pytest
import torch

from engine.codec import Codec, CodecConfig
from engine.train import codec as train_codec
from engine.train.codec import distil

from .conftest import save_tiny_codec

ARGS = ["--patch", "8", "--channels", "8", "--batch", "2", "--seconds", "0.2", "--eval-clips", "2",
        "--ckpt-every", "5", "--lr", "3e-3"]


@pytest.fixture
def teacher_dir(tmp_path):
    save_tiny_codec(tmp_path / "teacher", n_q=4)
    return tmp_path / "teacher"


def test_patch_must_be_a_product_of_leading_strides():
    assert CodecConfig(encoder_patch=8).patch_stages == 2
    assert CodecConfig(encoder_patch=48).patch_stages == 3
    with pytest.raises(ValueError, match="leading strides"):
        CodecConfig(encoder_patch=6)


def test_student_keeps_the_teachers_later_layers(teacher_dir):
    teacher = Codec.load(teacher_dir)
    student = distil.make_student(teacher, 8, 8).eval()
    cut_t = distil.teacher_front_layers(teacher, 2)
    h = torch.randn(1, teacher.cfg.width(2), 60)
    with torch.no_grad():
        assert torch.equal(student.encoder.convs[student.encoder.front_layers:](h), teacher.encoder.convs[cut_t:](h))
        z = torch.randn(1, 16, 5)
        codes = teacher.quantizer.encode(z)
        assert torch.equal(student.quantizer.encode(z), codes)
        assert torch.equal(student.decode(codes), teacher.decode(codes))
    assert sum(p.numel() for p in student.encoder.parameters()) != sum(p.numel() for p in teacher.encoder.parameters())


def test_distillation_learns_the_front_end_resumes_and_ships_only_if_good(tiny_corpus, teacher_dir, tmp_path, capsys):
    out = tmp_path / "run"
    common = ["distil", "--teacher", str(teacher_dir), "--data", str(tiny_corpus), "--out", str(out), *ARGS]
    assert train_codec.main([*common, "--steps", "40", "--front-steps", "40", "--eval-every", "4"]) == 0
    hist = torch.load(out / "last.pt", weights_only=False)["history"]
    assert len(hist) == 10
    first, last = hist[0]["valid_front_nmse"], hist[-1]["valid_front_nmse"]
    assert last < 0.8 * first, (first, last)  # on held-out audio, the front end approaches the teacher's activation

    assert train_codec.main([*common, "--steps", "44", "--front-steps", "40", "--eval-every", "4"]) == 0
    assert "resumed" in capsys.readouterr().err
    ck = torch.load(out / "last.pt", weights_only=False)
    assert ck["step"] == 44 and ck["history"][-1]["train_loss"] == ck["history"][-1]["train_loss"]  # not NaN
    student = Codec.load(out / "best")
    assert student.cfg.encoder_patch == 8 and student.cfg.version == "tiny-v1"
    x = torch.randn(1, 24_000) * 0.1
    assert student.encode(x).shape == Codec.load(teacher_dir).encode(x).shape

    metrics = json.loads((out / "best" / "metrics.json").read_text())
    assets = tmp_path / "assets"
    Codec.load(teacher_dir).save(assets)  # the shipped codec is the teacher
    metrics["mel_8"] = metrics["teacher_mel_8"] + 0.1
    (out / "best" / "metrics.json").write_text(json.dumps(metrics))
    assert train_codec.main(["distil", "--out", str(out), "--ship", "--assets", str(assets)]) == 1
    assert Codec.load(assets).cfg.encoder_patch == 1
    metrics["mel_8"] = metrics["teacher_mel_8"]
    (out / "best" / "metrics.json").write_text(json.dumps(metrics))
    assert train_codec.main(["distil", "--out", str(out), "--ship", "--assets", str(assets)]) == 0
    shipped = Codec.load(assets)
    assert shipped.cfg.encoder_patch == 8 and shipped.cfg.encoder_version == f"patch8-s{metrics['step']}"
    assert torch.equal(shipped.encode(x), student.encode(x))
    # a decoder retrained in assets since the distillation is not rolled back
    changed = Codec.load(teacher_dir)
    with torch.no_grad():
        next(changed.decoder.parameters()).add_(0.5)
    changed.save(assets)
    assert train_codec.main(["distil", "--out", str(out), "--ship", "--assets", str(assets)]) == 1
    assert Codec.load(assets).cfg.encoder_patch == 1
