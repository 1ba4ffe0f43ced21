"""Text (+ hum) -> music: the MusicLM hierarchy end to end, streamed.

``Cantus.load(assets)`` loads the codec, MuLan, the semantic tokenizer and the three stages, and checks that the
stages were trained on tokens of exactly these models. ``generate_stream`` yields 24 kHz float32 chunks of at most
``chunk_seconds`` as soon as the codec's stateful decoder has them; ``generate`` returns the whole clip (the same
codes, decoded in one batch). Both are deterministic for the same inputs, seed and backend.

Long form: windows of up to 10 s (the stages' training length); each after the first keeps the last 5 s of codes
and semantic ids as its prompt (MusicLM keeps 15 of 30 s), so the decoder just continues; one that another follows
stops TAIL_S short (``window_plan``). Story mode: each window takes the prompt in force where its new audio starts.
A melody shorter than the music repeats. Each stage of each window draws from its own generator seeded from (seed,
window, stage), so chunking and interleaving never change the result.

Decoding: the codec's decoder gets the semantic ids drawn (``code_stream``'s ninth row), so their melody reaches the
audio. Drafts: text alone from nothing draws ``Settings.drafts`` drafts of a window's semantic ids in one batch (at
DRAFT_SEMANTIC) and keeps the one the draft ranker (``engine.mulan.ranker``) scores closest to the prompt.

Controls: a BPM the prompt names (or a tempo word's, or ``Settings.bpm``) is the semantic stage's beat grid; a named
key pulls the semantic ids drawn into it (``KEY_BIAS`` x its column of ``engine.semantic.keys``, added to the
logits; a reference's own tempo and key stand in for those the words do not name, its key not over a hum's notes),
a named lead or "no drums" the coarse codes (``TIMBRE_BIAS``, ``engine.lm.timbre``), and "no drums" moves the
prompt's MuLan embedding away from drums (``NO_DRUMS_SHIFT``); the drum remover takes out what drums are left.
"""
from __future__ import annotations

import importlib.util
import json
import sys
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from .audio import rechunk
from .codec import Codec
from .codec.model import frame_ids
from .controls import parse_key, transpose_tokens
from .demix import DrumRemover, without_drums
from .lm.model import StageLM
from .lm.sampler import StageSampler
from .lm.stages import BEAT_VOCAB, beat_grid
from .lm.timbre import load_timbre_profile
from .melody import VOCAB as MELODY_VOCAB
from .melody import MelodyError, melody_from_audio
from .mulan import MuLan, PromptError
from .mulan.ranker import DraftRanker
from .reference import check_reference, style_embedding, tempo_and_key
from .semantic import SemanticTokenizer
from .settings import (
    CODEC_RATE,
    KEY_BIAS,
    NO_DRUMS_SHIFT,
    SAMPLE_RATE,
    TIMBRE_BIAS,
    GenerationError,
    Request,
    Segment,
    Settings,
    clip_frames,
    context_audio,
    prompt_bpm,
    window_plan,
)


class Cancelled(Exception):
    """Generation was stopped by the caller's cancel hook."""


