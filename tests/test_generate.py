"""The generator end to end on tiny random models: streaming, seeds, long form, story mode, continuation, errors."""
from __future__ import annotations

import json
import subprocess
import sys
from itertools import pairwise

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import Cancelled, Cantus, GenerationError, Request, Segment, Settings


@pytest.fixture(scope="module")
def cantus(tiny_assets):
    return Cantus.load(tiny_assets)  # onnxruntime, the default backend


@pytest.fixture(scope="module")
def cantus_torch(tiny_assets):
    return Cantus.load(tiny_assets, backend="torch")


def _req(seconds=3.0, seed=0, **kw):
    return Request([Segment("calm piano ballad", seconds)], Settings(duration=seconds, seed=seed), **kw)


@pytest.mark.parametrize("backend", ["onnx", "torch"])
def test_stream_equals_whole_clip_and_chunks_are_short(cantus, cantus_torch, backend):
    cantus = cantus if backend == "onnx" else cantus_torch
    req = _req(4.0)
    chunks = list(cantus.generate_stream(req, chunk_seconds=1.0))
    assert len(chunks) >= 4 and all(len(c) <= 24_000 for c in chunks)
    streamed = np.concatenate(chunks)
    whole = cantus.generate(req)
    assert streamed.shape == whole.shape == (4 * 24_000,)
    assert np.abs(streamed - whole).max() < 1e-4
    a = torch.cat(list(cantus.code_stream(req, chunk_frames=7)), -1)
    b = torch.cat(list(cantus.code_stream(req, chunk_frames=10 ** 9)), -1)
    assert torch.equal(a, b), "chunking must not change the sampled codes"


def test_a_long_clip_and_an_extension_stream_in_whole_pieces(cantus):
    """The app plays every piece as a whole chunk and pads a short one with silence: pieces cut short at window joins
    (0.76 s every 4 s of a long clip) or by an extension's dropped decoder delay (60 ms) were gaps in what the player
    heard. Only the last piece may be short, and the pieces are still the clip."""
    long = _req(24.0)  # three windows
    chunks = list(cantus.generate_stream(long))
    assert [len(c) for c in chunks] == [24_000] * 24
    assert np.abs(np.concatenate(chunks) - cantus.generate(long)).max() < 1e-4
    ext = _req(3.5, continuation=np.concatenate(chunks)[:5 * 24_000])
    sizes = [len(c) for c in cantus.generate_stream(ext)]
    assert sizes[:-1] == [24_000] * 3 and 0 < sizes[-1] < 24_000 and sum(sizes) == len(cantus.generate(ext))


def test_onnx_and_torch_backends_agree(tiny_assets, cantus_torch):
    cantus = Cantus.load(tiny_assets, int8=False)  # exact parity needs fp32 graphs; int8 is bounded on real music
    req = Request([Segment("calm piano ballad", 2.0)], Settings(duration=2.0, temperature=0.0))  # greedy: no draws
    a = torch.cat(list(cantus.code_stream(req)), -1)
    b = torch.cat(list(cantus_torch.code_stream(req)), -1)
    assert torch.equal(a, b)
    assert np.abs(cantus.generate(req) - cantus_torch.generate(req)).max() < 1e-3


def test_same_seed_same_audio_other_seed_other_audio(cantus):
    a, b, c = cantus.generate(_req(seed=5)), cantus.generate(_req(seed=5)), cantus.generate(_req(seed=6))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_long_form_story_and_continuation(cantus):
    story = Request([Segment("slow ambient piece", 8.0), Segment("fast techno track", 8.0)], Settings(duration=16.0))
    steps = []
    audio = cantus.generate(story, progress=lambda f, what: steps.append(f))
    assert audio.shape == (16 * 24_000,) and np.isfinite(audio).all()
    assert steps == sorted(steps) and steps[-1] == pytest.approx(1.0)
    cont = cantus.generate(_req(2.0, continuation=audio[:3 * 24_000]))
    assert cont.shape == (2 * 24_000,)
    melody = np.tile(np.repeat(np.arange(1, 13), 5), 3)
    with_melody = cantus.generate(_req(2.0, melody=melody))
    assert not np.array_equal(with_melody, cantus.generate(_req(2.0)))


