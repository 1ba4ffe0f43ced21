"""Train MuLan and what reads its space: ``python -m engine.train.mulan PHASE --data runs/corpus [--minutes M]``,
then ``... PHASE --ship`` to replace the shipped part when the phase's rule says it is better.

One trainer, four phases (one module each), in the order the shipped MuLan was made:

- ``tower``: the audio tower and text projection, contrastive, then the 12-level token RVQ (a new token space);
- ``text``: the text projection again, against the frozen tower, so short prompts land near the music they name;
- ``prior``: the prompt prior, which predicts the music's audio embedding from a prompt's text embedding;
- ``ranker``: the draft ranker, which reads semantic ids in MuLan's text space.

Every phase reads the feature cache ``--features`` (made on first use by ``features.build_features``).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ..loop import add_run_args
from . import prior, ranker, text, tower

PHASES = {"tower": tower, "text": text, "prior": prior, "ranker": ranker}
# a retrained text projection is a whole MuLan, shipped by the tower's rule
SHIP = {"tower": tower.ship_best, "text": tower.ship_best, "prior": prior.ship_best, "ranker": ranker.ship_best}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m engine.train.mulan", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="phase", required=True)
    for name, mod in PHASES.items():
        p = sub.add_parser(name, help=mod.__doc__.split("\n\n")[0].split(": ``")[0])
        p.add_argument("--data", default="runs/corpus")
        p.add_argument("--features", default=None,
                       help="the feature cache every phase reads (default: the tower's --out, else runs/mulan)")
        p.add_argument("--out", default="runs/mulan" if name == "tower" else f"runs/mulan-{name}")
        p.add_argument("--ship", action="store_true", help="copy OUT/best into --assets if the phase's rule says so")
        p.add_argument("--assets", type=Path, default=Path("assets/mulan"))
        add_run_args(p, **mod.DEFAULTS)
        mod.add_args(p)
    a = ap.parse_args(argv)
    if a.features is None:
        a.features = a.out if a.phase == "tower" else "runs/mulan"
    if a.ship:
        return 0 if SHIP[a.phase](a) else 1
    if a.threads:
        import torch
        torch.set_num_threads(a.threads)
    PHASES[a.phase].train(a)
    return 0
