"""What a musician takes into other tools: every clip's detected tempo and key, in the library (shown, searchable,
sortable) and in the downloaded files' BPM and key tags that DAWs read; settings in words."""
from __future__ import annotations

import numpy as np
import pytest

from app.export import export, id3_key
from app.library import ClipLibrary
from app.studio import clip_table, settings_in_words
from engine import analyse

SR = 24_000


def _a_minor_groove(bpm=120.0, seconds=8.0):
    """Am - Dm - E - Am chords (the E major chord's G# makes it minor, not C major), four beats each, a kick on
    every beat."""
    t = np.arange(int(SR * seconds)) / SR
    beat = 60 / bpm
    chords = [[57, 60, 64], [50, 53, 57], [52, 56, 59], [57, 60, 64]]
    x = np.zeros_like(t)
    for i in range(int(seconds / beat)):
        seg = (t >= i * beat) & (t < (i + 1) * beat)
        tt = t[seg] - i * beat
        env = np.exp(-3 * tt)
        for n in chords[(i // 4) % 4] + [chords[(i // 4) % 4][0] - 12]:
            x[seg] += 0.08 * env * np.sin(2 * np.pi * 440 * 2 ** ((n - 69) / 12) * tt)
        x[seg] += 0.5 * np.exp(-40 * tt) * np.sin(2 * np.pi * 60 * tt)  # kick
    return x.astype(np.float32)


def test_a_clip_is_analysed_for_tempo_and_key():
    a = analyse(_a_minor_groove(120.0))
    assert a["key"] == "A minor"
    assert min(abs(a["bpm"] - 120), abs(a["bpm"] - 240), abs(a["bpm"] - 60)) <= 0.04 * 120, a


@pytest.mark.parametrize("fmt", ["wav", "flac", "mp3"])
def test_downloads_carry_tempo_and_key_where_daws_read_them(tmp_path, fmt):
    import mutagen
    audio = _a_minor_groove(96.0, 4.0)
    found = analyse(audio)
    path = export(audio, SR, {"prompt": "a groove", "id": "0123456789ab", "analysis": found}, fmt, tmp_path)
    tags = mutagen.File(path).tags
    bpm_tag, key_tag = ("BPM", "INITIALKEY") if fmt == "flac" else ("TBPM", "TKEY")
    written = float(str(tags[bpm_tag][0] if fmt == "flac" else tags[bpm_tag].text[0]))
    assert abs(written - found["bpm"]) <= 0.04 * found["bpm"], (written, found)
    assert str(tags[key_tag][0] if fmt == "flac" else tags[key_tag].text[0]) == id3_key(found["key"]) == "Am"


def test_the_library_shows_sorts_and_finds_clips_by_tempo_and_key(tmp_path):
    lib = ClipLibrary(tmp_path)
    fast = lib.save(np.zeros(2_400, np.float32), {"prompt": "one", "seed": 1,
                                                   "analysis": {"bpm": 140.2, "key": "G major"}})
    slow = lib.save(np.zeros(2_400, np.float32), {"prompt": "two", "seed": 2,
                                                   "analysis": {"bpm": 71.0, "key": "A minor"}})
    plain = lib.save(np.zeros(2_400, np.float32), {"prompt": "three", "seed": 3})  # from before analysis
    assert [c.id for c in lib.list("a minor")] == [slow.id]
    assert [c.id for c in lib.list("140bpm")] == [fast.id]
    rows = clip_table(lib.list(), "tempo")
    assert [r[0] for r in rows] == [slow.id, fast.id, plain.id] and rows[0][2:4] == [71, "A minor"]
    assert [r[0] for r in clip_table(lib.list(), "key")] == [fast.id, slow.id, plain.id]  # majors before minors


def test_settings_read_as_words():
    meta = {"seed": 7, "settings": {"temperature": 1.0, "guidance": 3.0, "top_k": 0, "drafts": 8, "bpm": 96,
                                    "key": "A minor"}}
    assert settings_in_words(meta) == "seed 7, temperature x1.0, guidance 3, top-k off, 8 drafts, 96 BPM, key A minor"


def test_the_midi_download_has_the_clips_tempo_key_and_hum(tmp_path, tiny_corpus):
    """A library clip's MIDI: the loop's exact tempo over the detected one, the key asked for, the hum's notes as
    the clip recorded them, and the music's own notes (a rendered corpus clip's melody, by pitch class)."""
    import json
    from pathlib import Path

    from app.export import ExportError, export_midi
    from app.library import LibraryError, check_meta
    from app.studio import Heard
    from engine import load_audio, read_midi
    from engine.eval.midi import note_f1
    assets = Path(__file__).resolve().parent.parent / "assets"
    if not (assets / "transcriber" / "transcriber.safetensors").exists():
        pytest.skip("no shipped transcriber")
    heard = Heard("hum.wav", np.array([1] * 10 + [5] * 10), np.array([60.1] * 10 + [63.9] * 10))
    assert heard.note_list() == [[60, 0.0, 0.4], [64, 0.4, 0.8]] and heard.note_list(-3)[0][0] == 57
    record = json.loads((tiny_corpus / "train.jsonl").read_text().splitlines()[0])
    audio = load_audio(tiny_corpus / record["audio"], SR)
    meta = check_meta({"prompt": "a groove", "id": "0123456789ab", "analysis": {"bpm": 61.0, "key": "C major"},
                       "loop": {"bars": 3, "bpm": 120.0}, "controls": {"key": "A minor"},
                       "hum_notes": heard.note_list()})
    tracks, bpm, key = read_midi(export_midi(audio, meta, tmp_path, assets))
    assert abs(bpm - 120) < 0.01 and key == "Am"
    assert [(n.pitch, n.start) for n in tracks["hum"]] == [(60, 0.0), (64, 0.4)]
    assert note_f1(record["melody"]["notes"], tracks["melody"], pitch_class=True) > 0.3
    assert len(tracks["all notes"]) > len(tracks["melody"]), "the accompaniment's notes too"
    with pytest.raises(LibraryError, match="hum's notes"):
        check_meta({**meta, "hum_notes": [[60, 0.0]]})
    with pytest.raises(ExportError, match="transcriber"):
        export_midi(audio, meta, tmp_path / "elsewhere", tmp_path / "no-assets")
