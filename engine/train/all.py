"""Rebuild every shipped model from nothing: ``python -m engine.train.all --runs runs --hours 10``.

corpus -> codec -> MuLan -> MuLan text projection -> prompt prior -> semantic tokenizer -> tokens -> draft ranker (semantic ids in
MuLan's text space) -> codec decoder (iSTFT, on the
frozen codes, reading the semantic ids too) -> codec encoder (a faster one distilled from it, same token space) ->
semantic / coarse / fine stages -> evaluation report (which exports
the ONNX graphs on first use), each step a call of that model's own entry point. Every step is cached and
resumable: the corpus build resumes from its parts (and skips finished ones), each trainer from its ``last.pt``, tokenisation skips files it has made. Budgets are wall-clock
minutes per call (the ``--*-minutes`` defaults add up to 520 minutes; the MuLan text projection and the semantic
tokenizer run to their own step limits; this command has not yet been run in one go);
calling again after an interruption continues each trainer for another budget. On GPUs raise them or launch
the same entry points under ``torchrun``. Shipping follows each trainer's rule (only a better model replaces the
one in ``assets/``), so later steps train on whatever is shipped.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import codec as train_codec
from . import codec_decoder as train_codec_decoder
from . import codec_encoder as train_codec_encoder
from . import mulan_prior as train_mulan_prior
from . import mulan_ranker as train_mulan_ranker
from . import mulan_text as train_mulan_text
from . import mulan as train_mulan
from . import semantic as train_semantic
from . import stage as train_stage
from . import tokenize


# the shipped stages' shapes: the coarse stage reads the melody (session 13: the hum reaches it directly); the fine
# stage is narrower (session 5)
SHIPPED_SHAPES = {"semantic": [], "coarse": ["--melody"],
                  "fine": ["--d-model", "128", "--n-layer", "3"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m engine.train.all", description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=Path, default=Path("runs"))
    ap.add_argument("--assets", type=Path, default=Path("assets"))
    ap.add_argument("--hours", type=float, default=10.0, help="corpus size")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--codec-minutes", type=float, default=90)
    ap.add_argument("--decoder-minutes", type=float, default=110)
    ap.add_argument("--encoder-minutes", type=float, default=90)
    ap.add_argument("--mulan-minutes", type=float, default=40)
    ap.add_argument("--ranker-minutes", type=float, default=20)
    ap.add_argument("--report", type=Path, default=Path("docs/eval"), help="where the evaluation report goes")
    ap.add_argument("--stage-minutes", type=float, nargs=3, default=[40, 90, 40], metavar=("SEM", "COARSE", "FINE"))
    a = ap.parse_args(argv)
    corpus = a.runs / f"corpus{a.hours:g}h"
    steps = []

    def step(name, fn):
        print(f"== {name}", file=sys.stderr, flush=True)
        steps.append(name)
        fn()

    from ..data.build import main as build_main
    step("corpus", lambda: build_main(["--hours", str(a.hours), "--out", str(corpus), "--seed", str(a.seed),
                                       "--workers", str(a.workers)]))
    step("codec", lambda: (train_codec.main(["--data", str(corpus), "--out", str(a.runs / "codec"),
                                             "--minutes", str(a.codec_minutes)]),
                           train_codec.main(["--ship", str(a.runs / "codec" / "best"),
                                             "--assets", str(a.assets / "codec")])))
    step("mulan", lambda: (train_mulan.main(["--data", str(corpus), "--out", str(a.runs / "mulan"),
                                             "--minutes", str(a.mulan_minutes)]),
                           train_mulan.main(["--out", str(a.runs / "mulan"), "--ship",
                                             "--assets", str(a.assets / "mulan")])))
    step("mulan text", lambda: train_mulan_text.main(["--data", str(corpus), "--features", str(a.runs / "mulan"),
                                                      "--init", str(a.assets / "mulan"), "--out",
                                                      str(a.runs / "mulan_text"), "--ship", "--assets",
                                                      str(a.assets / "mulan")]))
    step("prompt prior", lambda: train_mulan_prior.main(["--data", str(corpus), "--features", str(a.runs / "mulan"),
                                                         "--init", str(a.assets / "mulan"), "--out",
                                                         str(a.runs / "mulan_prior"), "--ship", "--assets",
                                                         str(a.assets / "mulan")]))
    step("semantic tokenizer", lambda: (
        train_semantic.main(["--data", str(corpus), "--features", str(a.runs / "mulan"), "--out", str(a.runs / "semantic")]),
        train_semantic.main(["--out", str(a.runs / "semantic"), "--ship", "--assets", str(a.assets / "semantic")])))
    step("tokens", lambda: tokenize.main(["--data", str(corpus), "--features", str(a.runs / "mulan"),
                                          "--out", str(a.runs / "tokens"), "--codec", str(a.assets / "codec"),
                                          "--mulan", str(a.assets / "mulan"), "--semantic", str(a.assets / "semantic"),
                                          "--track-voice", "100"]))
    step("draft ranker", lambda: train_mulan_ranker.main(["--data", str(corpus), "--features", str(a.runs / "mulan"),
                                                          "--tokens", str(a.runs / "tokens"), "--init",
                                                          str(a.assets / "mulan"), "--semantic", str(a.assets / "semantic"),
                                                          "--out", str(a.runs / "ranker"), "--minutes",
                                                          str(a.ranker_minutes), "--ship", "--assets",
                                                          str(a.assets / "mulan")]))
    # frame-rate iSTFT decoder on the frozen codes the stages will learn, with the shipped decoder's losses (pitch
    # weighted 2, session 22; the phase loss, session 23: MODEL_CARD.md)
    step("codec decoder", lambda: (
        train_codec_decoder.main(["--data", str(corpus), "--tokens", str(a.runs / "tokens"), "--init",
                                  str(a.assets / "codec"), "--out", str(a.runs / "codec_istft"), "--minutes",
                                  str(a.decoder_minutes), "--final-lr", "1e-4", "--pitch-weight", "2",
                                  "--phase-weight", "1", "--semantic", str(a.assets / "semantic"),
                                  "--cond-lr-scale", "1"]),
        train_codec.main(["--ship", str(a.runs / "codec_istft" / "best"), "--assets", str(a.assets / "codec")])))

    def distil_encoder():
        from ..codec import Codec
        if Codec.load(a.assets / "codec").cfg.encoder_patch != 1:
            print("the shipped codec's encoder is already distilled", file=sys.stderr)
            return
        train_codec_encoder.main(["--teacher", str(a.assets / "codec"), "--data", str(corpus), "--out",
                                  str(a.runs / "codec_encoder"), "--minutes", str(a.encoder_minutes)])
        train_codec_encoder.main(["--ship", str(a.runs / "codec_encoder" / "best"), "--assets", str(a.assets / "codec")])
    step("codec encoder", distil_encoder)
    for name, minutes in zip(("semantic", "coarse", "fine"), a.stage_minutes):
        common = [name, "--tokens", str(a.runs / "tokens"), "--out", str(a.runs / "stages"), "--assets", str(a.assets)]
        common += SHIPPED_SHAPES[name]
        step(f"{name} stage", lambda c=common, m=minutes: (train_stage.main(c + ["--minutes", str(m)]),
                                                           train_stage.main(c + ["--ship"])))
    from ..eval.report import main as report_main
    step("evaluation", lambda: report_main(["--out", str(a.report), "--corpus", str(corpus), "--assets", str(a.assets),
                                            "--cache", str(a.runs / "eval")]))
    print("done: " + ", ".join(steps), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
