"""Two codecs on the same test clips, paired: ``python -m engine.eval.bench codecpair --b DIR [--a assets/codec]
[--clips N] [--rows FILE]``. How a retrained codec (e.g. ``engine.train.codec_encoder_tune``'s ``OUT/best``) is
judged on the test split before it replaces the shipped one.

Per clip, for each codec, what ``bench codec`` pools: the project's mel distance of the mix's round trip at 8 and 4
levels (4 and 2 kbps), and PESTO agreement (frames within half a semitone, over the original's confident frames) of
the mix's and of the voice-like rendition's round trips. The summary gives each measure's mean for A and B and the
paired difference B - A (clip mean +- standard error, median), agreement also pooled over frames as ``bench codec``
reports it, the clips where B's mel distance is most worse, and how loud each codec returns two seconds of digital
silence (a tuned encoder once turned a silent lead-in into -50 dBFS hiss). The melody's agreement is also split
(``melody_tallies``) into held notes and the frames within 40 ms of a note change in the original, with the share
of frames an octave (or a twelfth, or two octaves) off: where a codec loses the melody, not only how much. Both codecs' decoders read the
semantic ids of ``--semantic`` when they read any.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .metrics import mel_distance, pitch_agreement, pitch_track

MEASURES = ("mel_8", "mel_4", "agree_mix", "agree_melody", "agree_melody_held", "agree_melody_change",
            "octave_melody")
CHANGE_FRAMES = 2  # PESTO frames (20 ms) either side of a pitch change in the original that count as "a note change"
OCTAVES = (12, 19, 24)  # semitones: octave, twelfth, two octaves (a tracker's or a decoder's harmonic slips)


def _codec(model_dir: Path):
    from ..codec import Codec

    codec = Codec.load(model_dir).eval()
    for p in codec.parameters():
        p.requires_grad_(False)
    return codec


def melody_tallies(ref: tuple[np.ndarray, np.ndarray], rec: np.ndarray) -> dict:
    """The original's ``metrics.pitch_track`` track and the round trip's MIDI pitch per frame -> (hits, frames) tallies over
    the original's confident frames: ``agree_melody`` (within half a semitone, as ``metrics.pitch_agreement``),
    ``agree_melody_held`` / ``agree_melody_change`` (frames farther than / within ``CHANGE_FRAMES`` of a change of more
    than half a semitone in the original) and ``octave_melody`` (frames off by one of ``OCTAVES``, within half a
    semitone)."""
    p_ref, c_ref = ref
    n = min(len(p_ref), len(rec))
    p_ref, sure = p_ref[:n], c_ref[:n] > 0.9
    change = np.zeros(n, bool)
    for s in range(1, CHANGE_FRAMES + 1):
        moved = np.abs(p_ref[s:] - p_ref[:-s]) > 0.5
        change[s:] |= moved
        change[:-s] |= moved
    err = np.abs(rec[:n] - p_ref)
    hit = err < 0.5
    octave = np.any([np.abs(err - k) < 0.5 for k in OCTAVES], axis=0)

    def tally(hits, where):
        return [int((hits & where).sum()), int(where.sum())]

    return {"agree_melody": tally(hit, sure), "agree_melody_held": tally(hit, sure & ~change),
            "agree_melody_change": tally(hit, sure & change), "octave_melody": tally(octave, sure)}


def clip_row(codec, semantic, x: torch.Tensor, ref_mix, voice: torch.Tensor | None = None, ref_voice=None) -> dict:
    """One clip through one codec, as ``bench codec`` scores it: ``x`` [N] the mix, ``voice`` [N'] its rendition at
    the codec's rate (or None); ``ref_*`` the originals' ``metrics.pitch_track`` tracks -> mel distances at 8 and 4 levels
    and (agreeing, confident) frame tallies of the mix's and (``melody_tallies``) the rendition's 8-level round trips."""
    sr = codec.sample_rate
    sem = semantic if codec.conditioned else None
    with torch.no_grad():
        y8 = codec.reconstruct(x[None], semantic=sem)[0]  # aligned: the decoder's fixed delay removed
        row = {"mel_8": float(mel_distance(x, y8)),
               "mel_4": float(mel_distance(x, codec.reconstruct(x[None], n_q=4, semantic=sem)[0])),
               }
        row["agree_mix"] = list(pitch_agreement(ref_mix, y8.numpy(), sr))
        if voice is not None:
            row.update(melody_tallies(ref_voice, pitch_track(codec.reconstruct(voice[None], semantic=sem)[0].numpy(), sr)[0]))
    return row


def silence_rms(codec, seconds: float = 2.0) -> float:
    with torch.no_grad():  # a conditioned decoder without ids decodes with its "no id" embedding
        return float(codec.reconstruct(torch.zeros(1, int(seconds * codec.sample_rate))).pow(2).mean().sqrt())


def _paired(a: list[float], b: list[float]) -> dict:
    d = np.asarray(b) - np.asarray(a)
    se = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("nan")
    return {"a": round(float(np.mean(a)), 4), "b": round(float(np.mean(b)), 4), "diff": round(float(d.mean()), 4),
            "se": round(se, 4), "median_diff": round(float(np.median(d)), 4)}


def summary(rows: list[dict]) -> dict:
    """Rows of {"clip", "a": clip_row, "b": clip_row} -> per-measure paired statistics."""
    out = {"clips": len(rows)}
    for m in MEASURES:
        have = [r for r in rows if m in r["a"] and m in r["b"]]
        if not have:
            continue
        if isinstance(have[0]["a"][m], list):  # (hits, frames) tallies
            have = [r for r in have if r["a"][m][1]]  # clips with confident frames
            per = {s: [r[s][m][0] / r[s][m][1] for r in have] for s in "ab"}
            pooled = {s: round(sum(r[s][m][0] for r in have) / max(1, sum(r[s][m][1] for r in have)), 4)
                      for s in "ab"}
            out[m] = {**_paired(per["a"], per["b"]), "pooled_a": pooled["a"], "pooled_b": pooled["b"],
                      "frames": sum(r["a"][m][1] for r in have), "clips": len(have)}
        else:
            out[m] = _paired([r["a"][m] for r in have], [r["b"][m] for r in have])
    worst = sorted(rows, key=lambda r: r["a"]["mel_8"] - r["b"]["mel_8"])[:3]
    out["worst_mel_8"] = [{"clip": r["clip"], "a": round(r["a"]["mel_8"], 4), "b": round(r["b"]["mel_8"], 4)}
                          for r in worst]
    return out


def run(corpus: Path, n_clips: int, a_dir: Path, b_dir: Path, semantic_dir: Path | None, progress=None) -> dict:
    from ..audio import resample
    from ..data.dataset import CorpusDataset

    codecs = {"a": _codec(a_dir), "b": _codec(b_dir)}
    if codecs["a"].sample_rate != codecs["b"].sample_rate:
        raise ValueError(f"{a_dir} and {b_dir} run at different sample rates")
    semantic = None
    if any(c.conditioned for c in codecs.values()):
        from ..semantic import SemanticTokenizer
        if semantic_dir is None or not Path(semantic_dir).exists():
            raise FileNotFoundError(f"a decoder reads semantic ids: --semantic {semantic_dir} is not a tokenizer")
        semantic = SemanticTokenizer.load(semantic_dir)
    sr = codecs["a"].sample_rate
    ds = CorpusDataset(corpus, "test", load_voice=True)
    if not len(ds):
        raise ValueError(f"{corpus} has no test clips")
    idx = np.linspace(0, len(ds) - 1, min(n_clips, len(ds))).round().astype(int)  # bench codec's clips
    rows = []
    for i in idx:
        ex = ds[int(i)]
        x, ref_mix = torch.from_numpy(ex.audio), pitch_track(ex.audio, sr)
        voice = ref_voice = None
        if ex.voice is not None:
            v = resample(ex.voice, ex.voice_rate, sr).astype(np.float32)
            voice, ref_voice = torch.from_numpy(v), pitch_track(v, sr)
        rows.append({"clip": ex.id,
                     **{s: clip_row(c, semantic, x, ref_mix, voice, ref_voice) for s, c in codecs.items()}})
        if progress:
            progress(len(rows), len(idx))
    out = summary(rows)
    out["silence_rms"] = {s: float(f"{silence_rms(c):.2e}") for s, c in codecs.items()}
    return {"summary": out, "rows": rows}


def markdown(r: dict, a_dir, b_dir, machine: str, day: str) -> str:
    s = r["summary"]
    names = {"mel_8": "mel distance, 4 kbps", "mel_4": "mel distance, 2 kbps", "agree_mix": "PESTO agreement, mix",
             "agree_melody": "PESTO agreement, melody alone", "agree_melody_held": "... on held notes",
             "agree_melody_change": "... within 40 ms of a note change",
             "octave_melody": "melody frames an octave, a twelfth or two octaves off"}
    lines = [f"### Codec pair: A `{a_dir}` against B `{b_dir}`, {day}, {machine}", "",
             (f"{s['clips']} test clips (`bench codec`'s), paired per clip; agreement per clip (pooled over frames in "
              "brackets)."), "",
             "| measure | A | B | B - A, clip mean ± s.e. | median clip |", "| --- | --- | --- | --- | --- |"]
    for m in MEASURES:
        if m not in s:
            continue
        k = s[m]
        if "pooled_a" in k:
            lines.append(f"| {names[m]} ({k['frames']} frames) | {k['a']:.1%} ({k['pooled_a']:.1%}) | {k['b']:.1%} "
                         f"({k['pooled_b']:.1%}) | {k['diff'] * 100:+.1f} ± {k['se'] * 100:.1f} points "
                         f"| {k['median_diff'] * 100:+.1f} |")
        else:
            lines.append(f"| {names[m]} | {k['a']:.4f} | {k['b']:.4f} | {k['diff']:+.4f} ± {k['se']:.4f} "
                         f"| {k['median_diff']:+.4f} |")
    sil = s["silence_rms"]
    lines += ["", f"Digital silence comes back at rms {sil['a']:.1e} (A) and {sil['b']:.1e} (B). Clips where B's "
              "4 kbps mel distance is most worse: " + ", ".join(f"{w['clip']} ({w['a']:.3f} -> {w['b']:.3f})"
                                                              for w in s["worst_mel_8"]) + "."]
    return "\n".join(lines) + "\n"
