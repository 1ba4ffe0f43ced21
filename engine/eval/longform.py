"""Long-form benchmark, ``python -m engine.eval.bench longform [--clips N] [--seconds S] [--hums] [--append BENCHMARKS.md]``:
does a long clip keep to its prompt, and do its window joins show?

Long form is made of sliding windows (``engine.settings.window_plan``: windows of up to 10 s, each keeping the last
5 s of the one before as context; a window that another follows stops 1.24 s short, so the first
adds 8.76 s and each later one 3.76 s). For each of N text-only test prompts (the short caption, seed = clip index)
generated for S seconds (default 60):

- drift: MuLan cycle consistency (the prompt's text embedding · the audio's) of each consecutive 10 s part, so a
  clip that wanders from its prompt shows as a falling row;
- joins: at each time a window's new audio starts, the spectral-envelope jump (mean |difference| of the log-mel
  averaged over the 0.5 s before and the 0.5 s after), the bass rise (the same difference, signed, in the mel bands
  under 390 Hz: after minus before, log10) and the MuLan cosine of the 5 s before with the 5 s after, each against
  the same measures at control points halfway between joins: music changes everywhere, so a join is judged by how
  much more it changes than the music around it does;
- with ``--hums``: for the prompts whose clip has a tracked hum (the bench's hum path, ``clip_hum``), the same
  duration generated with the hum (which the generator repeats when the music is longer), and for each 10 s part the
  share of voiced hum frames where the output's dominant pitch class is the hummed one, with the hum and for the
  text-only clip of the same seed (``hum_parts``): does the music keep following the tune past the first window?

Current numbers: ``BENCHMARKS.md``. What they showed: the drift rides on the acoustic context the windows carry,
and so does the continuity of the joins (later windows started afresh from the semantic ids drift less but jump
more at every join).
"""
from __future__ import annotations

from itertools import pairwise

import numpy as np

from .. import pipeline as P
from .. import settings as G
from .generation import bench_prompts, clip_hum, melody_match, standard_error

PART_S = 10.0  # MCC per part: MuLan's window
SIDE_S = 0.5  # envelope either side of a join
STYLE_S = 5.0  # MuLan cosine of this much audio either side of a join
HOP = 240  # 10 ms at 24 kHz
BASS_BANDS = 10  # the 80-band log-mel's bands under 390 Hz


def join_times(seconds: float, tail_s: float | None = None) -> list[float]:
    """Seconds into a text-only clip where each window after the first starts its new audio (``G.window_plan``)."""
    plan = G.window_plan(G.clip_frames(seconds), 0, tail_s)
    return [float(t) for t in np.cumsum([n for _, n in plan])[:-1] / G.CODEC_RATE]


def _log_mel(audio: np.ndarray) -> np.ndarray:
    import librosa
    m = librosa.feature.melspectrogram(y=np.asarray(audio, dtype=np.float32), sr=G.SAMPLE_RATE, n_fft=1024,
                                       hop_length=HOP, n_mels=80)
    return np.log10(m + 1e-5)


def _change(log_mel: np.ndarray, t: float) -> np.ndarray:
    """Per band: the log-mel averaged over the SIDE_S after ``t`` seconds minus the SIDE_S before."""
    i, n = round(t * G.SAMPLE_RATE / HOP), round(SIDE_S * G.SAMPLE_RATE / HOP)
    return log_mel[:, i:i + n].mean(1) - log_mel[:, i - n:i].mean(1)


def envelope_jump(log_mel: np.ndarray, t: float) -> float:
    """Mean absolute change of the log-mel across ``t`` seconds."""
    return float(np.abs(_change(log_mel, t)).mean())


def bass_rise(log_mel: np.ndarray, t: float) -> float:
    """Signed change of the bands under 390 Hz across ``t`` seconds (log10; > 0: louder after)."""
    return float(_change(log_mel, t)[:BASS_BANDS].mean())


def join_measures(audio: np.ndarray, joins: list[float], embed=None) -> dict:
    """Envelope jump and bass rise (and, with ``embed``: audio -> unit vector, the cosine of the STYLE_S either side)
    at each join and at the control points halfway between consecutive joins (measured only where both sides fit)."""
    dur = len(audio) / G.SAMPLE_RATE
    controls = [(a + b) / 2 for a, b in pairwise(joins)]
    m = _log_mel(audio)

    def at(times, side):
        return [t for t in times if t - side >= 0 and t + side <= dur]
    out = {"jump_join": [envelope_jump(m, t) for t in at(joins, SIDE_S)],
           "jump_between": [envelope_jump(m, t) for t in at(controls, SIDE_S)],
           "bass_join": [bass_rise(m, t) for t in at(joins, SIDE_S)],
           "bass_between": [bass_rise(m, t) for t in at(controls, SIDE_S)]}
    if embed is not None:
        def cos(t):
            a, b = int((t - STYLE_S) * G.SAMPLE_RATE), int(t * G.SAMPLE_RATE)
            return float(embed(audio[a:b]) @ embed(audio[b:b + (b - a)]))
        out["style_join"] = [cos(t) for t in at(joins, STYLE_S)]
        out["style_between"] = [cos(t) for t in at(controls, STYLE_S)]
    return out


def hum_parts(audio: np.ndarray, hum: np.ndarray, n_parts: int) -> list[float]:
    """The dominant-pitch-class hit rate (``melody_match``) of each consecutive 10 s part of ``audio`` against the
    25 Hz hum tokens, repeated to the audio's length as the generator repeats a short melody (NaN: no voiced frame)."""
    frames = int(PART_S * G.SEMANTIC_RATE)
    full = np.resize(np.asarray(hum), n_parts * frames)
    part = int(PART_S * G.SAMPLE_RATE)
    return [melody_match(audio[k * part:(k + 1) * part], full[k * frames:(k + 1) * frames])[0] for k in range(n_parts)]


