"""The stage transformer, its delay pattern and its sampler (tiny random models: behaviour, not quality)."""
from __future__ import annotations

import pytest
import torch

from engine.lm import patterns
from engine.lm.model import StageLM, masked_loss, shift_right
from engine.lm.sampler import StageSampler
from engine.lm.sampling import SamplingParams, guide, sample
from engine.lm.stages import BEAT_VOCAB, beat_grid, default_config, make_batch, noisy_melody, self_feed


@pytest.mark.parametrize("K,T", [(1, 7), (4, 1), (4, 13)])
def test_delay_matches_naive_loop_and_inverts(K, T):
    codes = torch.randint(0, 50, (2, K, T))
    d = patterns.delay(codes, pad=99)
    for b in range(2):
        for k in range(K):
            for s in range(T + K - 1):
                want = codes[b, k, s - k] if 0 <= s - k < T else 99
                assert d[b, k, s] == want
    assert torch.equal(patterns.undelay(d), codes)
    assert torch.equal(patterns.valid_mask(K, T), d[0] != 99)


def _tiny(name):
    torch.manual_seed(0)
    return StageLM(default_config(name, 16, codec_size=32, mulan_size=8, d_model=32, n_layer=2, n_head=2)).eval()


@pytest.mark.parametrize("name", ["semantic", "coarse", "fine"])
def test_kv_cache_and_per_step_conditioning_equal_full_forward(name):
    m = _tiny(name)
    cfg = m.cfg
    T = 20
    cond = torch.stack([torch.randint(0, v, (1, T)) for v in cfg.cond_vocabs], 1)
    S = T * cfg.cond_ratio + cfg.n_codebooks - 1
    tokens = torch.randint(0, cfg.vocab, (1, cfg.n_codebooks, S))
    prefix = torch.randint(0, 8, (1, 12))
    with torch.inference_mode():
        full = m(tokens, prefix, cond)
        ids = m.pad_cond(cond, S)
        cache, outs = m.prefill(prefix), []
        for s in range(S):
            c = m.cond_step_embedding(ids, s)[:, None]
            o, cache = m.step(tokens[:, :, s:s + 1], s, c, cache)
            outs.append(o)
    assert torch.allclose(torch.cat(outs, 2), full, atol=1e-5)


def test_the_model_is_causal():
    m = _tiny("coarse")
    x = torch.randint(0, 32, (1, 4, 30))
    cond = torch.randint(0, 16, (1, 1, 15))
    prefix = torch.zeros(1, 12, dtype=torch.long)
    y = x.clone()
    y[:, :, 20:] = (y[:, :, 20:] + 1) % 32
    with torch.inference_mode():
        a, b = m(x, prefix, cond), m(y, prefix, cond)
    assert torch.equal(a[:, :, :20], b[:, :, :20]) and not torch.equal(a[:, :, 20:], b[:, :, 20:])


def test_self_fed_inputs_carry_the_models_own_draws_in_the_share_asked():
    m = _tiny("coarse").train()
    with torch.no_grad():  # a model sure of code 7 everywhere: its draws are recognisable
        m.ln_f.weight.zero_()
        m.ln_f.bias.fill_(1.0)
        for head in m.heads:
            head.weight.zero_()
            head.weight[7] = 1.0  # logit 32 for code 7, 0 for the others
    tok = _tokens(32)
    tok["codec"] = tok["codec"] % 7  # no real code is a 7
    b = make_batch(m.cfg, tok, torch.arange(32), torch.Generator().manual_seed(0))
    assert self_feed(m, b, 0.0, torch.Generator()) is b
    fed = self_feed(m, b, 0.3, torch.Generator().manual_seed(1))
    assert m.training, "the trainer's mode is restored"
    assert fed["targets"] is b["targets"] and fed["prefix"] is b["prefix"] and fed["cond"] is b["cond"]
    pad = b["inputs"] == 32
    assert torch.equal(fed["inputs"] == 32, pad), "start ids, late-start tails and delay triangles stay pads"
    changed = fed["inputs"] != b["inputs"]
    assert (fed["inputs"][changed] == 7).all(), "every replaced code is the model's draw"
    assert 0.27 < changed.sum() / (~pad).sum() < 0.33


def test_training_steps_lower_the_loss_on_a_fixed_batch():
    m = _tiny("coarse").train()
    codes = torch.randint(0, 32, (2, 4, 24))
    targets = patterns.delay(codes, 32)
    inputs = shift_right(targets, 32)
    prefix, cond = torch.randint(0, 8, (2, 12)), torch.randint(0, 16, (2, 1, 12))
    opt = torch.optim.Adam(m.parameters(), 3e-3)
    first = None
    for _ in range(30):
        loss = masked_loss(m(inputs, prefix, cond), targets, 32)
        first = first if first is not None else float(loss.detach())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first


