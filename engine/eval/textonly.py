"""Text-only prompt adherence (MusicLM's MuLan cycle consistency): ``python -m engine.eval.bench textonly [--prompts 192] [--seeds 0
100000] [--drafts N] [--rows OUT.json] [--against BASE.json ...] [--append BENCHMARKS.md]``.

Each of ``--prompts`` test clips (``bench_prompts``: every len(test) // N-th clip from the first; with 192 of the
10 h build's 557, every other clip of 0-382) gives its short caption as a text-only prompt of 10 s (``--seconds``),
once per seed offset (seed = clip index + offset), with the assets' default settings unless told (``--drafts``,
``--guidance``, ``--temperature``). Per clip:

- ``mcc``: cosine of the caption's MuLan text embedding with the generated audio's embedding (the assets' own MuLan
  judges, as in ``bench compare``), and ``real``, the same for the real test clip; the MCC ratio is their means'.
- ``tags``: whether the evaluation tagger (``engine.eval.tagger``, trained on the train split's real audio, which
  nothing in generation uses) reads the clip's style, lead family, tempo bucket and mode in the generated audio.
- ``tempo``: for captions that name a BPM, whether librosa's beat tracker finds it within 8%.

Clips differ far more than models do, so candidates are compared paired: ``--against``
rows of the same prompts and seeds (one file per seed run) give each measure's mean difference per prompt, seeds
pooled, with its standard error over prompts. ``--from`` summarises rows already written instead of generating.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .. import Cantus, Request, Segment, Settings
from .generation import TEMPO_IN_PROMPT, bench_prompts, standard_error, tempo_ok
from .tagger import TAGS, features, labels
from .tagger import train as train_tagger

SECONDS = 10.0


def textonly_rows(corpus: Path, n_prompts: int, assets: str = "assets", seed_offsets=(0,), progress=None,
                  seconds: float = SECONDS, **settings) -> list[dict]:
    """One row per (prompt, seed offset): {"clip", "seed", "caption", "real", "mcc", "tags": {tag: bool},
    "tempo" (captions naming a BPM only)}. ``settings``: ``Settings`` fields to override (drafts, guidance, ...)."""
    Settings(duration=seconds, **settings).validate()  # a bad setting fails before the models load
    model = Cantus.load(assets)
    model.warm_up()
    judge = model.mulan
    tagger, _ = train_tagger(corpus)
    ds, picks = bench_prompts(corpus, n_prompts)
    rows = []
    for n, i in enumerate(picks):
        ex = ds[i]
        caption = ex.captions[1]  # the short caption: the kind of prompt people type
        text = judge.embed_text([caption])[0]
        real = float(judge.embed_audio(ex.audio, 24_000) @ text)
        truth = {t: int(v[0]) for t, v in labels([ex.tags], tagger.classes).items()}
        named = TEMPO_IN_PROMPT.search(caption.lower())
        for off in seed_offsets:
            s = Settings(duration=seconds, seed=i + int(off), **settings)
            audio = model.generate(Request([Segment(caption, seconds)], s))
            probs = tagger.probs(features(audio)[None])
            row = {"clip": i, "seed": i + int(off), "seconds": seconds, "caption": caption, "real": real,
                   "mcc": float(judge.embed_audio(audio, 24_000) @ text),
                   "tags": {t: bool(int(probs[t][0].argmax()) == truth[t]) for t in TAGS if truth[t] >= 0}}
            if named:
                row["tempo"] = bool(tempo_ok(audio, ex.tags["tempo"]))
            rows.append(row)
        if progress:
            progress(n + 1, len(picks))
    return rows


def _measures(rows: list[dict]) -> dict[str, list[float]]:
    """Each row's measures by name (absent ones left out): mcc, tempo and tag:<name>."""
    out: dict[str, list[float]] = {}
    for r in rows:
        vals = {"mcc": r["mcc"], **({"tempo": r["tempo"]} if "tempo" in r else {}),
                **{f"tag:{t}": ok for t, ok in r["tags"].items()}}
        for k, v in vals.items():
            out.setdefault(k, []).append(float(v))
    return out


