"""Deterministic clip plans: every choice of a clip (split, melody, style, mood, key, tempo, instruments, voice) is
drawn from ``numpy.random.default_rng([seed, index])``, so clip ``i`` of a build is the same whatever else is built.

Splits are by composition: real tunes are assigned to train/valid/test by a hash of their interval sequence, and a
clip takes its melody from its own split's pool; generated tunes are made for one clip only.
"""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass

import numpy as np

from .instruments import INSTRUMENTS
from .melodies import Melody, generate_melody
from .styles import MOODS, STYLES

SPLITS = (("train", 0.80), ("valid", 0.05), ("test", 0.15))
GENERATED_FRACTION = 0.25  # clips whose melody is generated rather than taken from a score
ALL_LEADS = tuple(sorted({p for s in STYLES.values() for p in s.lead}))  # a crossover clip's lead: any style's
REPEAT_FRACTION = 0.15  # clips drawing from a small core of tunes, so compositions recur in several arrangements
VOICE_KINDS = ("hum", "whistle", "sing")
VOICE_RATES = (8_000, 16_000, 22_050, 24_000, 32_000, 44_100, 48_000)


@dataclass
class ClipSpec:
    id: str
    index: int
    seed: int
    split: str
    duration: float
    melody_id: str
    composition: str
    melody_source: str
    start_bar: int
    intro_bars: int
    style: str
    mood: str
    dynamics: str
    tempo: int
    tonic: int
    mode: str
    meter: str
    lead: int
    harmony: int
    bass: int | None
    drums: int | None  # GM2 kit number
    pad: int | None
    voice_kind: str
    voice_rate: int
    voice_seed: int

    def to_json(self) -> dict:
        return asdict(self)


def split_of(composition: str) -> str:
    u = int(hashlib.sha1(composition.encode()).hexdigest()[:8], 16) / 2 ** 32
    acc = 0.0
    for name, frac in SPLITS:
        acc += frac
        if u < acc:
            return name
    return SPLITS[-1][0]


class MelodyPool:
    """Real melodies grouped by split and meter family, for compatible, split-respecting draws; ``generated``: the
    share of clips given a generated tune instead (each one a composition no other build has); ``crossover``: the
    share of clips whose lead comes from any style's leads, and, independently, the share of drummed styles' clips
    played without drums (combinations musicians ask for that the styles alone rarely make)."""

    def __init__(self, melodies: list[Melody], generated: float = GENERATED_FRACTION, crossover: float = 0.0):
        for what, share in (("generated tunes", generated), ("crossover clips", crossover)):
            if not 0 <= share <= 1:
                raise ValueError(f"the share of {what} is from 0 to 1, not {share}")
        self.generated, self.crossover = generated, crossover
        self.by_id = {m.id: m for m in melodies}
        self.pools: dict[tuple[str, str], list[Melody]] = {}
        for m in melodies:
            self.pools.setdefault((split_of(m.composition), _family(m)), []).append(m)

    def candidates(self, split: str, families: list[str]) -> list[Melody]:
        return [m for f in families for m in self.pools.get((split, f), [])]


def _family(m: Melody) -> str:
    if m.beat_ql == 1.5:
        return "compound"
    return {2: "duple", 4: "duple", 3: "triple"}[m.beats_per_bar]


def _families(style) -> list[str]:
    fam = []
    if 2 in style.meters or 4 in style.meters:
        fam.append("duple")
    if 3 in style.meters:
        fam.append("triple")
    if style.compound:
        fam.append("compound")
    return fam


def pick_program(rng: np.random.Generator, options: tuple[int, ...], avoid: set[int]) -> int:
    choices = [p for p in options if p not in avoid] or list(options)
    return int(choices[rng.integers(len(choices))])


def plan_clip(index: int, seed: int, pool: MelodyPool, duration: float = 10.0) -> tuple[ClipSpec, Melody]:
    rng = np.random.default_rng([seed, index])
    u, acc, split = rng.random(), 0.0, SPLITS[-1][0]
    for name, frac in SPLITS:
        acc += frac
        if u < acc:
            split = name
            break
    style_name = sorted(STYLES)[int(rng.integers(len(STYLES)))]
    style = STYLES[style_name]
    mood = MOODS[str(rng.choice(style.moods))]
    mode = str(rng.choice(mood.modes))

    cands = pool.candidates(split, _families(style))
    if cands and rng.random() >= pool.generated:
        if style_name == "chorale" and rng.random() < 0.7:  # prefer tunes that come with Bach's harmonisation
            cands = [m for m in cands if m.voices] or cands
        if rng.random() < REPEAT_FRACTION:
            cands = cands[: max(1, len(cands) // 20)]
        melody = cands[int(rng.integers(len(cands)))]
        composition = melody.composition
    else:
        for attempt in range(50):
            melody = generate_melody(np.random.default_rng([seed, index, 1, attempt]), index, seed)
            if _family(melody) in _families(style):
                break
        composition = f"generated-{seed}-{index}"

    lo, hi = style.tempo
    centre = lo + (hi - lo) * (0.5 + 0.4 * mood.tempo_bias)
    tempo = int(np.clip(round(rng.normal(centre, (hi - lo) * 0.18)), lo, hi))
    sec_per_bar = melody.bar_ql / melody.beat_ql * 60.0 / tempo
    bars_needed = int(np.ceil(duration / sec_per_bar))
    last_start = max(0, melody.n_bars - bars_needed)
    start_bar = int(rng.integers(0, last_start // 2 + 1)) * 2

    lead = pick_program(rng, style.lead, set())
    harmony = pick_program(rng, style.harmony, {lead})
    bass = pick_program(rng, style.bass, {lead, harmony}) if style.bass else None
    drums = pick_program(rng, style.drums, set()) if style.drums and rng.random() < 0.9 else None
    pad = pick_program(rng, style.pad, {lead, harmony}) if style.pad and rng.random() < 0.5 else None
    if pool.crossover:  # its own draws, so a build without crossover plans every clip as before
        xr = np.random.default_rng([seed, index, 2])
        cross = xr.random(2) < pool.crossover
        if cross[0]:
            lead = pick_program(xr, ALL_LEADS, {harmony, bass, pad})
        if cross[1]:
            drums = None
    # gentle moods are never played loud, forceful ones never soft
    dyn_weights = {"soft": 0.0 if mood.velocity > 95 else 1.0 + (mood.velocity < 75) * 2, "medium": 2.0,
                   "loud": 0.0 if mood.velocity < 75 else 1.0 + (mood.velocity > 95) * 2}
    names = list(dyn_weights)
    p = np.array([dyn_weights[k] for k in names])
    dynamics = names[int(rng.choice(len(names), p=p / p.sum()))]

    intro = int(rng.random() < 0.2 and style.comp != ("satb",))  # Bach's own voices enter with the tune
    spec = ClipSpec(
        id=f"{split}-{seed}-{index:06d}", index=index, seed=seed, split=split, duration=float(duration),
        melody_id=melody.id, composition=composition, melody_source=melody.source, start_bar=start_bar,
        intro_bars=intro, style=style_name, mood=mood.name, dynamics=dynamics, tempo=tempo,
        tonic=int(rng.integers(12)), mode=mode, meter=melody.meter, lead=lead, harmony=harmony, bass=bass,
        drums=drums, pad=pad, voice_kind=str(rng.choice(VOICE_KINDS)),
        voice_rate=int(rng.choice(VOICE_RATES)), voice_seed=int(rng.integers(2 ** 31)),
    )
    assert all(p in INSTRUMENTS for p in (lead, harmony)), "style names an unknown GM program"
    return spec, melody
