"""Do loops repeat without a seam? ``python -m engine.eval.bench loops [--prompts 24] [--bars 4]``.

Per prompt (a style at a BPM, a tempo word, or no tempo at all: the prompt's own, detected), one loop
(``engine.loops``), played twice in a row (three times for the beat tracker):

- the join: its change from the frame before (log-spectrum distance and level step, 20 ms frames) against the 90th
  percentile of the loop's own frame-to-frame changes, and of the changes on its beats (the join is a downbeat: its
  onset is the music's, and stands out among all frames as every downbeat does); a join within them stands out no
  more than the music does, so at least 90% of loops should be (a join like any other frame is within 90% of the
  time);
- the beat: librosa's beat tracker across the repeats; the tempo of its beats within 2% of the loop's (half or
  double counted apart, as octave errors), and the beat phase of the four beats after each join within 30 ms of the
  four before.
"""
from __future__ import annotations

import numpy as np

from .. import Cantus, Request, Segment, Settings
from ..loops import make_loop
from ..settings import SAMPLE_RATE
from .metrics import frame_changes

STYLES = ["techno track", "funk groove with slap bass", "hip-hop beat", "rock song with electric guitar",
          "bossa nova with nylon guitar", "reggae groove with organ", "folk tune on the fiddle", "ambient piece",
          "jazz swing tune", "pop song with piano and drums", "march for brass band", "piano ballad"]
TEMPI = ["at 124 bpm", "at 96 bpm", "at 88 bpm", "at 140 bpm", "slow", "fast", None, None]


def prompts(n: int) -> list[str]:
    out = []
    for i in range(n):
        tempo, style = TEMPI[i % len(TEMPI)], STYLES[i % len(STYLES)]
        out.append(style if tempo is None else f"a {tempo} {style}" if tempo in ("slow", "fast") else f"{style} {tempo}")
    return out


def join_measures(loop: np.ndarray, bpm: float) -> dict:
    """The join of ``loop`` played twice against the loop's own frame changes: all of them (the join is within
    their 90th percentile), and those on its beats (a join on a downbeat carries the beat's onset: the music's own
    change, which stands out among all frames but not among the beats)."""
    hop = SAMPLE_RATE // 50
    shift = len(loop) % hop + hop // 2  # so that a frame boundary falls half a frame before the join
    flux, level = frame_changes(np.concatenate([loop, loop])[shift:])

    def near(t: float, x: np.ndarray) -> float:  # the largest change into the frames around time t
        f = int((t * SAMPLE_RATE - shift) // hop)
        return float(x[max(0, f - 2):f + 1].max())
    length, period = len(loop) / SAMPLE_RATE, 60.0 / bpm
    beats = np.arange(1, int(round(length / period))) * period
    out = {}
    for name, x in (("spectral", flux), ("level", level)):
        own = x[: (len(loop) - shift) // hop - 2]  # the first copy's frames
        at_join = float(x[(len(loop) - shift) // hop - 1])
        out[f"join_{name}"] = bool(at_join <= np.percentile(own, 90))
        out[f"join_{name}_beats"] = bool(near(length, x) <= np.percentile([near(t, x) for t in beats], 90))
    return out


def beat_measures(loop: np.ndarray, bpm: float) -> dict:
    """librosa's beat tracker across the loop played three times (5 ms frames): the tempo of its beats (the median
    interval) against the loop's, and the beat phase of the beats in the four beats after each join against those in
    the four before."""
    import librosa
    _, beats = librosa.beat.beat_track(y=np.tile(loop, 3).astype(np.float32), sr=SAMPLE_RATE, hop_length=120,
                                       units="time")
    tempo = 60.0 / float(np.median(np.diff(beats))) if len(beats) > 2 else 0.0
    # the phase is taken at the tracker's own beat period, so a double-time reading still compares like with like
    period, length = 60.0 / (tempo or bpm), len(loop) / SAMPLE_RATE
    phases = []
    for join in (length, 2 * length):
        before = beats[(beats >= join - 4 * period) & (beats < join)]
        after = beats[(beats >= join) & (beats < join + 4 * period)]
        if len(before) and len(after):
            def phase(b):
                return np.angle(np.mean(np.exp(2j * np.pi * b / period)))
            d = np.angle(np.exp(1j * (phase(after) - phase(before)))) / (2 * np.pi) * period
            phases.append(abs(float(d)))
    return {"tracked_bpm": round(tempo, 1), "tempo_ok": abs(tempo - bpm) <= 0.02 * bpm,
            "octave": min(abs(tempo - 2 * bpm), abs(tempo - bpm / 2)) <= 0.02 * bpm,
            "phase_ms": round(1000 * max(phases), 1) if phases else None,
            "phase_ok": bool(phases) and max(phases) <= 0.030}


def run(n: int, bars: int = 4, assets: str = "assets", progress=None) -> dict:
    model = Cantus.load(assets)
    rows = []
    for i, prompt in enumerate(prompts(n)):
        loop = make_loop(model, Request([Segment(prompt, 10.0)], Settings(seed=i)), bars)
        rows.append({"prompt": prompt, "seed": i, "bpm": loop.bpm, "tempo_from": loop.tempo_from,
                     "seconds": round(len(loop.audio) / SAMPLE_RATE, 3), **join_measures(loop.audio, loop.bpm),
                     **beat_measures(loop.audio, loop.bpm)})
        if progress:
            progress()
    share = {k: float(np.mean([bool(r[k]) for r in rows])) for k in ("join_spectral", "join_level", "join_spectral_beats",
                                                                      "join_level_beats", "tempo_ok", "octave", "phase_ok")}
    return {"summary": {"prompts": n, "bars": bars, **share}, "rows": rows}


def markdown(r: dict, machine: str, day: str) -> str:
    s = r["summary"]
    return "\n".join([
        f"## Loops — {day}, {machine}", "",
        f"`python -m engine.eval.bench loops --prompts {s['prompts']} --bars {s['bars']}`: one {s['bars']}-bar loop per "
        "prompt (a BPM, a tempo word or none), played twice in a row (three times for librosa's beat tracker).", "",
        "| measure | loops | target |", "| --- | --- | --- |",
        f"| join's spectral change within the 90th percentile of the loop's frames / of its beats | "
        f"{s['join_spectral']:.0%} / {s['join_spectral_beats']:.0%} | 90% |",
        f"| join's level step within the 90th percentile of the loop's frames / of its beats | "
        f"{s['join_level']:.0%} / {s['join_level_beats']:.0%} | 90% |",
        f"| tracked tempo within 2% across the repeats | {s['tempo_ok']:.0%} (octave errors {s['octave']:.0%}) | |",
        f"| beat phase after the joins within 30 ms of before | {s['phase_ok']:.0%} | |", ""])
