"""General MIDI instruments the corpus uses, with the names captions give them and their playable ranges.

``name`` is the canonical caption name (several programs may share one, e.g. both grand pianos are "piano");
``aliases`` are other phrasings a caption may use. Drum kits are programs 128 + GM2 kit number on channel 10.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Instrument:
    program: int  # 0..127 melodic GM program; 128 + kit for drum kits
    name: str
    family: str
    low: int  # comfortable MIDI range
    high: int
    aliases: tuple[str, ...] = ()

    @property
    def is_drums(self) -> bool:
        return self.program >= 128

    @property
    def kit(self) -> int:
        return self.program - 128


_TABLE = [
    (0, "piano", "keys", 36, 96, ("grand piano", "acoustic piano")),
    (1, "bright piano", "keys", 36, 96, ("bright acoustic piano",)),
    (4, "electric piano", "keys", 36, 88, ("rhodes", "rhodes piano", "e-piano")),
    (5, "fm electric piano", "keys", 36, 88, ("dx electric piano",)),
    (6, "harpsichord", "keys", 41, 89, ()),
    (8, "celesta", "mallets", 60, 96, ()),
    (11, "vibraphone", "mallets", 53, 89, ("vibes",)),
    (12, "marimba", "mallets", 45, 96, ()),
    (16, "organ", "organ", 36, 96, ("drawbar organ", "hammond organ")),
    (19, "church organ", "organ", 36, 96, ("pipe organ",)),
    (21, "accordion", "organ", 53, 89, ()),
    (22, "harmonica", "reed", 60, 84, ()),
    (24, "nylon guitar", "guitar", 40, 84, ("classical guitar", "nylon-string guitar", "spanish guitar")),
    (25, "acoustic guitar", "guitar", 40, 84, ("steel-string guitar", "steel guitar")),
    (26, "jazz guitar", "guitar", 40, 84, ("hollow-body guitar",)),
    (27, "electric guitar", "guitar", 40, 86, ("clean electric guitar", "clean guitar")),
    (29, "overdriven guitar", "guitar", 40, 86, ("crunchy guitar", "overdriven electric guitar")),
    (30, "distorted guitar", "guitar", 40, 86, ("distortion guitar", "heavy guitar")),
    (32, "upright bass", "bass", 28, 55, ("acoustic bass", "double bass")),
    (33, "bass guitar", "bass", 28, 60, ("electric bass", "fingered bass")),
    (34, "picked bass", "bass", 28, 60, ("pick bass",)),
    (35, "fretless bass", "bass", 28, 60, ()),
    (38, "synth bass", "bass", 24, 60, ("synthesizer bass",)),
    (39, "analog synth bass", "bass", 24, 60, ("analog bass",)),
    (40, "violin", "strings", 55, 96, ()),
    (41, "viola", "strings", 48, 84, ()),
    (42, "cello", "strings", 36, 76, ("violoncello",)),
    (43, "contrabass", "strings", 28, 55, ("orchestral bass",)),
    (45, "pizzicato strings", "strings", 36, 84, ("plucked strings",)),
    (46, "harp", "strings", 36, 96, ("concert harp", "orchestral harp")),
    (47, "timpani", "percussion", 36, 57, ("kettle drums",)),
    (48, "string ensemble", "strings", 36, 96, ("strings", "string section", "orchestral strings")),
    (49, "slow strings", "strings", 36, 96, ("legato strings",)),
    (50, "synth strings", "synth", 36, 96, ("synthesizer strings",)),
    (52, "choir", "voice", 48, 79, ("choir aahs", "vocal choir", "chorus of voices")),
    (53, "voice oohs", "voice", 48, 79, ("ooh vocals",)),
    (56, "trumpet", "brass", 55, 82, ()),
    (57, "trombone", "brass", 40, 72, ()),
    (58, "tuba", "brass", 28, 58, ()),
    (60, "french horn", "brass", 41, 77, ("horn",)),
    (61, "brass section", "brass", 41, 82, ("brass", "horn section")),
    (62, "synth brass", "synth", 41, 82, ("synthesizer brass",)),
    (64, "soprano saxophone", "reed", 56, 87, ("soprano sax",)),
    (65, "alto saxophone", "reed", 49, 81, ("alto sax",)),
    (66, "tenor saxophone", "reed", 44, 76, ("tenor sax",)),
    (68, "oboe", "reed", 58, 91, ()),
    (70, "bassoon", "reed", 34, 72, ()),
    (71, "clarinet", "reed", 50, 91, ()),
    (72, "piccolo", "pipe", 74, 102, ()),
    (73, "flute", "pipe", 60, 96, ()),
    (75, "pan flute", "pipe", 60, 96, ("pan pipes", "panpipes")),
    (80, "square lead", "synth", 48, 96, ("square-wave synth lead", "chiptune lead")),
    (81, "saw lead", "synth", 48, 96, ("sawtooth synth lead", "sawtooth lead")),
    (88, "new age pad", "synth", 36, 96, ("fantasia pad",)),
    (89, "warm pad", "synth", 36, 96, ("warm synth pad",)),
    (94, "halo pad", "synth", 36, 96, ()),
    (95, "sweep pad", "synth", 36, 96, ()),
    (104, "sitar", "plucked", 48, 84, ()),
    (105, "banjo", "plucked", 48, 84, ()),
    (108, "kalimba", "mallets", 60, 96, ("thumb piano",)),
    (110, "fiddle", "strings", 55, 96, ("folk fiddle",)),
    (128 + 0, "drums", "drums", 35, 81, ("drum kit", "drum set")),
    (128 + 8, "room drums", "drums", 35, 81, ("roomy drums",)),
    (128 + 16, "power drums", "drums", 35, 81, ("big rock drums",)),
    (128 + 24, "electronic drums", "drums", 35, 81, ("drum machine",)),
    (128 + 25, "808 drums", "drums", 35, 81, ("808 drum machine", "tr-808")),
    (128 + 32, "jazz drums", "drums", 35, 81, ("jazz kit",)),
    (128 + 40, "brushed drums", "drums", 35, 81, ("brushes", "brush kit")),
    (128 + 48, "orchestral percussion", "drums", 35, 81, ("concert percussion",)),
]

INSTRUMENTS: dict[int, Instrument] = {p: Instrument(p, n, f, lo, hi, a) for p, n, f, lo, hi, a in _TABLE}


def by_name(name: str) -> Instrument:
    for ins in INSTRUMENTS.values():
        if ins.name == name:
            return ins
    raise KeyError(name)