def test_sampler_keeps_prompt_codes_and_is_seeded():
    m = _tiny("coarse")
    prompt = torch.randint(0, 32, (4, 6))
    cond = torch.randint(0, 16, (1, 1, 10))
    prefix = torch.randint(0, 8, (1, 12))

    def run(seed):
        s = StageSampler(m, prefix, cond, 20, SamplingParams(temperature=1.0), torch.Generator().manual_seed(seed), prompt)
        while not s.done:
            s.advance()
        return s.codes()

    a, b, c = run(1), run(1), run(2)
    assert a.shape == (4, 20) and torch.equal(a[:, :6], prompt)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_drafts_are_drawn_as_one_batch_each_as_if_drawn_alone():
    """N generators draw N guided drafts in one batch; draft i is what generator i draws alone, so adding drafts never
    changes the first one (a seed's clip with one draft is the clip it always was)."""
    m = _tiny("coarse")
    prefix = torch.stack([torch.randint(0, 8, (12,)), torch.full((12,), 8)])  # conditional, null
    cond = torch.randint(0, 16, (1, 1, 10)).repeat(2, 1, 1)
    params = SamplingParams(temperature=1.0, guidance=3.0)

    def run(seeds):
        n = len(seeds)
        s = StageSampler(m, prefix.repeat_interleave(n, 0), cond.repeat_interleave(n, 0), 12, params,
                         [torch.Generator().manual_seed(k) for k in seeds])
        while not s.done:
            s.advance()
        return [s.codes(row=r) for r in range(n)]

    alone = [run([k])[0] for k in (5, 6, 7)]
    together = run([5, 6, 7])
    assert all(torch.equal(a, b) for a, b in zip(alone, together))
    assert not torch.equal(together[0], together[1])
    with pytest.raises(ValueError, match="prefix rows"):
        StageSampler(m, prefix, cond, 12, params, [torch.Generator(), torch.Generator(), torch.Generator()])


def test_guidance_batch_and_sampling_filters():
    logits = torch.tensor([[[1.0, 2.0, 3.0]], [[1.0, 1.0, 1.0]]])
    assert torch.allclose(guide(logits, 1.0), logits[:1])
    assert torch.allclose(guide(logits, 2.0), torch.tensor([[[1.0, 3.0, 5.0]]]))
    g = torch.Generator().manual_seed(0)
    lg = torch.tensor([0.0, 0.1, 5.0, 4.9])
    draws = {int(sample(lg, SamplingParams(top_k=2), g)) for _ in range(200)}
    assert draws == {2, 3}
    draws = {int(sample(lg, SamplingParams(top_p=0.4), g)) for _ in range(100)}
    assert draws == {2}
    assert int(sample(lg, SamplingParams(temperature=0.0), g)) == 2
    with pytest.raises(ValueError, match="top-p"):
        SamplingParams(top_p=0.0).validate()


def test_sampling_draws_follow_the_softmax():
    p = torch.tensor([0.1, 0.2, 0.0, 0.7])
    logits = torch.log(p + 1e-12).expand(20_000, 4)
    ids = sample(logits, SamplingParams(), torch.Generator().manual_seed(1))
    freq = torch.bincount(ids, minlength=4).float() / len(ids)
    assert torch.allclose(freq, p, atol=0.012), freq
    assert freq[2] == 0, "a zero-probability code is never drawn"


def _tokens(N=64):
    return {"semantic": torch.randint(0, 16, (N, 250)), "melody": torch.randint(0, 13, (N, 250)),
            "mulan_audio": torch.randint(0, 8, (N, 12)), "mulan_text": torch.randint(0, 8, (N, 3, 12)),
            "codec": torch.randint(0, 32, (N, 8, 500)), "tempo": torch.randint(60, 170, (N,)).float()}


