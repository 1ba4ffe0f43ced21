"""Build the text-music corpus: ``python -m engine.data.build --hours H --out DIR [--seed S] [--workers N] [--generated G]
[--crossover X]``.

Layout of DIR::

    build.json               parameters (seed, clip seconds, melody set) — a resumed build must match them
    corpus.json              counts and timings of the finished build
    {train,valid,test}.jsonl one record per clip (see ``_record``), sorted by index
    audio/<split>/<id>.wav   24 kHz mono 16-bit mixes
    voice/<split>/<id>.wav   hummed / whistled / sung rendition of the clip's melody, at its own sample rate
    parts/group_<k>.jsonl    records of each finished render group (resume state)

Clips are rendered in fixed groups of ``GROUP`` by index, each group by a fresh FluidSynth instance, so the audio is
bit-identical for a seed whatever ``--workers`` is, and an interrupted build resumes at the first unfinished group.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from .arrange import Arrangement, arrange
from .captions import clip_tags, make_caption
from .melodies import Melody, corpus_paths, load_melodies
from .plan import GENERATED_FRACTION, MelodyPool, plan_clip
from .render import SAMPLE_RATE, Renderer, SynthUnavailable, find_soundfont
from .voice import render_voice

GROUP = 8
FRAME_RATE = 25  # melody track frames per second
N_CAPTIONS = 3


def melody_track(notes, duration: float, rate: int = FRAME_RATE) -> list[int]:
    """MIDI pitch sounding at the centre of each 1/rate-second frame (0 where the lead is silent)."""
    n = round(duration * rate)
    track = np.zeros(n, dtype=int)
    centres = (np.arange(n) + 0.5) / rate
    for note in sorted(notes, key=lambda x: x.start):  # later notes win overlaps
        track[(centres >= note.start) & (centres < note.end)] = note.pitch
    return track.tolist()


def _record(spec, melody: Melody, arr, voice, out: Path) -> dict:
    tags = clip_tags(spec)
    rng = np.random.default_rng([spec.seed, spec.index, 3])
    captions = []
    for _ in range(20):
        c = make_caption(tags, rng)
        if c not in captions:
            captions.append(c)
        if len(captions) == N_CAPTIONS:
            break
    return {
        "id": spec.id, "index": spec.index, "split": spec.split, "duration": spec.duration,
        "audio": f"audio/{spec.split}/{spec.id}.wav", "sample_rate": SAMPLE_RATE,
        "voice": f"voice/{spec.split}/{spec.id}.wav",
        "caption": captions[0], "captions": captions, "tags": tags,
        "melody": {
            "id": melody.id, "source": melody.source, "title": melody.title, "composition": spec.composition,
            "notes": [[n.pitch, round(n.start, 4), round(n.end, 4)] for n in arr.lead],
            "track": melody_track(arr.lead, spec.duration),
            "frame_rate": FRAME_RATE,
        },
        "voice_info": {"kind": voice.kind, "sample_rate": voice.sample_rate, "octave_shift": voice.octave_shift,
                       "wrong_octave_notes": voice.wrong_octave_notes, "drift_cents": round(voice.drift_cents, 1)},
        "plan": spec.to_json(),
    }


def clip_arrangement(record: dict, pool: MelodyPool) -> Arrangement:
    """A clip's arrangement, its plan re-run (``plan_clip`` and ``arrange`` are deterministic from the build seed and
    the clip's index) and its melody checked against the one its record holds (ValueError if another code version
    built the corpus)."""
    spec, melody = plan_clip(record["index"], record["plan"]["seed"], pool, record["duration"])
    arr = arrange(melody, spec)
    if [[n.pitch, round(n.start, 4), round(n.end, 4)] for n in arr.lead] != record["melody"]["notes"]:
        raise ValueError(f"{record['id']}: the re-run plan does not give the clip's melody (another code version "
                         "built this corpus); rebuild it")
    return arr


def clip_notes(record: dict, pool: MelodyPool) -> tuple[list, list]:
    """A clip's exact notes, (pitch, start s, end s) each: (the melody, every pitched note of the arrangement)."""
    arr = clip_arrangement(record, pool)
    lead = [(n.pitch, n.start, n.end) for n in arr.lead]
    return lead, [(n.pitch, n.start, n.end) for t in arr.tracks if not t.is_drums for n in t.notes]


