"""Cantus engine: text (+ hum) to music, MusicLM at laptop scale. Never imports the app.

The public API, what ``app/`` and the docs use::

    from engine import Cantus, Request, Segment, Settings
    model = Cantus.load("assets")
    audio = model.generate(Request([Segment("slow meditative flute and guitar", 10.0)], Settings(seed=7)))

- ``Cantus``: the generator (``load``, ``generate``, ``generate_stream``, ``melody_tokens``, ``warm_up``);
- ``Settings``, ``Segment``, ``Request``: what a generation is asked for; ``prompt_bpm``: the tempo a prompt names;
- ``GenerationError`` (input the generator cannot use; the message is for the user) and ``Cancelled``;
- ``load_audio``, ``resample`` and ``AudioError``: reading any audio file, at any rate;
- ``melody_from_audio``, ``MelodyTrack`` and ``MelodyError``: a hum, whistle or song to the melody it carries;
- ``parse_prompt``, ``parse_key``, ``Controls``, ``ControlError``, ``KEYS``, ``transpose_tokens``: the key, tempo,
  lead and drums a prompt names or a musician sets (``engine.controls``);
- ``analyse``: a finished clip's tempo and key (``engine.analysis``); ``check_reference``: whether a recording can
  be a "sounds like" style reference (``engine.reference``);
- ``Jam`` and ``JamControls``: endless music steered live (``engine.jam``);
- ``make_loop``, ``plan_loop``, ``Loop``, ``check_loop``, ``loop_bpm``: a seamless loop of N bars (``engine.loops``);
- ``clip_midi``, ``hum_notes``, ``read_midi``: a clip as a MIDI file of its melody, its notes and its hum
  (``engine.midi``);
- ``SAMPLE_RATE`` (24 kHz, the output's), ``DRAFTS`` (semantic drafts ranked by default).

Names are imported on first use, so ``import engine.data`` (the corpus workers) does not load the models' code.
"""
from __future__ import annotations

import importlib

_API = {
    "Cantus": "pipeline", "Cancelled": "pipeline",
    "Settings": "settings", "Segment": "settings", "Request": "settings", "GenerationError": "settings",
    "prompt_bpm": "settings", "SAMPLE_RATE": "settings", "DRAFTS": "settings",
    "load_audio": "audio", "resample": "audio", "AudioError": "audio",
    "melody_from_audio": "melody", "MelodyTrack": "melody", "MelodyError": "melody",
    "Controls": "controls", "ControlError": "controls", "KEYS": "controls", "parse_key": "controls",
    "parse_prompt": "controls", "transpose_tokens": "controls", "analyse": "analysis",
    "check_reference": "reference", "Jam": "jam", "JamControls": "jam",
    "make_loop": "loops", "plan_loop": "loops", "Loop": "loops", "check_loop": "loops",
    "loop_bpm": "loops", "clip_midi": "midi", "hum_notes": "midi", "read_midi": "midi",
}
__all__ = ["DRAFTS", "KEYS", "SAMPLE_RATE", "AudioError", "Cancelled", "Cantus", "ControlError", "Controls",
           "GenerationError", "MelodyError", "MelodyTrack", "Request", "Segment", "Settings", "load_audio",
           "melody_from_audio", "parse_key", "parse_prompt", "prompt_bpm", "resample", "transpose_tokens",
           "analyse", "check_reference", "Jam", "JamControls", "make_loop", "plan_loop", "Loop", "check_loop", "loop_bpm",
           "clip_midi", "hum_notes", "read_midi"]


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'engine' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_API[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
