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
