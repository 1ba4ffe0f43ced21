"""Bad input, kind by kind, through each door a user has (the command line, the app's functions behind its widgets,
the library the API reaches): every one gets a short readable message, and no clip is ever lost."""
from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
import soundfile as sf

from app import studio
from app.export import ExportError, export
from app.library import ClipLibrary, LibraryError


def _tone(sr=16_000, seconds=2.0):
    t = np.arange(int(sr * seconds)) / sr
    return (0.3 * np.sin(2 * np.pi * 392 * t)).astype(np.float32)


def _files(d):
    """Bad recordings and files, by name."""
    f = {k: d / name for k, name in [("missing", "nope.wav"), ("empty", "empty.wav"), ("text", "text.wav"),
                                     ("pdf", "doc.mp3"), ("silent", "silent.wav"), ("short", "short.wav"),
                                     ("1hz", "onehz.wav"), ("noise", "noise.wav"), ("long", "long.wav"),
                                     ("nan", "nan.wav"), ("truncated", "trunc.wav")]}
    f["empty"].write_bytes(b"")
    f["text"].write_bytes(b"this is not sound " * 50)
    f["pdf"].write_bytes(b"%PDF-1.4 " * 200)
    sf.write(f["silent"], np.zeros(32_000), 16_000)
    sf.write(f["short"], _tone(seconds=0.2), 16_000)
    sf.write(f["1hz"], np.zeros(100, np.float32), 1, subtype="PCM_16")
    sf.write(f["noise"], np.random.default_rng(0).normal(0, 0.3, 48_000), 16_000)
    sf.write(f["long"], np.zeros(8_000 * 700, np.int16), 8_000)
    sf.write(f["nan"], np.full(16_000, np.nan, np.float32), 16_000, subtype="FLOAT")
    f["truncated"].write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt garbage")
    return f


CLI = [  # extra command-line arguments -> what the one stderr line must say
    (["--prompt", "   "], "prompt"),
    (["--prompt", "x", "--duration", "0"], "duration"),
    (["--prompt", "x", "--duration", "100000"], "duration"),
    (["--prompt", "x", "--seed", "-1"], "seed"),
    (["--prompt", "x", "--bpm", "500"], "BPM"),
    (["--prompt", "x", "--drafts", "0"], "drafts"),
    (["--prompt", "x", "--drafts", "99"], "drafts"),
    (["--prompt", "x", "--temperature", "99"], "temperature"),
    (["--prompt", "x", "--guidance", "-3"], "guidance"),
    (["--prompt", "x", "--top-k", "-5"], "top-k"),
    (["--prompt", "fast techno at 900 bpm"], "tempo in the prompt"),
    (["--prompt", "x", "--melody", "{missing}"], "does not exist"),
    (["--prompt", "x", "--melody", "{empty}"], "empty"),
    (["--prompt", "x", "--melody", "{text}"], "not a readable"),
    (["--prompt", "x", "--melody", "{silent}"], "silent"),
    (["--prompt", "x", "--melody", "{short}"], "at least"),
    (["--prompt", "x", "--melody", "{1hz}"], "sample rate"),
    (["--prompt", "x", "--melody", "{noise}"], "melody"),
    (["--prompt", "x", "--melody", "{long}"], "limit"),
    (["--prompt", "x", "--melody", "{nan}"], "invalid"),
    (["--prompt", "x", "--continue", "{missing}"], "does not exist"),
    (["--prompt", "x", "--continue", "{pdf}"], "not a readable"),
    (["--prompt", "x", "--loop-bars", "0"], "whole number of bars"),
    (["--prompt", "x", "--loop-bars", "4", "--beats-per-bar", "40"], "beats per bar"),
    (["--prompt", "x", "--loop-bars", "64", "--bpm", "40"], "at most 5 minutes"),
    (["--prompt", "x", "--loop-bars", "2", "--continue", "{pdf}"], "does not --continue"),
]


