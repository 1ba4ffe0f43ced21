"""The training path from corpus to a working generator, on a tiny corpus with tiny models: tokenise, train each
stage a few steps, ship, load, generate. (Quality comes from the real run; this proves the plumbing.)"""
from __future__ import annotations

import json
import shutil

import numpy as np

from engine.generate import Cantus, Request, Segment, Settings
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
    for name in ("semantic", "coarse", "fine"):
        args = [name, "--tokens", str(toks), "--out", str(tmp_path / "runs"), "--assets", str(assets), "--steps", "3",
                "--d-model", "32", "--n-layer", "1", "--n-head", "2", "--eval-every", "2", "--batch", "2"]
        assert stage.main(args) == 0
        assert stage.main(args[:1] + args[1:7] + ["--ship"]) == 0
        m = json.loads((assets / "stages" / f"{name}.metrics.json").read_text())
        assert m["step"] == 3 and np.isfinite(m["valid_loss"])
    # resuming a finished run keeps its step count
    assert stage.main(["fine", "--tokens", str(toks), "--out", str(tmp_path / "runs"), "--assets", str(assets),
                       "--steps", "3", "--d-model", "32", "--n-layer", "1", "--n-head", "2"]) == 0
    audio = Cantus.load(assets).generate(Request([Segment("a waltz", 1.0)], Settings(duration=1.0)))
    assert audio.shape == (24_000,) and np.isfinite(audio).all()