def check_seconds(seconds: float) -> float:
    """Clips of 20 s up to the generator's limit: two 10 s parts and at least one window join to compare."""
    if not 2 * PART_S <= seconds <= G.MAX_SECONDS:
        raise ValueError(f"clips must last {2 * PART_S:.0f} to {G.MAX_SECONDS:.0f} s (two 10 s parts and a window "
                         f"join), got {seconds:g}")
    return seconds


def bench_longform(corpus, n_clips: int, assets: str = "assets", seconds: float = 60.0, progress=None,
                   hums: bool = False) -> dict:
    check_seconds(seconds)
    model = P.Cantus.load(assets)
    model.warm_up()
    mulan = model.mulan

    def embed(x):
        return mulan.embed_audio(x, G.SAMPLE_RATE)
    ds, picks = bench_prompts(corpus, n_clips)
    part = int(PART_S * G.SAMPLE_RATE)
    n_parts = int(seconds // PART_S)
    rows = []
    for i in picks:
        ex = ds[i]
        caption = ex.captions[1]
        audio = model.generate(G.Request([G.Segment(caption, seconds)], G.Settings(duration=seconds, seed=i)))
        text = mulan.embed_text([caption])[0]
        row = {"clip": i, "mcc_parts": [float(embed(audio[k * part:(k + 1) * part]) @ text) for k in range(n_parts)],
               "mcc_real": float(embed(ex.audio) @ text)}
        row.update(join_measures(audio, join_times(seconds), embed))
        hum = clip_hum(ex) if hums else None
        if hum is not None:
            hummed = model.generate(G.Request([G.Segment(caption, seconds)], G.Settings(duration=seconds, seed=i),
                                              melody=hum))
            row["hum_parts"], row["text_parts"] = hum_parts(hummed, hum, n_parts), hum_parts(audio, hum, n_parts)
        rows.append(row)
        if progress:
            progress(len(rows), len(picks))
    parts = np.array([r["mcc_parts"] for r in rows])

    def pooled(key):  # 20 s and longer: every clip has joins and a control point, each with 5 s either side
        return float(np.mean([np.mean(r[key]) for r in rows]))
    excess = [np.mean(r["jump_join"]) - np.mean(r["jump_between"]) for r in rows]
    bass = [np.mean(r["bass_join"]) - np.mean(r["bass_between"]) for r in rows]
    drift = parts[:, -1] - parts[:, 0]
    hummed = [r for r in rows if "hum_parts" in r]
    hum = {}
    if hummed:
        h, t = np.array([r["hum_parts"] for r in hummed]), np.array([r["text_parts"] for r in hummed])
        hum = {"hum_clips": len(hummed), "hum_parts": np.nanmean(h, 0).tolist(), "text_parts": np.nanmean(t, 0).tolist(),
               "hum_parts_se": [standard_error(c) for c in h.T]}
    return {**hum, "clips": len(rows), "seconds": seconds, "mcc_real": float(np.mean([r["mcc_real"] for r in rows])),
            "mcc_parts": parts.mean(0).tolist(), "mcc_parts_se": [standard_error(c) for c in parts.T],
            "last_minus_first": float(np.mean(drift)), "last_minus_first_se": standard_error(drift),
            "jump_join": pooled("jump_join"), "jump_between": pooled("jump_between"),
            "jump_excess": float(np.mean(excess)), "jump_excess_se": standard_error(excess),
            "bass_join": pooled("bass_join"), "bass_between": pooled("bass_between"),
            "bass_excess": float(np.mean(bass)), "bass_excess_se": standard_error(bass),
            "style_join": pooled("style_join"), "style_between": pooled("style_between"), "rows": rows}


def markdown(r: dict, machine: str, day: str) -> str:
    def f(x, fmt="{:.3f}"):
        return "n/a" if x is None else fmt.format(x)
    parts = " / ".join(f"{m:.3f}" for m in r["mcc_parts"])
    return "\n".join([
        f"\n## Long form — {day}, {machine}\n",
        f"{r['clips']} text-only test prompts x {r['seconds']:.0f} s (`python -m engine.eval.bench longform`); "
        f"MCC of the real 10 s clips {r['mcc_real']:.3f}.\n",
        "| measure | value |", "| --- | --- |",
        f"| MuLan cycle consistency of each 10 s part, in order | {parts} |",
        f"| last part minus first, paired | {f(r['last_minus_first'], '{:+.3f}')} ± {f(r['last_minus_first_se'])} |",
        f"| log-mel envelope jump at window joins / between joins | {f(r['jump_join'])} / {f(r['jump_between'])} "
        f"(excess {f(r['jump_excess'], '{:+.3f}')} ± {f(r['jump_excess_se'])}) |",
        f"| bass rise (bands under 390 Hz, log10) at window joins / between joins | {f(r['bass_join'], '{:+.3f}')} / "
        f"{f(r['bass_between'], '{:+.3f}')} (excess {f(r['bass_excess'], '{:+.3f}')} ± {f(r['bass_excess_se'])}) |",
        f"| MuLan cosine of the 5 s either side, at joins / between joins | {f(r['style_join'])} / "
        f"{f(r['style_between'])} |",
        *([f"| hum followed (dominant pitch class = hummed one) by 10 s part, with the hum / text alone, "
           f"{r['hum_clips']} prompts with a tracked hum | "
           + " / ".join(f"{h:.3f} ({t:.3f})" for h, t in zip(r["hum_parts"], r["text_parts"])) + " |"]
          if "hum_parts" in r else []),
    ]) + "\n"
