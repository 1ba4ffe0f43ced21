"""The evaluation report runs end to end (tiny models, tiny corpus) and compares itself with the previous one."""
from __future__ import annotations

import json

import numpy as np

from engine.eval.report import asked_bpm, asked_key, frechet, main


def test_the_generation_bench_reports_its_noise():
    from engine.eval.generation import markdown, standard_error

    assert abs(standard_error([0.1, 0.3, np.nan, 0.5, 0.7]) - np.std([0.1, 0.3, 0.5, 0.7], ddof=1) / 2) < 1e-12
    assert standard_error([0.4]) is None and standard_error([]) is None
    r = {"seconds": 10, "generate_s": 3.3, "rtf": 0.33, "first_chunk_s": 0.7, "torch_generate_s": 8.0, "torch_first_chunk_s": 1.5,
             "onnx_speedup": 2.4, "onnx_startup_s": 5.0, "torch_startup_s": 3.0, "peak_rss_mb": 1300, "n_clips": 48,
             "mcc_generated": 0.3, "mcc_real": 0.5, "mcc_ratio": 0.6, "mcc_ratio_se": 0.04, "melody_hit": 0.41, "melody_hit_se": 0.03,
             "melody_hit_text_only": 0.1, "melody_chroma_cos": 0.5, "melody_chroma_cos_text_only": 0.2, "melody_clips": 48,
             "tempo_within_8pct": 0.5, "tempo_within_8pct_real": 0.6, "tempo_prompts": 48}
    table = markdown(r, "x86_64, 2 threads", "2026-11-28")
    assert "= 0.60 ± 0.04 |" in table and "0.410 ± 0.030 / 0.100" in table


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