def test_training_batches_pad_late_starts_and_drop_conditioning():
    cfg = default_config("semantic", 16, mulan_size=8, d_model=32, n_layer=1, n_head=2)
    N = 64
    tok = _tokens(N)
    b = make_batch(cfg, tok, torch.arange(N), torch.Generator().manual_seed(0))
    assert b["targets"].shape == (N, 1, 250) and torch.equal(b["inputs"][..., 1:], b["targets"][..., :-1])
    assert (b["prefix"] == 8).all(1).any(), "some prefixes are null (guidance)"
    assert (b["cond"][:, 0] == 13).all(-1).any(), "some melodies are absent (text only)"
    assert (b["cond"][:, 1] == BEAT_VOCAB).all(-1).any(), "some beat grids are absent (no BPM asked)"
    assert (b["targets"][:, 0, -1] == 16).any(), "late starts pad the tail"
    clean = make_batch(cfg, tok, torch.arange(N), torch.Generator().manual_seed(0), train=False)
    assert torch.equal(clean["targets"][:, 0], tok["semantic"])
    for i in range(N):  # the beat grid moves with a late start: it stays on the clip's beats
        late = int((b["targets"][i, 0] == 16).sum())
        if late and (b["cond"][i, 1, 0] != BEAT_VOCAB):
            want = beat_grid(float(tok["tempo"][i]), 250 - late, late)
            assert torch.equal(b["cond"][i, 1, : 250 - late], want)


def test_late_starts_reach_as_far_as_asked_and_no_further():
    cfg = default_config("coarse", 16, codec_size=32, mulan_size=8, d_model=32, n_layer=1, n_head=2)
    tok = _tokens(256)

    def padded(late_max):  # 25 Hz frames of padded tail per example (2 codec frames each, delay layout aside)
        b = make_batch(cfg, tok, torch.arange(256), torch.Generator().manual_seed(3), late_max=late_max)
        return (b["targets"][:, 0, :500] == 32).sum(-1) // 2

    default, long = padded(49), padded(125)
    assert default.max() <= 49 and long.max() <= 125
    assert long.max() > 100, "with late_max 125 some clips start 4-5 s late, as a long-form window's context does"
    assert (long == 0).float().mean() > 0.4, "half the clips still start on time"


def test_beat_grid_is_a_steady_quarter_beat_phase():
    g = beat_grid(120.0, 250)  # a beat every 12.5 frames at 25 Hz
    downbeats = torch.nonzero((g == 0) & (torch.roll(g, 1) == 3)).flatten()
    assert g[0] == 0 and torch.allclose(torch.diff(downbeats).float().mean(), torch.tensor(12.5), atol=0.1)
    assert set(g.tolist()) == {0, 1, 2, 3}
    assert torch.equal(beat_grid(97.0, 40, 100), beat_grid(97.0, 140)[100:]), "a later window continues the grid"


def test_guidance_training_drops_the_aligned_streams_with_the_prefix():
    cfg = default_config("coarse", 16, codec_size=32, mulan_size=8, d_model=32, n_layer=1, n_head=2)
    assert cfg.cond_dropout > 0
    b = make_batch(cfg, _tokens(256), torch.arange(256), torch.Generator().manual_seed(1))
    null = (b["prefix"] == 8).all(1)
    gone = (b["cond"][:, 0] == 16).all(-1)
    assert (null & gone).any(), "fully unconditional examples exist (guidance's second branch)"
    assert not (gone & ~null).any(), "the semantic ids are only dropped with the text"
    assert (null & ~gone).any()


