"""The draft ranker: semantic ids -> MuLan's text space, to keep the draft that fits the prompt best.

Why: for one prompt, the clips the sampler draws differ a lot in how well they fit it (over 192 text-only test
prompts x 4 seeds, the judge's own pick of 4 would raise the MCC ratio 0.753 -> 0.902), but none of the stages' own
likelihoods tells the good draws apart. The semantic ids of a window are drawn first and cheaply, so several drafts
of them can be drawn and one kept before any acoustic token is sampled: the stream then flows as before, only its
first chunk comes later.

What: a small conv tower over the ids (embedding -> stride-2 conv, 12.5 Hz -> residual dilated conv blocks -> mean
and max over time -> MLP -> unit vector), trained contrastively (symmetric InfoNCE, in-batch negatives) against the
frozen MuLan text projection of each train clip's captions and short prompts (``python -m engine.train.mulan ranker``).
Its score for a draft is the cosine with the prompt's MuLan text embedding. The judge's audio tower plays no part
in it: the ranker never sees audio, generated or real.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..blocks import DilatedResBlock
from ..weights import config_from_dict, load_weights, read_config, save_model


@dataclass
class RankerConfig:
    vocab: int = 512  # semantic ids
    width: int = 96
    dim: int = 128
    dilations: tuple[int, ...] = (1, 2, 4, 8)
    dropout: float = 0.1
    mulan: str = ""  # the MuLan (token_key) whose text projection it was trained against
    semantic: str = ""  # the semantic tokenizer version whose ids it reads
    version: str = "dev"

    @classmethod
    def from_dict(cls, d: dict) -> RankerConfig:
        return config_from_dict(cls, d)


class DraftRanker(nn.Module):
    """ids [B, T] (any T >= 2) -> [B, dim] unit vectors in MuLan's text space."""

    FILES = ("ranker.safetensors", "ranker.json")

    def __init__(self, cfg: RankerConfig):
        super().__init__()
        self.cfg = cfg
        self.emb = nn.Embedding(cfg.vocab, cfg.width)
        self.down = nn.Conv1d(cfg.width, cfg.width, 4, stride=2, padding=1)
        self.blocks = nn.Sequential(*[DilatedResBlock(cfg.width, d, proj=True) for d in cfg.dilations])
        self.norm = nn.GroupNorm(8, cfg.width)
        self.drop = nn.Dropout(cfg.dropout)
        self.out = nn.Sequential(nn.Linear(2 * cfg.width, 256), nn.GELU(), nn.Linear(256, cfg.dim))
        self.log_temp = nn.Parameter(torch.tensor(2.659))  # log(1 / 0.07), CLIP's start

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h = F.gelu(self.norm(self.blocks(self.down(self.emb(ids).transpose(1, 2)))))
        return F.normalize(self.out(self.drop(torch.cat([h.mean(-1), h.amax(-1)], -1))), dim=-1)

    @torch.inference_mode()
    def scores(self, ids: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """Drafts [N, T] and one prompt's text embedding [dim] -> cosines [N] (higher fits the prompt better)."""
        return self(ids.long()) @ text.to(torch.float32)

    def fits(self, mulan_cfg, semantic_version: str) -> bool:
        return self.cfg.mulan == mulan_cfg.token_key and self.cfg.semantic == semantic_version

    def save(self, path: str | Path) -> None:
        save_model(self, path, "ranker")

    @classmethod
    def load(cls, path: str | Path) -> DraftRanker | None:
        """The ranker in ``path`` (a MuLan folder), or None when it has none."""
        path = Path(path)
        if not (path / "ranker.json").is_file():
            return None
        model = cls(read_config(RankerConfig, path, "ranker", "draft ranker"))
        model.load_state_dict(load_weights(path / "ranker.safetensors"))
        return model.eval().requires_grad_(False)
