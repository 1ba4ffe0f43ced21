"""Drums taken out of made audio, for prompts that refuse them ("a rock song with no drums").

The stages cannot be made to leave drums out (a drummed style's codes bring them), so the decoded audio is cleaned
instead: a small convolutional network reads the log magnitude of the STFT (1024 / 256 at 24 kHz) and gives a mask
in [0, 1] per bin that keeps what is not drums; the mixture's phase is kept. It is trained on the corpus's own
stems (``engine.train.demix``: each drummed clip rendered again as drums alone and as everything else), the input
being the mix after a round trip through the codec, so it learns the audio the generator makes.

``DrumRemover.stream()`` cleans audio chunk by chunk with the same result as the whole clip at once: a frame's mask
reads ``context`` frames on either side, so the output lags the input by that plus a window (0.2 s);
``LiveRemover`` switches the cleaning on and off between the chunks of a live stream (the jam) and ``without_drums``
between a story's segments, with no gap.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .weights import load_weights, read_config, save_model


@dataclass
class DemixConfig:
    n_fft: int = 1024
    hop: int = 256
    channels: int = 24
    dilations: tuple[tuple[int, int], ...] = ((1, 1), (1, 2), (2, 4), (2, 8), (1, 1))  # (frequency, time) per layer
    version: str = "dev"  # what it was trained on: the corpus build and the codec of the round trip


class DrumRemover(nn.Module):
    def __init__(self, cfg: DemixConfig):
        super().__init__()
        self.cfg = cfg
        layers, cin = [], 1
        for df, dt in cfg.dilations:
            layers += [nn.Conv2d(cin, cfg.channels, 3, padding=(df, dt), dilation=(df, dt)), nn.GELU()]
            cin = cfg.channels
        self.body = nn.Sequential(*layers)
        self.out = nn.Conv2d(cfg.channels, 1, 1)
        self.register_buffer("window", torch.hann_window(cfg.n_fft), persistent=False)
        self.onnx = None  # an onnxruntime twin of forward (engine.export.demix_onnx), used by mask() when set

    @property
    def lookahead(self) -> int:
        """Input samples beyond a stretch of audio that its cleaned output waits for (a window and the context)."""
        return self.cfg.n_fft + self.context * self.cfg.hop

    @property
    def context(self) -> int:
        """Frames of the magnitude a frame's mask reads on either side."""
        return sum(dt for _, dt in self.cfg.dilations)

    def forward(self, mag: torch.Tensor) -> torch.Tensor:
        """STFT magnitude [B, F, T] -> the mask that keeps what is not drums [B, F, T]. The +2 starts an untrained
        network near 'keep everything' (sigmoid(2) = 0.88)."""
        h = self.body(torch.log1p(10 * mag)[:, None])
        return torch.sigmoid(self.out(h)[:, 0] + 2.0)

    def mask(self, mag: torch.Tensor) -> torch.Tensor:
        """``forward``, run by onnxruntime when the remover was loaded for it."""
        return self(mag) if self.onnx is None else self.onnx(mag)

    def spectrum(self, audio: torch.Tensor) -> torch.Tensor:
        """[B, n] audio -> its complex STFT [B, F, T], frames as the remover reads them."""
        return torch.stft(audio, self.cfg.n_fft, self.cfg.hop, window=self.window, return_complex=True)

    def save(self, path: str | Path) -> None:
        save_model(self, path, "drums")

    @classmethod
    def load(cls, path: str | Path) -> DrumRemover:
        model = cls(read_config(DemixConfig, path, "drums", "drum remover"))
        model.load_state_dict(load_weights(Path(path) / "drums.safetensors"))
        return model.eval()

    @classmethod
    def load_if_present(cls, path: str | Path, backend: str = "torch", threads: int | None = None) -> DrumRemover | None:
        """The remover in ``path``, or None when the assets ship none (prompts that refuse drums then only steer);
        ``backend`` "onnx": its network run by onnxruntime (exported once per weights, as the stages are)."""
        if not (Path(path) / "drums.json").is_file():
            return None
        model = cls.load(path)
        if backend == "onnx":
            from .export.cache import exported
            from .export.demix_onnx import OnnxMask, export_demix
            model.onnx = OnnxMask(exported("demix", Path(path) / "drums.safetensors",
                                           lambda d: export_demix(model, d)), threads)
        return model

    def remove(self, audio: np.ndarray) -> np.ndarray:
        """A whole clip (float32 mono 24 kHz) without its drums, the same length."""
        s = self.stream()
        return np.concatenate([s.feed(audio), s.flush()])

    def stream(self) -> DemixStream:
        return DemixStream(self)


