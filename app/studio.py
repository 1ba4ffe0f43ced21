"""What the app does, without the widgets: read a hum, turn UI values into a generation request, stream the music,
save it to the library. ``app.ui`` only wires these to Gradio components, so they are tested directly as well.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import numpy as np

from engine import (
    DRAFTS,
    SAMPLE_RATE,
    AudioError,
    Cantus,
    GenerationError,
    MelodyError,
    Request,
    Segment,
    Settings,
    analyse,
    check_loop,
    check_reference,
    load_audio,
    loop_bpm,
    melody_from_audio,
    plan_loop,
    prompt_bpm,
    transpose_tokens,
)

from .library import PROMPT_CHARS, Clip, ClipLibrary, LibraryError, check_meta, clean_text

MAX_HUM_SECONDS = 300
MAX_STORY_LINES = 32
# One hum analysis at a time: PESTO on a long recording takes a core and hundreds of MB, and two at once
# (the UI's default concurrency) doubled both.
_HEARING = threading.Lock()
NOTE_NAMES = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]
EXAMPLES = [
    "slow meditative flute and guitar",
    "an upbeat pop song with piano and a steady drum beat",
    "a melancholic piano ballad in a minor key",
    "energetic techno track with a driving synth bass",
    "a cheerful folk tune on the fiddle, fast tempo",
    "calm ambient soundscape with warm pads",
    "a swing jazz number led by a trumpet",
    "an epic cinematic orchestral piece",
]


class UserError(ValueError):
    """Shown to the user as it is."""


class Heard:
    """What the app heard in a hum: tokens for the generator and a human summary."""

    def __init__(self, path: str, tokens: np.ndarray, midi: np.ndarray):
        self.path, self.tokens, self.midi = path, tokens, midi

    def notes(self) -> list[tuple[str, float, float]]:
        """(note name, start s, length s) of runs of the same pitch class."""
        out, cur, start = [], 0, 0
        for i, t in enumerate(list(self.tokens) + [0]):
            if t != cur:
                if cur > 0 and i - start >= 3:
                    out.append((NOTE_NAMES[cur - 1], start / 25, (i - start) / 25))
                cur, start = t, i
        return out

    def note_list(self, shift: int = 0) -> list[list]:
        """The hum's notes as [pitch, start s, end s], moved ``shift`` semitones (what its MIDI track holds)."""
        from engine import hum_notes
        return [[n.pitch, round(n.start, 3), round(n.end, 3)] for n in hum_notes(self.midi, shift=shift)]

    def summary(self) -> str:
        notes = self.notes()
        voiced = float(np.mean(self.tokens > 0))
        names = " ".join(n for n, _, _ in notes[:40]) + (" …" if len(notes) > 40 else "")
        return (f"Heard {len(self.tokens) / 25:.1f} s, melody in {voiced:.0%} of it, {len(notes)} notes: {names}\n"
                "If this is not what you sang, record again closer to the microphone.")


def _release_memory() -> None:
    """Give the pages a long hum's analysis freed back to the system: glibc keeps them in its arenas otherwise, and
    the app would stay that much larger for the rest of its life."""
    import ctypes
    import gc
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass


def hear(path: str | None) -> Heard | None:
    """A recorded or uploaded hum -> Heard; None without one; UserError when it cannot be used."""
    if not path:
        return None
    try:
        import soundfile as sf
        try:
            sr = int(sf.info(path).samplerate)
        except (RuntimeError, OSError):
            sr = 44_100  # compressed formats: decoded by ffmpeg at this rate
        sr = min(max(sr, 8_000), 48_000)  # load_audio refuses a declared rate outside 8-192 kHz itself
        with _HEARING:
            try:
                track = melody_from_audio(load_audio(path, sr, max_seconds=MAX_HUM_SECONDS), sr)
            finally:
                _release_memory()
    except (AudioError, MelodyError) as e:
        raise UserError(str(e)) from None
    return Heard(str(path), track.tokens, track.midi)


def read_reference(path: str | None) -> np.ndarray | None:
    """An uploaded "sounds like" recording -> 24 kHz audio fit to be a style reference; None without one."""
    if not path:
        return None
    try:
        return check_reference(load_audio(path, SAMPLE_RATE, max_seconds=600))
    except (AudioError, GenerationError) as e:
        raise UserError(str(e)) from None


