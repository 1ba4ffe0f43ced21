"""Can one play with it? ``python -m engine.eval.bench jam [--minutes 10] [--realtime]``.

A scripted jam (``engine.jam.script``) of ``--minutes``: the prompt changes every 20 s through contrasting styles
(some changes with a BPM, some giving the tempo back, one refusing drums), and a hum (a test clip's voice-like
rendition) starts 10 s into every other prompt and is cleared 10 s into the next. Reported beside the player's own
report (underruns, busy share, memory growth after the first minute):

- prompt latency, per prompt change: the first time after the change from which the output's MuLan audio
  embedding (2 s windows, 0.25 s apart; two windows in a row) is closer to the new prompt's text embedding than to
  the old one's; the median is the target (at most 3 s);
- hum latency, per hum: the first time after it starts from which, on 1 s windows (two in a row), the hummed note
  is the output's dominant pitch class on most voiced frames (at most 4 s); a hum never followed within the 10 s it
  plays counts as not followed;
- joins (``joins``): whether the changes into each chunk stand out among the audio's frame-to-frame changes.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import Cantus
from ..jam import CHUNK_S, CONTEXT_S, LEAD_S, Jam
from ..jam.script import parse, play, track_hums
from ..jam.session import SWITCH_S
from .generation import melody_match
from .metrics import frame_changes

PROMPTS = ["calm solo piano ballad", "energetic techno with a driving synth bass", "jazz trumpet over a swinging band",
           "folk tune on the fiddle", "heavy rock with distorted electric guitar, no drums", "dreamy ambient pads",
           "reggae groove with organ and bass", "march for brass band and snare drum"]
BPMS = [None, 128, None, 100, None, None, 84, 120]
EVERY_S, RATE = 20.0, 24_000


def make_script(minutes: float, corpus: Path) -> list[dict]:
    voices = sorted((Path(corpus) / "voice" / "test").glob("*.wav"))
    if not voices:
        raise ValueError(f"{corpus} has no test hums (voice/test/*.wav): build the corpus first")
    script, n = [{"t": 0, "prompt": PROMPTS[0]}], int(minutes * 60 / EVERY_S)
    for j in range(1, n):
        ev = {"t": EVERY_S * j, "prompt": PROMPTS[j % len(PROMPTS)]}
        if BPMS[j % len(BPMS)] is not None or BPMS[(j - 1) % len(BPMS)] is not None:
            ev["bpm"] = BPMS[j % len(BPMS)]
        script.append(ev)
        half = {"t": EVERY_S * j + EVERY_S / 2}
        script.append({**half, "melody": str(voices[(7 * j) % len(voices)].resolve())} if j % 2 else
                      {**half, "melody": None})
    return script


def first_steady(times: list[float], ok: list[bool]) -> float | None:
    """The first time whose window and the next both pass."""
    for i in range(len(ok) - 1):
        if ok[i] and ok[i + 1]:
            return times[i]
    return None


def prompt_latency(judge, audio: np.ndarray, t: float, old: str, new: str, horizon: float, win: float = 2.0):
    text = judge.embed_text([old, new])
    times, ok = [], []
    for tau in np.arange(0.25, horizon + 1e-9, 0.25):
        end = int((t + tau) * RATE)
        if end > len(audio):
            break
        e = judge.embed_audio(audio[max(0, end - int(win * RATE)):end], RATE)
        times.append(float(tau))
        ok.append(bool(e @ text[1] > e @ text[0]))
    return first_steady(times, ok)


def hum_latency(audio: np.ndarray, t: float, applied: float, tokens: np.ndarray, horizon: float):
    times, ok = [], []
    for tau in np.arange(1.0, horizon + 1e-9, 0.25):
        a, b = t + tau - 1.0, t + tau
        if b * RATE > len(audio):
            break
        if a < applied:  # before the chunk that follows the hum: its notes are not asked for yet
            times.append(float(tau))
            ok.append(False)
            continue
        idx = (np.arange(int(a * 25), int(b * 25)) - int(round(applied * 25))) % len(tokens)
        hit, _, n = melody_match(audio[int(a * RATE):int(b * RATE)], tokens[idx])
        times.append(float(tau))
        ok.append(n > 0 and hit > 0.5)
    return first_steady(times, ok)


def joins(audio: np.ndarray, starts: list[int]) -> dict:
    """Do the chunk joins (``starts``: the sample where each chunk after the first begins) stand out? The share of
    joins whose change from the frame before (log-spectrum distance, level step; 20 ms frames) is above the 90th
    percentile of every frame's: 10% is a join like any other frame."""
    flux, level = frame_changes(np.asarray(audio)[RATE // 100:], RATE)  # frames centred on the joins
    at = np.round(np.asarray(starts) / (RATE // 50)).astype(int) - 2  # the change into the frame that holds each join
    at = at[(at >= 0) & (at < len(flux))]
    return {"joins": len(at), "spectral": round(float(np.mean(flux[at] > np.percentile(flux, 90))), 3),
            "level": round(float(np.mean(level[at] > np.percentile(level, 90))), 3)}


def run(corpus: Path, minutes: float = 10.0, assets: str = "assets", realtime: bool = False, seed: int = 0,
        progress=None, lead: float = LEAD_S, **jam_args) -> dict:
    """``jam_args``: ``Jam``'s chunk_seconds, context_seconds, switch_seconds."""
    seconds = minutes * 60
    changes = parse(make_script(minutes, corpus), Path("/"), seconds)
    model = Cantus.load(assets)
    track_hums(model, changes)
    jam = Jam(model, seed=seed, **jam_args, **changes[0].set)
    audio, report = play(jam, changes, seconds, realtime, lead, progress=progress)
    prompts, hums, prompt = [], [], changes[0].set["prompt"]
    for i, ch in enumerate(changes[1:], 1):
        nxt = changes[i + 1].t if i + 1 < len(changes) else seconds
        if "prompt" in ch.set and ch.set["prompt"] != prompt:
            lat = prompt_latency(model.mulan, audio, ch.t, prompt, ch.set["prompt"], min(EVERY_S, seconds - ch.t))
            prompts.append({"t": ch.t, "to": ch.set["prompt"], "latency_s": lat})
            prompt = ch.set["prompt"]
        if ch.tokens is not None:
            lat = hum_latency(audio, ch.t, ch.applied_at, ch.tokens, nxt - ch.t)
            hums.append({"t": ch.t, "latency_s": lat})
    def median(rows):  # a change never heard counts as slower than any heard
        v = [r["latency_s"] if r["latency_s"] is not None else np.inf for r in rows]
        return None if not v else float(np.median(v))
    report.update(joins=joins(audio, report.pop("chunk_starts")), context_seconds=jam.keep / 50, switch_seconds=jam.switch / 50, prompt_latency_median=median(prompts), hum_latency_median=median(hums),
                  prompt_changes=prompts, hums=hums,
                  hums_followed=sum(h["latency_s"] is not None for h in hums))
    return {"report": report, "audio": audio}


def markdown(r: dict, machine: str, day: str) -> str:
    def s(x):
        return "never" if x is None or not np.isfinite(x) else f"{x:.2f} s"
    flags = "".join(f" --{k} {r[f]:g}" for k, f, default in (("chunk", "chunk_seconds", CHUNK_S),
                                                              ("context", "context_seconds", CONTEXT_S),
                                                              ("switch", "switch_seconds", SWITCH_S),
                                                              ("lead", "lead_seconds", LEAD_S))
                    if r[f] != default) + (" --realtime" if r["realtime"] else "")
    return "\n".join([
        f"## Jam — {day}, {machine}", "",
        f"`python -m engine.eval.bench jam --minutes {r['seconds'] / 60:g}{flags}`: "
        f"the prompt changing every {EVERY_S:g} s, a hum fed into every other prompt; chunks of "
        f"{r['chunk_seconds']:g} s continuing {r['context_seconds']:g} s of the jam ({r['switch_seconds']:g} s after a "
        f"new prompt), the next started with {r['lead_seconds']:g} s left to play; onnxruntime.", "",
        "| measure | value | target |", "| --- | --- | --- |",
        f"| underruns over {r['seconds'] / 60:g} min | {r['underruns']} | 0 |",
        f"| generator busy (share of wall time) | {r['busy']:.0%} | < 70% |",
        f"| memory growth after the first minute | {r['rss_growth_mb']:+.0f} MB (peak {r['peak_rss_mb']:.0f} MB) "
        "| < 100 MB |",
        f"| first audio after Start | {r['first_audio_s']:.2f} s | ≤ 3 s |",
        f"| chunk joins among the 10% largest frame-to-frame changes, spectrum / level ({r['joins']['joins']} joins) | "
        f"{r['joins']['spectral']:.0%} / {r['joins']['level']:.0%} | ≈ 10% (a join like any frame) |",
        f"| prompt change heard (median of {len(r['prompt_changes'])}) | {s(r['prompt_latency_median'])} | ≤ 3 s |",
        f"| hum followed (median of {len(r['hums'])}; followed at all: {r['hums_followed']}) | "
        f"{s(r['hum_latency_median'])} | ≤ 4 s |", ""])
