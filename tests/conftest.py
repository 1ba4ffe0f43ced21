"""Shared fixtures: a tiny corpus built once per test session from a handful of real music21 scores."""
from __future__ import annotations

from pathlib import Path

import pytest

from engine.data.melodies import corpus_paths

TINY_HOURS = 24 * 10 / 3600  # 24 clips of 10 s: 3 render groups


def tiny_score_paths() -> list[str]:
    paths = corpus_paths()
    pick = [p for p in paths if "/bach/" in p][:8] + [p for p in paths if "/ryansMammoth/" in p][:30]
    pick += [p for p in paths if p.endswith("essenFolksong/test0.abc")]
    return pick


@pytest.fixture(scope="session")
def score_paths() -> list[str]:
    return tiny_score_paths()


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory, score_paths) -> Path:
    from engine.data.build import build

    out = tmp_path_factory.mktemp("corpus")
    build(TINY_HOURS, out, seed=3, workers=1, cache=None, score_paths=score_paths, progress=False)
    return out
