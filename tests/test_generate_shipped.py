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


@pytest.mark.xfail(strict=False, reason="measured 2026-11-22: the semantic stage follows the hum (85% of voiced frames "
                   "vs 7% text-only) but the under-trained coarse stage (valid accuracy 6%) does not yet render it: "
                   "dominant pitch class 0.06 with the hum vs 0.08 without")
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