def settings_from_ui(duration, seed, temperature, top_k, guidance, bpm=0, drafts=DRAFTS, key="Auto",
                     reference_weight=0.5) -> Settings:
    """The Create tab's controls -> validated Settings; a tempo of 0 (or empty) and the key "Auto" mean "as the
    prompt says"."""
    try:
        s = Settings(duration=float(duration), seed=int(seed), temperature=float(temperature), top_k=int(top_k),
                     guidance=float(guidance), bpm=float(bpm) if bpm else None, drafts=int(drafts),
                     key=None if not key or str(key).strip().lower() == "auto" else str(key),
                     reference_weight=float(reference_weight))
        return s.validate()
    except (TypeError, ValueError) as e:
        raise UserError(str(e)) from None


def loop_bars_from_ui(value) -> int:
    """The Loop box: 0 or empty = no loop, else a whole number of bars."""
    try:
        bars = int(float(value or 0))
    except (TypeError, ValueError):
        raise UserError(f"loop bars must be a whole number (0 = no loop), not {str(value)[:20]!r}") from None
    if bars != float(value or 0) or bars < 0:
        raise UserError(f"loop bars must be a whole number (0 = no loop), not {value}")
    return bars


def clean_prompt(text) -> str:
    """A prompt as the server takes it, whatever the browser sent: control characters dropped, at most
    PROMPT_CHARS characters (UserError beyond)."""
    text = clean_text(text or "", 10 * PROMPT_CHARS)
    if len(text) > PROMPT_CHARS:
        raise UserError(f"the prompt is {len(text)} characters long; the limit is {PROMPT_CHARS}")
    return text


def story_from_rows(rows) -> list[Segment]:
    """Rows of (prompt, seconds) from the story table -> segments (blank rows skipped)."""
    segs = []
    if rows is None:
        return segs
    values = rows.values.tolist() if hasattr(rows, "values") else list(rows)
    for row in values:
        if not row or not clean_text(row[0] or "", 10):
            continue
        if len(segs) == MAX_STORY_LINES:
            raise UserError(f"a story has at most {MAX_STORY_LINES} lines")
        try:
            sec = float(row[1])
        except (TypeError, ValueError, IndexError):
            raise UserError(f"the story line {str(row[0])[:40]!r} needs a number of seconds") from None
        if not 1 <= sec <= 300:
            raise UserError(f"each story line lasts 1 to 300 seconds, not {sec:g}")
        segs.append(Segment(clean_prompt(row[0]), sec))
    return segs


