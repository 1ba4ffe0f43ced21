"""Jam: music that plays on until stopped and follows the prompt, a blend of two prompts, the tempo, the key and a
hum as they change. ``Jam(model, "calm piano")`` then ``next_chunk()`` again and again; ``set(...)`` and ``hum(...)``
from any thread. The scripted form and its report: ``python -m engine.jam --script SCRIPT.json --seconds S
--out OUT.wav [--realtime]``.

Each chunk (CHUNK_S of audio) is made by the same sampler as a clip (``Cantus.code_stream``), with the last
CONTEXT_S of the jam's own codes and semantic ids as its context (``Request.context``): the music continues rather
than restarts, and the codec decoder keeps its state from chunk to chunk, so there is no join to smooth. A change
takes effect at the next chunk boundary: the chunk made after it reads the new prompt (or blend: the two prompts'
MuLan embeddings mixed by weight, as Magenta RealTime blends styles), tempo (the beat grid carries its position
across a change of BPM, so the beat does not jump), key, or hum (tracked into melody tokens that loop under the
following chunks until cleared). While the prompt (and the blend, if it has a share) refuses drums, the drum remover
cleans the chunks (``engine.demix.LiveRemover``: switched on or off at a boundary without a gap).
"""
from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import numpy as np
import torch

from ..controls import parse_key, parse_prompt
from ..demix import LiveRemover
from ..pipeline import Cantus
from ..reference import style_embedding
from ..settings import SAMPLE_RATE, GenerationError, Request, Segment, Settings, check_bpm, prompt_bpm

CHUNK_S = 1.0  # audio per chunk: a change is read at the next boundary (2 s chunks heard a new prompt 1 s later)
CONTEXT_S = 5.0  # the jam's own past each chunk continues (long form keeps as much)
SWITCH_S = 1.0  # the past kept by the first chunk after a new prompt: 5 s of the old style held it back
LEAD_S = 1.0  # made audio left to play when a live player's generator starts the next chunk (a chunk takes 0.3 s)
KEEP_MINUTES = 5  # the jam's last minutes kept for "keep" (int16: 14 MB)
FRAME_RATE = 50  # codec frames per second


@dataclass(frozen=True)
class JamControls:
    """What the player steers. ``blend``: a second prompt, ``weight`` its share (0 = the prompt alone)."""
    prompt: str = ""
    blend: str | None = None
    weight: float = 0.5
    bpm: float | None = None  # None: the prompt's tempo (a BPM or tempo word it names), else the model's
    key: str | None = None
    melody: np.ndarray | None = None  # 25 Hz melody tokens, looped under the music

    def checked(self, model: Cantus) -> JamControls:
        """These controls, or GenerationError saying what is wrong (the jam keeps playing the old ones)."""
        for text in (self.prompt, self.blend):
            if text is not None:
                model.text_tokens(text)  # an empty or unreadable prompt raises
        if not (isinstance(self.weight, (int, float)) and 0 <= self.weight <= 1):
            raise GenerationError(f"the blend weight is a share from 0 to 1, got {self.weight!r}")
        if self.bpm is not None:
            check_bpm(self.bpm, "the tempo")
        if self.key is not None:
            try:
                parse_key(self.key)
            except ValueError as e:
                raise GenerationError(str(e)) from None
        if self.melody is not None and not (np.asarray(self.melody) > 0).any():
            raise GenerationError("no melody was heard in the hum: hum or whistle a tune, louder")
        return self


