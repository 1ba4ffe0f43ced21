"""``python -m engine.melody FILE [--json]``: what the app hears in a recording (25 Hz MIDI track and tokens)."""
from __future__ import annotations

import argparse
import json
import sys

import soundfile as sf

from ..audio import AudioError, load_audio
from .track import FRAME_RATE, MAX_SECONDS, MelodyError, melody_from_audio

_NAMES = ("C", "C♯", "D", "E♭", "E", "F", "F♯", "G", "A♭", "A", "B♭", "B")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m engine.melody", description=__doc__)
    ap.add_argument("file")
    ap.add_argument("--json", action="store_true", help="print the track and tokens as JSON")
    a = ap.parse_args(argv)
    try:
        try:
            sr = sf.info(a.file).samplerate
        except Exception:
            sr = 48_000  # formats libsndfile cannot read are decoded by ffmpeg at this rate
        sr = min(max(sr, 8_000), 48_000)
        track = melody_from_audio(load_audio(a.file, sr, max_seconds=MAX_SECONDS), sr)
    except (AudioError, MelodyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if a.json:
        print(json.dumps(track.to_json()))
        return 0
    voiced = track.voiced
    notes = []
    for k in range(len(track.midi)):  # one line per run of the same rounded pitch
        p = None if not voiced[k] else round(track.midi[k])
        if not notes or notes[-1][0] != p:
            notes.append([p, k, k + 1])
        else:
            notes[-1][2] = k + 1
    print(f"{len(track.midi) / FRAME_RATE:.1f} s, melody on {voiced.mean():.0%} of frames")
    for p, s, e in notes:
        if p is not None and e - s >= 2:
            print(f"{s / FRAME_RATE:6.2f}-{e / FRAME_RATE:6.2f} s  {_NAMES[p % 12]}{p // 12 - 1}  (MIDI {p})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
