"""Melodies for the corpus: real tunes from music21's bundled scores, parsed once and cached, plus generated ones.

A ``Melody`` is monophonic, in quarter lengths from the first downbeat (a pickup is placed at the end of an empty
first bar), with its meter, key and, for four-part chorales, the other voices. ``composition`` is a hash of the
transposition-invariant interval and rhythm sequence; the corpus splits by it, so no tune lands in two splits.

Parsing all collections takes minutes (Essen files hold ~300 tunes each, ~30 ms a tune), so
``load_melodies`` caches the result as JSON keyed by the music21 version; a corrupt score is skipped and counted.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import logging
import multiprocessing as mp
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .theory import Note, diatonic_chords, scale

log = logging.getLogger(__name__)

# Collections of music21's corpus that hold tunes usable as lead melodies.
COLLECTIONS = ("bach", "essenFolksong", "ryansMammoth", "oneills1850", "airdsAirs", "nottingham-dataset", "miscFolk")


@dataclass
class Melody:
    id: str
    source: str
    title: str
    notes: list[Note]
    bar_ql: float  # bar length in quarter lengths
    beat_ql: float  # 1.0 (simple meter) or 1.5 (compound meter)
    tonic: int  # pitch class
    mode: str  # "major" | "minor"
    voices: list[list[Note]] = field(default_factory=list)  # other chorale voices, top to bottom

    @property
    def beats_per_bar(self) -> int:
        return round(self.bar_ql / self.beat_ql)

    @property
    def meter(self) -> str:
        return {(1.0, 4): "4/4", (1.0, 2): "2/4", (1.0, 3): "3/4", (1.5, 2): "6/8", (1.5, 4): "12/8",
                (1.5, 3): "9/8"}[(self.beat_ql, self.beats_per_bar)]

    @property
    def n_bars(self) -> int:
        return int(np.ceil(self.notes[-1].end / self.bar_ql - 1e-6))

    @property
    def composition(self) -> str:
        seq = [(b.pitch - a.pitch, round(a.dur / self.beat_ql, 3)) for a, b in zip(self.notes, self.notes[1:])]
        return hashlib.sha1(repr(seq[:32]).encode()).hexdigest()[:16]

    def to_json(self) -> dict:
        d = asdict(self)
        d["notes"] = [[n.pitch, n.start, n.dur] for n in self.notes]
        d["voices"] = [[[n.pitch, n.start, n.dur] for n in v] for v in self.voices]
        return d

    @classmethod
    def from_json(cls, d: dict) -> Melody:
        d = dict(d)
        d["notes"] = [Note(int(p), float(s), float(u)) for p, s, u in d["notes"]]
        d["voices"] = [[Note(int(p), float(s), float(u)) for p, s, u in v] for v in d["voices"]]
        return cls(**d)


# ---------------------------------------------------------------------------------------------- music21 parsing
def _part_notes(part, shift: float) -> list[Note]:
    notes: list[Note] = []
    for el in part.stripTies().flatten().notes:
        dur = float(el.duration.quarterLength)
        if dur <= 0:  # grace notes
            continue
        pitch = max(p.midi for p in el.pitches) if el.isChord else el.pitch.midi
        start = float(el.offset) + shift
        if notes and start < notes[-1].end:  # keep it monophonic: cut the previous note
            if start <= notes[-1].start:
                continue
            notes[-1] = Note(notes[-1].pitch, notes[-1].start, start - notes[-1].start)
        notes.append(Note(int(pitch), start, dur))
    return notes


def _melody_from_score(score, mid: str, source: str) -> Melody | None:
    from music21 import key as m21key
    from music21 import meter as m21meter
    from music21 import stream

    parts = list(score.parts) if score.parts else [score]
    top = parts[0]
    ts = next(iter(top.recurse().getElementsByClass(m21meter.TimeSignature)), None)
    if ts is None:
        return None
    bar_ql = float(ts.barDuration.quarterLength)
    beat_ql = float(ts.beatDuration.quarterLength)
    if beat_ql == 2.0:  # cut time: count in quarters
        beat_ql = 1.0
    if beat_ql not in (1.0, 1.5) or round(bar_ql / beat_ql) not in (2, 3, 4) or abs(bar_ql / beat_ql % 1) > 1e-6:
        return None
    measures = list(top.getElementsByClass(stream.Measure))
    shift = 0.0
    if len(measures) > 1 and float(measures[0].duration.quarterLength) < bar_ql - 1e-6:
        shift = bar_ql - float(measures[0].duration.quarterLength)
    notes = _part_notes(top, shift)
    if len(notes) < 16 or notes[-1].end < 4 * bar_ql:
        return None
    pitches = [n.pitch for n in notes]
    if max(pitches) - min(pitches) > 26:
        return None
    k = next((k for k in score.recurse().getElementsByClass(m21key.Key) if k.mode in ("major", "minor")), None)
    if k is None:
        k = score.analyze("key")
    if k.mode not in ("major", "minor"):
        return None
    voices = []
    if source == "bach" and len(parts) == 4:
        voices = [_part_notes(p, shift) for p in parts[1:]]
    title = (score.metadata.title if score.metadata and score.metadata.title else mid.split("/")[-1]) or mid
    return Melody(mid, source, str(title), notes, bar_ql, beat_ql, int(k.tonic.pitchClass), k.mode, voices)


def _parse_file(path: str) -> tuple[list[dict], int]:
    """All melodies of one corpus file (a score or an opus of many tunes); returns (melodies, n_skipped)."""
    from music21 import converter, stream

    source = next((c for c in COLLECTIONS if f"/{c}/" in path), "music21")
    stem = Path(path).name.rsplit(".", 1)[0]
    out, skipped = [], 0
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            parsed = converter.parse(path)
    except Exception as exc:  # a corrupt or unsupported score: skip, count, go on
        log.debug("skipping %s: %s", path, exc)
        return [], 1
    scores = list(parsed.scores) if isinstance(parsed, stream.Opus) else [parsed]
    for i, sc in enumerate(scores):
        try:
            mel = _melody_from_score(sc, f"{source}/{stem}/{i}", source)
        except Exception as exc:
            log.debug("skipping tune %d of %s: %s", i, path, exc)
            mel = None
        if mel is None:
            skipped += 1
        else:
            out.append(mel.to_json())
    return out, skipped


def corpus_paths(collections=COLLECTIONS) -> list[str]:
    from music21 import corpus

    paths = sorted(str(p) for p in corpus.getPaths())
    return [p for p in paths if any(f"/{c}/" in p for c in collections)]


def quick_score_paths() -> list[str]:
    """A few dozen small scores (8 Bach chorales, 30 of Ryan's Mammoth, one Essen test file) that parse in seconds:
    the corpus of the test suite and of the tiny rebuild."""
    paths = corpus_paths()
    pick = [p for p in paths if "/bach/" in p][:8] + [p for p in paths if "/ryansMammoth/" in p][:30]
    return pick + [p for p in paths if p.endswith("essenFolksong/test0.abc")]


@dataclass
class MelodySet:
    melodies: list[Melody]
    skipped: int  # tunes or files that could not be used (corrupt, unsupported meter, too short, ...)


def load_melodies(cache_dir: Path | None, workers: int = 1, paths: list[str] | None = None,
                  progress: bool = True) -> MelodySet:
    """Parse (or read from cache) the melodies of the given corpus files; deduplicated by composition."""
    import music21

    paths = corpus_paths() if paths is None else sorted(paths)
    digest = hashlib.sha1("\n".join(Path(p).name for p in paths).encode()).hexdigest()[:10]
    cache = Path(cache_dir) / f"melodies-m21_{music21.__version__}-{digest}.json.gz" if cache_dir else None
    if cache is not None and cache.exists():
        data = json.loads(gzip.decompress(cache.read_bytes()))
    else:
        results: list[tuple[list[dict], int]] = []
        bar = tqdm(total=len(paths), desc="parsing scores", unit="file", disable=not progress)
        if workers > 1:
            with mp.get_context("spawn").Pool(workers) as pool:
                for r in pool.imap(_parse_file, paths, chunksize=4):
                    results.append(r)
                    bar.update()
        else:
            for p in paths:
                results.append(_parse_file(p))
                bar.update()
        bar.close()
        data = {"melodies": [m for ms, _ in results for m in ms], "skipped": sum(s for _, s in results)}
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_suffix(".tmp")
            tmp.write_bytes(gzip.compress(json.dumps(data).encode()))
            tmp.replace(cache)
    seen, melodies = set(), []
    for d in data["melodies"]:
        m = Melody.from_json(d)
        if m.composition not in seen:
            seen.add(m.composition)
            melodies.append(m)
    melodies.sort(key=lambda m: m.id)
    return MelodySet(melodies, int(data["skipped"]))


# ---------------------------------------------------------------------------------------------- generated tunes
_RHYTHMS = {  # one bar of durations (in beats) per meter family; melodies draw a cell per bar
    2: [(1, 1), (0.5, 0.5, 1), (1.5, 0.5), (0.5, 0.5, 0.5, 0.5), (2,)],
    3: [(1, 1, 1), (2, 1), (1.5, 0.5, 1), (1, 0.5, 0.5, 1), (3,), (0.5, 0.5, 1, 1)],
    4: [(1, 1, 1, 1), (2, 1, 1), (1.5, 0.5, 2), (1, 0.5, 0.5, 2), (0.5, 0.5, 1, 1, 1), (2, 2), (1, 1, 2),
        (0.75, 0.25, 1, 1, 1)],
}
_PROGRESSIONS = {
    "major": ["I IV V I", "I vi IV V", "I V vi IV", "I ii V I", "vi IV I V", "I IV I V"],
    "minor": ["i iv V i", "i VI III VII", "i VII VI V", "i iv VII III", "i VI iv V"],
}


def generate_melody(rng: np.random.Generator, idx: int, seed: int) -> Melody:
    """A phrase-structured tune (A A' B A'') over a diatonic progression: chord tones on strong beats, stepwise
    motion between, a motif repeated with variation. Key C / A minor; the arranger transposes."""
    mode = str(rng.choice(["major", "minor"]))
    tonic = 0 if mode == "major" else 9
    beats = int(rng.choice([4, 4, 3, 2]))
    beat_ql = 1.5 if (beats in (2, 4) and rng.random() < 0.15) else 1.0
    chords_a = [c for c in _PROGRESSIONS[mode][rng.integers(len(_PROGRESSIONS[mode]))].split()]
    chords_b = [c for c in _PROGRESSIONS[mode][rng.integers(len(_PROGRESSIONS[mode]))].split()]
    table = dict(diatonic_chords(tonic, mode))
    sc = [tonic + s for s in scale(mode)]
    degrees = sorted({p + 12 * o for p in sc for o in (4, 5, 6)})
    degrees = [d for d in degrees if 57 <= d <= 81]

    def phrase(chords: list[str], motif: list[int] | None) -> tuple[list[tuple[int, float]], list[int]]:
        out: list[tuple[int, float]] = []
        cur = int(rng.choice([d for d in degrees if 64 <= d <= 72]))
        contour = []
        for bar, name in enumerate(chords):
            cell = _RHYTHMS[beats][rng.integers(len(_RHYTHMS[beats]))]
            tones = table[name].pitch_classes
            for k, d in enumerate(cell):
                if motif is not None and len(contour) < len(motif) and rng.random() < 0.8:
                    step = motif[len(contour)]
                elif k == 0:  # strong beat: nearest chord tone
                    near = [x for x in degrees if x % 12 in tones]
                    step = degrees.index(min(near, key=lambda x: (abs(x - cur), x))) - degrees.index(cur)
                else:
                    step = int(rng.choice([-2, -1, -1, 0, 1, 1, 2, 3, -3]))
                i = int(np.clip(degrees.index(cur) + step, 0, len(degrees) - 1))
                contour.append(i - degrees.index(cur))
                cur = degrees[i]
                out.append((cur, d * beat_ql))
        # end phrase on a chord tone of the last chord, held
        last = table[chords[-1]].pitch_classes
        end = min((x for x in degrees if x % 12 in last), key=lambda x: abs(x - cur))
        out[-1] = (end, out[-1][1])
        return out, contour

    a, motif = phrase(chords_a, None)
    a2, _ = phrase(chords_a, motif)
    b, _ = phrase(chords_b, None)
    a3, _ = phrase(chords_a[:-1] + [chords_a[0]], motif)
    notes, t = [], 0.0
    for pitch, dur in a + a2 + b + a3:
        if rng.random() < 0.06 and notes:  # an occasional rest breathes
            t += dur
            continue
        notes.append(Note(int(pitch), t, float(dur)))
        t += dur
    return Melody(f"generated/{seed}/{idx}", "generated", f"Generated tune {idx}", notes,
                  beats * beat_ql, beat_ql, tonic, mode)
