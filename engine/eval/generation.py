"""Generation benchmark: ``python -m engine.eval.bench generate [--clips N] [--append BENCHMARKS.md]``.

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

MCC and the hum measure vary a lot from clip to clip (session 14, session-13 models, 24 clips: per-clip
MCC of generated clips from -0.07 to 0.65, standard deviation 0.17), so the table gives each mean with its
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

from .. import spectral
from ..data.dataset import CorpusDataset
from ..generate import Cantus, GenerationError, Request, Segment, Settings
from ..melody import melody_from_audio


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


def _tempo_ok(audio: np.ndarray, bpm: float) -> bool:
    import librosa
    est = float(np.atleast_1d(librosa.beat.beat_track(y=audio, sr=24_000)[0])[0])
    return abs(est - bpm) <= 0.08 * bpm


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


def bench_generation(corpus: Path, n_clips: int, assets: str = "assets", seconds: float = 10.0) -> dict:
    res = speed(assets, seconds)  # peak memory includes both backends' models
    model = Cantus.load(assets)
    model.warm_up()
    ds = CorpusDataset(corpus, "test", load_voice=True)
    picks = list(range(0, len(ds), max(1, len(ds) // n_clips)))[:n_clips]
    mcc_gen, mcc_real, hits_m, hits_t, cos_m, cos_t, tempo, tempo_real = [], [], [], [], [], [], [], []
    for i in picks:
        ex = ds[i]
        caption = ex.captions[1]  # the short caption: the kind of prompt people type
        text = model.mulan.embed_text([caption])[0]
        mcc_real.append(float(model.mulan.embed_audio(ex.audio, 24_000) @ text))
        try:
            hum = melody_from_audio(ex.voice, ex.voice_rate).tokens
        except Exception:
            hum = None
        s = Settings(duration=seconds, seed=i)
        plain = model.generate(Request([Segment(caption, seconds)], s))
        mcc_gen.append(float(model.mulan.embed_audio(plain, 24_000) @ text))
        bpm = ex.tags["tempo"]
        if re.search(r"(\d{2,3}) ?(?:bpm|beats per minute)", caption.lower()):
            tempo.append(_tempo_ok(plain, bpm))
        else:
            tempo.append(_tempo_ok(model.generate(Request([Segment(f"{caption}, at {bpm} bpm", seconds)], s)), bpm))
        tempo_real.append(_tempo_ok(ex.audio, bpm))
        if hum is not None:
            try:
                with_m = model.generate(Request([Segment(caption, seconds)], s, melody=hum))
            except GenerationError:
                continue
            h, c, _ = melody_match(with_m, hum)
            ht, ct, _ = melody_match(plain, hum)
            hits_m.append(h), cos_m.append(c), hits_t.append(ht), cos_t.append(ct)
    res.update(n_clips=len(picks), mcc_generated=float(np.mean(mcc_gen)), mcc_real=float(np.mean(mcc_real)),
               mcc_ratio=float(np.mean(mcc_gen) / np.mean(mcc_real)),
               mcc_ratio_se=None if len(picks) < 2 else standard_error(mcc_gen) / float(np.mean(mcc_real)),
               melody_hit=float(np.nanmean(hits_m)) if hits_m else None,
               melody_hit_se=standard_error(hits_m),
               melody_hit_text_only=float(np.nanmean(hits_t)) if hits_t else None,
               melody_chroma_cos=float(np.nanmean(cos_m)) if cos_m else None,
               melody_chroma_cos_text_only=float(np.nanmean(cos_t)) if cos_t else None,
               melody_clips=len(hits_m), tempo_within_8pct=float(np.mean(tempo)) if tempo else None,
               tempo_within_8pct_real=float(np.mean(tempo_real)) if tempo_real else None, tempo_prompts=len(tempo))
    return res


def markdown(r: dict, machine: str, day: str) -> str:
    def f(x, fmt="{:.3f}"):
        return "n/a" if x is None else fmt.format(x)
    return "\n".join([
        f"\n## Generation — {day}, {machine}\n",
        "| measure | value | target |", "| --- | --- | --- |",
        f"| time to generate {r['seconds']:.0f} s, onnxruntime (real-time factor) | {r['generate_s']:.2f} s ({r['rtf']:.2f}) | RTF ≤ 0.5 |",
        f"| first streamed chunk, onnxruntime | {r['first_chunk_s']:.2f} s | ≤ 1.5 s |",
        f"| eager torch: time to generate / first chunk | {r['torch_generate_s']:.2f} s / {r['torch_first_chunk_s']:.2f} s | |",
        f"| onnxruntime speed-up over eager torch (same run) | {r['onnx_speedup']:.2f}x | ≥ 1.5x |",
        f"| start-up (load + warm-up), onnxruntime / torch | {r['onnx_startup_s']:.1f} s / {r['torch_startup_s']:.1f} s | |",
        f"| peak resident memory (both backends loaded) | {r['peak_rss_mb']:.0f} MB | < 2,000 MB |",
        f"| MuLan cycle consistency, generated / real ({r['n_clips']} test prompts) | {f(r['mcc_generated'])} / {f(r['mcc_real'])} = {f(r['mcc_ratio'], '{:.2f}')} ± {f(r.get('mcc_ratio_se'), '{:.2f}')} | ≥ 0.8 |",
        f"| dominant pitch class = hummed, with melody / text only ({r['melody_clips']} hums) | {f(r['melody_hit'])} ± {f(r.get('melody_hit_se'))} / {f(r['melody_hit_text_only'])} | ≥ 0.45 and ≥ 3x |",
        f"| chroma cosine with the hum, with melody / text only | {f(r['melody_chroma_cos'])} / {f(r['melody_chroma_cos_text_only'])} | |",
        f"| tempo within 8% of the prompt's BPM ({r['tempo_prompts']} prompts), generated / real clips | "
        f"{f(r['tempo_within_8pct'])} / {f(r.get('tempo_within_8pct_real'))} | ≥ 0.7 |",
    ]) + "\n"
