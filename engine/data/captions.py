"""MusicCaps-style captions from a clip's tags, and the inverse: reading tags back out of a caption.

Captions vary in phrasing and length (one short line to four sentences) and mention only true facts; every caption
names the style. ``parse_caption`` finds the vocabulary's phrases longest-first, so "piano ballad" is a style, not
a piano, and "folk fiddle" an instrument, not the folk style.
"""
from __future__ import annotations

import re

import numpy as np

from .instruments import INSTRUMENTS
from .styles import MOODS, STYLES
from .theory import key_name

TEMPO_WORDS = {"slow": ("slow", "unhurried", "leisurely"), "moderate": ("mid-tempo", "medium-paced", "moderately paced"),
               "fast": ("fast", "uptempo", "brisk", "quick")}
TEMPO_PHRASES = {"slow": ("a slow tempo", "a leisurely pace"), "moderate": ("a moderate tempo", "a medium pace"),
                 "fast": ("a fast tempo", "a brisk pace", "a quick tempo")}
DYNAMIC_PHRASES = {"soft": ("played softly", "played gently", "with quiet, gentle dynamics"),
                   "loud": ("played loudly", "with loud, forceful dynamics", "played with strong dynamics")}


def tempo_bucket(bpm: float) -> str:
    return "slow" if bpm < 80 else ("moderate" if bpm <= 115 else "fast")


def clip_tags(spec) -> dict:
    """Structured tags of a planned clip (see plan.ClipSpec)."""
    ins = {"lead": spec.lead, "harmony": spec.harmony, "bass": spec.bass, "pad": spec.pad,
           "drums": None if spec.drums is None else 128 + spec.drums}
    return {
        "style": spec.style, "mood": spec.mood, "dynamics": spec.dynamics, "tempo": spec.tempo,
        "tempo_bucket": tempo_bucket(spec.tempo), "key": key_name(spec.tonic, spec.mode), "tonic": spec.tonic,
        "mode": spec.mode, "meter": spec.meter,
        "instruments": {role: INSTRUMENTS[p].name for role, p in ins.items() if p is not None},
        "programs": {role: p for role, p in ins.items() if p is not None},
    }


