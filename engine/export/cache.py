"""ONNX files are derived, not shipped: exported on first use from the shipped fp16 safetensors into a cache
(``$CANTUS_CACHE``, default ``~/.cache/cantus``), in a folder named after the weights' sha256, so new weights get a
fresh export and the 60 MB weight budget holds (the fp32 ONNX graphs of the stages alone are ~70 MB)."""
from __future__ import annotations

import hashlib
import os
import shutil
import sys
from pathlib import Path


def cache_root() -> Path:
    return Path(os.environ.get("CANTUS_CACHE", "~/.cache/cantus")).expanduser() / "onnx"


def _digest(weights: Path) -> str:
    h = hashlib.sha256()
    with open(weights, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def exported(kind: str, weights: Path, export) -> Path:
    """The folder holding the ONNX export of ``weights``; ``export(dir)`` writes it when missing."""
    d = cache_root() / f"{kind}-{_digest(weights)}"
    if not (d / "complete").exists():
        print(f"exporting {kind} to ONNX (once per model version) -> {d}", file=sys.stderr)
        tmp = d.with_name(d.name + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        export(tmp)
        (tmp / "complete").write_text("")
        shutil.rmtree(d, ignore_errors=True)
        os.replace(tmp, d)
    return d
