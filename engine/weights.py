"""How every Cantus model is stored: ``NAME.json`` (its config dataclass) beside ``NAME.safetensors`` (fp16 weights).

Weights are kept in fp16 on disk (the asset budget) and loaded back as fp32, integer tensors as they are; loading is
strict, so a file that does not fit its config is an error, never a silently half-loaded model.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file


def save_weights(state: dict[str, torch.Tensor], path: Path, metadata: dict | None = None) -> None:
    """A state dict -> safetensors at ``path``, floating tensors in fp16."""
    save_file({k: (v.detach().half() if v.is_floating_point() else v.detach()).contiguous() for k, v in state.items()},
              str(path), metadata=metadata)


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    """safetensors at ``path`` -> a state dict, floating tensors in fp32."""
    return {k: v.float() if v.is_floating_point() else v for k, v in load_file(str(path)).items()}


def save_model(model: torch.nn.Module, directory: str | Path, name: str, metadata: dict | None = None,
               state: dict[str, torch.Tensor] | None = None) -> None:
    """``model.cfg`` -> ``directory/name.json`` and its weights (``state``, default all of them) ->
    ``directory/name.safetensors``."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    save_weights(model.state_dict() if state is None else state, d / f"{name}.safetensors", metadata)
    (d / f"{name}.json").write_text(json.dumps(asdict(model.cfg), indent=1))


def config_from_dict(cls, d: dict):
    """A config dataclass from its saved JSON, the lists JSON made of its tuple fields turned back into tuples."""
    tuples = {f.name for f in dataclasses.fields(cls) if str(f.type).startswith("tuple")}
    return cls(**{k: tuple(v) if k in tuples else v for k, v in d.items()})


def read_config(cls, directory: str | Path, name: str, what: str, hint: str = ""):
    """The config saved as ``directory/name.json``; FileNotFoundError naming the missing files otherwise."""
    d = Path(directory)
    if not (d / f"{name}.json").is_file() or not (d / f"{name}.safetensors").is_file():
        raise FileNotFoundError(f"no {what} in {d} (expected {name}.json + {name}.safetensors){hint}")
    return config_from_dict(cls, json.loads((d / f"{name}.json").read_text()))
