"""Serve the app with safe defaults: this machine only (127.0.0.1, requests for other host names refused, so a web
page cannot reach it by DNS rebinding), no share link, 20 MB uploads, a queue of 16 with one generation at a time,
Gradio's monitoring endpoint off, files served only from the library and Gradio's own cache (cleared hourly).

Beyond this machine (``--listen``, ``--share``, or ``GRADIO_SERVER_NAME`` naming another address) a password is
required: ``--auth USER:PASS`` or ``CANTUS_AUTH``, else one is generated and printed; every page and API call then
needs the login. ``--read-only`` serves the library's clips and permalinks and nothing that changes them (no
generating, renaming, deleting or importing), so it may be shared without a password. ``--no-auth`` serves the
network without one, for a trusted network. Gradio's ``GRADIO_SERVER_PORT`` / ``GRADIO_SERVER_NAME`` apply when
``--port`` / ``--listen`` are not given.
"""
from __future__ import annotations

import argparse
import os
import secrets
import sys
from pathlib import Path

DEFAULT_LIBRARY = Path(os.environ.get("CANTUS_LIBRARY", "~/.cantus/library")).expanduser()
LOCAL_NAMES = ("127.0.0.1", "localhost", "::1")


def make_app(assets: str | Path = "assets", library: str | Path = DEFAULT_LIBRARY, backend: str = "onnx",
             read_only: bool = False):
    from engine import Cantus

    from .library import ClipLibrary
    from .studio import Studio
    from .ui import build

    engine = None if read_only else Cantus.load(assets, backend)
    if engine is not None:
        engine.warm_up()
        # the clip analysis's beat tracker (librosa, numba) and the hum tracker load once, at start-up rather than
        # on the first clip or hum (a jam's first hum otherwise stalled its audio while the tracker loaded)
        import numpy as np

        from engine import MelodyError, analyse, melody_from_audio
        tone = 0.1 * np.sin(np.arange(48_000, dtype=np.float32) * 2 * np.pi * 220 / 24_000)
        analyse(tone)
        try:
            melody_from_audio(tone, 24_000)
        except MelodyError:
            pass
    lib = ClipLibrary(library)
    demo = build(Studio(engine, lib, assets), read_only=read_only)
    demo.queue(max_size=16, default_concurrency_limit=2)
    return demo, lib


MAX_QUERY = 4096  # characters of a query string; Gradio answers a longer URL with an internal error


class LongQueryGuard:
    """ASGI middleware: a request whose query string is over MAX_QUERY characters (a mangled permalink) gets a 414
    with one sentence and a link to the app, instead of Gradio's bare internal error."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and len(scope.get("query_string", b"")) > MAX_QUERY:
            body = (b"<p>That link is too long to name a clip. A Cantus permalink looks like /?clip=0123456789ab; "
                    b"<a href=\"/\">open the app</a>.</p>")
            await send({"type": "http.response.start", "status": 414,
                        "headers": [(b"content-type", b"text/html; charset=utf-8"),
                                    (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)


def parse_auth(value: str) -> tuple[str, str]:
    user, sep, password = value.partition(":")
    if not sep or not user or not password:
        raise ValueError("the login must be USER:PASS (a user name, a colon, a password), e.g. --auth me:s3cret")
    return user, password


def launch_options(a: argparse.Namespace, env: dict, library: Path) -> tuple[dict, str | None]:
    """The keyword arguments of ``Blocks.launch`` for these flags and environment, and a line to print for the
    user (the generated password, or a warning), if any."""
    from starlette.middleware import Middleware
    from starlette.middleware.trustedhost import TrustedHostMiddleware

    name = "0.0.0.0" if a.listen else env.get("GRADIO_SERVER_NAME") or "127.0.0.1"
    port = a.port if a.port is not None else int(env.get("GRADIO_SERVER_PORT") or 7860)
    exposed = a.share or name not in LOCAL_NAMES
    auth, note = None, None
    given = a.auth or env.get("CANTUS_AUTH")
    if given:
        auth = parse_auth(given)
    elif exposed and not a.no_auth and not a.read_only:
        auth = ("cantus", secrets.token_urlsafe(12))
        note = f"Cantus is served beyond this machine: log in as user {auth[0]!r} with password {auth[1]!r}"
    elif exposed and a.no_auth:
        note = "warning: --no-auth serves the app to the network without a password; use it on a trusted network only"
    middleware = [Middleware(LongQueryGuard)]
    if not a.share and name in LOCAL_NAMES:  # a page elsewhere that renames itself to 127.0.0.1 is refused
        middleware.append(Middleware(TrustedHostMiddleware, allowed_hosts=["localhost", "127.0.0.1", "[::1]", "::1"]))
    app_kwargs = {"middleware": middleware}
    opts = {"server_name": name, "server_port": port, "share": a.share, "auth": auth,
            "inbrowser": not a.no_browser, "max_file_size": "20mb", "enable_monitoring": False,
            "allowed_paths": [str(library)], "app_kwargs": app_kwargs}
    return opts, note


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python launch.py", description="Cantus: text and hum to music.")
    ap.add_argument("--listen", action="store_true", help="serve on all network interfaces (default: this machine only)")
    ap.add_argument("--share", action="store_true", help="create a public gradio.live link (off by default)")
    ap.add_argument("--port", type=int, default=None, help="default: GRADIO_SERVER_PORT, else 7860")
    ap.add_argument("--auth", default=None, metavar="USER:PASS",
                    help="login required for every page and API call (default: CANTUS_AUTH; beyond this machine "
                    "a password is generated when none is given)")
    ap.add_argument("--no-auth", action="store_true", help="serve the network without a password (trusted networks)")
    ap.add_argument("--read-only", action="store_true",
                    help="serve the library's clips and permalinks only: no generating, renaming, deleting, importing")
    ap.add_argument("--library", type=Path, default=DEFAULT_LIBRARY, help="where clips are kept")
    ap.add_argument("--assets", default="assets")
    ap.add_argument("--backend", choices=["onnx", "torch"], default="onnx", help="onnxruntime (default) or eager torch")
    ap.add_argument("--no-browser", action="store_true", help="do not open a browser tab")
    a = ap.parse_args(argv)
    if a.auth and a.no_auth:
        ap.error("--auth and --no-auth contradict each other")
    try:
        opts, note = launch_options(a, dict(os.environ), Path(a.library).expanduser())
    except ValueError as e:
        ap.error(str(e))
    try:
        demo, lib = make_app(a.assets, a.library, a.backend, a.read_only)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if note:
        print(note, flush=True)
    demo.launch(**opts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
