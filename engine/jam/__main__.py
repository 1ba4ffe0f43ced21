"""``python -m engine.jam --script SCRIPT.json --seconds S --out OUT.wav [--realtime]``: play a scripted jam
(``engine.jam.script``), write its audio and print its report as JSON (underruns, when each change took effect,
the generator's busy share, CPU, memory). A script it cannot play exits with status 2 and one line."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..settings import SAMPLE_RATE, GenerationError
from .script import LEAD_S, ScriptError, parse, play, track_hums
from .session import CHUNK_S, CONTEXT_S, Jam


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m engine.jam", description=__doc__.split("\n\n")[0])
    ap.add_argument("--script", type=Path, required=True, help="JSON list of timed changes (engine.jam.script)")
    ap.add_argument("--seconds", type=float, required=True, help="how long the jam plays")
    ap.add_argument("--out", type=Path, required=True, help="where to write the audio (WAV)")
    ap.add_argument("--realtime", action="store_true", help="wait as a live player would instead of computing waits")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--chunk", type=float, default=CHUNK_S, help="seconds of audio per chunk")
    ap.add_argument("--context", type=float, default=CONTEXT_S, help="seconds of the jam's past each chunk continues")
    ap.add_argument("--lead", type=float, default=LEAD_S, help="audio left to play when the next chunk starts")
    ap.add_argument("--assets", default="assets")
    ap.add_argument("--backend", choices=["onnx", "torch"], default="onnx")
    a = ap.parse_args(argv)

    def fail(msg: str) -> int:
        print(f"error: {msg}", file=sys.stderr)
        return 2
    if not 1 <= a.seconds <= 24 * 3600:
        return fail(f"--seconds must be from 1 s to a day, got {a.seconds:g}")
    if not 0 < a.lead < 30:
        return fail(f"--lead must be above 0 and below 30 s, got {a.lead:g}")
    if not a.out.parent.is_dir():
        return fail(f"the folder of --out, {str(a.out.parent)!r}, does not exist")
    try:
        changes = parse(a.script.read_text(), a.script.parent, a.seconds)
    except OSError as e:
        return fail(f"cannot read the script {str(a.script)!r}: {e.strerror}")
    except ScriptError as e:
        return fail(str(e))
    from tqdm import tqdm

    from ..pipeline import Cantus
    model = Cantus.load(a.assets, backend=a.backend)
    try:
        track_hums(model, changes)
        jam = Jam(model, seed=a.seed, chunk_seconds=a.chunk, context_seconds=a.context, **changes[0].set)
    except ScriptError as e:
        return fail(str(e))
    except GenerationError as e:
        return fail(f"change 1: {e}")
    bar = tqdm(desc="jam chunks", unit="chunk")
    audio, report = play(jam, changes, a.seconds, a.realtime, a.lead,
                         progress=lambda k, n: (setattr(bar, "total", n), bar.update(1)))
    bar.close()
    import soundfile as sf
    sf.write(a.out, audio, SAMPLE_RATE)
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
