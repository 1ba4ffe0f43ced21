"""The long-form benchmark: a join where the sound changes stands out from the music around it, one where it does not
does not, and the bench runs end to end on tiny models."""
from __future__ import annotations

import json

import numpy as np
import pytest

from engine.eval.bench import main
from engine.eval.longform import hum_parts, join_measures, join_times

SR = 24_000


def _melody(seconds: float, switch_every: float | None) -> np.ndarray:
    """A tune of 0.1 s notes within a fourth (pitch changes everywhere) whose timbre switches between dull and bright
    every ``switch_every`` seconds (never when None)."""
    rng = np.random.default_rng(0)
    out = []
    for k in range(int(seconds * 10)):
        t = np.arange(SR // 10) / SR
        f0 = 220 * 2 ** (rng.integers(0, 5) / 12)
        bright = switch_every is not None and int(k / 10 // switch_every) % 2 == 1
        amps = [1.0, 0.9, 0.8, 0.7, 0.6, 0.5] if bright else [1.0, 0.3, 0.1, 0.03, 0.01, 0.003]
        out.append(sum(a * np.sin(2 * np.pi * f0 * (h + 1) * t) for h, a in enumerate(amps)) * 0.1)
    x = np.concatenate(out)
    return (x + 0.01 * rng.standard_normal(len(x))).astype(np.float32)  # a little noise: no empty mel bands


def test_join_times_follow_the_sliding_windows():
    assert join_times(60.0, tail_s=0.0) == [10.0, 15.0, 20.0, 25.0, 30.0, 35.0, 40.0, 45.0, 50.0, 55.0]
    assert join_times(10.0, tail_s=0.0) == [] and join_times(12.0, tail_s=0.0) == [10.0]
    # the generator's default: a window that another follows stops 1.24 s early, so joins come every 3.76 s
    joins = join_times(60.0)
    assert joins[:3] == [8.76, 12.52, 16.28] and len(joins) == 14
    assert join_times(10.0) == [] and join_times(12.0) == [8.76]


def test_a_timbre_change_at_a_join_stands_out_and_a_seamless_join_does_not():
    joins = join_times(60.0, tail_s=0.0)  # every 5 s from 10 s on
    changed = join_measures(_melody(60.0, switch_every=5.0), joins)
    seamless = join_measures(_melody(60.0, switch_every=None), joins)
    assert np.mean(changed["jump_join"]) > 2 * np.mean(changed["jump_between"]), changed
    assert np.mean(seamless["jump_join"]) < 1.5 * np.mean(seamless["jump_between"]), seamless
    assert len(changed["jump_join"]) == 10 and len(changed["jump_between"]) == 9


def test_a_bass_step_at_each_join_reads_as_a_bass_rise_there_and_not_between():
    joins = join_times(30.0)
    x = _melody(30.0, switch_every=None)
    t = np.arange(len(x)) / SR
    swell = np.zeros_like(t)
    for j in joins:  # 1 s of 80 Hz after every join
        swell[(t >= j) & (t < j + 1.0)] = 1.0
    m = join_measures((x + 0.05 * swell * np.sin(2 * np.pi * 80 * t)).astype(np.float32), joins)
    plain = join_measures(x, joins)
    assert np.mean(m["bass_join"]) > 0.3 and abs(np.mean(m["bass_between"])) < 0.1, m
    assert abs(np.mean(plain["bass_join"])) < 0.1, plain


def test_hum_following_is_read_per_part_against_the_repeated_hum():
    rng = np.random.default_rng(1)
    notes = rng.integers(0, 12, 25)  # a 10 s hum: 25 notes of 0.4 s, pitch classes as tokens 1..12
    hum = np.repeat(notes + 1, 10)
    hum[::10] = 0  # an unvoiced frame at each onset, as a tracker gives

    def play(pcs):  # 0.4 s tones around C4 with two harmonics
        t = np.arange(int(0.4 * SR)) / SR
        return np.concatenate([sum(0.3 / h * np.sin(2 * np.pi * 261.63 * 2 ** (p / 12) * h * t) for h in (1, 2, 3))
                               for p in pcs]).astype(np.float32)
    # the tune, then the tune again a tritone away: the second part follows the (repeated) hum nowhere
    audio = np.concatenate([play(notes), play((notes + 6) % 12)])
    hits = hum_parts(audio, hum, 2)
    assert hits[0] > 0.8 and hits[1] < 0.1, hits


def test_the_longform_bench_runs_end_to_end_on_tiny_models(tiny_corpus, tiny_assets, tmp_path):
    rows, md = tmp_path / "rows.json", tmp_path / "bench.md"
    args = ["longform", "--corpus", str(tiny_corpus), "--clips", "1", "--seconds", "20", "--assets", str(tiny_assets),
            "--rows", str(rows), "--append", str(md), "--hums"]
    assert main(args) == 0
    r = json.loads(rows.read_text())
    assert r["clips"] == 1 and len(r["mcc_parts"]) == 2 and r["last_minus_first"] is not None
    row = r["rows"][0]
    assert len(row["jump_join"]) == len(row["bass_join"]) == 3  # at 8.76, 12.52 and 16.28 s
    assert len(row["style_join"]) == 2 and len(row["style_between"]) == 2  # 5 s either side within the 20 s
    assert all(-1.0 <= c <= 1.0 for c in row["mcc_parts"] + row["style_join"])
    assert "| MuLan cycle consistency of each 10 s part, in order |" in md.read_text()
    # --hums: the same prompt with the clip's tracked hum, followed (or not) part by part
    assert r["hum_clips"] == 1 and len(row["hum_parts"]) == len(row["text_parts"]) == 2
    assert all(0.0 <= h <= 1.0 for h in row["hum_parts"] + row["text_parts"])
    assert "| hum followed (dominant pitch class = hummed one) by 10 s part" in md.read_text()
    with pytest.raises(SystemExit) as e:  # one 10 s part and no join: nothing to measure
        main(["longform", "--corpus", str(tiny_corpus), "--seconds", "10", "--assets", str(tiny_assets)])
    assert e.value.code == 2
