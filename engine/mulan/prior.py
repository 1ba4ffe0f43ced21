"""The prompt prior: a prompt's MuLan text embedding -> the audio embedding of music that fits it.

Why: the stages learned their 12-token prefix from MuLan *audio* tokens half the time (and text tokens the other
half), but a prompt gives them only text tokens, and MuLan's two towers meet loosely: a caption's text embedding has
cosine 0.49 with its own clip's audio embedding (the 153 validation clips of the 10 h build, every caption). DALL-E 2
closes the same gap between CLIP's towers with a prior that maps a caption's text embedding to an image embedding;
this is its deterministic form at laptop scale, a two-layer MLP (128 -> 128 -> 128, 33k parameters, 66 KB) trained
with a cosine loss to predict the clip's audio embedding from the embedding of any of its captions or of short
prompts made from its tags (``python -m engine.train.mulan prior``). Its prediction has cosine 0.759 with the clip's
audio on the same validation clips (width 256: 0.761; on the 3 corpus captions alone, the mean audio embedding of
the 8 train clips with the nearest captions: 0.748).

The stages then read the tokens of the prediction instead of the text's. The judge of every
benchmark is unchanged: the MCC still compares the prompt's plain text embedding with the generated audio's.
Nothing here touches the token space: the audio tower and the RVQ stay as they are, so the stages stay valid.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..weights import load_weights, read_config, save_model


@dataclass
class PriorConfig:
    dim: int = 128
    hidden: int = 128
    mulan: str = ""  # the MuLan (its token_key) whose embeddings the prior was trained on
    version: str = "dev"


class PromptPrior(nn.Module):
    """[N, dim] unit text embeddings -> [N, dim] unit predictions of the audio embedding."""

    FILES = ("prior.safetensors", "prior.json")

    def __init__(self, cfg: PriorConfig):
        super().__init__()
        self.cfg = cfg
        self.net = nn.Sequential(nn.Linear(cfg.dim, cfg.hidden), nn.GELU(), nn.Linear(cfg.hidden, cfg.dim))

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net(text), dim=-1)

    def fits(self, mulan_cfg) -> bool:
        """Whether this prior learned the embeddings of the MuLan with config ``mulan_cfg`` (its token key)."""
        return self.cfg.mulan == mulan_cfg.token_key

    def save(self, path: str | Path) -> None:
        save_model(self, path, "prior")

    @classmethod
    def load(cls, path: str | Path) -> PromptPrior | None:
        """The prior saved in ``path`` (a MuLan folder), or None when it has none."""
        path = Path(path)
        if not (path / "prior.json").is_file():
            return None
        model = cls(read_config(PriorConfig, path, "prior", "prompt prior"))
        model.load_state_dict(load_weights(path / "prior.safetensors"))
        return model.eval().requires_grad_(False)


__all__ = ["PriorConfig", "PromptPrior"]
