"""Benchmarks, ``python -m engine.eval.bench WHAT [--corpus DIR] [--clips N] [--append BENCHMARKS.md]``:
``codec [--model DIR]``, ``generate [--assets DIR]`` (``engine.eval.generation``), ``compare --b DIR [--a DIR]
[--rows FILE]`` (generate's quality measures for two asset folders on the same prompts, hums and seeds, with paired
differences: how a candidate model is judged before it replaces a shipped one), ``longform [--seconds S] [--hums]`` (drift
from the prompt and window joins of long clips, ``engine.eval.longform``), ``textonly [--prompts N] [--seeds OFFSET ...]
[--rows FILE] [--against FILE ...]`` (text-only prompt adherence on many prompts, paired: ``engine.eval.textonly``),
``codecpair --b DIR [--a DIR] [--rows FILE]`` (``codec``'s quality measures for two codecs on the same clips, paired:
``engine.eval.codec_pair``), ``tempowords [--prompts N]`` (do "slow" and "fast" move the tempo:
``engine.eval.controls``), ``soundslike [--clips N]`` (does a reference recording set the style: ``engine.eval.style``)
``key [--prompts N] [--b DIR]`` (do named keys come out: ``engine.eval.keys``), ``instruments [--prompts N] [--b DIR]``
(does a named lead lead, does "no drums" drop them: ``engine.eval.instruments``), ``loops [--prompts N] [--bars B]``
(do loops repeat without a seam: ``engine.eval.loops``), ``midi [--clips N]`` (are a clip's MIDI notes the ones that
sound: ``engine.eval.midi``), ``finepair --b DIR`` (a candidate fine stage on real
coarse codes: ``engine.eval.finepair``), ``jam [--minutes M]`` (a scripted jam's underruns and
control latency: ``engine.eval.jam``), ``codec`` and ``melody`` (``engine.eval.codec_bench``).
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
from datetime import date
from pathlib import Path

import torch


def _machine() -> str:
    return f"{platform.machine()}, {torch.get_num_threads()} threads"


def _outputs(p: argparse.ArgumentParser, what: str = "clip") -> None:
    p.add_argument("--rows", type=Path, default=None, help=f"write every {what}'s measures to this JSON file")
    p.add_argument("--append", type=Path, default=None, help="append the markdown table to this file")


def _report(full: dict, markdown_fn, a: argparse.Namespace, summary: dict | None = None) -> tuple[dict, str]:
    """A bench's full result -> (the summary printed, its markdown table); the result goes to ``--rows``."""
    if a.rows:
        a.rows.write_text(json.dumps(full, indent=1))
    return (full["summary"] if summary is None else summary), markdown_fn(full, _machine(), str(date.today()))