class Studio:
    def __init__(self, engine: Cantus, library: ClipLibrary, assets: str | Path = "assets"):
        self.engine, self.library, self.assets = engine, library, assets  # assets: also the MIDI transcriber's

    def request(self, prompt: str, story: list[Segment], heard: Heard | None, settings: Settings,
                continue_clip: str | None = None, reference: str | None = None,
                loop_bars: int = 0) -> tuple[Request, dict]:
        """UI values -> (the engine's request, the clip's metadata); ``reference``: the path of a recording whose
        style to follow (the prompt may then be empty); ``loop_bars``: make a seamless loop of that many bars."""
        if loop_bars and (story or continue_clip):
            raise UserError("a loop is made from one prompt: clear the story table (and do not extend a clip)")
        if story:
            settings.duration = sum(s.seconds for s in story)
            if settings.duration > 300:
                raise UserError(f"the story lasts {settings.duration:g} s; the limit is 300 s")
            segments = story
        else:
            segments = [Segment(clean_prompt(prompt), settings.duration)]
        cont = None
        if continue_clip:
            cont = self.library.audio(continue_clip)
        req = Request(segments, settings, heard.tokens if heard else None, cont, read_reference(reference))
        try:
            for i, seg in enumerate(segments):
                self.engine.style_tokens(req, i)
                if settings.bpm is None:
                    prompt_bpm(seg.prompt)  # "at 500 bpm" is refused here, not in the middle of the stream
            if loop_bars:
                check_loop(int(loop_bars), 4, loop_bpm(req))
        except GenerationError as e:
            raise UserError(str(e)) from None
        c = req.controls()
        meta = {"prompt": segments[0].prompt if len(segments) == 1 else " → ".join(s.prompt for s in segments),
                "story": [asdict(s) for s in segments] if len(segments) > 1 else None,
                "melody_file": clean_text(Path(heard.path).name, 255) if heard else None,
                "melody_tokens": heard.tokens.tolist() if heard else None,
                "hum_notes": heard.note_list(transpose_tokens(heard.tokens, c.tonic, c.mode or "major")[1]
                                             if settings.key else 0) if heard else None,
                "reference_file": clean_text(Path(reference).name, 255) if reference else None,
                "seed": settings.seed, "settings": asdict(settings), "continues": continue_clip,
                "controls": c.to_json(), "versions": self.engine.versions,
                "loop": {"bars": int(loop_bars)} if loop_bars else None}
        try:
            check_meta(meta)  # what the library will refuse after the music is made is refused now
        except LibraryError as e:
            raise UserError(str(e)) from None
        return req, meta

    def stream(self, req: Request, meta: dict, progress=None, cancel=None) -> Iterator[tuple[str, object]]:
        """Yields ("chunk", int16 [24000]) while generating, then ("clip", Clip) once saved. A loop (``meta["loop"]``)
        streams the music it is cut from, and saves the loop."""
        t0 = time.time()
        parts, plan = [], None
        if meta.get("loop"):
            if progress:
                progress(0.0, "finding the tempo" if loop_bpm(req) is None else "loop")
            try:
                plan = plan_loop(self.engine, req, meta["loop"]["bars"], cancel=cancel)
            except GenerationError as e:
                raise UserError(str(e)) from None
            req = plan.request
        for chunk in self.engine.generate_stream(req, progress=progress, cancel=cancel):
            parts.append(chunk)
            yield "chunk", to_int16(chunk, pad_to=SAMPLE_RATE)
        audio = np.concatenate(parts)
        if req.continuation is not None:  # "extend": the saved clip is the original followed by the new part
            audio = np.concatenate([req.continuation.astype(np.float32), audio])
        if plan is not None:
            loop = plan.finish(audio)
            audio = loop.audio
            meta = {**meta, "loop": {"bars": loop.bars, "beats_per_bar": loop.beats_per_bar, "bpm": loop.bpm,
                                     "tempo_from": loop.tempo_from, "about": loop.describe()}}
        analysis = analyse(audio)
        if plan is not None:  # the loop's tempo is exact: the one its bars were cut at
            analysis["bpm"] = loop.bpm
        meta = {**meta, "generation_seconds": round(time.time() - t0, 2), "analysis": analysis}
        yield "clip", self.library.save(audio, meta)


def controls_line(prompt: str, settings: Settings, heard: Heard | None = None) -> str:
    """What the app shows under the prompt: the key, tempo, lead and drums it will follow, and what a key does
    to a hum."""
    try:
        req = Request([Segment(clean_text(prompt or "", PROMPT_CHARS), settings.duration)], settings,
                      heard.tokens if heard is not None else None)
        c = req.controls()
    except (GenerationError, ValueError) as e:
        return f"⚠️ {e}"
    line = c.describe(int(settings.seed))
    if not line:
        return ""
    text = f"Follows: {line}"
    if heard is not None and settings.key:
        shift = transpose_tokens(heard.tokens, c.tonic, c.mode)[1]
        text += (f". The hum sets the notes; it is moved to {c.key} ({shift:+d} semitones)" if shift else
                 f". The hum already has the notes of {c.key}")
    return text


def to_int16(chunk: np.ndarray, pad_to: int = 0) -> np.ndarray:
    """Fixed gain (no per-chunk rescaling, which would make loudness jump); short chunks padded with silence."""
    x = np.clip(np.asarray(chunk, dtype=np.float32), -1, 1)
    if pad_to and len(x) < pad_to:
        x = np.pad(x, (0, pad_to - len(x)))
    return (x * 32767).astype(np.int16)


HEADERS = ["id", "name", "tempo", "key", "seconds", "seed", "created", "sound"]


