"""The training path from corpus to a working generator, on a tiny corpus with tiny models: tokenise, train each
stage a few steps, ship, load, generate. (Quality comes from the real run; this proves the plumbing.)"""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from engine import Cantus, Request, Segment, Settings
from engine.lm.model import StageLM
from engine.train import stage, tokenize


def test_tokenise_train_ship_and_generate(tiny_corpus, tiny_assets, tmp_path):
    assets = tmp_path / "assets"
    shutil.copytree(tiny_assets, assets)
    shutil.rmtree(assets / "stages")
    toks = tmp_path / "tokens"
    assert tokenize.main(["--data", str(tiny_corpus), "--features", str(tmp_path / "feats"), "--out", str(toks),
                          "--codec", str(assets / "codec"), "--mulan", str(assets / "mulan"),
                          "--semantic", str(assets / "semantic")]) == 0
    tok = tokenize.load(toks, "train", {"codec": "tiny-c", "mulan": "tiny-m", "semantic": "tiny-s"})
    n = len(tok["ids"])
    assert tok["codec"].shape == (n, 8, 500) and tok["semantic"].shape == (n, 250)
    assert tok["mulan_text"].shape[:2] == (n, 6) and tok["melody"].shape == (n, 250)  # 3 captions + 3 paraphrases
    assert (tok["melody"] > 0).float().mean() > 0.3, "melody tokens come from the clips' tunes"
    fewer = {**tok, "mulan_text": tok["mulan_text"][:, :2]}  # another build's token files, with fewer captions
    both = stage.joined([tok, fewer])
    assert both["ids"] == tok["ids"] * 2 and both["codec"].shape[0] == 2 * n and both["mulan_text"].shape[1] == 2
    for name in ("semantic", "coarse", "fine"):
        args = [name, "--tokens", str(toks), "--out", str(tmp_path / "runs"), "--assets", str(assets), "--steps", "3",
                "--d-model", "32", "--n-layer", "1", "--n-head", "2", "--eval-every", "2", "--batch", "2"]
        assert stage.main(args) == 0
        assert stage.main(args[:1] + args[1:7] + ["--ship"]) == 0
        m = json.loads((assets / "stages" / f"{name}.metrics.json").read_text())
        assert m["step"] == 3 and np.isfinite(m["valid_loss"])
    # the paired gate's B side: the shipped assets with the run's best stage swapped in, the shipped ones untouched
    cand = tmp_path / "candidate"
    assert stage.main(["fine", "--out", str(tmp_path / "runs"), "--assets", str(assets), "--candidate", str(cand)]) == 0
    assert (cand / "stages" / "fine.safetensors").read_bytes() == \
        (tmp_path / "runs" / "fine" / "best" / "fine.safetensors").read_bytes()
    assert (cand / "codec" / "codec.safetensors").read_bytes() == (assets / "codec" / "codec.safetensors").read_bytes()
    assert Cantus.load(cand, backend="torch").generate(Request([Segment("a waltz", 1.0)], Settings(duration=1.0))).size
    # resuming a finished run keeps its step count
    assert stage.main(["fine", "--tokens", str(toks), "--out", str(tmp_path / "runs"), "--assets", str(assets),
                       "--steps", "3", "--d-model", "32", "--n-layer", "1", "--n-head", "2"]) == 0
    audio = Cantus.load(assets).generate(Request([Segment("a waltz", 1.0)], Settings(duration=1.0)))
    assert audio.shape == (24_000,) and np.isfinite(audio).all()
    # the coarse stage fine-tuned to read the melody as well, from the one just shipped
    args = ["coarse", "--tokens", str(toks), "--out", str(tmp_path / "melody"), "--assets", str(assets), "--steps",
            "2", "--d-model", "32", "--n-layer", "1", "--n-head", "2", "--batch", "2", "--melody", "--init",
            str(assets / "stages")]
    assert stage.main(args) == 0
    assert StageLM.load(tmp_path / "melody" / "coarse" / "best", "coarse").cfg.cond_vocabs == (16, 13)
    with pytest.raises(SystemExit):
        stage.main(["semantic"] + args[1:])


