"""Codec -> ONNX: the encoder (audio -> codes) and the streaming decoder (codes chunk + state -> audio + state).

``export_codec(codec, dir)`` writes ``codec_encoder.onnx`` and ``codec_decoder.onnx``; ``OnnxCodec(dir)`` runs
them with onnxruntime (CUDA execution provider when present, CPU otherwise) behind the same ``encode`` /
``decode`` / ``decode_step`` interface as the torch model. Weight normalisation is folded before export. A decoder
that reads semantic ids (``Codec.conditioned``) takes them as a second input, ``semantic`` [B, frames].
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from ..codec.model import Codec

ENCODER = "codec_encoder.onnx"
DECODER = "codec_decoder.onnx"
META = "codec_onnx.json"


def fold_weight_norm(codec: Codec) -> Codec:
    """A copy of the codec with weight normalisation folded into plain weights (deepcopy breaks parametrizations)."""
    model = Codec(codec.cfg)
    model.load_state_dict(codec.state_dict())
    model.eval()
    for m in list(model.modules()):
        if parametrize.is_parametrized(m, "weight"):
            parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)
    return model


class _Encoder(nn.Module):
    def __init__(self, codec: Codec):
        super().__init__()
        self.codec = codec

    def forward(self, audio: torch.Tensor) -> torch.Tensor:  # [B, 1, T] -> [B, K, T/hop]
        return self.codec.quantizer.encode(self.codec.encoder(audio))


class _StreamingDecoder(nn.Module):
    def __init__(self, codec: Codec):
        super().__init__()
        self.codec = codec

    def forward(self, codes: torch.Tensor, *inputs: torch.Tensor):
        z = self.codec.quantizer.decode(codes)
        if self.codec.conditioned:
            y, new = self.codec.decoder.step(z, list(inputs[1:]), cond=inputs[0])
        else:
            y, new = self.codec.decoder.step(z, list(inputs))
        return (y[:, 0], *new)


def export_codec(codec: Codec, directory: str | Path) -> Path:
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    model = fold_weight_norm(codec)
    hop = codec.cfg.hop
    with torch.no_grad(), warnings.catch_warnings():
        # the legacy exporter warns about itself and about LSTM batch sizes (our h0/c0 are inputs, so that is moot)
        warnings.simplefilter("ignore")
        torch.onnx.export(_Encoder(model), (torch.zeros(1, 1, hop * 10),), str(d / ENCODER), dynamo=False,
                          input_names=["audio"], output_names=["codes"], opset_version=17,
                          dynamic_axes={"audio": {0: "batch", 2: "samples"}, "codes": {0: "batch", 2: "frames"}})
        fold_pads(d / ENCODER)
        state = model.decoder.init_state(1)
        names = [f"state_{i}" for i in range(len(state))]
        dyn = {"codes": {0: "batch", 2: "frames"}, "audio": {0: "batch", 1: "samples"}}
        for i, s in enumerate(state):
            dyn[f"state_{i}"] = {1 if s.dim() == 3 and i in _lstm_indices(model) else 0: "batch"}
            dyn[f"new_state_{i}"] = dyn[f"state_{i}"]
        codes = torch.zeros(1, codec.cfg.n_q, 4, dtype=torch.int64)
        cond = []
        if codec.conditioned:
            cond = [torch.zeros(1, 4, dtype=torch.int64)]
            dyn["semantic"] = {0: "batch", 1: "frames"}
        torch.onnx.export(_StreamingDecoder(model), (codes, *cond, *state), str(d / DECODER), dynamo=False,
                          input_names=["codes", *(["semantic"] if cond else []), *names],
                          output_names=["audio", *[f"new_{n}" for n in names]], opset_version=17, dynamic_axes=dyn)
    meta = {"states": [list(s.shape[1:]) if i not in _lstm_indices(model) else [s.shape[0], s.shape[2]]
                       for i, s in enumerate(state)], "lstm_states": _lstm_indices(model),
            "hop": hop, "sample_rate": codec.cfg.sample_rate, "n_q": codec.cfg.n_q, "version": codec.cfg.version,
            "cond": codec.cfg.decoder_cond}
    (d / META).write_text(json.dumps(meta))
    return d


def fold_pads(path: Path) -> int:
    """Rewrite an ONNX graph in place so that each zero Pad feeding only a Conv becomes that Conv's ``pads``
    attribute; returns how many were folded. Each causal convolution pads its input on the left, which the exporter
    writes as a Pad node: a full copy of the activation before every convolution. Folded, the encoder gives the same
    codes; measured on 10 s (2 threads, same run): 0.227 -> 0.192 s. The exporter computes the pads at run time, so
    onnxruntime's basic (standard-op) optimisations first fold those constants."""
    import onnx
    import onnxruntime as ort
    from onnx import helper, numpy_helper

    folded_consts = path.with_suffix(".basic.onnx")
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    so.optimized_model_filepath = str(folded_consts)
    so.log_severity_level = 3
    ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    model = onnx.load(str(folded_consts))
    folded_consts.unlink()
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    consumers: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    drop = []
    for n in g.node:
        if n.op_type != "Pad" or n.input[1] not in inits:
            continue
        mode = [a.s for a in n.attribute if a.name == "mode"]
        value = n.input[2] if len(n.input) > 2 else ""
        if (mode and mode[0] != b"constant") or (value and (value not in inits
                                                            or numpy_helper.to_array(inits[value]).any())):
            continue
        pads = numpy_helper.to_array(inits[n.input[1]]).tolist()
        r = len(pads) // 2
        users = consumers.get(n.output[0], [])
        if any(pads[:2] + pads[r:r + 2]) or len(users) != 1 or users[0].op_type != "Conv":
            continue  # pads batch or channels, or its output is used elsewhere
        conv = users[0]
        if any(a.name == "auto_pad" and a.s not in (b"", b"NOTSET") for a in conv.attribute):
            continue
        old = [a for a in conv.attribute if a.name == "pads"]
        base = list(old[0].ints) if old else [0] * (2 * (r - 2))
        for a in old:
            conv.attribute.remove(a)
        conv.attribute.append(helper.make_attribute("pads", [b + p for b, p in zip(base, pads[2:r] + pads[r + 2:])]))
        conv.input[0] = n.input[0]
        drop.append(n)
    for n in drop:
        g.node.remove(n)
    onnx.save(model, str(path))
    return len(drop)


