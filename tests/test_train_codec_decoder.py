"""Retraining the codec's decoder on frozen codes (``engine.train.codec decoder``) on a tiny config: it trains from the
tokenize cache, evaluates, keeps the best as a complete codec whose codes are exactly the old codec's (so stages
trained on those codes stay valid), and resumes."""
import json

import numpy as np
import pytest
import torch

from engine.audio import resample
from engine.codec import Codec, CodecConfig
from engine.train import codec as train_codec
from engine.train.tokenize import codec_tokens

from .conftest import save_tiny_codec

ARGS = ["--dim", "16", "--blocks", "1", "--batch", "2", "--seconds", "0.2", "--context", "2", "--eval-every", "3",
        "--eval-clips", "2", "--ckpt-every", "2"]


def test_decoder_retraining_keeps_the_codes(tiny_corpus, tmp_path, capsys):
    old = save_tiny_codec(tmp_path / "init")
    (tmp_path / "tokens").mkdir()
    codec_tokens(str(tiny_corpus), "train", old, tmp_path / "tokens")

    out = tmp_path / "run"
    common = ["decoder", "--data", str(tiny_corpus), "--tokens", str(tmp_path / "tokens"), "--init", str(tmp_path / "init"),
              "--out", str(out), *ARGS]
    assert train_codec.main([*common, "--steps", "4"]) == 0
    ck = torch.load(out / "last.pt", weights_only=False)
    assert ck["step"] == 4 and len(ck["history"]) == 2  # evaluated at step 3 and at the end
    new = Codec.load(out / "best")
    assert new.cfg.decoder == "istft" and new.cfg.version == "tiny-v1" and new.cfg.decoder_version.startswith("istft-s")
    assert {"mel_4", "mel_8", "step"} <= set(json.loads((out / "best" / "metrics.json").read_text()))
    x = torch.randn(1, 24_000) * 0.1
    assert torch.equal(new.encode(x), old.encode(x))  # same token space
    assert new.reconstruct(x).shape == x.shape and torch.isfinite(new.reconstruct(x)).all()

    assert train_codec.main([*common, "--steps", "6", "--pitch-weight", "1", "--phase-weight", "1"]) == 0
    assert "resumed" in capsys.readouterr().err
    assert torch.load(out / "last.pt", weights_only=False)["step"] == 6


def test_missing_token_cache_says_how_to_make_it(tiny_corpus, tmp_path):
    Codec(CodecConfig(channels=4, max_channels=16, dim=16, n_q=8, codebook_size=32)).eval().save(tmp_path / "init")
    with pytest.raises(SystemExit, match="engine.train.tokenize"):
        train_codec.main(["decoder", "--data", str(tiny_corpus), "--tokens", str(tmp_path / "none"), "--init",
                            str(tmp_path / "init"), "--out", str(tmp_path / "run"), *ARGS, "--steps", "1"])


