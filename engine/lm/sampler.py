"""Step-by-step sampling of one stage over one window, with a KV cache, guidance and known prompt codes.

``StageSampler`` owns the delayed code grid [K, T + K - 1] of a window: prompt codes (a continuation, or the kept
part of the previous window) are placed in it first and fed through the model in one call; every later ``advance``
computes one step and samples the codes of that step that are not known yet. ``frames_done`` says how many frames
have all K codes, which is what the next stage (or the codec decoder) may consume: the orchestrator in
``engine.pipeline`` interleaves stages by it, so audio can stream while later frames are still being sampled.

Guidance: with ``guidance != 1`` the model runs on a batch of two (conditional, unconditional prefix/conditioning)
and ``sampling.guide`` mixes the logits.

Drafts: given a list of generators, the sampler draws that many independent drafts of the window as one batch (rows
[draft 1 .. draft N] conditional, then the same N unconditional when guiding), each row from its own generator, so
draft i is the same whatever N is; ``codes(row=i)`` reads one. ``engine.pipeline`` draws the semantic ids this way
and keeps the draft the ranker (``engine.mulan.ranker``) scores highest.
"""
from __future__ import annotations

import torch

from . import patterns
from .model import StageLM
from .sampling import SamplingParams, guide, sample


class StageSampler:
    def __init__(self, model: StageLM, prefix: torch.Tensor, cond: torch.Tensor | None, n_frames: int,
                 params: SamplingParams, generator: torch.Generator | list[torch.Generator],
                 prompt: torch.Tensor | None = None, progressive: bool = False):
        """prefix [G, P] and cond [G, C, Tc] with G = 2 (conditional, unconditional) when guiding, else 1;
        prompt [K, Tp] known codes of the first Tp frames (Tp <= n_frames). ``progressive``: the conditioning
        arrives while sampling (the caller fills ``cond_ids``), so it is embedded step by step; otherwise it is
        embedded once for the whole window. A list of N generators draws N drafts: prefix and cond then have G x N
        rows (every draft's conditional row, then every draft's unconditional one)."""
        cfg = model.cfg
        self.gens = list(generator) if isinstance(generator, (list, tuple)) else [generator]
        self.model, self.params, self.gen = model, params, self.gens[0]
        self.B = len(self.gens)
        self.K, self.T = cfg.n_codebooks, n_frames
        self.S = n_frames + self.K - 1
        if self.S > cfg.max_steps:
            raise ValueError(f"{cfg.name}: a window of {n_frames} frames exceeds the model's {cfg.max_steps} steps")
        if prefix.shape[0] not in (self.B, 2 * self.B):
            raise ValueError(f"{cfg.name}: {prefix.shape[0]} prefix rows for {self.B} drafts")
        self.guided = prefix.shape[0] == 2 * self.B
        self.cond_ids = model.pad_cond(cond, self.S) if cond is not None else None
        self.cond_all = None
        if cond is not None and not progressive:
            with torch.inference_mode():
                self.cond_all = model.cond_embedding(cond, self.S)
        codes = torch.full((1, self.K, n_frames), cfg.vocab, dtype=torch.long)
        self.known = torch.zeros(1, self.K, n_frames, dtype=torch.bool)
        if prompt is not None and prompt.shape[-1]:
            codes[0, :, : prompt.shape[-1]] = prompt
            self.known[0, :, : prompt.shape[-1]] = True
        self.grid = patterns.delay(codes, cfg.vocab)[0][None].repeat(self.B, 1, 1)  # [B, K, S]
        self.known_grid = patterns.delay(self.known.long(), 0)[0].bool()
        self.cache = model.prefill(prefix)
        self.s = 0
        n_prompt = 0 if prompt is None else prompt.shape[-1]
        if n_prompt:  # steps whose codes are all known are fed at once (their outputs need no sampling)
            self._feed(n_prompt)

    def _inputs(self, a: int, b: int) -> torch.Tensor:
        start = torch.full((self.B, self.K, 1), self.model.cfg.vocab, dtype=torch.long)
        x = torch.cat([start, self.grid], 2)[:, :, a:b]  # input of step s is the grid at s - 1
        return torch.cat([x, x]) if self.guided else x

    def _cond(self, a: int, b: int) -> torch.Tensor | None:
        if self.cond_ids is None:
            return None
        if self.cond_all is not None:
            return self.cond_all[:, a:b]
        return torch.stack([self.model.cond_step_embedding(self.cond_ids, s) for s in range(a, b)], 1)

    def _feed(self, n: int) -> torch.Tensor:
        logits, self.cache = self.model.step(self._inputs(self.s, self.s + n), self.s, self._cond(self.s, self.s + n), self.cache)
        self.s += n
        return logits

    @property
    def done(self) -> bool:
        return self.s >= self.S

    @property
    def frames_done(self) -> int:
        """Frames whose K codes are all final."""
        return max(0, min(self.T, self.s - self.K + 1))

    @torch.inference_mode()
    def advance(self) -> None:
        s = self.s
        logits = self._feed(1)[:, :, 0]  # [G x B, K, V]
        if self.guided:
            logits = guide(logits, self.params.guidance)
        for r, gen in enumerate(self.gens):
            ids = sample(logits[r], self.params, gen)  # [K]
            for k in range(self.K):
                f = s - k
                if 0 <= f < self.T and not self.known_grid[k, s]:
                    self.grid[r, k, s] = ids[k]

    def codes(self, a: int = 0, b: int | None = None, row: int = 0) -> torch.Tensor:
        """Final codes [K, b - a] of frames a..b-1 (b <= frames_done) of draft ``row``."""
        b = self.frames_done if b is None else b
        return patterns.undelay(self.grid[row:row + 1])[0, :, a:b]
