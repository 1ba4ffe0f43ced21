"""Generation benchmark: ``python -m engine.eval.bench generate [--clips N] [--append BENCHMARKS.md]``, and its
paired form ``python -m engine.eval.bench compare --b CANDIDATE [--a assets]`` (the quality measures below for two
asset folders on the same prompts, hums and seeds, with the per-clip differences' mean and standard error).

- Speed, in one process, both backends: start-up (load + warm-up), then medians of 3 warm generations of 10 s
  (real-time factor, seconds to the first streamed chunk) and the onnxruntime/torch ratio; peak resident memory
  (ru_maxrss of this process, both backends' models included). Warm is what a user of the running app gets: the
  server warms up before it listens.
- MuLan cycle consistency (MusicLM's MCC): cosine of the prompt's MuLan text embedding with the generated audio's
  embedding, as a ratio to the same figure for the real test clips and their captions.
- Melody: for test clips whose voice-like rendition is tracked by ``engine.melody`` (the app's hum path), the share
  of voiced hum frames where the generated audio's dominant pitch class (argmax of a 25 Hz chroma from the
  semitone bands) equals the hummed one, with the melody and with text alone (same prompt and seed); and
  MusicGen's chroma cosine of output vs hum (one-hot hum chroma, voiced frames).
- Tempo: every test prompt names the clip's BPM (the short caption, plus ", at N bpm" when it names none); the
  share of outputs whose librosa beat-tracker tempo is within 8% (octave errors counted as misses), and the same
  for the real clips: the tracker's own ceiling on this music (0.6 on 40 test clips).

MCC and the hum measure vary a lot from clip to clip (per-clip MCC of 24 generated clips from -0.07 to 0.65,
standard deviation 0.17), so the table gives each mean with its
standard error (the ratio's: generated clips' standard error over the real clips' mean), and the default is
48 clips: two disjoint sets of 24 test clips gave MCC ratios of 0.70 and 0.47 for the same models.
"""
from __future__ import annotations

import re
import resource
import time
from pathlib import Path

import numpy as np
import torch

from .. import Cantus, GenerationError, Request, Segment, Settings, spectral
from ..analysis import detect_tempo
from ..data.dataset import CorpusDataset
from ..melody import MelodyError, melody_from_audio


def _chroma(audio: np.ndarray) -> np.ndarray:
    """[12, T] chroma at 25 Hz of 24 kHz audio."""
    f = spectral.frames(torch.from_numpy(audio)[None])
    return spectral.chroma(f)[0].numpy()


def melody_match(audio: np.ndarray, hum_tokens: np.ndarray) -> tuple[float, float, int]:
    """(share of voiced hum frames whose output argmax chroma is the hummed pitch class, chroma cosine, n frames)."""
    c = _chroma(audio)
    n = min(c.shape[1], len(hum_tokens))
    voiced = np.where(hum_tokens[:n] > 0)[0]
    if not len(voiced):
        return float("nan"), float("nan"), 0
    pc = hum_tokens[voiced] - 1
    hit = float(np.mean(c[:, voiced].argmax(0) == pc))
    cn = c[:, voiced] / (np.linalg.norm(c[:, voiced], axis=0, keepdims=True) + 1e-9)
    cos = float(np.mean(cn[pc, np.arange(len(voiced))]))
    return hit, cos, len(voiced)


def tempo_ok(audio: np.ndarray, bpm: float) -> bool:
    return abs(detect_tempo(audio) - bpm) <= 0.08 * bpm


def _timed_stream(model: Cantus, req: Request) -> tuple[float, float]:
    t0 = time.perf_counter()
    first = None
    for _ in model.generate_stream(req):
        first = first if first is not None else time.perf_counter() - t0
    return time.perf_counter() - t0, first


