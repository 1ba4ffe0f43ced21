"""Missing system pieces and bad scores give a clear message, never a crash or a silent half-build."""
import sys

import pytest

from engine.data import build as build_mod
from engine.data import render
from engine.data.melodies import load_melodies


def test_missing_soundfont_names_the_debian_package(monkeypatch):
    monkeypatch.delenv("CANTUS_SOUNDFONT", raising=False)
    monkeypatch.setattr(render, "SOUNDFONT_PATHS", ("/nonexistent/FluidR3_GM.sf2",))
    with pytest.raises(render.SynthUnavailable, match="apt-get install fluid-soundfont-gm"):
        render.find_soundfont()


def test_missing_fluidsynth_names_the_debian_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "fluidsynth", None)  # import fails as if libfluidsynth were absent
    with pytest.raises(render.SynthUnavailable, match="apt-get install fluidsynth"):
        render.Renderer()


def test_build_cli_exits_2_with_one_line_error(tmp_path, capsys):
    code = build_mod.main(["--hours", "0.01", "--out", str(tmp_path / "c"), "--soundfont", str(tmp_path / "no.sf2")])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "fluid-soundfont-gm" in err and "\n" not in err
    assert not (tmp_path / "c" / "train.jsonl").exists()


def test_corrupt_scores_are_skipped_and_counted(tmp_path, score_paths):
    bad_xml = tmp_path / "broken.mxl"
    bad_xml.write_bytes(b"PK\x03\x04 this is not a real zip archive")
    bad_abc = tmp_path / "garbage.abc"
    bad_abc.write_bytes(bytes(range(256)) * 8)
    good = score_paths[:3]
    ok = load_melodies(None, paths=good, progress=False)
    mixed = load_melodies(None, paths=good + [str(bad_xml), str(bad_abc)], progress=False)
    assert [m.id for m in mixed.melodies] == [m.id for m in ok.melodies]
    assert mixed.skipped >= ok.skipped + 1


def test_resuming_into_a_build_with_other_parameters_is_refused(tmp_path, score_paths):
    out = tmp_path / "c"
    build_mod.build(10 / 3600, out, seed=1, cache=None, score_paths=score_paths[:6], progress=False)
    with pytest.raises(RuntimeError, match="other parameters"):
        build_mod.build(10 / 3600, out, seed=2, cache=None, score_paths=score_paths[:6], progress=False)