@pytest.mark.parametrize("args,msg", CLI, ids=[" ".join(a)[:40] for a, _ in CLI])
def test_the_command_line_answers_bad_input_with_one_line(args, msg, tmp_path, tiny_assets, capsys):
    from engine.generate import main
    files = _files(tmp_path)
    args = [a.format(**files) for a in args]
    assert main([*args, "--assets", str(tiny_assets), "--backend", "torch", "--out", str(tmp_path / "o.wav")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("error:") and msg in err[-1] and len(err[-1]) < 300, err
    assert not (tmp_path / "o.wav").exists()


UI = [  # the app's functions as its widgets call them -> what the UserError must say
    (lambda f: studio.settings_from_ui("ten", 0, 1.0, 0, 3.0), "could not convert|ten"),
    (lambda f: studio.settings_from_ui(10, "seven", 1.0, 0, 3.0), "seven|invalid literal"),
    (lambda f: studio.settings_from_ui(10, 0, 1.0, 0, 3.0, bpm=300), "BPM"),
    (lambda f: studio.settings_from_ui(10, 0, float("inf"), 0, 3.0), "temperature"),
    (lambda f: studio.story_from_rows([["calm", "ten"]]), "seconds"),
    (lambda f: studio.story_from_rows([["calm", 0]]), "1 to 300"),
    (lambda f: studio.story_from_rows([["calm", 2]] * 40), "at most"),
    (lambda f: studio.clean_prompt("a" * 2_001), "limit"),
    (lambda f: studio.loop_bars_from_ui(2.5), "whole number"),
    (lambda f: studio.loop_bars_from_ui("four"), "whole number"),
    (lambda f: studio.hear(str(f["text"])), "not a readable"),
    (lambda f: studio.hear(str(f["empty"])), "empty"),
    (lambda f: studio.hear(str(f["1hz"])), "sample rate"),
    (lambda f: studio.hear(str(f["long"])), "limit"),
    (lambda f: studio.hear(str(f["truncated"])), ""),
    (lambda f: studio.hear(str(f["nan"])), "invalid"),
]


@pytest.mark.parametrize("call,msg", UI, ids=[f"ui{i}" for i in range(len(UI))])
def test_the_apps_widgets_answer_bad_input_with_a_sentence(call, msg, tmp_path):
    import re
    with pytest.raises(studio.UserError) as e:
        call(_files(tmp_path))
    text = str(e.value)
    assert re.search(msg, text) and 0 < len(text) < 300 and "Traceback" not in text, text


def _bundle(meta=None, audio=True, rate=24_000):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        if meta is not None:
            z.writestr("meta.json", meta if isinstance(meta, (str, bytes)) else json.dumps(meta))
        if audio:
            wav = io.BytesIO()
            sf.write(wav, np.zeros(rate // 4 + 1, np.float32), rate, format="WAV")
            z.writestr("audio.wav", wav.getvalue())
    return buf.getvalue()


LIBRARY = [  # what the library's API endpoints do with bad input -> what the LibraryError must say
    (lambda lib, cid: lib.rename(cid, "   "), "empty"),
    (lambda lib, cid: lib.rename(cid, "\x00\x01\x02"), "empty"),
    (lambda lib, cid: lib.rename("../../etc", "x"), "no clip"),
    (lambda lib, cid: lib.delete("0123456789ab"), "no clip"),
    (lambda lib, cid: lib.delete("x" * 100_000), "no clip"),
    (lambda lib, cid: lib.get(None), "no clip"),
    (lambda lib, cid: lib.import_bundle(b"not a zip"), "not a zip"),
    (lambda lib, cid: lib.import_bundle(_bundle(meta=None)), "meta.json"),
    (lambda lib, cid: lib.import_bundle(_bundle({"prompt": "x"}, audio=False)), "audio.wav"),
    (lambda lib, cid: lib.import_bundle(_bundle(b"{not json")), "damaged"),
    (lambda lib, cid: lib.import_bundle(_bundle("[1, 2, 3]")), "table of fields"),
    (lambda lib, cid: lib.import_bundle(_bundle({"prompt": 123})), "prompt"),
    (lambda lib, cid: lib.import_bundle(_bundle({"prompt": "x", "created": 1})), "created"),
    (lambda lib, cid: lib.import_bundle(_bundle({"prompt": "x"}, rate=1)), "Hz"),
    (lambda lib, cid: lib.save(np.zeros(0, np.float32), {"prompt": "x"}), "empty"),
    (lambda lib, cid: lib.save(np.full(10, np.nan, np.float32), {"prompt": "x"}), "invalid"),
]


@pytest.mark.parametrize("call,msg", LIBRARY, ids=[f"lib{i}" for i in range(len(LIBRARY))])
def test_the_library_answers_bad_input_and_keeps_every_clip(call, msg, tmp_path):
    lib = ClipLibrary(tmp_path / "lib")
    keep = lib.save(np.zeros(2_400, np.float32), {"prompt": "keep me", "seed": 1})
    with pytest.raises(LibraryError, match=msg) as e:
        call(lib, keep.id)
    assert len(str(e.value)) < 300
    assert [c.id for c in lib.list()] == [keep.id] and lib.get(keep.id).meta["prompt"] == "keep me"


def test_downloads_refuse_an_unknown_format_and_survive_control_characters(tmp_path):
    with pytest.raises(ExportError, match="unknown format"):
        export(np.zeros(2_400, np.float32), 24_000, {"prompt": "x"}, "ogg", tmp_path)
    path = export(np.zeros(2_400, np.float32), 24_000, {"prompt": "nul\x00 in\x07 it", "id": "0123456789ab"}, "mp3",
                  tmp_path)
    assert path.stat().st_size > 0


def test_the_matrix_covers_forty_kinds_of_bad_input():
    assert len(CLI) + len(UI) + len(LIBRARY) + 2 >= 40
