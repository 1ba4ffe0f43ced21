"""What a musician names, read from the prompt or given explicitly: key, tempo (a BPM, or a word such as "slow"),
the lead instrument and whether drums play.

``parse_prompt`` reads a prompt ("a mournful string quartet in E flat minor, unhurried", "up-tempo rock at 140 bpm
with no drums, led by a cello"); ``parse_key`` reads an explicit key ("A minor", "F#m", "Bb major", "key of D") and
refuses anything else with a message naming what is accepted. Explicit values win over the words
(``Controls.merged``). ``describe`` is what the app shows under the prompt and the library keeps with a clip.

How each control reaches the music today: a BPM, or the BPM a tempo word stands for (drawn per seed from the
corpus's range for that word), becomes the semantic stage's beat grid; a key (or a mode alone) pulls the semantic
ids drawn towards those of that key (``engine.semantic.keys``); an explicit key also moves a hummed melody to it (``transpose_tokens``; a key merely named in
the prompt does not, since the hum is most often sung in it already: with a hum, only an explicit key is pulled
towards); a named lead pulls the coarse codes towards its family's, and "no drums" pulls them away from drums
and moves the prompt's MuLan embedding away from them (``engine.lm.timbre``; the refusal itself is left out of the
words the text encoder reads, ``unnegated``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace

import numpy as np

from .data.captions import parse_caption

# key names as musicians spell them (Db major but C# minor)
NOTE_NAMES = {"major": ["C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"],
              "minor": ["C", "C#", "D", "Eb", "E", "F", "F#", "G", "G#", "A", "Bb", "B"]}
KEYS = [f"{n} {m}" for m, names in NOTE_NAMES.items() for n in names]  # the app's choices
# BPM ranges the corpus's captions mean by each tempo word (its tempo buckets: slow < 80, fast > 115)
TEMPO_RANGES = {"slow": (62, 78), "moderate": (86, 110), "fast": (124, 156)}
TEMPO_WORDS = {  # what musicians write -> tempo word; longer phrases are matched first
    "slow": ("slow", "slowly", "unhurried", "leisurely", "ballad", "laid-back", "laid back", "relaxed tempo",
             "adagio", "largo", "lento", "downtempo", "a slow tempo", "a leisurely pace"),
    "moderate": ("moderate", "medium tempo", "mid-tempo", "midtempo", "medium-paced", "moderately paced", "moderate tempo", "andante",
                 "moderato", "a moderate tempo", "a medium pace"),
    "fast": ("fast", "quick", "brisk", "uptempo", "up-tempo", "driving", "energetic tempo", "allegro", "presto",
             "a fast tempo", "a brisk pace", "a quick tempo", "rapid"),
}
_LETTER = {"c": 0, "d": 2, "e": 4, "f": 5, "g": 7, "a": 9, "b": 11}
_ACCIDENTAL = {"": 0, "#": 1, "♯": 1, "sharp": 1, "b": -1, "♭": -1, "flat": -1}
_KEY = re.compile(r"^\s*(?:key of\s+)?([a-g])\s*(#|♯|b|♭|[\s-]?sharp|[\s-]?flat)?\s*(major|minor|maj|min|m)?\s*$", re.I)
_NOTE_IN_TEXT = re.compile(r"(?<![\w#])([A-Ga-g])(?:(#|♯|♭|[\s-]?sharp|[\s-]?flat)|(b)(?![a-z]))?"
                           r"(?:\s*(major|minor|maj|min|m)(?![a-z]))?(?![\w#♯♭])")
_NO_DRUMS = re.compile(r"\b(no|without|minus)\s+(drums?|percussion|beat)\b|\bdrumless\b|\bsolo\s+\w+", re.I)
_NEGATED_DRUMS = re.compile(r"\s*[,;]?\s*\b(?:with\s+)?(?:no|without|minus)\s+(?:drums?|percussion)\b|\bdrumless\s+", re.I)
_LEAD = re.compile(r"\b(?:led by|lead(?:ing)? by|featuring|solo)\s+(?:an?\s+|the\s+)?([a-z][a-z -]+)", re.I)


class ControlError(ValueError):
    """An explicit control the generator cannot use; the message says what is accepted."""


@dataclass(frozen=True)
class Controls:
    tonic: int | None = None  # pitch class 0-11
    mode: str | None = None  # "major" / "minor"
    bpm: float | None = None  # a tempo named in beats per minute
    tempo_word: str | None = None  # "slow" / "moderate" / "fast"
    lead: str | None = None  # the corpus's instrument name
    drums: bool | None = None  # False: "no drums"

    @property
    def key(self) -> str | None:
        if self.tonic is None:
            return None
        mode = self.mode or "major"
        return f"{NOTE_NAMES[mode][self.tonic]} {mode}"

    def merged(self, explicit: Controls) -> Controls:
        """These controls with every value ``explicit`` sets taking their place (a BPM replaces a tempo word)."""
        out = replace(self, **{k: v for k, v in explicit.__dict__.items() if v is not None})
        if explicit.bpm is not None:
            out = replace(out, tempo_word=None)
        return out

    def tempo_bpm(self, seed: int) -> float | None:
        """The BPM to keep: the named one, else one drawn for ``seed`` from the tempo word's range, else None."""
        if self.bpm is not None:
            return float(self.bpm)
        if self.tempo_word is None:
            return None
        lo, hi = TEMPO_RANGES[self.tempo_word]
        return float(np.random.default_rng([int(seed), 4_711]).integers(lo, hi + 1))

    def describe(self, seed: int | None = None) -> str:
        """"key A minor, ~70 BPM, lead: cello, no drums" (empty when nothing is named)."""
        parts = []
        if self.key:
            parts.append(f"key {self.key}")
        elif self.mode:
            parts.append(f"{self.mode} key")
        if self.bpm is not None:
            parts.append(f"{self.bpm:g} BPM")
        elif self.tempo_word:
            lo, hi = TEMPO_RANGES[self.tempo_word]
            parts.append(f"{self.tempo_word}, ~{self.tempo_bpm(seed):g} BPM" if seed is not None else
                         f"{self.tempo_word} ({lo}-{hi} BPM)")
        if self.lead:
            parts.append(f"lead: {self.lead}")
        if self.drums is False:
            parts.append("no drums")
        return ", ".join(parts)

    def to_json(self) -> dict:
        return {k: v for k, v in {"key": self.key, "bpm": self.bpm, "tempo_word": self.tempo_word,
                                  "lead": self.lead, "drums": self.drums}.items() if v is not None}


