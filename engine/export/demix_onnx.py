"""The drum remover's mask network -> ONNX: ``export_demix(remover, dir)`` writes ``drums.onnx`` (STFT magnitude
[1, F, T] -> mask [1, F, T], any T); ``OnnxMask(dir)`` runs it with onnxruntime and stands in for the network in
``DrumRemover.mask`` (the STFT and overlap-add stay in torch / numpy). The network is all 3x3 convolutions over
513 bins, which onnxruntime runs about twice as fast as torch on one thread.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from .codec_onnx import providers, session_options

MODEL = "drums.onnx"


def export_demix(remover: torch.nn.Module, directory: str | Path) -> Path:
    """``remover``: an ``engine.demix.DrumRemover`` (not imported: it loads this module)."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    n_bins = remover.cfg.n_fft // 2 + 1
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter warns about itself
        torch.onnx.export(remover.eval(), (torch.rand(1, n_bins, 64),), str(d / MODEL), dynamo=False,
                          input_names=["magnitude"], output_names=["mask"], opset_version=17,
                          dynamic_axes={"magnitude": {2: "frames"}, "mask": {2: "frames"}})
    return d


class OnnxMask:
    """onnxruntime twin of ``DrumRemover.forward``."""

    def __init__(self, directory: str | Path, threads: int | None = None):
        import onnxruntime as ort

        self.session = ort.InferenceSession(str(Path(directory) / MODEL), session_options(threads),
                                            providers=providers())

    def __call__(self, mag: torch.Tensor) -> torch.Tensor:
        out = self.session.run(None, {"magnitude": mag.numpy().astype(np.float32, copy=False)})[0]
        return torch.from_numpy(out)