class DemixStream:
    """Feed audio chunks, get the cleaned audio back as far as it is final; ``flush`` gives the rest at the end.

    Frames are laid over the input with n_fft - hop zeros before it, so every input sample is covered by the same
    number of frames; the masks of frames [done, n - context) are final once n frames exist (the network's receptive
    field is ``context`` frames each side, so a window starting ``context`` frames before them gives exactly what the
    whole clip would), and a sample is final once every frame over it is.
    """

    def __init__(self, model: DrumRemover):
        self.m, c = model, model.cfg
        self.pad = c.n_fft - c.hop
        self.buf = np.zeros(self.pad, dtype=np.float32)  # input from frame ``first``'s start on
        self.first = 0  # the frame buf starts at
        self.done = 0  # frames masked and overlap-added so far
        self.ola = np.zeros(c.n_fft, dtype=np.float32)  # overlap-add from frame ``done``'s start on
        self.skip = self.pad  # leading output samples that are the padding's
        self.norm = float((model.window ** 2).sum() / c.hop)  # a hann window's squares overlap-add to this
        self.left = 0  # input samples fed and not yet given back

    def feed(self, audio: np.ndarray) -> np.ndarray:
        audio = np.asarray(audio, dtype=np.float32)
        self.buf, self.left = np.concatenate([self.buf, audio]), self.left + len(audio)
        return self._give(self._run(final=False))

    def flush(self) -> np.ndarray:
        """The rest of the input, cleaned (the last frames read zeros beyond the end, as the whole clip would)."""
        self.buf = np.concatenate([self.buf, np.zeros(self.m.cfg.n_fft, dtype=np.float32)])
        return self._give(self._run(final=True))

    def _give(self, out: np.ndarray) -> np.ndarray:
        out = out[: self.left]
        self.left -= len(out)
        return out

    @torch.inference_mode()
    def _run(self, final: bool) -> np.ndarray:
        c, ctx = self.m.cfg, self.m.context
        n = self.first + (len(self.buf) - c.n_fft) // c.hop + 1 if len(self.buf) >= c.n_fft else self.first
        upto = n if final else n - ctx  # frames whose masks are final
        if upto <= self.done:
            return np.zeros(0, dtype=np.float32)
        lo = max(self.first, self.done - ctx)  # the window: context frames before the first new one
        seg = torch.from_numpy(self.buf[(lo - self.first) * c.hop:(n - self.first - 1) * c.hop + c.n_fft])
        frames = seg.unfold(0, c.n_fft, c.hop) * self.m.window  # [T, n_fft]
        spec = torch.fft.rfft(frames, dim=-1)  # [T, F]
        mask = self.m.mask(spec.abs().T[None])[0].T
        new = slice(self.done - lo, upto - lo)
        clean = torch.fft.irfft(spec[new] * mask[new], n=c.n_fft, dim=-1) * self.m.window
        k = upto - self.done
        ola = np.concatenate([self.ola, np.zeros(k * c.hop, dtype=np.float32)])
        for i, f in enumerate(clean.numpy()):
            ola[i * c.hop:i * c.hop + c.n_fft] += f
        out, self.ola = ola[: k * c.hop] / self.norm, ola[k * c.hop:]
        self.done = upto
        keep = max(self.first, self.done - ctx)  # input still needed: the next window's left context
        self.buf, self.first = self.buf[(keep - self.first) * c.hop:], keep
        cut = min(self.skip, len(out))
        self.skip -= cut
        return out[cut:].astype(np.float32)


