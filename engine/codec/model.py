"""The Cantus codec: a SoundStream/EnCodec-style causal convolutional autoencoder with a residual VQ bottleneck.

24 kHz mono in, 50 Hz frames of 8 x 1024 codes (4 kbps) out, and back. The encoder is a stack of
[residual units -> strided conv] stages (strides 2, 4, 6, 10 = hop 480) and an LSTM at frame rate; the decoder
mirrors it with transposed convolutions. Everything is causal, so the decoder streams: ``decode_step`` takes a
chunk of frames and the state from the previous chunk and returns exactly the audio ``decode`` would.

Interface shared by every Cantus tokenizer: ``encode``, ``decode``, ``sample_rate``, ``frame_rate``,
``cardinality``, ``num_codebooks``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..weights import load_weights, read_config, save_model
from .conv import CausalConv1d, CausalConvTranspose1d, ResUnit
from .quantizer import QuantizedResult, ResidualVQ

NAME = "codec"
WEIGHTS = f"{NAME}.safetensors"


@dataclass
class CodecConfig:
    sample_rate: int = 24_000
    channels: int = 16  # width of the first stage; doubles at every downsampling ...
    max_channels: int = 256  # ... up to this
    strides: tuple[int, ...] = (2, 4, 6, 10)  # product = hop length
    dilations: tuple[int, ...] = (1, 3)  # residual units per stage
    dim: int = 128  # latent and codebook dimension
    n_q: int = 8
    codebook_size: int = 1024
    code_dim: int = 8  # dimension codes are looked up in (l2-normalised, DAC-style)
    lstm: bool = True
    encoder_patch: int = 1  # > 1: a learned front end at sample_rate / patch replaces the leading encoder stages ...
    encoder_patch_channels: int = 64  # ... (whose strides multiply to patch), this wide; see Encoder
    encoder_version: str = ""  # set when the encoder is distilled (its codes approximate the version's)
    quantizer_dropout: float = 0.5
    version: str = "0"  # names the token space: stages trained on these codes check it
    decoder: str = "conv"  # "conv": mirrored transposed convolutions; "istft": engine.codec.istft (frame rate)
    decoder_dim: int = 256  # istft decoder width ...
    decoder_blocks: int = 6  # ... and depth
    decoder_version: str = ""  # set when a decoder is retrained on frozen codes (version unchanged)
    decoder_cond: int = 0  # istft decoder: semantic ids it also reads (their vocabulary; 0 = codes only) ...
    decoder_cond_version: str = ""  # ... of this semantic tokenizer version

    def width(self, stage: int) -> int:
        """Channels after ``stage`` downsamplings."""
        return min(self.channels * 2 ** stage, self.max_channels)

    @property
    def hop(self) -> int:
        h = 1
        for s in self.strides:
            h *= s
        return h

    def __post_init__(self):
        self.strides = tuple(self.strides)
        self.dilations = tuple(self.dilations)
        if self.decoder not in ("conv", "istft"):
            raise ValueError(f"unknown decoder {self.decoder!r}")
        if self.sample_rate % self.hop:
            raise ValueError(f"hop {self.hop} must divide sample rate {self.sample_rate}")
        _ = self.patch_stages  # validates encoder_patch

    @property
    def patch_stages(self) -> int:
        """How many leading encoder stages the patch front end replaces (0 for the full SEANet stack)."""
        if self.encoder_patch == 1:
            return 0
        prod = 1
        for n, s in enumerate(self.strides, 1):
            prod *= s
            if prod == self.encoder_patch:
                return n
        raise ValueError(f"encoder_patch {self.encoder_patch} is not a product of leading strides {self.strides}")


class _FrameLSTM(nn.Module):
    """Unidirectional LSTM over frames with a skip connection; its (h, c) is the streaming state."""

    def __init__(self, dim: int):
        super().__init__()
        self.lstm = nn.LSTM(dim, dim, batch_first=True)

    def forward(self, x: torch.Tensor, state=None):  # x: [B, C, T]
        y, state = self.lstm(x.transpose(1, 2), state)
        return x + y.transpose(1, 2), state


class Encoder(nn.Module):
    """[residual units -> ELU -> strided conv] per stride, LSTM, ELU -> conv to the latent.

    With ``cfg.encoder_patch = p > 1`` the stages whose strides multiply to p are replaced by a front end that works
    at sample_rate / p from the start: a stride-p convolution (kernel 2p) to ``encoder_patch_channels``, residual
    units, ELU and a 1x1 convolution to the width the next stage expects. The full stack spends most of its time in
    its first stages (many samples, few channels; ELU alone was 27% of the ONNX encoder); the patch front end is
    distilled from a trained full encoder (``engine.train.codec distil``) and keeps every later layer, so its codes
    live in the same token space."""

    def __init__(self, cfg: CodecConfig):
        super().__init__()
        n = cfg.patch_stages
        if n:
            f, c = cfg.encoder_patch_channels, cfg.width(n)
            layers: list[nn.Module] = [CausalConv1d(1, f, 2 * cfg.encoder_patch, stride=cfg.encoder_patch)]
            layers += [ResUnit(f, d) for d in cfg.dilations]
            layers += [nn.ELU(), CausalConv1d(f, c, 1)]
        else:
            c = cfg.width(0)
            layers = [CausalConv1d(1, c, 7)]
        self.front_layers = len(layers)
        for i, s in list(enumerate(cfg.strides))[n:]:
            layers += [ResUnit(c, d) for d in cfg.dilations]
            layers += [nn.ELU(), CausalConv1d(c, cfg.width(i + 1), 2 * s, stride=s)]
            c = cfg.width(i + 1)
        self.convs = nn.Sequential(*layers)
        self.lstm = _FrameLSTM(c) if cfg.lstm else None
        self.out = nn.Sequential(nn.ELU(), CausalConv1d(c, cfg.dim, 3))

    def forward(self, audio: torch.Tensor) -> torch.Tensor:  # [B, 1, T*hop] -> [B, D, T]
        h = self.convs(audio)
        if self.lstm is not None:
            h, _ = self.lstm(h)
        return self.out(h)


class Decoder(nn.Module):
    def __init__(self, cfg: CodecConfig):
        super().__init__()
        c = cfg.width(len(cfg.strides))
        self.inp = CausalConv1d(cfg.dim, c, 7)
        self.lstm = _FrameLSTM(c) if cfg.lstm else None
        self.ups = nn.ModuleList()
        self.res = nn.ModuleList()
        for i, s in reversed(list(enumerate(cfg.strides))):
            self.ups.append(CausalConvTranspose1d(c, cfg.width(i), s))
            c = cfg.width(i)
            self.res.append(nn.ModuleList(ResUnit(c, d) for d in cfg.dilations))
        self.out = CausalConv1d(c, 1, 7)
        self.act = nn.ELU()

    def forward(self, z: torch.Tensor) -> torch.Tensor:  # [B, D, T] -> [B, 1, T*hop]
        h = self.inp(z)
        if self.lstm is not None:
            h, _ = self.lstm(h)
        for up, res in zip(self.ups, self.res):
            h = up(self.act(h))
            for r in res:
                h = r(h)
        return self.out(self.act(h))

    # ---- streaming: the state is a flat list of tensors, in a fixed order, for ONNX
    def init_state(self, batch: int, device=None) -> list[torch.Tensor]:
        st = [self.inp.init_state(batch, device)]
        if self.lstm is not None:
            hid = self.lstm.lstm.hidden_size
            st += [torch.zeros(1, batch, hid, device=device), torch.zeros(1, batch, hid, device=device)]
        for up, res in zip(self.ups, self.res):
            st.append(up.init_state(batch, device))
            for r in res:
                st += r.init_state(batch, device)
        st.append(self.out.init_state(batch, device))
        return st

    def step(self, z: torch.Tensor, state: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        it = iter(state)
        new: list[torch.Tensor] = []
        h, s = self.inp.step(z, next(it))
        new.append(s)
        if self.lstm is not None:
            h, (hh, cc) = self.lstm(h, (next(it), next(it)))
            new += [hh, cc]
        for up, res in zip(self.ups, self.res):
            h, s = up.step(self.act(h), next(it))
            new.append(s)
            for r in res:
                h, rs = r.step(h, [next(it)])
                new += rs
        y, s = self.out.step(self.act(h), next(it))
        new.append(s)
        return y, new


def make_decoder(cfg: CodecConfig) -> nn.Module:
    if cfg.decoder == "istft":
        from .istft import ISTFTDecoder

        return ISTFTDecoder(cfg.dim, cfg.hop, cfg.decoder_dim, cfg.decoder_blocks, cond_vocab=cfg.decoder_cond)
    return Decoder(cfg)


def frame_ids(semantic_ids: torch.Tensor, n_frames: int, absent: int) -> torch.Tensor:
    """25 Hz semantic ids [B, S] -> one per 50 Hz codec frame [B, n_frames] (each id twice; 'absent' past the end)."""
    ids = semantic_ids.long().repeat_interleave(2, dim=-1)[:, :n_frames]
    return nn.functional.pad(ids, (0, n_frames - ids.shape[-1]), value=absent)


@dataclass
class CodecOutput:
    audio: torch.Tensor  # [B, 1, T] reconstruction
    codes: torch.Tensor  # [B, K, T/hop]
    commit_loss: torch.Tensor
    n_q: torch.Tensor  # [B]


class Codec(nn.Module):
    def __init__(self, cfg: CodecConfig, encoder: Encoder | None = None, decoder: Decoder | None = None,
                 quantizer: ResidualVQ | None = None):
        super().__init__()
        self.cfg = cfg
        self.encoder = encoder or Encoder(cfg)
        self.decoder = decoder or make_decoder(cfg)
        self.quantizer = quantizer or ResidualVQ(cfg.dim, cfg.n_q, cfg.codebook_size, cfg.code_dim,
                                                 dropout_p=cfg.quantizer_dropout)

    # ---- the common tokenizer interface
    sample_rate = property(lambda self: self.cfg.sample_rate)
    frame_rate = property(lambda self: self.cfg.sample_rate // self.cfg.hop)
    cardinality = property(lambda self: self.cfg.codebook_size)
    num_codebooks = property(lambda self: self.cfg.n_q)
    # samples by which decoded audio lags the encoded audio (0 for the conv decoder, 3 hops for the istft one)
    delay = property(lambda self: getattr(self.decoder, "delay", 0))

    def _pad(self, audio: torch.Tensor) -> torch.Tensor:
        if audio.dim() == 2:
            audio = audio[:, None]
        rest = (-audio.shape[-1]) % self.cfg.hop
        return nn.functional.pad(audio, (0, rest))

    def forward(self, audio: torch.Tensor, quantize: bool = True) -> CodecOutput:
        """Training pass. ``quantize=False`` bypasses the RVQ (warm-up: the autoencoder first learns a latent worth
        quantizing; codebooks are then initialised on it with ``quantizer.init_from``)."""
        audio = self._pad(audio)
        z = self.encoder(audio)
        if not quantize:
            zero = z.new_zeros(())
            return CodecOutput(self.decoder(z), z.new_zeros((z.shape[0], 0, z.shape[-1]), dtype=torch.long), zero,
                               torch.zeros(z.shape[0], dtype=torch.long))
        q: QuantizedResult = self.quantizer(z)
        return CodecOutput(self.decoder(q.quantized), q.codes, q.commit_loss, q.n_q)

    @torch.inference_mode()
    def encode(self, audio: torch.Tensor, n_q: int | None = None) -> torch.Tensor:
        """audio: [B, T] or [B, 1, T] at 24 kHz -> codes [B, K, ceil(T / hop)]."""
        return self.quantizer.encode(self.encoder(self._pad(audio)), n_q=n_q)

    @property
    def conditioned(self) -> bool:
        """Whether the decoder also reads semantic ids (``cond`` below: [B, T] per frame, the 25 Hz ids repeated
        twice; None = absent, which it was trained to decode too)."""
        return bool(self.cfg.decoder_cond)

    def _decoder_kwargs(self, cond: torch.Tensor | None) -> dict:
        return {"cond": cond} if self.conditioned else {}

    @torch.inference_mode()
    def decode(self, codes: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """codes [B, K, T] (any K <= n_q levels) -> audio [B, T * hop]."""
        return self.decoder(self.quantizer.decode(codes), **self._decoder_kwargs(cond))[:, 0]

    @torch.inference_mode()
    def reconstruct(self, audio: torch.Tensor, n_q: int | None = None, semantic=None) -> torch.Tensor:
        """Round trip aligned with the input: audio [B, T] -> [B, T] (the decoder's delay removed). ``semantic``: the
        SemanticTokenizer whose ids a conditioned decoder reads (computed from the same audio)."""
        audio = audio[:, 0] if audio.dim() == 3 else audio
        T = audio.shape[-1]
        codes = self.encode(nn.functional.pad(audio, (0, self.delay)), n_q=n_q)
        cond = None
        if self.conditioned and semantic is not None:
            cond = frame_ids(semantic.encode(audio), codes.shape[-1], self.cfg.decoder_cond)
        return self.decode(codes, cond)[:, self.delay: self.delay + T]

    @torch.inference_mode()
    def decode_step(self, codes: torch.Tensor, state: list[torch.Tensor] | None = None,
                    cond: torch.Tensor | None = None):
        """Streaming decode of a chunk of frames: returns (audio [B, Tc * hop], state for the next chunk)."""
        if state is None:
            state = self.decoder.init_state(codes.shape[0], codes.device)
        y, state = self.decoder.step(self.quantizer.decode(codes), state, **self._decoder_kwargs(cond))
        return y[:, 0], state

    # ---- persistence
    def save(self, directory: str | Path) -> None:
        save_model(self, directory, NAME, metadata={"version": self.cfg.version})

    @classmethod
    def load(cls, directory: str | Path, device: str = "cpu") -> Codec:
        model = cls(read_config(CodecConfig, directory, NAME, "codec", "; train with python -m engine.train.codec"))
        model.load_state_dict(load_weights(Path(directory) / WEIGHTS), strict=True)
        return model.to(device).eval()
