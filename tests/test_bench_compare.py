"""The generation bench and its paired comparison of two asset folders (how a candidate model is judged before it
replaces a shipped one), end to end on tiny models."""
from __future__ import annotations

import json
import shutil

import torch

from engine.eval.bench import main
from engine.lm.model import StageLM


def _changed(assets, tmp_path, stage: str):
    """A copy of ``assets`` whose ``stage`` reads its input tokens otherwise (token tables x -3)."""
    other = tmp_path / f"other-{stage}"
    shutil.copytree(assets, other)
    model = StageLM.load(other / "stages", stage)
    with torch.no_grad():
        for tab in model.tok:
            tab.weight.mul_(-3.0)
    model.save(other / "stages")
    return other


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

    other = _changed(tiny_assets, tmp_path, "coarse")
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


def test_the_fine_stage_pair_sees_nothing_between_equals_and_a_change_between_others(tiny_corpus, tiny_assets,
                                                                                      tmp_path):
    from engine.train import tokenize
    tokens = tmp_path / "tokens"
    assert tokenize.main(["--data", str(tiny_corpus), "--out", str(tokens), "--features", str(tmp_path / "feats"),
                          "--codec", str(tiny_assets / "codec"), "--mulan", str(tiny_assets / "mulan"),
                          "--semantic", str(tiny_assets / "semantic"), "--only", "codec", "semantic", "mulan",
                          "--splits", "valid"]) == 0
    rows = tmp_path / "rows.json"
    args = ["finepair", "--tokens", str(tokens), "--corpus", str(tiny_corpus), "--clips", "2", "--a", str(tiny_assets),
            "--rows", str(rows)]
    assert main(args + ["--b", str(tiny_assets)]) == 0
    same = json.loads(rows.read_text())["summary"]
    assert same["diff"] == 0.0 and same["b_better"] == 0.0, "the same stage, the same draws"
    assert main(args + ["--b", str(_changed(tiny_assets, tmp_path, "fine"))]) == 0
    changed = json.loads(rows.read_text())["summary"]
    assert changed["a"] == same["a"] and changed["b"] != same["b"], "another fine stage renders the clips otherwise"
