"""One decoder-only transformer for all three stages (nanoGPT-style blocks, pre-norm, learned positions).

Inputs of a stage:
- ``prefix`` [B, P]: the 12 MuLan tokens (level l has its own table; id ``prefix_vocab`` is the null token used for
  conditioning dropout, hence classifier-free guidance). They occupy the first P positions.
- ``cond`` [B, C, Tc]: streams aligned in time with the output (stage 1: melody tokens at 25 Hz; stage 2: semantic
  tokens at 25 Hz for 50 Hz output, ``cond_ratio`` 2; stage 3: the 4 coarse codebooks at 50 Hz). Their embeddings
  are summed, passed through a non-causal conv (kernel 5: it looks 2 frames ahead, which the stages allow because
  conditioning is generated before the output it conditions) and added to the input of the matching step. This
  aligned, additive form replaces MusicLM's [cond][output] prefix layout: measured on the corpus it trains in a
  fraction of the steps, because the model need not learn to find the right conditioning position by attention.
- ``tokens`` [B, K, S]: the output so far in the delay layout (``patterns``), id ``vocab`` = start/pad.

``forward`` runs a whole sequence (training); ``prefill``/``step`` run with a KV cache (generation). The attention
is written out in plain math (no fused kernels) so torch and the ONNX export compute the same thing.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..weights import config_from_dict, load_weights, read_config, save_model


@dataclass
class StageConfig:
    name: str = "stage"
    n_codebooks: int = 1
    vocab: int = 512
    prefix_len: int = 12
    prefix_vocab: int = 1024
    prefix_rank: int = 0  # > 0: each prefix position's table is this wide, one shared projection to d_model
    cond_vocabs: tuple[int, ...] = ()  # one per aligned stream; each table has one extra id: "absent"
    cond_ratio: int = 1  # output steps per conditioning frame
    d_model: int = 256
    n_layer: int = 4
    n_head: int = 4
    max_steps: int = 512  # output steps (prefix not included)
    dropout: float = 0.0
    cond_dropout: float = 0.0  # share of null-prefix training examples whose aligned streams are 'absent' as well:
    # > 0 means guidance's unconditional branch drops them too, so guidance also sharpens what they ask for
    version: str = "dev"

    @classmethod
    def from_dict(cls, d: dict) -> StageConfig:
        return config_from_dict(cls, d)


class Block(nn.Module):
    def __init__(self, cfg: StageConfig):
        super().__init__()
        self.n_head = cfg.n_head
        self.ln1, self.ln2 = nn.LayerNorm(cfg.d_model), nn.LayerNorm(cfg.d_model)
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.mlp = nn.Sequential(nn.Linear(cfg.d_model, 4 * cfg.d_model), nn.GELU(), nn.Linear(4 * cfg.d_model, cfg.d_model))
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, past_k: torch.Tensor | None = None, past_v: torch.Tensor | None = None):
        """x [B, L, D]; past [B, H, Lp, hs] -> (y [B, L, D], k, v [B, H, Lp + L, hs])."""
        B, L, D = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(D, dim=-1)
        q, k, v = (t.view(B, L, self.n_head, D // self.n_head).transpose(1, 2) for t in (q, k, v))  # (B, nh, L, hs)
        if past_k is not None:
            k, v = torch.cat([past_k, k], 2), torch.cat([past_v, v], 2)
        Lk = k.shape[2]
        att = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
        i = torch.arange(L, device=x.device)[:, None] + (Lk - L)
        j = torch.arange(Lk, device=x.device)[None]
        att = att.masked_fill(j > i, float("-inf")).softmax(-1)
        y = (self.drop(att) @ v).transpose(1, 2).reshape(B, L, D)
        x = x + self.drop(self.proj(y))
        return x + self.drop(self.mlp(self.ln2(x))), k, v


class StageLM(nn.Module):
    def __init__(self, cfg: StageConfig):
        super().__init__()
        self.cfg = cfg
        D = cfg.d_model
        self.tok = nn.ModuleList([nn.Embedding(cfg.vocab + 1, D) for _ in range(cfg.n_codebooks)])
        width = cfg.prefix_rank or D
        self.prefix = nn.ModuleList([nn.Embedding(cfg.prefix_vocab + 1, width) for _ in range(cfg.prefix_len)])
        self.prefix_proj = nn.Linear(width, D, bias=False) if cfg.prefix_rank else None
        self.cond = nn.ModuleList([nn.Embedding(v + 1, D) for v in cfg.cond_vocabs])
        self.cond_conv = nn.Conv1d(D, D, 5, padding=2) if cfg.cond_vocabs else None
        self.pos = nn.Embedding(cfg.prefix_len + cfg.max_steps, D)
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.n_layer)])
        self.ln_f = nn.LayerNorm(D)
        self.heads = nn.ModuleList([nn.Linear(D, cfg.vocab, bias=False) for _ in range(cfg.n_codebooks)])
        self.apply(self._init)

    @staticmethod
    def _init(m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # --------------------------------------------------------------------------------------------- inputs
    def pad_cond(self, cond: torch.Tensor, n_steps: int) -> torch.Tensor:
        """cond [B, C, Tc] ids -> [B, C, ceil(n_steps / cond_ratio)]: cut, or padded with each stream's 'absent' id."""
        need = -(-n_steps // self.cfg.cond_ratio)
        if cond.shape[-1] < need:
            absent = torch.tensor(self.cfg.cond_vocabs, device=cond.device)[None, :, None]
            cond = torch.cat([cond, absent.expand(cond.shape[0], -1, need - cond.shape[-1])], -1)
        return cond[..., :need]

    def cond_embedding(self, cond: torch.Tensor | None, n_steps: int) -> torch.Tensor | None:
        """cond [B, C, Tc] ids -> [B, n_steps, D] per output step (training: the whole sequence at once)."""
        if self.cond_conv is None:
            return None
        ids = self.pad_cond(cond, n_steps)
        e = sum(tab(ids[:, c]) for c, tab in enumerate(self.cond))  # [B, Tc, D]
        e = self.cond_conv(e.transpose(1, 2)).transpose(1, 2)
        return e.repeat_interleave(self.cfg.cond_ratio, dim=1)[:, :n_steps]

    def cond_step_embedding(self, ids: torch.Tensor, step: int) -> torch.Tensor:
        """The conditioning of one output step from padded ids [B, C, Tc] (``pad_cond``) -> [B, D].

        The same numbers as ``cond_embedding`` (up to float rounding), but computed from the 5 frames around the
        step alone, with one fixed-shape op: generation gives bit-identical results however it is chunked."""
        f = step // self.cfg.cond_ratio
        Tc = ids.shape[-1]
        frames = torch.arange(f - 2, f + 3, device=ids.device)
        inside = ((frames >= 0) & (frames < Tc)).to(self.cond_conv.weight.dtype)
        sel = ids[:, :, frames.clamp(0, Tc - 1)]  # [B, C, 5]
        e = sum(tab(sel[:, c]) for c, tab in enumerate(self.cond)) * inside[None, :, None]  # [B, 5, D]
        return torch.einsum("bki,oik->bo", e, self.cond_conv.weight) + self.cond_conv.bias

    def prefix_embedding(self, prefix: torch.Tensor) -> torch.Tensor:
        """prefix [B, P] -> [B, P, D] (with positions)."""
        e = torch.stack([tab(prefix[:, i]) for i, tab in enumerate(self.prefix)], 1)
        if self.prefix_proj is not None:
            e = self.prefix_proj(e)
        return e + self.pos.weight[: self.cfg.prefix_len][None]

    def prefix_tables(self) -> torch.Tensor:
        """The prefix embedding tables at full width [P, prefix_vocab + 1, D] (positions not included)."""
        e = torch.stack([tab.weight for tab in self.prefix])
        return self.prefix_proj(e) if self.prefix_proj is not None else e

    def token_embedding(self, tokens: torch.Tensor, start: int) -> torch.Tensor:
        """tokens [B, K, L] at output steps start..start+L-1 -> [B, L, D] (with positions)."""
        e = sum(tab(tokens[:, k]) for k, tab in enumerate(self.tok))
        p = self.cfg.prefix_len + start
        return e + self.pos.weight[p:p + tokens.shape[-1]][None]

    def _logits(self, h: torch.Tensor) -> torch.Tensor:
        h = self.ln_f(h)
        return torch.stack([head(h) for head in self.heads], 1)  # [B, K, L, V]

    # ------------------------------------------------------------------------------------------ training
    def forward(self, inputs: torch.Tensor, prefix: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """inputs [B, K, S] (the delayed sequence shifted right, start id first), prefix [B, P], cond [B, C, Tc]
        -> logits [B, K, S, V] for the targets at steps 0..S-1."""
        S = inputs.shape[-1]
        x = self.token_embedding(inputs, 0)
        c = self.cond_embedding(cond, S)
        if c is not None:
            x = x + c
        h = torch.cat([self.prefix_embedding(prefix), x], 1)
        for b in self.blocks:
            h, _, _ = b(h)
        return self._logits(h[:, self.cfg.prefix_len:])

    # ---------------------------------------------------------------------------------------- generation
    def prefill(self, prefix: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Run the prefix; -> the KV cache (one (k, v) per layer)."""
        h, cache = self.prefix_embedding(prefix), []
        for b in self.blocks:
            h, k, v = b(h)
            cache.append((k, v))
        return cache

    def step(self, tokens: torch.Tensor, start: int, cond_emb: torch.Tensor | None, cache: list) -> tuple:
        """tokens [B, K, L] fed at output steps start..start+L-1, cond_emb [B, L, D] for those steps
        -> (logits [B, K, L, V], new cache). L = 1 while sampling; L > 1 to feed a known prompt at once."""
        h = self.token_embedding(tokens, start)
        if cond_emb is not None:
            h = h + cond_emb
        new = []
        for b, (pk, pv) in zip(self.blocks, cache):
            h, k, v = b(h, pk, pv)
            new.append((k, v))
        return self._logits(h), new

    # ------------------------------------------------------------------------------------------ save/load
    def save(self, path: str | Path) -> None:
        save_model(self, path, self.cfg.name)

    @classmethod
    def load(cls, path: str | Path, name: str) -> StageLM:
        model = cls(read_config(StageConfig, path, name, f"{name} stage"))
        model.load_state_dict(load_weights(Path(path) / f"{name}.safetensors"))
        return model.eval()


def shift_right(delayed: torch.Tensor, start_id: int) -> torch.Tensor:
    """Targets [B, K, S] -> inputs [B, K, S]: step s sees the codes of step s - 1 (start id at step 0)."""
    return torch.cat([torch.full_like(delayed[..., :1], start_id), delayed[..., :-1]], -1)


def masked_loss(logits: torch.Tensor, targets: torch.Tensor, pad: int) -> torch.Tensor:
    """Cross-entropy over real codes only (pad positions of the delay layout excluded)."""
    V = logits.shape[-1]
    mask = targets != pad
    return F.cross_entropy(logits[mask].view(-1, V), targets[mask].view(-1))
