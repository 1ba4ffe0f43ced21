"""Write a trained model and its metrics as ``OUT/<name>/`` in one step: saved into ``<name>.tmp`` first and swapped
in by a rename, so a crash mid-save never leaves a half-written best model where ``--ship`` would pick it up; and
ship a small model's files into ``assets/`` only when it scores higher there."""
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


def ship_if_better(best: Path, assets: Path, files: tuple[str, ...], what: str, measure: str,
                   new: float, old: float) -> bool:
    """Copy ``files`` of ``best`` into ``assets`` when ``new`` beats ``old`` (both measured on the same data)."""
    if new <= old:
        print(f"not shipped: {measure} {new:.4f} does not beat the shipped {old:.4f}")
        return False
    for f in files:
        shutil.copy2(Path(best) / f, Path(assets) / f)
    print(f"shipped the {what} of {best} -> {assets} ({measure} {old:.4f} -> {new:.4f})")
    return True
