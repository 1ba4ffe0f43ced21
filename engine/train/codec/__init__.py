"""Train the codec: ``python -m engine.train.codec PHASE --data runs/corpus --out runs/codec-PHASE [--minutes M]``,
then ``... PHASE --out DIR --ship`` to replace the shipped codec's part when the phase's rule says it is better.

One trainer, four phases (one module each), in the order the shipped codec was made:

- ``autoencoder``: encoder, residual VQ and a convolutional decoder together from random crops (the token space);
- ``decoder``: the frame-rate iSTFT decoder on the frozen codes, reading the semantic ids too;
- ``distil``: a faster encoder (patch front end) distilled from the full one, in the same token space;
- ``tune``: that encoder fine-tuned by analysis by synthesis through the frozen quantizer and decoder.

Every phase runs through ``engine.train.loop.fit`` (resumable from ``OUT/last.pt``, the best in ``OUT/best``) and
ships through ``engine.train.loop.ship``.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ..loop import add_run_args
from . import autoencoder, decoder, distil, tune

PHASES = {"autoencoder": autoencoder, "decoder": decoder, "distil": distil, "tune": tune}
# the decoder phase ships by the autoencoder's rule: a complete codec with a better validation mel_8
SHIP = {"autoencoder": autoencoder.ship_best, "decoder": autoencoder.ship_best, "distil": distil.ship_best,
        "tune": tune.ship_best}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m engine.train.codec", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="phase", required=True)
    for name, mod in PHASES.items():
        p = sub.add_parser(name, help=" ".join(mod.__doc__.split("\n\n")[0].split()).split(": ", 1)[1])
        p.add_argument("--data", default="runs/corpus")
        p.add_argument("--out", default=f"runs/codec-{name}")
        p.add_argument("--eval-clips", type=int, default=16)
        p.add_argument("--ship", action="store_true", help="copy OUT/best into --assets if the phase's rule says so")
        p.add_argument("--assets", type=Path, default=Path("assets/codec"))
        add_run_args(p, **mod.DEFAULTS)
        mod.add_args(p)
    a = ap.parse_args(argv)
    mod = PHASES[a.phase]
    if a.ship:
        return 0 if SHIP[a.phase](a) else 1
    if hasattr(mod, "check_args"):
        mod.check_args(sub.choices[a.phase], a)
    mod.train(a)
    return 0