class Jam:
    def __init__(self, model: Cantus, prompt: str, seed: int = 0, chunk_seconds: float = CHUNK_S,
                 context_seconds: float = CONTEXT_S, switch_seconds: float = SWITCH_S, **controls):
        if not 0.5 <= chunk_seconds <= 5 or not 0 <= switch_seconds <= context_seconds <= 8:
            raise GenerationError("a jam's chunks are 0.5-5 s long with 0-8 s of context (less after a new prompt)")
        self.model, self.seed = model, int(seed)
        self.chunk = 2 * round(chunk_seconds * FRAME_RATE / 2)  # codec frames, even (two per semantic id)
        self.keep = 2 * round(context_seconds * FRAME_RATE / 2)
        self.switch = 2 * round(switch_seconds * FRAME_RATE / 2)
        self.controls = JamControls(prompt=prompt, **controls).checked(model)
        self._pending: JamControls | None = None
        self._lock = threading.Lock()
        self.codes = torch.zeros(9, 0, dtype=torch.long)  # the jam's last frames: 8 code levels + semantic ids
        self.decoder_state = None
        self.chunks = 0  # chunks made so far
        self.beat = 0.0  # beat position at the start of the next chunk
        self.melody_pos = 0  # where in the looped melody the next chunk starts (25 Hz frames)
        self.recent: deque[np.ndarray] = deque(maxlen=math.ceil(KEEP_MINUTES * 60 * FRAME_RATE / self.chunk))
        self.timeline: list[tuple[float, str]] = [(0.0, self.controls.prompt)]  # when each prompt began
        self._bpm_memo: tuple[str, float | None] | None = None
        self._style_memo: tuple[tuple, torch.Tensor | None] | None = None
        self.remover = LiveRemover(model.drum_remover) if model.drum_remover is not None else None

    @property
    def seconds(self) -> float:
        """Audio made so far."""
        return self.chunks * self.chunk / FRAME_RATE

    def set(self, **changes) -> JamControls:
        """Change what the jam follows from the next chunk on (``JamControls`` fields; ``melody=None`` clears the
        hum, ``bpm=None`` gives the tempo back to the prompt). Raises GenerationError, the jam unchanged."""
        with self._lock:
            base = self._pending or self.controls
            new = replace(base, **changes)
        new.checked(self.model)
        with self._lock:
            self._pending = new
            if "melody" in changes:
                self.melody_pos = 0
        return new

    def hum(self, audio: np.ndarray, sr: int) -> np.ndarray:
        """Track a hum (a few seconds of microphone audio) and follow it from the next chunk; -> its tokens."""
        tokens = self.model.melody_tokens(audio, sr)
        self.set(melody=tokens)
        return tokens

    def _bpm(self, c: JamControls) -> float | None:
        """The tempo to keep: the player's, else the prompt's, drawn once per prompt (a tempo word's BPM would
        otherwise change with every chunk's seed)."""
        if c.bpm is not None:
            return float(c.bpm)
        if self._bpm_memo is None or self._bpm_memo[0] != c.prompt:
            self._bpm_memo = (c.prompt, prompt_bpm(c.prompt, self.seed))
        return self._bpm_memo[1]

    def _style(self, c: JamControls) -> torch.Tensor | None:
        """The blend's MuLan embedding (None: the prompt alone, through the usual path)."""
        if c.blend is None or c.weight == 0:
            return None
        key = (c.prompt, c.blend, float(c.weight))
        if self._style_memo is None or self._style_memo[0] != key:
            a, b = self.model.mulan.embed_prompt([c.prompt, c.blend])
            self._style_memo = (key, style_embedding(b, a, float(c.weight)))
        return self._style_memo[1]

    def _melody(self, c: JamControls) -> np.ndarray | None:
        if c.melody is None:
            return None
        tokens = np.asarray(c.melody)
        n = self.chunk // 2
        out = np.resize(np.roll(tokens, -(self.melody_pos % len(tokens))), n)
        self.melody_pos += n
        return out

    @torch.inference_mode()
    def next_chunk(self) -> np.ndarray:
        """The next CHUNK_S of audio (float32, 24 kHz), made with the controls in force now."""
        with self._lock:
            restyled = self._pending is not None and (self._pending.prompt, self._pending.blend,
                                                      self._pending.weight) != (self.controls.prompt,
                                                                                self.controls.blend,
                                                                                self.controls.weight)
            if self._pending is not None:
                self.controls, self._pending = self._pending, None
            c = self.controls
        if restyled:
            self.timeline.append((self.seconds, c.prompt if c.blend is None else f"{c.prompt} + {c.blend}"))
        bpm = self._bpm(c)
        seconds = self.chunk / FRAME_RATE
        settings = Settings(duration=seconds, seed=self.seed * 100_003 + self.chunks, bpm=bpm, key=c.key)
        ctx = self.codes[:, -self.switch:] if restyled and self.switch else self.codes[:, :0] if restyled else self.codes
        req = Request([Segment(c.prompt, seconds)], settings, melody=self._melody(c),
                      context=ctx if ctx.shape[-1] else None, beat=self.beat, style=self._style(c))
        with self.model.threads():
            codes = torch.cat(list(self.model.code_stream(req, chunk_frames=self.chunk)), -1)[:, : self.chunk]
            audio, self.decoder_state = self.model.decoder.decode_step(codes[None, :8], self.decoder_state,
                                                                       codes[8:9])
        self.codes = torch.cat([ctx, codes], -1)[:, -self.keep:] if self.keep else self.codes
        self.chunks += 1
        if bpm is not None:
            self.beat = (self.beat + seconds * bpm / 60) % 1.0
        out = np.asarray(audio[0], dtype=np.float32)
        if self.remover is not None:
            blend_refuses = c.blend is None or c.weight == 0 or parse_prompt(c.blend).drums is False
            out = self.remover(out, req.controls().drums is False and blend_refuses)
        self.recent.append((np.clip(out, -1, 1) * 32767).astype(np.int16))
        return out

    def stream(self, stop: Callable[[], bool] | None = None, lead: float = LEAD_S) -> Iterator[np.ndarray]:
        """Chunks for a live player, each made just in time: the next is started when ``lead`` seconds of made
        audio are left to play (what is made ahead is what a change has to wait for; audio the drum remover still
        holds counts, so its lag does not delay changes more). Ends when ``stop()``."""
        played, play0 = 0.0, None  # seconds handed to the player (chunks differ a little while drums are removed)
        while not (stop and stop()):
            if play0 is not None:
                while (wait := play0 + played + self.held() / SAMPLE_RATE - lead - time.perf_counter()) > 0:
                    if stop and stop():
                        return
                    time.sleep(min(wait, 0.1))
            audio = self.next_chunk()
            now = time.perf_counter()
            if play0 is None or now > play0 + played:  # the first chunk, or a late one: playback waited for it
                play0 = now - played
            yield audio
            played += len(audio) / SAMPLE_RATE

    def held(self) -> int:
        """Samples of made music the drum remover holds back (its lag while it runs)."""
        return self.remover.held if self.remover is not None else 0

    def kept(self, minutes: float = KEEP_MINUTES) -> tuple[np.ndarray, list[dict]]:
        """The jam's last ``minutes`` (float32) and the prompts heard in them with their seconds (a story)."""
        n = min(len(self.recent), math.ceil(minutes * 60 * FRAME_RATE / self.chunk))
        if n == 0:
            raise GenerationError("nothing has played yet")
        audio = np.concatenate(list(self.recent)[-n:]).astype(np.float32) / 32767
        start, end = self.seconds - n * self.chunk / FRAME_RATE, self.seconds
        story = []
        for i, (t, prompt) in enumerate(self.timeline):
            t_next = self.timeline[i + 1][0] if i + 1 < len(self.timeline) else end
            if t_next > start:
                story.append({"prompt": prompt, "seconds": round(t_next - max(t, start), 2)})
        return audio, story
