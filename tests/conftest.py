"""Shared fixtures: a tiny corpus built once per test session from a handful of real music21 scores."""
from __future__ import annotations

from pathlib import Path

import pytest

from engine.data.melodies import quick_score_paths

TINY_HOURS = 24 * 10 / 3600  # 24 clips of 10 s: 3 render groups


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session", autouse=True)
def _onnx_cache(tmp_path_factory):
    """ONNX exports made by tests go to a temporary cache, not the user's ~/.cache/cantus."""
    import os
    os.environ["CANTUS_CACHE"] = str(tmp_path_factory.mktemp("cantus-cache"))


@pytest.fixture(scope="session")
def score_paths() -> list[str]:
    return quick_score_paths()


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory, score_paths) -> Path:
    from engine.data.build import build

    out = tmp_path_factory.mktemp("corpus")
    build(TINY_HOURS, out, seed=3, workers=1, cache=None, score_paths=score_paths, progress=False)
    return out


def save_tiny_codec(path: Path, n_q: int = 8):
    """A tiny random codec whose codebooks are initialised (as after training), saved to ``path``; -> the loaded copy."""
    import torch

    from engine.codec import Codec, CodecConfig

    torch.manual_seed(0)
    codec = Codec(CodecConfig(channels=4, max_channels=16, dim=16, n_q=n_q, codebook_size=32, version="tiny-v1"))
    codec.train()
    with torch.no_grad():
        codec(torch.randn(2, 24_000) * 0.1)  # initialise the codebooks
    codec.eval().save(path)
    return Codec.load(path)


def build_tiny_assets(root: Path) -> Path:
    """Random but consistent tiny models in the shipped layout: exercises the whole generator in seconds."""
    import json

    import torch

    from engine.codec import Codec, CodecConfig
    from engine.kmeans import ResidualKMeans
    from engine.lm.model import StageLM
    from engine.lm.stages import default_config
    from engine.mulan import MuLan, MuLanConfig
    from engine.semantic import SemanticConfig, SemanticTokenizer

    torch.manual_seed(0)
    codec = Codec(CodecConfig(channels=4, max_channels=16, dim=16, n_q=8, codebook_size=32, version="tiny-c")).eval()
    codec.save(root / "codec")
    mulan = MuLan(MuLanConfig(dim=16, width=16, text_hidden=32, token_size=8, version="tiny-m"))
    mulan.rvq = ResidualKMeans.fit(torch.randn(200, 16), 12, 8, iters=3)
    mulan.save(root / "mulan")
    sem = SemanticTokenizer(SemanticConfig(width=16, dim=8, n_tokens=16, version="tiny-s"))
    sem.centroids.normal_()
    sem.save(root / "semantic")
    versions = json.dumps({"codec": "tiny-c", "mulan": "tiny-m", "semantic": "tiny-s"}, sort_keys=True)
    for name in ("semantic", "coarse", "fine"):
        StageLM(default_config(name, 16, codec_size=32, mulan_size=8, d_model=32, n_layer=1, n_head=2,
                               prefix_rank=4 if name == "coarse" else 0,  # a factorised prefix through export
                               version=versions)).save(root / "stages")
    return root


@pytest.fixture(scope="session")
def tiny_assets(tmp_path_factory) -> Path:
    return build_tiny_assets(tmp_path_factory.mktemp("assets"))
