"""A jam played from a script, with a player's timing, and what it measured.

A script is a JSON list of changes on the listener's timeline (seconds of audio heard), in order, the first at 0
with a prompt::

    [{"t": 0, "prompt": "calm piano"}, {"t": 20, "prompt": "energetic techno", "bpm": 128},
     {"t": 40, "melody": "hum.wav"}, {"t": 60, "melody": null},
     {"t": 70, "blend": ["calm piano", "jazz trumpet"], "weight": 0.5}]

Keys: ``prompt``; ``blend`` (two prompts) with ``weight`` (the second's share, default 0.5); ``bpm`` and ``key``
(null gives them back to the prompt); ``melody`` (an audio file, relative to the script, or null to stop following
it). Anything else is refused with one line saying what is accepted.

The player (``play``): playback starts when the first chunk is ready; afterwards the generator starts the next chunk
when ``lead`` seconds of made audio are left to play (just in time: what is generated ahead is what a change must
wait for), and a chunk finished after its playback time is an underrun (playback waits for it). A change at time t
is read by the first chunk the generator starts after the listener heard t. Without ``realtime`` the waits are
computed rather than slept (the same schedule, the generation times measured), so a 10-minute jam is measured in
the time its generation takes; with ``realtime`` the player sleeps as a live one would.
"""
from __future__ import annotations

import json
import math
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..audio import AudioError, load_audio
from ..settings import SAMPLE_RATE, GenerationError
from .session import LEAD_S, Jam

KEYS = ("t", "prompt", "blend", "weight", "bpm", "key", "melody")


class ScriptError(ValueError):
    """A script the jam cannot play; the message is one line for the user."""


@dataclass
class Change:
    t: float
    set: dict  # JamControls fields; "melody" holds the hum's audio until ``track_hums``
    what: str  # "prompt", "blend", "bpm", "key", "melody", "melody off", ...
    applied_at: float | None = None  # audio time of the chunk boundary it took effect at
    tokens: np.ndarray | None = None  # the hum's melody tokens, once tracked
    extra: dict = field(default_factory=dict)


def parse(script, base: Path, seconds: float) -> list[Change]:
    """A script (parsed JSON or its text) -> changes; ScriptError for anything it cannot play."""
    if isinstance(script, str):
        try:
            script = json.loads(script)
        except json.JSONDecodeError as e:
            raise ScriptError(f"the script is not JSON ({e.msg}, line {e.lineno})") from None
    if not isinstance(script, list) or not script:
        raise ScriptError("a script is a JSON list of changes, e.g. [{\"t\": 0, \"prompt\": \"calm piano\"}]")
    out, last = [], -1.0
    for i, ev in enumerate(script):
        where = f"change {i + 1}"
        if not isinstance(ev, dict):
            raise ScriptError(f"{where} is not an object with \"t\" and what changes")
        unknown = sorted(set(ev) - set(KEYS))
        if unknown:
            raise ScriptError(f"{where}: unknown key {unknown[0]!r}; accepted: {', '.join(KEYS)}")
        t = ev.get("t")
        if not isinstance(t, (int, float)) or isinstance(t, bool) or not math.isfinite(t) or t < 0:
            raise ScriptError(f"{where}: \"t\" must be a time in seconds from 0, got {t!r}")
        if t < last:
            raise ScriptError(f"{where}: times must not go back (t={t:g} after t={last:g})")
        if t >= seconds:
            raise ScriptError(f"{where}: t={t:g} is not inside the jam's {seconds:g} s")
        last = float(t)
        changes, what = {}, []
        if "blend" in ev:
            b = ev["blend"]
            if not (isinstance(b, list) and len(b) == 2 and all(isinstance(p, str) and p.strip() for p in b)):
                raise ScriptError(f"{where}: \"blend\" is a list of two prompts")
            if "prompt" in ev:
                raise ScriptError(f"{where}: give \"prompt\" or \"blend\", not both")
            changes.update(prompt=b[0], blend=b[1], weight=ev.get("weight", 0.5))
            what.append("blend")
        elif "weight" in ev:
            changes["weight"] = ev["weight"]
            what.append("weight")
        if "prompt" in ev:
            if not isinstance(ev["prompt"], str) or not ev["prompt"].strip():
                raise ScriptError(f"{where}: \"prompt\" must be words, got {ev['prompt']!r}")
            changes.update(prompt=ev["prompt"], blend=None)
            what.append("prompt")
        for k in ("bpm", "key"):
            if k in ev:
                changes[k] = ev[k]
                what.append(k if ev[k] is not None else f"{k} off")
        if "melody" in ev:
            changes["melody"] = None if ev["melody"] is None else _hum(ev["melody"], base, where)
            what.append("melody" if ev["melody"] is not None else "melody off")
        if not what:
            raise ScriptError(f"{where} changes nothing; give one of {', '.join(KEYS[1:])}")
        out.append(Change(float(t), changes, "+".join(what)))
    if out[0].t != 0 or "prompt" not in out[0].set:
        raise ScriptError("the first change must be at t=0 and give a \"prompt\" or a \"blend\"")
    return out