@pytest.mark.parametrize("name", ["semantic", "coarse"])
def test_fine_tuning_init_adds_a_stream_without_changing_the_model(name):
    """The stream an older stage lacks (the semantic stage's beat grid, the coarse stage's melody) starts at zero."""
    from engine.train.stage import init_from
    sizes = {"codec_size": 32, "mulan_size": 8, "d_model": 32, "n_layer": 2, "n_head": 2}
    new_cfg = default_config(name, 16, melody=name == "coarse", **sizes)
    old_cfg = default_config(name, 16, **sizes)
    old_cfg.cond_vocabs = new_cfg.cond_vocabs[:1]
    torch.manual_seed(0)
    old, new = StageLM(old_cfg).eval(), StageLM(new_cfg).eval()
    init_from(new, old)
    T = 30
    x = torch.randint(0, new_cfg.vocab, (2, new_cfg.n_codebooks, T))
    prefix = torch.randint(0, 8, (2, 12))
    cond = torch.stack([torch.randint(0, v + 1, (2, T // new_cfg.cond_ratio)) for v in new_cfg.cond_vocabs], 1)
    with torch.inference_mode():
        assert torch.allclose(old(x, prefix, cond[:, :1]), new(x, prefix, cond), atol=1e-6)


def test_fine_tuning_init_may_add_layers_and_factorise_the_prefix_without_changing_the_model():
    from engine.train.stage import init_from
    sizes = {"codec_size": 32, "mulan_size": 8, "d_model": 32, "n_head": 2}
    torch.manual_seed(0)
    old = StageLM(default_config("coarse", 16, n_layer=2, **sizes)).eval()
    with torch.no_grad():  # tables in one 3-dimensional subspace, as trained tables nearly are
        basis = torch.randn(3, 32)
        for tab in old.prefix:
            tab.weight.copy_(torch.randn(9, 3) @ basis)
    T = 30
    x, prefix = torch.randint(0, 32, (2, 4, T)), torch.randint(0, 9, (2, 12))
    cond = torch.randint(0, 17, (2, 1, T // 2))
    with torch.inference_mode():
        ref = old(x, prefix, cond)
    for rank, layers in ((3, 2), (32, 4), (0, 3)):
        new = StageLM(default_config("coarse", 16, n_layer=layers, prefix_rank=rank, **sizes)).eval()
        init_from(new, old)
        assert sum(p.numel() for p in new.prefix.parameters()) == 12 * 9 * (rank or 32)
        with torch.inference_mode():
            assert torch.allclose(new(x, prefix, cond), ref, atol=1e-5), (rank, layers)
    low = StageLM(default_config("coarse", 16, n_layer=2, prefix_rank=2, **sizes)).eval()
    init_from(low, old)
    with torch.inference_mode():
        assert not torch.allclose(low(x, prefix, cond), ref, atol=1e-3), "rank 2 cannot hold rank-3 tables"
    with pytest.raises(SystemExit, match="may only add layers"):
        init_from(StageLM(default_config("coarse", 16, n_layer=1, **sizes)), old)


def test_a_coarse_stage_that_reads_the_melody_gets_the_clips_tune_and_learns_without_it_too():
    cfg = default_config("coarse", 16, codec_size=32, mulan_size=8, melody=True, d_model=32, n_layer=1, n_head=2)
    assert cfg.cond_vocabs == (16, 13)
    tok = _tokens(256)
    tok["melody"] = torch.randint(1, 13, (256, 25)).repeat_interleave(10, 1)  # notes held for 0.4 s, like a tune
    b = make_batch(cfg, tok, torch.arange(256), torch.Generator().manual_seed(1), train=False)
    assert torch.equal(b["cond"][:, 1], tok["melody"]) and torch.equal(b["cond"][:, 0], tok["semantic"])
    b = make_batch(cfg, tok, torch.arange(256), torch.Generator().manual_seed(1))
    absent = (b["cond"][:, 1] == 13).all(-1)
    assert 0.2 < absent.float().mean() < 0.5, "about 30% of examples without a melody (prompts without a hum)"
    kept = ~absent & (b["cond"][:, 1, -1] != 13)  # neither dropped nor started late
    assert (b["cond"][kept, 1] == tok["melody"][kept]).float().mean() > 0.7, "a tracker-like noisy copy of the tune"


def test_noisy_melody_stays_mostly_right():
    t = torch.randint(1, 13, (8, 25)).repeat_interleave(10, 1)  # notes held for 0.4 s, like a tune
    n = noisy_melody(t, torch.Generator().manual_seed(0))
    agree = (n == t).float().mean()
    assert 0.7 < agree < 1.0


@pytest.mark.parametrize("name", ["semantic", "coarse", "fine"])
def test_onnx_export_with_kv_cache_matches_torch(name, tmp_path):
    from engine.export.stage_onnx import OnnxStage, export_stage
    m = _tiny(name)
    export_stage(m, tmp_path)
    o = OnnxStage(m, tmp_path, int8=False)  # exact parity; the int8 graph is checked on real music
    G = 1 if name == "fine" else 2
    prefix = torch.randint(0, 8, (G, 12))
    cond = torch.stack([torch.randint(0, v, (G, 12)) for v in m.cfg.cond_vocabs], 1)
    toks = torch.randint(0, m.cfg.vocab, (G, m.cfg.n_codebooks, 5))
    with torch.inference_mode():
        ct, co = m.prefill(prefix), o.prefill(prefix)
        for a, b in ((0, 3), (3, 5)):  # a multi-step feed, then a shorter one on the grown cache
            emb = m.cond_embedding(cond, 5)[:, a:b]
            lt, ct = m.step(toks[..., a:b], a, emb, ct)
            lo, co = o.step(toks[..., a:b], a, emb, co)
            assert torch.allclose(lt, lo, atol=1e-4)
    prompt = torch.randint(0, m.cfg.vocab, (m.cfg.n_codebooks, 4))
    runs = []
    for model in (m, o):
        s = StageSampler(model, prefix, cond, 10, SamplingParams(temperature=0.0), torch.Generator(), prompt)
        while not s.done:
            s.advance()
        runs.append(s.codes())
    assert torch.equal(*runs)
