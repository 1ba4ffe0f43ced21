"""Jam on tiny random models: it plays on chunk after chunk with the clip generator's sampler, changes take effect
at the next chunk (prompt, blend, tempo without a jump in the beat, key, a looped hum), bad changes are refused
with a sentence while the music goes on, and the scripted form plays a timeline and reports it."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from engine import Cantus, GenerationError, Request, Segment, Settings
from engine.controls import transpose_tokens
from engine.jam import Jam
from engine.jam.script import Change, ScriptError, parse, play
from engine.lm.stages import BEAT_VOCAB, beat_grid
from engine.melody import VOCAB as MELODY_VOCAB


@pytest.fixture(scope="module")
def model(tiny_assets):
    return Cantus.load(tiny_assets, backend="torch")


@pytest.fixture
def seen(monkeypatch):
    """What the semantic stage is given for each window: (prefix [12], cond [3, T]) of the conditional row."""
    import engine.pipeline as G
    got = []

    class Spy(G.StageSampler):
        def __init__(self, stage, prefix, cond, *a, **k):
            if stage.cfg.name == "semantic":
                got.append((prefix[0].clone(), cond[0].clone()))
            super().__init__(stage, prefix, cond, *a, **k)
    monkeypatch.setattr(G, "StageSampler", Spy)
    return got


def test_the_first_chunk_is_the_clip_the_generator_makes_and_the_jam_plays_on(model):
    jam = Jam(model, "calm piano ballad", seed=0, chunk_seconds=2.0)
    first = jam.next_chunk()
    clip = model.generate(Request([Segment("calm piano ballad", 2.0)], Settings(duration=2.0, seed=0)))
    assert np.array_equal(first, clip), "the jam samples and decodes as a clip does"
    rest = [jam.next_chunk() for _ in range(4)]
    assert all(len(c) == 48_000 for c in rest) and jam.seconds == 10.0
    assert jam.codes.shape == (9, 250), "it carries its last 5 s of codes and semantic ids"
    assert not np.array_equal(rest[0], rest[1])


def test_a_change_takes_effect_at_the_next_chunk(model, seen):
    jam = Jam(model, "calm piano ballad", seed=1, chunk_seconds=2.0)
    jam.next_chunk()
    jam.set(prompt="energetic techno")
    assert torch.equal(seen[-1][0], model.text_tokens("calm piano ballad")), "not before the boundary"
    jam.next_chunk()
    assert torch.equal(seen[-1][0], model.text_tokens("energetic techno"))
    assert jam.codes.shape[-1] == 2 * 50 + 50, "a new prompt keeps 1 s of the old music, then the context grows"
    jam.set(blend="jazz trumpet", weight=0.0)
    jam.next_chunk()
    assert torch.equal(seen[-1][0], model.text_tokens("energetic techno")), "weight 0: the prompt alone"
    jam.set(weight=1.0)
    jam.next_chunk()
    assert torch.equal(seen[-1][0], model.text_tokens("jazz trumpet")), "weight 1: the blended prompt alone"


def test_no_drums_typed_into_a_jam_is_cleaned_from_the_next_chunk_and_taking_it_back_brings_the_music_back(model):
    """While the prompt refuses drums the chunks go through the drum remover (here one that takes everything out);
    the switch comes at a chunk boundary and nothing is lost or played twice."""
    from engine.demix import DemixConfig, DrumRemover
    remover = DrumRemover(DemixConfig(channels=4)).eval()
    with torch.no_grad():
        remover.out.weight.zero_()
        remover.out.bias.fill_(-50.0)
    prompts = ["a rock song", "a rock song with no drums", "a rock song with no drums", "a rock song"]
    played = {}
    for name, r in (("as made", None), ("cleaned", remover)):
        model.drum_remover = r
        try:
            jam = Jam(model, prompts[0], seed=4, chunk_seconds=1.0, switch_seconds=0.0)
            out = []
            for p in prompts:
                jam.set(prompt=p)
                out.append(jam.next_chunk())
        finally:
            model.drum_remover = None
        played[name] = out
    made, cleaned = played["as made"], played["cleaned"]
    assert np.concatenate(cleaned).shape == np.concatenate(made).shape
    np.testing.assert_array_equal(cleaned[0], made[0])
    lag = 24_000 - len(cleaned[1])
    assert 0 < lag <= remover.lookahead
    assert np.abs(cleaned[1][480:]).max() < 1e-3 < np.abs(made[1]).max() and np.abs(cleaned[2]).max() < 1e-3
    held = len(cleaned[3]) - len(made[3])  # the lag given back (where the frames fell, it differs from the first)
    assert 0 < held <= remover.lookahead
    np.testing.assert_array_equal(cleaned[3][held + 480:], made[3][480:])  # then the music itself again


def test_a_tempo_change_carries_the_beat_on_without_a_jump(model, seen):
    jam = Jam(model, "a tune", seed=2, bpm=100, chunk_seconds=2.0)
    jam.next_chunk()
    jam.set(bpm=75)
    jam.next_chunk()
    jam.next_chunk()
    beats = 2.0 * 100 / 60 + 2.0 * 75 / 60  # where the third chunk starts, in beats: 5.83
    cond = seen[-1][1]
    new = cond.shape[-1] - 50  # the chunk's own 25 Hz frames are the last 50
    assert torch.equal(cond[1, new:], beat_grid(75, 50, 0, beats % 1.0))
    assert (cond[1] != BEAT_VOCAB).all(), "the carried music is on the same beat grid"
    jam.set(bpm=None)
    jam.next_chunk()
    assert (seen[-1][1][1] == BEAT_VOCAB).all(), "no tempo named: the model's choice"


def test_a_hum_loops_under_the_next_chunks_until_cleared_and_a_key_moves_it(model, seen):
    jam = Jam(model, "a tune", seed=3, chunk_seconds=2.0)
    jam.next_chunk()
    hum = np.repeat(np.array([1, 5, 8, 0, 10, 3, 3, 12]), 10)  # 80 frames: longer than a chunk's 50
    jam.set(melody=hum)
    jam.next_chunk()
    jam.next_chunk()
    (_, a), (_, b) = seen[-2], seen[-1]
    assert np.array_equal(a[0, -50:].numpy(), hum[:50]) and np.array_equal(b[0, -50:].numpy(), np.resize(np.roll(hum, -50), 50))
    jam.set(key="A major")
    jam.next_chunk()
    rolled = np.resize(np.roll(hum, -100), 50)
    assert np.array_equal(seen[-1][1][0, -50:].numpy(), transpose_tokens(rolled, 9)[0]), "a key moves the hum"
    jam.set(melody=None, key=None)
    jam.next_chunk()
    assert (seen[-1][1][0, -50:] == MELODY_VOCAB).all()


def test_a_bad_change_gets_a_sentence_and_the_jam_plays_on(model):
    jam = Jam(model, "calm piano", seed=4, chunk_seconds=2.0)
    jam.next_chunk()
    for change, words in (({"prompt": ""}, "prompt"), ({"key": "H major"}, "key"), ({"bpm": 0}, "BPM"),
                          ({"weight": 2}, "share"), ({"melody": np.zeros(50, dtype=int)}, "melody")):
        with pytest.raises(GenerationError, match=words):
            jam.set(**change)
    assert jam.controls.prompt == "calm piano" and len(jam.next_chunk()) == 48_000
    with pytest.raises(GenerationError):
        Jam(model, "  ")


@pytest.mark.parametrize("script, words", [
    ("not json", "not JSON"), ("{}", "list"), ('[{"t": 0, "prompt": "a", "tempo": 3}]', "unknown key 'tempo'"),
    ('[{"t": 0, "prompt": "a"}, {"t": 5, "bpm": 90}, {"t": 3, "bpm": 80}]', "must not go back"),
    ('[{"t": 2, "prompt": "a"}]', "first change"), ('[{"t": 0, "bpm": 90}]', "first change"),
    ('[{"t": 0, "prompt": "a"}, {"t": 50, "bpm": 90}]', "not inside"),
    ('[{"t": 0, "prompt": "a"}, {"t": 1, "melody": "nowhere.wav"}]', "does not exist"),
    ('[{"t": 0, "blend": ["a"]}]', "two prompts"), ('[{"t": -1, "prompt": "a"}]', "from 0"),
    ('[{"t": 0, "prompt": "a"}, {"t": 1}]', "changes nothing")])
def test_a_script_it_cannot_play_is_refused_in_one_line(tmp_path, script, words):
    with pytest.raises(ScriptError, match=words):
        parse(script, tmp_path, 30)


def test_the_player_counts_underruns_and_applies_changes_at_the_first_chunk_after_them():
    class Slow:  # a generator that needs `cost` seconds of wall time per 0.5 s chunk
        chunk, model = 25, None

        def __init__(self, cost):
            self.cost, self.applied = cost, []

        def set(self, **kw):
            self.applied.append(kw)

        def held(self):
            return 0

        def next_chunk(self):
            import time
            time.sleep(self.cost)
            return np.zeros(12_000, np.float32)

    changes = [Change(0, {"prompt": "a"}, "prompt"), Change(1.1, {"bpm": 90}, "bpm")]
    audio, r = play(Slow(0.05), changes, 3.0, lead=0.3)
    assert r["underruns"] == 0 and len(audio) == 72_000 and r["busy"] < 0.5
    assert changes[1].applied_at == 1.5, "read by the first chunk started after the listener heard t=1.1"
    _, late = play(Slow(0.7), [Change(0, {"prompt": "a"}, "prompt")], 2.0, lead=0.3)
    assert late["underruns"] == 3 and late["stalled_s"] > 0.5


def test_while_drums_are_taken_out_a_change_is_still_read_by_the_next_chunk(model, tmp_path):
    """The remover holds 0.2 s back; the player counts it as made audio, so the chunk that reads a change is the one
    it would be without the remover (the change then sounds the lag earlier in the audio, not a chunk later)."""
    from engine.demix import DemixConfig, DrumRemover
    remover = DrumRemover(DemixConfig(channels=4)).eval()
    script = [{"t": 0, "prompt": "a rock song with no drums"}, {"t": 3.0, "prompt": "a calm piano piece"}]
    applied = {}
    for name, r in (("without", None), ("with", remover)):
        model.drum_remover = r
        try:
            changes = parse(script, tmp_path, 6.0)
            play(Jam(model, seed=1, chunk_seconds=1.0, **changes[0].set), changes, 6.0)
        finally:
            model.drum_remover = None
        applied[name] = changes[1].applied_at
    assert 0 < applied["without"] - applied["with"] <= remover.lookahead / 24_000, applied


def test_the_jam_command_plays_a_script_and_reports_it(tiny_assets, tiny_corpus, tmp_path):
    hum = sorted((tiny_corpus / "voice").rglob("*.wav"))[0]
    script = tmp_path / "jam.json"
    script.write_text(json.dumps([{"t": 0, "prompt": "calm piano"}, {"t": 2.3, "prompt": "techno", "bpm": 128},
                                  {"t": 4, "melody": str(hum)}, {"t": 6, "blend": ["calm piano", "jazz"]}]))
    out = tmp_path / "jam.wav"
    r = subprocess.run([sys.executable, "-m", "engine.jam", "--script", str(script), "--seconds", "8", "--out",
                        str(out), "--chunk", "2", "--lead", "1.5", "--assets", str(tiny_assets), "--backend", "torch"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    audio, sr = sf.read(out)
    report = json.loads(r.stdout)
    assert sr == 24_000 and len(audio) == 8 * 24_000 and report["chunks"] == 4
    assert [c["applied_at"] for c in report["changes"]] == [0.0, 4.0, 6.0, None], "a change at 6 s: after the end"
    bad = subprocess.run([sys.executable, "-m", "engine.jam", "--script", str(tmp_path / "none.json"), "--seconds",
                          "8", "--out", str(out)], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "cannot read the script" in bad.stderr


def test_the_desktop_jam_reads_what_a_player_types():
    from app.desktop import jam_command
    assert jam_command("energetic techno") == ("set", {"prompt": "energetic techno"})
    assert jam_command("bpm 120") == ("set", {"bpm": 120.0}) and jam_command("bpm auto") == ("set", {"bpm": None})
    assert jam_command("key F# minor") == ("set", {"key": "F# minor"}) and jam_command("key auto")[1] == {"key": None}
    assert [jam_command(x)[0] for x in ("quit", "keep", "hum off", "hum on", "", "help")] == \
        ["quit", "keep", "hum off", "hum on", "help", "help"]
    with pytest.raises(ValueError, match="number or 'auto'"):
        jam_command("bpm fast")


def test_the_jam_bench_hears_a_click_at_the_joins():
    from engine.eval.jam import joins
    rng = np.random.default_rng(0)
    t = np.arange(24_000 * 20) / 24_000
    music = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + 0.5 * np.sin(2 * np.pi * 0.7 * t)) + 0.01 * rng.standard_normal(len(t))
    starts = list(range(24_000, len(t), 24_000))
    assert joins(music, starts)["spectral"] <= 0.3, "smooth music: joins like any other frame"
    clicked = music.copy()
    clicked[24_000::24_000] += 0.9  # a click where each 1 s chunk begins
    assert joins(clicked, starts)["spectral"] >= 0.9
