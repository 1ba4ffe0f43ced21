"""k-means codebooks, MuLan and the semantic tokenizer: tiny configs for the training code, shipped weights for
the real path."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from engine import spectral
from engine.kmeans import ResidualKMeans, kmeans, usage

ASSETS = Path(__file__).resolve().parent.parent / "assets"


def test_kmeans_finds_separated_clusters_and_residual_levels_shrink_the_error():
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(8, 4, generator=g) * 10
    x = centres.repeat_interleave(50, 0) + 0.1 * torch.randn(400, 4, generator=g)
    c = kmeans(x, 8, seed=1)
    assert torch.cdist(centres, c).min(1).values.max() < 0.5
    rvq = ResidualKMeans.fit(torch.randn(500, 6, generator=g), levels=4, size=16, iters=10)
    x6 = torch.randn(200, 6, generator=g)
    errs = []
    for k in (1, 2, 4):
        ids = rvq.encode(x6, levels=k)
        errs.append(float((rvq.decode(ids) - x6).pow(2).mean()))
    assert errs[0] > errs[1] > errs[2]
    assert usage(np.array([0, 1, 1, 3]), 4) == pytest.approx({"used": 0.75, "perplexity": np.exp(1.0397207708)}, rel=1e-6)


def test_front_end_is_level_invariant_and_reads_the_key():
    sr = spectral.SAMPLE_RATE
    t = np.arange(sr * 4) / sr
    chord = sum(np.sin(2 * np.pi * 440 * 2 ** ((m - 69) / 12) * t) for m in (57, 61, 64))  # A major triad
    a = torch.from_numpy(chord.astype(np.float32))[None]
    f1, f2 = spectral.frames(a), spectral.frames(0.01 * a)
    assert f1.shape == (1, spectral.N_FRAME_FEATURES, 100)
    assert torch.allclose(f1, f2, atol=1e-3)
    key = spectral.global_features(a)[0, -24:]
    assert int(key.argmax()) == 9  # A major


def test_mulan_training_code_runs_on_a_tiny_corpus(tiny_corpus, tmp_path):
    from engine.mulan import MuLan
    from engine.train import mulan as train_mulan
    train_mulan.main(["tower", "--data", str(tiny_corpus), "--out", str(tmp_path), "--steps", "6", "--batch", "8", "--width", "16",
                      "--dim", "16", "--eval-every", "3", "--paraphrases", "1", "--version", "t"])
    m = json.loads((tmp_path / "best" / "metrics.json").read_text())
    assert m["train_steps"] == 6 and 0 <= m["recall@10"] <= 1 and "zero_shot_mode" in m
    model = MuLan.load(tmp_path / "best")
    assert model.cfg.version == "t-s6"
    assert model.tokens(model.embed_text(["a waltz"])).shape == (1, 12)
    # resuming continues from the checkpoint instead of starting over
    train_mulan.main(["tower", "--data", str(tiny_corpus), "--out", str(tmp_path), "--steps", "8", "--batch", "8", "--width", "16",
                      "--dim", "16", "--eval-every", "3", "--paraphrases", "1", "--version", "t"])
    assert json.loads((tmp_path / "best" / "metrics.json").read_text())["train_steps"] == 8


def test_mulan_fine_tuning_with_tag_heads_starts_from_the_saved_model(tiny_corpus, tmp_path):
    import torch

    from engine.mulan import MuLan
    from engine.train import mulan as train_mulan
    tiny = ["--data", str(tiny_corpus), "--batch", "8", "--eval-every", "2", "--paraphrases", "1"]
    train_mulan.main(["tower", *tiny, "--out", str(tmp_path / "m"), "--steps", "2", "--width", "16", "--dim", "16", "--version", "a"])
    train_mulan.main(["tower", *tiny, "--out", str(tmp_path / "ft"), "--steps", "4", "--init", str(tmp_path / "m" / "best"),
                      "--aux-weight", "1", "--version", "b"])  # no --width/--dim: the saved model's
    ck = torch.load(tmp_path / "ft" / "last.pt", weights_only=False)
    tags = {"style", "family", "tempo_bucket", "mode"}
    assert {k.split(".")[0] for k in ck["modules"]["heads"]} == tags | {f"{t}_frames" for t in tags}
    assert ck["modules"]["heads"]["mode.weight"].shape == (2, 16)
    tuned = MuLan.load(tmp_path / "ft" / "best")
    assert tuned.cfg.width == 16 and tuned.cfg.version == "b-s4"  # new tokens, new name
    assert tuned.tokens(tuned.embed_text(["a waltz"])).shape == (1, 12)


def test_mulan_tower_takes_the_frozen_semantic_encoder_and_starts_as_the_saved_model(tiny_corpus, tmp_path):
    import argparse

    import numpy as np
    import torch

    from engine.mulan import MuLan
    from engine.semantic import SemanticConfig, SemanticTokenizer
    from engine.train import mulan as train_mulan
    from engine.train.mulan.tower import initial_model
    tiny = ["--data", str(tiny_corpus), "--batch", "8", "--eval-every", "2", "--paraphrases", "1"]
    train_mulan.main(["tower", *tiny, "--out", str(tmp_path / "m"), "--steps", "2", "--width", "16", "--dim", "16", "--version", "a"])
    sem = SemanticTokenizer(SemanticConfig(width=16, dim=8, dilations=(1, 2), n_tokens=8))
    sem.save(tmp_path / "sem")
    init = MuLan.load(tmp_path / "m" / "best")
    wide = initial_model(argparse.Namespace(init=tmp_path / "m" / "best", semantic=tmp_path / "sem",
                                                      freeze_text=False))
    x = np.random.default_rng(0).standard_normal(24_000 * 4).astype(np.float32) * 0.1
    wide.eval()
    assert torch.allclose(wide.embed_audio(x, 24_000), init.embed_audio(x, 24_000), atol=1e-5)  # same start
    train_mulan.main(["tower", *tiny, "--out", str(tmp_path / "ft"), "--steps", "3", "--init", str(tmp_path / "m" / "best"),
                      "--semantic", str(tmp_path / "sem"), "--aux-weight", "1", "--lr", "1e-2", "--version", "b"])
    tuned = MuLan.load(tmp_path / "ft" / "best")
    assert tuned.cfg.semantic["dim"] == 8
    frozen = SemanticTokenizer.load(tmp_path / "sem").state_dict()
    assert all(torch.allclose(v.float(), frozen[k], atol=1e-3) for k, v in tuned.audio.sem.state_dict().items())
    assert not torch.allclose(tuned.audio.inp.weight[:, -8:], torch.zeros(()))  # the tower learned to read it
    from engine.export.mulan_onnx import OnnxMuLanAudio, export_mulan_audio
    onnx = OnnxMuLanAudio(export_mulan_audio(tuned, tmp_path / "onnx"), threads=1)  # the encoder is in the graph
    assert torch.allclose(onnx.embed_audio(x, 24_000), tuned.embed_audio(x, 24_000), atol=1e-4)


def test_text_projection_retraining_keeps_the_audio_side(tiny_corpus, tmp_path):
    from engine.mulan import MuLan
    from engine.train import mulan as train_mulan

    tiny = ["--width", "16", "--dim", "16", "--paraphrases", "3", "--version", "t"]
    train_mulan.main(["tower", "--data", str(tiny_corpus), "--out", str(tmp_path / "m"), "--steps", "2", "--batch", "8",
                      "--eval-every", "2", *tiny])
    old = MuLan.load(tmp_path / "m" / "best")
    train_mulan.main(["text", "--data", str(tiny_corpus), "--features", str(tmp_path / "m"), "--init", str(tmp_path / "m" / "best"),
                     "--out", str(tmp_path / "t"), "--steps", "4", "--batch", "8", "--per-clip", "2", "--eval-every", "2"])
    new = MuLan.load(tmp_path / "t" / "best")
    m = json.loads((tmp_path / "t" / "best" / "metrics.json").read_text())
    assert {"recall@10", "zero_shot_family", "token_cosine_text"} <= set(m)
    assert new.cfg.version == old.cfg.version  # the token space the stages were trained on
    x = np.random.default_rng(0).standard_normal(24_000 * 3).astype(np.float32) * 0.1
    assert torch.equal(new.tokens(new.embed_audio(x, 24_000)[None]), old.tokens(old.embed_audio(x, 24_000)[None]))
    assert (tmp_path / "m" / "short-prompts-2.pt").exists()  # cached beside the features


def test_short_prompt_cache_follows_a_grown_corpus_and_embeds_only_its_new_clips(tiny_corpus, tmp_path, monkeypatch):
    from engine.train.mulan import features as mulan_text

    records = [json.loads(line) for line in (tiny_corpus / "train.jsonl").read_text().splitlines()]
    every = {"ids": [r["id"] for r in records], "tags": [r["tags"] for r in records]}
    half = {k: v[: len(records) // 2] for k, v in every.items()}
    embedded, real = [], mulan_text.encode_sentences
    monkeypatch.setattr(mulan_text, "encode_sentences", lambda t, **kw: embedded.extend(t) or real(t, **kw))
    before = mulan_text.short_prompts(half, 2, tmp_path / "grown")
    embedded.clear()
    after = mulan_text.short_prompts(every, 2, tmp_path / "grown")  # the corpus grew: the cache holds half of it
    n_new = len(records) - len(half["ids"])
    assert len(embedded) == 2 * n_new, "only the new clips' prompts are embedded"
    assert after["ids"] == every["ids"] and after["text"].shape[:2] == (len(records), 2) and len(after["named"]) == len(records)
    assert torch.equal(after["text"][: len(half["ids"])], before["text"])
    scratch = mulan_text.short_prompts(every, 2, tmp_path / "scratch")
    assert after["prompts"] == scratch["prompts"] and after["named"] == scratch["named"]
    assert torch.allclose(after["text"].float(), scratch["text"].float(), atol=2e-3)  # MiniLM batches round apart
    embedded.clear()
    assert mulan_text.short_prompts(every, 2, tmp_path / "grown")["ids"] == every["ids"] and not embedded  # cached
    back = mulan_text.short_prompts(half, 2, tmp_path / "grown")  # a subset of the cache: nothing to embed
    assert back["ids"] == half["ids"] and torch.equal(back["text"], before["text"]) and not embedded


def test_audio_tower_retraining_keeps_the_text_tokens_the_stages_read(tiny_corpus, tmp_path):
    from engine.mulan import MuLan
    from engine.semantic import SemanticConfig, SemanticTokenizer
    from engine.train import mulan as train_mulan

    tiny = ["--data", str(tiny_corpus), "--batch", "8", "--eval-every", "2", "--paraphrases", "1"]
    train_mulan.main(["tower", *tiny, "--out", str(tmp_path / "m"), "--steps", "2", "--width", "16", "--dim", "16", "--version", "a"])
    SemanticTokenizer(SemanticConfig(width=16, dim=8, dilations=(1, 2), n_tokens=8)).save(tmp_path / "sem")
    with pytest.raises(SystemExit, match="--init"):
        train_mulan.main(["tower", *tiny, "--out", str(tmp_path / "x"), "--steps", "1", "--freeze-text", "--width", "16"])
    train_mulan.main(["tower", *tiny, "--out", str(tmp_path / "ft"), "--steps", "3", "--init", str(tmp_path / "m" / "best"),
                      "--semantic", str(tmp_path / "sem"), "--aux-weight", "1", "--lr", "1e-2", "--freeze-text",
                      "--version", "b"])
    old, new = MuLan.load(tmp_path / "m" / "best"), MuLan.load(tmp_path / "ft" / "best")
    prompts = ["a slow waltz on the piano", "fast techno with a saw lead", "a calm chorale in a minor key"]
    assert torch.equal(new.tokens(new.embed_text(prompts)), old.tokens(old.embed_text(prompts)))
    assert new.cfg.version == old.cfg.version == "a-s2" and new.cfg.audio_version == "b-s3"
    assert new.cfg.token_key != old.cfg.token_key  # audio tokens changed: token caches must not be reused
    x = np.random.default_rng(0).standard_normal(24_000 * 3).astype(np.float32) * 0.1
    assert not torch.allclose(new.embed_audio(x, 24_000), old.embed_audio(x, 24_000), atol=1e-4)
    m = json.loads((tmp_path / "ft" / "best" / "metrics.json").read_text())
    assert {"recall@10", "zero_shot_mode", "token_cosine_audio"} <= set(m)


def test_prompt_prior_trains_on_a_frozen_mulan_and_ships_only_when_better(tiny_corpus, tmp_path):
    import shutil

    from engine.mulan import MuLan
    from engine.train import mulan as train_mulan

    train_mulan.main(["tower", "--data", str(tiny_corpus), "--out", str(tmp_path / "m"), "--steps", "2", "--batch", "8",
                      "--eval-every", "2", "--width", "16", "--dim", "16", "--paraphrases", "1", "--version", "t"])
    shutil.copytree(tmp_path / "m" / "best", tmp_path / "assets")
    plain = MuLan.load(tmp_path / "assets")
    assert plain.prior is None
    prompts = ["a slow waltz on the piano", "fast techno with a saw lead"]
    assert torch.equal(plain.embed_prompt(prompts), plain.embed_text(prompts))  # no prior: the text as it was
    args = ["prior", "--data", str(tiny_corpus), "--features", str(tmp_path / "m"), "--init", str(tmp_path / "assets"),
            "--out", str(tmp_path / "p"), "--batch", "32", "--hidden", "32", "--per-clip", "2", "--eval-every", "100"]
    ship = ["--ship", "--assets", str(tmp_path / "assets")]
    assert train_mulan.main([*args, "--steps", "300"]) == 0
    assert train_mulan.main([*args, *ship]) == 0
    m = json.loads((tmp_path / "p" / "best" / "metrics.json").read_text())
    # the prior predicts the held-out clips' audio better than their captions' own text embeddings do
    assert m["valid_prior_cosine"] > m["valid_text_cosine"], m
    shipped = MuLan.load(tmp_path / "assets")
    assert shipped.prior is not None and shipped.prior.cfg.mulan == plain.cfg.token_key
    p = shipped.embed_prompt(prompts)
    assert p.shape == (2, 16) and torch.allclose(p.norm(dim=-1), torch.ones(2), atol=1e-5)
    assert not torch.allclose(p, plain.embed_text(prompts), atol=1e-3)
    assert torch.equal(shipped.tokens(shipped.embed_text(prompts)), plain.tokens(plain.embed_text(prompts)))
    before = (tmp_path / "assets" / "prior.safetensors").read_bytes()
    assert train_mulan.main([*args, "--steps", "1"]) == 0
    assert train_mulan.main([*args, *ship]) == 1  # a worse one
    assert (tmp_path / "assets" / "prior.safetensors").read_bytes() == before


def test_draft_ranker_trains_resumes_and_ships_only_when_it_ranks_better(tiny_corpus, tiny_assets, tmp_path):
    import shutil

    from engine.mulan.ranker import DraftRanker
    from engine.train import mulan as train_mulan
    from engine.train import tokenize
    from engine.train.mulan import ranker as mulan_ranker

    assets = tmp_path / "assets"
    shutil.copytree(tiny_assets, assets)
    feats, toks, out = tmp_path / "feats", tmp_path / "tokens", tmp_path / "r"
    assert tokenize.main(["--data", str(tiny_corpus), "--features", str(feats), "--out", str(toks), "--codec",
                          str(assets / "codec"), "--mulan", str(assets / "mulan"), "--semantic", str(assets / "semantic"),
                          "--only", "semantic", "--splits", "train", "test"]) == 0
    args = ["ranker", "--data", str(tiny_corpus), "--features", str(feats), "--tokens", str(toks), "--init", str(assets / "mulan"),
            "--semantic", str(assets / "semantic"), "--out", str(out), "--batch", "4", "--width", "16",
            "--per-clip", "2", "--eval-every", "5", "--valid-split", "test"]  # the tiny corpus has 1 valid clip
    assert train_mulan.main([*args, "--steps", "10"]) == 0
    state = torch.load(out / "last.pt", weights_only=False)["state"]
    assert state["step"] == 10 and [h["step"] for h in state["history"]] == [5, 10]
    assert train_mulan.main([*args, "--steps", "15"]) == 0  # resumes where it stopped
    state = torch.load(out / "last.pt", weights_only=False)["state"]
    assert [h["step"] for h in state["history"]] == [5, 10, 15]
    best = DraftRanker.load(out / "best")
    assert best.cfg.vocab == 16 and best.cfg.semantic == "tiny-s"
    ids = torch.randint(0, 16, (3, 40))
    e = best(ids)
    assert e.shape == (3, 16) and torch.allclose(e.norm(dim=-1), torch.ones(3), atol=1e-5)
    # the same ranker with its scores reversed ranks the validation clips the other way round: shipping keeps the
    # better of the two, whichever is offered second
    flipped = DraftRanker.load(out / "best")
    with torch.no_grad():
        flipped.out[-1].weight.neg_()
        flipped.out[-1].bias.neg_()
    flipped.save(tmp_path / "flipped" / "best")
    r = json.loads((out / "best" / "metrics.json").read_text())["valid_rank"]
    worse, better = (tmp_path / "flipped", out) if r > 0.5 else (out, tmp_path / "flipped")

    def ship(run) -> bool:
        return mulan_ranker.ship_best(argparse.Namespace(
            out=run, assets=assets / "mulan", data=str(tiny_corpus), features=feats, tokens=toks,
            semantic=assets / "semantic", valid_split="test"))
    for f in DraftRanker.FILES:
        shutil.copy2(worse / "best" / f, assets / "mulan" / f)
    assert ship(better)
    assert (assets / "mulan" / "ranker.safetensors").read_bytes() == (better / "best" / "ranker.safetensors").read_bytes()
    assert not ship(worse)
    assert (assets / "mulan" / "ranker.safetensors").read_bytes() == (better / "best" / "ranker.safetensors").read_bytes()


def test_a_mulan_saved_beside_its_semantic_tokenizer_stores_the_encoder_once(tmp_path):
    """In the assets layout MuLan's frozen copy of the semantic encoder is read from assets/semantic, not stored
    twice; anywhere else (a training run's folder) the copy is kept, so the model stays self-contained."""
    import dataclasses
    import shutil

    from safetensors.torch import load_file

    from engine.mulan import MuLan, MuLanConfig
    from engine.semantic import SemanticConfig, SemanticTokenizer

    torch.manual_seed(0)
    sem = SemanticTokenizer(SemanticConfig(width=16, dim=8, n_tokens=16, version="tiny-s"))
    sem.centroids.normal_()
    sem.save(tmp_path / "assets" / "semantic")
    sem = SemanticTokenizer.load(tmp_path / "assets" / "semantic")
    model = MuLan(MuLanConfig(dim=16, width=16, text_hidden=32, token_size=8, semantic=dataclasses.asdict(sem.cfg)))
    model.audio.sem.load_state_dict(sem.state_dict())
    model.eval()
    model.save(tmp_path / "assets" / "mulan")
    model.save(tmp_path / "run" / "best")
    stored = load_file(str(tmp_path / "assets" / "mulan" / "mulan.safetensors"))
    assert not any(k.startswith("audio.sem.") for k in stored)
    assert any(k.startswith("audio.sem.") for k in load_file(str(tmp_path / "run" / "best" / "mulan.safetensors")))
    frames, glob = torch.randn(2, spectral.N_FRAME_FEATURES, 250), torch.randn(2, spectral.N_GLOBAL)
    with torch.no_grad():
        want = model.audio(frames, glob)
        for where in (tmp_path / "assets" / "mulan", tmp_path / "run" / "best"):
            assert torch.allclose(MuLan.load(where).audio(frames, glob), want, atol=1e-3)
    shutil.copytree(tmp_path / "assets" / "mulan", tmp_path / "alone" / "mulan")
    with pytest.raises(FileNotFoundError, match="semantic tokenizer tiny-s"):
        MuLan.load(tmp_path / "alone" / "mulan")


def test_a_prior_trained_on_another_mulan_is_refused_with_a_readable_error(tiny_corpus, tmp_path):
    from engine.mulan import MuLan
    from engine.mulan.prior import PriorConfig, PromptPrior
    from engine.train import mulan as train_mulan

    train_mulan.main(["tower", "--data", str(tiny_corpus), "--out", str(tmp_path / "m"), "--steps", "1", "--batch", "8",
                      "--eval-every", "1", "--width", "16", "--dim", "16", "--paraphrases", "1", "--version", "t"])
    model = MuLan.load(tmp_path / "m" / "best")
    PromptPrior(PriorConfig(dim=16, hidden=8, mulan="some-other-mulan")).save(tmp_path / "m" / "best")
    with pytest.raises(RuntimeError, match="retrain it"):
        MuLan.load(tmp_path / "m" / "best")
    model.prior = PromptPrior(PriorConfig(dim=16, hidden=8, mulan="some-other-mulan"))
    model.save(tmp_path / "resaved")  # a stale prior is dropped, not saved beside the MuLan it does not fit
    assert MuLan.load(tmp_path / "resaved").prior is None


needs_shipped = pytest.mark.skipif(not (ASSETS / "mulan" / "mulan.json").exists(), reason="no shipped MuLan")


@needs_shipped
def test_shipped_draft_ranker_tells_which_music_a_caption_describes_and_hears_its_mode(tiny_corpus):
    """The shipped ranker, on clips it never saw (the tiny corpus is rendered with another seed): a caption scores
    its own clip's semantic ids above most other clips' ids, and above the same caption with the mode swapped."""
    import re

    from engine.data.dataset import CorpusDataset
    from engine.mulan import MuLan
    from engine.mulan.ranker import DraftRanker
    from engine.semantic import SemanticTokenizer

    mulan, ranker = MuLan.load(ASSETS / "mulan"), DraftRanker.load(ASSETS / "mulan")
    sem = SemanticTokenizer.load(ASSETS / "semantic")
    assert ranker is not None and ranker.fits(mulan.cfg, sem.cfg.version)
    ds = CorpusDataset(tiny_corpus, "train")
    clips = [ds[i] for i in range(min(16, len(ds)))]
    with torch.no_grad():
        ids = torch.stack([sem.encode(torch.from_numpy(c.audio[: 10 * 24_000])[None])[0] for c in clips])
    e = ranker(ids)
    sim = mulan.embed_text([c.captions[1] for c in clips]) @ e.T  # caption i vs clip j
    n = len(clips)
    below = float(((sim < sim.diag()[:, None]).float().sum(1) / (n - 1)).mean())
    assert below >= 0.7, f"a caption's own clip outranks {below:.2f} of the others (chance 0.5)"
    swap = {"major": "minor", "minor": "major"}
    named = [(i, c) for i, c in enumerate(clips) if re.search(r"\b(major|minor)\b", c.captions[1])]
    assert len(named) >= 4
    own = mulan.embed_text([c.captions[1] for _, c in named])
    other = mulan.embed_text([re.sub(r"\b(major|minor)\b", lambda m: swap[m.group(1)], c.captions[1]) for _, c in named])
    pick = e[[i for i, _ in named]]
    right = float(((own * pick).sum(-1) > (other * pick).sum(-1)).float().mean())
    assert right >= 0.6, f"the true mode scores higher on {right:.2f} of {len(named)} captions"


@needs_shipped
def test_shipped_mulan_finds_the_music_a_caption_describes(tiny_corpus):
    from engine.data.dataset import CorpusDataset
    from engine.mulan import MuLan
    from engine.mulan.evaluate import retrieval
    model = MuLan.load(ASSETS / "mulan")
    ds = CorpusDataset(tiny_corpus, "train")
    clips = [ds[i] for i in range(min(16, len(ds)))]
    audio = torch.stack([model.embed_audio(c.audio, c.sample_rate) for c in clips])
    text = model.embed_text([c.caption for c in clips])
    r_at_3 = retrieval(text, audio, k=3)
    assert r_at_3 >= 0.5, f"recall@3 among {len(clips)} clips is {r_at_3:.2f} (chance {3 / len(clips):.2f})"
    ids = model.tokens(text)
    assert ids.shape == (len(clips), 12) and int(ids.max()) < 1024
    rec = model.detokenize(ids)
    assert torch.nn.functional.cosine_similarity(rec, text).mean() > 0.9
    with pytest.raises(ValueError, match="empty"):
        model.embed_text(["   "])


@needs_shipped
def test_shipped_prior_pulls_each_caption_toward_the_music_it_describes(tiny_corpus):
    """Every clip of the tiny corpus (24, rendered with another seed than the training corpus): the prompt the stages
    read lies nearer the clip's audio embedding than the caption's plain text embedding does."""
    from engine.data.dataset import CorpusDataset
    from engine.mulan import MuLan
    model = MuLan.load(ASSETS / "mulan")
    if model.prior is None:
        pytest.skip("the shipped MuLan has no prompt prior")
    clips = [ds[i] for split in ("train", "valid", "test") for ds in [CorpusDataset(tiny_corpus, split)]
             for i in range(len(ds))]
    audio = torch.stack([model.embed_audio(c.audio, c.sample_rate) for c in clips])
    caps = [c.captions[1] for c in clips]  # the short caption: what people type
    plain = (model.embed_text(caps) * audio).sum(-1)
    prefix = (model.embed_prompt(caps) * audio).sum(-1)
    assert prefix.mean() > plain.mean() + 0.05, (float(plain.mean()), float(prefix.mean()))
    assert (prefix > plain).float().mean() >= 0.75


@needs_shipped
def test_shipped_mulan_hears_whether_music_is_major_or_minor(tiny_corpus):
    """Zero-shot, on every clip of the tiny corpus (24, none trained on): the first audio tower read the mode of 16
    of them (0.67), the one retrained with the semantic encoder's frames 22 (0.92)."""
    from engine.data.dataset import CorpusDataset
    from engine.mulan import MuLan
    from engine.mulan.evaluate import zero_shot
    model = MuLan.load(ASSETS / "mulan")
    clips = [ds[i] for split in ("train", "valid", "test") for ds in [CorpusDataset(tiny_corpus, split)]
             for i in range(len(ds))]
    audio = torch.stack([model.embed_audio(c.audio, c.sample_rate) for c in clips])
    mode = zero_shot(model, audio, [c.tags for c in clips])["mode"]
    assert mode >= 0.8, f"mode read right on {mode:.0%} of {len(clips)} clips"


@pytest.mark.skipif(not (ASSETS / "semantic" / "semantic.json").exists(), reason="no shipped semantic tokenizer")
def test_shipped_semantic_tokens_follow_the_melody_not_the_level(tiny_corpus):
    from engine.data.dataset import CorpusDataset
    from engine.semantic import SemanticTokenizer
    tok = SemanticTokenizer.load(ASSETS / "semantic")
    ex = CorpusDataset(tiny_corpus, "train")[0]
    a = torch.from_numpy(ex.audio)[None]
    ids = tok.encode(a)
    assert ids.shape == (1, len(ex.audio) // 960) and int(ids.max()) < tok.cardinality
    assert (tok.encode(0.3 * a) == ids).float().mean() > 0.95, "loudness must not change the tokens"


def test_mulan_audio_tower_exports_to_onnx_with_the_same_embeddings(tmp_path):
    """Shipped weights: onnxruntime gives the torch tower's embedding, on a clip longer than one window."""
    import numpy as np
    import torch

    from engine.export.mulan_onnx import OnnxMuLanAudio, export_mulan_audio
    from engine.mulan import MuLan
    mulan = MuLan.load(ASSETS / "mulan")
    onnx = OnnxMuLanAudio(export_mulan_audio(mulan, tmp_path), threads=1)
    t = np.arange(24_000 * 12) / 24_000
    x = (0.2 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 2 * t)) / 2).astype(np.float32)
    ref, got = mulan.embed_audio(x, 24_000), onnx.embed_audio(x, 24_000)
    assert ref.shape == got.shape == (mulan.cfg.dim,)
    assert float(torch.nn.functional.cosine_similarity(ref, got, dim=0)) > 0.9999
    assert torch.allclose(ref, got, atol=1e-4)
