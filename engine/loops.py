"""Seamless loops: a clip exactly N bars long that plays on without a seam when repeated.

A loop needs a tempo. A named one (``Settings.bpm``, or the prompt's BPM or tempo word) is what the semantic stage's
beat grid keeps, with the clip's first frame on a beat; without one, the prompt's own tempo is found first (a short
draft of it, through librosa's beat tracker) and then kept the same way, and the loop says which it used. The
music is generated ``TAIL_BEATS`` beats past its N bars, so it runs on over the end as it would into the next bar;
that run-on is crossfaded (equal power) into the loop's first beat, and the end then flows into the start exactly as
it flowed into the bar that followed. The loop starts on the first downbeat as heard: the codec decoder's delay
after the first codes (their grid's first beat). Bars are of ``beats_per_bar`` beats (4 unless asked).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .analysis import detect_tempo, felt_bpm
from .settings import MAX_SECONDS, SAMPLE_RATE, GenerationError, Request, Segment, check_bpm, prompt_bpm

MAX_BARS = 64
TAIL_BEATS = 1.0  # generated past the loop's end and crossfaded into its start
DRAFT_S = 6.0  # a draft long enough for the beat tracker to find the prompt's own tempo
FELT_BPM = (60, 180)  # a detected tempo outside it is the tracker's half or double time


@dataclass
class Loop:
    audio: np.ndarray  # float32 mono 24 kHz, exactly ``bars`` bars
    bpm: float
    bars: int
    beats_per_bar: int
    tempo_from: str  # "asked" (a BPM or tempo word) or "detected" (the prompt's own tempo, found in a draft)

    def describe(self) -> str:
        how = "" if self.tempo_from == "asked" else " (no tempo named: the prompt's own, detected)"
        return f"{self.bars}-bar loop at {self.bpm:g} BPM{how}, {len(self.audio) / SAMPLE_RATE:.2f} s"


def loop_samples(bars: int, bpm: float, beats_per_bar: int = 4) -> int:
    return int(round(bars * beats_per_bar * 60.0 / bpm * SAMPLE_RATE))


def check_loop(bars, beats_per_bar=4, bpm: float | None = None) -> None:
    """Refuses a loop that cannot be made (with ``bpm``: also one longer than a clip may be)."""
    if not isinstance(bars, (int, np.integer)) or not 1 <= bars <= MAX_BARS:
        raise GenerationError(f"a loop is a whole number of bars from 1 to {MAX_BARS}, got {bars!r}")
    if not isinstance(beats_per_bar, (int, np.integer)) or not 2 <= beats_per_bar <= 12:
        raise GenerationError(f"beats per bar is a whole number from 2 to 12, got {beats_per_bar!r}")
    if bpm is not None and (loop_samples(bars, bpm, beats_per_bar) / SAMPLE_RATE + 2 * 60 / bpm) > MAX_SECONDS:
        raise GenerationError(f"{bars} bars at {bpm:g} BPM last {loop_samples(bars, bpm, beats_per_bar) / SAMPLE_RATE:.0f} s: "
                              f"a loop is at most {MAX_SECONDS / 60:.0f} minutes")


def loop_bpm(req: Request) -> float | None:
    """The tempo a loop of ``req`` is asked at: ``Settings.bpm``, else the prompt's (None: the prompt's own)."""
    s = req.settings
    return s.bpm if s.bpm is not None else prompt_bpm(req.segments[0].prompt, int(s.seed)) if req.segments else None


def seamless(audio: np.ndarray, length: int, fade: int) -> np.ndarray:
    """The first ``length`` samples of ``audio`` with the ``fade`` samples that follow them crossfaded (equal power)
    into its start: played in a cycle, sample ``length - 1`` is followed by what followed it in ``audio``."""
    if len(audio) < length + fade:
        raise ValueError(f"{len(audio)} samples do not hold a loop of {length} and a crossfade of {fade}")
    out = np.array(audio[:length], dtype=np.float32)
    t = (np.arange(fade) + 0.5) / fade
    out[:fade] = out[:fade] * np.sin(0.5 * np.pi * t) + audio[length:length + fade] * np.cos(0.5 * np.pi * t)
    return out


@dataclass
class LoopPlan:
    """How a loop is made: generate ``request`` (streamed, if you like), then ``finish`` the audio into the loop."""
    request: Request
    bpm: float
    tempo_from: str
    bars: int
    beats_per_bar: int
    start: int  # samples: where the first downbeat is heard
    length: int
    fade: int

    def finish(self, audio: np.ndarray) -> Loop:
        return Loop(seamless(audio[self.start:], self.length, self.fade), self.bpm, self.bars, self.beats_per_bar,
                    self.tempo_from)


def plan_loop(model, req: Request, bars: int, beats_per_bar: int = 4, cancel=None) -> LoopPlan:
    """The plan for a loop of ``req``'s prompt (one prompt; its duration is ignored). With no tempo asked, a short
    draft of the prompt is generated here to find its own."""
    s = req.settings.validate()
    if len(req.segments) != 1:
        raise GenerationError("a loop is made of one prompt, not a story")
    bpm, tempo_from = loop_bpm(req), "asked"
    check_loop(bars, beats_per_bar, bpm)
    if bpm is None:  # the prompt's own tempo, found in a short draft of it, then kept by the beat grid
        draft = replace(req, segments=[Segment(req.segments[0].prompt, DRAFT_S)],
                        settings=replace(s, duration=DRAFT_S))
        bpm, tempo_from = felt_bpm(detect_tempo(model.generate(draft, None, cancel)), *FELT_BPM), "detected"
        bpm = check_bpm(round(bpm, 1), "the tempo found in the prompt's draft")
        check_loop(bars, beats_per_bar, bpm)
    length = loop_samples(bars, bpm, beats_per_bar)
    fade = int(round(TAIL_BEATS * 60.0 / bpm * SAMPLE_RATE))
    start = int(getattr(model.codec, "delay", 0))  # the decoder's output lags the codes (and their beat grid)
    seconds = (start + length + fade) / SAMPLE_RATE + 0.1
    run = replace(req, segments=[Segment(req.segments[0].prompt, seconds)],
                  settings=replace(s, duration=seconds, bpm=float(bpm)))
    return LoopPlan(run, float(bpm), tempo_from, int(bars), int(beats_per_bar), start, length, fade)


def make_loop(model, req: Request, bars: int, beats_per_bar: int = 4, progress=None, cancel=None) -> Loop:
    """Generate ``req``'s prompt as a loop of ``bars`` bars."""
    plan = plan_loop(model, req, bars, beats_per_bar, cancel)
    return plan.finish(model.generate(plan.request, progress, cancel))