def test_a_decoder_learns_to_read_semantic_ids(tiny_corpus, tmp_path):
    """--semantic: the decoder of --init gains a semantic embedding (zero at first) that trains from the tokenize
    cache's ids; the best codec records which tokenizer's ids it reads, and round trips with and without them work."""
    from engine.data.dataset import CorpusDataset
    from engine.semantic import SemanticTokenizer
    from engine.semantic.model import SemanticConfig
    torch.manual_seed(0)
    old = Codec(CodecConfig(channels=4, max_channels=16, dim=16, n_q=8, codebook_size=32, version="tiny-v1",
                            decoder="istft", decoder_dim=16, decoder_blocks=1))
    old.train()
    with torch.no_grad():
        old(torch.randn(2, 24_000) * 0.1)
    old.eval().save(tmp_path / "init")
    sem = SemanticTokenizer(SemanticConfig(width=8, dim=4, dilations=(1,), n_tokens=16, version="tiny-s")).eval()
    with torch.no_grad():
        sem.centroids.normal_()
    sem.save(tmp_path / "semantic")
    (tmp_path / "tokens").mkdir()
    codec_tokens(str(tiny_corpus), "train", Codec.load(tmp_path / "init"), tmp_path / "tokens")
    ds = CorpusDataset(tiny_corpus, "train")
    ids = torch.stack([sem.encode(torch.from_numpy(np.pad(ds[i].audio, (0, 240_000))[:240_000])[None])[0]
                       for i in range(len(ds))])
    torch.save({"ids": [r["id"] for r in ds.records], "tokens": ids.to(torch.int16)},
               tmp_path / "tokens" / "semantic-train-tiny-s.pt")
    out = tmp_path / "run"
    assert train_codec.main(["decoder", "--data", str(tiny_corpus), "--tokens", str(tmp_path / "tokens"), "--init",
                               str(tmp_path / "init"), "--out", str(out), *ARGS[:4], "--batch", "2", "--seconds",
                               "0.2", "--context", "2", "--eval-every", "3", "--eval-clips", "2", "--steps", "3",
                               "--semantic", str(tmp_path / "semantic"), "--init-decoder", "--cond-dropout", "0",
                               "--voice-clips", "2", "--voice-share", "0.5", "--pitch-weight", "1"]) == 0
    # the voice renditions' codes are the frozen encoder's, cached with their ids, and validation scores their pitch
    voice = torch.load(tmp_path / "tokens" / "codec-voice-train-tiny-v1.pt", weights_only=False)
    assert voice["ids"] == [r["id"] for r in ds.records][:2] and voice["semantic_version"] == "tiny-s"
    assert voice["codes"].shape == (2, 8, 500) and voice["semantic"].shape == (2, 250)
    v0 = CorpusDataset(tiny_corpus, "train", load_voice=True)[0]
    v0 = torch.from_numpy(np.pad(resample(v0.voice, v0.voice_rate, 24_000), (0, 240_000))[:240_000])[None]
    assert torch.equal(voice["codes"][0].long(), Codec.load(tmp_path / "init").encode(v0)[0, :, :500])
    assert "voice_pitch_8" in torch.load(out / "last.pt", weights_only=False)["history"][-1]
    new = Codec.load(out / "best")
    assert new.conditioned and new.cfg.decoder_cond == 16 and new.cfg.decoder_cond_version == "tiny-s"
    assert new.decoder.cond.weight.abs().sum() > 0, "the embedding was trained"
    x = torch.from_numpy(ds[0].audio[:24_000])[None]
    with_ids, without = new.reconstruct(x, semantic=sem), new.reconstruct(x)
    assert with_ids.shape == without.shape == x.shape and not torch.equal(with_ids, without)


def test_without_a_token_cache_mix_clips_encodes_the_mixes(tiny_corpus, tmp_path):
    """--mix-clips N: the first N train clips are encoded by the frozen encoder (cached like the voice pool), so no
    tokenize run is needed."""
    from engine.data.dataset import CorpusDataset
    old = save_tiny_codec(tmp_path / "init")
    out = tmp_path / "run"
    assert train_codec.main(["decoder", "--data", str(tiny_corpus), "--tokens", str(tmp_path / "tokens"), "--init",
                             str(tmp_path / "init"), "--out", str(out), *ARGS, "--steps", "3", "--mix-clips", "2"]) == 0
    mix = torch.load(tmp_path / "tokens" / "codec-mix-train-tiny-v1.pt", weights_only=False)
    ds = CorpusDataset(tiny_corpus, "train")
    assert mix["ids"] == [r["id"] for r in ds.records][:2] and mix["codes"].shape == (2, 8, 500)
    x = torch.from_numpy(np.pad(ds[1].audio, (0, 240_000))[:240_000])[None]
    assert torch.equal(mix["codes"][1].long(), old.encode(x)[0, :, :500])
    with pytest.raises(SystemExit):
        train_codec.main(["decoder", "--data", str(tiny_corpus), "--out", str(out), "--mix-clips", "-1"])
