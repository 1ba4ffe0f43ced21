"""MuLan's audio tower -> ONNX: ``export_mulan_audio(mulan, dir)`` writes ``mulan_audio.onnx`` (frame features
[B, C, T] and global features [B, 199] -> unit embeddings [B, dim]; any batch and length). The front end
(``engine.spectral``) stays in torch; ``OnnxMuLanAudio(dir).embed_audio(wave, sr)`` runs the tower with onnxruntime
over the same 10 s windows as ``MuLan.embed_audio``. The text tower is MiniLM plus a small MLP and is not exported.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch

from .. import spectral
from ..mulan.model import MuLan, embed_windows
from .codec_onnx import providers, session_options

AUDIO = "mulan_audio.onnx"
META = "mulan_audio.json"


def export_mulan_audio(mulan: MuLan, directory: str | Path) -> Path:
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    tower = mulan.audio.eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter warns about itself
        torch.onnx.export(tower, (torch.zeros(1, spectral.N_FRAME_FEATURES, 250), torch.zeros(1, spectral.N_GLOBAL)),
                          str(d / AUDIO), dynamo=False,
                          input_names=["frames", "global"], output_names=["embedding"], opset_version=17,
                          dynamic_axes={"frames": {0: "batch", 2: "time"}, "global": {0: "batch"},
                                        "embedding": {0: "batch"}})
    (d / META).write_text(json.dumps({"version": mulan.cfg.version, "audio_version": mulan.cfg.audio_version,
                                      "dim": mulan.cfg.dim}))
    return d


class OnnxMuLanAudio:
    """onnxruntime twin of ``MuLan.embed_audio``."""

    def __init__(self, directory: str | Path, threads: int | None = None):
        import onnxruntime as ort

        d = Path(directory)
        self.meta = json.loads((d / META).read_text())
        self.session = ort.InferenceSession(str(d / AUDIO), session_options(threads), providers=providers())

    def tower(self, frames: torch.Tensor, glob: torch.Tensor) -> np.ndarray:
        return self.session.run(None, {"frames": frames.numpy().astype(np.float32),
                                       "global": glob.numpy().astype(np.float32)})[0]

    def embed_audio(self, audio: np.ndarray, sr: int, batch: int = 16) -> torch.Tensor:
        return embed_windows(self.tower, audio, sr, batch)
