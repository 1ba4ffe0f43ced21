"""A clip's MIDI file: the hum's notes, the tempo and key a DAW reads, and the transcriber's notes of real music."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from engine.midi import hum_notes, key_signature, read_midi, write_midi
from engine.transcribe import FRAME_RATE, Note, melody_notes, targets

ASSETS = Path(__file__).resolve().parent.parent / "assets"


def test_a_wobbly_hum_becomes_its_notes():
    """Three sung notes with vibrato, a breath between the last two and a one-frame glide: three notes, where sung."""
    rng = np.random.default_rng(0)
    track = np.concatenate([np.full(20, 60.0), [61.6], np.full(15, 64.0), np.full(5, np.nan), np.full(25, 67.0)])
    track = track + rng.normal(0, 0.15, len(track))  # vibrato within a quarter tone
    notes = hum_notes(track)
    assert [n.pitch for n in notes] == [60, 64, 67]
    assert notes[0].start == 0 and abs(notes[1].start - 21 / 25) < 1e-9 and abs(notes[2].start - 41 / 25) < 1e-9
    assert [n.pitch for n in hum_notes(track, shift=-2)] == [58, 62, 65]  # a named key moved the hum


def test_the_file_holds_the_notes_tempo_and_key(tmp_path):
    notes = [Note(60, 0.0, 0.5), Note(60, 0.5, 1.0), Note(64, 1.0, 1.25, 100), Note(67, 1.25, 2.0)]
    chords = [Note(48, 0.0, 2.0), Note(52, 0.0, 2.0), Note(55, 0.0, 2.0)]
    path = write_midi(tmp_path / "clip.mid", {"melody": notes, "all notes": chords}, 96.0, "Eb minor")
    tracks, bpm, key = read_midi(path)
    assert abs(bpm - 96.0) < 0.01 and key == "Ebm"
    assert list(tracks) == ["melody", "all notes"]
    got = tracks["melody"]
    assert [n.pitch for n in got] == [60, 60, 64, 67], "a repeated note is struck twice"
    assert all(abs(a.start - b.start) < 0.002 and abs(a.end - b.end) < 0.002 for a, b in zip(got, notes))
    assert got[2].velocity == 100 and len(tracks["all notes"]) == 3
    # on the file's tempo grid: a note at 0.625 s is on the 480-tick beat grid where 96 BPM puts it
    import mido
    mid = mido.MidiFile(str(path))
    ticks = np.cumsum([m.time for m in mid.tracks[1]])
    assert 480 * 96 / 60 * 1.0 in ticks  # the note at 1.0 s starts exactly 1.6 beats in


def test_bad_tempo_and_unknown_keys():
    with pytest.raises(ValueError, match="20-400 BPM"):
        write_midi("/tmp/never.mid", {}, 0.0)
    assert key_signature("A minor") == "Am" and key_signature("F# major") == "F#"
    assert key_signature("H major") is None and key_signature(None) is None


def test_melody_decoding_splits_repeated_notes_at_onsets():
    t = targets([(62, 0.0, 0.4), (62, 0.4, 0.8), (65, 0.8, 1.0)], [], 60)
    prob = np.eye(89)[t["melody"]]
    notes = melody_notes(prob, t["melody_onset"].astype(float))
    assert [(n.pitch, round(n.start * FRAME_RATE)) for n in notes] == [(62, 0), (62, 20), (65, 40)]


@pytest.mark.skipif(not (ASSETS / "transcriber" / "transcriber.safetensors").exists(), reason="no shipped transcriber")
def test_the_transcriber_hears_the_melody_of_rendered_music(tiny_corpus):
    """Clips FluidSynth rendered from scores (the tiny test corpus, a build of another seed than the training
    corpora): the MIDI melody matches the score's melody far above chance."""
    from engine.audio import load_audio
    from engine.eval.midi import note_f1
    from engine.midi import load_transcriber

    model = load_transcriber(ASSETS)
    f1 = []
    for line in (tiny_corpus / "train.jsonl").read_text().splitlines()[:4]:
        r = json.loads(line)
        melody, _ = model.transcribe(load_audio(tiny_corpus / r["audio"], 24_000))
        f1.append(note_f1(r["melody"]["notes"], melody, pitch_class=True))
    assert np.mean(f1) > 0.5, f1


def test_the_cli_writes_the_clip_and_the_hum_as_midi_at_the_asked_tempo_and_key(tiny_assets, tmp_path):
    """``--midi``: a file with the clip's melody and notes and the hum's own notes, moved into the named key."""
    import shutil
    import subprocess
    import sys

    import soundfile as sf

    from engine.transcribe import Transcriber, TranscriberConfig
    from tests.test_melody import _hum
    assets = tmp_path / "assets"
    shutil.copytree(tiny_assets, assets)
    Transcriber(TranscriberConfig(channels=8, dilations=(1,))).save(assets / "transcriber")  # random: shapes only
    sf.write(tmp_path / "hum.wav", _hum(), 16_000)
    mid = tmp_path / "clip.mid"
    run = [sys.executable, "-m", "engine.generate", "--prompt", "a folk tune", "--duration", "2", "--assets",
           str(assets), "--out", str(tmp_path / "clip.wav"), "--melody", str(tmp_path / "hum.wav")]
    r = subprocess.run(run + ["--bpm", "90", "--key", "D major", "--midi", str(mid)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    tracks, bpm, key = read_midi(mid)
    assert abs(bpm - 90) < 0.01 and key == "D"
    assert {"melody", "all notes"} <= set(tracks)
    from engine import melody_from_audio, transpose_tokens
    shift = transpose_tokens(melody_from_audio(_hum(), 16_000).tokens, 2, "major")[1]
    assert shift != 0 and [n.pitch for n in tracks["hum"]] == [p + shift for p in (60, 62, 64, 65, 67, 65, 64, 62)], \
        "the hum's notes, moved as the generator moved the hum into D major"
    bad = subprocess.run(run + ["--midi", str(tmp_path / "clip.wav")], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.startswith("error: --midi names a .mid file"), bad.stderr
    shutil.rmtree(assets / "transcriber")
    gone = subprocess.run(run + ["--midi", str(mid)], capture_output=True, text=True)
    assert gone.returncode == 2 and "no transcriber" in gone.stderr and (tmp_path / "clip.wav").exists()
