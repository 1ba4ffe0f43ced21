"""Do tempo words move the tempo? ``python -m engine.eval.bench tempowords [--prompts 24] [--seconds 10]``.

For each of ``--prompts`` style-and-instrument phrases, two text-only clips: one whose prompt says only that it is
slow (in the words people write: "slow", "the tempo is slow", "a laid-back", "ballad", ...) and one that says it is
fast ("fast", "the tempo is fast", "up-tempo", "driving", ...); seed = phrase index. librosa's beat tracker
estimates each clip's tempo; the measure is the median BPM of the slow clips over that of the fast ones (the
control issue's target: at most 0.7), with the share of clips within 8% of the BPM the word was drawn to and of the
tracker's octave errors (half or double that BPM) beside it.
"""
from __future__ import annotations

import numpy as np

from .. import Cantus, Request, Segment, Settings
from ..analysis import detect_tempo
from ..controls import parse_prompt

STYLES = ["folk tune on the fiddle", "piano ballad", "rock song with electric guitar", "jazz number with a trumpet",
          "techno track with a synth bass", "ambient piece with warm pads", "pop song with piano and drums",
          "march for brass band", "waltz for strings", "bossa nova with nylon guitar", "reggae groove with organ",
          "cinematic orchestral piece"]
SLOW = ["a slow {}", "{}, the tempo is slow", "a laid-back {}", "an unhurried {}"]
FAST = ["a fast {}", "{}, the tempo is fast", "an up-tempo {}", "a driving {}"]


def run(n: int, assets: str = "assets", seconds: float = 10.0, progress=None) -> dict:
    model = Cantus.load(assets)
    rows = []
    for i in range(n):
        style = STYLES[i % len(STYLES)]
        for kind, forms in (("slow", SLOW), ("fast", FAST)):
            prompt = forms[i % len(forms)].format(style)
            asked = parse_prompt(prompt).tempo_bpm(i)
            audio = model.generate(Request([Segment(prompt, seconds)], Settings(duration=seconds, seed=i)))
            est = detect_tempo(audio)
            rows.append({"prompt": prompt, "kind": kind, "seed": i, "asked": asked, "bpm": round(est, 1),
                         "within_8": asked is not None and abs(est - asked) <= 0.08 * asked,
                         "octave": asked is not None and min(abs(est - 2 * asked), abs(est - asked / 2))
                         <= 0.08 * asked})
        if progress:
            progress(i + 1, n)
    slow = [r["bpm"] for r in rows if r["kind"] == "slow"]
    fast = [r["bpm"] for r in rows if r["kind"] == "fast"]
    return {"prompts": n, "seconds": seconds, "median_slow": float(np.median(slow)),
            "median_fast": float(np.median(fast)), "ratio": round(float(np.median(slow) / np.median(fast)), 3),
            "within_8": round(float(np.mean([r["within_8"] for r in rows])), 3),
            "octave_errors": round(float(np.mean([r["octave"] for r in rows])), 3), "rows": rows}


def markdown(r: dict, machine: str, day: str) -> str:
    return "\n".join([
        f"## Tempo words — {day}, {machine}", "",
        f"`python -m engine.eval.bench tempowords --prompts {r['prompts']}`: {r['prompts']} style phrases x (slow, "
        f"fast) words, text only, {r['seconds']:g} s, librosa's beat tracker.", "",
        "| measure | value | target |", "| --- | --- | --- |",
        f"| median BPM of 'slow' / 'fast' clips | {r['median_slow']:.0f} / {r['median_fast']:.0f} "
        f"(ratio {r['ratio']:.2f}) | ratio ≤ 0.7 |",
        f"| clips within 8% of the BPM the word was drawn to | {r['within_8']:.0%} | |",
        f"| the tracker's octave errors (half or double) | {r['octave_errors']:.0%} | |", ""])
