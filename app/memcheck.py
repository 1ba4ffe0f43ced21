"""Memory of a running app: ``python -m app.memcheck [--hum-seconds 300] [--generations 100] [--seconds 2]``.

Starts ``launch.py`` in a child process (shipped weights, a throw-away library, 127.0.0.1, as ``app.loadtest``) and
reads its resident memory from /proc: after start-up; the peak while it analyses one hummed upload of
``--hum-seconds`` (a sung scale at 24 kHz, through the app's ``/hear`` endpoint); and after ``--generations``
text-only clips of ``--seconds`` generated one after another through ``/generate``. A hum's memory should not grow
with its length, and generating should not leak.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import soundfile as sf

from .loadtest import rss_mb, run_sessions, serving

TARGETS = {"hum_peak_mb": 2_500, "growth_mb": 200}


def hum_file(path: Path, seconds: float, sr: int = 24_000) -> Path:
    """A sung scale, half a second a note, with a little vibrato: a melody the tracker hears all the way."""
    t = np.arange(int(sr * 0.5)) / sr
    notes = [60, 62, 64, 65, 67, 69, 71, 72]
    x = np.concatenate([np.sin(2 * np.pi * 440 * 2 ** ((notes[i % 8] - 69) / 12) * (t + 0.0003 * np.sin(2 * np.pi
                        * 5 * t))) for i in range(int(seconds * 2))])
    sf.write(path, 0.3 * x.astype(np.float32), sr, subtype="PCM_16")
    return path


def measure(hum_seconds: float, generations: int, seconds: float, assets: str = "assets") -> dict:
    import gradio_client

    r = {"hum_seconds": hum_seconds, "generations": generations, "seconds": seconds}
    with tempfile.TemporaryDirectory() as tmp, serving(assets, str(Path(tmp) / "lib")) as (url, server, startup):
        r["startup_s"] = round(startup, 1)
        r["start_mb"] = rss_mb(server.pid, "VmRSS")
        r["start_peak_mb"] = rss_mb(server.pid)
        client = gradio_client.Client(url, verbose=False)
        t0 = time.time()
        said = client.predict(gradio_client.handle_file(str(hum_file(Path(tmp) / "hum.wav", hum_seconds))),
                              api_name="/hear")[0]
        r["hum_s"] = round(time.time() - t0, 1)
        r["hum_heard"] = str(said).split("\n")[0][:120]
        r["hum_peak_mb"] = rss_mb(server.pid)
        r["after_hum_mb"] = rss_mb(server.pid, "VmRSS")
        before = rss_mb(server.pid, "VmRSS")
        g = run_sessions(url, 1, seconds, per_session=generations)
        r["served"], r["errors"] = g["served"], g["errors"][:5]
        r["after_generations_mb"] = rss_mb(server.pid, "VmRSS")
        r["growth_mb"] = round(r["after_generations_mb"] - r["start_mb"], 1)
        r["growth_over_generations_mb"] = round(r["after_generations_mb"] - before, 1)
    return r


def markdown(r: dict) -> str:
    return "\n".join([
        f"\n## App memory — {date.today()}, {platform.machine()}, {os.cpu_count()} cores\n",
        f"`python -m app.memcheck --hum-seconds {r['hum_seconds']:g} --generations {r['generations']} --seconds "
        f"{r['seconds']:g}` (shipped weights; resident memory of the app's process)\n",
        "| measure | value | target |", "| --- | --- | --- |",
        f"| after start-up | {r['start_mb']:.0f} MB (peak so far {r['start_peak_mb']:.0f} MB) | |",
        f"| peak while analysing a {r['hum_seconds']:g} s hum ({r['hum_s']:g} s) | {r['hum_peak_mb']:.0f} MB "
        f"| < {TARGETS['hum_peak_mb']} MB |",
        f"| after {r['served']} generations of {r['seconds']:g} s, over start-up | {r['growth_mb']:+.0f} MB "
        f"| within {TARGETS['growth_mb']} MB |",
        f"| the same, over the memory after the hum | {r['growth_over_generations_mb']:+.0f} MB | |",
    ]) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m app.memcheck", description=__doc__.split("\n\n")[0])
    ap.add_argument("--hum-seconds", type=float, default=300.0)
    ap.add_argument("--generations", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=2.0, help="length of each generated clip")
    ap.add_argument("--assets", default="assets")
    a = ap.parse_args(argv)
    if not 1 <= a.hum_seconds <= 300 or a.generations < 1 or not 1 <= a.seconds <= 300:
        ap.error("--hum-seconds is 1-300, --generations at least 1, --seconds 1-300")
    r = measure(a.hum_seconds, a.generations, a.seconds, a.assets)
    print(markdown(r))
    print(f"heard: {r['hum_heard']}", file=sys.stderr)
    for e in r["errors"]:
        print("error:", e, file=sys.stderr)
    ok = r["hum_peak_mb"] < TARGETS["hum_peak_mb"] and abs(r["growth_mb"]) <= TARGETS["growth_mb"] and not r["errors"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
