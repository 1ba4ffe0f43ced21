"""Rebuild every shipped model from nothing: ``python -m engine.train.all --runs runs --hours 10``.

The recipe, in the order the shipped models were made, each step a call of that model family's own trainer and
ship rule (a model replaces the one in ``--assets`` only when it scores better, so later steps train on whatever is
shipped):

1. the corpus (``engine.data.build``), and the note transcriber of clips' MIDI files on it;
2. the codec's autoencoder (its token space);
3. MuLan's towers and token RVQ, then the semantic tokenizer on MuLan's cached features;
4. MuLan's text projection again (short prompts), its audio tower again reading the semantic encoder's frames
   (text side frozen, so the text tokens stay), the prompt prior;
5. the tokenised corpus, its semantic ids' key profile (engine.semantic.keys) and its coarse codes' timbre profile
   (engine.lm.timbre), then the draft ranker on its ids;
6. the codec's iSTFT decoder on the frozen codes (reading the semantic ids, pitch and phase losses), a distilled
   faster encoder, and that encoder tuned through the frozen quantizer and decoder; the drum remover on the
   corpus's stems through that codec (engine.train.demix);
7. the semantic, coarse (reading the melody too) and fine (narrower) stages;
8. the evaluation report on what was shipped.

Resumable: a finished step is written to ``RUNS/recipe.json`` and skipped when the command runs again, and an
interrupted trainer resumes from its own ``last.pt``. ``--minutes`` budgets are wall-clock per trainer; on GPUs raise
them or run the same trainers under ``torchrun``. ``--tiny``: the same steps on a corpus of 24 clips from a few
dozen small scores, with tiny models and a few training steps each, ending in a generated clip (``RUNS/clip.wav``) instead of
the report: minutes, for the test suite, so the recipe cannot rot.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import codec, demix, mulan, semantic, stage, tokenize, transcriber

# Budgets of the full recipe, minutes per trainer (the shipped models had these or more, over several resumed runs).
MINUTES = {"codec": 90, "mulan": 40, "mulan audio": 45, "ranker": 20, "decoder": 110, "distil": 90, "tune": 22,
           "semantic stage": 40, "coarse stage": 90, "fine stage": 40, "transcriber": 60, "drum remover": 60}
STAGE_SHAPES = {"semantic": [], "coarse": ["--melody"], "fine": ["--d-model", "128", "--n-layer", "3"]}

# The tiny recipe: models small enough that every step takes seconds, on a corpus whose seed gives it a
# validation clip (its 24 clips leave the valid split empty for some seeds).
TINY_SEED = 3
TINY = {
    "codec": ["--channels", "4", "--max-channels", "16", "--batch", "2", "--seconds", "0.2", "--vq-warmup", "2",
              "--steps", "4", "--eval-every", "4", "--eval-clips", "1"],
    "mulan": ["--dim", "16", "--width", "16", "--token-size", "8", "--batch", "8", "--steps", "4", "--eval-every", "4"],
    "semantic": ["--n-tokens", "16", "--width", "16", "--steps", "4", "--eval-every", "4", "--probe-clips", "0"],
    "text": ["--steps", "4", "--eval-every", "4", "--batch", "8", "--per-clip", "2"],
    "mulan audio": ["--steps", "4", "--eval-every", "4", "--batch", "8"],
    "prior": ["--steps", "4", "--eval-every", "4", "--batch", "8", "--per-clip", "2", "--hidden", "16"],
    "ranker": ["--steps", "4", "--eval-every", "4", "--batch", "4", "--per-clip", "2", "--width", "16",
               "--valid-split", "test"],  # ranking needs two clips; the tiny corpus has one valid clip
    "decoder": ["--dim", "16", "--blocks", "1", "--batch", "2", "--seconds", "0.2", "--context", "2", "--steps", "4",
                "--eval-every", "4", "--eval-clips", "1"],
    "distil": ["--channels", "8", "--batch", "2", "--seconds", "0.2", "--steps", "4", "--front-steps", "2",
               "--eval-every", "4", "--eval-clips", "1"],
    "tune": ["--batch", "2", "--seconds", "0.2", "--context", "2", "--mix-clips", "2", "--steps", "4",
             "--eval-every", "4", "--eval-clips", "1"],
    "transcriber": ["--channels", "8", "--batch", "2", "--steps", "4", "--eval-every", "4"],
    "drum remover": ["--channels", "4", "--clips", "6", "--batch", "2", "--steps", "4", "--eval-every", "4"],
    "stage": ["--d-model", "32", "--n-layer", "1", "--n-head", "2", "--batch", "2", "--steps", "4", "--eval-every",
              "4"],
}


def recipe(a: argparse.Namespace) -> list[tuple[str, callable]]:
    """(name, step) of every step, in order."""
    runs, assets, tiny = a.runs, a.assets, a.tiny
    corpus = runs / ("corpus-tiny" if tiny else f"corpus{a.hours:g}h")
    feats, tokens = runs / "mulan", runs / "tokens"
    data = ["--data", str(corpus)]

    def budget(name: str, tiny_key: str | None = None) -> list[str]:
        return TINY[tiny_key or name] if tiny else ["--minutes", str(a.minutes.get(name, MINUTES[name]))]

    def train_and_ship(main, args: list[str]) -> None:
        if main(args) != 0:
            raise SystemExit(f"training failed: {' '.join(args)}")
        main([*args, "--ship"])  # refusing to ship is not a failure: the next steps use what is shipped

    def build() -> None:
        from ..data.build import build as build_corpus
        from ..data.build import main as build_main
        from ..data.melodies import quick_score_paths
        if tiny:  # the test suite's corpus: 24 clips from a few dozen small scores, seconds to build
            build_corpus(24 * 10 / 3600, corpus, TINY_SEED, 1, cache=runs / "cache", score_paths=quick_score_paths(),
                         progress=False)
        elif build_main(["--hours", str(a.hours), "--workers", str(a.workers), "--out", str(corpus), "--seed",
                         str(a.seed), "--cache", str(runs / "cache")]) != 0:
            raise SystemExit("the corpus build failed")

    def mulan_phase(phase: str, key: str, extra: list[str], out: Path) -> None:
        common = ["--features", str(feats), "--out", str(out), "--assets", str(assets / "mulan")]
        train_and_ship(mulan.main, [phase, *data, *common, *extra, *budget(key)])

    def codec_phase(phase: str, extra: list[str]) -> None:
        out = ["--out", str(runs / f"codec-{phase}"), "--assets", str(assets / "codec")]
        train_and_ship(codec.main, [phase, *data, *out, *extra, *budget(phase if phase != "autoencoder" else "codec")])

    def semantic_tokenizer() -> None:
        out = ["--out", str(runs / "semantic"), "--assets", str(assets / "semantic")]
        steps = TINY["semantic"] if tiny else ["--steps", "2000"]
        train_and_ship(semantic.main, [*data, "--features", str(feats), *out, *steps])

    def tokenise() -> None:
        if tokenize.main([*data, "--features", str(feats), "--out", str(tokens), "--codec", str(assets / "codec"),
                          "--mulan", str(assets / "mulan"), "--semantic", str(assets / "semantic"),
                          "--track-voice", "0" if tiny else "100"]) != 0:
            raise SystemExit("tokenising the corpus failed")
        if semantic.main(["--key-profile", str(tokens), "--assets", str(assets / "semantic")]) != 0:
            raise SystemExit("fitting the semantic ids' key profile failed")
        if stage.main(["coarse", "--timbre-profile", str(tokens), "--assets", str(assets)]) != 0:
            raise SystemExit("fitting the coarse codes' timbre profile failed")

    def stages(name: str):
        def run() -> None:
            common = [name, "--tokens", str(tokens), "--out", str(runs / "stages"), "--assets", str(assets)]
            shape = TINY["stage"] if tiny else [*STAGE_SHAPES[name], *budget(f"{name} stage")]
            extra = ["--melody"] if tiny and name == "coarse" else []
            train_and_ship(stage.main, [*common, *shape, *extra])
        return run

    def notes() -> None:
        train_and_ship(transcriber.main, ["--corpus", str(corpus), "--out", str(runs / "transcriber"), "--assets",
                                          str(assets), "--cache", str(runs / "cache"), *budget("transcriber")])

    def drums() -> None:
        train_and_ship(demix.main, ["--corpus", str(corpus), "--out", str(runs / "demix"), "--assets", str(assets),
                                    "--cache", str(runs / "cache"), *budget("drum remover")])

    def finale() -> None:
        if tiny:
            from ..generate import main as generate
            if generate(["--prompt", "a calm folk tune on piano", "--duration", "2", "--assets", str(assets),
                         "--backend", "torch", "--out", str(runs / "clip.wav")]) != 0:
                raise SystemExit("generating a clip with the rebuilt models failed")
        else:
            from ..eval.report import main as report
            report(["--out", str(a.report), "--corpus", str(corpus), "--assets", str(assets), "--cache",
                    str(runs / "eval")])

    return [
        ("corpus", build),
        ("note transcriber", notes),
        ("codec autoencoder", lambda: codec_phase("autoencoder", [])),
        ("mulan towers", lambda: mulan_phase("tower", "mulan", [], feats)),
        ("semantic tokenizer", semantic_tokenizer),
        ("mulan text projection", lambda: mulan_phase("text", "text", ["--init", str(assets / "mulan")],
                                                      runs / "mulan-text")),
        ("mulan audio tower", lambda: mulan_phase(
            "tower", "mulan audio", ["--init", str(assets / "mulan"), "--semantic", str(assets / "semantic"),
                                     "--aux-weight", "1", "--lr", "5e-4", "--freeze-text"], runs / "mulan-audio")),
        ("prompt prior", lambda: mulan_phase("prior", "prior", ["--init", str(assets / "mulan")], runs / "mulan-prior")),
        ("tokens", tokenise),
        ("draft ranker", lambda: mulan_phase(
            "ranker", "ranker", ["--init", str(assets / "mulan"), "--tokens", str(tokens), "--semantic",
                                 str(assets / "semantic")], runs / "mulan-ranker")),
        ("codec decoder", lambda: codec_phase(
            "decoder", ["--tokens", str(tokens), "--init", str(assets / "codec"), "--semantic", str(assets / "semantic"),
                        "--pitch-weight", "2", "--phase-weight", "1", "--cond-lr-scale", "1",
                        *([] if tiny else ["--final-lr", "1e-4"])])),
        ("codec encoder distillation", lambda: codec_phase("distil", ["--teacher", str(assets / "codec")])),
        ("codec encoder tuning", lambda: codec_phase(
            "tune", ["--tokens", str(tokens), "--init", str(assets / "codec"), "--semantic",
                     str(assets / "semantic")])),
        ("drum remover", drums),
        ("semantic stage", stages("semantic")),
        ("coarse stage", stages("coarse")),
        ("fine stage", stages("fine")),
        ("clip" if tiny else "evaluation report", finale),
    ]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m engine.train.all", description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=Path, default=Path("runs"), help="corpora, caches, checkpoints (never committed)")
    ap.add_argument("--assets", type=Path, default=Path("assets"), help="where better models are shipped")
    ap.add_argument("--hours", type=float, default=10.0, help="corpus size")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--minutes", type=json.loads, default={},
                    help=f"JSON of budgets to override, minutes per trainer (defaults {json.dumps(MINUTES)})")
    ap.add_argument("--report", type=Path, default=Path("docs/eval"), help="where the evaluation report goes")
    ap.add_argument("--tiny", action="store_true", help="the whole recipe on a tiny corpus with tiny models")
    a = ap.parse_args(argv)
    unknown = set(a.minutes) - set(MINUTES)
    if unknown:
        ap.error(f"--minutes: unknown trainers {sorted(unknown)}; known: {', '.join(MINUTES)}")
    a.runs.mkdir(parents=True, exist_ok=True)
    ledger = a.runs / ("recipe-tiny.json" if a.tiny else "recipe.json")
    done = json.loads(ledger.read_text()) if ledger.exists() else []
    for name, step in recipe(a):
        if name in done:
            print(f"== {name}: done before, skipped", file=sys.stderr)
            continue
        print(f"== {name}", file=sys.stderr, flush=True)
        step()
        done.append(name)
        ledger.write_text(json.dumps(done, indent=1))
    print("done: " + ", ".join(done), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
