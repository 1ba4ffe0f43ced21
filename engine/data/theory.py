"""Music theory the corpus needs: keys, modes, diatonic chords, melody harmonisation.

Pitches are MIDI numbers; pitch classes are 0..11 with C = 0. A melody note is ``Note(pitch, start, dur)`` with
``start``/``dur`` in quarter lengths (beats of a quarter note) from the start of the excerpt.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MODES = ("major", "minor")
MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)
MINOR_SCALE = (0, 2, 3, 5, 7, 8, 10)  # natural minor; V is made major (harmonic minor) in cadences

# Spelling of each tonic as musicians write it, per mode (sharps/flats as in the circle of fifths).
_MAJOR_NAMES = ("C", "D♭", "D", "E♭", "E", "F", "F♯", "G", "A♭", "A", "B♭", "B")
_MINOR_NAMES = ("C", "C♯", "D", "E♭", "E", "F", "F♯", "G", "G♯", "A", "B♭", "B")


@dataclass(frozen=True)
class Note:
    pitch: int
    start: float  # quarter lengths
    dur: float  # quarter lengths
    velocity: int = 80

    @property
    def end(self) -> float:
        return self.start + self.dur


def key_name(tonic: int, mode: str) -> str:
    """'A minor', 'E♭ major'."""
    names = _MAJOR_NAMES if mode == "major" else _MINOR_NAMES
    return f"{names[tonic % 12]} {mode}"


def scale(mode: str) -> tuple[int, ...]:
    return MAJOR_SCALE if mode == "major" else MINOR_SCALE


def convert_mode(pitch: int, tonic: int, src: str, dst: str) -> int:
    """Map a pitch from ``src`` mode to ``dst`` mode over the same tonic (parallel major/minor).

    Major -> minor lowers scale degrees 3 and 6 and keeps the leading tone (harmonic minor, as tunes cadence);
    minor -> major raises 3, 6 and a lowered 7.
    """
    if src == dst:
        return pitch
    rel = (pitch - tonic) % 12
    if src == "major" and dst == "minor":
        shift = {4: -1, 9: -1}.get(rel, 0)
    else:
        shift = {3: 1, 8: 1, 10: 1}.get(rel, 0)
    return pitch + shift


@dataclass(frozen=True)
class Chord:
    root: int  # pitch class
    quality: str  # "maj", "min", "dim", "7", "maj7", "min7"

    @property
    def pitch_classes(self) -> tuple[int, ...]:
        iv = {"maj": (0, 4, 7), "min": (0, 3, 7), "dim": (0, 3, 6), "7": (0, 4, 7, 10),
              "maj7": (0, 4, 7, 11), "min7": (0, 3, 7, 10)}[self.quality]
        return tuple((self.root + i) % 12 for i in iv)

    def with_sevenths(self, tonic: int, mode: str) -> Chord:
        """The diatonic seventh chord on the same root (jazz / bossa voicing)."""
        rel = (self.root - tonic) % 12
        if self.quality == "maj":
            dominant = (mode == "major" and rel == 7) or (mode == "minor" and rel == 7)
            return Chord(self.root, "7" if dominant else "maj7")
        if self.quality == "min":
            return Chord(self.root, "min7")
        return self


def diatonic_chords(tonic: int, mode: str) -> list[tuple[str, Chord]]:
    """Roman-numeral name and chord for each usable diatonic triad."""
    t = tonic % 12
    if mode == "major":
        spec = [("I", 0, "maj"), ("ii", 2, "min"), ("iii", 4, "min"), ("IV", 5, "maj"),
                ("V", 7, "maj"), ("vi", 9, "min")]
    else:
        spec = [("i", 0, "min"), ("III", 3, "maj"), ("iv", 5, "min"), ("V", 7, "maj"),
                ("VI", 8, "maj"), ("VII", 10, "maj"), ("v", 7, "min")]
    return [(name, Chord((t + off) % 12, q)) for name, off, q in spec]


# Log-prior of moving from one roman numeral to the next: functional harmony, tonic-heavy.
_GOOD_MOVES = {
    "I": "IV V vi ii", "ii": "V", "iii": "vi IV", "IV": "V I ii", "V": "I vi", "vi": "ii IV V",
    "i": "iv V VI VII", "III": "VI iv", "iv": "V i VII", "v": "i VI", "VI": "iv VII V", "VII": "III i",
}


def harmonize(notes: list[Note], tonic: int, mode: str, bar_ql: float, n_bars: int,
              chords_per_bar: int = 1) -> list[Chord]:
    """Choose one diatonic chord per harmonic slot so the melody's notes are chord tones (Viterbi).

    Score of a chord in a slot: duration-weighted fraction of melody notes that are chord tones (downbeats count
    double), plus a transition prior that favours functional progressions, and the tonic at the start and end.
    """
    chords = diatonic_chords(tonic, mode)
    n = n_bars * chords_per_bar
    slot = bar_ql / chords_per_bar
    emit = np.zeros((n, len(chords)))
    for note in notes:
        s0 = int(note.start // slot)
        for s in range(max(s0, 0), min(int(np.ceil(note.end / slot)), n)):
            overlap = min(note.end, (s + 1) * slot) - max(note.start, s * slot)
            if overlap <= 0:
                continue
            w = overlap * (2.0 if abs(note.start - s * slot) < 1e-6 else 1.0)
            for j, (_, ch) in enumerate(chords):
                emit[s, j] += w if note.pitch % 12 in ch.pitch_classes else -0.6 * w
    names = [name for name, _ in chords]
    trans = np.full((len(chords), len(chords)), -0.8)
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            if b in _GOOD_MOVES[a].split():
                trans[i, j] = 0.0
            elif a == b:
                trans[i, j] = -0.3
    prior = np.array([0.6 if k in ("I", "i") else (-0.3 if k in ("iii", "v") else 0.0) for k in names])
    score = emit[0] + prior * 2
    back = np.zeros((n, len(chords)), dtype=int)
    for s in range(1, n):
        cand = score[:, None] + trans
        back[s] = cand.argmax(0)
        score = cand.max(0) + emit[s] + 0.15 * prior
    score = score + prior  # end on the tonic when the melody allows
    path = [int(score.argmax())]
    for s in range(n - 1, 0, -1):
        path.append(int(back[s, path[-1]]))
    return [chords[j][1] for j in reversed(path)]


def progression(tonic: int, mode: str, numerals: str) -> list[Chord]:
    """Chords for a space-separated roman-numeral progression in a key, e.g. 'I V vi IV'."""
    table = dict(diatonic_chords(tonic, mode))
    return [table[r] for r in numerals.split()]
