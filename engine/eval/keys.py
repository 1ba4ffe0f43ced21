"""Does a named key come out in that key? ``python -m engine.eval.bench key [--prompts 48] [--seeds 2] [--b DIR]``.

The judge is a key finder no one here wrote: essentia's ``KeyExtractor`` (its defaults, on the clip resampled to
44.1 kHz). essentia is AGPL-licensed and not a dependency of Cantus: ``pip install essentia`` to run this bench.
Its ceiling is measured beside the result: the same extractor on real test clips of the corpus (10 s, exact key
labels). Generated clips, per prompt index i (the key is the i-th of the 24, so every key is asked for):

- short: "<style> in <key>" ("folk tune on the fiddle in A minor"), text alone;
- long: the key inside a descriptive prompt ("a mournful string quartet in E flat minor with long sustained
  chords, unhurried"), text alone;
- hum: the short prompt with the hum of a test clip and the key set explicitly too (a hum sets the notes; an
  explicit key moves them to it), as a musician using the Key field would.

Reported for each kind: the share of clips whose estimated key is the named one (tonic and mode) and whose mode is
(the control issue's target: at least 90% of the ceiling's rate for each), and the mean MuLan cosine of the clip
with its prompt (what a pull into the key may cost the rest of the prompt; the first folder's MuLan judges both). With ``--b``, the same prompts and
seeds on a second asset folder, paired.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import Cantus, Request, Segment, Settings
from ..audio import resample
from ..controls import NOTE_NAMES, parse_key
from .generation import bench_prompts, clip_hum

STYLES = ["folk tune on the fiddle", "piano ballad", "rock song with electric guitar", "jazz number with a trumpet",
          "techno track with a synth bass", "ambient piece with warm pads", "pop song with piano and drums",
          "march for brass band", "waltz for strings", "bossa nova with nylon guitar", "reggae groove with organ",
          "cinematic orchestral piece"]
# descriptive prompts with the key in the middle, as people write them
LONG = ["a mournful {style} in {key} with long sustained chords, unhurried",
        "an upbeat {style} in {key}, bright and bouncy, recorded live in a small room",
        "a dreamy {style} written in {key} that builds slowly towards a warm climax",
        "a gentle {style} in the key of {key}, soft dynamics and a wistful mood throughout"]
SPOKEN = {"b": " flat", "#": " sharp"}


def asked_key(i: int) -> str:
    """The i-th of the 24 keys, alternating modes: "A minor", "Eb major", ..."""
    mode = ("major", "minor")[i % 2]
    return f"{NOTE_NAMES[mode][(i // 2 * 7) % 12]} {mode}"  # round the circle of fifths


def spoken(key: str) -> str:
    """ "Eb minor" -> "E flat minor", as a long prompt would spell it."""
    note, mode = key.split()
    return f"{note[0]}{SPOKEN.get(note[1:], '')} {mode}"


class KeyFinder:
    """essentia's key extractor, with a readable error when essentia is missing."""

    def __init__(self):
        try:
            import essentia
            import essentia.standard as es
        except ImportError:
            raise SystemExit("bench key needs essentia's key extractor: pip install essentia") from None
        essentia.log.infoActive = False
        self.extract = es.KeyExtractor(sampleRate=44_100)

    def __call__(self, audio: np.ndarray, sr: int = 24_000) -> tuple[int, str]:
        x = resample(np.asarray(audio, dtype=np.float32), sr, 44_100).astype(np.float32)
        key, scale, _ = self.extract(x)
        return parse_key(key).tonic, scale


def ceiling(corpus: Path, n: int, finder: KeyFinder) -> dict:
    """The extractor on real test clips of the same length: its rates of the labelled key and mode."""
    ds, picks = bench_prompts(corpus, n)
    hits = []
    for i in picks:
        ex = ds[i]
        tonic, mode = finder(ex.audio[:240_000])
        hits.append((tonic == ex.tags["tonic"] and mode == ex.tags["mode"], mode == ex.tags["mode"]))
    return {"clips": len(hits), "key": float(np.mean([h[0] for h in hits])), "mode": float(np.mean([h[1] for h in hits]))}


