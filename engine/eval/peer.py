"""Speed against a peer on this CPU: MusicGen-small vs Cantus generating the same duration, in one process.

``python -m engine.eval.peer [--seconds 10] [--append BENCHMARKS.md]``

The peer is the MusicGen-small architecture built from its published configuration (T5-base text encoder, a
24-layer 1024-wide decoder over 4 EnCodec codebooks of 2048 with the delay pattern, 32 kHz EnCodec at 50 Hz),
with seeded random weights: sampling cost does not depend on weight values, and nothing is downloaded. It generates
``seconds * 50`` frames with classifier-free guidance 3 and top-k 250 (its defaults), then decodes them with EnCodec;
a random 12-token text stands in for a tokenised prompt. Cantus runs its default backend (onnxruntime), warmed up,
with its default guidance. Each system runs once more after a short warm-up; times are wall clock.
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from datetime import date
from pathlib import Path

import torch

from .. import Cantus, Request, Segment, Settings


def musicgen_small():
    from transformers import (
        EncodecConfig,
        MusicgenConfig,
        MusicgenDecoderConfig,
        MusicgenForConditionalGeneration,
        T5Config,
    )
    text = T5Config(d_model=768, d_ff=3072, num_layers=12, num_heads=12, d_kv=64, vocab_size=32128)
    audio = EncodecConfig(sampling_rate=32_000, audio_channels=1, num_filters=64, upsampling_ratios=[8, 5, 4, 4],
                          codebook_size=2048, codebook_dim=128, hidden_size=128, num_lstm_layers=2,
                          target_bandwidths=[2.2], norm_type="weight_norm", use_causal_conv=False,
                          pad_mode="reflect", normalize=False, compress=2, trim_right_ratio=1.0)
    decoder = MusicgenDecoderConfig(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, ffn_dim=4096,
                                    num_codebooks=4, vocab_size=2048, max_position_embeddings=2048)
    cfg = MusicgenConfig(text_encoder=text.to_dict(), audio_encoder=audio.to_dict(), decoder=decoder.to_dict())
    torch.manual_seed(0)
    model = MusicgenForConditionalGeneration(cfg).eval()
    model.generation_config.pad_token_id = model.generation_config.decoder_start_token_id = 2048
    return model


def _musicgen_run(model, seconds: float) -> float:
    frames = int(seconds * 50) + 3  # the delay pattern needs K - 1 = 3 steps beyond the audio frames
    ids = torch.randint(0, 32_000, (1, 12), generator=torch.Generator().manual_seed(0))
    t = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=True, top_k=250,
                             guidance_scale=3.0, max_new_tokens=frames, min_new_tokens=frames)
    elapsed = time.perf_counter() - t
    assert out.shape[-1] >= int(seconds * 32_000 * 0.9), out.shape  # the decoded audio is really that long
    return elapsed


def _cantus_run(model: Cantus, seconds: float) -> float:
    t = time.perf_counter()
    audio = model.generate(Request([Segment("a calm folk tune on the flute", seconds)], Settings(duration=seconds)))
    assert len(audio) >= int(seconds * 24_000 * 0.99)
    return time.perf_counter() - t


def compare(seconds: float = 10.0, assets: str = "assets") -> dict:
    cantus = Cantus.load(assets)
    cantus.warm_up()
    peer = musicgen_small()
    n_params = sum(p.numel() for p in peer.parameters())
    _musicgen_run(peer, 0.5)
    c = _cantus_run(cantus, seconds)
    m = _musicgen_run(peer, seconds)
    return {"seconds": seconds, "cantus_s": c, "musicgen_s": m, "cantus_rtf": c / seconds, "musicgen_rtf": m / seconds,
            "speedup": m / c, "musicgen_params_m": n_params / 1e6, "threads": torch.get_num_threads()}


def markdown(r: dict) -> str:
    return "\n".join([
        f"\n## Speed against a peer — {date.today()}, {platform.machine()}, {r['threads']} threads\n",
        f"`python -m engine.eval.peer --seconds {r['seconds']:.0f}`: both systems generate {r['seconds']:.0f} s in one "
        "process (MusicGen-small architecture with random weights, guidance 3, top-k 250; Cantus on onnxruntime).\n",
        "| system | parameters | time | real-time factor |", "| --- | --- | --- | --- |",
        f"| MusicGen-small (transformers) | {r['musicgen_params_m']:.0f}M | {r['musicgen_s']:.1f} s | {r['musicgen_rtf']:.2f} |",
        f"| Cantus | see assets/MODEL_CARD.md | {r['cantus_s']:.1f} s | {r['cantus_rtf']:.2f} |",
        f"\nCantus is {r['speedup']:.1f}x faster on this CPU.\n",
    ])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m engine.eval.peer", description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--assets", default="assets")
    ap.add_argument("--append", type=Path, default=None, help="append the markdown table to this file")
    a = ap.parse_args(argv)
    r = compare(a.seconds, a.assets)
    text = markdown(r)
    print(text)
    if a.append:
        with open(a.append, "a") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