def melody_pool(corpus: Path, cache: Path | None = Path("runs/cache")) -> MelodyPool:
    """The melodies the build in ``corpus`` drew from (parsed once into ``cache``), for ``clip_notes``."""
    params = json.loads((Path(corpus) / "build.json").read_text())
    mset = load_melodies(cache, paths=params.get("score_paths"), progress=False)
    if _digest([m.id for m in mset.melodies]) != params["melodies_digest"]:
        raise ValueError(f"{corpus} was built from other melodies than these scores give: rebuild it")
    return MelodyPool(mset.melodies, params.get("generated_fraction", GENERATED_FRACTION), params.get("crossover", 0.0))


def _write_wav(path: Path, audio: np.ndarray, sr: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    sf.write(tmp, audio, sr, subtype="PCM_16", format="WAV")
    os.replace(tmp, path)


def render_group(args: tuple[int, list, str, str | None]) -> int:
    """Render one group of (spec, melody) pairs with a fresh synth; write audio, voice and the group's records."""
    k, items, out, soundfont = args
    out = Path(out)
    part = out / "parts" / f"group_{k:06d}.jsonl"
    if part.exists():
        return len(items)
    renderer = Renderer(soundfont)
    records = []
    try:
        for spec, melody in items:
            arr = arrange(melody, spec)
            audio = renderer.render(arr)
            voice = render_voice(arr.lead, spec.duration, spec.voice_kind, spec.voice_rate, spec.voice_seed)
            _write_wav(out / "audio" / spec.split / f"{spec.id}.wav", audio, SAMPLE_RATE)
            _write_wav(out / "voice" / spec.split / f"{spec.id}.wav", voice.audio, voice.sample_rate)
            records.append(_record(spec, melody, arr, voice, out))
    finally:
        renderer.close()
    part.parent.mkdir(parents=True, exist_ok=True)
    tmp = part.with_name(part.name + ".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in records))
    os.replace(tmp, part)
    return len(items)


def build(hours: float, out: Path, seed: int = 0, workers: int = 1, clip_seconds: float = 10.0,
          cache: Path | None = Path("runs/cache"), score_paths: list[str] | None = None,
          soundfont: str | None = None, progress: bool = True, generated: float = GENERATED_FRACTION,
          crossover: float = 0.0) -> dict:
    t_start = time.time()
    find_soundfont(soundfont)  # fail early with the install hint
    Renderer(soundfont).close()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    mset = load_melodies(cache, workers=workers, paths=score_paths, progress=progress)
    if not mset.melodies:
        raise RuntimeError("no usable melodies were found in the music21 corpus")
    t_parsed = time.time()
    pool = MelodyPool(mset.melodies, generated, crossover)  # checks the shares before anything is written
    params = {"seed": seed, "clip_seconds": clip_seconds, "n_melodies": len(mset.melodies),
              "melodies_digest": _digest([m.id for m in mset.melodies])}
    if score_paths is not None:  # a build from chosen scores: its clips' notes are re-made from the same ones
        params["score_paths"] = sorted(score_paths)
    if generated != GENERATED_FRACTION:  # recorded only when chosen, so earlier builds' parameters still match
        params["generated_fraction"] = generated
    if crossover:
        params["crossover"] = crossover
    meta = out / "build.json"
    if meta.exists() and json.loads(meta.read_text()) != params:
        raise RuntimeError(f"{out} holds a build with other parameters ({meta.read_text().strip()}); "
                           "use another --out or delete it")
    meta.write_text(json.dumps(params))

    n_clips = int(np.ceil(hours * 3600 / clip_seconds))
    plans = [plan_clip(i, seed, pool, clip_seconds) for i in range(n_clips)]
    groups = [(k, plans[k * GROUP:(k + 1) * GROUP], str(out), soundfont) for k in range((n_clips + GROUP - 1) // GROUP)]
    bar = tqdm(total=n_clips, desc="rendering clips", unit="clip", disable=not progress)
    # always in fresh worker processes, even for one worker: measured, rendering in a process that had run
    # onnxruntime/Gradio first gave different bytes (floating-point mode left behind), breaking reproducibility
    with mp.get_context("spawn").Pool(max(1, workers)) as p:
        for n in p.imap_unordered(render_group, groups):
            bar.update(n)
    bar.close()

    records = []
    for k, *_ in groups:
        part = out / "parts" / f"group_{k:06d}.jsonl"
        records += [json.loads(line) for line in part.read_text().splitlines()]
    records.sort(key=lambda r: r["index"])
    for split in ("train", "valid", "test"):
        tmp = out / f"{split}.jsonl.tmp"
        tmp.write_text("".join(json.dumps(r) + "\n" for r in records if r["split"] == split))
        os.replace(tmp, out / f"{split}.jsonl")
    stats = corpus_stats(records)
    stats.update(seed=seed, workers=workers, melodies=len(mset.melodies), scores_skipped=mset.skipped,
                 parse_seconds=round(t_parsed - t_start, 1), build_seconds=round(time.time() - t_start, 1))
    (out / "corpus.json").write_text(json.dumps(stats, indent=1))
    return stats


def corpus_stats(records: list[dict]) -> dict:
    c: dict[str, Counter] = {k: Counter() for k in ("split", "style", "mood", "tempo", "key", "mode", "instrument",
                                                     "voice", "source", "meter")}
    for r in records:
        t = r["tags"]
        c["split"][r["split"]] += 1
        c["style"][t["style"]] += 1
        c["mood"][t["mood"]] += 1
        c["tempo"][f"{t['tempo'] // 20 * 20}-{t['tempo'] // 20 * 20 + 19}"] += 1
        c["key"][t["key"]] += 1
        c["mode"][t["mode"]] += 1
        c["meter"][t["meter"]] += 1
        c["voice"][r["voice_info"]["kind"]] += 1
        c["source"][r["melody"]["source"]] += 1
        for name in set(t["instruments"].values()):
            c["instrument"][name] += 1
    return {"clips": len(records), "hours": round(sum(r["duration"] for r in records) / 3600, 3),
            "compositions": len({r["melody"]["composition"] for r in records}),
            **{k: dict(sorted(v.items())) for k, v in c.items()}}


def _digest(ids: list[str]) -> str:
    import hashlib

    return hashlib.sha1("\n".join(ids).encode()).hexdigest()[:12]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m engine.data.build", description=__doc__.split("\n\n")[0])
    ap.add_argument("--hours", type=float, required=True, help="hours of audio to render")
    ap.add_argument("--out", type=Path, required=True, help="output directory (kept out of git: use runs/...)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=max(1, os.cpu_count() or 1))
    ap.add_argument("--clip-seconds", type=float, default=10.0, choices=[10.0, 30.0])
    ap.add_argument("--cache", type=Path, default=Path("runs/cache"), help="parsed-melody cache directory")
    ap.add_argument("--max-scores", type=int, default=None, help="use only the first N corpus files (quick builds)")
    ap.add_argument("--soundfont", default=None, help="path to a General MIDI .sf2 (default: FluidR3_GM)")
    ap.add_argument("--generated", type=float, default=GENERATED_FRACTION,
                    help="share of clips with a generated tune: a new composition for every such clip (0-1)")
    ap.add_argument("--crossover", type=float, default=0.0,
                    help="share of clips with a lead from any style, and of drummed styles' clips without drums (0-1)")
    a = ap.parse_args(argv)
    if a.hours <= 0:
        ap.error("--hours must be positive")
    for name in ("generated", "crossover"):
        if not 0 <= getattr(a, name) <= 1:
            ap.error(f"--{name} is a share from 0 to 1, got {getattr(a, name)}")
    paths = None
    if a.max_scores:
        paths = _spread(corpus_paths(), a.max_scores)
    try:
        stats = build(a.hours, a.out, a.seed, a.workers, a.clip_seconds, a.cache, paths, a.soundfont,
                      generated=a.generated, crossover=a.crossover)
    except SynthUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({k: stats[k] for k in ("clips", "hours", "compositions", "split", "build_seconds")}))
    return 0


def _spread(paths: list[str], n: int) -> list[str]:
    """n files spread over all collections (every k-th), so a quick build still has every source."""
    if n >= len(paths):
        return paths
    idx = np.linspace(0, len(paths) - 1, n).round().astype(int)
    return [paths[i] for i in sorted(set(idx))]


if __name__ == "__main__":
    sys.exit(main())
