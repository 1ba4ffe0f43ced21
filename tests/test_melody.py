"""Melody tokens from hums: right pitch classes on the corpus's voice renditions, clear errors on bad recordings."""
import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from engine.melody import VOCAB, MelodyError, melody_from_audio, tokens_from_midi


def _hum(sr=16_000, notes=(60, 62, 64, 65, 67, 65, 64, 62), note_s=0.4, harmonics=6):
    """A synthetic hum: harmonic tone per note with a little vibrato."""
    t = np.arange(int(sr * note_s)) / sr
    out = []
    for p in notes:
        f = 440 * 2 ** ((p - 69) / 12) * (1 + 0.003 * np.sin(2 * np.pi * 5.5 * t))
        ph = 2 * np.pi * np.cumsum(f) / sr
        x = sum(np.sin(h * ph) / h ** 1.5 for h in range(1, harmonics + 1))
        out.append(x * np.minimum(1, np.minimum(t, t[-1] - t) / 0.03))
    return (0.3 * np.concatenate(out) / np.abs(np.concatenate(out)).max()).astype(np.float32)


def test_tokens_fold_octaves():
    assert tokens_from_midi(np.array([60, 72, 48.4, np.nan, 0, 61])).tolist() == [1, 1, 1, 0, 0, 2]
    assert VOCAB == 13


@pytest.mark.parametrize("sr", [8_000, 22_050, 48_000, 96_000])
def test_synthetic_hum_gives_its_notes_at_any_rate(sr):
    notes = (60, 62, 64, 65, 67, 65, 64, 62)
    tr = melody_from_audio(_hum(sr, notes), sr)
    assert len(tr.tokens) == round(len(notes) * 0.4 * 25)
    frames = tr.tokens.reshape(len(notes), 10)[:, 3:8]  # the settled middle of each note
    want = np.array([1 + p % 12 for p in notes])[:, None]
    assert (frames == want).mean() > 0.9


def test_stereo_clipped_and_dc_offset_hums_still_work():
    x = _hum(44_100)
    stereo = np.stack([x, 0.5 * x], 1)
    clipped = np.clip(x * 8, -0.5, 0.5)
    for audio in (stereo, clipped, x + 0.3):
        tr = melody_from_audio(audio, 44_100)
        assert tr.voiced.mean() > 0.7


@pytest.mark.parametrize("audio,sr,match", [
    (np.zeros(16_000 * 3, np.float32), 16_000, "silent"),
    (np.random.default_rng(0).normal(0, 0.1, 16_000 * 3).astype(np.float32), 16_000, "no melody detected"),
    (np.ones(1_600, np.float32) * 0.1, 16_000, "at least"),
    (np.zeros(16_000 * 301, np.float32), 16_000, "minutes"),
    (np.full(16_000, np.nan, np.float32), 16_000, "invalid"),
])
def test_bad_recordings_get_clear_errors(audio, sr, match):
    with pytest.raises(MelodyError, match=match):
        melody_from_audio(audio, sr)


@pytest.mark.slow
def test_voice_renditions_of_the_corpus_match_their_melody(tiny_corpus):
    hits = total = 0
    for line in (tiny_corpus / "train.jsonl").read_text().splitlines()[:10]:
        r = json.loads(line)
        v, sr = sf.read(tiny_corpus / r["voice"], dtype="float32")
        tr = melody_from_audio(v, sr)
        truth = np.array(r["melody"]["track"], dtype=float)
        want = tokens_from_midi(np.where(truth > 0, truth, np.nan))
        n = min(len(want), len(tr.tokens))
        voiced = want[:n] > 0
        hits += int((tr.tokens[:n][voiced] == want[:n][voiced]).sum())
        total += int(voiced.sum())
    assert hits / total >= 0.85, hits / total


def test_cli_prints_json_and_fails_cleanly(tmp_path):
    f = tmp_path / "hum.wav"
    sf.write(f, _hum(16_000), 16_000)
    out = subprocess.run([sys.executable, "-m", "engine.melody", str(f), "--json"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["frame_rate"] == 25 and len(data["tokens"]) == len(data["midi"]) == 80
    bad = tmp_path / "bad.wav"
    bad.write_text("not audio")
    out = subprocess.run([sys.executable, "-m", "engine.melody", str(bad)], capture_output=True, text=True)
    assert out.returncode == 2 and out.stderr.startswith("error:") and out.stderr.count("\n") == 1
