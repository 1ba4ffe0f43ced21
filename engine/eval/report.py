"""The evaluation report: ``python -m engine.eval.report --out docs/eval/ [--corpus runs/corpus10h] [--clips 24]``.

A fixed evaluation set (``--clips`` test clips evenly spaced through the test split; each clip's first caption is
the prompt, the clip index is the seed, 10 s each) is generated text-only, and the first ``--hums`` of them again
with the clip's voice-like rendition as the hum. The report (``report.md``, plots ``*.png``, numbers
``report.json``) holds:

- MuLan cycle consistency (MusicLM's MCC): cosine of the prompt's MuLan text embedding with the generated audio's
  embedding, and the same for the real clips of those prompts.
- Fréchet distance of generated vs real test clips on two embeddings: MuLan's audio tower (used by generation) and
  an attribute tagger trained on real corpus audio (``engine.eval.tagger``, not used by generation). The real set
  is the whole test split; the "real" row scores the eval clips' own real audio the same way, the floor one can
  expect at this sample size.
- KLD (MusicLM's): KL(tagger posterior on the real clip || on the clip generated from its caption), per tag, mean.
- Melody: dominant pitch class of the output = hummed one, and chroma cosine, with the hum vs text alone.
- Tempo (librosa beat tracker, within 8%) for prompts that name a BPM; key (Krumhansl key-profile estimate) for
  prompts that name a key (tonic and mode) or only a mode.
- Codec vs Opus on test clips (``engine.eval.codec_bench.bench_codec``) and speed (``engine.eval.generation.speed``).

Every number is printed next to the one in the previous ``report.json`` found in ``--out``, which is then replaced.
"""
from __future__ import annotations

import argparse
import json
import platform
import re
import sys
from datetime import date
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .. import Cantus, GenerationError, Request, Segment, Settings
from ..analysis import detect_key
from ..data.dataset import CorpusDataset
from ..melody import melody_from_audio
from . import tagger as tagger_mod
from .generation import melody_match, speed, tempo_ok

NOTE = {"C": 0, "C#": 1, "Db": 1, "D": 2, "D#": 3, "Eb": 3, "E": 4, "F": 5, "F#": 6, "Gb": 6, "G": 7, "G#": 8,
        "Ab": 8, "A": 9, "A#": 10, "Bb": 10, "B": 11}


