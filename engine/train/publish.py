"""Write a trained model and its metrics as ``OUT/<name>/`` in one step: saved into ``<name>.tmp`` first and swapped
in by a rename, so a crash mid-save never leaves a half-written best model where ``--ship`` would pick it up."""
from __future__ import annotations

import json
import shutil
from pathlib import Path


def save_best(model, out: Path, metrics: dict, name: str = "best") -> Path:
    """``model.save(dir)`` + ``dir/metrics.json`` -> ``out/name``."""
    out, final = Path(out), Path(out) / name
    tmp = out / f"{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save(tmp)
    (tmp / "metrics.json").write_text(json.dumps(metrics, indent=1))
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    return final
