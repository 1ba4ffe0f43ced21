"""``python -m engine.codec roundtrip IN OUT [--levels K] [--model DIR] [--semantic DIR]``: encode and decode a file
to hear the codec. A decoder that reads semantic ids gets those of the file, from the tokenizer beside the codec
(``DIR/../semantic``) unless ``--semantic`` names another."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import soundfile as sf
import torch

from ..audio import AudioError, load_audio
from . import DEFAULT_DIR, Codec


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m engine.codec")
    sub = ap.add_subparsers(dest="cmd", required=True)
    rt = sub.add_parser("roundtrip", help="encode then decode an audio file")
    rt.add_argument("inp")
    rt.add_argument("out")
    rt.add_argument("--levels", type=int, default=8, help="RVQ levels to keep (1-8; 4 kbps at 8)")
    rt.add_argument("--model", default=DEFAULT_DIR)
    rt.add_argument("--semantic", default=None, help="semantic tokenizer for a conditioned decoder")
    a = ap.parse_args(argv)
    try:
        codec = Codec.load(a.model)
        if not 1 <= a.levels <= codec.num_codebooks:
            raise ValueError(f"--levels must be between 1 and {codec.num_codebooks}")
        x = torch.from_numpy(load_audio(a.inp, codec.sample_rate, max_seconds=1800))
        semantic = None
        if codec.conditioned:
            from ..semantic import SemanticTokenizer
            semantic = SemanticTokenizer.load(a.semantic or Path(a.model).parent / "semantic")
        y = codec.reconstruct(x[None], n_q=a.levels, semantic=semantic)[0].clamp(-1, 1).numpy()
        sf.write(a.out, y, codec.sample_rate, subtype="PCM_16")
    except (AudioError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    kbps = a.levels * 10 * codec.frame_rate / 1000
    print(f"{a.out}: {x.shape[-1] / codec.sample_rate:.1f} s at {a.levels} levels ({kbps:.1f} kbps)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
