"""ONNX export of a stage transformer with its KV cache as inputs and outputs, and an onnxruntime twin.

Two graphs per stage: ``<name>_prefill.onnx`` (prefix tokens [G, P] -> the cache of every layer) and
``<name>_step.onnx`` (tokens [G, K, L], their output-step positions [L], conditioning embeddings [G, L, D] and the
past cache -> logits [G, K, L, V] and the grown cache). The conditioning embeddings (a few table lookups and one
small conv per step) stay in torch; ``OnnxStage`` borrows them from the torch model, so ``StageSampler`` drives
either backend unchanged.

Generation runs ``<name>_step_int8.onnx``: the step graph with its MatMul weights dynamically quantised to int8
(onnxruntime.quantization), on one intra-op thread. Measured on the coarse stage (2,046-step weights), one guided step at 300
steps of context (2-core Xeon, 2026-11-22): fp32 1.35 ms, int8 0.94 ms on 1 thread; fp32 1.63 ms, int8 1.24 ms on
2 threads (a single-token step is too small to split). The fp32 graph stays for exact parity with torch
(``int8=False``). Teacher-forced validation loss on 16 valid clips, fp32 -> int8: semantic 1.2777 -> 1.2781,
coarse 5.1189 -> 5.1190, fine 4.3105 -> 4.3109 (same weights); a test bounds it on real music.
"""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..lm.model import StageLM
from .codec_onnx import providers, session_options


class _Prefill(nn.Module):
    def __init__(self, m: StageLM):
        super().__init__()
        self.m = m

    def forward(self, prefix):
        out = []
        for k, v in self.m.prefill(prefix):
            out += [k, v]
        return tuple(out)


class _Step(nn.Module):
    def __init__(self, m: StageLM):
        super().__init__()
        self.m = m

    def forward(self, tokens, positions, cond_emb, *past):
        m = self.m
        h = sum(tab(tokens[:, k]) for k, tab in enumerate(m.tok))
        h = h + F.embedding(positions + m.cfg.prefix_len, m.pos.weight)[None] + cond_emb
        out = []
        for i, b in enumerate(m.blocks):
            h, k, v = b(h, past[2 * i], past[2 * i + 1])
            out += [k, v]
        return (m._logits(h), *out)


def export_stage(model: StageLM, directory: str | Path) -> Path:
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    cfg, name = model.cfg, model.cfg.name
    model = model.eval()
    n = cfg.n_layer
    kv = [f"{t}_{i}" for i in range(n) for t in ("k", "v")]
    prefix = torch.zeros(2, cfg.prefix_len, dtype=torch.long)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_Prefill(model), (prefix,), str(d / f"{name}_prefill.onnx"), dynamo=False, opset_version=17,
                          input_names=["prefix"], output_names=kv, dynamic_axes={"prefix": {0: "g"}, **{x: {0: "g"} for x in kv}})
        past = model.prefill(prefix)
        flat = [t for kvp in past for t in kvp]
        tokens = torch.zeros(2, cfg.n_codebooks, 3, dtype=torch.long)
        positions = torch.arange(3)
        cond = torch.zeros(2, 3, cfg.d_model)
        dyn = {"tokens": {0: "g", 2: "l"}, "positions": {0: "l"}, "cond_emb": {0: "g", 1: "l"},
               "logits": {0: "g", 2: "l"}}
        dyn.update({f"past_{x}": {0: "g", 2: "lp"} for x in kv})
        dyn.update({f"present_{x}": {0: "g", 2: "lt"} for x in kv})
        torch.onnx.export(_Step(model), (tokens, positions, cond, *flat), str(d / f"{name}_step.onnx"), dynamo=False,
                          opset_version=17, input_names=["tokens", "positions", "cond_emb", *[f"past_{x}" for x in kv]],
                          output_names=["logits", *[f"present_{x}" for x in kv]], dynamic_axes=dyn)
        _quantize(d / f"{name}_step.onnx", d / f"{name}_step_int8.onnx")
    (d / f"{name}_onnx.json").write_text(json.dumps({"version": cfg.version, "n_layer": n}))
    return d


def _quantize(src: Path, dst: Path) -> None:
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic
    level = logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)  # it logs advice to pre-process; the result is checked by its loss
    try:
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"])
    finally:
        logging.getLogger().setLevel(level)


class OnnxStage:
    """onnxruntime twin of a ``StageLM`` for generation (``prefill`` / ``step``; the rest is the torch model's)."""

    def __init__(self, model: StageLM, directory: str | Path, threads: int | None = None, int8: bool = True):
        import onnxruntime as ort
        self.torch_model, self.cfg = model, model.cfg
        d, name = Path(directory), model.cfg.name
        meta = json.loads((d / f"{name}_onnx.json").read_text())
        if meta["version"] != model.cfg.version:
            raise RuntimeError(f"{d / name}_step.onnx was exported from other weights; re-export it")
        so = session_options(threads)
        self.prefill_sess = ort.InferenceSession(str(d / f"{name}_prefill.onnx"), so, providers=providers())
        step = d / (f"{name}_step_int8.onnx" if int8 else f"{name}_step.onnx")
        self.step_sess = ort.InferenceSession(str(step), session_options(1), providers=providers())
        self._step_path, self._wide = step, None
        self.kv = [f"{t}_{i}" for i in range(self.cfg.n_layer) for t in ("k", "v")]

    def _session(self, rows: int):
        """The step session for a batch of ``rows``: one thread for the usual 1-2 rows; a batch of drafts (more than
        4 rows) splits well over 2 threads (8 guided semantic drafts reach the first chunk sooner with two, also with
        another process holding a core). Both sessions give the same bits."""
        if rows <= 4 or (os.cpu_count() or 1) < 2:
            return self.step_sess
        if self._wide is None:
            import onnxruntime as ort
            self._wide = ort.InferenceSession(str(self._step_path), session_options(2), providers=providers())
        return self._wide

    def __getattr__(self, item):  # pad_cond, cond_embedding, cond_step_embedding
        return getattr(self.torch_model, item)

    def prefill(self, prefix: torch.Tensor) -> list:
        out = self.prefill_sess.run(None, {"prefix": prefix.numpy().astype(np.int64)})
        return [(out[2 * i], out[2 * i + 1]) for i in range(self.cfg.n_layer)]

    def step(self, tokens, start, cond_emb, cache):
        L = tokens.shape[-1]
        feed = {"tokens": tokens.numpy().astype(np.int64), "positions": np.arange(start, start + L, dtype=np.int64),
                "cond_emb": (cond_emb if cond_emb is not None else torch.zeros(tokens.shape[0], L, self.cfg.d_model))
                .numpy().astype(np.float32)}
        for i, (k, v) in enumerate(cache):
            feed[f"past_k_{i}"], feed[f"past_v_{i}"] = k, v
        out = self._session(tokens.shape[0]).run(None, feed)
        return torch.from_numpy(out[0]), [(out[1 + 2 * i], out[2 + 2 * i]) for i in range(self.cfg.n_layer)]