def _hum(name, base: Path, where: str) -> np.ndarray:
    if not isinstance(name, str):
        raise ScriptError(f"{where}: \"melody\" is an audio file or null, got {name!r}")
    path = (base / name) if not Path(name).is_absolute() else Path(name)
    if not path.is_file():
        raise ScriptError(f"{where}: the melody file {str(path)!r} does not exist")
    try:
        return load_audio(path, SAMPLE_RATE, max_seconds=30)
    except AudioError as e:
        raise ScriptError(f"{where}: {e}") from None


def _rss_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize() / 2 ** 20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def play(jam: Jam, changes: list[Change], seconds: float, realtime: bool = False, lead: float = LEAD_S,
         progress=None) -> tuple[np.ndarray, dict]:
    """Play the changes over ``seconds`` of jam -> (audio, report). The first change must already be the jam's, and
    the hums tracked (``track_hums``)."""
    C = jam.chunk / 50
    n = math.ceil(seconds / C)
    start, cpu0 = time.perf_counter(), time.process_time()
    out, gen, rss = [], [], []
    ready = play0 = 0.0  # when the generator is free; when playback (re)started, minus the audio before it
    done = 0  # samples of audio before chunk k (chunks differ a little from C while drums are taken out)
    underruns, stalled, pending = 0, 0.0, list(changes[1:])
    changes[0].applied_at = 0.0
    for k in range(n):
        at = done / SAMPLE_RATE
        made = (done + jam.held()) / SAMPLE_RATE  # what the remover holds counts, as in Jam.stream
        begin = 0.0 if k == 0 else max(ready, play0 + made - lead)
        if realtime:
            time.sleep(max(0.0, start + begin - time.perf_counter()))
        while pending and k > 0 and play0 + pending[0].t <= begin + 1e-9:  # the same instant, up to rounding
            ch = pending.pop(0)
            try:
                jam.set(**ch.set)
            except GenerationError as e:  # the jam plays on with what it had
                ch.extra["refused"] = str(e)
            ch.applied_at = at
        t0 = time.perf_counter()
        out.append(jam.next_chunk())
        g = time.perf_counter() - t0
        gen.append(g)
        ready = begin + g
        if k == 0:
            play0 = first = ready
        elif ready > play0 + at:  # the chunk came late: playback waited for it
            underruns += 1
            stalled += ready - (play0 + at)
            play0 = ready - at
        done += len(out[-1])
        rss.append((done / SAMPLE_RATE, _rss_mb()))
        if progress:
            progress(k + 1, n)
    wall = max(ready, play0 + done / SAMPLE_RATE)
    growth_from = next((m for t, m in rss if t >= 60), rss[0][1])
    report = {"seconds": round(n * C, 2), "chunk_seconds": C, "lead_seconds": lead, "realtime": realtime,
              "chunks": n, "first_audio_s": round(first, 3), "underruns": underruns, "stalled_s": round(stalled, 3),
              "busy": round(sum(gen) / wall, 3), "chunk_s_median": round(float(np.median(gen)), 3),
              "chunk_s_max": round(max(gen), 3), "cpu": round((time.process_time() - cpu0) / (time.perf_counter() - start), 3),
              "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
              "chunk_starts": np.cumsum([len(o) for o in out[:-1]]).tolist(),
              "rss_growth_mb": round(rss[-1][1] - growth_from, 1),
              "changes": [{"t": c.t, "what": c.what, "applied_at": c.applied_at,
                           "after_s": None if c.applied_at is None else round(c.applied_at - c.t, 2), **c.extra}
                          for c in changes]}
    return np.concatenate(out)[: int(seconds * SAMPLE_RATE)], report


def track_hums(model, changes: list[Change]) -> None:
    """Every hum of the script tracked into melody tokens before the jam starts: a live player's hums are tracked
    as they arrive, beside the generator, not inside its chunk (tracking 8 s of hum takes seconds)."""
    for i, ch in enumerate(changes):
        if ch.set.get("melody") is not None and ch.tokens is None:
            try:
                ch.tokens = model.melody_tokens(ch.set["melody"], SAMPLE_RATE)
            except GenerationError as e:
                raise ScriptError(f"change {i + 1}: {e}") from None
            ch.set["melody"] = ch.tokens
