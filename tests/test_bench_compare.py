"""The generation bench and its paired comparison of two asset folders (how a candidate model is judged before it
replaces a shipped one), end to end on tiny models."""
from __future__ import annotations

import json
import shutil

import torch

from engine.eval.bench import main
from engine.lm.model import StageLM


def test_a_folder_compared_with_itself_differs_by_nothing_and_a_changed_stage_shows(tiny_corpus, tiny_assets, tmp_path):
    rows, md = tmp_path / "rows.json", tmp_path / "bench.md"
    args = ["compare", "--corpus", str(tiny_corpus), "--clips", "2", "--seconds", "3", "--a", str(tiny_assets)]
    assert main(args + ["--b", str(tiny_assets), "--rows", str(rows), "--append", str(md)]) == 0
    same = json.loads(rows.read_text())
    assert len(same["rows"]) == 2 and same["summary"]["clips"] == 2
    for key in ("mcc", "tempo"):
        assert same["summary"][f"{key}_diff"][0] == 0.0, "same folder, same seeds: bit-identical clips"
    assert any("hum_a" in r for r in same["rows"]), "the clips' hums were used"
    table = md.read_text()
    assert "| MuLan cycle consistency (ratio to the real clips) |" in table and "| b - a, paired |" in table

    other = tmp_path / "other"
    shutil.copytree(tiny_assets, other)
    coarse = StageLM.load(other / "stages", "coarse")
    with torch.no_grad():
        for tab in coarse.tok:
            tab.weight.mul_(-3.0)
    coarse.save(other / "stages")
    assert main(args + ["--b", str(other), "--rows", str(rows)]) == 0
    changed = json.loads(rows.read_text())
    assert [r["mcc_a"] for r in changed["rows"]] == [r["mcc_a"] for r in same["rows"]], "a is judged the same way"
    assert any(r["mcc_b"] != r["mcc_a"] for r in changed["rows"]), "another coarse stage makes other clips"


def test_the_generation_bench_runs_end_to_end_on_tiny_models(tiny_corpus, tiny_assets):
    from engine.eval.generation import bench_generation, markdown

    r = bench_generation(tiny_corpus, 2, str(tiny_assets), seconds=2.0)
    assert r["n_clips"] == r["tempo_prompts"] == 2 and r["melody_clips"] >= 1
    assert abs(r["mcc_ratio"] - r["mcc_generated"] / r["mcc_real"]) < 1e-9
    assert 0.0 <= r["melody_hit"] <= 1.0 and r["onnx_speedup"] > 0 and r["peak_rss_mb"] > 0
    assert "| MuLan cycle consistency, generated / real (2 test prompts) |" in markdown(r, "x86_64", "2026-11-29")