def _pitch(letter: str, accidental: str | None) -> int:
    return (_LETTER[letter.lower()] + _ACCIDENTAL[(accidental or "").lower().strip(" -")]) % 12


def _mode(word: str | None) -> str:
    return "minor" if (word or "").lower() in ("minor", "min", "m") else "major"


def parse_key(value: str) -> Controls:
    """An explicit key: "A minor", "a-flat major", "F#m", "Bb", "key of D" (major when no mode is given)."""
    m = _KEY.match(str(value))
    if not m:
        raise ControlError(f"{str(value)[:30]!r} is not a key: give a note A-G, optionally # or b (sharp, flat), and "
                           "major or minor, e.g. 'A minor', 'F#m', 'Bb major'")
    return Controls(tonic=_pitch(m.group(1), m.group(2)), mode=_mode(m.group(3)))


def parse_tempo_word(value: str) -> Controls:
    for word, phrases in TEMPO_WORDS.items():
        if value.strip().lower() in (word, *phrases):
            return Controls(tempo_word=word)
    raise ControlError(f"{value[:30]!r} is not a tempo word: slow, moderate or fast")


def parse_prompt(text: str) -> Controls:
    """The controls a prompt names; what it does not name stays None (the model's choice)."""
    t = " " + str(text).lower().replace(",", " , ") + " "
    found = parse_caption(str(text))
    tonic, mode = found.get("tonic"), found.get("mode")
    for m in _NOTE_IN_TEXT.finditer(str(text)):  # "A-flat major", "in F#m", "key of D": beyond the caption grammar
        accidental, mode_word = m.group(2) or m.group(3), m.group(4)
        before, after = str(text)[:m.start()].lower(), str(text)[m.end():].lower()
        if mode_word and after.lstrip().startswith("key"):
            continue  # "in a minor key" names the mode only
        named = re.search(r"\b(in|key of)\s*$", before) and (m.group(1).isupper() or accidental or mode_word)
        if mode_word or named:  # "in a happy mood" is an article, not the key of A
            tonic, mode = _pitch(m.group(1), accidental), _mode(mode_word)
    word = None
    for w, phrases in TEMPO_WORDS.items():
        for p in sorted(phrases, key=len, reverse=True):
            if re.search(r"(?<![\w-])" + re.escape(p) + r"(?![\w-])", t):
                word = word or w
    lead = None
    m = _LEAD.search(t)
    if m:
        words = m.group(1).split()
        for k in range(min(3, len(words)), 0, -1):  # the longest instrument name right after "led by"
            named = parse_caption(" ".join(words[:k])).get("instruments")
            if named:
                lead = sorted(named)[0]
                break
    drums = False if _NO_DRUMS.search(t) else None
    return Controls(tonic=tonic, mode=mode, bpm=found.get("tempo"),
                    tempo_word=word if found.get("tempo") is None else None, lead=lead, drums=drums)


def unnegated(text: str) -> str:
    """The prompt without the drums it refuses ("a rock song with no drums" -> "a rock song"): a text encoder
    trained on captions, which never say what is absent, hears "drums" in "no drums". The refusal itself is a
    control (``Controls.drums``)."""
    out = _NEGATED_DRUMS.sub("", str(text)).strip(" ,;")
    return out if out else str(text)


def _signature(tonic: int, mode: str | None) -> int:
    """The major key with the same notes: a minor key's relative major."""
    return (tonic + 3) % 12 if mode == "minor" else tonic


def hum_key(tokens: np.ndarray) -> tuple[int, str]:
    """(tonic, mode) a hum's melody tokens suggest: the Krumhansl-Kessler profile that best fits how long each
    pitch class is held."""
    from .spectral import KEY_PROFILES
    tokens = np.asarray(tokens)
    hist = np.bincount(tokens[tokens > 0] - 1, minlength=12).astype(float)
    best, score = (0, "major"), -np.inf
    for mode, profile in KEY_PROFILES.items():
        for tonic in range(12):
            s = float(np.corrcoef(hist, np.roll(profile, tonic))[0, 1]) if hist.std() > 0 else 0.0
            if s > score:
                best, score = (tonic, mode), s
    return best


def transpose_tokens(tokens: np.ndarray, tonic: int, mode: str = "major") -> tuple[np.ndarray, int]:
    """A hum's melody tokens moved into the key (``tonic``, ``mode``) -> (tokens, semitones moved, -5..+6). Keys are
    compared by their notes (A minor has C major's), so a hum heard in the relative key is not moved, and a key of
    the other mode keeps the hum's intervals (moving notes cannot change its mode)."""
    tokens = np.asarray(tokens)
    hum_tonic, hum_mode = hum_key(tokens)
    shift = (_signature(tonic, mode) - _signature(hum_tonic, hum_mode)) % 12
    shift = shift - 12 if shift > 6 else shift
    out = tokens.copy()
    voiced = out > 0
    out[voiced] = (out[voiced] - 1 + shift) % 12 + 1
    return out, shift
