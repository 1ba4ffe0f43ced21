"""The rebuild recipe cannot rot: ``python -m engine.train.all --tiny`` runs every step of the shipped models'
recipe (corpus, note transcriber, codec phases, MuLan phases, semantic tokenizer, tokens, drum remover, stages) on a tiny corpus with tiny models,
and the models it ships make a playable clip. A second call finds every step done and redoes none."""
from __future__ import annotations

import json

import numpy as np
import soundfile as sf

from engine.train.all import main


def test_the_tiny_rebuild_runs_every_step_and_ends_in_a_playable_clip(tmp_path, capsys):
    runs, assets = tmp_path / "runs", tmp_path / "assets"
    assert main(["--tiny", "--runs", str(runs), "--assets", str(assets)]) == 0
    done = json.loads((runs / "recipe-tiny.json").read_text())
    assert done[0] == "corpus" and done[-1] == "clip" and len(done) == 18
    for f in ("codec/codec.safetensors", "mulan/mulan.safetensors", "mulan/prior.safetensors",
              "semantic/semantic.safetensors", "stages/semantic.safetensors", "stages/coarse.safetensors",
              "stages/fine.safetensors", "transcriber/transcriber.safetensors", "demix/drums.safetensors"):
        assert (assets / f).is_file(), f"{f} was not shipped"
    codec = json.loads((assets / "codec" / "codec.json").read_text())
    assert codec["decoder"] == "istft" and codec["decoder_cond"] > 0, "the codec's decoder phase shipped"
    coarse = json.loads((assets / "stages" / "coarse.json").read_text())
    assert len(coarse["cond_vocabs"]) == 2, "the coarse stage reads the melody beside the semantic ids, as shipped"

    audio, sr = sf.read(runs / "clip.wav")
    assert sr == 24_000 and audio.shape == (48_000,)
    assert np.isfinite(audio).all() and 1e-4 < float(np.sqrt(np.mean(audio ** 2))) < 1.0, "audible, not blown up"

    capsys.readouterr()
    assert main(["--tiny", "--runs", str(runs), "--assets", str(assets)]) == 0
    assert capsys.readouterr().err.count("done before, skipped") == 18
