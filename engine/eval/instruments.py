"""Does a named lead instrument lead, and does "no drums" drop the drums? ``python -m engine.eval.bench instruments
[--prompts 24] [--seeds 2] [--b DIR]``.

The judges are the evaluation's attribute tagger (``engine.eval.tagger``, trained on real corpus audio, nothing in
generation uses it): its lead-family head and its drums head. Their ceilings are measured beside the result: the
same heads on real test clips of the corpus. Generated clips, text alone, per prompt index i:

- lead: the i-th of 24 lead instruments (two or more of every family the corpus has) in a style phrase ("a folk song
  led by a cello", "a pop song featuring an oboe"); the clip's family is right when the tagger's is the lead's;
- no drums: the i-th of 12 styles that normally have drums, said without them ("a rock song with no drums", "a
  drumless hip-hop beat"); right when the tagger hears no drums.

Reported for each kind: the share right (the control issue's targets: lead family 70%, no drums 80%), and what the
pull may cost the rest of the prompt: the share whose style the tagger hears as the one named, and the mean MuLan
cosine of the clip with its prompt (the first folder's MuLan judges both; a text encoder hears "drums" in "no
drums", so for those prompts the style is the better witness). With ``--b``, the same prompts and seeds on a second asset folder, paired.

A tagger trained where drummed styles always have drums hears drums in a drumless rock song by its style;
``--drums-corpus`` (a build with crossover, e.g. ``runs/corpus10h-x3``) adds a second drums judge trained on one
where they sometimes do not, reported beside the first with its own ceiling, and what taking drums out can give at
best: on that build's drummed validation clips after a codec round trip (as generated audio is), what both judges
hear in the mix, in the drum remover's output, and in the clean rest stem through the codec (a perfect removal).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .. import Cantus, Request, Segment, Settings
from ..controls import parse_prompt
from ..data.captions import parse_caption
from ..lm.timbre import family_of
from ..mulan.evaluate import true_tag
from .tagger import features, split_features
from .tagger import train as train_tagger

STYLES = ["folk song", "pop song", "jazz swing tune", "cinematic orchestral piece", "waltz", "ballad", "country song", "bossa nova",
          "reggae tune", "march", "ambient piece", "rock song"]
LEADS = ["cello", "violin", "piano", "electric piano", "flute", "pan flute", "clarinet", "alto saxophone", "oboe",
         "harmonica", "trumpet", "french horn", "trombone", "electric guitar", "acoustic guitar", "distorted guitar",
         "saw lead", "square lead", "organ", "accordion", "vibraphone", "kalimba", "banjo", "choir"]
LEAD_FORMS = ["a {style} led by {a} {lead}", "a {style} featuring {a} {lead}"]
DRUM_STYLES = ["rock song", "pop song", "hip-hop beat", "techno track", "reggae tune", "country song", "march",
               "jazz swing tune", "bossa nova", "folk song", "piano ballad", "cinematic orchestral piece"]
NO_DRUM_FORMS = ["a {style} with no drums", "a drumless {style}", "a {style}, no drums", "a {style} without drums"]


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def prompts(n: int) -> list[dict]:
    """The bench's prompts: ``n`` naming a lead, ``n`` refusing drums."""
    out = []
    for i in range(n):
        lead, style = LEADS[i % len(LEADS)], STYLES[i % len(STYLES)]
        text = LEAD_FORMS[(i // len(LEADS) + i) % 2].format(style=style, a=article(lead), lead=lead)
        out.append({"kind": "lead", "prompt": text, "family": family_of(lead), "style": parse_caption(text)["style"],
                    "i": i})
    for i in range(n):
        style = DRUM_STYLES[i % len(DRUM_STYLES)]
        text = NO_DRUM_FORMS[i % len(NO_DRUM_FORMS)].format(style=style)
        out.append({"kind": "no_drums", "prompt": text, "style": parse_caption(text)["style"], "i": i})
    for p in out:  # the bench measures the controls the parser finds; a prompt it misreads is a bug here
        c = parse_prompt(p["prompt"])
        assert (family_of(c.lead) == p["family"]) if p["kind"] == "lead" else c.drums is False, p["prompt"]
    return out


def ceiling(tagger, accuracy: dict, corpus: Path) -> dict:
    """The tagger's lead-family and drums heads on the real test clips (``accuracy``: ``tagger.train``'s), and how
    many of the clips without drums it hears without."""
    x, tags = split_features(corpus, "test", Path("runs/eval"))
    heard = tagger.probs(x)["drums"].argmax(-1)
    none = [i for i, t in enumerate(tags) if true_tag(t, "drums") == "none"]
    return {"clips": len(tags), "family": accuracy["family"], "drums": accuracy["drums"], "real_no_drums": len(none),
            "no_drums_heard": float(np.mean([tagger.classes["drums"][int(heard[i])] == "none" for i in none]))}


def removal_ceiling(corpus: Path, judges: dict, assets: str, clips: int = 100) -> dict:
    """Style heard and drums heard as none by each judge, on ``corpus``'s drummed validation clips: the mix, the
    remover's output and the rest stem (engine.data.stems, cached in runs/eval)."""
    from ..codec import Codec
    from ..data.stems import prepare
    from ..demix import DrumRemover
    from ..semantic import SemanticTokenizer
    data = prepare(corpus, "valid", clips, 0.0, Path("runs/eval"), Path(assets))
    records = {r["id"]: r for r in map(json.loads, (corpus / "valid.jsonl").read_text().splitlines())}
    codec, semantic = Codec.load(Path(assets) / "codec"), SemanticTokenizer.load(Path(assets) / "semantic")
    remover = DrumRemover.load_if_present(Path(assets) / "demix", "onnx")
    out = {}
    for i, cid in enumerate(data["ids"]):
        mix = data["mix"][i].float()
        versions = {"mix": mix.numpy(), "rest": codec.reconstruct(data["rest"][i].float()[None], semantic=semantic)[0]}
        if remover is not None:
            versions["remover"] = remover.remove(versions["mix"])
        for v, audio in versions.items():
            f = features(np.asarray(audio, dtype=np.float32))[None]
            for name, t in judges.items():
                probs = t.probs(f)
                hit = out.setdefault(f"{v} {name}", {"style": [], "none": []})
                hit["style"].append(t.classes["style"][int(probs["style"][0].argmax())] == records[cid]["tags"]["style"])
                hit["none"].append(t.classes["drums"][int(probs["drums"][0].argmax())] == "none")
    return {k: {m: float(np.mean(v)) for m, v in h.items()} | {"clips": len(data["ids"])} for k, h in out.items()}


def run(corpus: Path, n: int, seeds: int = 2, assets: tuple[str, ...] = ("assets",), seconds: float = 10.0,
        progress=None, drums_corpus: Path | None = None) -> dict:
    tagger, accuracy = train_tagger(corpus, heads=("style", "family", "drums"))
    top = ceiling(tagger, accuracy, corpus)
    second = None
    if drums_corpus is not None:
        second, acc2 = train_tagger(drums_corpus, heads=("style", "family", "drums"))
        top["second"] = {"corpus": str(drums_corpus), **ceiling(second, acc2, drums_corpus)}
        top["removal"] = removal_ceiling(drums_corpus, {"tagger": tagger, "second": second}, assets[-1])
    jobs = [{**p, "seed": 1000 * s + p["i"]} for s in range(seeds) for p in prompts(n)]
    for side, folder in zip("ab", assets):
        model = Cantus.load(folder)
        judge = Cantus.load(assets[0]).mulan if side == "b" else model.mulan  # one judge for both sides
        for j in jobs:
            audio = model.generate(Request([Segment(j["prompt"], seconds)], Settings(duration=seconds, seed=j["seed"])))
            f = features(audio)[None]
            probs = tagger.probs(f)
            heard = {t: tagger.classes[t][int(probs[t][0].argmax())] for t in ("style", "family", "drums")}
            j[f"{side}_family"], j[f"{side}_drums"] = heard["family"], heard["drums"]
            j[f"{side}_style"] = heard["style"] == j["style"]
            j[f"{side}_ok"] = heard["family"] == j["family"] if j["kind"] == "lead" else heard["drums"] == "none"
            if second is not None and j["kind"] == "no_drums":
                j[f"{side}_ok2"] = second.classes["drums"][int(second.probs(f)["drums"][0].argmax())] == "none"
            j[f"{side}_mcc"] = round(float(judge.embed_audio(audio, 24_000) @ judge.embed_text([j["prompt"]])[0]), 4)
            if progress:
                progress()
    summary = {"assets": list(assets), "prompts": n, "seeds": seeds, "ceiling": top}
    for kind in ("lead", "no_drums"):
        of = [j for j in jobs if j["kind"] == kind]
        for side in "ab"[:len(assets)]:
            summary[f"{side}_{kind}"] = {"clips": len(of), "right": float(np.mean([j[f"{side}_ok"] for j in of])),
                                         "style": float(np.mean([j[f"{side}_style"] for j in of])),
                                         "mcc": float(np.mean([j[f"{side}_mcc"] for j in of]))}
            if second is not None and kind == "no_drums":
                summary[f"{side}_{kind}"]["right2"] = float(np.mean([j[f"{side}_ok2"] for j in of]))
        if len(assets) == 2:
            d = np.array([j["b_ok"] - j["a_ok"] for j in of], dtype=float)
            summary[f"paired_{kind}"] = {"diff": float(d.mean()), "se": float(d.std(ddof=1) / np.sqrt(len(d)))}
    return {"summary": summary, "rows": jobs}


def markdown(r: dict, machine: str, day: str) -> str:
    s, top = r["summary"], r["summary"]["ceiling"]
    sides = "ab"[:len(s["assets"])]
    head = " | ".join(f"`{a}` right / style heard / MuLan cosine" for a in s["assets"])
    lines = [f"## Named lead instruments and no drums — {day}, {machine}", "",
             f"`python -m engine.eval.bench instruments --prompts {s['prompts']} --seeds {s['seeds']}`: text alone, "
             "10 s, judged by the evaluation tagger trained on real corpus audio; on "
             f"{top['clips']} real test clips its lead family is right on {top['family']:.0%}, drums / none on "
             f"{top['drums']:.0%} ({top['no_drums_heard']:.0%} of the {top['real_no_drums']} without drums heard "
             "without). Targets: lead family 70%, no drums 80%." + (
                 f" The second drums judge (trained on `{top['second']['corpus']}`) hears "
                 f"{top['second']['no_drums_heard']:.0%} of its {top['second']['real_no_drums']} real clips without "
                 "drums without; its share is after the first's." if "second" in top else ""), "",
             f"| prompts | clips | {head} |", "| --- | --- | " + " | ".join("---" for _ in sides) + " |"]
    for kind, what in (("lead", "a lead named ('a folk song led by a cello'): family right"),
                       ("no_drums", "'no drums' ('a rock song with no drums'): none heard")):
        cells = [s[f"{x}_{kind}"] for x in sides]
        second = [f" ({c['right2']:.0%})" if "right2" in c else "" for c in cells]
        lines.append(f"| {what} | {cells[0]['clips']} | " + " | ".join(
            f"{c['right']:.0%}{x} / {c['style']:.0%} / {c['mcc']:.3f}" for c, x in zip(cells, second)) + " |")
    if "removal" in top:
        rc = top["removal"]
        clips = next(iter(rc.values()))["clips"]
        lines += ["", f"Taking drums out at best: {clips} drummed validation clips of `{top['second']['corpus']}` "
                  f"after a codec round trip ({s['assets'][-1]}), style heard / no drums heard, tagger (second judge):", "",
                  "| audio | style heard | no drums heard |", "| --- | --- | --- |"]
        for v, what in (("mix", "the mix"), ("remover", "the drum remover's output"),
                        ("rest", "the clean rest stem (a perfect removal)")):
            if f"{v} tagger" in rc:
                a, b = rc[f"{v} tagger"], rc[f"{v} second"]
                lines.append(f"| {what} | {a['style']:.0%} ({b['style']:.0%}) | {a['none']:.0%} ({b['none']:.0%}) |")
    return "\n".join(lines + [""])