def _a(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def _cap(s: str) -> str:
    return s[0].upper() + s[1:]


def make_caption(tags: dict, rng: np.random.Generator) -> str:
    """One caption; call repeatedly with the same rng for paraphrases."""
    def pick(seq):
        return seq[int(rng.integers(len(seq)))]

    def name(role):
        return pick((INSTRUMENTS[tags["programs"][role]].name,) * 3 + INSTRUMENTS[tags["programs"][role]].aliases)

    style = pick(STYLES[tags["style"]].caption)
    mood_words = MOODS[tags["mood"]].words
    mood = pick(mood_words)
    tempo_word = pick(TEMPO_WORDS[tags["tempo_bucket"]])
    key = tags["key"].replace("♭", pick(("♭", " flat", "b"))).replace("♯", pick(("♯", " sharp", "#")))
    roles = tags["programs"]

    openers = [
        f"{_a(tempo_word)}, {mood} {style}",
        f"{_a(mood)} {style}",
        f"this is {_a(mood)} {style}",
        f"{mood} {style}",
        f"{_a(style)} with {_a(mood)} feel",
        f"{'an instrumental ' if 'instrumental' not in style else 'this '}{style} that sounds {mood}",
        f"{_a(tempo_word)} {style}, {mood} in character",
    ]
    parts = [pick(openers)]
    lead = name("lead")
    lead_bits = [f"featuring {_a(lead)} on the melody", f"with {_a(lead)} carrying the tune",
                 f"led by {_a(lead)}", f"where {_a(lead)} plays the main melody"]
    harm = name("harmony")
    rhythm_bits = []
    if "bass" in roles:
        rhythm_bits.append(pick([f"{_a(name('bass'))} line", f"{_a(name('bass'))} holding down the low end"]))
    if "drums" in roles:
        rhythm_bits.append(pick([f"{name('drums')} keeping time", f"a steady beat from the {name('drums')}"]))
    if "pad" in roles:
        rhythm_bits.append(pick([f"{_a(name('pad'))} in the background", f"a wash of {name('pad')}"]))
    tempo_bits = [f"at {tags['tempo']} BPM", f"around {tags['tempo']} bpm",
                  f"with a tempo of {tags['tempo']} beats per minute", f"at {pick(TEMPO_PHRASES[tags['tempo_bucket']])}"]
    key_bits = [f"in {key}", f"in the key of {key}", f"in {_a(tags['mode'])} key"]

    length = int(rng.choice([1, 2, 3, 4], p=[0.2, 0.3, 0.3, 0.2]))
    if length == 1:  # one line: style, mood and a couple of facts
        extra = [pick(lead_bits), pick(tempo_bits), pick(key_bits)]
        rng.shuffle(extra)
        return _cap(" ".join([parts[0]] + extra[: int(rng.integers(1, 3))])) + "."
    s1 = " ".join([parts[0], pick(lead_bits), pick(key_bits) if rng.random() < 0.5 else pick(tempo_bits)])
    sentences = [_cap(s1) + "."]
    if length >= 2:
        plural = harm.endswith("s") and not harm.endswith(("bass", "brass"))  # "synth strings play"
        chords = pick([f"{harm} {'play' if plural else 'plays'} the chords",
                       f"the chords come from {harm if plural else _a(harm)}",
                       f"{harm} {'provide' if plural else 'provides'} the harmony"])
        sentences.append(_cap(chords + (f", with {' and '.join(rhythm_bits)}" if rhythm_bits else "") + "."))
    if length >= 3:
        other = pick([w for w in mood_words if w != mood] or [mood])
        dyn = f", {pick(DYNAMIC_PHRASES[tags['dynamics']])}" if tags["dynamics"] in DYNAMIC_PHRASES else ""
        sentences.append(_cap(pick([f"the mood is {mood} and {other}{dyn}.", f"it feels {other}{dyn}.",
                                    f"the overall atmosphere is {other}{dyn}."])))
    if length >= 4:
        sentences.append(_cap(pick([f"the piece moves {pick(tempo_bits)} {pick(key_bits)}.",
                                    f"it is in {tags['meter']} time, {pick(tempo_bits)}.",
                                    f"the tune sits {pick(key_bits)}, {pick(tempo_bits)}."])))
    return " ".join(sentences)


SHORT_ASPECTS = ("style", "lead", "tempo_bucket", "mode", "mood")


def make_short_prompt(tags: dict, rng: np.random.Generator) -> tuple[str, dict]:
    """A short prompt naming one to three of the clip's aspects, as users type them ("slow music featuring a flute"),
    and the aspects it names ({aspect: value}, values as in the tags; "lead" is the lead instrument's name). Every
    clip sharing those values fits the prompt just as well; ``engine.train.mulan text`` uses that."""
    def pick(seq):
        return seq[int(rng.integers(len(seq)))]

    k = int(rng.choice([1, 2, 3], p=[0.4, 0.4, 0.2]))
    named = {str(a): None for a in rng.permutation(SHORT_ASPECTS)[:k]}
    lead = INSTRUMENTS[tags["programs"]["lead"]]
    front, back = [], []
    if "tempo_bucket" in named:
        front.append(pick(TEMPO_WORDS[tags["tempo_bucket"]]))
        named["tempo_bucket"] = tags["tempo_bucket"]
    if "mood" in named:
        front.append(pick(MOODS[tags["mood"]].words))
        named["mood"] = tags["mood"]
    noun = pick(("music", "piece", "track", "tune"))
    if "style" in named:
        noun = pick(STYLES[tags["style"]].caption)
        named["style"] = tags["style"]
    if "lead" in named:
        ins = pick((lead.name,) * 2 + lead.aliases)
        back.append(pick([f"featuring {_a(ins)} on the melody", f"led by {_a(ins)}", f"with {_a(ins)} carrying the tune"]))
        named["lead"] = lead.name
    if "mode" in named:
        back.append(pick([f"in {_a(tags['mode'])} key", f"in a {tags['mode']} key"]))
        named["mode"] = tags["mode"]
    text = ", ".join(front) + (" " if front else "") + noun
    return _cap(" ".join([text, *back])) + ("." if rng.random() < 0.5 else ""), named


def aspect_value(tags: dict, aspect: str) -> str:
    """A clip's value of one of ``SHORT_ASPECTS`` ("lead": the lead instrument's name)."""
    return INSTRUMENTS[tags["programs"]["lead"]].name if aspect == "lead" else tags[aspect]


def short_prompt_fits(named: dict, tags: dict) -> bool:
    """Whether a clip with ``tags`` has every aspect ``named`` by a short prompt."""
    return all(aspect_value(tags, a) == v for a, v in named.items())


# ------------------------------------------------------------------------------------------------- parsing
def _vocabulary() -> list[tuple[str, str, str]]:
    vocab = []
    for s in STYLES.values():
        vocab += [(p, "style", s.name) for p in s.caption]
    for m in MOODS.values():
        vocab += [(w, "mood", m.name) for w in m.words]
    for ins in INSTRUMENTS.values():
        vocab += [(p, "instrument", ins.name) for p in (ins.name,) + ins.aliases]
    for b in TEMPO_WORDS:
        vocab += [(w, "tempo_bucket", b) for w in TEMPO_WORDS[b] + TEMPO_PHRASES[b]]
    for d, phrases in DYNAMIC_PHRASES.items():
        vocab += [(p, "dynamics", d) for p in phrases]
    vocab += [("major key", "mode", "major"), ("minor key", "mode", "minor")]
    return sorted(vocab, key=lambda v: -len(v[0]))


_VOCAB = _vocabulary()
_KEY_RE = re.compile(r"\b([a-g])(♭| flat|b|♯| sharp|#)? (major|minor)\b(?! key)")
_BPM_RE = re.compile(r"\b(\d{2,3}) ?(?:bpm|beats per minute)\b")
_METER_RE = re.compile(r"\b(\d{1,2}/\d{1,2}) time\b")
_PC = {"c": 0, "d": 2, "e": 4, "f": 5, "g": 7, "a": 9, "b": 11}


def parse_caption(text: str) -> dict:
    """Tags a caption states: style, mood, tempo (BPM), tempo_bucket, tonic/mode, meter, dynamics, instruments."""
    t = " " + text.lower() + " "
    found: dict = {"instruments": set()}
    m = _BPM_RE.search(t)
    if m:
        found["tempo"] = int(m.group(1))
    m = _METER_RE.search(t)
    if m:
        found["meter"] = m.group(1)
    for m in _KEY_RE.finditer(t):
        acc = {"♭": -1, " flat": -1, "b": -1, "♯": 1, " sharp": 1, "#": 1}.get(m.group(2) or "", 0)
        found["tonic"], found["mode"] = (_PC[m.group(1)] + acc) % 12, m.group(3)
    t = _KEY_RE.sub(" ", t)
    for phrase, cat, value in _VOCAB:
        pat = r"(?<![\w-])" + re.escape(phrase) + r"(?![\w-])"
        if re.search(pat, t):
            t = re.sub(pat, " ", t)
            if cat == "instrument":
                found["instruments"].add(value)
            else:
                found.setdefault(cat + "_all", set()).add(value)
                found[cat] = value
    return found