def test_a_window_that_another_follows_stops_before_its_end_and_the_next_continues_from_there(cantus, monkeypatch):
    """Long form: a window that another follows stops TAIL_S = 1.24 s short of its 10 s (62 of 500 frames), where
    each later window's end had lifted the bass at the next join; the next window keeps
    the 5 s before that stop as its context, and the clip keeps its length."""
    import engine.pipeline as G
    seen = []

    class Spy(G.StageSampler):
        def __init__(self, model, prefix, cond, n, params, gen, prompt=None, **k):
            if model.cfg.name == "coarse":
                seen.append((n, None if prompt is None else prompt.clone()))
            super().__init__(model, prefix, cond, n, params, gen, prompt, **k)
    monkeypatch.setattr(G, "StageSampler", Spy)
    codes = torch.cat(list(cantus.code_stream(_req(20.0))), -1)
    assert codes.shape == (9, 1000)
    assert [n for n, _ in seen] == [438, 438, 438, 436]  # 8.76 s new, then 3 windows of 5 s context + the rest
    assert seen[0][1].shape == (4, 0)
    for (_, ctx), start in zip(seen[1:], (438, 626, 814)):
        assert torch.equal(ctx, codes[:4, start - 250:start]), "the context ends where the stream stopped"


@given(total=st.integers(1, 7500), n_ctx=st.integers(0, 125), tail=st.sampled_from([0.0, 0.5, 1.24, 3.0]))
@settings(max_examples=200, deadline=None)
def test_window_plans_cover_the_clip_in_windows_the_stages_can_hold(total, n_ctx, tail):
    from engine.settings import window_plan
    total, n_ctx = 2 * total, 2 * n_ctx  # even: two codec frames per semantic id
    plan = window_plan(total, n_ctx, tail)
    assert sum(n for _, n in plan) == total and plan[0][0] == n_ctx
    assert all(c % 2 == 0 and n % 2 == 0 and n > 0 and c + n <= 500 for c, n in plan)
    for (c, n), (c2, _) in pairwise(plan):
        assert c + n == 500 - 2 * round(tail * 25), "a window that another follows stops tail_s short"
        assert c2 == 250, "and the next keeps 5 s of it"


def test_a_tempo_from_the_prompt_or_the_settings_conducts_the_semantic_stage(cantus):
    def gen(prompt, bpm=None):
        return cantus.generate(Request([Segment(prompt, 2.0)], Settings(duration=2.0, seed=3, bpm=bpm)))
    named = gen("calm piano ballad at 100 bpm")
    assert np.array_equal(named, gen("calm piano ballad at 100 bpm", bpm=100.0)), "the prompt's BPM is the grid"
    assert not np.array_equal(named, gen("calm piano ballad at 100 bpm", bpm=140.0)), "the setting overrides it"
    story = Request([Segment("folk at 80 bpm", 6.0), Segment("folk at 160 bpm", 6.0)], Settings(duration=12.0))
    assert cantus.generate(story).shape == (12 * 24_000,)
    with pytest.raises(GenerationError, match="BPM"):
        gen("a march at 900 bpm")
    with pytest.raises(GenerationError, match="BPM"):
        Settings(bpm=10).validate()


def test_onnx_generation_uses_one_torch_thread_and_gives_the_caller_its_threads_back(cantus):
    import torch
    before, seen = torch.get_num_threads(), set()
    torch.set_num_threads(2)
    try:
        cantus.generate(_req(1.0), progress=lambda frac, what: seen.add(torch.get_num_threads()))
        assert seen == {1}  # two threads wait on each other when another process holds a core (9-10 s vs 1.3 s)
        assert torch.get_num_threads() == 2
        stream = cantus.generate_stream(_req(2.0))
        next(stream)
        stream.close()  # a cancelled stream restores them too
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_bad_requests_get_clear_errors(cantus):
    with pytest.raises(GenerationError, match="empty"):
        cantus.generate(Request([Segment("   ", 2.0)], Settings(duration=2.0)))
    with pytest.raises(GenerationError, match="duration"):
        cantus.generate(_req(0.0))
    with pytest.raises(GenerationError, match="duration"):
        Settings(duration=10_000).validate()
    with pytest.raises(GenerationError, match="temperature"):
        Settings(temperature=-1).validate()
    with pytest.raises(GenerationError, match="temperature"):  # fine for text alone (0.85 x 5.5), not for a hum
        Settings(temperature=5.5).validate()
    with pytest.raises(Cancelled):
        cantus.generate(_req(2.0), cancel=lambda: True)
    long_prompt = cantus.generate(Request([Segment("flute " * 2000, 1.0)], Settings(duration=1.0)))
    assert long_prompt.shape == (24_000,)


