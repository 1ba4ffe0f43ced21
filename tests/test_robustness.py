"""What users do to the public inputs: odd prompts, odd recordings, odd settings. Each gets music or a clear
message — never a crash or a hang."""
from __future__ import annotations

import subprocess

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.studio import UserError, hear, settings_from_ui
from engine import Cantus, GenerationError


@pytest.fixture(scope="module")
def cantus(tiny_assets):
    return Cantus.load(tiny_assets, backend="torch")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=300) | st.sampled_from(["", "   \n\t", "🎻🎶 " * 50, "流れる琴の音", "музыка для флейты",
                                                  "a" * 10_000, "\x00\x01", "slow\u200bflute"]))
def test_any_prompt_gets_tokens_or_a_clear_message(cantus, prompt):
    try:
        ids = cantus.text_tokens(prompt)
    except GenerationError as e:
        assert "empty" in str(e)
        assert not prompt.split()
        return
    assert ids.shape == (12,)


def _hum(sr, seconds=2.0, channels=1):
    t = np.arange(int(sr * seconds)) / sr
    x = 0.3 * np.sin(2 * np.pi * 392 * t) * np.minimum(1, t * 20)
    return np.stack([x] * channels, 1) if channels > 1 else x


@pytest.mark.parametrize("sr", [8_000, 16_000, 44_100, 48_000, 96_000])
@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24", "PCM_32", "FLOAT"])
def test_hums_at_any_rate_and_bit_depth_are_heard(tmp_path, sr, subtype):
    path = tmp_path / "hum.wav"
    sf.write(path, _hum(sr), sr, subtype=subtype)
    h = hear(str(path))
    assert "G" in h.summary() and (h.tokens == 8).mean() > 0.6  # G = pitch class 7 -> token 8


@pytest.mark.parametrize("fmt", ["flac", "ogg", "mp3"])
def test_compressed_and_stereo_hums_are_heard(tmp_path, fmt):
    wav = tmp_path / "hum.wav"
    sf.write(wav, _hum(44_100, channels=2), 44_100)
    out = tmp_path / f"hum.{fmt}"
    subprocess.run(["ffmpeg", "-y", "-loglevel", "error", "-i", str(wav), str(out)], check=True)
    assert (hear(str(out)).tokens == 8).mean() > 0.6


@pytest.mark.parametrize("make,msg", [
    (lambda p: sf.write(p, np.zeros(48_000), 16_000), "silent"),
    (lambda p: sf.write(p, _hum(16_000, 0.1), 16_000), "at least"),
    (lambda p: p.write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt garbage"), ""),
    (lambda p: p.write_bytes(b""), "empty"),
    (lambda p: p.write_bytes(b"%PDF-1.4 not sound at all" * 100), ""),
    (lambda p: sf.write(p, np.random.default_rng(0).normal(0, 0.3, 48_000), 16_000), "melody"),
])
def test_unusable_recordings_get_a_readable_message(tmp_path, make, msg):
    p = tmp_path / "rec.wav"
    make(p)
    with pytest.raises(UserError) as e:
        hear(str(p))
    text = str(e.value)
    assert msg in text and len(text) < 300 and "Traceback" not in text


def test_clipped_and_dc_offset_hums_are_heard(tmp_path):
    x = np.clip(_hum(16_000) * 10, -1, 1) * 0.99 + 0.2
    p = tmp_path / "clip.wav"
    sf.write(p, x, 16_000, subtype="FLOAT")
    assert (hear(str(p)).tokens == 8).mean() > 0.5


def test_a_ten_minute_recording_is_refused_quickly(tmp_path):
    p = tmp_path / "long.wav"
    sf.write(p, np.zeros(8_000 * 600, np.int16), 8_000)
    with pytest.raises(UserError, match="long|limit"):
        hear(str(p))


@pytest.mark.parametrize("kw,msg", [({"duration": 0}, "duration"), ({"duration": 1e9}, "duration"),
                                    ({"seed": -1}, "seed"), ({"temperature": 99}, "temperature"),
                                    ({"guidance": -2}, "guidance"), ({"top_k": -5}, "top-k"),
                                    ({"duration": float("nan")}, "duration"), ({"bpm": 500}, "BPM"),
                                    ({"bpm": -20}, "BPM"), ({"drafts": 0}, "drafts"), ({"drafts": 40}, "drafts")])
def test_extreme_settings_get_a_clear_message(kw, msg):
    args = {"duration": 10, "seed": 0, "temperature": 1.0, "top_k": 0, "guidance": 3.0, **kw}
    with pytest.raises(UserError, match=msg):
        settings_from_ui(**args)


def test_remix_brings_back_the_drafts_a_clip_was_made_with():
    """A clip saved with its settings remixes with the same number of semantic drafts; one saved before drafts
    existed (no 'drafts' in its settings) was made from one draft, so it remixes with one."""
    from pathlib import Path

    from app.library import Clip
    from app.studio import remix_values
    new = Clip("a", {"prompt": "x", "seed": 3, "settings": {"duration": 10, "drafts": 4}}, Path("a.wav"))
    old = Clip("b", {"prompt": "x", "seed": 3, "settings": {"duration": 10}}, Path("b.wav"))
    assert remix_values(new)["drafts"] == 4 and remix_values(old)["drafts"] == 1
    assert settings_from_ui(10, 3, 1.0, 0, 3.0, 0, remix_values(new)["drafts"]).drafts == 4


def test_a_hummed_clip_does_not_claim_drafts_it_never_drew():
    """Drafts are ranked only for text alone: a hummed clip's description says it had none (its saved slider value
    still remixes back), a text-alone clip's shows its drafts."""
    from pathlib import Path

    from app.library import Clip
    from app.studio import describe, remix_values
    settings = {"duration": 10, "drafts": 8}
    hummed = Clip("a", {"prompt": "x", "seed": 3, "melody_file": "hum.wav", "settings": settings}, Path("a.wav"))
    text = Clip("b", {"prompt": "x", "seed": 3, "settings": settings}, Path("b.wav"))
    assert "8 drafts" not in describe(hummed) and "Drafts: none (the hum sets the melody" in describe(hummed)
    assert "8 drafts" in describe(text) and "Drafts: none" not in describe(text)
    assert "Settings: seed 3, temperature x1.0, guidance 3, top-k off, 8 drafts" in describe(text)
    assert remix_values(hummed)["drafts"] == 8
