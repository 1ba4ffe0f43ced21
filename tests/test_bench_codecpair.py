"""The paired codec comparison: a codec against itself differs by exactly nothing; against the shipped codec with a
broken encoder it reports that codec's round trips as worse, clip by clip, and the bench command writes its table and rows."""
import json
from pathlib import Path

import numpy as np
import torch

from engine.codec import Codec
from engine.eval import bench
from engine.eval.codec_pair import run, summary

ASSETS = Path(__file__).resolve().parents[1] / "assets"


def test_a_codec_against_itself_differs_by_nothing(tiny_corpus, tiny_assets):
    r = run(tiny_corpus, 2, tiny_assets / "codec", tiny_assets / "codec", tiny_assets / "semantic")
    s = r["summary"]
    assert s["clips"] == 2 and len(r["rows"]) == 2
    for m in ("mel_8", "mel_4"):
        assert s[m]["diff"] == 0.0 and s[m]["a"] == s[m]["b"] > 0
    assert s["agree_mix"]["pooled_a"] == s["agree_mix"]["pooled_b"]
    assert s["silence_rms"]["a"] == s["silence_rms"]["b"]


def test_a_broken_encoder_measures_worse(tiny_corpus, tmp_path):
    broken = Codec.load(ASSETS / "codec")  # the shipped codec, against itself with a sign-flipped encoder
    with torch.no_grad():
        for p in broken.encoder.parameters():
            p.neg_()
    broken.save(tmp_path / "broken")
    r = run(tiny_corpus, 2, ASSETS / "codec", tmp_path / "broken", ASSETS / "semantic")
    s = r["summary"]
    assert s["mel_8"]["diff"] > 0 and s["mel_8"]["b"] > s["mel_8"]["a"]
    assert [w["clip"] for w in s["worst_mel_8"]] and all(w["b"] > w["a"] for w in s["worst_mel_8"])


def test_summary_pools_agreement_over_frames():
    rows = [{"clip": "x", "a": {"mel_8": 0.5, "mel_4": 0.6, "agree_mix": [5, 10]},
             "b": {"mel_8": 0.4, "mel_4": 0.6, "agree_mix": [9, 10]}},
            {"clip": "y", "a": {"mel_8": 0.5, "mel_4": 0.6, "agree_mix": [0, 30]},
             "b": {"mel_8": 0.5, "mel_4": 0.6, "agree_mix": [30, 30]}}]
    s = summary(rows)
    assert s["agree_mix"]["pooled_a"] == 0.125 and s["agree_mix"]["pooled_b"] == 0.975
    assert abs(s["agree_mix"]["diff"] - 0.7) < 1e-9  # per clip: +0.4 and +1.0
    assert s["mel_8"]["diff"] == -0.05 and s["worst_mel_8"][0]["clip"] == "y"


def test_bench_command_writes_table_and_rows(tiny_corpus, tiny_assets, tmp_path, capsys):
    out, rows = tmp_path / "B.md", tmp_path / "rows.json"
    assert bench.main(["codecpair", "--corpus", str(tiny_corpus), "--clips", "1", "--a", str(tiny_assets / "codec"),
                       "--b", str(tiny_assets / "codec"), "--semantic", str(tiny_assets / "semantic"),
                       "--rows", str(rows), "--append", str(out)]) == 0
    assert "| mel distance, 4 kbps |" in out.read_text()
    assert len(json.loads(rows.read_text())["rows"]) == 1


def test_melody_tallies_split_held_notes_from_note_changes_and_count_octave_slips():
    from engine.eval.codec_pair import melody_tallies

    ref_pitch = np.r_[np.full(20, 60.0), np.full(20, 64.0)]  # one note change, between frames 19 and 20
    conf = np.ones(40)
    conf[0] = 0.0  # one unconfident frame: not counted
    rec = ref_pitch.copy()
    rec[5:10] += 12  # five held frames an octave up
    rec[18:22] = 62.0  # the change smeared over four frames: a glide through the middle
    t = melody_tallies((ref_pitch, conf), rec)
    assert t["agree_melody"] == [39 - 5 - 4, 39]
    assert t["agree_melody_change"] == [0, 4]  # frames 18-21 lie within 2 frames of the change; all missed
    assert t["agree_melody_held"] == [35 - 5, 35]
    assert t["octave_melody"] == [5, 39]
    rows = [{"clip": "x", "a": {"mel_8": 0.5, **t}, "b": {"mel_8": 0.5, **melody_tallies((ref_pitch, conf), ref_pitch)}}]
    s = summary(rows)
    assert s["agree_melody_change"]["pooled_b"] == 1.0 and s["octave_melody"]["diff"] == round(-5 / 39, 4)
