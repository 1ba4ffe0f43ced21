"""MuLan at laptop scale: a trained projection on the frozen MiniLM text tower, a small audio tower on the music
front end (``engine.spectral``), a 128-d shared space, and a 12 x 1024 residual k-means that turns an embedding
(text or audio alike) into the 12 conditioning tokens of the stages. A prompt reaches the stages through the
optional prompt prior (``engine.mulan.prior``, ``embed_prompt``); judges embed it with ``embed_text``.

Audio tower: frame features [B, 136, T] (log-mel + semitone bands, 25 Hz; optionally joined by the frame embeddings
of a frozen copy of the semantic tokenizer's encoder, ``cfg.semantic``; saved beside that tokenizer, as in
``assets/``, the copy is not stored twice but read from its folder) -> 1x1 conv to ``width`` -> residual
dilated conv blocks (GroupNorm, GELU) -> mean and max over time; the global features (tempogram + key-profile
correlations) through a small MLP; both concatenated -> linear -> 128, L2-normalised. Windows are 10 s; longer audio
is embedded as the mean of 10 s windows at 1 s strides (as MusicLM does), re-normalised.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import spectral
from ..blocks import DilatedResBlock
from ..kmeans import ResidualKMeans
from ..weights import config_from_dict, load_weights, read_config, save_weights
from .prior import PromptPrior
from .text import DIM as TEXT_DIM
from .text import encode_sentences

WINDOW_S = 10.0
STRIDE_S = 1.0


@dataclass
class MuLanConfig:
    dim: int = 128
    width: int = 256
    dilations: tuple[int, ...] = (1, 2, 4, 8, 1, 2)
    text_hidden: int = 512
    token_levels: int = 12
    token_size: int = 1024
    version: str = "dev"  # names the token space (audio tower + RVQ): stages trained on its tokens check it
    text_version: str = ""  # set when only the text projection was retrained (python -m engine.train.mulan text)
    audio_version: str = ""  # set when only the audio tower was retrained (python -m engine.train.mulan tower --freeze-text)
    semantic: dict | None = None  # SemanticConfig of a frozen semantic encoder whose frame embeddings join the input

    @property
    def token_key(self) -> str:
        """Names every part that sets the tokens (token caches are keyed on it; stages check ``version`` only)."""
        return "-".join(v for v in (self.version, self.text_version and "t" + self.text_version,
                                    self.audio_version and "a" + self.audio_version) if v)

    @classmethod
    def from_dict(cls, d: dict) -> MuLanConfig:
        return config_from_dict(cls, d)


class AudioTower(nn.Module):
    """(frames [B, 136, T], global [B, 199]) -> unit vectors [B, dim]."""

    def __init__(self, cfg: MuLanConfig):
        super().__init__()
        self.sem = None
        extra = 0
        if cfg.semantic is not None:  # a copy of the shipped encoder, so this model stays self-contained
            from ..semantic.model import SemanticConfig, SemanticTokenizer
            self.sem = SemanticTokenizer(SemanticConfig.from_dict(cfg.semantic)).requires_grad_(False)
            extra = self.sem.cfg.dim
        self.inp = nn.Conv1d(spectral.N_FRAME_FEATURES + extra, cfg.width, 1)
        self.blocks = nn.Sequential(*[DilatedResBlock(cfg.width, d, proj=True) for d in cfg.dilations])
        self.norm = nn.GroupNorm(8, cfg.width)
        self.glob = nn.Sequential(nn.Linear(spectral.N_GLOBAL, 128), nn.GELU(), nn.Linear(128, 128), nn.GELU())
        self.out = nn.Sequential(nn.Linear(2 * cfg.width + 128, 512), nn.GELU(), nn.Linear(512, cfg.dim))

    def trunk(self, frames: torch.Tensor) -> torch.Tensor:
        """frames [B, 136, T] -> hidden frames [B, width, T] (what is pooled)."""
        if self.sem is not None:
            frames = torch.cat([frames, self.sem.embed(frames).detach()], 1)
        return F.gelu(self.norm(self.blocks(self.inp(frames))))

    def pool(self, h: torch.Tensor, glob: torch.Tensor) -> torch.Tensor:
        h = torch.cat([h.mean(-1), h.amax(-1), self.glob(glob)], -1)
        return F.normalize(self.out(h), dim=-1)

    def forward(self, frames: torch.Tensor, glob: torch.Tensor) -> torch.Tensor:
        return self.pool(self.trunk(frames), glob)


class TextProjection(nn.Module):
    """MiniLM sentence embeddings [B, 384] -> unit vectors [B, dim]."""

    def __init__(self, cfg: MuLanConfig):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(TEXT_DIM, cfg.text_hidden), nn.GELU(), nn.Linear(cfg.text_hidden, cfg.dim))

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net(e), dim=-1)


class MuLan(nn.Module):
    def __init__(self, cfg: MuLanConfig):
        super().__init__()
        self.cfg = cfg
        self.audio = AudioTower(cfg)
        self.text = TextProjection(cfg)
        self.log_temp = nn.Parameter(torch.tensor(np.log(1 / 0.07), dtype=torch.float32))
        self.rvq: ResidualKMeans | None = None
        self.prior: PromptPrior | None = None  # saved in its own files (engine.mulan.prior), not in mulan.safetensors

    # ----------------------------------------------------------------------------------------- embeddings
    @torch.inference_mode()
    def embed_text(self, texts: list[str]) -> torch.Tensor:
        """prompts -> [N, dim] unit vectors (raises text.PromptError for an empty prompt)."""
        return self.text(torch.from_numpy(encode_sentences(list(texts))))

    @torch.inference_mode()
    def embed_prompt(self, texts: list[str]) -> torch.Tensor:
        """prompts -> [N, dim]: what the stages' prefix tokens are made from (the prior's prediction of the audio
        embedding of the music each describes, when this MuLan has a prior; judges keep using ``embed_text``)."""
        t = self.embed_text(texts)
        return t if self.prior is None else self.prior(t)

    @staticmethod
    def windows(audio: np.ndarray, sr: int) -> torch.Tensor:
        """Mono audio at ``sr`` -> 10 s windows [W, 240000] at 24 kHz, 1 s stride (short audio: one padded window)."""
        from ..audio import resample
        a = resample(np.asarray(audio, dtype=np.float32), sr, spectral.SAMPLE_RATE) if sr != spectral.SAMPLE_RATE else audio
        a = torch.as_tensor(np.asarray(a, dtype=np.float32))
        win, hop = int(WINDOW_S * spectral.SAMPLE_RATE), int(STRIDE_S * spectral.SAMPLE_RATE)
        if len(a) <= win:
            return a[None]
        starts = range(0, len(a) - win + 1, hop)
        return torch.stack([a[s:s + win] for s in starts])

    @torch.inference_mode()
    def embed_audio(self, audio: np.ndarray, sr: int, batch: int = 16) -> torch.Tensor:
        """One recording (float mono) -> [dim] unit vector: the mean over its 10 s windows, re-normalised."""
        return embed_windows(self.audio, audio, sr, batch)

    # --------------------------------------------------------------------------------------------- tokens
    def tokens(self, emb: torch.Tensor) -> torch.Tensor:
        """[N, dim] embeddings (text or audio) -> [N, 12] token ids."""
        if self.rvq is None:
            raise RuntimeError("this MuLan has no token codebooks yet (fit them with python -m engine.train.mulan tower)")
        return self.rvq.encode(emb)

    def detokenize(self, ids: torch.Tensor) -> torch.Tensor:
        return self.rvq.decode(ids)

    # -------------------------------------------------------------------------------------------- save/load
    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        weights = {k: v for k, v in self.state_dict().items() if not k.startswith("prior.")}  # the prior: its own files
        if self.cfg.semantic is not None and _sibling_semantic(path, self.cfg.semantic["version"]) is not None:
            # saved beside the very tokenizer it copies (the assets layout): the copy is left out, load() takes it
            # from there (1.2 MB of the 60 MB budget)
            weights = {k: v for k, v in weights.items() if not k.startswith(SEMANTIC_PREFIX)}
        save_weights(weights, path / "mulan.safetensors")
        if self.rvq is not None:
            self.rvq.save(path, "mulan_rvq")
        for f in PromptPrior.FILES:
            (path / f).unlink(missing_ok=True)
        if self.prior is not None and self.prior.fits(self.cfg):
            self.prior.save(path)
        elif self.prior is not None:  # e.g. a retrained text projection: the prior learned the old one's embeddings
            print(f"the prompt prior (trained on MuLan {self.prior.cfg.mulan}) is not saved with MuLan "
                  f"{self.cfg.token_key}: retrain it (python -m engine.train.mulan prior)")
        (path / "mulan.json").write_text(json.dumps(asdict(self.cfg), indent=1))

    @classmethod
    def load(cls, path: str | Path) -> MuLan:
        path = Path(path)
        model = cls(read_config(MuLanConfig, path, "mulan", "MuLan model"))
        weights = load_weights(path / "mulan.safetensors")
        if model.cfg.semantic is not None and not any(k.startswith(SEMANTIC_PREFIX) for k in weights):
            version = model.cfg.semantic["version"]
            sem = _sibling_semantic(path, version)
            if sem is None:
                raise FileNotFoundError(f"{path}: this MuLan reads the frame embeddings of semantic tokenizer {version}, "
                                        f"expected beside it in {path.parent / 'semantic'}")
            weights.update({SEMANTIC_PREFIX + k: v for k, v in load_weights(sem).items()})
        model.load_state_dict(weights)
        if (path / "mulan_rvq.safetensors").is_file():
            model.rvq = ResidualKMeans.load(path, "mulan_rvq")
        model.prior = PromptPrior.load(path)
        if model.prior is not None and not model.prior.fits(model.cfg):
            raise RuntimeError(f"{path}: the prompt prior was trained on MuLan {model.prior.cfg.mulan}, not on this "
                               f"one ({model.cfg.token_key}): retrain it (python -m engine.train.mulan prior) or "
                               f"delete {path / 'prior.json'}")
        return model.eval()


SEMANTIC_PREFIX = "audio.sem."


def _sibling_semantic(path: Path, version: str) -> Path | None:
    """The weights of semantic tokenizer ``version`` in the folder beside ``path`` (``assets/semantic`` for
    ``assets/mulan``), or None when there is none or it is another version."""
    folder = Path(path).parent / "semantic"
    try:
        if json.loads((folder / "semantic.json").read_text()).get("version") == version:
            return folder / "semantic.safetensors"
    except (OSError, ValueError):
        pass
    return None


@torch.inference_mode()
def embed_windows(tower, audio: np.ndarray, sr: int, batch: int = 16) -> torch.Tensor:
    """``tower(frames, global) -> [B, dim]`` (the torch tower or its ONNX twin) over the 10 s windows of one
    recording -> [dim]: their mean, re-normalised."""
    w = MuLan.windows(audio, sr)
    embs = []
    for i in range(0, len(w), batch):
        x = w[i:i + batch]
        embs.append(torch.as_tensor(tower(spectral.frames(x), spectral.global_features(x))))
    return F.normalize(torch.cat(embs).mean(0), dim=-1)


__all__ = ["MuLan", "MuLanConfig", "embed_windows"]
