"""The text-only prompt-adherence bench (the MCC measure): rows per prompt and seed, and candidates paired with a
base run of the same prompts and seeds, end to end on tiny models."""
from __future__ import annotations

import json

import pytest

from engine.eval.bench import main
from engine.eval.textonly import summary


def test_a_run_paired_with_itself_differs_by_nothing_and_other_settings_show(tiny_corpus, tiny_assets, tmp_path):
    base, other, md = tmp_path / "base.json", tmp_path / "other.json", tmp_path / "bench.md"
    args = ["textonly", "--corpus", str(tiny_corpus), "--prompts", "2", "--seconds", "2", "--seeds", "0", "50",
            "--assets", str(tiny_assets)]
    assert main(args + ["--rows", str(base)]) == 0
    rows = json.loads(base.read_text())["rows"]
    assert len(rows) == 4 and {r["seed"] - r["clip"] for r in rows} == {0, 50}
    assert all(set(r["tags"]) <= {"style", "family", "tempo_bucket", "mode"} and -1 <= r["mcc"] <= 1 for r in rows)
    # the same run again, paired with the first: the same clips, so every paired difference is exactly zero
    assert main(args + ["--against", str(base), "--append", str(md)]) == 0
    assert "| MuLan cycle consistency, ratio to the real clips |" in md.read_text()
    assert "+0.000 ± 0.000" in md.read_text()
    # guidance off makes other clips: the MCC moves for some prompt
    assert main(args + ["--guidance", "1", "--rows", str(other)]) == 0
    s = summary(json.loads(other.read_text())["rows"], rows)
    assert s["paired"]["mcc"][0] != 0.0 and s["base"]["mcc_ratio"] == pytest.approx(summary(rows)["mcc_ratio"])
    assert s["mcc_ratio"] == pytest.approx(s["mcc"] / s["mcc_real"])


def test_rows_of_other_seeds_are_refused_with_a_readable_error(tmp_path, capsys):
    row = {"clip": 0, "seed": 0, "seconds": 10.0, "caption": "a calm folk tune", "real": 0.5, "mcc": 0.4,
           "tags": {"style": True}}
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps({"rows": [row]}))
    b.write_text(json.dumps({"rows": [{**row, "seed": 100_000}]}))
    with pytest.raises(SystemExit) as e:
        main(["textonly", "--from", str(a), "--against", str(b)])
    assert e.value.code == 2 and "no counterpart (clip, seed)" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text("not json")
    with pytest.raises(SystemExit):
        main(["textonly", "--from", str(tmp_path / "bad.json")])
    assert "is not a rows file of bench textonly" in capsys.readouterr().err


def test_paired_differences_are_per_prompt_means_over_seeds():
    def row(clip, seed, mcc, style):
        return {"clip": clip, "seed": seed, "seconds": 10.0, "caption": f"p{clip}", "real": 0.5, "mcc": mcc,
                "tags": {"style": style}}
    base = [row(0, 0, 0.2, False), row(0, 9, 0.4, True), row(1, 1, 0.3, True), row(1, 10, 0.3, True)]
    new = [row(0, 0, 0.3, True), row(0, 9, 0.5, True), row(1, 1, 0.3, True), row(1, 10, 0.5, False)]
    s = summary(new, base)
    # prompt 0: +0.1, +0.1 -> 0.1; prompt 1: 0, +0.2 -> 0.1; as a ratio to the real clips' 0.5: +0.2, no spread
    assert s["paired"]["mcc"] == pytest.approx((0.2, 0.0))
    # style: prompt 0 +0.5, prompt 1 -0.5 -> mean 0, standard error 0.5
    assert s["paired"]["tag:style"] == pytest.approx((0.0, 0.5))
    assert s["mcc_ratio_by_seed"] == {"0": pytest.approx(0.6), "9": pytest.approx(1.0)}
