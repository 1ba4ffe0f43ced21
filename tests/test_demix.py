"""The drum remover: what a "no drums" prompt's audio goes through (``engine.demix``)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from engine import Cantus, Request, Segment, Settings
from engine.audio import rechunk
from engine.demix import DemixConfig, DrumRemover, LiveRemover, without_drums

SHIPPED = Path(__file__).resolve().parents[1] / "assets" / "demix"


def _remover(mask_bias: float | None = None) -> DrumRemover:
    torch.manual_seed(0)
    m = DrumRemover(DemixConfig(channels=4)).eval()
    if mask_bias is not None:  # a constant mask: sigmoid(bias + 2)
        with torch.no_grad():
            m.out.weight.zero_()
            m.out.bias.fill_(mask_bias)
    return m


def _music(seconds: float = 3.0) -> np.ndarray:
    t = np.arange(int(seconds * 24_000)) / 24_000
    x = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.1 * np.sin(2 * np.pi * 661 * t)
    x[(t % 0.5) < 0.02] += np.random.default_rng(0).standard_normal(int(((t % 0.5) < 0.02).sum())) * 0.3  # clicks
    return x.astype(np.float32)


def test_a_streamed_clip_is_cleaned_exactly_as_the_whole_clip_whatever_the_chunks():
    m, x = _remover(), _music()
    whole = m.remove(x)
    assert whole.shape == x.shape and np.abs(whole - x).max() > 1e-3  # a random mask does change the audio
    for seed in range(3):
        rng, s, parts, i = np.random.default_rng(seed), m.stream(), [], 0
        while i < len(x):
            k = int(rng.integers(1, 20_000))
            parts.append(s.feed(x[i:i + k]))
            i += k
        parts.append(s.flush())
        streamed = np.concatenate(parts)
        assert streamed.shape == x.shape
        np.testing.assert_allclose(streamed, whole, atol=1e-5)


def test_a_stream_gives_back_all_but_a_fifth_of_a_second_at_once():
    s, x = _remover().stream(), _music(2.0)
    first = s.feed(x[:24_000])
    assert 0.7 * 24_000 < len(first) < 24_000  # what is final of the first second: its look-ahead is held back
    assert len(first) + len(s.feed(x[24_000:])) + len(s.flush()) == len(x)


def test_a_first_chunk_longer_by_the_lookahead_is_cleaned_and_handed_on_at_once():
    m, x = _remover(), _music(3.0)
    pulled = []

    def chunks():  # the decoder's chunks: the first one longer by the remover's look-ahead, as code_stream makes it
        bounds = [0, 12_000 + m.lookahead, 24_000 + m.lookahead, len(x)]
        for a, b in zip(bounds, bounds[1:]):
            pulled.append(b)
            yield x[a:b]
    out = rechunk(without_drums(chunks(), m), 12_000)
    assert len(next(out)) == 12_000 and len(pulled) == 1  # the first second's half is out before more is made
    rest = list(out)
    assert [len(c) for c in rest] == [12_000] * 5
    np.testing.assert_allclose(np.concatenate([x[:0], *rest]), m.remove(x)[12_000:], atol=1e-5)


def test_the_onnx_remover_cleans_as_the_torch_one(tmp_path, monkeypatch):
    """The app loads the remover for onnxruntime (twice as fast on one thread): the same audio comes out."""
    monkeypatch.setenv("CANTUS_CACHE", str(tmp_path))
    m, x = _remover(), _music()
    m.save(tmp_path / "demix")
    onnx = DrumRemover.load_if_present(tmp_path / "demix", "onnx", 1)
    assert onnx.onnx is not None and DrumRemover.load_if_present(tmp_path / "none") is None
    np.testing.assert_allclose(onnx.remove(x), m.remove(x), atol=1e-5)


def test_a_live_stream_switches_the_remover_on_and_off_without_a_gap_or_a_skip():
    """The jam: 'no drums' typed at 2 s and taken back at 4 s. Nothing is lost or played twice, the music is cleaned
    from the chunk the switch came at exactly as a remover running all along would clean it (it first reads what was
    played), and the music itself comes back at the next switch."""
    m, x = _remover(), _music(6.0)
    live, C, X = LiveRemover(m), 24_000, LiveRemover.XFADE
    out = [live(x[i * C:(i + 1) * C], on=i in (2, 3)) for i in range(6)]
    lag = C - len(out[2])  # what the remover holds back: less than its look-ahead, by where the frames fall
    assert 0 < lag <= m.lookahead and [len(o) for o in out[:2] + out[5:]] == [C, C, C]
    assert abs(len(out[3]) - C) <= m.cfg.hop and len(out[4]) > C  # the lag is given back when switched off
    played = np.concatenate(out)
    assert played.shape == x.shape
    cleaned = m.remove(x)
    np.testing.assert_array_equal(played[:2 * C], x[:2 * C])
    np.testing.assert_allclose(played[2 * C + X:4 * C], cleaned[2 * C + X:4 * C], atol=1e-5)
    np.testing.assert_array_equal(played[4 * C + X:], x[4 * C + X:])
    assert np.abs(np.diff(played[2 * C - 1:2 * C + X + 1])).max() < 2 * np.abs(np.diff(x)).max()  # no click


def test_a_mask_that_keeps_everything_gives_the_audio_back():
    x = _music()
    np.testing.assert_allclose(_remover(mask_bias=50.0).remove(x), x, atol=1e-5)


def test_a_prompt_that_refuses_drums_goes_through_the_remover_and_others_do_not(tiny_assets):
    model = Cantus.load(tiny_assets, backend="torch")
    req = lambda p: Request([Segment(p, 2.0)], Settings(duration=2.0, seed=3))  # noqa: E731
    as_made = {p: model.generate(req(p)) for p in ("a rock song with no drums", "a rock song")}
    model.drum_remover = _remover(mask_bias=-50.0)  # a remover that takes everything out
    silenced = model.generate(req("a rock song with no drums"))
    assert silenced.shape == as_made["a rock song with no drums"].shape
    assert np.abs(silenced).max() < 1e-3 < np.abs(as_made["a rock song with no drums"]).max()
    np.testing.assert_array_equal(model.generate(req("a rock song")), as_made["a rock song"])
    model.drum_remover = _remover()
    chunks = list(model.generate_stream(req("a rock song with no drums"), chunk_seconds=0.5))
    assert [len(c) for c in chunks] == [12_000] * 4  # the player still gets half seconds, none short
    np.testing.assert_allclose(np.concatenate(chunks), model.generate(req("a rock song with no drums")), atol=1e-4)


def test_a_story_loses_its_drums_only_in_the_segment_that_refuses_them(tiny_assets):
    model = Cantus.load(tiny_assets, backend="torch")
    story = Request([Segment("a rock song", 2.0), Segment("a rock song with no drums", 2.0), Segment("a rock song", 2.0)],
                    Settings(duration=6.0, seed=3))
    made = model.generate(story)
    model.drum_remover = _remover(mask_bias=-50.0)  # takes everything out
    cleaned, X = model.generate(story), LiveRemover.XFADE
    assert cleaned.shape == made.shape
    np.testing.assert_array_equal(cleaned[:48_000], made[:48_000])
    assert np.abs(cleaned[48_000 + X:96_000]).max() < 1e-3 < np.abs(made[48_000:96_000]).max()
    np.testing.assert_array_equal(cleaned[96_000 + X:], made[96_000 + X:])
    streamed = list(model.generate_stream(story))
    assert [len(c) for c in streamed] == [24_000] * 6
    np.testing.assert_allclose(np.concatenate(streamed), cleaned, atol=1e-4)


@pytest.mark.skipif(not (SHIPPED / "drums.json").is_file(), reason="no drum remover shipped in assets/demix")
def test_the_shipped_remover_takes_the_drums_out_of_a_band_and_keeps_the_rest(tiny_corpus):
    import json

    from engine.data.build import clip_arrangement, melody_pool
    from engine.data.render import Renderer
    from engine.data.stems import stems

    records = [json.loads(line) for line in (tiny_corpus / "train.jsonl").read_text().splitlines()]
    drummed = [r for r in records if "drums" in r["tags"]["programs"]][:3]
    assert drummed, "the tiny corpus has drummed clips"
    pool, renderer, remover = melody_pool(tiny_corpus, None), Renderer(), DrumRemover.load(SHIPPED)
    gaps = []
    for r in drummed:
        mix, rest = stems(renderer, clip_arrangement(r, pool))
        X, R = (remover.spectrum(torch.from_numpy(a)[None]) for a in (mix, rest))
        with torch.no_grad():
            mask = remover(X.abs())  # a mask is linear: what it leaves of each stem is the mask times that stem
        left = {k: 10 * np.log10(float((mask * S).abs().pow(2).sum() / S.abs().pow(2).sum()))
                for k, S in (("drums", X - R), ("rest", R))}
        assert left["rest"] > -2.5, (r["id"], left)  # the rest of the band stays
        gaps.append(left["rest"] - left["drums"])
    assert np.mean(gaps) > 1.5, gaps  # and the drums are cut more than it