def speed(assets: str = "assets", seconds: float = 10.0, repeats: int = 3) -> dict:
    """Both backends in this process: start-up (load + ``warm_up``), then ``repeats`` alternating warm generations of
    ``seconds`` each (seeds 1..repeats, the same for both); medians of the total and of the first chunk."""
    res, models = {}, {}
    for b in ("torch", "onnx"):
        t = time.perf_counter()
        models[b] = Cantus.load(assets, backend=b)
        models[b].warm_up()
        res[f"{b}_startup_s"] = time.perf_counter() - t
    runs = {b: [] for b in models}
    for r in range(repeats):
        req = Request([Segment("a calm folk tune on the flute", seconds)], Settings(duration=seconds, seed=r + 1))
        for b, m in models.items():
            runs[b].append(_timed_stream(m, req))
    m = models["onnx"]
    if m.drum_remover is not None:  # a prompt refusing drums, with the drum remover and without, same seeds
        remover, runs["no_drums"], runs["no_drums_kept"] = m.drum_remover, [], []
        for r in range(repeats):
            req = Request([Segment("a calm folk tune on the flute, no drums", seconds)],
                          Settings(duration=seconds, seed=r + 1))
            runs["no_drums"].append(_timed_stream(m, req))
            m.drum_remover = None
            runs["no_drums_kept"].append(_timed_stream(m, req))
            m.drum_remover = remover
    for b, rs in runs.items():
        res[f"{b}_generate_s"] = float(np.median([r[0] for r in rs]))
        res[f"{b}_first_chunk_s"] = float(np.median([r[1] for r in rs]))
    res.update(seconds=seconds, repeats=repeats, generate_s=res["onnx_generate_s"], rtf=res["onnx_generate_s"] / seconds,
               first_chunk_s=res["onnx_first_chunk_s"], onnx_speedup=res["torch_generate_s"] / res["onnx_generate_s"],
               peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return res


def standard_error(values) -> float | None:
    """Standard error of the mean over clips (NaNs skipped; None below two clips): the noise the bench reports."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    return float(np.std(x, ddof=1) / np.sqrt(len(x))) if len(x) > 1 else None


TEMPO_IN_PROMPT = re.compile(r"(\d{2,3}) ?(?:bpm|beats per minute)")


def bench_prompts(corpus: Path, n_clips: int) -> tuple[CorpusDataset, list[int]]:
    """The test split (with the voice-like renditions) and the ``n_clips`` clips the bench uses, evenly spread."""
    ds = CorpusDataset(corpus, "test", load_voice=True)
    return ds, list(range(0, len(ds), max(1, len(ds) // n_clips)))[:n_clips]


def clip_hum(ex) -> np.ndarray | None:
    """The melody tokens the app's hum path tracks in the clip's voice-like rendition (None: no tune found)."""
    try:
        return melody_from_audio(ex.voice, ex.voice_rate).tokens
    except MelodyError:
        return None


def clip_measures(model: Cantus, judge, ex, hum: np.ndarray | None, seed: int, seconds: float) -> dict:
    """One test clip's measures for ``model``: its short caption as the prompt (seed ``seed``), judged by the MuLan
    ``judge``. -> {"real", "mcc", "tempo", "tempo_real"} and, with a hum (``clip_hum``), {"hum", "hum_cos", "text",
    "text_cos"}: the dominant-pitch-class hit rate and chroma cosine with the melody and with text alone."""
    caption = ex.captions[1]  # the short caption: the kind of prompt people type
    text = judge.embed_text([caption])[0]
    bpm = ex.tags["tempo"]
    s = Settings(duration=seconds, seed=seed)
    plain = model.generate(Request([Segment(caption, seconds)], s))
    row = {"real": float(judge.embed_audio(ex.audio, 24_000) @ text),
           "mcc": float(judge.embed_audio(plain, 24_000) @ text), "tempo_real": tempo_ok(ex.audio, bpm)}
    timed = plain if TEMPO_IN_PROMPT.search(caption.lower()) else \
        model.generate(Request([Segment(f"{caption}, at {bpm} bpm", seconds)], s))
    row["tempo"] = tempo_ok(timed, bpm)
    if hum is None:
        return row
    try:
        with_m = model.generate(Request([Segment(caption, seconds)], s, melody=hum))
    except GenerationError:
        return row
    row["hum"], row["hum_cos"], _ = melody_match(with_m, hum)
    row["text"], row["text_cos"], _ = melody_match(plain, hum)
    return row


def _mean(rows: list[dict], key: str) -> float | None:
    v = [float(r[key]) for r in rows if key in r]
    return float(np.nanmean(v)) if v else None


def bench_generation(corpus: Path, n_clips: int, assets: str = "assets", seconds: float = 10.0) -> dict:
    res = speed(assets, seconds)  # peak memory includes both backends' models
    model = Cantus.load(assets)
    model.warm_up()
    ds, picks = bench_prompts(corpus, n_clips)
    rows = [clip_measures(model, model.mulan, ds[i], clip_hum(ds[i]), i, seconds) for i in picks]
    real = _mean(rows, "real")
    hums = [r for r in rows if "hum" in r]
    res.update(n_clips=len(rows), mcc_generated=_mean(rows, "mcc"), mcc_real=real,
               mcc_ratio=_mean(rows, "mcc") / real,
               mcc_ratio_se=None if len(rows) < 2 else standard_error([r["mcc"] for r in rows]) / real,
               melody_hit=_mean(hums, "hum"), melody_hit_se=standard_error([r["hum"] for r in hums]),
               melody_hit_text_only=_mean(hums, "text"), melody_chroma_cos=_mean(hums, "hum_cos"),
               melody_chroma_cos_text_only=_mean(hums, "text_cos"), melody_clips=len(hums),
               tempo_within_8pct=_mean(rows, "tempo"), tempo_within_8pct_real=_mean(rows, "tempo_real"),
               tempo_prompts=len(rows))
    return res


PAIRED = ("mcc", "hum", "text", "tempo")


def compare_assets(corpus: Path, n_clips: int, a: str, b: str, seconds: float = 10.0, progress=None) -> dict:
    """Two asset folders on the same test prompts, hums and seeds, judged by folder ``a``'s MuLan: each measure's
    mean and standard error for both, and the mean and standard error of the per-clip difference b - a (far
    smaller than either's own spread: clips differ much more than models do). -> {"summary", "rows"}."""
    models = {"a": Cantus.load(a), "b": Cantus.load(b)}
    for m in models.values():
        m.warm_up()
    judge = models["a"].mulan
    ds, picks = bench_prompts(corpus, n_clips)
    rows = []
    for n, i in enumerate(picks):
        ex = ds[i]
        hum, row = clip_hum(ex), {"clip": i}
        for k, m in models.items():
            row.update({f"{key}_{k}": v for key, v in clip_measures(m, judge, ex, hum, i, seconds).items()})
        rows.append(row)
        if progress:
            progress(n + 1, len(picks))
    real = _mean(rows, "real_a")
    res = {"clips": len(rows), "mcc_real": real}
    for key in PAIRED:
        for k in ("a", "b"):
            col = f"{key}_{k}"
            res[col] = (_mean(rows, col), standard_error([r[col] for r in rows if col in r]))
        # a clip one model has no measure for (its hum was refused) counts for neither
        both = [r for r in rows if f"{key}_a" in r and f"{key}_b" in r]
        d = [float(r[f"{key}_b"]) - float(r[f"{key}_a"]) for r in both]
        res[f"{key}_diff"] = (float(np.nanmean(d)) if d else None, standard_error(d))
    res["mcc_ratio"] = {k: res[f"mcc_{k}"][0] / real for k in ("a", "b")}
    return {"summary": res, "rows": rows}


def markdown_compare(r: dict, a: str, b: str, machine: str, day: str) -> str:
    def f(pair, scale=1.0):
        m, se = pair
        return "n/a" if m is None else f"{m * scale:.3f}" + ("" if se is None else f" ± {se * scale:.3f}")
    names = {"mcc": "MuLan cycle consistency (ratio to the real clips)", "hum": "dominant pitch class = hummed",
             "text": "the same, text only", "tempo": "tempo within 8% of the prompt's BPM"}
    s = r["summary"]
    lines = [f"\n## Paired comparison — {day}, {machine}\n",
             f"`{a}` (a) vs `{b}` (b), {s['clips']} test prompts, the same hums and seeds; MCC of the real clips "
             f"{s['mcc_real']:.3f}.\n", "| measure | a | b | b - a, paired |", "| --- | --- | --- | --- |"]
    for key in PAIRED:
        scale = 1 / s["mcc_real"] if key == "mcc" else 1.0
        lines.append(f"| {names[key]} | {f(s[key + '_a'], scale)} | {f(s[key + '_b'], scale)} | "
                     f"{f(s[key + '_diff'], scale)} |")
    return "\n".join(lines) + "\n"


def markdown(r: dict, machine: str, day: str) -> str:
    def f(x, fmt="{:.3f}"):
        return "n/a" if x is None else fmt.format(x)
    return "\n".join([
        f"\n## Generation — {day}, {machine}\n",
        "| measure | value | target |", "| --- | --- | --- |",
        f"| time to generate {r['seconds']:.0f} s, onnxruntime (real-time factor) | {r['generate_s']:.2f} s ({r['rtf']:.2f}) | RTF ≤ 0.5 |",
        f"| first streamed chunk, onnxruntime | {r['first_chunk_s']:.2f} s | ≤ 1.5 s |",
        f"| eager torch: time to generate / first chunk | {r['torch_generate_s']:.2f} s / {r['torch_first_chunk_s']:.2f} s | |",
        *([f"| 'no drums' prompt, onnxruntime: time to generate / first chunk, drum remover on (off) | "
           f"{r['no_drums_generate_s']:.2f} s / {r['no_drums_first_chunk_s']:.2f} s ({r['no_drums_kept_generate_s']:.2f}"
           f" s / {r['no_drums_kept_first_chunk_s']:.2f} s) | first chunk +0.1 s at most |"] if "no_drums_generate_s" in r
          else []),
        f"| onnxruntime speed-up over eager torch (same run) | {r['onnx_speedup']:.2f}x | ≥ 1.5x |",
        f"| start-up (load + warm-up), onnxruntime / torch | {r['onnx_startup_s']:.1f} s / {r['torch_startup_s']:.1f} s | |",
        f"| peak resident memory (both backends loaded) | {r['peak_rss_mb']:.0f} MB | < 2,000 MB |",
        f"| MuLan cycle consistency, generated / real ({r['n_clips']} test prompts) | {f(r['mcc_generated'])} / {f(r['mcc_real'])} = {f(r['mcc_ratio'], '{:.2f}')} ± {f(r.get('mcc_ratio_se'), '{:.2f}')} | ≥ 0.8 |",
        f"| dominant pitch class = hummed, with melody / text only ({r['melody_clips']} hums) | {f(r['melody_hit'])} ± {f(r.get('melody_hit_se'))} / {f(r['melody_hit_text_only'])} | ≥ 0.45 and ≥ 3x |",
        f"| chroma cosine with the hum, with melody / text only | {f(r['melody_chroma_cos'])} / {f(r['melody_chroma_cos_text_only'])} | |",
        f"| tempo within 8% of the prompt's BPM ({r['tempo_prompts']} prompts), generated / real clips | "
        f"{f(r['tempo_within_8pct'])} / {f(r.get('tempo_within_8pct_real'))} | ≥ 0.7 |",
    ]) + "\n"