def clip_table(clips: list[Clip], sort: str = "newest") -> list[list]:
    """The library's rows (HEADERS), sorted "newest", "tempo" (slowest first) or "key" (C major first)."""
    from engine import KEYS

    def row(c):
        a = c.meta.get("analysis") or {}
        return [c.id, c.name, round(a["bpm"]) if a.get("bpm") else None, a.get("key", ""), c.meta.get("seconds"),
                c.meta.get("seed"), c.meta.get("created", ""), c.meta.get("shape", "")]
    rows = [row(c) for c in clips]
    if sort == "tempo":
        rows.sort(key=lambda r: (r[2] is None, r[2] or 0))
    elif sort == "key":
        rows.sort(key=lambda r: (r[3] not in KEYS, KEYS.index(r[3]) if r[3] in KEYS else 0))
    return rows


def settings_in_words(meta: dict) -> str:
    """"seed 7, temperature x1.0, guidance 3, top-k off, 8 drafts, 96 BPM, key A minor" (what a musician reads;
    the JSON stays in the bundle and the file tags)."""
    s = meta.get("settings") or {}
    t = float(s.get("temperature", 1.0))
    words = [f"seed {meta.get('seed', s.get('seed', 0))}", f"temperature x{t:.1f}" if round(t, 1) == t else
             f"temperature x{t:g}",
             f"guidance {s.get('guidance', 3.0):g}", f"top-k {s['top_k']}" if s.get("top_k") else "top-k off"]
    if s.get("drafts") and not meta.get("melody_file") and not meta.get("continues"):
        words.append(f"{s['drafts']} draft{'s' if s['drafts'] != 1 else ''}")
    if s.get("bpm"):
        words.append(f"{s['bpm']:g} BPM")
    if s.get("key"):
        words.append(f"key {s['key']}")
    return ", ".join(words)


def remix_values(clip: Clip) -> dict:
    s = clip.meta.get("settings", {})
    return {"prompt": clip.meta.get("prompt", ""), "duration": s.get("duration", 10), "seed": clip.meta.get("seed", 0),
            "temperature": s.get("temperature", 1.0), "top_k": s.get("top_k", 0), "guidance": s.get("guidance", 3.0),
            "bpm": s.get("bpm") or 0, "drafts": s.get("drafts", 1),  # clips from before drafts had one
            "key": s.get("key") or "Auto", "loop_bars": (clip.meta.get("loop") or {}).get("bars", 0),
            "story": [[seg["prompt"], seg["seconds"]] for seg in clip.meta.get("story") or []]}


def describe(clip: Clip) -> str:
    m = clip.meta
    lines = [f"**{clip.name}**  ·  id `{clip.id}`  ·  {m.get('seconds')} s  ·  seed {m.get('seed')}",
             f"Prompt: {m.get('prompt')}"]
    if m.get("reference_file"):
        lines.append(f"Sounds like: {m['reference_file']} (weight {m.get('settings', {}).get('reference_weight', 1)})")
    if m.get("melody_file"):
        lines.append(f"Melody: {m['melody_file']}")
    if (m.get("loop") or {}).get("about"):
        lines.append(f"Loop: {m['loop']['about']}; seamless when repeated")
    # the engine ranks drafts only for text alone from nothing; the saved value is kept for remixing
    made_from = ("the hum sets the melody" if m.get("melody_file") else
                 "it continues another clip" if m.get("continues") else None)
    if made_from and "drafts" in m.get("settings", {}):
        lines.append(f"Drafts: none ({made_from}; drafts rank text-alone clips)")
    a = m.get("analysis") or {}
    if a.get("bpm") and a.get("key"):
        lines.append(f"Detected: {a['bpm']:.0f} BPM, {a['key']}")
    if m.get("controls"):
        c = m["controls"]
        named = [f"key {c['key']}" if c.get("key") else "", f"{c['bpm']:g} BPM" if c.get("bpm") else "",
                 c.get("tempo_word") or "", f"lead: {c['lead']}" if c.get("lead") else "",
                 "no drums" if c.get("drums") is False else ""]
        lines.append("Followed: " + ", ".join(n for n in named if n))
    lines.append(f"Settings: {settings_in_words(m)}")
    lines.append(f"Permalink: `/?clip={clip.id}`")
    return "\n\n".join(lines)
