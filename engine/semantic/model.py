"""Semantic tokens: 25 Hz ids from k-means over frame embeddings that carry melody, harmony and rhythm.

w2v-BERT is not available, and k-means straight on spectra clusters by timbre and loudness (HuBERT's first
iteration on MFCCs has the same problem). The corpus has exact labels, so the features are learned with them: a
small non-causal conv encoder over the music front end (``engine.spectral``, +-0.7 s of context) is trained to
predict, per frame, the melody's pitch class (or none), the beat phase (quarters of a beat), and the key's tonic and
mode; k-means over its ``dim``-d embeddings (train split) gives ``n_tokens`` ids. Instrument identity is never a
target, so the same tune in another arrangement lands on nearby tokens (measured by ``engine.semantic.probe``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .. import spectral
from ..blocks import DilatedResBlock
from ..kmeans import nearest
from ..weights import config_from_dict, load_weights, read_config, save_model
from .keys import load_key_profile

FRAME_RATE = spectral.FRAME_RATE
HEADS = {"pitch_class": 13, "beat_phase": 4, "tonic": 12, "mode": 2}


@dataclass
class SemanticConfig:
    width: int = 192
    dim: int = 32
    dilations: tuple[int, ...] = (1, 2, 4, 8, 1)
    n_tokens: int = 512
    version: str = "dev"

    @classmethod
    def from_dict(cls, d: dict) -> SemanticConfig:
        return config_from_dict(cls, d)


class SemanticTokenizer(nn.Module):
    def __init__(self, cfg: SemanticConfig):
        super().__init__()
        self.cfg = cfg
        self.inp = nn.Conv1d(spectral.N_FRAME_FEATURES, cfg.width, 1)
        self.blocks = nn.Sequential(*[DilatedResBlock(cfg.width, d) for d in cfg.dilations])
        self.emb = nn.Conv1d(cfg.width, cfg.dim, 1)
        self.heads = nn.ModuleDict({k: nn.Conv1d(cfg.dim, n, 1) for k, n in HEADS.items()})
        self.register_buffer("centroids", torch.zeros(cfg.n_tokens, cfg.dim))

    # the one interface every tokenizer has (audiocraft's CompressionModel)
    sample_rate = spectral.SAMPLE_RATE
    frame_rate = FRAME_RATE
    num_codebooks = 1

    @property
    def cardinality(self) -> int:
        return self.cfg.n_tokens

    def embed(self, feats: torch.Tensor) -> torch.Tensor:
        """frame features [B, 136, T] -> embeddings [B, dim, T]."""
        return self.emb(F.gelu(self.blocks(self.inp(feats))))

    def logits(self, emb: torch.Tensor) -> dict[str, torch.Tensor]:
        return {k: h(F.gelu(emb)) for k, h in self.heads.items()}

    @torch.inference_mode()
    def tokens_from_features(self, feats: torch.Tensor) -> torch.Tensor:
        e = self.embed(feats)  # [B, D, T]
        ids, _ = nearest(e.transpose(1, 2).reshape(-1, e.shape[1]), self.centroids)
        return ids.view(e.shape[0], e.shape[2])

    @torch.inference_mode()
    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        """audio [B, T] at 24 kHz -> ids [B, T // 960] (25 Hz)."""
        return self.tokens_from_features(spectral.frames(audio))

    def save(self, path: str | Path) -> None:
        save_model(self, path, "semantic")

    @classmethod
    def load(cls, path: str | Path) -> SemanticTokenizer:
        model = cls(read_config(SemanticConfig, path, "semantic", "semantic tokenizer"))
        model.load_state_dict(load_weights(Path(path) / "semantic.safetensors"))
        model.key_profile = load_key_profile(path, model.cfg.version)  # [V, 26] or None (engine.semantic.keys)
        return model.eval()


def frame_labels(tags: dict, melody_track, n_frames: int) -> dict[str, torch.Tensor]:
    """Per-frame targets from a corpus clip's tags and 25 Hz melody track (MIDI, 0 = none)."""
    mel = torch.zeros(n_frames, dtype=torch.long)
    tr = torch.as_tensor(list(melody_track)[:n_frames], dtype=torch.long)
    mel[: len(tr)] = torch.where(tr > 0, tr % 12 + 1, 0)
    t = torch.arange(n_frames) / FRAME_RATE
    beat = torch.floor((t * tags["tempo"] / 60.0 % 1.0) * 4).long().clamp(0, 3)
    return {"pitch_class": mel, "beat_phase": beat, "tonic": torch.full((n_frames,), int(tags["tonic"])),
            "mode": torch.full((n_frames,), int(tags["mode"] == "minor"))}
