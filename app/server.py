"""Serve the app: safe defaults (127.0.0.1, no share link, 20 MB uploads, a queue of 16 with one generation at a
time, Gradio's monitoring endpoint off, files served only from the library and Gradio's own cache)."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

DEFAULT_LIBRARY = Path(os.environ.get("CANTUS_LIBRARY", "~/.cantus/library")).expanduser()


def make_app(assets: str | Path = "assets", library: str | Path = DEFAULT_LIBRARY, backend: str = "onnx"):
    from engine import Cantus

    from .library import ClipLibrary
    from .studio import Studio
    from .ui import build

    engine = Cantus.load(assets, backend)
    engine.warm_up()
    lib = ClipLibrary(library)
    demo = build(Studio(engine, lib))
    demo.queue(max_size=16, default_concurrency_limit=2)
    return demo, lib


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python launch.py", description="Cantus: text and hum to music.")
    ap.add_argument("--listen", action="store_true", help="serve on all network interfaces (default: this machine only)")
    ap.add_argument("--share", action="store_true", help="create a public gradio.live link (off by default)")
    ap.add_argument("--port", type=int, default=7860)
    ap.add_argument("--library", type=Path, default=DEFAULT_LIBRARY, help="where clips are kept")
    ap.add_argument("--assets", default="assets")
    ap.add_argument("--backend", choices=["onnx", "torch"], default="onnx", help="onnxruntime (default) or eager torch")
    ap.add_argument("--no-browser", action="store_true", help="do not open a browser tab")
    a = ap.parse_args(argv)
    try:
        demo, lib = make_app(a.assets, a.library, a.backend)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    demo.launch(server_name="0.0.0.0" if a.listen else "127.0.0.1", server_port=a.port, share=a.share,
                inbrowser=not a.no_browser, max_file_size="20mb", enable_monitoring=False,
                allowed_paths=[str(lib.root)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
