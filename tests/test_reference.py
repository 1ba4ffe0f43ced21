""""Sounds like this": a reference recording's MuLan embedding becomes the stages' style prefix, alone or blended
with the prompt, and a recording that cannot serve (too short, silent, noise) gets a sentence saying so."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from app import studio
from engine import Cantus, GenerationError, Request, Segment, Settings, check_reference

SR = 24_000


def _music(seconds=4.0):
    t = np.arange(int(SR * seconds)) / SR
    notes = np.repeat([60, 64, 67, 72], int(SR * seconds / 4) + 1)[: len(t)]
    return (0.2 * np.sin(2 * np.pi * 440 * 2 ** ((notes - 69) / 12) * t)).astype(np.float32)


@pytest.mark.parametrize("audio,msg", [(_music(0.2), "at least"), (np.zeros(SR * 4, np.float32), "silent"),
                                       (np.random.default_rng(0).normal(0, 0.3, SR * 4).astype(np.float32), "noise")])
def test_a_recording_that_cannot_be_a_reference_gets_a_sentence(audio, msg, tmp_path):
    with pytest.raises(GenerationError, match=msg):
        check_reference(audio)
    path = tmp_path / "ref.wav"
    sf.write(path, audio, SR)
    with pytest.raises(studio.UserError, match=msg):
        studio.read_reference(str(path))


def test_the_reference_is_the_style_alone_or_blended_with_the_prompt(tiny_assets):
    model = Cantus.load(tiny_assets, backend="torch")
    ref = check_reference(_music())
    own = model.mulan.tokens(model.mulan.embed_audio(ref, SR)[None])[0]

    def tokens(prompt, weight):
        return model.style_tokens(Request([Segment(prompt, 2.0)], Settings(reference_weight=weight), reference=ref), 0)
    assert torch.equal(tokens("", 0.5), own), "alone, the reference is the whole style"
    assert torch.equal(tokens("calm piano", 1.0), own)
    assert torch.equal(tokens("calm piano", 0.0), model.text_tokens("calm piano"))
    audio = model.generate(Request([Segment("", 2.0)], Settings(duration=2.0), reference=ref))
    assert audio.shape == (2 * SR,) and np.isfinite(audio).all()
    with pytest.raises(GenerationError, match="share from 0 to 1"):
        Settings(reference_weight=1.5).validate()


def test_the_command_line_takes_a_reference_without_a_prompt(tmp_path, tiny_assets, capsys):
    from engine.generate import main
    sf.write(tmp_path / "ref.wav", _music(), SR)
    out = tmp_path / "o.wav"
    assert main(["--prompt", "", "--reference", str(tmp_path / "ref.wav"), "--duration", "1", "--assets",
                 str(tiny_assets), "--backend", "torch", "--out", str(out)]) == 0
    assert sf.info(out).duration == pytest.approx(1.0, abs=0.05)
    sf.write(tmp_path / "short.wav", _music(0.3), SR)
    assert main(["--prompt", "x", "--reference", str(tmp_path / "short.wav"), "--assets", str(tiny_assets),
                 "--out", str(out)]) == 2
    assert "at least" in capsys.readouterr().err


def test_the_music_keeps_the_references_tempo_and_key_unless_the_words_name_others(tiny_assets, tmp_path,
                                                                                 monkeypatch):
    """A 100 BPM A-minor reference conducts the beat grid at its tempo and pulls the semantic ids into A minor; a
    BPM or key in the words wins, and a hum keeps its own notes."""
    import json
    import shutil

    import engine.pipeline as G
    from engine.lm.stages import beat_grid
    from engine.semantic.keys import fit_key_profile, key_id, save_key_profile
    from tests.test_clip_tools import _a_minor_groove
    ref = check_reference(_a_minor_groove(100.0, 8.0))
    bpm, key = G.tempo_and_key(ref)
    assert abs(bpm - 100) <= 4 and key == key_id(9, "minor"), (bpm, key)
    assets = tmp_path / "assets"
    shutil.copytree(tiny_assets, assets)
    ids = torch.cat([torch.randint(0, 8, (20, 250)), torch.randint(8, 16, (20, 250))])
    table = fit_key_profile(ids, torch.tensor([0] * 20 + [key] * 20), 16)  # C major: ids 0-7, A minor: 8-15
    save_key_profile(table, assets / "semantic", json.loads((assets / "semantic" / "semantic.json").read_text())["version"])
    monkeypatch.setattr(G, "KEY_BIAS", 50.0)  # strong enough to decide every draw of the random tiny stage
    grids = []

    class Spy(G.StageSampler):
        def __init__(self, model, prefix, cond, *a, **k):
            if model.cfg.name == "semantic":
                grids.append(cond[0, 1].clone())
            super().__init__(model, prefix, cond, *a, **k)
    monkeypatch.setattr(G, "StageSampler", Spy)
    model = Cantus.load(assets, backend="torch")
    hum = np.repeat([1, 3, 5, 6, 8, 10, 12, 1], 6)
    for prompt, melody, want_bpm, allowed in (("", None, bpm, range(8, 16)), ("a tune at 90 bpm in C major", None, 90.0,
                                              range(0, 8)), ("", hum, bpm, range(16))):
        grids.clear()
        req = Request([Segment(prompt, 2.0)], Settings(duration=2.0), melody=melody, reference=ref)
        drawn = set(torch.cat(list(model.code_stream(req)), -1)[8].tolist())
        assert torch.equal(grids[0], beat_grid(want_bpm, 50)), prompt
        assert drawn <= set(allowed), (prompt, drawn)
    assert drawn & set(range(8)) and drawn & set(range(8, 16)), "a hum's notes are not pulled into the reference's key"
    grids.clear()
    model.generate(Request([Segment("a tune", 2.0)], Settings(duration=2.0)))
    assert (grids[0] == 4).all(), "no reference, no tempo named: no beat grid"
