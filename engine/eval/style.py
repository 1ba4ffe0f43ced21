"""Does "sounds like this" sound like it? ``python -m engine.eval.bench soundslike [--clips 48]``.

For each of ``--clips`` test clips (spread over the split as ``bench generate`` picks them), two 10 s generations
with the same seed: from its caption's words (the short caption), and from the clip itself as the reference, with
no words. MuLan's audio tower (the model's own judge, so a lenient one) compares each output with the reference;
the independent tagger (``engine.eval.tagger``, trained on real audio) reads each output's style. Reported: the share
of references the reference-made clip is closer to than the caption-made one (target 70%), and the share whose
style the tagger hears as the reference's (target 60%), beside the same for the caption-made clips.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import Cantus, Request, Segment, Settings
from .generation import bench_prompts
from .tagger import features, labels
from .tagger import train as train_tagger


def run(corpus: Path, n: int, assets: str = "assets", seconds: float = 10.0, progress=None) -> dict:
    model = Cantus.load(assets)
    judge = model.mulan
    tagger, _ = train_tagger(corpus)
    ds, picks = bench_prompts(corpus, n)
    rows = []
    for k, i in enumerate(picks):
        ex = ds[i]
        ref = ex.audio[: int(seconds * 24_000)]
        target = judge.embed_audio(ref, 24_000)
        style = int(labels([ex.tags], tagger.classes)["style"][0])
        row = {"clip": i, "caption": ex.captions[1]}
        for kind, req in (("text", Request([Segment(ex.captions[1], seconds)], Settings(duration=seconds, seed=i))),
                          ("ref", Request([Segment("", seconds)], Settings(duration=seconds, seed=i), reference=ref))):
            audio = model.generate(req)
            row[f"{kind}_cos"] = round(float(judge.embed_audio(audio, 24_000) @ target), 4)
            row[f"{kind}_style"] = bool(int(tagger.probs(features(audio)[None])["style"][0].argmax()) == style)
        rows.append(row)
        if progress:
            progress(k + 1, len(picks))
    return {"clips": len(rows), "closer": round(float(np.mean([r["ref_cos"] > r["text_cos"] for r in rows])), 3),
            "ref_cos": round(float(np.mean([r["ref_cos"] for r in rows])), 4),
            "text_cos": round(float(np.mean([r["text_cos"] for r in rows])), 4),
            "ref_style": round(float(np.mean([r["ref_style"] for r in rows])), 3),
            "text_style": round(float(np.mean([r["text_style"] for r in rows])), 3), "rows": rows}


def markdown(r: dict, machine: str, day: str) -> str:
    return "\n".join([
        f"## Sounds like this — {day}, {machine}", "",
        f"`python -m engine.eval.bench soundslike --clips {r['clips']}`: each test clip as the reference (no words) "
        "against its short caption alone, same seed, 10 s.", "",
        "| measure | from the reference | from the caption | target |", "| --- | --- | --- | --- |",
        f"| closer to the reference (MuLan audio) than the caption-made clip | {r['closer']:.0%} | | ≥ 70% |",
        f"| mean MuLan cosine with the reference | {r['ref_cos']:.3f} | {r['text_cos']:.3f} | |",
        f"| the tagger hears the reference's style | {r['ref_style']:.0%} | {r['text_style']:.0%} | ≥ 60% |", ""])
