"""The codec and hum-tracker benchmarks behind ``python -m engine.eval.bench codec`` and ``... melody``.

codec: on the corpus test split, the project's multi-scale log-mel distance of Cantus at 2 and 4 kbps against
libopus (ffmpeg) at 6, 12 and 24 kbps on the same clips; pitch agreement of the reconstruction with the original
(PESTO on both, frames where the original is confidently pitched), on the mix and on the clip's monophonic voice-like
rendition of its melody (a melody alone; PESTO is a
monophonic tracker, so on a mix it follows whichever note dominates), for Cantus and for Opus at each bitrate, so
the pitch target is read against a reference codec on the same frames; codebook usage and perplexity per level;
and encode + decode speed of onnxruntime and eager torch on the same 10 s, in one run.

melody: the hum tracker (``engine.melody``) on the test split's voice-like renditions (hummed, whistled or sung, with
vibrato and detuning): the share of the score's voiced frames whose tracked 25 Hz token (pitch class) is the score's,
over all clips and per voice; tracked-as-unvoiced counts as a miss.
"""
from __future__ import annotations

import platform
import shutil
import subprocess
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from ..audio import resample
from .metrics import mel_distance, pitch_agreement, pitch_track


def opus_roundtrip(x: np.ndarray, sr: int, kbps: float) -> np.ndarray:
    if shutil.which("ffmpeg") is None:
        raise RuntimeError("ffmpeg is needed for the Opus reference: sudo apt-get install ffmpeg")
    with tempfile.TemporaryDirectory() as d:
        src, enc, dec = Path(d) / "in.wav", Path(d) / "x.opus", Path(d) / "out.wav"
        sf.write(src, x, sr, subtype="PCM_16")
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(src), "-c:a", "libopus", "-b:a", f"{kbps}k",
                        str(enc)], check=True)
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(enc), "-ar", str(sr), "-ac", "1", str(dec)], check=True)
        y, _ = sf.read(dec, dtype="float32")
    return _align(x, y)


def _align(x: np.ndarray, y: np.ndarray, max_lag: int = 2000) -> np.ndarray:
    """Shift y by the lag (|lag| <= max_lag) that best matches x, then trim/pad to len(x)."""
    n = min(len(x), len(y), 48_000)
    c = np.correlate(y[: n + max_lag], x[:n], mode="valid") if len(y) >= n + max_lag else None
    lag = int(np.argmax(c)) if c is not None else 0
    y = y[lag:]
    return np.pad(y, (0, max(0, len(x) - len(y))))[: len(x)]


OPUS_KBPS = (6, 12, 24)


def _add(tally: list[int], counts: tuple[int, int]) -> None:
    tally[0] += counts[0]
    tally[1] += counts[1]


def bench_codec(corpus: Path, n_clips: int, model_dir: Path, onnx_dir: Path | None) -> dict:
    from ..codec import Codec
    from ..data.dataset import CorpusDataset
    from .codec_pair import clip_row

    torch.set_num_threads(2)
    codec = Codec.load(model_dir)
    semantic = None  # a decoder that reads semantic ids gets those of each clip (25 Hz x 9 bits: +225 bit/s)
    if codec.conditioned:
        from ..semantic import SemanticTokenizer
        semantic = SemanticTokenizer.load(Path(model_dir).parent / "semantic")
    ds = CorpusDataset(corpus, "test", load_voice=True)
    idx = np.linspace(0, len(ds) - 1, min(n_clips, len(ds))).round().astype(int)
    sr = codec.sample_rate
    systems = ["cantus", *(f"opus_{k}kbps" for k in OPUS_KBPS)]
    dist = {f"opus_{k}kbps": [] for k in OPUS_KBPS}
    dist.update({"cantus_2kbps": [], "cantus_4kbps": []})
    pitch = {s: {"mix": [0, 0], "melody": [0, 0]} for s in systems}  # (agreeing frames, frames) per system
    codes_all = []
    for i in idx:
        ex = ds[int(i)]
        x = ex.audio
        xt = torch.from_numpy(x)
        ref = pitch_track(x, sr)
        for k in OPUS_KBPS:
            y = opus_roundtrip(x, sr, k)
            dist[f"opus_{k}kbps"].append(float(mel_distance(xt, torch.from_numpy(y))))
            _add(pitch[f"opus_{k}kbps"]["mix"], pitch_agreement(ref, y, sr))
        codes_all.append(codec.encode(xt[None])[0])
        v = ref_v = None
        if ex.voice is not None:
            v = resample(ex.voice, ex.voice_rate, sr).astype(np.float32)
            ref_v = pitch_track(v, sr)
            for k in OPUS_KBPS:
                _add(pitch[f"opus_{k}kbps"]["melody"], pitch_agreement(ref_v, opus_roundtrip(v, sr, k), sr))
        row = clip_row(codec, semantic, xt, ref, None if v is None else torch.from_numpy(v), ref_v)
        dist["cantus_4kbps"].append(row["mel_8"])
        dist["cantus_2kbps"].append(row["mel_4"])
        for part, key in (("mix", "agree_mix"), ("melody", "agree_melody")):
            for j, n in enumerate(row.get(key, (0, 0))):
                pitch["cantus"][part][j] += n
    codes_all = torch.cat(codes_all, -1)  # [K, T]
    usage, perplexity = [], []
    for k in range(codes_all.shape[0]):
        counts = torch.bincount(codes_all[k], minlength=codec.cardinality).float()
        p = counts / counts.sum()
        usage.append(float((counts > 0).float().mean()))
        perplexity.append(float(torch.exp(-(p[p > 0] * p[p > 0].log()).sum())))

    def share(t: list[int]) -> float:
        return round(t[0] / max(1, t[1]), 4)

    speed = _speed(codec, onnx_dir)
    return {"clips": len(idx), "semantic_ids": semantic is not None,
            "mel_distance": {k: round(float(np.mean(v)), 4) for k, v in dist.items()},
            "pitch_agreement": share(pitch["cantus"]["mix"]), "pitch_frames": pitch["cantus"]["mix"][1],
            "melody_pitch_agreement": share(pitch["cantus"]["melody"]),
            "melody_pitch_frames": pitch["cantus"]["melody"][1],
            "opus_pitch_agreement": {f"{k}kbps": {part: share(pitch[f"opus_{k}kbps"][part]) for part in ("mix", "melody")}
                                     for k in OPUS_KBPS},
            "codebook_usage": [round(u, 3) for u in usage], "codebook_perplexity": [round(p, 1) for p in perplexity],
            **speed}


