"""What a generation is asked for, checked before any model runs: ``Settings`` (seed, duration, sampling), ``Segment``
(a prompt and how long it lasts), ``Request`` (segments, settings, an optional hum and audio to continue), the tempo a
prompt names, and how a clip is cut into the 10 s windows the stages generate.

Every check raises ``GenerationError`` with a message meant for the user.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .controls import ControlError, Controls, parse_key, parse_prompt, unnegated
from .lm.sampling import SamplingParams
from .semantic.keys import key_id

SAMPLE_RATE = 24_000
CODEC_RATE, SEMANTIC_RATE = 50, 25
WINDOW_S, KEEP_S = 10.0, 5.0
# A window that another follows stops TAIL_S short of its 10 s (window_plan): the last frames of a window, run to
# its end, made the bass and the spectral envelope jump at every join of long clips.
TAIL_S = 1.24
MAX_SECONDS = 300.0
BPM_RANGE = (40, 240)  # beat-tracker range; the corpus spans 60-170
# Per-stage temperatures. With a hum, MusicLM's 1.0 / 0.95 / 0.4; text alone samples the first two stages
# cooler, which keeps clips closer to their prompt (with a hum, cooler stages follow it less). Only a window that
# starts from nothing samples cooler: fed its own output, cooler sampling compounds (the bass faded over a minute),
# so a window that continues audio takes MusicLM's.
STAGE_DEFAULTS = {"semantic": 1.0, "coarse": 0.95, "fine": 0.4}
TEXT_ONLY_DEFAULTS = {**STAGE_DEFAULTS, "semantic": 0.85, "coarse": 0.76}
# Semantic drafts ranked for text alone (``Settings.drafts``; see the module docstring).
DRAFTS, MAX_DRAFTS = 8, 16
# Drawing several drafts with no tempo asked for, the semantic stage samples text alone at MusicLM's 1.0 rather than
# 0.85: a wider spread for the ranker to pick from, which matched prompts better. A tempo's beat grid keeps 0.85
# (at 1.0 the ranked clips kept the tempo less often), and so does a single draft.
DRAFT_SEMANTIC = 1.0


class GenerationError(ValueError):
    """Input the generator cannot use; the message is meant for the user."""


# a named key adds this many times its column of the key profile (engine.semantic.keys) to the semantic logits
KEY_BIAS = 2.0
# a named lead instrument (its family) or "no drums" adds this many times its column of the coarse codes' timbre
# profile (engine.lm.timbre) to the coarse logits
TIMBRE_BIAS = 1.0
# "no drums" moves the prompt's MuLan embedding by this many times the profile's no-drums direction
NO_DRUMS_SHIFT = 1.0


def check_bpm(bpm, what: str) -> float:
    if not isinstance(bpm, (int, float, np.number)) or not np.isfinite(bpm) or not BPM_RANGE[0] <= bpm <= BPM_RANGE[1]:
        raise GenerationError(f"{what} must be between {BPM_RANGE[0]} and {BPM_RANGE[1]} BPM, got {bpm!r}")
    return float(bpm)


def prompt_bpm(prompt: str, seed: int = 0) -> float | None:
    """The tempo a prompt names: a BPM ("at 96 bpm", "120 beats per minute"), or one drawn for ``seed`` from the
    range a tempo word stands for ("slow", "up-tempo", "ballad": ``engine.controls``); None when it names none."""
    bpm = parse_prompt(prompt).tempo_bpm(seed) if isinstance(prompt, str) else None
    return None if bpm is None else check_bpm(bpm, f"the tempo in the prompt {prompt[:40]!r}")


def clip_frames(seconds: float) -> int:
    """Codec frames (50 Hz) of a clip of ``seconds``, rounded to an even count: two frames per semantic id."""
    return 2 * round(seconds * CODEC_RATE / 2)


def window_plan(total: int, n_ctx: int = 0, tail_s: float | None = None) -> list[tuple[int, int]]:
    """(context frames, new frames) of each window (50 Hz) for ``total`` new frames after ``n_ctx`` of context.

    A window holds WINDOW_S; the next keeps its last KEEP_S as context. A window that another window follows stops
    ``tail_s`` (default TAIL_S) before its end, so its last frames are never generated. Frame counts stay even (two
    codec frames per semantic id)."""
    win, keep = int(WINDOW_S * CODEC_RATE), int(KEEP_S * CODEC_RATE)
    tail = clip_frames(TAIL_S if tail_s is None else tail_s)
    plan, left = [], total
    while left > 0:
        room = win - n_ctx
        n_new = left if left <= room else max(2, room - tail)
        plan.append((n_ctx, n_new))
        left -= n_new
        n_ctx = min(n_ctx + n_new, keep)
    return plan


def context_audio(audio: np.ndarray) -> torch.Tensor:
    """The last KEEP_S s of a clip to continue, [1, T]: whole semantic frames (1,920 samples) counted from its end."""
    a = torch.from_numpy(np.asarray(audio, dtype=np.float32))[None, -int(KEEP_S * SAMPLE_RATE):]
    return a[:, a.shape[-1] % 1920:]


@dataclass
class Settings:
    duration: float = 10.0
    seed: int = 0
    temperature: float = 1.0  # scales the stages' defaults (TEXT_ONLY_DEFAULTS; STAGE_DEFAULTS with a melody)
    top_k: int = 0  # semantic and coarse stages; 0 = off
    top_p: float = 1.0
    guidance: float = 3.0  # classifier-free guidance of the semantic and coarse stages; 1 = off
    bpm: float | None = None  # tempo to follow; None: the BPM a prompt names ("at 96 bpm"), else the model's choice
    drafts: int = DRAFTS  # semantic drafts to rank, text alone from nothing (1 = keep the first draw)
    key: str | None = None  # "A minor": the music is pulled into it, a hum moved to it
    reference_weight: float = 0.5  # with a reference and a prompt: the reference's share of the style (0-1)

    def validate(self) -> Settings:
        if not isinstance(self.seed, (int, np.integer)) or not 0 <= int(self.seed) < 2 ** 63:
            raise GenerationError(f"the seed must be a whole number from 0 to 2^63 - 1, got {self.seed!r}")
        if not np.isfinite(self.duration) or not 0.5 <= self.duration <= MAX_SECONDS:
            raise GenerationError(f"the duration must be between 0.5 s and {MAX_SECONDS:.0f} s, got {self.duration}")
        if self.bpm is not None:
            check_bpm(self.bpm, "the tempo")
        if not (isinstance(self.reference_weight, (int, float)) and 0 <= self.reference_weight <= 1):
            raise GenerationError(f"the reference weight is a share from 0 to 1, got {self.reference_weight!r}")
        if self.key is not None:
            try:
                parse_key(self.key)
            except ControlError as e:
                raise GenerationError(str(e)) from None
        if not isinstance(self.drafts, (int, np.integer)) or not 1 <= int(self.drafts) <= MAX_DRAFTS:
            raise GenerationError(f"drafts must be a whole number from 1 to {MAX_DRAFTS}, got {self.drafts!r}")
        try:
            for name in STAGE_DEFAULTS:
                for cool, ranked in ((True, False), (True, True), (False, False)):
                    self.params(name, cool, ranked).validate(name)
        except ValueError as e:
            raise GenerationError(str(e)) from None
        return self

    def params(self, stage: str, cool: bool = True, ranked: bool = False) -> SamplingParams:
        """``cool``: text alone from nothing (TEXT_ONLY_DEFAULTS); False: a hum to follow or audio to continue.
        ``ranked``: several drafts to rank and no beat grid to keep (the semantic stage at DRAFT_SEMANTIC)."""
        fine = stage == "fine"
        base = (TEXT_ONLY_DEFAULTS if cool else STAGE_DEFAULTS)[stage]
        if cool and ranked and stage == "semantic":
            base = DRAFT_SEMANTIC
        return SamplingParams(temperature=base * self.temperature, top_k=0 if fine else self.top_k,
                              top_p=1.0 if fine else self.top_p, guidance=1.0 if fine else self.guidance)


@dataclass
class Segment:
    prompt: str
    seconds: float


@dataclass
class Request:
    segments: list[Segment]
    settings: Settings = field(default_factory=Settings)
    melody: np.ndarray | None = None  # 25 Hz melody tokens (engine.melody), or None for text only
    continuation: np.ndarray | None = None  # audio (24 kHz mono) to continue
    reference: np.ndarray | None = None  # audio (24 kHz mono) whose style to follow ("sounds like this")
    # a piece carried on in codes (a jam): its last frames [9, n] as ``Cantus.code_stream`` yielded them, even n,
    # the beat position where the new audio starts, and a MuLan style embedding standing in for the prompt's
    context: torch.Tensor | None = None
    beat: float = 0.0
    style: torch.Tensor | None = None

    def __post_init__(self):
        if self.continuation is not None:
            self.continuation = np.asarray(self.continuation, dtype=np.float32)

    def controls(self, segment: int = 0):
        """What the segment's prompt names, explicit settings winning (``engine.controls.Controls``)."""
        named = parse_prompt(self.segments[segment].prompt) if self.segments else Controls()
        explicit = parse_key(self.settings.key) if self.settings.key else Controls()
        if self.settings.bpm is not None:
            explicit = Controls(tonic=explicit.tonic, mode=explicit.mode, bpm=float(self.settings.bpm))
        return named.merged(explicit)

    def drums_refused(self) -> list[tuple[int, bool]]:
        """(first sample, whether its prompt refuses drums) per segment, in the new audio: where the drum remover
        runs (``engine.demix.without_drums``)."""
        starts = np.cumsum([0.0] + [s.seconds for s in self.segments[:-1]])
        return [(round(t * SAMPLE_RATE), self.controls(i).drums is False) for i, t in enumerate(starts)]

    def key_id(self, segment: int) -> int | None:
        """The key the segment's music is pulled into (``engine.semantic.keys.key_id``), None for the model's
        choice. A hum sets the notes: only an explicit key (which moves the hum) pulls a hummed request."""
        if self.melody is not None and not self.settings.key:
            return None
        c = self.controls(segment)
        return None if c.mode is None and c.tonic is None else key_id(c.tonic, c.mode or "major")

    def prompt(self, segment: int) -> str:
        """The segment's prompt as the stages read it: with an explicit key its prompt does not name, the key in
        words too (so the MuLan prefix agrees with the pull of ``key_id``); drums it refuses left out
        (``engine.controls.unnegated``: the refusal pulls the codes instead)."""
        text = unnegated(self.segments[segment].prompt)
        if self.settings.key and parse_prompt(text).tonic is None:
            text = f"{text.rstrip(' .')}, in {parse_key(self.settings.key).key}"
        return text