def _paired_report(full: dict, markdown_fn, a: argparse.Namespace) -> tuple[dict, str]:
    """A paired A/B run (``compare``, ``codecpair``) -> (summary, markdown table); its rows go to ``--rows``."""
    if a.rows:
        a.rows.write_text(json.dumps(full, indent=1))
    return full["summary"], markdown_fn(full, a.a, a.b, _machine(), str(date.today()))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m engine.eval.bench")
    sub = ap.add_subparsers(dest="what", required=True)
    c = sub.add_parser("codec")
    c.add_argument("--corpus", type=Path, default=Path("runs/corpus"))
    c.add_argument("--clips", type=int, default=50)
    c.add_argument("--model", type=Path, default=Path("assets/codec"))
    c.add_argument("--onnx", type=Path, default=None, help="ONNX directory (exported there if missing)")
    c.add_argument("--append", type=Path, default=None, help="append the markdown table to this file")
    g = sub.add_parser("generate")
    g.add_argument("--corpus", type=Path, default=Path("runs/corpus"))
    g.add_argument("--clips", type=int, default=48)
    g.add_argument("--assets", default="assets")
    g.add_argument("--append", type=Path, default=None, help="append the markdown table to this file")
    p = sub.add_parser("compare")
    p.add_argument("--corpus", type=Path, default=Path("runs/corpus"))
    p.add_argument("--clips", type=int, default=48)
    p.add_argument("--a", default="assets", help="the reference asset folder (its MuLan judges both)")
    p.add_argument("--b", required=True, help="the candidate asset folder")
    p.add_argument("--seconds", type=float, default=10.0)
    _outputs(p)
    lf = sub.add_parser("longform")
    lf.add_argument("--corpus", type=Path, default=Path("runs/corpus"))
    lf.add_argument("--clips", type=int, default=24)
    lf.add_argument("--assets", default="assets")
    lf.add_argument("--seconds", type=float, default=60.0)
    lf.add_argument("--hums", action="store_true", help="also generate each prompt with its clip's tracked hum and "
                    "measure how well each 10 s part follows it")
    _outputs(lf)
    t = sub.add_parser("textonly", help="text-only prompt adherence (MCC ratio, tagger, named tempo), paired")
    t.add_argument("--corpus", type=Path, default=Path("runs/corpus"))
    t.add_argument("--prompts", type=int, default=192)
    t.add_argument("--assets", default="assets")
    t.add_argument("--seeds", type=int, nargs="+", default=[0], help="seed offsets: seed = clip index + offset")
    t.add_argument("--seconds", type=float, default=10.0)
    t.add_argument("--drafts", type=int, default=None, help="semantic drafts (default: the generator's)")
    t.add_argument("--guidance", type=float, default=None)
    t.add_argument("--temperature", type=float, default=None)
    t.add_argument("--rows", type=Path, default=None, help="write every clip's measures to this JSON file")
    t.add_argument("--from", dest="from_rows", type=Path, nargs="+", default=None,
                   help="summarise these rows files instead of generating")
    t.add_argument("--against", type=Path, nargs="+", default=None,
                   help="rows files of the same prompts and seeds to pair with")
    t.add_argument("--append", type=Path, default=None, help="append the markdown table to this file")
    cp = sub.add_parser("codecpair", help="two codecs' round trips on the same test clips, paired")
    cp.add_argument("--corpus", type=Path, default=Path("runs/corpus"))
    cp.add_argument("--clips", type=int, default=50)
    cp.add_argument("--a", type=Path, default=Path("assets/codec"), help="the reference codec")
    cp.add_argument("--b", type=Path, required=True, help="the candidate codec")
    cp.add_argument("--semantic", type=Path, default=Path("assets/semantic"),
                    help="the semantic tokenizer a decoder reads (if it reads one)")
    _outputs(cp)
    tw = sub.add_parser("tempowords", help="do slow / fast words move the tempo (engine.eval.controls)")
    tw.add_argument("--prompts", type=int, default=24)
    tw.add_argument("--assets", default="assets")
    tw.add_argument("--seconds", type=float, default=10.0)
    _outputs(tw)
    sl = sub.add_parser("soundslike", help="does a 'sounds like' reference set the style (engine.eval.style)")
    sl.add_argument("--corpus", type=Path, default=Path("runs/corpus"))
    sl.add_argument("--clips", type=int, default=48)
    sl.add_argument("--assets", default="assets")
    _outputs(sl)
    for name, what in (("key", "does a named key come out in that key (engine.eval.keys; needs essentia)"),
                       ("instruments", "does a named lead lead, 'no drums' drop them (engine.eval.instruments)")):
        k = sub.add_parser(name, help=what)
        k.add_argument("--corpus", type=Path, default=Path("runs/corpus"))
        k.add_argument("--prompts", type=int, default=48 if name == "key" else 24)
        k.add_argument("--seeds", type=int, default=2)
        k.add_argument("--assets", default="assets")
        k.add_argument("--b", default=None, help="a second asset folder, run on the same prompts and seeds")
        if name == "instruments":
            k.add_argument("--drums-corpus", type=Path, default=None,
                           help="a build with crossover whose tagger judges 'no drums' a second time")
        _outputs(k)
    fp = sub.add_parser("finepair", help="a candidate fine stage on real coarse codes, paired (engine.eval.finepair)")
    fp.add_argument("--tokens", type=Path, default=Path("runs/tokens"))
    fp.add_argument("--corpus", type=Path, default=Path("runs/corpus"))
    fp.add_argument("--clips", type=int, default=48)
    fp.add_argument("--a", type=Path, default=Path("assets"))
    fp.add_argument("--b", type=Path, required=True, help="the candidate assets (engine.train.stage fine --candidate)")
    _outputs(fp)
    lp = sub.add_parser("loops", help="do loops repeat without a seam (engine.eval.loops)")
    lp.add_argument("--prompts", type=int, default=24)
    lp.add_argument("--bars", type=int, default=4)
    lp.add_argument("--assets", default="assets")
    _outputs(lp, "loop")
    md = sub.add_parser("midi", help="are a clip's MIDI notes the ones that sound (engine.eval.midi)")
    md.add_argument("--corpus", type=Path, default=Path("runs/corpus"))
    md.add_argument("--clips", type=int, default=96)
    md.add_argument("--assets", default="assets")
    _outputs(md)
    j = sub.add_parser("jam", help="a scripted jam: underruns, busy share, memory, control latency (engine.eval.jam)")
    j.add_argument("--corpus", type=Path, default=Path("runs/corpus"))
    j.add_argument("--minutes", type=float, default=10.0)
    j.add_argument("--assets", default="assets")
    j.add_argument("--realtime", action="store_true", help="sleep as a live player would")
    j.add_argument("--chunk", type=float, default=None, help="seconds per chunk (default: the jam's)")
    j.add_argument("--context", type=float, default=None, help="seconds of context (default: the jam's)")
    j.add_argument("--switch", type=float, default=None, help="context after a new prompt (default: the jam's)")
    j.add_argument("--lead", type=float, default=None, help="audio left to play when the next chunk starts")
    j.add_argument("--out", type=Path, default=None, help="write the jam's audio to this WAV file")
    j.add_argument("--rows", type=Path, default=None, help="write the full report to this JSON file")
    j.add_argument("--append", type=Path, default=None, help="append the markdown table to this file")
    m = sub.add_parser("melody")
    m.add_argument("--corpus", type=Path, default=Path("runs/corpus"))
    m.add_argument("--clips", type=int, default=100)
    m.add_argument("--append", type=Path, default=None, help="append the markdown line to this file")
    a = ap.parse_args(argv)
    if a.what == "codecpair":
        from tqdm import tqdm

        from . import codec_pair
        if a.clips < 1:
            ap.error(f"codecpair: --clips must be >= 1, got {a.clips}")
        bar = tqdm(total=a.clips, desc="clips")
        try:
            full = codec_pair.run(a.corpus, a.clips, a.a, a.b, a.semantic, progress=lambda n, total: bar.update(1))
        except (ValueError, FileNotFoundError) as e:
            ap.error(f"codecpair: {e}")
        bar.close()
        r, text = _paired_report(full, codec_pair.markdown, a)
    elif a.what in ("tempowords", "soundslike"):
        from tqdm import tqdm

        from . import controls, style
        n = a.prompts if a.what == "tempowords" else a.clips
        if n < 1:
            ap.error(f"{a.what}: the number of prompts or clips must be >= 1, got {n}")
        bar = tqdm(total=n, desc=a.what)
        if a.what == "tempowords":
            mod, full = controls, controls.run(n, a.assets, a.seconds, lambda *_: bar.update(1))
        else:
            mod, full = style, style.run(a.corpus, n, a.assets, progress=lambda *_: bar.update(1))
        bar.close()
        r, text = _report(full, mod.markdown, a, {k: v for k, v in full.items() if k != "rows"})
    elif a.what in ("key", "instruments"):
        from tqdm import tqdm

        from . import instruments, keys
        mod, per_prompt = (keys, 3) if a.what == "key" else (instruments, 2)
        if a.prompts < 1 or a.seeds < 1:
            ap.error(f"{a.what}: --prompts and --seeds must be >= 1, got {a.prompts} and {a.seeds}")
        sides = (a.assets,) if a.b is None else (a.assets, a.b)
        bar = tqdm(total=per_prompt * a.prompts * a.seeds * len(sides), desc="clips")
        extra = {"drums_corpus": a.drums_corpus} if a.what == "instruments" else {}
        full = mod.run(a.corpus, a.prompts, a.seeds, sides, progress=lambda: bar.update(1), **extra)
        bar.close()
        r, text = _report(full, mod.markdown, a)
    elif a.what == "finepair":
        from tqdm import tqdm

        from . import finepair
        if a.clips < 2:
            ap.error(f"finepair: --clips must be >= 2, got {a.clips}")
        bar = tqdm(total=a.clips, desc="clips")
        full = finepair.run(a.tokens, a.corpus, a.a, a.b, a.clips, progress=lambda: bar.update(1))
        bar.close()
        r, text = _report(full, finepair.markdown, a)
    elif a.what == "loops":
        from tqdm import tqdm

        from . import loops
        if a.prompts < 1 or not 1 <= a.bars <= 16:
            ap.error(f"loops: --prompts must be >= 1 and --bars 1-16, got {a.prompts} and {a.bars}")
        bar = tqdm(total=a.prompts, desc="loops")
        full = loops.run(a.prompts, a.bars, a.assets, progress=lambda: bar.update(1))
        bar.close()
        r, text = _report(full, loops.markdown, a)
    elif a.what == "midi":
        from tqdm import tqdm

        from . import midi
        if a.clips < 1:
            ap.error(f"midi: --clips must be >= 1, got {a.clips}")
        bar = tqdm(total=a.clips, desc="clips")
        try:
            full = midi.run(a.corpus, a.clips, a.assets, progress=lambda: bar.update(1))
        except (ValueError, FileNotFoundError) as e:
            ap.error(f"midi: {e}")
        bar.close()
        r, text = _report(full, midi.markdown, a)
    elif a.what == "jam":
        from tqdm import tqdm

        from . import jam
        if not 0.5 <= a.minutes <= 120:
            ap.error(f"jam: --minutes must be from 0.5 to 120, got {a.minutes:g}")
        bar = tqdm(desc="jam chunks", unit="chunk")
        try:
            knobs = {k: v for k, v in (("chunk_seconds", a.chunk), ("context_seconds", a.context),
                                       ("switch_seconds", a.switch)) if v is not None}
            if a.lead is not None:
                knobs["lead"] = a.lead
            full = jam.run(a.corpus, a.minutes, a.assets, a.realtime,
                           progress=lambda k, n: (setattr(bar, "total", n), bar.update(1)), **knobs)
        except ValueError as e:
            ap.error(f"jam: {e}")
        bar.close()
        if a.out:
            import soundfile as sf
            sf.write(a.out, full["audio"], 24_000)
        r = full["report"]
        if a.rows:
            a.rows.write_text(json.dumps(r, indent=1))
        text = jam.markdown(r, _machine(), str(date.today()))
    elif a.what == "melody":
        from .codec_bench import bench_melody, markdown_melody
        r = bench_melody(a.corpus, a.clips)
        text = markdown_melody(r)
    elif a.what == "compare":
        from tqdm import tqdm

        from . import generation
        bar = tqdm(total=a.clips, desc="clips")
        full = generation.compare_assets(a.corpus, a.clips, a.a, a.b, a.seconds,
                                         progress=lambda n, total: bar.update(1))
        bar.close()
        r, text = _paired_report(full, generation.markdown_compare, a)
    elif a.what == "textonly":
        from tqdm import tqdm

        from . import textonly
        try:
            base = textonly.load_rows(a.against) if a.against else None
            if a.from_rows:
                rows, what = textonly.load_rows(a.from_rows), ", ".join(map(str, a.from_rows))
            else:
                over = {k: v for k, v in (("drafts", a.drafts), ("guidance", a.guidance),
                                          ("temperature", a.temperature)) if v is not None}
                bar = tqdm(total=a.prompts, desc="prompts")
                rows = textonly.textonly_rows(a.corpus, a.prompts, a.assets, a.seeds,
                                              progress=lambda n, total: bar.update(1), seconds=a.seconds, **over)
                bar.close()
                what = f"`{a.assets}`" + "".join(f", {k} {v}" for k, v in over.items())
                if a.rows:
                    a.rows.write_text(json.dumps({"assets": a.assets, "settings": over, "rows": rows}, indent=1))
            r = textonly.summary(rows, base)
        except ValueError as e:
            ap.error(f"textonly: {e}")
        text = textonly.markdown(r, what, _machine(),
                                 str(date.today()))
    elif a.what == "longform":
        from tqdm import tqdm

        from . import longform
        try:
            longform.check_seconds(a.seconds)
        except ValueError as e:
            ap.error(f"longform --seconds: {e}")
        bar = tqdm(total=a.clips, desc="clips")
        full = longform.bench_longform(a.corpus, a.clips, a.assets, a.seconds, progress=lambda n, total: bar.update(1),
                                      hums=a.hums)
        bar.close()
        r, text = _report(full, longform.markdown, a, {k: v for k, v in full.items() if k != "rows"})
    elif a.what == "generate":
        from . import generation
        r = generation.bench_generation(a.corpus, a.clips, a.assets)
        text = generation.markdown(r, _machine(), str(date.today()))
    else:
        from .codec_bench import bench_codec, markdown
        r = bench_codec(a.corpus, a.clips, a.model, a.onnx)
        text = markdown(r, a.model)
    print(json.dumps(r))
    print(text)
    if a.append:
        with open(a.append, "a") as f:
            f.write("\n" + text)
    return 0

if __name__ == "__main__":
    sys.exit(main())