def without_drums(chunks: Iterable[np.ndarray], remover: DrumRemover,
                  refused: Sequence[tuple[int, bool]] = ((0, True),)) -> Iterator[np.ndarray]:
    """Audio chunks -> the same audio with the drums taken out where ``refused`` says: (first sample, whether drums
    are refused from there on) pairs, ascending (a story whose prompts refuse them only in some segments). Pieces come
    as they become final; a first chunk ``lookahead`` longer than the rest gives its own length at once."""
    if not any(on for _, on in refused):  # nothing to take out: the audio as it comes, nothing held
        yield from chunks
        return
    live, pos, i = LiveRemover(remover), 0, 0
    for chunk in chunks:
        while len(chunk):
            while i + 1 < len(refused) and refused[i + 1][0] <= pos:
                i += 1
            n = len(chunk) if i + 1 == len(refused) else min(len(chunk), refused[i + 1][0] - pos)
            yield live(chunk[:n], refused[i][1])
            chunk, pos = chunk[n:], pos + n
    yield live.finish()


class LiveRemover:
    """Drum removal that a live stream (the jam) switches on and off between chunks, with no gap and nothing
    skipped or repeated: ``live(chunk, on)`` -> the audio to play. While on, what plays lags the music by up to
    the remover's look-ahead (0.2 s): the first piece after switching on is that much shorter, the first after
    switching off that much longer (and pieces in between differ from the chunks by up to a hop, where the
    frames fall). A switch fades over XFADE samples. Switched on, the remover first reads the last ``2 x
    lookahead`` samples played, so what it gives from there on is what it would give had it run all along."""

    XFADE = 480  # 20 ms

    def __init__(self, remover: DrumRemover):
        self.remover, self.s = remover, None
        self.history = 2 * remover.lookahead
        self.tail = np.zeros(0, dtype=np.float32)  # the last ``history`` samples of the music
        self.drop = 0  # the stream's output still to drop: the cleaned history
        self.pending = 0  # samples fed to the stream and not yet given back

    def _feed(self, audio: np.ndarray, flush: bool = False) -> np.ndarray:
        out = self.s.feed(audio)
        if flush:
            out = np.concatenate([out, self.s.flush()])
        self.pending += len(audio) - len(out)
        cut = min(self.drop, len(out))
        self.drop -= cut
        return out[cut:]

    def __call__(self, audio: np.ndarray, on: bool) -> np.ndarray:
        audio = np.asarray(audio, dtype=np.float32)
        if on and self.s is None:
            self.s, self.pending, self.drop = self.remover.stream(), 0, len(self.tail)
            self._feed(self.tail)
            out = self._feed(audio)
            out = _fade(audio, out) if len(self.tail) else out  # nothing played yet: nothing to fade from
        elif on:
            out = self._feed(audio)
        elif self.s is not None:  # the cleaned lag first, then the music itself again
            held = self.held  # what the stream still owes of the music played so far
            cleaned = self._feed(audio, flush=True)
            out = np.concatenate([cleaned[:held], _fade(cleaned[held:], audio)])
            self.s = None
        else:
            out = audio
        self.tail = np.concatenate([self.tail, audio])[-self.history:]
        return out

    @property
    def held(self) -> int:
        """Samples of the music played into it and not yet given back (the lag, while on)."""
        return self.pending - self.drop if self.s is not None else 0

    def finish(self) -> np.ndarray:
        """At the end of the music: what is still held back, cleaned."""
        if self.s is None:
            return np.zeros(0, dtype=np.float32)
        out, self.s = self._feed(np.zeros(0, dtype=np.float32), flush=True), None
        return out


def _fade(a: np.ndarray, b: np.ndarray, n: int = LiveRemover.XFADE) -> np.ndarray:
    """``b`` with its first samples faded in from ``a``'s (the two aligned at their starts)."""
    out = b.copy()
    n = min(n, len(a), len(b))
    w = np.linspace(0, 1, n, endpoint=False, dtype=np.float32)
    out[:n] = a[:n] * (1 - w) + b[:n] * w
    return out