def requests(corpus: Path, n: int, seeds: int, seconds: float) -> list[dict]:
    """Every (kind, prompt, seed, key) of the bench, with the hums of ``n`` test clips."""
    ds, picks = bench_prompts(corpus, n)
    out = []
    for i in range(n):
        key, style = asked_key(i), STYLES[i % len(STYLES)]
        hum = clip_hum(ds[picks[i % len(picks)]])
        for seed in range(seeds):
            s = Settings(duration=seconds, seed=1000 * seed + i)
            out.append({"kind": "short", "prompt": f"{style} in {key}", "key": key,
                        "request": Request([Segment(f"{style} in {key}", seconds)], s)})
            long = LONG[i % len(LONG)].format(style=style, key=spoken(key))
            out.append({"kind": "long", "prompt": long, "key": key, "request": Request([Segment(long, seconds)], s)})
            if hum is not None:
                sk = Settings(duration=seconds, seed=1000 * seed + i, key=key)
                out.append({"kind": "hum", "prompt": f"{style} in {key}", "key": key,
                            "request": Request([Segment(f"{style} in {key}", seconds)], sk, melody=hum)})
    return out


def run(corpus: Path, n: int, seeds: int = 2, assets: tuple[str, ...] = ("assets",), seconds: float = 10.0,
        n_real: int = 48, progress=None) -> dict:
    finder = KeyFinder()
    top = ceiling(corpus, n_real, finder)
    jobs = requests(corpus, n, seeds, seconds)
    rows = [{k: v for k, v in j.items() if k != "request"} for j in jobs]
    for side, folder in zip("ab", assets):
        model = Cantus.load(folder)
        judge = Cantus.load(assets[0]).mulan if side == "b" else model.mulan  # one judge for both sides
        for j, row in zip(jobs, rows):
            audio = model.generate(j["request"])
            tonic, mode = finder(audio)
            want = parse_key(j["key"])
            row[f"{side}_mcc"] = round(float(judge.embed_audio(audio, 24_000) @ judge.embed_text([j["prompt"]])[0]), 4)
            row[f"{side}_found"] = f"{NOTE_NAMES[mode][tonic]} {mode}"
            row[f"{side}_key"] = tonic == want.tonic and mode == want.mode
            row[f"{side}_mode"] = mode == want.mode
            if progress:
                progress()
    summary = {"assets": list(assets), "prompts": n, "seeds": seeds, "ceiling": top}
    for kind in ("short", "long", "hum"):
        of = [r for r in rows if r["kind"] == kind]
        for side in "ab"[:len(assets)]:
            summary[f"{side}_{kind}"] = {"clips": len(of), "key": float(np.mean([r[f"{side}_key"] for r in of])),
                                         "mode": float(np.mean([r[f"{side}_mode"] for r in of])),
                                         "mcc": float(np.mean([r[f"{side}_mcc"] for r in of]))} if of else None
    return {"summary": summary, "rows": rows}


def markdown(r: dict, machine: str, day: str) -> str:
    s, top = r["summary"], r["summary"]["ceiling"]
    sides = "ab"[:len(s["assets"])]
    head = " | ".join(f"`{a}` key / mode / MuLan cosine with the prompt" for a in s["assets"])
    lines = [f"## Named keys — {day}, {machine}", "",
             f"`python -m engine.eval.bench key --prompts {s['prompts']} --seeds {s['seeds']}`: each of the 24 keys "
             "named in short prompts, in long descriptive ones, and with a hum (key set explicitly as well); 10 s; "
             f"judged by essentia's KeyExtractor, whose ceiling on {top['clips']} real test clips is key "
             f"{top['key']:.0%}, mode {top['mode']:.0%}. Target: at least 90% of the ceiling "
             f"(key {0.9 * top['key']:.0%}, mode {0.9 * top['mode']:.0%}).", "",
             f"| prompts | clips | {head} |", "| --- | --- | " + " | ".join("---" for _ in sides) + " |"]
    for kind, what in (("short", "short ('piano ballad in A minor')"), ("long", "long, key inside a description"),
                       ("hum", "short, with a hum")):
        cells = [s.get(f"{x}_{kind}") for x in sides]
        if cells[0] is None:
            continue
        lines.append(f"| {what} | {cells[0]['clips']} | " +
                     " | ".join(f"{c['key']:.0%} / {c['mode']:.0%} / {c['mcc']:.3f}" for c in cells) + " |")
    return "\n".join(lines + [""])
