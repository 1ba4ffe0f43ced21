"""The shipped generator reproduces its recorded output bit for bit: for fixed prompts, hums and seeds, the codes it
samples and the audio it decodes are the ones in ``tests/data/golden.json``. A change meant to keep behaviour (a
refactor, a new loader) must pass this unchanged; a change meant to alter the music (new weights, a new sampler)
records the new output with ``python -m tests.test_golden --write`` in the same commit, so the diff shows it.

The torch backend with one thread is used: its arithmetic does not depend on how work is split across threads."""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
ASSETS = ROOT / "assets"
GOLDEN = Path(__file__).resolve().parent / "data" / "golden.json"
pytestmark = pytest.mark.skipif(not (ASSETS / "stages" / "coarse.json").exists(), reason="no shipped stages")


def hum(sr: int = 16_000) -> tuple[np.ndarray, int]:
    """A sung scale fragment (C D E F G F E D, half a second each): a hum the tracker hears."""
    t = np.arange(sr // 2) / sr
    notes = [60, 62, 64, 65, 67, 65, 64, 62]
    return np.concatenate([0.3 * np.sin(2 * np.pi * 440 * 2 ** ((n - 69) / 12) * t) * np.hanning(len(t)) ** 0.2
                           for n in notes]).astype(np.float32), sr


def cases(model):
    from engine import Request, Segment, Settings
    a, sr = hum()
    return {
        "text, 4 drafts": Request([Segment("slow meditative flute and guitar", 2.0)], Settings(duration=2.0, seed=7,
                                                                                                 drafts=4)),
        "hum, named tempo": Request([Segment("a jazz trumpet at 100 bpm", 2.0)], Settings(duration=2.0, seed=1),
                                    melody=model.melody_tokens(a, sr)),
    }


def outputs(model) -> dict:
    """For each case: the codes the pipeline samples and the sha256 of the clip it decodes."""
    out = {}
    for name, req in cases(model).items():
        codes = torch.cat(list(model.code_stream(req, chunk_frames=10 ** 9)), -1)
        audio = model.generate(req)
        out[name] = {"codes": codes.tolist(), "audio_sha256": hashlib.sha256(audio.tobytes()).hexdigest(),
                     "samples": len(audio)}
    return out


def load_model():
    from engine import Cantus
    torch.set_num_threads(1)
    return Cantus.load(ASSETS, backend="torch")


def test_the_shipped_generator_reproduces_its_recorded_output():
    want = json.loads(GOLDEN.read_text())
    got = outputs(load_model())
    for name, w in want.items():
        g = got[name]
        assert g["codes"] == w["codes"], f"{name}: the sampled codes changed"
        assert (g["samples"], g["audio_sha256"]) == (w["samples"], w["audio_sha256"]), f"{name}: the audio changed"


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python -m tests.test_golden --write   (records the shipped generator's output)")
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(json.dumps(outputs(load_model())) + "\n")
    print(f"wrote {GOLDEN}")