def summary(rows: list[dict], against: list[dict] | None = None) -> dict:
    """Means (the MCC as a ratio to the real clips'), per seed offset's MCC ratio, and with ``against`` (rows of the
    same prompts and seeds) each measure's paired difference: mean per prompt over its seeds, then mean and standard
    error over prompts; a measure a row lacks in either run counts for neither."""
    if not rows:
        raise ValueError("no rows to summarise")
    real = float(np.mean([r["real"] for r in {r["clip"]: r for r in rows}.values()]))
    res = {"clips": len(rows), "prompts": len({r["clip"] for r in rows}), "seconds": rows[0]["seconds"],
           "mcc_real": real,
           **{k: float(np.mean(v)) for k, v in _measures(rows).items()}}
    res["mcc_ratio"] = res["mcc"] / real
    res["mcc_ratio_by_seed"] = {str(o): float(np.mean([r["mcc"] for r in rows if r["seed"] - r["clip"] == o])) / real
                                for o in sorted({r["seed"] - r["clip"] for r in rows})}
    if against is None:
        return res
    base = {(r["clip"], r["seed"]): r for r in against}
    missing = [(r["clip"], r["seed"]) for r in rows if (r["clip"], r["seed"]) not in base
               or base[(r["clip"], r["seed"])]["caption"] != r["caption"]]
    if missing:
        raise ValueError(f"{len(missing)} of the rows have no counterpart (clip, seed) in the rows compared against, "
                         f"e.g. {missing[0]}: compare runs of the same prompts and seeds")
    per_prompt: dict[str, dict[int, list[float]]] = {}
    for r in rows:
        a, b = _measures([base[(r["clip"], r["seed"])]]), _measures([r])
        for k in set(a) & set(b):
            per_prompt.setdefault(k, {}).setdefault(r["clip"], []).append(b[k][0] - a[k][0])
    res["base"] = summary(against)
    res["paired"] = {}
    for k, by_clip in per_prompt.items():
        d = [float(np.mean(v)) for v in by_clip.values()]
        scale = 1 / real if k == "mcc" else 1.0  # the MCC's difference as a ratio to the real clips'
        res["paired"][k] = (float(np.mean(d)) * scale, (standard_error(d) or 0.0) * scale)
    return res


NAMES = {"mcc": "MuLan cycle consistency, ratio to the real clips", "tag:style": "tagger reads the style",
         "tag:family": "tagger reads the lead family", "tag:tempo_bucket": "tagger reads the tempo bucket",
         "tag:mode": "tagger reads the mode", "tempo": "named BPM kept (librosa within 8%)"}


def markdown(s: dict, what: str, machine: str, day: str) -> str:
    seeds = ", ".join(f"{float(v):.3f} (offset {k})" for k, v in s["mcc_ratio_by_seed"].items())
    lines = [f"\n## Text-only prompt adherence — {day}, {machine}\n",
             f"{what}: {s['prompts']} text-only test prompts x {s['seconds']:g} s, {s['clips']} clips (short caption, "
             f"seed = clip index + offset); MCC of the real clips {s['mcc_real']:.3f}; MCC ratio by seed {seeds}.\n"]
    paired = "paired" in s
    lines += ["| measure | base | this | paired (per prompt, seeds pooled) |" if paired else "| measure | value |",
              "| --- | --- | --- | --- |" if paired else "| --- | --- |"]
    for k, name in NAMES.items():
        key = "mcc_ratio" if k == "mcc" else k
        if key not in s:
            continue
        if paired:
            d = s["paired"].get(k)
            lines.append(f"| {name} | {s['base'].get(key, float('nan')):.3f} | {s[key]:.3f} | "
                         + ("n/a" if d is None else f"{d[0]:+.3f} ± {d[1]:.3f}") + " |")
        else:
            lines.append(f"| {name} | {s[key]:.3f} |")
    return "\n".join(lines) + "\n"


def load_rows(paths: list[Path]) -> list[dict]:
    rows = []
    for p in paths:
        try:
            rows += json.loads(Path(p).read_text())["rows"]
        except (OSError, ValueError, KeyError) as e:
            raise ValueError(f"{p} is not a rows file of bench textonly ({e})") from None
    return rows
