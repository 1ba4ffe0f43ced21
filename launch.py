"""Start Cantus: ``python launch.py`` opens the app on the shipped weights at http://127.0.0.1:7860.

Options: ``--listen`` (serve other machines on the network), ``--share`` (a public Gradio link), ``--port``,
``--library DIR`` (where clips are kept; default ~/.cantus/library), ``--desktop`` (no browser: record a hum from
the microphone and play the music through the speakers; see ``python -m app.desktop --help``).
"""
from __future__ import annotations

import sys


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--desktop" in argv:
        from app.desktop import main as desktop
        return desktop([a for a in argv if a != "--desktop"])
    from app.server import main as server
    return server(argv)


if __name__ == "__main__":
    sys.exit(main())
