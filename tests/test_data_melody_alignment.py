"""The labelled melody is what the lead instrument actually plays: a pitch tracker on lead-only renders agrees."""
import numpy as np
import pytest
import torch

from engine.data.arrange import arrange
from engine.data.build import melody_track
from engine.data.melodies import load_melodies
from engine.data.plan import MelodyPool, plan_clip
from engine.data.render import Renderer

# PESTO reports a note ~20 ms after its MIDI onset (its analysis window plus the soundfont's attack); compare there.
TRACKER_LAG_S = 0.02


def _pesto_midi(audio: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray]:
    import pesto

    ts, f0, _, _ = pesto.predict(torch.from_numpy(audio), sr, step_size=10.0)
    return ts.numpy() / 1000.0, 69 + 12 * np.log2(np.maximum(f0.numpy(), 1e-3) / 440.0)


@pytest.mark.slow
def test_lead_render_matches_the_melody_track_on_90_percent_of_voiced_frames(score_paths):
    pool = MelodyPool(load_melodies(None, paths=score_paths, progress=False).melodies)
    renderer = Renderer()
    hits = total = 0
    styles = set()
    for i in range(16):
        spec, melody = plan_clip(i, 21, pool)
        styles.add(spec.style)
        arr = arrange(melody, spec)
        audio = renderer.render(arr, roles=("lead",))
        track = np.array(melody_track(arr.lead, spec.duration))
        ts, midi = _pesto_midi(audio, 24_000)
        est = np.interp((np.arange(len(track)) + 0.5) / 25 + TRACKER_LAG_S, ts, midi)
        voiced = track > 0
        hits += int(np.sum(np.abs(est[voiced] - track[voiced]) < 0.75))
        total += int(voiced.sum())
    renderer.close()
    assert len(styles) >= 8
    assert hits / total >= 0.90, hits / total


@pytest.mark.slow
def test_voice_rendition_keeps_the_melody_pitch_classes(score_paths):
    from engine.audio import resample
    from engine.data.voice import render_voice

    pool = MelodyPool(load_melodies(None, paths=score_paths, progress=False).melodies)
    hits = total = 0
    for i in range(12):
        spec, melody = plan_clip(i, 22, pool)
        arr = arrange(melody, spec)
        v = render_voice(arr.lead, spec.duration, spec.voice_kind, spec.voice_rate, spec.voice_seed)
        assert v.audio.dtype == np.float32 and np.abs(v.audio).max() <= 1.0
        track = np.array(melody_track(arr.lead, spec.duration))
        ts, midi = _pesto_midi(resample(v.audio, v.sample_rate, 16_000), 16_000)
        est = np.interp((np.arange(len(track)) + 0.5) / 25 + TRACKER_LAG_S, ts, midi)
        voiced = track > 0
        err = (est[voiced] - track[voiced] + 6) % 12 - 6
        hits += int(np.sum(np.abs(err) < 0.75))
        total += int(voiced.sum())
    # imperfect on purpose (scoops, vibrato, ±30 cent drift, timing jitter) yet clearly the same tune
    assert hits / total >= 0.75, hits / total