def _speed(codec, onnx_dir: Path | None, seconds: float = 10.0, repeats: int = 3) -> dict:
    x = torch.randn(1, int(seconds * codec.sample_rate)) * 0.1
    def best(fn):
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return min(times)
    t_torch = best(lambda: codec.decode(codec.encode(x)))
    out = {"torch_x_realtime": round(seconds / t_torch, 1)}
    if onnx_dir is not None:
        from ..export.codec_onnx import OnnxCodec, export_codec

        if not (onnx_dir / "codec_decoder.onnx").exists():
            export_codec(codec, onnx_dir)
        oc = OnnxCodec(onnx_dir, threads=2)
        xn = x.numpy()
        t_onnx = best(lambda: oc.decode(oc.encode(xn)))
        out.update(onnx_x_realtime=round(seconds / t_onnx, 1), onnx_vs_torch=round(t_torch / t_onnx, 2))
    return out


def bench_melody(corpus: Path, n_clips: int) -> dict:
    from tqdm import tqdm

    from ..data.dataset import CorpusDataset
    from ..melody import MelodyError, melody_from_audio, tokens_from_midi
    ds = CorpusDataset(str(corpus), "test", load_voice=True)
    tally: dict[str, list[int]] = {}
    failed = 0
    for i in tqdm(range(min(n_clips, len(ds))), desc="tracking renditions"):
        ex, r = ds[i], ds.records[i]
        want = tokens_from_midi(np.asarray(r["melody"]["track"], dtype=float))
        voiced = want > 0
        try:
            got = melody_from_audio(ex.voice, ex.voice_rate).tokens
        except MelodyError:
            got, failed = np.zeros(0, dtype=want.dtype), failed + 1
        got = np.pad(got[: len(want)], (0, max(0, len(want) - len(got))))
        t = tally.setdefault(r["voice_info"]["kind"], [0, 0])
        t[0] += int((got[voiced] == want[voiced]).sum())
        t[1] += int(voiced.sum())
    hits, total = sum(t[0] for t in tally.values()), sum(t[1] for t in tally.values())
    return {"clips": min(n_clips, len(ds)), "voiced_frames": total, "pitch_class_agreement": round(hits / total, 4),
            "by_voice": {v: round(h / n, 4) for v, (h, n) in sorted(tally.items())}, "no_melody_errors": failed}


def markdown_melody(r: dict) -> str:
    return "\n".join([f"## Hum tracker ({date.today().isoformat()}, {platform.machine()}, "
                      f"`python -m engine.eval.bench melody --clips {r['clips']}`)", "",
                      f"- test-split voice renditions: tracked pitch class = score's on {r['pitch_class_agreement']:.1%} "
                      f"of {r['voiced_frames']} voiced frames (target 85%); "
                      + ", ".join(f"{v} {x:.1%}" for v, x in r["by_voice"].items())
                      + f"; {r['no_melody_errors']} recordings rejected as 'no melody'", ""])


def markdown(r: dict, model_dir: Path) -> str:
    md, op = r["mel_distance"], r["opus_pitch_agreement"]
    lines = [f"## Codec ({date.today().isoformat()}, {platform.machine()}, {platform.processor() or 'cpu'}, "
             f"`python -m engine.eval.bench codec --clips {r['clips']}`, model {model_dir})", "",
             "| system | bitrate | multi-scale log-mel distance (lower is better) | pitch agreement, mix "
             "| pitch agreement, melody alone |", "| --- | --- | --- | --- | --- |"]
    for k in OPUS_KBPS:
        lines.append(f"| Opus (libopus) | {k}kbps | {md[f'opus_{k}kbps']:.3f} | {op[f'{k}kbps']['mix']:.1%} "
                     f"| {op[f'{k}kbps']['melody']:.1%} |")
    lines += [f"| Cantus, 4 levels | 2kbps | {md['cantus_2kbps']:.3f} | | |",
              f"| Cantus, 8 levels | 4kbps | {md['cantus_4kbps']:.3f} | {r['pitch_agreement']:.1%} "
              f"| {r['melody_pitch_agreement']:.1%} |"]
    lines += ["", f"- pitch agreement with the original (PESTO, frames where the original is confidently pitched): "
                  f"{r['pitch_frames']} frames of the mix; {r['melody_pitch_frames']} frames of the melody alone "
                  f"(voice-like renditions)",
              f"- codebook usage per level: {', '.join(f'{u:.0%}' for u in r['codebook_usage'])}; perplexity "
              f"{', '.join(str(p) for p in r['codebook_perplexity'])}",
              f"- encode + decode speed on 10 s, 2 threads: torch {r['torch_x_realtime']}x real time"
              + (f", onnxruntime {r['onnx_x_realtime']}x ({r['onnx_vs_torch']}x torch)" if "onnx_x_realtime" in r else ""),
              ""]
    return "\n".join(lines)