def _lstm_indices(model: Codec) -> list[int]:
    return [1, 2] if getattr(model.decoder, "lstm", None) is not None else []


def session_options(threads: int | None = None):
    """Options for every Cantus session. Spinning is off: generation alternates many small runs of several sessions
    with torch work in between, and each session's pool spinning after its run starves the next one on 2 cores."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = threads
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.log_severity_level = 3
    return so


def providers() -> list[str]:
    import onnxruntime as ort

    have = ort.get_available_providers()
    # onnxruntime-gpu lists CUDA even without a GPU driver (and then logs load errors): ask torch whether one is there
    want = (["CUDAExecutionProvider"] if torch.cuda.is_available() else []) + ["CPUExecutionProvider"]
    return [p for p in want if p in have]


class OnnxCodec:
    """onnxruntime twin of ``Codec`` for inference."""

    def __init__(self, directory: str | Path, threads: int | None = None):
        import onnxruntime as ort

        d = Path(directory)
        self.meta = json.loads((d / META).read_text())
        opts = session_options(threads)
        self.enc = ort.InferenceSession(str(d / ENCODER), opts, providers=providers())
        self.dec = ort.InferenceSession(str(d / DECODER), opts, providers=providers())
        self.sample_rate, self.hop, self.num_codebooks = self.meta["sample_rate"], self.meta["hop"], self.meta["n_q"]
        self.frame_rate = self.sample_rate // self.hop

    def encode(self, audio: np.ndarray, n_q: int | None = None) -> np.ndarray:
        """audio [B, T] float32 -> codes [B, K, ceil(T/hop)] int64."""
        audio = np.asarray(audio, dtype=np.float32)
        rest = (-audio.shape[-1]) % self.hop
        audio = np.pad(audio, ((0, 0), (0, rest)))[:, None]
        codes = self.enc.run(None, {"audio": audio})[0]
        return codes[:, : n_q or self.num_codebooks]

    def init_state(self, batch: int) -> list[np.ndarray]:
        out = []
        for i, shape in enumerate(self.meta["states"]):
            if i in self.meta["lstm_states"]:
                out.append(np.zeros((shape[0], batch, shape[1]), np.float32))
            else:
                out.append(np.zeros((batch, *shape), np.float32))
        return out

    def decode_step(self, codes: np.ndarray, state: list[np.ndarray] | None = None, cond: np.ndarray | None = None):
        """``cond`` [B, frames]: semantic ids per frame for a conditioned decoder (None: absent)."""
        codes = np.asarray(codes, dtype=np.int64)
        if codes.shape[1] < self.num_codebooks:  # the graph is exported with every level
            raise ValueError("the ONNX decoder takes all codebook levels; decode fewer levels with the torch model")
        state = state if state is not None else self.init_state(codes.shape[0])
        feed = {"codes": codes, **{f"state_{i}": s for i, s in enumerate(state)}}
        if self.meta.get("cond"):
            feed["semantic"] = (np.full(codes.shape[::2], self.meta["cond"], np.int64) if cond is None
                                else np.asarray(cond, dtype=np.int64))
        out = self.dec.run(None, feed)
        return out[0], out[1:]

    def decode(self, codes: np.ndarray, cond: np.ndarray | None = None) -> np.ndarray:
        return self.decode_step(codes, None, cond)[0]


class TorchCodesDecoder:
    """``OnnxCodec``'s streaming decoder for the torch codes the generator produces (``Codec.decode_step``'s
    signature, so the generator decodes through either)."""

    def __init__(self, onnx_codec: OnnxCodec):
        self.onnx = onnx_codec

    def decode_step(self, codes: torch.Tensor, state=None, cond: torch.Tensor | None = None):
        audio, state = self.onnx.decode_step(codes.numpy().astype(np.int64), state,
                                             None if cond is None else cond.numpy().astype(np.int64))
        return torch.from_numpy(np.asarray(audio)), state
