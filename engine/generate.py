"""Text (+ hum) -> music: the MusicLM hierarchy end to end, streamed.

``Cantus.load(assets)`` loads the codec, MuLan, the semantic tokenizer and the three stages, and checks that the
stages were trained on tokens of exactly these models. ``generate_stream`` yields 24 kHz float32 chunks of at most
``chunk_seconds`` as soon as the codec's stateful decoder has them; ``generate`` returns the whole clip (the same
codes, decoded in one batch). Both are deterministic for the same inputs, seed and backend.

Long form: windows of up to 10 s (the stages' training length); each window after the first keeps the last 5 s of
codes and semantic ids as its prompt (MusicLM keeps 15 of 30 s), so the decoder just continues: there is no join to
smooth. A window that another follows stops TAIL_S before its end (``window_plan``). Story mode: a list of (prompt,
seconds); each window takes the prompt in force where its new audio starts. A melody shorter than the music
repeats. Each stage of each window draws from its own generator seeded from (seed, window, stage), so chunking and
interleaving never change the result.

Decoding: a codec whose decoder reads semantic ids (``Codec.conditioned``) gets the ids the semantic stage drew for
every frame, so the melody they carry reaches the audio even where the acoustic codes lose it; ``code_stream`` yields
them as a ninth row under the eight code levels.

Drafts: text alone from nothing (where TEXT_ONLY_DEFAULTS apply) draws ``Settings.drafts`` drafts of the window's
semantic ids in one batch (the semantic stage at DRAFT_SEMANTIC) and keeps the one the draft ranker
(``engine.mulan.ranker``) scores closest to the prompt; the acoustic stages then run once, so streaming starts after
the drafts (MODEL_CARD.md: the stages).

Tempo: a BPM the prompt names ("at 96 bpm"), or ``Settings.bpm``, becomes the semantic stage's beat grid
(``engine.lm.stages.beat_grid``) from the first new frame on.

CLI: ``python -m engine.generate --prompt TEXT [--melody FILE] [--duration S] [--seed N] [--temperature T]
[--top-k K] [--guidance G] [--bpm B] [--continue FILE] --out OUT.wav``; bad input exits with status 2 and one line on stderr.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import weakref
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch

from .audio import AudioError, load_audio, resample
from .codec import Codec
from .codec.model import frame_ids
from .data.captions import parse_caption
from .lm.model import StageLM
from .lm.sampler import StageSampler
from .lm.sampling import SamplingParams
from .lm.stages import BEAT_VOCAB, beat_grid
from .melody import VOCAB as MELODY_VOCAB
from .melody import MelodyError, melody_from_audio
from .mulan import MuLan, PromptError
from .mulan.ranker import DraftRanker
from .semantic import SemanticTokenizer

SAMPLE_RATE = 24_000
CODEC_RATE, SEMANTIC_RATE = 50, 25
WINDOW_S, KEEP_S = 10.0, 5.0
# A window that another follows stops TAIL_S short of its 10 s (window_plan). Run to its end, the bass rose at each
# join by +0.18 log10 more than between joins and the envelope jumped +0.06 more; stopped short, -0.03 and -0.01
# (48 text-only prompts x 60 s, session 32, MODEL_CARD.md).
TAIL_S = 1.24
MAX_SECONDS = 300.0
BPM_RANGE = (40, 240)  # beat-tracker range; the corpus spans 60-170
# Per-stage temperatures. With a hum, MusicLM's 1.0 / 0.95 / 0.4; text alone samples the first two stages
# cooler, which keeps clips closer to their prompt, while with a hum cooler stages follow it less (session 25,
# MODEL_CARD.md: 192 test prompts, MuLan cycle consistency ratio 0.696 -> 0.744; 48 hums followed 0.461 -> 0.442).
# Only a window that starts from nothing samples cooler: one that continues audio (long form after the first 10 s,
# or a continuation) takes MusicLM's. Cooler sampling fed its own output compounds: on 24 text-only prompts x 60 s
# the bass under 390 Hz fell 3.8 dB over the minute and MCC by 10 s part 0.339 -> 0.248; with warm later windows
# the bass holds (+1.7 dB) and the part MCC falls to 0.289, the first 10 s unchanged (session 28, MODEL_CARD.md).
STAGE_DEFAULTS = {"semantic": 1.0, "coarse": 0.95, "fine": 0.4}
TEXT_ONLY_DEFAULTS = {**STAGE_DEFAULTS, "semantic": 0.85, "coarse": 0.76}
# Semantic drafts ranked for text alone (``Settings.drafts``; see the module docstring).
DRAFTS, MAX_DRAFTS = 8, 16
# Drawing several drafts with no tempo asked for, the semantic stage samples text alone at MusicLM's 1.0 rather than
# 0.85: a wider spread for the ranker to pick from. A tempo's beat grid keeps 0.85: at 1.0 the ranked clips kept a
# tempo less (48 prompts with a BPM, within 8%: 43 -> 35) and matched their prompt no better (-0.014 +- 0.016).
# Session 38, MODEL_CARD.md: 8 drafts, 192 text-only test prompts, seeds 0 / 100,000 / 200,000 (the last drawn after
# the split was chosen): MCC ratio 0.788 -> 0.804, paired +0.015 +- 0.007 (+0.021 +- 0.010 on the fresh seed alone).
# One draft keeps 0.85, where it measured better (session 25).
DRAFT_SEMANTIC = 1.0


class GenerationError(ValueError):
    """Input the generator cannot use; the message is meant for the user."""


def check_bpm(bpm, what: str) -> float:
    if not isinstance(bpm, (int, float, np.number)) or not np.isfinite(bpm) or not BPM_RANGE[0] <= bpm <= BPM_RANGE[1]:
        raise GenerationError(f"{what} must be between {BPM_RANGE[0]} and {BPM_RANGE[1]} BPM, got {bpm!r}")
    return float(bpm)


def prompt_bpm(prompt: str) -> float | None:
    """The tempo a prompt names ("at 96 bpm", "120 beats per minute"), or None."""
    bpm = parse_caption(prompt).get("tempo") if isinstance(prompt, str) else None
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


class Cancelled(Exception):
    pass


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

    def validate(self) -> "Settings":
        if not isinstance(self.seed, (int, np.integer)) or not 0 <= int(self.seed) < 2 ** 63:
            raise GenerationError(f"the seed must be a whole number from 0 to 2^63 - 1, got {self.seed!r}")
        if not np.isfinite(self.duration) or not 0.5 <= self.duration <= MAX_SECONDS:
            raise GenerationError(f"the duration must be between 0.5 s and {MAX_SECONDS:.0f} s, got {self.duration}")
        if self.bpm is not None:
            check_bpm(self.bpm, "the tempo")
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

    def __post_init__(self):
        if self.continuation is not None:
            self.continuation = np.asarray(self.continuation, dtype=np.float32)


class Cantus:
    def __init__(self, codec: Codec, mulan: MuLan, semantic: SemanticTokenizer, stages: dict[str, StageLM],
                 codec_backend=None, ranker: DraftRanker | None = None):
        self.codec, self.mulan, self.semantic, self.stages = codec, mulan, semantic, stages
        if ranker is not None and not ranker.fits(mulan.cfg, semantic.cfg.version):
            raise RuntimeError(f"the draft ranker was trained on MuLan {ranker.cfg.mulan} and semantic ids "
                               f"{ranker.cfg.semantic}, not on the loaded {mulan.cfg.token_key} / "
                               f"{semantic.cfg.version}: retrain it (python -m engine.train.mulan_ranker)")
        self.ranker = ranker  # None: one semantic draw per window, whatever Settings.drafts says
        self.decoder = codec_backend or codec
        versions = {"codec": codec.cfg.version, "mulan": mulan.cfg.version, "semantic": semantic.cfg.version}
        for name, st in stages.items():
            trained_on = json.loads(st.cfg.version)
            if trained_on != versions:
                raise RuntimeError(f"the {name} stage was trained on tokens of {trained_on}, but the loaded models are "
                                   f"{versions}: retrain it (python -m engine.train.stage {name})")
        if codec.conditioned and (codec.cfg.decoder_cond_version, codec.cfg.decoder_cond) != (
                semantic.cfg.version, semantic.cardinality):
            raise RuntimeError(f"the codec's decoder reads the semantic ids of tokenizer "
                               f"{codec.cfg.decoder_cond_version!r}, but the loaded one is {semantic.cfg.version!r}")
        assert stages["semantic"].cfg.vocab == semantic.cardinality == stages["coarse"].cfg.cond_vocabs[0]
        assert stages["coarse"].cfg.vocab == stages["fine"].cfg.vocab == codec.cfg.codebook_size
        assert stages["semantic"].cfg.cond_vocabs[:2] in ((MELODY_VOCAB,), (MELODY_VOCAB, BEAT_VOCAB))
        # what a saved clip records of the models that made it (the prompt prior changes a seed's audio too)
        self.versions = {**versions, "stages": {n: s.cfg.d_model for n, s in stages.items()},
                         "prompt_prior": mulan.prior.cfg.version if mulan.prior is not None else None,
                         "draft_ranker": ranker.cfg.version if ranker is not None else None}
        self.text_cache: dict[str, torch.Tensor] = {}
        self.prompt_embeddings: dict[str, torch.Tensor] = {}
        self._ctx_memo = None  # (weak reference to the clip being continued, its context: _context)
        self.torch_threads: int | None = None  # torch's thread count while generating (None: leave it)

    @classmethod
    def load(cls, assets: str | Path = "assets", backend: str = "onnx", threads: int | None = None,
             int8: bool = True) -> "Cantus":
        """``backend`` "onnx" (default: onnxruntime, CUDA when present) or "torch" (eager, the fallback). ``int8``:
        the onnx stages' step graphs run with int8 weights (engine.export.stage_onnx; False = fp32, exact parity)."""
        assets = Path(assets)
        missing = [d for d in ("codec", "mulan", "semantic", "stages") if not (assets / d).is_dir()]
        if missing:
            raise FileNotFoundError(f"{assets} lacks the trained models {missing}; see README (rebuilding the models)")
        codec = Codec.load(assets / "codec")
        stages = {n: StageLM.load(assets / "stages", n) for n in ("semantic", "coarse", "fine")}
        decoder = None
        if backend == "onnx":
            try:
                import onnxruntime  # noqa: F401
            except ImportError:
                print("onnxruntime is not installed: using eager torch", file=sys.stderr)
                backend = "torch"
        if backend == "onnx":
            from .export.cache import exported
            from .export.codec_onnx import OnnxCodec, export_codec
            from .export.stage_onnx import OnnxStage, export_stage
            stages = {n: OnnxStage(m, exported(f"stage-{n}-int8", assets / "stages" / f"{n}.safetensors",
                                               lambda d, m=m: export_stage(m, d)), threads, int8)
                      for n, m in stages.items()}
            decoder = _OnnxDecoder(OnnxCodec(exported("codec", assets / "codec" / "codec.safetensors",
                                                      lambda d: export_codec(codec, d)), threads))
        elif backend != "torch":
            raise ValueError(f"unknown backend {backend!r}: onnx or torch")
        model = cls(codec, MuLan.load(assets / "mulan"), SemanticTokenizer.load(assets / "semantic"), stages, decoder,
                    DraftRanker.load(assets / "mulan"))
        model.backend = backend
        # onnxruntime runs the graphs; torch only samples and embeds small tensors between them. One torch thread
        # is as fast on a quiet machine (10 s generated in 1.26 s vs 1.30 s with 2) and stays fast when another
        # process holds a core (1.3 s vs 9-10 s with 2 threads: OpenMP's barrier waits for the busy core).
        model.torch_threads = 1 if backend == "onnx" else None
        return model

    def warm_up(self) -> float:
        """Loads MiniLM (about 3 s on first use) and runs every graph once with a 1 s generation, so a server's first
        user does not wait for it; returns the seconds it took."""
        t = time.perf_counter()
        self.generate(Request([Segment("warm up", 1.0)], Settings(duration=1.0)))
        return time.perf_counter() - t

    # ------------------------------------------------------------------------------------------ inputs
    def text_tokens(self, prompt: str) -> torch.Tensor:
        """prompt -> [12] MuLan tokens (raises GenerationError on an empty prompt)."""
        try:
            key = " ".join(prompt.split()) if isinstance(prompt, str) else prompt
            if key not in self.text_cache:
                self.text_cache[key] = self.mulan.tokens(self.mulan.embed_prompt([prompt]))[0]
            return self.text_cache[key]
        except PromptError as e:
            raise GenerationError(str(e)) from None

    def text_embedding(self, prompt: str) -> torch.Tensor:
        """prompt -> [dim] MuLan text embedding (what the draft ranker scores drafts against)."""
        key = " ".join(prompt.split())
        if key not in self.prompt_embeddings:
            self.prompt_embeddings[key] = self.mulan.embed_text([prompt])[0]
        return self.prompt_embeddings[key]

    def _pick_draft(self, sem: StageSampler, prompt: str) -> torch.Tensor:
        """The ids [T] of the draft the ranker scores highest against ``prompt`` (the only one, with one)."""
        if sem.B == 1:
            return sem.codes()[0]
        drafts = torch.stack([sem.codes(row=r)[0] for r in range(sem.B)])
        return drafts[int(self.ranker.scores(drafts, self.text_embedding(prompt)).argmax())]

    @staticmethod
    def melody_tokens(audio: np.ndarray, sr: int) -> np.ndarray:
        """A hum / whistle / song -> 25 Hz melody tokens (raises GenerationError when no melody is heard)."""
        try:
            return melody_from_audio(audio, sr).tokens
        except MelodyError as e:
            raise GenerationError(str(e)) from None

    # ------------------------------------------------------------------------------------------ codes
    @torch.inference_mode()
    def code_stream(self, req: Request, progress: Callable[[float, str], None] | None = None,
                    cancel: Callable[[], bool] | None = None, chunk_frames: int = 50,
                    extra_frames: int = 0) -> Iterator[torch.Tensor]:
        """Yields [9, n] for consecutive new frames (50 Hz), chunk by chunk: the 8 code levels, then the semantic id
        of each frame (``extra_frames`` beyond the duration: the decoder's delay, when continuing)."""
        s = req.settings.validate()
        if not req.segments:
            raise GenerationError("give a prompt (or a story: a list of prompts with seconds)")
        bounds = np.cumsum([seg.seconds for seg in req.segments])
        prompts = [self.text_tokens(seg.prompt) for seg in req.segments]
        bpms = [s.bpm if s.bpm is not None else prompt_bpm(seg.prompt) for seg in req.segments]
        null = torch.full((12,), self.stages["semantic"].cfg.prefix_vocab, dtype=torch.long)
        total = clip_frames(min(s.duration, bounds[-1])) + extra_frames
        total += total % 2  # even: two codec frames per semantic id
        melody = None
        if req.melody is not None and len(req.melody):
            melody = torch.as_tensor(np.resize(np.asarray(req.melody, dtype=np.int64), total // 2 + 1))
        ctx_codes = torch.zeros(8, 0, dtype=torch.long)
        ctx_sem = torch.zeros(0, dtype=torch.long)
        if req.continuation is not None:
            ctx = self._context(req.continuation)
            ctx_codes, ctx_sem = ctx[:8], ctx[8, ::2]
        produced = 0
        plan = window_plan(total, ctx_codes.shape[-1])
        for w, (n_ctx, n_new) in enumerate(plan):
            W = n_ctx + n_new
            t_new = produced / CODEC_RATE  # seconds into the piece where this window's new audio starts
            seg_i = min(int(np.searchsorted(bounds, t_new, side="right")), len(prompts) - 1)
            prefix = prompts[seg_i]
            gens = [torch.Generator().manual_seed(int(s.seed) * 1009 + w * 31 + k) for k in range(3)]
            guided = s.guidance != 1.0
            cool = melody is None and n_ctx == 0  # the sampling temperatures: see TEXT_ONLY_DEFAULTS
            pre = torch.stack([prefix, null]) if guided else prefix[None]
            # stage 1: semantic ids for the window (melody and beat grid aligned by absolute time; both start with
            # the new audio: a continuation's context has neither)
            st1 = self.stages["semantic"]
            first = (produced - n_ctx) // 2  # piece frame (25 Hz) of the window's first frame
            j0 = max(0, -first)
            absent = torch.tensor(st1.cfg.cond_vocabs)[None, :, None]
            cond1 = absent.expand(1, -1, W // 2).clone()
            if melody is not None:
                cond1[0, 0, j0:] = melody[first + j0:first + W // 2][: W // 2 - j0]
            if len(st1.cfg.cond_vocabs) > 1 and bpms[seg_i] is not None:
                cond1[0, 1, j0:] = beat_grid(bpms[seg_i], W // 2 - j0, first + j0)
            melody_row = cond1[:, :1]  # [1, 1, W // 2]: the hum (or 'absent') where the window's ids are
            if guided:
                cond1 = torch.cat([cond1, _uncond(st1, cond1)])
            n_drafts = int(s.drafts) if cool and self.ranker is not None else 1
            sem_gens = gens[:1] + [torch.Generator().manual_seed(int(s.seed) * 1009 + w * 31 + 1_000_003 * d)
                                   for d in range(1, n_drafts)]
            sem = StageSampler(st1, pre.repeat_interleave(n_drafts, 0), cond1.repeat_interleave(n_drafts, 0), W // 2,
                               s.params("semantic", cool, n_drafts > 1 and bpms[seg_i] is None), sem_gens,
                               ctx_sem[None])
            while not sem.done:
                _check(cancel)
                sem.advance()
                if progress and sem.s % 25 == 0:
                    progress((produced + n_new * 0.2 * sem.s / sem.S) / total,
                             "semantic tokens" if n_drafts == 1 else f"semantic tokens, {n_drafts} drafts")
            sem_ids = self._pick_draft(sem, req.segments[seg_i].prompt)  # [W // 2]
            sem_frames = frame_ids(sem_ids[None], W, self.semantic.cardinality)  # [1, W]
            # stages 2 and 3 interleaved: fine step s needs coarse frames up to s + 2
            cond2 = sem_ids[None, None]
            if len(self.stages["coarse"].cfg.cond_vocabs) > 1:  # a coarse stage that reads the melody as well
                cond2 = torch.cat([cond2, melody_row], 1)
            if guided:
                cond2 = torch.cat([cond2, _uncond(self.stages["coarse"], cond2)])
            coarse = StageSampler(self.stages["coarse"], pre, cond2, W, s.params("coarse", cool), gens[1],
                                  ctx_codes[:4])
            fine_cond = torch.full((1, 4, W), self.codec.cfg.codebook_size, dtype=torch.long)
            fine_cond[0, :, :n_ctx] = ctx_codes[:4]
            fine = StageSampler(self.stages["fine"], prefix[None], fine_cond, W, s.params("fine", cool), gens[2],
                                ctx_codes[4:8], progressive=True)
            emitted = n_ctx
            while emitted < W:
                _check(cancel)
                need = min(W, fine.s + 3)
                while coarse.frames_done < need:
                    before = coarse.frames_done
                    coarse.advance()
                    if coarse.frames_done > before:
                        fine.cond_ids[0, :, before:coarse.frames_done] = coarse.codes(before, coarse.frames_done)
                fine.advance()
                ready = fine.frames_done
                if ready - emitted >= chunk_frames or (ready == W and ready > emitted):
                    codes = torch.cat([coarse.codes(emitted, ready), fine.codes(emitted, ready),
                                       sem_frames[:, emitted:ready]])
                    produced += ready - emitted
                    emitted = ready
                    if progress:
                        progress(produced / total, "acoustic tokens")
                    yield codes
            if w + 1 < len(plan):  # the next window's context: the last frames of this one, as many as the plan says
                keep = plan[w + 1][0]
                ctx_codes = torch.cat([coarse.codes(W - keep, W), fine.codes(W - keep, W)])
                ctx_sem = sem_ids[(W - keep) // 2:]

    # ------------------------------------------------------------------------------------------ audio
    def generate_stream(self, req: Request, progress=None, cancel=None, chunk_seconds: float = 1.0) -> Iterator[np.ndarray]:
        """Yields float32 mono 24 kHz chunks of at most ``chunk_seconds`` (>= 0.02 s) as they are decoded."""
        chunk = max(1, int(chunk_seconds * CODEC_RATE))
        with _torch_threads(self.torch_threads):
            yield from self.decode_stream(self.code_stream(req, progress, cancel, chunk, self._lead(req)), req)

    def generate(self, req: Request, progress=None, cancel=None) -> np.ndarray:
        """The whole clip: the same codes as the stream, decoded in one call (float32 mono 24 kHz)."""
        with _torch_threads(self.torch_threads):
            codes = torch.cat(list(self.code_stream(req, progress, cancel, 10 ** 9, self._lead(req))), -1)
            return np.concatenate(list(self.decode_stream(iter([codes]), req)))

    @torch.inference_mode()
    def _context(self, clip: np.ndarray) -> torch.Tensor:
        """A continuation's context (``_context_audio``) as [9, n], the layout ``code_stream`` yields: its codes and
        each frame's semantic id, encoded once per clip. The stages start from them, the decoder warms up on them."""
        if self._ctx_memo is None or self._ctx_memo[0]() is not clip:
            a = _context_audio(clip)  # whole semantic frames, so n = 2 x the ids
            ctx = torch.zeros(9, 0, dtype=torch.long)
            if a.shape[-1]:
                codes = self.codec.encode(a)[0, :, : a.shape[-1] // 480]
                ctx = torch.cat([codes, frame_ids(self.semantic.encode(a), codes.shape[-1], self.semantic.cardinality)])
            self._ctx_memo = (weakref.ref(clip), ctx)
        return self._ctx_memo[1]

    def _lead(self, req: Request) -> int:
        """Frames to generate beyond the duration when continuing: they cover the decoder's delay."""
        return -(-self.codec.delay // 480) if req.continuation is not None else 0

    def decode_stream(self, codes: Iterator[torch.Tensor], req: Request) -> Iterator[np.ndarray]:
        """Codes of new frames -> audio chunks. A continuation warms the decoder up on its context, which ends
        exactly where the user's clip ends; the decoder's output lags its codes by ``codec.delay`` samples (60 ms),
        whose first part is the context's own end: it is dropped, and the extra frames ``_lead`` asked for fill the
        length, so the original followed by the extension joins without repeating a note onset."""
        state, skip, left = None, 0, None
        if req.continuation is not None:
            ctx = self._context(req.continuation)
            if ctx.shape[-1]:
                _, state = self.decoder.decode_step(ctx[None, :8], None, ctx[8:9])
                skip = self.codec.delay
            left = clip_frames(min(req.settings.duration, sum(s.seconds for s in req.segments))) * 480
        for c in codes:  # [8, n] codes, or [9, n]: codes and each frame's semantic id (code_stream)
            ids = c[8:9] if c.shape[0] == 9 else None
            audio, state = self.decoder.decode_step(c[None, :8], state, ids)
            audio = np.asarray(audio[0], dtype=np.float32)
            cut = min(skip, len(audio))
            audio, skip = audio[cut:], skip - cut
            if left is not None:
                audio, left = audio[:left], left - min(left, len(audio))
            if len(audio):
                yield audio


@contextmanager
def _torch_threads(n: int | None):
    """torch's intra-op thread count set to ``n`` for the block (unchanged when None), then restored."""
    old = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _context_audio(audio: np.ndarray) -> torch.Tensor:
    """The last KEEP_S seconds of a clip to continue, [1, T], T whole semantic frames (1,920 samples) counted back
    from the clip's end, so the continuation starts exactly where the clip stops."""
    a = torch.from_numpy(np.asarray(audio, dtype=np.float32))[None, -int(KEEP_S * SAMPLE_RATE):]
    return a[:, a.shape[-1] % 1920:]


class _OnnxDecoder:
    """Adapts OnnxCodec's numpy streaming decoder to the torch codes the generator produces."""

    def __init__(self, onnx_codec):
        self.onnx = onnx_codec

    def decode_step(self, codes: torch.Tensor, state=None, cond: torch.Tensor | None = None):
        audio, state = self.onnx.decode_step(codes.numpy().astype(np.int64), state,
                                             None if cond is None else cond.numpy().astype(np.int64))
        return torch.from_numpy(np.asarray(audio)), state


def _uncond(stage, cond: torch.Tensor) -> torch.Tensor:
    """The unconditional branch's aligned streams: 'absent' when the stage was trained that way (cond_dropout),
    else the same streams (guidance then acts on the prefix alone)."""
    if not stage.cfg.cond_dropout:
        return cond
    return torch.tensor(stage.cfg.cond_vocabs)[None, :, None].expand_as(cond).clone()


def _check(cancel) -> None:
    if cancel is not None and cancel():
        raise Cancelled("generation was stopped")


# ---------------------------------------------------------------------------------------------------- CLI
def build_request(prompt: str | Sequence[Segment], settings: Settings, melody_file: str | None = None,
                  continue_file: str | None = None) -> Request:
    segments = list(prompt) if not isinstance(prompt, str) else [Segment(prompt, settings.duration)]
    melody = None
    if melody_file:
        audio, sr = _read(melody_file)
        melody = Cantus.melody_tokens(audio, sr)
    cont = None
    if continue_file:
        audio, sr = _read(continue_file)
        cont = resample(audio, sr, SAMPLE_RATE) if sr != SAMPLE_RATE else audio
    return Request(segments, settings, melody, cont)


def _read(path: str) -> tuple[np.ndarray, int]:
    import soundfile as sf
    try:
        info = sf.info(path)
        sr = int(info.samplerate)
    except Exception:
        sr = SAMPLE_RATE
    try:
        return load_audio(path, sr, max_seconds=600), sr
    except AudioError as e:
        raise GenerationError(str(e)) from None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m engine.generate", description="Text (+ hum) to music.")
    ap.add_argument("--prompt", required=True)
    ap.add_argument("--melody", help="a hummed, whistled or sung recording to follow")
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--temperature", type=float, default=1.0,
                    help="scales the stages' temperatures (text alone %s, the semantic stage at %g when drafting "
                    "with no tempo; with a melody or continuing audio %s)"
                    % (" / ".join(f"{t:g}" for t in TEXT_ONLY_DEFAULTS.values()), DRAFT_SEMANTIC,
                       " / ".join(f"{t:g}" for t in STAGE_DEFAULTS.values())))
    ap.add_argument("--top-k", type=int, default=0)
    ap.add_argument("--guidance", type=float, default=3.0)
    ap.add_argument("--bpm", type=float, default=None, help="tempo to follow (default: a BPM the prompt names)")
    ap.add_argument("--drafts", type=int, default=DRAFTS,
                    help="semantic drafts ranked against the prompt, text alone (1: the first draw)")
    ap.add_argument("--continue", dest="cont", help="an audio clip to continue")
    ap.add_argument("--assets", default="assets")
    ap.add_argument("--backend", choices=["onnx", "torch"], default="onnx")
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    try:
        settings = Settings(a.duration, a.seed, a.temperature, a.top_k, 1.0, a.guidance, a.bpm, a.drafts).validate()
        req = build_request(a.prompt, settings, a.melody, a.cont)
        model = Cantus.load(a.assets, a.backend)
        for seg in req.segments:
            model.text_tokens(seg.prompt)  # a bad prompt fails before the progress bar starts
        from tqdm import tqdm
        bar = tqdm(total=100, desc="generating", unit="%")

        def progress(f, what):
            bar.n = int(100 * f)
            bar.set_postfix_str(what)
            bar.refresh()
        audio = model.generate(req, progress)
        bar.close()
    except (GenerationError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    import soundfile as sf
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    sf.write(a.out, audio, SAMPLE_RATE, subtype="PCM_16")
    print(json.dumps({"out": a.out, "seconds": round(len(audio) / SAMPLE_RATE, 2), **asdict(settings)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
