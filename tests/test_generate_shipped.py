"""The shipped models, end to end: what a musician notices. (Slower than the tiny-model tests: real weights.)"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from engine import Cantus, Request, Segment, Settings

ASSETS = Path(__file__).resolve().parent.parent / "assets"
pytestmark = pytest.mark.skipif(not (ASSETS / "stages" / "coarse.json").exists(), reason="no shipped stages")


@pytest.fixture(scope="module")
def cantus():
    return Cantus.load(ASSETS)


def test_the_generated_clip_follows_the_hummed_melody(cantus, tiny_corpus):
    """With the hum, the hummed note is the audio's dominant pitch class far more often than with text alone
    (over seed offsets 0/10/20/30 the mean hit with the hum was 2.7-11.9x text alone's)."""
    from engine.data.dataset import CorpusDataset
    from engine.eval.generation import melody_match
    ds = CorpusDataset(tiny_corpus, "train", load_voice=True)
    with_m, without = [], []
    for i in range(3):
        ex = ds[i]
        hum = cantus.melody_tokens(ex.voice, ex.voice_rate)
        s = Settings(duration=8.0, seed=i)
        prompt = ex.captions[1]
        with_m.append(melody_match(cantus.generate(Request([Segment(prompt, 8.0)], s, melody=hum)), hum)[0])
        without.append(melody_match(cantus.generate(Request([Segment(prompt, 8.0)], s)), hum)[0])
    assert np.mean(with_m) > 2 * np.mean(without) and np.mean(with_m) > 0.25, (with_m, without)


def test_the_stages_read_the_prompt_through_the_shipped_prior(cantus):
    """The prefix tokens come from the prior's prediction of the music a prompt describes (engine.mulan.prior), not
    from the prompt's text embedding, and a saved clip records which prior made it: the same seed under another
    prior is other audio."""
    if cantus.mulan.prior is None:
        pytest.skip("the shipped MuLan has no prompt prior")
    prompts = ["slow meditative flute and guitar", "A melancholy waltz around 143 bpm.", "an energetic techno track"]
    m = cantus.mulan
    for p in prompts:
        assert torch.equal(cantus.text_tokens(p), m.tokens(m.embed_prompt([p]))[0])
    plain = m.tokens(m.embed_text(prompts))
    assert not torch.equal(torch.stack([cantus.text_tokens(p) for p in prompts]), plain)
    assert cantus.versions["prompt_prior"] == m.prior.cfg.version


def test_the_shipped_generator_streams_real_audio(cantus):
    req = Request([Segment("an energetic techno track", 3.0)], Settings(duration=3.0, seed=1))
    chunks = list(cantus.generate_stream(req))
    audio = np.concatenate(chunks)
    assert len(chunks) == 3 and audio.shape == (72_000,)
    rms = float(np.sqrt(np.mean(audio ** 2)))
    assert 0.005 < rms < 0.5 and np.abs(audio).max() <= 1.5, "audible, not silent, not blown up"


def _envelope_db(x: np.ndarray, hop: int = 120) -> np.ndarray:
    n = len(x) // hop
    return 10 * np.log10(np.mean(x[: n * hop].reshape(n, hop) ** 2, 1) + 1e-8)


def test_an_extension_starts_where_the_clip_ends(cantus, tiny_corpus):
    """'Extend' must not replay the end of the clip it continues: fed the true codes of what follows, the
    continuation decoder gives back the following audio at lag 0 (it lagged by 100 ms on 3 test clips: the context was
    cut to whole frames at its end, and the decoder's 60 ms delay re-rendered the context's last notes). The lag is
    the peak of the envelope correlation averaged over three clips: one clip's can be periodic (tiny train clip 0 has
    near-equal peaks at +5 and +20 ms, 0.461 / 0.463 with decoder istft-s28940), while a real shift moves them all."""
    from engine.data.dataset import CorpusDataset
    from engine.settings import context_audio
    ds = CorpusDataset(tiny_corpus, "train")
    lags = range(-30, 31)  # 5 ms steps: +-150 ms
    t = 24_000 * 4 + 700  # not a whole number of frames
    scores = []
    for i in range(3):
        a = ds[i].audio
        L = context_audio(a[:t]).shape[-1]
        codes = cantus.codec.encode(torch.from_numpy(a[t - L: t + 48_000])[None])[:, :, L // 480:]
        req = Request([Segment("x", 2.0)], Settings(duration=2.0), continuation=a[:t])
        out = np.concatenate(list(cantus.decode_stream(iter([codes[0]]), req)))
        e_out, e_ref = _envelope_db(out), _envelope_db(a[t: t + len(out)])
        scores.append([np.corrcoef(e_out[30 + k: len(e_out) - 30 + k], e_ref[30: len(e_ref) - 30])[0, 1] for k in lags])
    score = np.mean(scores, 0)
    assert abs(list(lags)[int(np.argmax(score))]) <= 2, f"the extension is shifted by {list(lags)[int(np.argmax(score))] * 5} ms"
    assert max(score) > 0.4, "the decoded continuation should resemble what follows"


def test_int8_step_graph_predicts_real_music_as_well_as_fp32(cantus, tiny_corpus, tmp_path):
    """Generation runs int8 step graphs; on real codes (teacher forced) they must predict as well as fp32."""
    import torch

    from engine.data.dataset import CorpusDataset
    from engine.export.stage_onnx import OnnxStage, export_stage
    from engine.lm import patterns
    from engine.lm.model import StageLM, masked_loss, shift_right
    model = StageLM.load(ASSETS / "stages", "coarse")
    export_stage(model, tmp_path)
    ex = CorpusDataset(tiny_corpus, "train")[0]
    audio = torch.from_numpy(ex.audio[: 24_000 * 8])[None]
    codes = cantus.codec.encode(audio)[:, :4]  # [1, 4, 400]
    sem = cantus.semantic.encode(audio)[:, None]  # [1, 1, 200]
    prefix = cantus.mulan.tokens(cantus.mulan.embed_audio(ex.audio, 24_000)[None])
    targets = patterns.delay(codes, model.cfg.vocab)
    inputs = shift_right(targets, model.cfg.vocab)
    absent = torch.tensor(model.cfg.cond_vocabs[1:])[None, :, None].expand(1, -1, sem.shape[-1])  # no hum
    cond = model.cond_embedding(torch.cat([sem, absent], 1), inputs.shape[-1])
    losses = {}
    for int8 in (False, True):
        o = OnnxStage(model, tmp_path, int8=int8)
        with torch.inference_mode():
            logits, _ = o.step(inputs, 0, cond, o.prefill(prefix))
        losses[int8] = float(masked_loss(logits, targets, model.cfg.vocab))
    assert losses[True] < losses[False] * 1.02, losses
