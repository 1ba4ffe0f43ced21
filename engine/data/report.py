"""``python -m engine.data.report DIR``: the corpus report (counts per style, instrument, tempo, key, mood...) as
markdown, from the ``corpus.json`` a build writes."""
from __future__ import annotations

import json
import platform
import sys
from datetime import date
from pathlib import Path


def report(corpus: Path) -> str:
    s = json.loads((Path(corpus) / "corpus.json").read_text())
    lines = [
        f"### Corpus build ({date.today().isoformat()}, {platform.machine()}, {s['workers']} workers, seed {s['seed']})",
        "",
        f"- {s['clips']} clips, {s['hours']} hours, {s['compositions']} distinct compositions from {s['melodies']} "
        f"parsed melodies ({s['scores_skipped']} score files/tunes skipped: unsupported meter, too short, corrupt)",
        f"- build time {s['build_seconds'] / 60:.1f} min (of which melody parsing/cache read {s['parse_seconds']:.0f} s)",
        "- splits: " + ", ".join(f"{k} {v}" for k, v in s["split"].items()),
    ]
    for key in ("style", "mood", "tempo", "mode", "meter", "key", "voice", "source", "instrument"):
        items = sorted(s[key].items(), key=lambda kv: (-kv[1], kv[0])) if key in ("instrument", "source") else s[key].items()
        lines.append(f"- {key} ({len(s[key])}): " + ", ".join(f"{k} {v}" for k, v in items))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m engine.data.report CORPUS_DIR")
    print(report(Path(sys.argv[1])))
