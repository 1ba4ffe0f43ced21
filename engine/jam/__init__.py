"""Jam: endless music steered live (``session.Jam``), and its scripted form for tests and benchmarks
(``script``: ``python -m engine.jam --script SCRIPT.json --seconds S --out OUT.wav [--realtime]``)."""
from .session import CHUNK_S, CONTEXT_S, KEEP_MINUTES, LEAD_S, Jam, JamControls

__all__ = ["CHUNK_S", "CONTEXT_S", "KEEP_MINUTES", "LEAD_S", "Jam", "JamControls"]
