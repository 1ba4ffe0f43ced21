"""What a musician names reaches the music: the prompt parser reads keys, tempo words, BPMs, the lead and "no drums"
in many phrasings; explicit settings win over the words; a tempo word conducts the semantic stage like a BPM; a
named key moves a hummed melody; bad keys get a sentence naming what is accepted."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from engine import Cantus, ControlError, GenerationError, Request, Segment, Settings, parse_key, parse_prompt
from engine.controls import TEMPO_RANGES, hum_key, transpose_tokens
from engine.semantic.keys import key_id

PHRASINGS = [
    ("a sad piano tune in A minor", "key A minor"),
    ("A-flat major ballad with strings", "key Ab major, slow"),
    ("moody synths in F#m", "key F# minor"),
    ("Bb major brass fanfare", "key Bb major"),
    ("folk song in the key of D", "key D major"),
    ("a mournful string quartet in E flat minor with long sustained chords, unhurried", "key Eb minor, slow"),
    ("a waltz in c sharp minor", "key C# minor"),
    ("epic bass in Am", "key A minor"),
    ("a melancholic piano ballad in a minor key", "minor key, slow"),
    ("a tune in a happy mood", ""),
    ("slow", "slow"),
    ("a laid-back jazz trio", "slow"),
    ("an up-tempo rock song", "fast"),
    ("driving techno", "fast"),
    ("a mid-tempo pop song", "moderate"),
    ("around 70 bpm, calm", "70 BPM"),
    ("fast punk at 180 bpm", "180 BPM"),
    ("ambient pads, no drums", "no drums"),
    ("a march without percussion", "no drums"),
    ("a slow air led by a cello", "slow, lead: cello"),
    ("solo piano", "lead: piano, no drums"),
    ("a reel featuring the fiddle, fast", "fast, lead: fiddle"),
]


@pytest.mark.parametrize("prompt,said", PHRASINGS, ids=[p[:30] for p, _ in PHRASINGS])
def test_the_prompt_parser_reads_what_musicians_write(prompt, said):
    line = parse_prompt(prompt).describe()
    words = [w.split(" (")[0] for w in line.split(", ")] if line else []
    assert ", ".join(words) == said, line


@pytest.mark.parametrize("value,key", [("A minor", "A minor"), ("F#m", "F# minor"), ("Bb major", "Bb major"),
                                       ("key of D", "D major"), ("a-flat major", "Ab major"), ("E flat minor",
                                                                                               "Eb minor"),
                                       ("c", "C major"), ("G# min", "G# minor")])
def test_explicit_keys_in_many_spellings(value, key):
    assert parse_key(value).key == key


@pytest.mark.parametrize("value", ["H major", "Q#", "A lydian", "", "minor", "A minor minor"])
def test_a_bad_key_names_what_is_accepted(value):
    with pytest.raises(ControlError, match="A-G.*major or minor"):
        parse_key(value)
    with pytest.raises(GenerationError, match="is not a key"):
        Settings(key=value).validate()


def test_explicit_settings_win_over_the_words_and_a_key_reaches_the_prompt():
    req = Request([Segment("a slow folk tune in A minor", 10)], Settings(key="C major", bpm=120))
    c = req.controls()
    assert (c.key, c.bpm, c.tempo_word) == ("C major", 120, None)
    assert req.prompt(0) == "a slow folk tune in A minor", "a prompt that names a key keeps its words"
    plain = Request([Segment("a folk tune.", 10)], Settings(key="F# minor"))
    assert plain.prompt(0) == "a folk tune, in F# minor"


def test_a_tempo_word_stands_for_a_bpm_in_its_range_drawn_per_seed():
    for word, (lo, hi) in TEMPO_RANGES.items():
        bpms = {parse_prompt(f"a {word} tune").tempo_bpm(seed) for seed in range(30)}
        assert all(lo <= b <= hi for b in bpms) and len(bpms) > 5, (word, bpms)
    assert parse_prompt("slow").tempo_bpm(3) == parse_prompt("slow").tempo_bpm(3)
    assert max(TEMPO_RANGES["slow"]) <= 0.7 * min(TEMPO_RANGES["fast"]), "slow clips at most 0.7x fast ones"


def test_a_named_key_moves_the_hum_and_the_semantic_stage_reads_the_moved_one(tiny_assets, monkeypatch):
    import engine.pipeline as G
    scale = np.repeat([1, 3, 5, 6, 8, 10, 12, 1], 6)  # C major, 25 Hz tokens
    assert hum_key(scale) == (0, "major")
    moved, shift = transpose_tokens(scale, 9)  # to A major
    assert shift == -3 and hum_key(moved)[0] == 9 and (moved[scale > 0] != scale[scale > 0]).all()
    assert transpose_tokens(scale, 9, "minor")[1] == 0, "A minor has C major's notes: nothing to move"
    assert transpose_tokens(scale, 2, "minor")[1] == 5, "D minor is F major's notes"
    seen = []

    class Spy(G.StageSampler):
        def __init__(self, model, prefix, cond, *a, **k):
            if model.cfg.name == "semantic":
                seen.append(cond[0].clone())
            super().__init__(model, prefix, cond, *a, **k)
    monkeypatch.setattr(G, "StageSampler", Spy)
    model = Cantus.load(tiny_assets, backend="torch")
    for key, want in ((None, scale), ("A major", moved)):  # the hum moves for an explicit key only
        seen.clear()
        model.generate(Request([Segment("a tune", 2.0)], Settings(duration=2.0, key=key), melody=scale))
        assert torch.equal(seen[0][0, :len(want)], torch.as_tensor(want)), key
    seen.clear()
    model.generate(Request([Segment("a slow tune", 2.0)], Settings(duration=2.0, seed=5)))
    grid = seen[0][1]
    assert len(seen[0]) == 2 and (grid < 13).all(), "a tempo word conducts the semantic stage's beat grid"


def test_a_key_profile_pulls_the_semantic_ids_into_the_named_key(tiny_assets, tmp_path, monkeypatch):
    import json
    import shutil

    import engine.pipeline as G
    from engine.semantic import SemanticTokenizer
    from engine.semantic.keys import fit_key_profile, save_key_profile
    ids = torch.cat([torch.randint(0, 8, (20, 250)), torch.randint(8, 16, (20, 250))])
    keys = torch.tensor([0] * 20 + [key_id(9, "minor")] * 20)  # C major clips use ids 0-7, A minor ones 8-15
    table = fit_key_profile(ids, keys, 16)
    assert (table[:8, 0] > 0).all() and (table[8:, 0] < 0).all() and (table[8:, key_id(9, "minor")] > 0).all()
    assert (table[8:, 25] > 0).all(), "the minor-mode column: any minor key"
    assets = tmp_path / "assets"
    shutil.copytree(tiny_assets, assets)
    version = json.loads((assets / "semantic" / "semantic.json").read_text())["version"]
    save_key_profile(table, assets / "semantic", "another tokenizer")
    assert SemanticTokenizer.load(assets / "semantic").key_profile is None, "a profile of other ids is not used"
    save_key_profile(table, assets / "semantic", version)
    model = Cantus.load(assets, backend="torch")
    monkeypatch.setattr(G, "KEY_BIAS", 50.0)  # strong enough to decide every draw of the random tiny stage
    hum = np.repeat([1, 3, 5, 6, 8, 10, 12, 1], 6)
    for prompt, key, melody, allowed in (("a tune in A minor", None, None, range(8, 16)),
                                         ("a tune in C major", None, None, range(0, 8)),
                                         ("a tune", "A minor", None, range(8, 16)),
                                         ("a tune in a minor key", None, None, range(8, 16)),
                                         ("a tune in A minor", "A minor", hum, range(8, 16))):
        req = Request([Segment(prompt, 2.0)], Settings(duration=2.0, key=key), melody=melody)
        drawn = set(torch.cat(list(model.code_stream(req)), -1)[8].tolist())  # the ninth row: the semantic ids
        assert drawn <= set(allowed), (prompt, key, drawn)
    free = Request([Segment("a tune in A minor", 2.0)], Settings(duration=2.0), melody=hum)
    assert free.key_id(0) is None, "a hum sets the notes: a key only named in the prompt does not pull it"


def test_a_timbre_profile_pulls_the_coarse_codes_towards_a_named_lead_and_away_from_drums(tiny_assets, tmp_path,
                                                                                          monkeypatch):
    import shutil

    import engine.pipeline as G
    from engine.lm.timbre import (
        fit_timbre_profile,
        load_timbre_profile,
        no_drums_direction,
        save_timbre_profile,
    )
    # cellos (strings) play without drums on codes 0-15; trumpets (brass) with drums on codes 16-31
    codes = torch.cat([torch.randint(0, 16, (20, 2, 500)), torch.randint(16, 32, (20, 2, 500))])
    leads = torch.tensor([42] * 20 + [56] * 20)
    drums = torch.tensor([False] * 20 + [True] * 20)
    # in MuLan's space, clips without drums sit along +x in each style, whatever the style's own place
    styles = ["rock", "folk"] * 20
    emb = torch.randn(40, 16) * 0.01 + torch.tensor([[0.0, 5.0] + [0.0] * 14, [0.0, -5.0] + [0.0] * 14] * 20)
    emb[:20, 0] += 1.0
    direction = no_drums_direction(emb, drums, styles)
    assert direction[0] > 0.95 and direction[1:].abs().max() < 0.05, "the style's place cancels out"
    profile = fit_timbre_profile(codes, leads, drums, 32, direction)
    assert profile.families == ("brass", "strings")
    assert profile.columns("violoncello", None) == [1] and profile.columns(None, False) == [3]
    assert profile.columns("kazoo", None) == [] and profile.bias(None, None, 4, 1.0) is None
    assets = tmp_path / "assets"
    shutil.copytree(tiny_assets, assets)
    save_timbre_profile(profile, assets / "stages", "another codec", "tiny-m")
    assert load_timbre_profile(assets / "stages", "tiny-c", "tiny-m") is None, "a profile of other codes is not used"
    save_timbre_profile(profile, assets / "stages", "tiny-c", "another MuLan")
    assert load_timbre_profile(assets / "stages", "tiny-c", "tiny-m").no_drums is None, "nor another MuLan's direction"
    save_timbre_profile(profile, assets / "stages", "tiny-c", "tiny-m")
    model = Cantus.load(assets, backend="torch")
    assert model.timbre.no_drums is not None
    monkeypatch.setattr(G, "NO_DRUMS_SHIFT", 20.0)
    refused = Request([Segment("a rock song with no drums", 2.0)])
    assert not torch.equal(model.style_tokens(refused, 0), model.text_tokens("a rock song")), \
        "refused drums move the prompt's MuLan tokens"
    monkeypatch.setattr(G, "NO_DRUMS_SHIFT", 1.0)
    monkeypatch.setattr(G, "TIMBRE_BIAS", 50.0)  # strong enough to decide every draw of the random tiny stage
    for prompt, allowed in (("a tune led by a cello", range(0, 16)), ("a tune featuring a trumpet", range(16, 32)),
                            ("a rock song with no drums", range(0, 16))):
        codes = torch.cat(list(model.code_stream(Request([Segment(prompt, 2.0)], Settings(duration=2.0)))), -1)
        assert set(codes[:2].flatten().tolist()) <= set(allowed), prompt
    free = torch.cat(list(model.code_stream(Request([Segment("a tune", 2.0)], Settings(duration=2.0)))), -1)
    assert free[:2].min() < 16 <= free[:2].max(), "nothing named: the stage's own choice"


def test_the_instrument_bench_names_every_lead_family_in_words_the_parser_reads():
    from engine.eval.instruments import prompts
    from engine.lm.timbre import family_of
    asked = prompts(24)  # asserts that the parser finds each prompt's lead / "no drums"
    families = {p["family"] for p in asked if p["kind"] == "lead"}
    assert families == {family_of(n) for n in ("cello", "piano", "flute", "oboe", "trumpet", "electric guitar",
                                               "saw lead", "organ", "vibraphone", "banjo", "choir")}
    assert sum(p["kind"] == "no_drums" for p in asked) == 24


def test_drums_a_prompt_refuses_are_not_named_to_the_text_encoder():
    from engine.controls import unnegated
    for said, heard in (("a rock song with no drums", "a rock song"), ("a drumless hip-hop beat", "a hip-hop beat"),
                        ("a pop song, no drums, led by a cello", "a pop song, led by a cello"),
                        ("a techno track with drums", "a techno track with drums"), ("no drums", "no drums")):
        assert unnegated(said) == heard
    req = Request([Segment("a country song without drums", 10.0)])
    assert req.prompt(0) == "a country song" and req.controls().drums is False
