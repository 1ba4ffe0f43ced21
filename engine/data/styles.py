"""Style templates (how a melody is arranged) and moods (how it is played).

A style fixes tempo range, meters, the instrument pools for each role, the accompaniment patterns and the drum
groove; a mood biases mode, tempo, dynamics and reverb. ``caption`` phrases are what the captions call them.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mood:
    name: str
    words: tuple[str, ...]  # adjectives a caption may use for it (unique to this mood)
    modes: tuple[str, ...]  # modes it may be played in
    tempo_bias: float  # -1 slowest .. +1 fastest part of the style's range
    velocity: int  # base MIDI velocity


MOODS = {m.name: m for m in [
    Mood("happy", ("happy", "joyful", "cheerful", "upbeat", "bright"), ("major",), 0.4, 92),
    Mood("melancholic", ("melancholic", "sad", "wistful", "sorrowful", "melancholy"), ("minor",), -0.6, 70),
    Mood("calm", ("calm", "peaceful", "relaxing", "serene", "meditative", "tranquil"), ("major", "minor"), -0.8, 62),
    Mood("energetic", ("energetic", "driving", "powerful", "lively"), ("major", "minor"), 0.9, 108),
    Mood("dark", ("dark", "ominous", "brooding", "gloomy"), ("minor",), -0.2, 86),
    Mood("romantic", ("romantic", "tender", "heartfelt", "warm"), ("major", "minor"), -0.4, 72),
    Mood("epic", ("epic", "heroic", "majestic", "triumphant"), ("major", "minor"), 0.2, 104),
    Mood("playful", ("playful", "whimsical", "bouncy", "quirky"), ("major",), 0.6, 86),
    Mood("dreamy", ("dreamy", "ethereal", "floating", "hazy"), ("major", "minor"), -0.7, 64),
]}


@dataclass(frozen=True)
class Style:
    name: str
    caption: tuple[str, ...]  # noun phrases naming this style in captions (unique to it)
    tempo: tuple[int, int]  # BPM range
    meters: tuple[int, ...]  # beats per bar it accepts (2, 3, 4); compound meters allowed where 6 listed
    compound: bool  # accepts 6/8-type meters
    lead: tuple[int, ...]  # GM programs
    harmony: tuple[int, ...]
    comp: tuple[str, ...]  # accompaniment patterns (see arrange.py)
    bass: tuple[int, ...]  # () = no bass part
    bass_pattern: str
    drums: tuple[int, ...]  # GM2 kit numbers; () = no drums
    groove: str  # drum pattern name (see drums.py)
    pad: tuple[int, ...]  # optional sustained pad layer
    moods: tuple[str, ...]
    swing: float = 0.0  # 0 straight .. 1/3 triplet swing of the off-beat subdivision
    swing_unit: float = 1.0  # ql holding one on-beat + one off-beat subdivision (1.0: eighths, 0.5: sixteenths)
    reverb: int = 50  # CC91 level
    chords_per_bar: int = 1
    sevenths: bool = False


STYLES = {s.name: s for s in [
    Style("chorale", ("chorale", "hymn", "four-part chorale"), (60, 88), (3, 4), False,
          (52, 19, 48, 16), (52, 19, 48, 49), ("satb",), (), "none", (), "none", (),
          ("calm", "melancholic", "romantic", "epic", "dark"), reverb=90, chords_per_bar=2),
    Style("piano_ballad", ("piano ballad", "ballad"), (60, 84), (3, 4), True,
          (0, 1, 73, 40, 42, 65), (0, 1), ("arpeggio", "block"), (32, 33, 35, 42), "root_long", (40, 0),
          "ballad", (48, 49, 89), ("melancholic", "romantic", "calm", "dreamy"), reverb=70),
    Style("folk", ("folk song", "folk tune", "folk dance"), (84, 132), (2, 3, 4), True,
          (110, 40, 73, 22, 21, 105, 71), (25, 24, 21, 105), ("strum", "arpeggio"), (32, 33), "root_fifth", (0, 8),
          "folk", (), ("happy", "playful", "melancholic", "calm", "energetic"), reverb=45),
    Style("rock", ("rock song", "rock track", "rock instrumental"), (100, 150), (4,), False,
          (29, 30, 27, 81, 16), (29, 30, 27), ("power", "strum"), (34, 33), "eighths", (16, 0, 8),
          "rock", (), ("energetic", "dark", "epic", "happy"), reverb=35),
    Style("pop", ("pop song", "pop tune", "pop instrumental"), (92, 128), (4,), False,
          (0, 4, 81, 80, 27, 65, 11), (0, 4, 25, 27, 50), ("block", "offbeat", "arpeggio"), (33, 38, 34),
          "pop", (0, 24, 8), "pop", (89, 50, 88), ("happy", "romantic", "energetic", "playful", "dreamy"),
          reverb=55),
    Style("jazz_swing", ("jazz swing tune", "swing jazz piece", "jazz number"), (110, 180), (3, 4), False,
          (66, 65, 56, 26, 11, 57, 71), (0, 26, 4), ("comp_jazz",), (32,), "walking", (32, 40),
          "swing", (), ("happy", "playful", "romantic", "energetic", "melancholic"),
          swing=1 / 3, reverb=45, sevenths=True),
    Style("techno", ("techno track", "techno tune"), (124, 140), (4,), False,
          (81, 80, 62, 73), (81, 50, 62, 88), ("stab", "pad"), (38, 39), "sixteenths_off", (24, 25),
          "techno", (94, 95, 88), ("energetic", "dark", "dreamy"), reverb=40),
    Style("ambient", ("ambient piece", "ambient soundscape", "atmospheric ambient track"), (60, 84), (3, 4), True,
          (73, 11, 108, 46, 75, 40), (89, 88, 94, 95, 50, 49), ("pad",), (), "none", (), "none", (52, 89, 94),
          ("calm", "dreamy", "dark", "melancholic"), reverb=110),
    Style("march", ("march", "military march", "marching band tune"), (104, 124), (2, 4), True,
          (56, 72, 61, 71, 60), (61, 60, 57), ("stab",), (58,), "root_fifth", (0, 48), "march", (),
          ("happy", "epic", "energetic", "playful"), reverb=45),
    Style("waltz", ("waltz", "viennese waltz"), (84, 180), (3,), False,
          (40, 73, 21, 0, 71, 68), (48, 0, 21, 45), ("waltz",), (43, 32, 58), "root", (), "none", (),
          ("romantic", "happy", "melancholic", "playful", "dreamy"), reverb=65),
    Style("hip_hop", ("hip-hop beat", "hip hop instrumental", "boom bap beat"), (80, 98), (4,), False,
          (4, 5, 11, 81, 73, 66), (4, 5, 0, 11), ("block", "stab"), (38, 39, 33), "808", (25, 24, 0),
          "hiphop", (), ("dark", "calm", "energetic", "melancholic", "playful"), swing=0.2, swing_unit=0.5, reverb=40),
    Style("cinematic", ("cinematic orchestral piece", "orchestral film score", "cinematic score"), (60, 110),
          (2, 3, 4), True, (60, 40, 73, 56, 42, 68), (48, 49, 61, 60), ("ostinato", "pad"), (43, 42, 58),
          "root_long", (48,), "cinematic", (52,), ("epic", "dark", "melancholic", "romantic", "dreamy"), reverb=90),
    Style("bossa_nova", ("bossa nova", "bossa nova tune"), (110, 140), (4,), False,
          (73, 66, 65, 26, 11, 0), (24, 26, 4), ("bossa",), (32, 33), "bossa", (0, 40, 32), "bossa", (),
          ("calm", "romantic", "happy", "dreamy"), reverb=50, sevenths=True),
    Style("reggae", ("reggae tune", "roots reggae track"), (66, 88), (4,), False,
          (16, 22, 27, 56, 65), (27, 16, 0), ("skank",), (33, 35), "reggae", (0, 8), "reggae", (),
          ("calm", "happy", "playful", "energetic"), reverb=55),
    Style("country", ("country song", "country tune", "bluegrass tune"), (96, 140), (2, 4), False,
          (110, 105, 22, 25), (25, 105), ("strum",), (32, 33), "root_fifth", (0, 40), "country", (),
          ("happy", "playful", "melancholic", "energetic"), reverb=40),
]}
