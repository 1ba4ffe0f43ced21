"""Arrange a melody into a full piece for one clip: lead, chords, bass, pad and drums, timed in seconds.

The melody excerpt is cut at a bar line (looped if shorter than the clip), moved to the clip's mode and key, placed in
the lead instrument's range, harmonised (or, for Bach chorales in chorale style, accompanied by Bach's own voices),
and every part is swung, humanised and timed at the clip's tempo. ``Arrangement.lead`` is the exact melody as
played, the ground truth of the clip's melody labels.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from .drums import groove
from .instruments import INSTRUMENTS
from .melodies import Melody
from .styles import MOODS, STYLES
from .theory import Chord, Note, convert_mode, harmonize

if TYPE_CHECKING:
    from .plan import ClipSpec

DYNAMICS = {"soft": -18, "medium": 0, "loud": 14}


@dataclass
class TimedNote:
    pitch: int
    start: float  # seconds
    end: float
    velocity: int


@dataclass
class Track:
    role: str  # lead | harmony | bass | pad | drums
    program: int  # GM program, or 128 + kit for drums
    notes: list[TimedNote] = field(default_factory=list)
    reverb: int = 50
    pan: int = 64

    @property
    def is_drums(self) -> bool:
        return self.program >= 128


@dataclass
class Arrangement:
    tracks: list[Track]
    chords: list[Chord]  # one per harmonic slot
    duration: float

    @property
    def lead(self) -> list[TimedNote]:
        return next(t.notes for t in self.tracks if t.role == "lead")


def excerpt(mel: Melody, start_bar: int, n_bars: int) -> tuple[list[Note], list[list[Note]]]:
    """Bars [start_bar, start_bar + n_bars) of the melody (and chorale voices), looping the tune if needed."""
    length = mel.n_bars * mel.bar_ql
    t0, t1 = start_bar * mel.bar_ql, (start_bar + n_bars) * mel.bar_ql

    def cut(notes: list[Note]) -> list[Note]:
        out, offset = [], 0.0
        while offset < t1:  # copies of the tune, end to end
            for n in notes:
                s = n.start + offset - t0
                if s < -1e-6 or s >= n_bars * mel.bar_ql - 1e-6:
                    continue
                out.append(Note(n.pitch, s, min(n.dur, n_bars * mel.bar_ql - s)))
            offset += length
        return out

    return cut(mel.notes), [cut(v) for v in mel.voices]


def _place(notes: list[Note], low: int, high: int, base_shift: int) -> int:
    """The transposition (base_shift + 12k) that keeps the most notes inside [low, high], centred."""
    pitches = np.array([n.pitch for n in notes])
    best = None
    for k in range(-5, 6):
        s = base_shift + 12 * k
        p = pitches + s
        outside = np.sum((p < low) | (p > high))
        centre = abs(np.median(p) - (low + high) / 2 + 3)
        key = (outside, centre)
        if best is None or key < best[0]:
            best = (key, s)
    return best[1]


def _voicing(ch: Chord, centre: int, n: int = 3) -> list[int]:
    """Close-position voicing of a chord, its lowest note nearest to ``centre - 4``."""
    pcs = list(ch.pitch_classes)
    root = min(centre - 4 + d for d in range(12) if (centre - 4 + d) % 12 == pcs[0])
    out, p = [], root
    for i in range(max(n, len(pcs))):
        pc = pcs[i % len(pcs)]
        while p % 12 != pc:
            p += 1
        out.append(p)
        p += 1
    return out[:max(n, len(pcs))]


def _comp(pattern: str, chords: list[Chord], slot: float, bar_ql: float, beat_ql: float, vel: int,
          centre: int, rng: np.random.Generator) -> list[Note]:
    notes: list[Note] = []
    for i, ch in enumerate(chords):
        t0 = i * slot
        v = _voicing(ch, centre, 4 if len(ch.pitch_classes) == 4 else 3)
        beats = [t0 + b * beat_ql for b in range(round(slot / beat_ql))]
        if pattern == "block":
            notes += [Note(p, t0, slot * 0.95, vel) for p in v]
        elif pattern == "pad":
            notes += [Note(p, t0, slot, vel - 10) for p in v + [v[0] + 12]]
        elif pattern == "arpeggio":
            seq = [v[0] - 12, v[0], v[1], v[2], v[0] + 12, v[2], v[1], v[0]]
            for j, t in enumerate(np.arange(t0, t0 + slot - 1e-6, 0.5)):  # eighth notes
                notes.append(Note(seq[j % len(seq)], float(t), 0.8, vel - 8 + (6 if j == 0 else 0)))
        elif pattern == "strum":
            offs = [t for t in np.arange(t0, t0 + slot - 1e-6, 0.5) if rng.random() < (0.95 if t % 1 == 0 else 0.55)]
            for t in offs:
                down = (t % 1 == 0)
                order = v + [v[0] + 12] if down else ([v[0] + 12] + v[::-1])
                for k, p in enumerate(order):
                    notes.append(Note(p, float(t) + 0.03 * k, 0.45, vel - (0 if down else 12)))
        elif pattern == "power":
            r = _voicing(Chord(ch.root, "maj"), centre - 12, 3)[0]
            for t in np.arange(t0, t0 + slot - 1e-6, 0.5):
                notes += [Note(p, float(t), 0.45, vel - (0 if t % 1 == 0 else 8)) for p in (r, r + 7, r + 12)]
        elif pattern == "offbeat":
            notes += [Note(p, b + beat_ql / 2, beat_ql / 2 * 0.9, vel - 6) for b in beats for p in v]
        elif pattern == "stab":
            hits = [b + 0.5 for b in beats] if beat_ql == 1.0 else beats[1:]
            notes += [Note(p, h, 0.2, vel) for h in hits for p in v]
        elif pattern == "comp_jazz":
            for h in ([t0, t0 + 1.5] if slot >= 2 else [t0]):
                notes += [Note(p, h, 0.4 if h != t0 else 0.9, vel - 6) for p in v[1:] + [v[0] + 12]]
        elif pattern == "waltz":
            notes += [Note(p, b, beat_ql * 0.6, vel - 6) for b in beats[1:] for p in v]
        elif pattern == "bossa":
            for h in [0.0, 1.5, 3.0, 4.5, 6.0][: 3 if slot <= 4 else 5]:
                if h < slot:
                    notes += [Note(p, t0 + h, 0.9, vel - 8) for p in v]
        elif pattern == "skank":
            notes += [Note(p, b + 0.5, 0.25, vel - 4) for b in beats for p in v]
        elif pattern == "ostinato":
            seq = [v[0], v[0] + 7, v[0] + 12, v[0] + 7]
            for j, t in enumerate(np.arange(t0, t0 + slot - 1e-6, 0.5)):
                notes.append(Note(seq[j % 4], float(t), 0.45, vel - 4 + (6 if j % 4 == 0 else 0)))
        else:
            raise ValueError(f"unknown accompaniment pattern {pattern!r}")
    return notes


def _bass(pattern: str, chords: list[Chord], slot: float, beat_ql: float, vel: int, low: int,
          rng: np.random.Generator) -> list[Note]:
    notes: list[Note] = []
    for i, ch in enumerate(chords):
        t0 = i * slot
        root = low + (ch.root - low) % 12
        if root < low + 5:
            root += 12
        fifth = root + 7 if root + 7 <= low + 19 else root - 5
        nxt = chords[(i + 1) % len(chords)]
        if pattern in ("root", "root_long", "808"):
            notes.append(Note(root, t0, slot * (0.95 if pattern != "root" else beat_ql / slot * 0.9), vel))
            if pattern == "808" and slot >= 4:
                notes.append(Note(root, t0 + 2.5, 1.0, vel - 8))
        elif pattern == "root_fifth":
            for j, b in enumerate(np.arange(t0, t0 + slot - 1e-6, beat_ql * (2 if slot >= 4 * beat_ql else 1))):
                notes.append(Note(root if j % 2 == 0 else fifth, float(b), beat_ql * 0.9, vel))
        elif pattern == "eighths":
            notes += [Note(root, float(b), 0.45, vel - (0 if b % 1 == 0 else 10))
                      for b in np.arange(t0, t0 + slot - 1e-6, 0.5)]
        elif pattern == "walking":
            n = round(slot / beat_ql)
            third = root + (ch.pitch_classes[1] - ch.root) % 12
            tones = [root, third, fifth] + ([root + 12] if root + 12 <= low + 24 else [])
            tgt = low + (nxt.root - low) % 12
            tgt = tgt + 12 if tgt < low + 5 else tgt
            approach = [tgt + (1 if rng.random() < 0.5 else -1)] if n > 1 else []
            line = [root] + [int(rng.choice(tones)) for _ in range(max(n - 2, 0))] + approach
            notes += [Note(p, t0 + j * beat_ql, beat_ql * 0.9, vel - (0 if j == 0 else 6)) for j, p in enumerate(line)]
        elif pattern == "sixteenths_off":
            notes += [Note(root, float(b) + 0.5, 0.4, vel) for b in np.arange(t0, t0 + slot - 1e-6, 1.0)]
        elif pattern == "bossa":
            for h, p in [(0.0, root), (1.5, fifth), (2.0, fifth), (3.5, root)]:
                if h < slot:
                    notes.append(Note(p, t0 + h, 0.45 if h % 1 else 1.4, vel))
        elif pattern == "pop":
            for h, p, d in [(0.0, root, 1.4), (1.5, root, 0.45), (2.0, root, 0.9), (3.0, fifth, 0.45), (3.5, root, 0.45)]:
                if h < slot:
                    notes.append(Note(p, t0 + h, d, vel - (0 if h % 2 == 0 else 8)))
        elif pattern == "reggae":
            notes += [Note(root, t0, 0.9, vel), Note(root + 12 if root + 12 < low + 24 else root, t0 + 1.5, 0.4, vel - 6),
                      Note(fifth, t0 + 2.5, 0.9, vel - 4)]
        elif pattern == "none":
            pass
        else:
            raise ValueError(f"unknown bass pattern {pattern!r}")
    return notes


def _swing_warp(t: np.ndarray, amount: float, unit: float) -> np.ndarray:
    """Move off-beat subdivisions late: a point at ``unit/2`` inside each ``unit`` moves to ``unit*(1/2+amount/2)``."""
    if amount <= 0:
        return t
    k, r = np.divmod(t, unit)
    mid, new_mid = unit / 2, unit * (0.5 + amount / 2)
    r2 = np.where(r < mid, r * new_mid / mid, new_mid + (r - mid) * (unit - new_mid) / (unit - mid))
    return k * unit + r2


def arrange(mel: Melody, spec: ClipSpec) -> Arrangement:
    style, mood = STYLES[spec.style], MOODS[spec.mood]
    rng = np.random.default_rng([spec.seed, spec.index, 7])
    sec_per_ql = 60.0 / spec.tempo / mel.beat_ql
    n_bars = int(np.ceil(spec.duration / (mel.bar_ql * sec_per_ql))) + 1
    lead, voices = excerpt(mel, spec.start_bar, n_bars)
    intro = spec.intro_bars * mel.bar_ql
    lead = [Note(n.pitch, n.start + intro, n.dur) for n in lead if n.start + intro < n_bars * mel.bar_ql]
    if not lead:  # the planned bars are all rest (a part that waits): start at the tune's first note, no intro
        lead, voices = excerpt(mel, int(min(n.start for n in mel.notes) // mel.bar_ql), n_bars)
        intro = 0.0
    voices = [[Note(n.pitch, n.start + intro, n.dur) for n in v] for v in voices]

    # mode, key and register
    conv = [Note(convert_mode(n.pitch, mel.tonic, mel.mode, spec.mode), n.start, n.dur) for n in lead]
    voices = [[Note(convert_mode(n.pitch, mel.tonic, mel.mode, spec.mode), n.start, n.dur) for n in v] for v in voices]
    lead_ins = INSTRUMENTS[spec.lead]
    base = (spec.tonic - mel.tonic + 6) % 12 - 6
    shift = _place(conv, lead_ins.low + 3, lead_ins.high - 5, base)
    lead = [Note(n.pitch + shift, n.start, n.dur) for n in conv]

    dyn = DYNAMICS[spec.dynamics]
    vel = int(np.clip(mood.velocity + dyn, 30, 124))
    slot = mel.bar_ql / style.chords_per_bar
    chords = harmonize(lead, spec.tonic, spec.mode, mel.bar_ql, n_bars, style.chords_per_bar)
    if style.sevenths:
        chords = [c.with_sevenths(spec.tonic, spec.mode) for c in chords]

    tracks: list[Track] = []
    pan = {"lead": 64, "harmony": 44, "bass": 64, "pad": 84, "drums": 64}
    legato = INSTRUMENTS[spec.lead].family in ("strings", "brass", "reed", "pipe", "voice", "synth", "organ")
    lead_notes = [Note(n.pitch, n.start, n.dur * (0.95 if legato else 0.9), vel + 6 +
                       (6 if abs(n.start % mel.bar_ql) < 1e-6 else 0)) for n in lead]
    tracks.append(Track("lead", spec.lead, _timed(lead_notes, style, sec_per_ql, rng, 0.008), style.reverb,
                        pan["lead"]))

    harm_ins = INSTRUMENTS[spec.harmony]
    if style.comp == ("satb",) and voices and len(voices) == 3:
        harm = [Note(n.pitch + shift, n.start, n.dur * 0.95, vel - 8) for v in voices for n in v]
        harm = [n for n in harm if n.start < n_bars * mel.bar_ql]
    else:
        pattern = style.comp[int(rng.integers(len(style.comp)))]
        pattern = "block" if pattern == "satb" else pattern  # a chorale tune without Bach's own voices
        centre = int(np.clip(np.median([n.pitch for n in lead]) - 10, harm_ins.low + 10, harm_ins.high - 12))
        harm = _comp(pattern, chords, slot, mel.bar_ql, mel.beat_ql, vel - 10, centre, rng)
    tracks.append(Track("harmony", spec.harmony, _timed(harm, style, sec_per_ql, rng, 0.01), style.reverb,
                        pan["harmony"]))

    if spec.bass is not None:
        b = _bass(style.bass_pattern, chords, slot, mel.beat_ql, vel - 4, INSTRUMENTS[spec.bass].low, rng)
        tracks.append(Track("bass", spec.bass, _timed(b, style, sec_per_ql, rng, 0.006), style.reverb // 3, 64))
    if spec.pad is not None:
        pad = _comp("pad", chords, slot, mel.bar_ql, mel.beat_ql, vel - 22, 62, rng)
        tracks.append(Track("pad", spec.pad, _timed(pad, style, sec_per_ql, rng, 0.0), style.reverb, pan["pad"]))
    if spec.drums is not None:
        hits = []
        for bar in range(n_bars):
            for pos, note, v in groove(style.groove, bar, mel.bar_ql, mel.beat_ql, vel, rng):
                hits.append(Note(note, bar * mel.bar_ql + pos, 0.25, int(np.clip(v, 20, 127))))
        tracks.append(Track("drums", 128 + spec.drums, _timed(hits, style, sec_per_ql, rng, 0.004),
                            style.reverb // 2, 64))
    for t in tracks:
        t.notes = [n for n in t.notes if n.start < spec.duration]
    return Arrangement(tracks, chords, spec.duration)


def _timed(notes: list[Note], style, sec_per_ql: float, rng: np.random.Generator, jitter_s: float) -> list[TimedNote]:
    if not notes:
        return []
    starts = np.array([n.start for n in notes])
    ends = np.array([n.end for n in notes])
    unit = style.swing_unit
    starts, ends = _swing_warp(starts, style.swing, unit), _swing_warp(ends, style.swing, unit)
    js = rng.normal(0, jitter_s, len(notes)) if jitter_s > 0 else np.zeros(len(notes))
    vj = rng.integers(-6, 7, len(notes))
    out = []
    for n, s, e, j, dv in zip(notes, starts, ends, js, vj):
        s_sec = max(0.0, s * sec_per_ql + j)
        out.append(TimedNote(int(n.pitch), s_sec, max(s_sec + 0.03, e * sec_per_ql + j),
                             int(np.clip(n.velocity + dv, 1, 127))))
    return out
