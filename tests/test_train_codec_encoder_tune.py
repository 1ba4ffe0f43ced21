"""Fine-tuning the codec's encoder through the frozen quantizer and decoder (``engine.train.codec tune``) on a tiny
config: the encoder changes while every code keeps its meaning (quantizer and decoder bit-identical, so stages and
generation are untouched), validation scores pitch agreement beside the initial codec's, it resumes, and ``--ship``
refuses an encoder that does not beat the initial one or was tuned against another decoder."""
import json
import shutil

import pytest
import torch

from engine.codec import Codec
from engine.train import codec as train_codec
from engine.train.codec import tune

from .conftest import save_tiny_codec

ARGS = ["--batch", "2", "--seconds", "0.2", "--context", "2", "--eval-every", "3", "--eval-clips", "2",
        "--ckpt-every", "2", "--mix-clips", "2", "--voice-clips", "2", "--pitch-weight", "1", "--lr", "1e-2",
        "--final-lr", "1e-2", "--warmup", "1"]


def test_encoder_tuning_changes_only_the_encoder_and_resumes(tiny_corpus, tmp_path, capsys):
    old = save_tiny_codec(tmp_path / "init")
    out = tmp_path / "run"
    common = ["tune", "--data", str(tiny_corpus), "--tokens", str(tmp_path / "tokens"), "--init",
              str(tmp_path / "init"), "--out", str(out), *ARGS]
    assert train_codec.main([*common, "--steps", "4"]) == 0
    ck = torch.load(out / "last.pt", weights_only=False)
    assert ck["step"] == 4 and len(ck["history"]) == 2  # evaluated at step 3 and at the end
    assert {"mel_8", "agree_8", "voice_agree_8", "score"} <= set(ck["history"][-1])

    new = Codec.load(out / "best")
    assert new.cfg.encoder_version.startswith(f"{old.cfg.encoder_version}+tune-s")
    old_sd, new_sd = old.state_dict(), new.state_dict()
    assert all(torch.equal(v, old_sd[k]) for k, v in new_sd.items() if not k.startswith("encoder."))
    assert any(not torch.equal(v, old_sd[k]) for k, v in new_sd.items() if k.startswith("encoder."))
    metrics = json.loads((out / "best" / "metrics.json").read_text())
    assert {"mel_8", "agree_8", "voice_agree_8", "score"} <= set(metrics["init"])
    x = torch.randn(1, 24_000) * 0.1
    codes = new.encode(x)
    assert codes.shape == old.encode(x).shape and torch.equal(new.decode(codes), old.decode(codes))

    assert train_codec.main([*common, "--steps", "6"]) == 0
    assert "resumed" in capsys.readouterr().err
    assert torch.load(out / "last.pt", weights_only=False)["step"] == 6


def test_ship_takes_only_a_better_encoder_for_the_same_decoder(tiny_corpus, tmp_path, capsys, monkeypatch):
    save_tiny_codec(tmp_path / "init")
    out = tmp_path / "run"
    assert train_codec.main(["tune", "--data", str(tiny_corpus), "--tokens", str(tmp_path / "tokens"), "--init",
                             str(tmp_path / "init"), "--out", str(out), *ARGS, "--steps", "3"]) == 0
    best, assets = out / "best", tmp_path / "assets"
    shutil.copytree(tmp_path / "init", assets)
    metrics = json.loads((best / "metrics.json").read_text())

    def set_scores(score: float, mel_8: float) -> None:
        (best / "metrics.json").write_text(json.dumps({**metrics, "score": score, "mel_8": mel_8}))

    def ship(to) -> int:
        return train_codec.main(["tune", "--out", str(out), "--ship", "--assets", str(to)])

    init = metrics["init"]
    set_scores(init["score"] + 0.01, init["mel_8"])  # worse
    assert ship(assets) == 1
    set_scores(init["score"] - 0.01, init["mel_8"] + 0.01)  # better pitch, worse mel distance
    assert ship(assets) == 1
    before = Codec.load(tmp_path / "init").state_dict()
    assert all(torch.equal(v, before[k]) for k, v in Codec.load(assets).state_dict().items())  # left as it was
    set_scores(init["score"] - 0.01, init["mel_8"])
    other = Codec.load(assets)  # the shipped decoder changed since: refused
    with torch.no_grad():
        next(other.decoder.parameters()).add_(1.0)
    other.save(tmp_path / "other")
    monkeypatch.setattr(tune, "SILENCE_RMS", float("inf"))
    capsys.readouterr()
    assert ship(tmp_path / "other") == 1
    assert "changed since" in capsys.readouterr().out
    monkeypatch.setattr(tune, "SILENCE_RMS", 0.0)  # a codec that hisses is refused
    assert ship(assets) == 1
    assert "digital silence" in capsys.readouterr().out
    monkeypatch.setattr(tune, "SILENCE_RMS", float("inf"))
    assert ship(assets) == 0
    shipped, tuned = Codec.load(assets), Codec.load(best)
    assert all(torch.equal(v, tuned.state_dict()[k]) for k, v in shipped.state_dict().items())


def test_a_conditioned_codec_needs_its_tokenizer(tiny_corpus, tmp_path):
    codec = save_tiny_codec(tmp_path / "init")
    codec.cfg.decoder_cond, codec.cfg.decoder_cond_version = 16, "tiny-s"
    Codec(codec.cfg).save(tmp_path / "cond")
    with pytest.raises(SystemExit, match="--semantic"):
        train_codec.main(["tune", "--data", str(tiny_corpus), "--init", str(tmp_path / "cond"), "--out",
                          str(tmp_path / "run"), *ARGS, "--steps", "1"])


def test_a_bad_share_is_refused_with_a_readable_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        train_codec.main(["tune", "--out", str(tmp_path / "run"), "--silence-share", "1.5"])
    assert e.value.code == 2 and "--silence-share" in capsys.readouterr().err
