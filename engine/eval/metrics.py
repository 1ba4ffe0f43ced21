"""Audio metrics shared by training, evaluation and benchmarks.

``mel_distance`` is the codec metric of the project: for n_fft 512 / 1024 / 2048 (hop n_fft/4, 64 / 80 / 128 mel
bands, power spectrogram), the mean absolute difference of log10(mel + 1e-5), averaged over the three scales.
``frame_changes`` is what the jam and loop benches ask of a join: does it change the sound more than the music does?
"""
from __future__ import annotations

import functools

import numpy as np
import torch
import torchaudio

MEL_SCALES = ((512, 64), (1024, 80), (2048, 128))


@functools.lru_cache(maxsize=16)
def _mel(sr: int, n_fft: int, n_mels: int) -> torchaudio.transforms.MelSpectrogram:
    # cached for training losses too: its window and filters must not be inference tensors even when the first
    # call comes from an evaluation under torch.inference_mode (autograd refuses those later)
    with torch.inference_mode(False):
        return torchaudio.transforms.MelSpectrogram(sample_rate=sr, n_fft=n_fft, hop_length=n_fft // 4, n_mels=n_mels,
                                                    power=2.0, center=True)


def log_mel(x: torch.Tensor, sr: int, n_fft: int, n_mels: int) -> torch.Tensor:
    mel = _mel(sr, n_fft, n_mels).to(x.device)
    return torch.log10(mel(x) + 1e-5)


def mel_distance(ref: torch.Tensor, est: torch.Tensor, sr: int = 24_000, scales=MEL_SCALES) -> torch.Tensor:
    """Multi-scale log-mel L1 between waveforms [..., T] (same length); differentiable, averaged over the batch."""
    n = min(ref.shape[-1], est.shape[-1])
    ref, est = ref[..., :n], est[..., :n]
    return torch.stack([(log_mel(ref, sr, f, m) - log_mel(est, sr, f, m)).abs().mean() for f, m in scales]).mean()


def pitch_track(x, sr: int):
    """PESTO's pitch of a waveform (numpy [T]) every 20 ms -> (MIDI pitch, confidence), numpy arrays."""
    import numpy as np
    import pesto

    _, f0, conf, _ = pesto.predict(torch.from_numpy(x), sr, step_size=20.0)
    return 69 + 12 * np.log2(np.maximum(f0.numpy(), 1e-3) / 440), conf.numpy()


def pitch_agreement(ref, rec, sr: int) -> tuple[int, int]:
    """(frames within half a semitone, frames) of ``rec``'s pitch against ``ref`` (``pitch_track`` of the
    original), over the frames where the original is confidently pitched."""
    import numpy as np

    p_ref, c_ref = ref
    p_rec, _ = pitch_track(rec, sr)
    n = min(len(p_ref), len(p_rec))
    sure = c_ref[:n] > 0.9
    return int(np.sum(np.abs(p_ref[:n][sure] - p_rec[:n][sure]) < 0.5)), int(sure.sum())


def frame_changes(audio: np.ndarray, sr: int = 24_000) -> tuple[np.ndarray, np.ndarray]:
    """Change of each 20 ms frame from the one before: (log-spectrum distance, level step in dB)."""
    hop = sr // 50
    x = np.asarray(audio, dtype=np.float64)
    n = len(x) // hop
    frames = x[: n * hop].reshape(n, hop)
    spec = np.log(np.abs(np.fft.rfft(frames * np.hanning(hop), axis=1)) + 1e-6)
    level = 20 * np.log10(np.sqrt(np.mean(frames ** 2, axis=1)) + 1e-9)
    return np.sqrt(np.mean(np.diff(spec, axis=0) ** 2, axis=1)), np.abs(np.diff(level))