class Cantus:
    def __init__(self, codec: Codec, mulan: MuLan, semantic: SemanticTokenizer, stages: dict[str, StageLM],
                 codec_backend=None, ranker: DraftRanker | None = None, drum_remover: DrumRemover | None = None):
        self.codec, self.mulan, self.semantic, self.stages = codec, mulan, semantic, stages
        if ranker is not None and not ranker.fits(mulan.cfg, semantic.cfg.version):
            raise RuntimeError(f"the draft ranker was trained on MuLan {ranker.cfg.mulan} and semantic ids "
                               f"{ranker.cfg.semantic}, not on the loaded {mulan.cfg.token_key} / "
                               f"{semantic.cfg.version}: retrain it (python -m engine.train.mulan ranker)")
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
                         "draft_ranker": ranker.cfg.version if ranker is not None else None,
                         "drum_remover": drum_remover.cfg.version if drum_remover is not None else None}
        self.text_cache: dict[tuple, torch.Tensor] = {}
        self.prompt_embeddings: dict[str, torch.Tensor] = {}
        self.timbre = None  # the coarse codes' timbre profile (engine.lm.timbre), when the assets have one
        self._ctx_memo = self._ref_memo = None  # (weak reference to a continued clip / a style reference, what it gives)
        self.torch_threads: int | None = None  # torch's thread count while generating (None: leave it)
        self.drum_remover = drum_remover  # run on the audio of requests that refuse drums (engine.demix)

    @classmethod
    def load(cls, assets: str | Path = "assets", backend: str = "onnx", threads: int | None = None,
             int8: bool = True) -> Cantus:
        """``backend`` "onnx" (default: onnxruntime, CUDA when present) or "torch" (eager, the fallback). ``int8``:
        the onnx stages' step graphs run with int8 weights (engine.export.stage_onnx; False = fp32, exact parity)."""
        assets = Path(assets)
        missing = [d for d in ("codec", "mulan", "semantic", "stages") if not (assets / d).is_dir()]
        if missing:
            raise FileNotFoundError(f"{assets} lacks the trained models {missing}; see README (rebuilding the models)")
        codec = Codec.load(assets / "codec")
        stages = {n: StageLM.load(assets / "stages", n) for n in ("semantic", "coarse", "fine")}
        decoder = None
        if backend == "onnx" and importlib.util.find_spec("onnxruntime") is None:
            print("onnxruntime is not installed: using eager torch", file=sys.stderr)
            backend = "torch"
        if backend == "onnx":
            from .export.cache import exported
            from .export.codec_onnx import OnnxCodec, TorchCodesDecoder, export_codec
            from .export.stage_onnx import OnnxStage, export_stage
            stages = {n: OnnxStage(m, exported(f"stage-{n}-int8", assets / "stages" / f"{n}.safetensors",
                                               lambda d, m=m: export_stage(m, d)), threads, int8)
                      for n, m in stages.items()}
            decoder = TorchCodesDecoder(OnnxCodec(exported("codec", assets / "codec" / "codec.safetensors",
                                                      lambda d: export_codec(codec, d)), threads))
        elif backend != "torch":
            raise ValueError(f"unknown backend {backend!r}: onnx or torch")
        model = cls(codec, MuLan.load(assets / "mulan"), SemanticTokenizer.load(assets / "semantic"), stages, decoder,
                    DraftRanker.load(assets / "mulan"), DrumRemover.load_if_present(assets / "demix", backend, threads))
        model.backend = backend
        model.timbre = load_timbre_profile(assets / "stages", codec.cfg.version, model.mulan.cfg.version)
        # onnxruntime runs the graphs, torch only samples between them: one torch thread is as fast on a quiet machine
        # and stays fast when another process holds a core (1.3 s vs 9-10 s per 10 s: OpenMP's barrier waits).
        model.torch_threads = 1 if backend == "onnx" else None
        return model

    def warm_up(self) -> float:
        """Loads MiniLM (~3 s) and runs every graph once (1 s generated) so a first user does not wait; -> seconds."""
        t = time.perf_counter()
        self.generate(Request([Segment("warm up", 1.0)], Settings(duration=1.0)))
        return time.perf_counter() - t

    # ------------------------------------------------------------------------------------------ inputs
    def text_tokens(self, prompt: str, drums: bool | None = None) -> torch.Tensor:
        """prompt -> [12] MuLan tokens (GenerationError on an empty prompt); ``drums`` False: away from drums."""
        try:
            key = (" ".join(prompt.split()) if isinstance(prompt, str) else prompt, drums is False)
            if key not in self.text_cache:
                emb = self.mulan.embed_prompt([prompt])[0]
                emb = emb if self.timbre is None else self.timbre.shifted(emb, drums, NO_DRUMS_SHIFT)
                self.text_cache[key] = self.mulan.tokens(emb[None])[0]
            return self.text_cache[key]
        except PromptError as e:
            raise GenerationError(str(e)) from None

    def style_tokens(self, req: Request, segment: int) -> torch.Tensor:
        """The segment's [12] prefix tokens: its prompt's, or with a reference (``engine.reference``) the
        reference's style, alone when the prompt is empty, else blended with it by ``reference_weight``."""
        if req.style is not None:
            return self.mulan.tokens(req.style[None])[0]
        text = req.prompt(segment)
        if req.reference is None:
            return self.text_tokens(text, req.controls(segment).drums)
        if self._ref_memo is None or self._ref_memo[0]() is not req.reference:
            ref = check_reference(req.reference)
            self._ref_memo = (weakref.ref(req.reference), self.mulan.embed_audio(ref, SAMPLE_RATE), tempo_and_key(ref))
        prompt = None
        if text.strip():
            try:
                prompt = self.mulan.embed_prompt([text])[0]
            except PromptError as e:
                raise GenerationError(str(e)) from None
        return self.mulan.tokens(style_embedding(self._ref_memo[1], prompt, req.settings.reference_weight)[None])[0]

    def text_embedding(self, prompt: str) -> torch.Tensor:
        """prompt -> [dim] MuLan text embedding (what the draft ranker scores drafts against)."""
        key = " ".join(prompt.split())
        if key not in self.prompt_embeddings:
            self.prompt_embeddings[key] = self.mulan.embed_text([prompt])[0]
        return self.prompt_embeddings[key]

    def _pick_draft(self, sem: StageSampler, req: Request, segment: int) -> torch.Tensor:
        """The ids [T] of the draft the ranker scores highest against the segment's words (the only one, with one)."""
        if sem.B == 1:
            return sem.codes()[0]
        drafts = torch.stack([sem.codes(row=r)[0] for r in range(sem.B)])
        return drafts[int(self.ranker.scores(drafts, self.text_embedding(req.prompt(segment))).argmax())]

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
                    cancel: Callable[[], bool] | None = None, chunk_frames: int = 50, extra_frames: int = 0,
                    head_frames: int = 0) -> Iterator[torch.Tensor]:
        """Yields [9, n] per chunk of new frames (50 Hz): the 8 code levels, then each frame's semantic id; with
        ``extra_frames`` past the end (the decoder's delay, if continuing), the first ``head_frames`` longer (what the
        decoding drops: the decoder's delay, the drum remover's look-ahead; the first piece then leaves at once)."""
        s = req.settings.validate()
        if not req.segments:
            raise GenerationError("give a prompt (or a story: a list of prompts with seconds)")
        bounds = np.cumsum([seg.seconds for seg in req.segments])
        prompts = [self.style_tokens(req, i) for i in range(len(req.segments))]
        ref_bpm, ref_key = self._ref_memo[2] if req.reference is not None else (None, None)
        bpms = [s.bpm if s.bpm is not None else prompt_bpm(seg.prompt, int(s.seed)) or ref_bpm for seg in req.segments]
        keys = [ref_key if k is None and req.melody is None else k for k in map(req.key_id, range(len(req.segments)))]
        timbre = [None if self.timbre is None else self.timbre.bias(c.lead, c.drums, 4, TIMBRE_BIAS)
                  for c in map(req.controls, range(len(req.segments)))]  # a named lead's / no drums' pull
        null = torch.full((12,), self.stages["semantic"].cfg.prefix_vocab, dtype=torch.long)
        total = clip_frames(min(s.duration, bounds[-1])) + extra_frames
        total += total % 2  # even: two codec frames per semantic id
        melody = None
        if req.melody is not None and len(req.melody):
            tokens = np.asarray(req.melody, dtype=np.int64)
            if s.key:  # the hum sets the notes; an explicit key moves them
                key = parse_key(s.key)
                tokens = transpose_tokens(tokens, key.tonic, key.mode)[0]
            melody = torch.as_tensor(np.resize(tokens, total // 2 + 1))
        ctx_codes, ctx_sem = torch.zeros(8, 0, dtype=torch.long), torch.zeros(0, dtype=torch.long)
        if req.continuation is not None or req.context is not None:
            ctx = self._context(req.continuation) if req.context is None else req.context
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
            b0 = 0 if req.context is not None else j0  # carried codes were made on the same beat
            if len(st1.cfg.cond_vocabs) > 1 and bpms[seg_i] is not None:
                cond1[0, 1, b0:] = beat_grid(bpms[seg_i], W // 2 - b0, first + b0, req.beat)
            melody_row = cond1[:, :1]  # [1, 1, W // 2]: the hum (or 'absent') where the window's ids are
            if guided:
                cond1 = torch.cat([cond1, _uncond(st1, cond1)])
            # drafts are ranked against words; ranking them against a reference's style bought nothing measurable
            n_drafts = int(s.drafts) if cool and self.ranker is not None and req.prompt(seg_i).strip() else 1
            sem_gens = gens[:1] + [torch.Generator().manual_seed(int(s.seed) * 1009 + w * 31 + 1_000_003 * d)
                                   for d in range(1, n_drafts)]
            p1 = s.params("semantic", cool, n_drafts > 1 and bpms[seg_i] is None)
            if keys[seg_i] is not None and self.semantic.key_profile is not None:  # pull the ids into the key
                p1.bias = KEY_BIAS * self.semantic.key_profile[:, keys[seg_i]]
            sem = StageSampler(st1, pre.repeat_interleave(n_drafts, 0), cond1.repeat_interleave(n_drafts, 0), W // 2,
                               p1, sem_gens, ctx_sem[None])
            while not sem.done:
                _check(cancel)
                sem.advance()
                if progress and sem.s % 25 == 0:
                    progress((produced + n_new * 0.2 * sem.s / sem.S) / total,
                             "semantic tokens" if n_drafts == 1 else f"semantic tokens, {n_drafts} drafts")
            sem_ids = self._pick_draft(sem, req, seg_i)  # [W // 2]
            sem_frames = frame_ids(sem_ids[None], W, self.semantic.cardinality)  # [1, W]
            # stages 2 and 3 interleaved: fine step s needs coarse frames up to s + 2
            cond2 = sem_ids[None, None]
            if len(self.stages["coarse"].cfg.cond_vocabs) > 1:  # a coarse stage that reads the melody as well
                cond2 = torch.cat([cond2, melody_row], 1)
            if guided:
                cond2 = torch.cat([cond2, _uncond(self.stages["coarse"], cond2)])
            p2 = s.params("coarse", cool)
            p2.bias = timbre[seg_i]
            coarse = StageSampler(self.stages["coarse"], pre, cond2, W, p2, gens[1], ctx_codes[:4])
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
                if ready - emitted >= chunk_frames + (head_frames if produced == 0 else 0) or ready == W > emitted:
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
        removes = self.drum_remover is not None and req.drums_refused()[0][1]
        head = self._lead(req) + (-(-self.drum_remover.lookahead // 480) if removes else 0)
        with _torch_threads(self.torch_threads):
            yield from self.decode_stream(self.code_stream(req, progress, cancel, chunk, self._lead(req), head), req,
                                          chunk * 480)

    def threads(self):
        """A context in which torch runs with the generator's thread count (``torch_threads``)."""
        return _torch_threads(self.torch_threads)

    def generate(self, req: Request, progress=None, cancel=None) -> np.ndarray:
        """The whole clip: the same codes as the stream, decoded in one call (float32 mono 24 kHz)."""
        with _torch_threads(self.torch_threads):
            codes = torch.cat(list(self.code_stream(req, progress, cancel, 10 ** 9, self._lead(req))), -1)
            return np.concatenate(list(self.decode_stream(iter([codes]), req)))

    @torch.inference_mode()
    def _context(self, clip: np.ndarray) -> torch.Tensor:
        """A continuation's context (``context_audio``) as [9, n], the layout ``code_stream`` yields: its codes and
        each frame's semantic id, encoded once per clip. The stages start from them, the decoder warms up on them."""
        if self._ctx_memo is None or self._ctx_memo[0]() is not clip:
            a = context_audio(clip)  # whole semantic frames, so n = 2 x the ids
            ctx = torch.zeros(9, 0, dtype=torch.long)
            if a.shape[-1]:
                codes = self.codec.encode(a)[0, :, : a.shape[-1] // 480]
                ctx = torch.cat([codes, frame_ids(self.semantic.encode(a), codes.shape[-1], self.semantic.cardinality)])
            self._ctx_memo = (weakref.ref(clip), ctx)
        return self._ctx_memo[1]

    def _lead(self, req: Request) -> int:
        """Frames to generate beyond the duration when continuing: they cover the decoder's delay."""
        return -(-self.codec.delay // 480) if req.continuation is not None else 0

    def decode_stream(self, codes: Iterator[torch.Tensor], req: Request, chunk: int | None = None) -> Iterator[np.ndarray]:
        """Codes of new frames -> audio in whole pieces of ``chunk`` samples (a player pads short ones: gaps), drums
        taken out where ``req`` refuses them. A continuation warms the decoder up on its context, which ends where
        the user's clip ends; the output's first ``codec.delay`` samples (60 ms) are the context's end: dropped, and
        ``_lead``'s extra frames fill the length, so the extension joins without a repeated onset."""
        def decoded():
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
                audio, skip = audio[min(skip, len(audio)):], max(0, skip - len(audio))
                if left is not None:
                    audio, left = audio[:left], left - min(left, len(audio))
                if len(audio):
                    yield audio
        audio = decoded() if self.drum_remover is None else without_drums(decoded(), self.drum_remover, req.drums_refused())
        yield from rechunk(audio, chunk)


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


def _uncond(stage, cond: torch.Tensor) -> torch.Tensor:
    """The unconditional branch's streams: 'absent' if the stage was trained so (cond_dropout), else the same ones."""
    if not stage.cfg.cond_dropout:
        return cond
    return torch.tensor(stage.cfg.cond_vocabs)[None, :, None].expand_as(cond).clone()


def _check(cancel) -> None:
    if cancel is not None and cancel():
        raise Cancelled("generation was stopped")