def frechet(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to the rows of a and b."""
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    # tr sqrt(s1 s2) = sum of sqrt eigenvalues of the PSD matrix r s2 r with r = sqrt(s1): stable when s1 is singular
    # (fewer clips than dimensions, as here)
    w, v = np.linalg.eigh(s1)
    r = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    tr_covmean = np.sqrt(np.clip(np.linalg.eigvalsh(r @ s2 @ r), 0, None)).sum()
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * tr_covmean)


def asked_key(prompt: str) -> tuple[int | None, str | None]:
    """The tonic and mode a prompt names ("in the key of Bb major"; "in a minor key" names the mode only)."""
    m = re.search(r"\b([A-G][b#]?) (major|minor)\b", prompt)
    if m:
        return NOTE[m.group(1)], m.group(2)
    m = re.search(r"\b(major|minor) key\b", prompt)
    return (None, m.group(1)) if m else (None, None)


def asked_bpm(prompt: str) -> float | None:
    m = re.search(r"(\d{2,3}) ?(?:bpm|beats per minute)", prompt.lower())
    return float(m.group(1)) if m else None


def evaluate(corpus: Path, assets: str, n_clips: int, n_hums: int, codec_clips: int, seconds: float = 10.0,
             cache: Path = Path("runs/eval")) -> dict:
    model = Cantus.load(assets)
    model.warm_up()
    tag, tag_acc = tagger_mod.train(corpus, cache)
    ds = CorpusDataset(corpus, "test", load_voice=True)
    idx = np.linspace(0, len(ds) - 1, min(n_clips, len(ds))).round().astype(int)
    rows = []
    for n, i in enumerate(tqdm(idx, desc="generating the evaluation set")):
        ex = ds[int(i)]
        prompt = ex.captions[0]
        s = Settings(duration=seconds, seed=int(i))
        gen = model.generate(Request([Segment(prompt, seconds)], s))
        text = model.mulan.embed_text([prompt])[0]
        r = {"id": ex.id, "prompt": prompt, "seed": int(i), "tags": ex.tags,
             "mulan_real": model.mulan.embed_audio(ex.audio, 24_000), "mulan_gen": model.mulan.embed_audio(gen, 24_000),
             "feat_real": tagger_mod.features(ex.audio), "feat_gen": tagger_mod.features(gen)}
        r["mcc_real"], r["mcc_gen"] = float(r["mulan_real"] @ text), float(r["mulan_gen"] @ text)
        bpm = asked_bpm(prompt)
        if bpm:
            r["tempo_ok"] = tempo_ok(gen, bpm)
            r["tempo_ok_real"] = tempo_ok(ex.audio, bpm)  # the beat tracker's own ceiling on these clips
        tonic, mode = asked_key(prompt)
        if mode:
            est_tonic, est_mode = detect_key(gen)
            r["mode_ok"] = est_mode == mode
            if tonic is not None:
                r["key_ok"] = est_mode == mode and est_tonic == tonic
        if n < n_hums:
            try:
                hum = melody_from_audio(ex.voice, ex.voice_rate).tokens
                with_m = model.generate(Request([Segment(prompt, seconds)], s, melody=hum))
                r["melody"] = melody_match(with_m, hum)[:2]
                r["melody_text_only"] = melody_match(gen, hum)[:2]
            except GenerationError as e:
                r["melody_error"] = str(e)
        rows.append(r)

    # real test split, on both embeddings
    real_mulan, real_feat = [], []
    for i in tqdm(range(len(ds)), desc="embedding the real test split"):
        a = ds[i].audio
        real_mulan.append(model.mulan.embed_audio(a, 24_000).numpy())
    real_mulan = np.stack(real_mulan)
    real_feat, _real_tags = tagger_mod.split_features(corpus, "test", cache)
    with torch.inference_mode():
        tag.eval()
        def emb(x):
            return tag.embed(x).numpy()
        real_tag_emb = emb(real_feat)
        gen_tag_emb = emb(torch.stack([r["feat_gen"] for r in rows]))
        own_tag_emb = emb(torch.stack([r["feat_real"] for r in rows]))
        p_real = tag.probs(torch.stack([r["feat_real"] for r in rows]))
        p_gen = tag.probs(torch.stack([r["feat_gen"] for r in rows]))
    kld = {t: float((p_real[t] * (p_real[t].clamp_min(1e-8).log() - p_gen[t].clamp_min(1e-8).log())).sum(-1).mean())
           for t in tagger_mod.TAGS}
    dist = {t: {"real": p_real[t].mean(0).tolist(), "generated": p_gen[t].mean(0).tolist(), "classes": tag.classes[t]}
            for t in tagger_mod.TAGS}

    def mean_of(key, j=None):
        v = [r[key] if j is None else r[key][j] for r in rows if key in r]
        return (float(np.nanmean(v)) if len(v) else None), len(v)

    res = {"clips": len(rows), "seconds": seconds, "tagger_test_accuracy": tag_acc}
    res["mcc_generated"], _ = mean_of("mcc_gen")
    res["mcc_real"], _ = mean_of("mcc_real")
    res["mcc_ratio"] = res["mcc_generated"] / res["mcc_real"]
    res["fd_mulan_generated"] = frechet(np.stack([r["mulan_gen"].numpy() for r in rows]), real_mulan)
    res["fd_mulan_real"] = frechet(np.stack([r["mulan_real"].numpy() for r in rows]), real_mulan)
    res["fd_tagger_generated"] = frechet(gen_tag_emb, real_tag_emb)
    res["fd_tagger_real"] = frechet(own_tag_emb, real_tag_emb)
    res["kld"] = float(np.mean(list(kld.values())))
    res["kld_per_tag"] = kld
    res["melody_hit"], res["melody_clips"] = mean_of("melody", 0)
    res["melody_hit_text_only"], _ = mean_of("melody_text_only", 0)
    res["melody_chroma_cos"], _ = mean_of("melody", 1)
    res["melody_chroma_cos_text_only"], _ = mean_of("melody_text_only", 1)
    res["tempo_within_8pct"], res["tempo_prompts"] = mean_of("tempo_ok")
    res["tempo_within_8pct_real"], _ = mean_of("tempo_ok_real")
    res["mode_match"], res["mode_prompts"] = mean_of("mode_ok")
    res["key_match"], res["key_prompts"] = mean_of("key_ok")
    res["tag_distributions"] = dist
    res["per_clip"] = [{k: v for k, v in r.items() if k in ("id", "prompt", "seed", "mcc_gen", "mcc_real", "tempo_ok",
                                                          "mode_ok", "key_ok", "melody", "melody_text_only")}
                       for r in rows]
    if codec_clips:
        from .codec_bench import bench_codec
        c = bench_codec(corpus, codec_clips, Path(assets) / "codec", None)
        res["codec"] = {"clips": c["clips"], **c["mel_distance"], "pitch_agreement": c["pitch_agreement"],
                        "opus_12kbps_pitch_agreement": c["opus_pitch_agreement"]["12kbps"]["mix"]}
    res["speed"] = {k: v for k, v in speed(assets, seconds, repeats=2).items() if isinstance(v, float)}
    return res


# ------------------------------------------------------------------------------------------------ writing
HEADLINE = [  # (key path, label, format, better: "low" | "high" | None)
    ("mcc_ratio", "MuLan cycle consistency, generated / real", "{:.3f}", "high"),
    ("mcc_generated", "MCC of generated clips", "{:.3f}", "high"),
    ("mcc_real", "MCC of the real clips", "{:.3f}", None),
    ("fd_mulan_generated", "Fréchet distance, MuLan embedding: generated vs real", "{:.4f}", "low"),
    ("fd_mulan_real", "Fréchet distance, MuLan embedding: real eval clips vs real (floor)", "{:.4f}", None),
    ("fd_tagger_generated", "Fréchet distance, tagger embedding: generated vs real", "{:.2f}", "low"),
    ("fd_tagger_real", "Fréchet distance, tagger embedding: real eval clips vs real (floor)", "{:.2f}", None),
    ("kld", "KLD of tagger posteriors, real || generated (mean of 4 tags)", "{:.3f}", "low"),
    ("melody_hit", "dominant pitch class = hummed, with the hum", "{:.3f}", "high"),
    ("melody_hit_text_only", "dominant pitch class = hummed, text only", "{:.3f}", None),
    ("melody_chroma_cos", "chroma cosine with the hum, with the hum", "{:.3f}", "high"),
    ("melody_chroma_cos_text_only", "chroma cosine with the hum, text only", "{:.3f}", None),
    ("tempo_within_8pct", "tempo within 8% of the prompt's BPM", "{:.3f}", "high"),
    ("tempo_within_8pct_real", "the same for the real clips (beat tracker's ceiling)", "{:.3f}", None),
    ("mode_match", "estimated mode = the prompt's", "{:.3f}", "high"),
    ("key_match", "estimated key = the prompt's", "{:.3f}", "high"),
    ("codec.opus_12kbps", "codec: Opus 12 kbps mel distance", "{:.3f}", None),
    ("codec.cantus_4kbps", "codec: Cantus 4 kbps mel distance", "{:.3f}", "low"),
    ("codec.opus_12kbps_pitch_agreement", "codec: Opus 12 kbps pitch agreement with the original", "{:.3f}", None),
    ("codec.pitch_agreement", "codec: Cantus 4 kbps pitch agreement with the original", "{:.3f}", "high"),
    ("speed.rtf", "real-time factor (onnxruntime, warm)", "{:.3f}", "low"),
    ("speed.first_chunk_s", "first streamed chunk, s", "{:.2f}", "low"),
    ("speed.onnx_speedup", "onnxruntime speed-up over torch", "{:.2f}", "high"),
]


def _get(d: dict | None, path: str):
    for k in path.split("."):
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def plots(res: dict, out: Path) -> list[str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = []
    dist = res["tag_distributions"]
    fig, axes = plt.subplots(1, len(dist), figsize=(4.2 * len(dist), 3.6))
    for ax, (t, d) in zip(np.atleast_1d(axes), dist.items()):
        x = np.arange(len(d["classes"]))
        ax.bar(x - 0.2, d["real"], 0.4, label="real")
        ax.bar(x + 0.2, d["generated"], 0.4, label="generated")
        ax.set_xticks(x, d["classes"], rotation=70, fontsize=7)
        ax.set_title(f"tagger: {t}")
    np.atleast_1d(axes)[0].legend()
    fig.tight_layout()
    fig.savefig(out / "tags.png", dpi=90)
    names.append("tags.png")
    plt.close(fig)

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    pairs = [("MCC", res["mcc_real"], res["mcc_generated"], "real", "generated"),
             ("dominant pitch class = hum", res["melody_hit"], res["melody_hit_text_only"], "with hum", "text only"),
             ("chroma cosine with hum", res["melody_chroma_cos"], res["melody_chroma_cos_text_only"], "with hum",
              "text only")]
    for ax, (title, a, b, la, lb) in zip(axes, pairs):
        ax.bar([la, lb], [a or 0, b or 0], color=["tab:blue", "tab:orange"])
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(out / "conditioning.png", dpi=90)
    names.append("conditioning.png")
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    if "codec" in res:
        keys = [k for k in ("opus_6kbps", "opus_12kbps", "opus_24kbps", "cantus_2kbps", "cantus_4kbps") if k in res["codec"]]
        axes[0].bar(keys, [res["codec"][k] for k in keys], color=["gray"] * 3 + ["tab:blue"] * 2)
        axes[0].set_title("codec: multi-scale log-mel distance (lower is better)")
        axes[0].tick_params(axis="x", rotation=30)
    sp = res["speed"]
    axes[1].bar(["onnxruntime", "torch"], [sp["onnx_generate_s"], sp["torch_generate_s"]])
    axes[1].axhline(res["seconds"], color="k", ls="--", lw=1, label="real time")
    axes[1].set_title(f"seconds to generate {res['seconds']:.0f} s")
    axes[1].legend()
    fig.tight_layout()
    fig.savefig(out / "codec_speed.png", dpi=90)
    names.append("codec_speed.png")
    plt.close(fig)
    return names


def markdown(res: dict, prev: dict | None, images: list[str]) -> str:
    lines = [f"# Cantus evaluation report — {res['date']}", "",
             f"{res['machine']}; assets: " + ", ".join(f"{k} {v}" for k, v in res["versions"].items()) + ".",
             f"Evaluation set: {res['clips']} test clips x {res['seconds']:g} s (prompt = first caption, seed = clip "
             f"index); {res['melody_clips']} hummed; {res['tempo_prompts']} prompts name a BPM, {res['mode_prompts']} a "
             f"mode, {res['key_prompts']} a key. Made by `python -m engine.eval.report` (its docstring defines every "
             "number).", "",
             "| measure | now | previous report |", "| --- | --- | --- |"]
    for path, label, fmt, better in HEADLINE:
        now, before = _get(res, path), _get(prev, path)
        def f(x):
            return ("n/a" if x is None else fmt.format(x))
        trend = ""
        if better and now is not None and before is not None and fmt.format(now) != fmt.format(before):
            improved = (now < before) if better == "low" else (now > before)
            trend = " (better)" if improved else " (worse)"
        lines.append(f"| {label} | {f(now)} | {f(before) if prev else '—'}{trend} |")
    acc = res["tagger_test_accuracy"]
    lines += ["", "The tagger's accuracy on real test clips (how far its posteriors can be trusted): " +
              ", ".join(f"{t} {v:.2f}" for t, v in acc.items()) + ".", "",
              "KLD per tag: " + ", ".join(f"{t} {v:.3f}" for t, v in res["kld_per_tag"].items()) + ".", ""]
    lines += [f"![{n}]({n})" for n in images]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m engine.eval.report", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("docs/eval"))
    ap.add_argument("--corpus", type=Path, default=Path("runs/corpus10h"))
    ap.add_argument("--assets", default="assets")
    ap.add_argument("--clips", type=int, default=24)
    ap.add_argument("--hums", type=int, default=6)
    ap.add_argument("--codec-clips", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=10.0, help="length of each generated clip")
    ap.add_argument("--cache", type=Path, default=Path("runs/eval"), help="tagger features are cached here")
    a = ap.parse_args(argv)
    try:
        CorpusDataset(a.corpus, "test")
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    res = evaluate(a.corpus, a.assets, a.clips, a.hums, a.codec_clips, a.seconds, a.cache)
    res["date"] = str(date.today())
    res["machine"] = f"{platform.machine()}, {torch.get_num_threads()} threads"
    res["versions"] = {d: json.loads((Path(a.assets) / d / f"{d}.json").read_text()).get("version", "?")
                       for d in ("codec", "mulan", "semantic")}
    codec_cfg = json.loads((Path(a.assets) / "codec" / "codec.json").read_text())
    res["versions"].update({f"codec {part}": codec_cfg[f"{part}_version"] for part in ("encoder", "decoder")
                            if codec_cfg.get(f"{part}_version")})
    res["versions"].update({f"{n} stage": f"{json.loads((Path(a.assets) / 'stages' / f'{n}.metrics.json').read_text())['step']} steps"
                            for n in ("semantic", "coarse", "fine") if (Path(a.assets) / "stages" / f"{n}.metrics.json").exists()})
    a.out.mkdir(parents=True, exist_ok=True)
    prev_path = a.out / "report.json"
    prev = json.loads(prev_path.read_text()) if prev_path.exists() else None
    images = plots(res, a.out)
    (a.out / "report.md").write_text(markdown(res, prev, images))
    tmp = a.out / "report.json.tmp"
    tmp.write_text(json.dumps(res, indent=1, default=float))
    tmp.replace(prev_path)
    print(f"wrote {a.out / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
