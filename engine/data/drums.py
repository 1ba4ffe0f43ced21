"""Drum grooves on the GM percussion channel, one function of (bar, meter) per style family.

A groove returns hits ``(position_in_bar_ql, gm_note, velocity)``; positions are in quarter lengths. Every fourth
bar ends with a fill; the first bar of a clip may open with a crash.
"""
from __future__ import annotations

import numpy as np

KICK, SIDE, SNARE, CLAP, HAT, PEDAL, OPEN, CRASH, RIDE, TAMB, SHAKER, RIM = 36, 37, 38, 39, 42, 44, 46, 49, 51, 54, 70, 37
TOMS = (50, 48, 47, 45, 43, 41)

Hit = tuple[float, int, int]


def _grid(bar_ql: float, step: float) -> list[float]:
    return [i * step for i in range(round(bar_ql / step))]


def _simple_backbeat(bar_ql: float, beat_ql: float, hat_step: float, kick_pos: list[float], vel: int) -> list[Hit]:
    hits: list[Hit] = [(p, HAT, vel - 20 + (8 if (p / beat_ql) % 1 == 0 else 0)) for p in _grid(bar_ql, hat_step)]
    hits += [(p, KICK, vel) for p in kick_pos if p < bar_ql]
    beats = round(bar_ql / beat_ql)
    backbeats = [1, 3] if beats == 4 else ([1] if beats == 2 else [1, 2])
    hits += [(b * beat_ql, SNARE, vel) for b in backbeats]
    return hits


def groove(name: str, bar: int, bar_ql: float, beat_ql: float, vel: int, rng: np.random.Generator) -> list[Hit]:
    beats = round(bar_ql / beat_ql)
    compound = beat_ql == 1.5
    hits: list[Hit] = []
    if name == "none":
        return []
    if compound:  # 6/8-type: kick on beat 1, snare on beat 2, eighth-note hats
        hits = [(p, HAT, vel - 22) for p in _grid(bar_ql, 0.5)] + [(0.0, KICK, vel)]
        hits += [(b * beat_ql, SNARE if name != "cinematic" else KICK, vel - 6) for b in range(1, beats, 2)]
    elif name in ("rock", "pop", "ballad", "folk", "country"):
        kicks = {"rock": [0, 1.5, 2.0, 2.5], "pop": [0, 1.5, 2.5], "ballad": [0, 2.5], "folk": [0, 2.0],
                 "country": [0, 2.0]}[name]
        if beats == 3:
            kicks = [0.0]
        step = {"rock": 0.5, "pop": 0.25 if rng.random() < 0.5 else 0.5, "ballad": 0.5, "folk": 1.0,
                "country": 0.5}[name]
        hits = _simple_backbeat(bar_ql, beat_ql, step, [k for k in kicks], vel)
        if name == "ballad":
            hits = [(p, n if n != SNARE else SIDE, v - 10) for p, n, v in hits]
        if name == "folk":
            hits = [(p, TAMB if n == HAT else n, v) for p, n, v in hits]
        if name == "country":
            hits = [(p, n if n != SNARE else SIDE, v) for p, n, v in hits]
    elif name == "techno":
        hits = [(float(b), KICK, vel + 6) for b in range(beats)]
        hits += [(b + 0.5, OPEN, vel - 14) for b in range(beats)]
        hits += [(p, HAT, vel - 30) for p in _grid(bar_ql, 0.25) if p % 0.5]
        hits += [(float(b), CLAP, vel - 4) for b in (1, 3) if b < beats]
    elif name == "hiphop":
        hits = [(p, HAT, vel - 18 - (10 if p % 0.5 else 0)) for p in _grid(bar_ql, 0.25)]
        kicks = [0.0, 0.75, 2.5] if bar % 2 == 0 else [0.0, 1.75, 2.25, 2.75]
        hits += [(k, KICK, vel + 4) for k in kicks] + [(1.0, SNARE, vel), (3.0, SNARE, vel)]
    elif name == "swing":
        for b in range(beats):
            hits += [(float(b), RIDE, vel - 12)]
            if b % 2 == 1 or beats == 3:
                hits += [(b + 0.5, RIDE, vel - 20)]  # swung by the arranger
        hits += [(float(b), PEDAL, vel - 18) for b in range(1, beats, 2)]
        hits += [(0.0, KICK, vel - 26)]
    elif name == "bossa":
        hits = [(p, SHAKER, vel - 24) for p in _grid(bar_ql, 0.5)]
        hits += [(0.0, KICK, vel - 8), (1.5, KICK, vel - 14), (2.0, KICK, vel - 8), (3.5, KICK, vel - 14)]
        clave = [0.0, 1.5, 3.0] if bar % 2 == 0 else [1.0, 2.0]
        hits += [(c, RIM, vel - 10) for c in clave]
    elif name == "reggae":  # one drop: kick and snare together on beat 3
        hits = [(p, HAT, vel - 22) for p in _grid(bar_ql, 0.5)]
        hits += [(2.0, KICK, vel), (2.0, RIM, vel - 6)]
    elif name == "march":
        hits = [(float(b), KICK, vel) for b in range(0, beats, 2 if beats == 4 else 1)]
        hits += [(p, SNARE, vel - 14 - (10 if p % 1 else 0)) for p in _grid(bar_ql, 0.5)]
        hits += [(bar_ql - 0.25, SNARE, vel - 20)]
        if bar % 2 == 0:
            hits += [(0.0, CRASH, vel - 20)]
    elif name == "cinematic":
        hits = [(0.0, KICK, vel + 4)] + [(float(b), TOMS[3], vel - 12) for b in range(1, beats)]
        if bar % 2 == 1:
            hits += [(bar_ql - 0.5, TOMS[1], vel - 6), (bar_ql - 0.25, TOMS[0], vel - 4)]
    else:
        raise ValueError(f"unknown groove {name!r}")

    if bar % 4 == 3 and name not in ("techno", "swing", "bossa", "reggae"):  # fill over the last beat
        start = bar_ql - beat_ql
        hits = [h for h in hits if h[0] < start or h[1] in (KICK,)]
        step = 0.25 if not compound else 0.5
        for i, p in enumerate(np.arange(start, bar_ql - 1e-6, step)):
            hits.append((float(p), TOMS[min(i, len(TOMS) - 1)] if name != "march" else SNARE, vel - 8 + 2 * i))
    if bar == 0 and name in ("rock", "pop", "cinematic", "country") and rng.random() < 0.5:
        hits.append((0.0, CRASH, vel - 4))
    return hits
