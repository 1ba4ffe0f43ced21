"""The evaluation report runs end to end (tiny models, tiny corpus) and compares itself with the previous one."""
from __future__ import annotations

import json

import numpy as np

from engine.eval.report import asked_bpm, asked_key, frechet, main


def test_prompt_parsing_and_frechet_distance():
    assert asked_key("in the key of Bb major. The chords") == (10, "major")
    assert asked_key("led by a flute in a minor key.") == (None, "minor")
    assert asked_key("a calm piece") == (None, None)
    assert asked_bpm("A melancholy waltz around 143 bpm.") == 143.0 and asked_bpm("slow waltz") is None
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(400, 4)), rng.normal(size=(400, 4))
    assert frechet(a, b) < 0.2 < frechet(a, b + 1.0)  # same distribution ~0; a shifted mean costs |shift|^2 = 4


def test_report_writes_markdown_plots_and_compares_with_the_previous_one(tiny_corpus, tiny_assets, tmp_path):
    out = tmp_path / "eval"
    args = ["--out", str(out), "--corpus", str(tiny_corpus), "--assets", str(tiny_assets), "--clips", "3",
            "--hums", "1", "--codec-clips", "1", "--seconds", "4", "--cache", str(tmp_path / "cache")]
    assert main(args) == 0
    first = json.loads((out / "report.json").read_text())
    assert first["clips"] == 3 and 0 <= first["kld"] and np.isfinite(first["fd_tagger_generated"])
    for png in ("tags.png", "conditioning.png", "codec_speed.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    assert "| — |" in (out / "report.md").read_text()  # nothing to compare with yet
    assert main(args) == 0
    md = (out / "report.md").read_text()
    row = next(line for line in md.splitlines() if line.startswith("| MCC of generated clips"))
    assert row.split("|")[3].strip() == f"{first['mcc_generated']:.3f}", row  # the previous run's number


def test_report_without_a_corpus_says_how_to_build_one(tmp_path, capsys):
    assert main(["--out", str(tmp_path / "o"), "--corpus", str(tmp_path / "nothing")]) == 2
    assert "engine.data.build" in capsys.readouterr().err
