"""Loops: exactly N bars at the asked tempo, and no seam when repeated."""
from __future__ import annotations

import numpy as np
import pytest

from engine import Cantus, GenerationError, Request, Segment, Settings
from engine.loops import loop_samples, make_loop, seamless
from engine.settings import SAMPLE_RATE


def jump(x: np.ndarray, at: int) -> float:
    """The step between samples at-1 and at, against the signal's typical step."""
    steps = np.abs(np.diff(x))
    return float(abs(x[at] - x[at - 1]) / np.percentile(steps, 99))


def test_a_loop_of_a_tone_repeats_without_a_click():
    t = np.arange(3 * SAMPLE_RATE) / SAMPLE_RATE
    tone = (0.5 * np.sin(2 * np.pi * 220.3 * t)).astype(np.float32)  # no whole number of periods in the loop
    length, fade = int(1.37 * SAMPLE_RATE), SAMPLE_RATE // 4
    cut = np.tile(tone[:length], 2)
    assert jump(cut, length) > 3, "cut without the run-on, the join clicks"
    loop = seamless(tone, length, fade)
    assert len(loop) == length
    assert jump(np.tile(loop, 2), length) <= 1.0, "with it, the join is a step like any other"
    with pytest.raises(ValueError):
        seamless(tone[:length], length, fade)


def test_a_loop_is_exactly_its_bars_at_the_named_or_detected_tempo(tiny_assets, monkeypatch):
    import engine.loops as L
    model = Cantus.load(tiny_assets, backend="torch")
    loop = make_loop(model, Request([Segment("a techno track at 125 bpm", 10.0)], Settings(seed=1)), 2)
    assert len(loop.audio) == loop_samples(2, 125) == int(round(2 * 4 * 0.48 * SAMPLE_RATE))
    assert loop.tempo_from == "asked" and "125 BPM" in loop.describe()
    three = make_loop(model, Request([Segment("a waltz", 10.0)], Settings(seed=1, bpm=90)), 3, beats_per_bar=3)
    assert len(three.audio) == loop_samples(3, 90, 3)
    monkeypatch.setattr(L, "detect_tempo", lambda audio: 100.0)  # the tiny random model has no beat to find
    own = make_loop(model, Request([Segment("a tune", 10.0)], Settings(seed=1)), 1)
    assert own.tempo_from == "detected" and own.bpm == 100 and "detected" in own.describe()
    assert len(own.audio) == loop_samples(1, 100)
    with pytest.raises(GenerationError, match="one prompt"):
        make_loop(model, Request([Segment("a", 2.0), Segment("b", 2.0)]), 2)


def test_the_loop_bench_hears_a_seam_and_passes_a_seamless_join():
    from engine.eval.loops import beat_measures, join_measures
    rng = np.random.default_rng(0)
    t = np.arange(10 * SAMPLE_RATE) / SAMPLE_RATE
    pulse = np.exp(-((t % 0.5) / 0.05))  # a decaying hit on every beat at 120 BPM
    music = (0.3 * pulse * rng.standard_normal(t.size) + 0.1 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    length = loop_samples(4, 120)
    loop = seamless(music, length, SAMPLE_RATE // 2)
    joined = join_measures(loop, 120)
    assert joined["join_spectral_beats"] and joined["join_level_beats"], "the join changes the sound as a beat does"
    beats = beat_measures(loop, 120)
    assert beats["tempo_ok"] and beats["phase_ok"], beats
    seam = loop.copy()
    seam[length // 2 + SAMPLE_RATE // 4:] *= 0.25  # 12 dB quieter from between two beats: the join jumps up
    assert not join_measures(seam, 120)["join_level_beats"]