def test_stages_trained_on_other_tokens_are_refused(tiny_assets, tmp_path):
    import shutil
    shutil.copytree(tiny_assets, tmp_path / "a")
    cfg = json.loads((tmp_path / "a" / "codec" / "codec.json").read_text())
    cfg["version"] = "another"
    (tmp_path / "a" / "codec" / "codec.json").write_text(json.dumps(cfg))
    with pytest.raises(RuntimeError, match="retrain"):
        Cantus.load(tmp_path / "a")


def test_cli_writes_a_wav_and_rejects_bad_input_with_one_line(tiny_assets, tmp_path):
    import soundfile as sf
    out = tmp_path / "x.wav"
    ok = subprocess.run([sys.executable, "-m", "engine.generate", "--prompt", "happy folk tune", "--duration", "2",
                         "--assets", str(tiny_assets), "--out", str(out)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    audio, sr = sf.read(out)
    assert sr == 24_000 and len(audio) == 48_000
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio at all")
    for args in (["--prompt", ""], ["--prompt", "x", "--melody", str(bad)], ["--prompt", "x", "--duration", "-3"],
                 ["--prompt", "x", "--bpm", "0"]):
        r = subprocess.run([sys.executable, "-m", "engine.generate", *args, "--assets", str(tiny_assets),
                            "--out", str(tmp_path / "y.wav")], capture_output=True, text=True)
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and r.stderr.startswith("error:"), r.stderr


def test_a_decoder_that_reads_semantic_ids_gets_the_ones_the_semantic_stage_drew(tiny_assets, tmp_path):
    """With a conditioned codec (engine.codec.istft) the stream carries each frame's semantic id to the decoder: the
    stream still equals the whole clip, both backends agree, continuation works, and the ids shape the audio."""
    import dataclasses
    import shutil

    from engine.codec import Codec
    shutil.copytree(tiny_assets, tmp_path / "a")
    old = Codec.load(tmp_path / "a" / "codec")
    cfg = dataclasses.replace(old.cfg, decoder="istft", decoder_dim=16, decoder_blocks=1, decoder_cond=16,
                              decoder_cond_version="tiny-s")
    torch.manual_seed(1)
    codec = Codec(cfg, encoder=old.encoder, quantizer=old.quantizer).eval()
    with torch.no_grad():
        codec.decoder.cond.weight.normal_()
    codec.save(tmp_path / "a" / "codec")
    onnx, eager = Cantus.load(tmp_path / "a", int8=False), Cantus.load(tmp_path / "a", backend="torch")
    req = _req(3.0, seed=2)
    codes = torch.cat(list(onnx.code_stream(req)), -1)
    assert codes.shape == (9, 150) and torch.equal(codes[8, ::2], codes[8, 1::2]), "one semantic id per 2 frames"
    whole = onnx.generate(req)
    assert np.abs(np.concatenate(list(onnx.generate_stream(req, chunk_seconds=0.5))) - whole).max() < 1e-4
    assert np.abs(eager.generate(req) - whole).max() < 1e-3
    without = np.concatenate(list(onnx.decode_stream(iter([codes[:8]]), req)))
    assert without.shape == whole.shape and not np.allclose(without, whole, atol=1e-3), "the ids reach the decoder"
    assert onnx.generate(_req(2.0, continuation=whole)).shape == (48_000,)

    cfg = json.loads((tmp_path / "a" / "codec" / "codec.json").read_text())
    cfg["decoder_cond_version"] = "another"
    (tmp_path / "a" / "codec" / "codec.json").write_text(json.dumps(cfg))
    with pytest.raises(RuntimeError, match="semantic ids"):
        Cantus.load(tmp_path / "a", backend="torch")


def test_a_coarse_stage_that_reads_the_melody_gets_the_hum_where_the_semantic_stage_does(tiny_assets, tmp_path,
                                                                                        monkeypatch):
    """``default_config(..., melody=True)``: the hum reaches the acoustic tokens directly, aligned with the semantic
    ids of each window (long form included), and guidance's unconditional branch drops it with the text."""
    import shutil

    import engine.pipeline as G
    from engine.lm.model import StageLM
    from engine.lm.stages import default_config
    shutil.copytree(tiny_assets, tmp_path / "a")
    old = StageLM.load(tmp_path / "a" / "stages", "coarse")
    torch.manual_seed(3)
    new = StageLM(default_config("coarse", 16, codec_size=32, mulan_size=8, melody=True, d_model=32, n_layer=1,
                                 n_head=2, version=old.cfg.version))
    new.save(tmp_path / "a" / "stages")
    seen = []

    class Spy(G.StageSampler):
        def __init__(self, model, prefix, cond, *a, **k):
            seen.append((model.cfg.name, cond.clone()))
            super().__init__(model, prefix, cond, *a, **k)
    monkeypatch.setattr(G, "StageSampler", Spy)
    hum = np.repeat(np.arange(1, 13), 20)  # a 9.6 s scale at 25 Hz
    for backend in ("onnx", "torch"):
        seen.clear()
        audio = Cantus.load(tmp_path / "a", backend=backend).generate(_req(12.0, seed=4, melody=hum))
        assert audio.shape == (12 * 24_000,) and np.isfinite(audio).all()
        sem = [c for name, c in seen if name == "semantic"]
        coarse = [c for name, c in seen if name == "coarse"]
        assert len(coarse) == 2, "two windows"
        for s, c in zip(sem, coarse):
            assert c.shape[:2] == (2, 2) and torch.equal(c[0, 1], s[0, 0]), "the hum, as the semantic stage has it"
            assert (c[1] == torch.tensor([16, 13])[:, None]).all(), "guidance's other branch: no ids, no hum"
        first = torch.as_tensor(np.resize(hum, sum(G.window_plan(600)[0]) // 2))
        assert torch.equal(coarse[0][0, 1], first), "the first window: the hum from its start, repeated"
    plain = Cantus.load(tmp_path / "a").generate(_req(3.0, seed=4))
    assert plain.shape == (3 * 24_000,)


def test_text_alone_samples_the_token_stages_cooler_than_a_hummed_request_or_a_continuation(cantus, monkeypatch):
    """Text alone: semantic and coarse stages at 0.85 / 0.76 (closer to the prompt); with a hum, MusicLM's 1.0 /
    0.95, which follow the hum more; and so does every window that continues audio (long form after its first
    window, a continuation), where cooler sampling compounds and the bass fades; the user's temperature scales both."""
    import engine.pipeline as G
    seen = []

    class Spy(G.StageSampler):
        def __init__(self, model, prefix, cond, n, params, *a, **k):
            seen.append(round(params.temperature, 4))
            super().__init__(model, prefix, cond, n, params, *a, **k)

    monkeypatch.setattr(G, "StageSampler", Spy)
    cantus.generate(_req(1.0))
    cantus.generate(_req(1.0, melody=np.full(25, 3)))
    cantus.generate(Request([Segment("calm piano ballad", 1.0)], Settings(duration=1.0, temperature=0.5)))
    assert seen == [0.85, 0.76, 0.4, 1.0, 0.95, 0.4, 0.425, 0.38, 0.2]
    seen.clear()
    cantus.generate(_req(12.0))  # a window of 8.76 s, then one with 5 s of context and 3.24 s of new audio
    cantus.generate(_req(1.0, continuation=np.zeros(24_000 * 3, np.float32)))
    assert seen == [0.85, 0.76, 0.4, 1.0, 0.95, 0.4, 1.0, 0.95, 0.4]


def _with_ranker(tiny_assets, tmp_path, **cfg):
    """tiny_assets plus a (random) draft ranker for its MuLan and semantic ids."""
    import shutil

    from engine.mulan import MuLan
    from engine.mulan.ranker import DraftRanker, RankerConfig
    shutil.copytree(tiny_assets, tmp_path / "a")
    mulan = MuLan.load(tmp_path / "a" / "mulan")
    torch.manual_seed(1)
    DraftRanker(RankerConfig(**{"vocab": 16, "width": 16, "dim": mulan.cfg.dim, "mulan": mulan.cfg.token_key,
                                "semantic": "tiny-s", **cfg})).save(tmp_path / "a" / "mulan")
    return tmp_path / "a"


def test_text_alone_keeps_the_semantic_draft_the_ranker_scores_highest(tiny_assets, tmp_path, monkeypatch):
    """Text alone draws Settings.drafts semantic drafts (at temperature 1.0, not one draft's 0.85, unless a tempo is
    asked for) and keeps the ranker's favourite; the same seed gives the same clip; one draft is the clip the models
    give without a ranker; a hummed request is never reranked (the hum, not the ranker, picks its ids)."""
    import engine.pipeline as G
    model = Cantus.load(_with_ranker(tiny_assets, tmp_path))
    assert model.versions["draft_ranker"] == "dev"
    kept = []
    pick = G.Cantus._pick_draft

    def spy(self, sem, req, segment):
        ids = pick(self, sem, req, segment)
        drafts = torch.stack([sem.codes(row=r)[0] for r in range(sem.B)])
        if sem.B > 1:
            kept.append((sem.B, int((drafts == ids).all(1).nonzero()[0]),
                         self.ranker.scores(drafts, self.text_embedding(req.prompt(segment)))))
        else:
            kept.append((1, 0, None))
        return ids

    monkeypatch.setattr(G.Cantus, "_pick_draft", spy)
    four = model.generate(Request([Segment("calm piano piece", 2.0)], Settings(duration=2.0, seed=5, drafts=4)))
    n, i, scores = kept[-1]
    assert n == 4 and float(scores[i]) == float(scores.max()) and scores.unique().numel() == 4
    assert np.array_equal(four, model.generate(Request([Segment("calm piano piece", 2.0)],
                                                       Settings(duration=2.0, seed=5, drafts=4))))
    one = model.generate(Request([Segment("calm piano piece", 2.0)], Settings(duration=2.0, seed=5, drafts=1)))
    plain = Cantus.load(tiny_assets).generate(Request([Segment("calm piano piece", 2.0)], Settings(duration=2.0, seed=5)))
    assert np.array_equal(one, plain)
    kept.clear()
    hum = np.full(50, 3)
    hummed = model.generate(Request([Segment("calm piano piece", 2.0)], Settings(duration=2.0, seed=5), hum))
    assert [k[0] for k in kept] == [1]
    assert np.array_equal(hummed, Cantus.load(tiny_assets).generate(
        Request([Segment("calm piano piece", 2.0)], Settings(duration=2.0, seed=5), hum)))
    temps = []

    class Spy(G.StageSampler):
        def __init__(self, model, prefix, cond, n, params, *a, **k):
            temps.append((prefix.shape[0], round(params.temperature, 4)))
            super().__init__(model, prefix, cond, n, params, *a, **k)

    # drafting, the semantic stage samples at MusicLM's 1.0, not 0.85, unless it has a tempo's beat grid to keep (a
    # tempo word such as "ballad" or "slow" is one too)
    monkeypatch.setattr(G, "StageSampler", Spy)
    model.generate(Request([Segment("calm piano piece", 2.0)], Settings(duration=2.0, seed=5, drafts=4)))
    model.generate(Request([Segment("calm piano piece", 2.0)], Settings(duration=2.0, seed=5, drafts=1)))
    model.generate(Request([Segment("calm piano piece at 90 bpm", 2.0)], Settings(duration=2.0, seed=5, drafts=4)))
    model.generate(Request([Segment("calm piano piece", 2.0)], Settings(duration=2.0, seed=5, drafts=4, bpm=90)))
    assert [t[1] for t in temps if t[0] == 8] == [1.0, 0.85, 0.85]
    assert temps[:6] == [(8, 1.0), (2, 0.76), (1, 0.4), (2, 0.85), (2, 0.76), (1, 0.4)]
    with pytest.raises(GenerationError, match="drafts"):
        Settings(drafts=0).validate()
    with pytest.raises(GenerationError, match="drafts"):
        Settings(drafts=17).validate()


def test_a_ranker_for_other_models_is_refused_with_a_readable_error(tiny_assets, tmp_path):
    with pytest.raises(RuntimeError, match="retrain it"):
        Cantus.load(_with_ranker(tiny_assets, tmp_path, semantic="another-tokenizer"))