def test_a_grown_corpus_tokenises_only_its_new_clips(tiny_corpus, tiny_assets, score_paths, tmp_path, monkeypatch):
    """Doubling the corpus (``build --hours`` into the same folder) must not re-encode the clips already cached:
    with the real codec, 10 h of train clips took 21 min to encode here. The result equals tokenising the grown
    corpus from scratch."""
    from engine.codec import Codec
    from engine.data.build import build
    from engine.train.mulan import features as train_mulan

    corpus = tmp_path / "corpus"
    shutil.copytree(tiny_corpus, corpus)
    versions = {"codec": "tiny-c", "mulan": "tiny-m", "semantic": "tiny-s"}

    def tokenise(out):
        assert tokenize.main(["--data", str(corpus), "--features", str(out / "feats"), "--out", str(out),
                              "--codec", str(tiny_assets / "codec"), "--mulan", str(tiny_assets / "mulan"),
                              "--semantic", str(tiny_assets / "semantic"), "--splits", "train"]) == 0
        return tokenize.load(out, "train", versions)

    before = tokenise(tmp_path / "tok")
    encoded, sentences = [], []
    real_encode, real_sentences = Codec.encode, train_mulan.encode_sentences
    monkeypatch.setattr(Codec, "encode", lambda self, a: encoded.append(1) or real_encode(self, a))
    monkeypatch.setattr(train_mulan, "encode_sentences",
                        lambda s, **kw: sentences.extend(s) or real_sentences(s, **kw))
    build(2 * 24 * 10 / 3600, corpus, seed=3, workers=1, cache=None, score_paths=score_paths, progress=False)
    after = tokenise(tmp_path / "tok")
    n_old, n_new = len(before["ids"]), len(after["ids"]) - len(before["ids"])
    assert n_new > 0 and after["ids"][:n_old] == before["ids"], "the grown corpus keeps its clips, in order"
    assert len(encoded) == n_new, "only the new clips go through the codec"
    assert len(sentences) == n_new * after["mulan_text"].shape[1], "only the new clips' captions are embedded"
    for key in ("codec", "semantic", "mulan_audio", "mulan_text", "melody"):
        assert after[key].shape[0] == n_old + n_new
        assert (after[key][:n_old] == before[key]).all(), key
    monkeypatch.setattr(Codec, "encode", real_encode)
    monkeypatch.setattr(train_mulan, "encode_sentences", real_sentences)
    scratch = tokenise(tmp_path / "scratch")
    for key in ("codec", "semantic", "mulan_audio", "melody"):
        assert (scratch[key] == after[key]).all(), key
    assert (scratch["mulan_text"] == after["mulan_text"]).float().mean() > 0.95  # MiniLM batches differ in rounding


def test_the_rebuild_command_trains_stages_of_the_shipped_shapes():
    """``engine.train.all`` rebuilds the shipped stages from scratch; it must train the architecture that ships."""
    from pathlib import Path

    from engine.train.all import STAGE_SHAPES as SHIPPED_SHAPES

    shipped = Path(__file__).resolve().parent.parent / "assets" / "stages"
    if not (shipped / "coarse.json").exists():
        pytest.skip("no shipped stages")
    for name, flags in SHIPPED_SHAPES.items():
        cfg = json.loads((shipped / f"{name}.json").read_text())
        args = dict(zip(flags, flags[1:]))
        assert int(args.get("--d-model", 256)) == cfg["d_model"], name
        assert int(args.get("--n-layer", 4)) == cfg["n_layer"], name
        assert int(args.get("--prefix-rank", 0)) == cfg.get("prefix_rank", 0), name
        assert ("--melody" in flags) == (name == "coarse" and len(cfg["cond_vocabs"]) == 2), name
