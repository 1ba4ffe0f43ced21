"""Load on a running app: concurrent gradio_client sessions, each generating clips back to back.

``python -m app.loadtest [--sessions 8] [--minutes 3] [--seconds 10] [--append BENCHMARKS.md]`` starts
``launch.py`` in a child process (shipped weights, a throw-away library, 127.0.0.1), runs the sessions until the
deadline (a request started before it finishes), and reports requests served, errors, p50/p95 latency to the first
streamed chunk and to the saved clip (both include waiting in the queue: one generation runs at a time), the
server's peak resident memory (VmHWM) and whether every served clip is in the library. ``run_sessions`` is also
what the load test drives against a tiny-model app.
"""
from __future__ import annotations

import argparse
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import numpy as np


def run_sessions(url: str, sessions: int, seconds: float, deadline: float | None = None,
                 per_session: int | None = None) -> dict:
    """Each session generates ``seconds``-long clips until ``deadline`` (time.time()) or ``per_session`` clips."""
    import gradio_client

    errors, first, total, saved = [], [], [], []
    lock = threading.Lock()

    def user(k):
        try:
            client = gradio_client.Client(url, verbose=False)
        except Exception as e:  # reported in the result
            with lock:
                errors.append(f"connect: {e!r}")
            return
        j = 0
        while (per_session is None or j < per_session) and (deadline is None or time.time() < deadline):
            t0 = time.time()
            try:
                job = client.submit(f"a folk tune number {k}-{j}", {"headers": ["prompt", "seconds"], "data": [["", 10]]},
                                    seconds, 1000 * k + j, 1.0, 0, 3.0, 0, 1, 8, "Auto", None, 0.5,
                                    api_name="/generate")
                t_first = None
                for out in job:
                    if out[0] and t_first is None:
                        t_first = time.time() - t0
                status = job.outputs()[-1][2]
                if not status.startswith("Saved as"):
                    raise RuntimeError(status)
                with lock:
                    first.append(t_first if t_first is not None else float("nan"))
                    total.append(time.time() - t0)
                    saved.append(status.split("`")[1])
            except Exception as e:
                with lock:
                    errors.append(repr(e))
            j += 1

    threads = [threading.Thread(target=user, args=(k,), daemon=True) for k in range(sessions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"sessions": sessions, "served": len(saved), "errors": errors, "first_chunk_s": first, "total_s": total,
            "saved": saved}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int, field: str = "VmHWM") -> float:
    """A process's resident memory from /proc: ``VmHWM`` its peak so far, ``VmRSS`` now."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@contextmanager
def serving(assets: str, library: str):
    """``launch.py`` in a child process on a free local port -> (url, process, seconds it took to answer)."""
    root = Path(__file__).resolve().parent.parent
    port = _free_port()
    server = subprocess.Popen([sys.executable, str(root / "launch.py"), "--port", str(port), "--library", library,
                               "--assets", assets, "--no-browser"], cwd=root, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        t_start = time.time()
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"the app exited: {server.stderr.read()[-2000:]}")
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                if time.time() - t_start > 300:
                    raise RuntimeError("the app did not answer within 300 s") from None
                time.sleep(1)
        yield url, server, time.time() - t_start
    finally:
        server.terminate()
        server.wait(timeout=60)


def measure(sessions: int, minutes: float, seconds: float, assets: str = "assets") -> dict:
    from .library import ClipLibrary

    with tempfile.TemporaryDirectory() as tmp, serving(assets, tmp) as (url, server, startup):
        r = run_sessions(url, sessions, seconds, deadline=time.time() + minutes * 60)
        r["server_peak_rss_mb"] = rss_mb(server.pid)
        r["in_library"] = len({c.id for c in ClipLibrary(tmp).list()} & set(r["saved"]))
    r.update(minutes=minutes, seconds=seconds, startup_s=startup)
    return r


def markdown(r: dict) -> str:
    def pct(v, q):
        return f"{np.nanpercentile(v, q):.1f}" if len(v) else "n/a"
    return "\n".join([
        f"\n## Load — {date.today()}, {platform.machine()}, {os.cpu_count()} cores\n",
        f"`python -m app.loadtest --sessions {r['sessions']} --minutes {r['minutes']:g} --seconds {r['seconds']:g}`: "
        f"{r['sessions']} gradio_client sessions against `launch.py` (shipped weights), each generating "
        f"{r['seconds']:g} s clips back to back; one generation runs at a time, the rest queue.\n",
        "| measure | value |", "| --- | --- |",
        f"| app start-up (launch to first answer) | {r['startup_s']:.1f} s |",
        f"| requests served / errors | {r['served']} / {len(r['errors'])} |",
        f"| served clips found in the library | {r['in_library']} of {r['served']} |",
        f"| latency to first chunk, p50 / p95 (queue included) | {pct(r['first_chunk_s'], 50)} s / {pct(r['first_chunk_s'], 95)} s |",
        f"| latency to saved clip, p50 / p95 (queue included) | {pct(r['total_s'], 50)} s / {pct(r['total_s'], 95)} s |",
        f"| server peak resident memory | {r['server_peak_rss_mb']:.0f} MB |",
    ]) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m app.loadtest", description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", type=int, default=8)
    ap.add_argument("--minutes", type=float, default=3.0)
    ap.add_argument("--seconds", type=float, default=10.0, help="length of each requested clip")
    ap.add_argument("--assets", default="assets")
    ap.add_argument("--append", type=Path, default=None, help="append the markdown table to this file")
    a = ap.parse_args(argv)
    r = measure(a.sessions, a.minutes, a.seconds, a.assets)
    text = markdown(r)
    print(text)
    for e in r["errors"][:10]:
        print("error:", e, file=sys.stderr)
    if a.append:
        with open(a.append, "a") as f:
            f.write(text)
    return 0 if not r["errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
