"""The Jam tab: music that plays on until stopped, steered live (``engine.Jam``). Start streams the jam into a
streaming ``gr.Audio`` (int16 chunks at a fixed gain, as the Create tab streams clips), each chunk made just in
time (``Jam.stream``); the prompt (on Enter), the blend, tempo and key apply from the next chunk; the live
microphone's last seconds, when "Follow my humming" is on, are tracked into the melody the next chunks follow.
"Keep" saves the last minutes to the library as an ordinary clip, its prompts as a story.

One jam per browser session (keyed by Gradio's session hash): a second Start in the same page ends the first.
"""
from __future__ import annotations

import os
import random
import threading
from dataclasses import dataclass, field

import gradio as gr
import numpy as np

from engine import KEYS, SAMPLE_RATE, GenerationError, Jam, MelodyError, analyse, melody_from_audio, resample

from .library import LibraryError
from .studio import Heard, Studio, clean_prompt, to_int16

# Gradio streams audio to the page as HLS segments, one per chunk: 2 s chunks (its guide asks for over 1 s), and
# 3.5 s made ahead (measured in Chromium: 1.5 s stalled once at the start of two minutes; 2.5 s stalled once when a
# training shared the cores)
BROWSER_CHUNK_S, BROWSER_LEAD_S = 2.0, 3.5
HUM_BLOCKS = 2  # the melody followed is the last this many blocks of the microphone, each tracked once
TRACK_EVERY_S = 2.0  # a block's length: every 2 s the newest block is tracked (tracking costs CPU the jam needs)
QUIET_DB = -45.0  # below this level the microphone hears no hum


@dataclass
class Live:
    jam: Jam
    stopped: bool = False
    mic: list[np.ndarray] = field(default_factory=list)  # microphone audio at 24 kHz not yet tracked
    blocks: list[np.ndarray] = field(default_factory=list)  # melody tokens of the last blocks tracked
    tracking: bool = False
    heard: str = ""
    following: bool = False


class LiveJams:
    """The running jams, by browser session."""

    def __init__(self, st: Studio):
        self.st, self.jams, self.lock = st, {}, threading.Lock()

    def get(self, request: gr.Request | None) -> Live | None:
        with self.lock:
            return self.jams.get(_sid(request))

    def start(self, request, **controls) -> Live:
        jam = Jam(self.st.engine, seed=random.randrange(2 ** 31), chunk_seconds=BROWSER_CHUNK_S, **controls)
        live = Live(jam)
        with self.lock:
            old = self.jams.get(_sid(request))
            if old is not None:
                old.stopped = True
            self.jams[_sid(request)] = live
        return live

    def stop(self, request) -> None:
        with self.lock:
            live = self.jams.pop(_sid(request), None)
        if live is not None:
            live.stopped = True


def _sid(request: gr.Request | None) -> str:
    return getattr(request, "session_hash", None) or "local"


def _controls(prompt, blend, weight, bpm, key) -> dict:
    return {"prompt": clean_prompt(prompt), "blend": clean_prompt(blend) if (blend or "").strip() else None,
            "weight": float(weight), "bpm": float(bpm) if bpm else None, "key": None if key in (None, "Auto") else key}


def level_bar(audio: np.ndarray) -> str:
    """A level meter in text: ten bars over -60..0 dBFS."""
    db = 20 * np.log10(float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) + 1e-9)
    n = int(np.clip((db + 60) / 6, 0, 10))
    return f"🎤 {'▮' * n}{'▯' * (10 - n)} {max(db, -60):.0f} dB"


def build_jam_tab(st: Studio) -> None:
    """The tab's widgets and events; call inside the app's ``gr.Blocks``."""
    jams = LiveJams(st)
    with gr.Tab("Jam"):
        gr.Markdown("Music that plays on until you stop it. Change the prompt, blend two, set the tempo or key, or "
                    f"hum: each change is heard from the next {BROWSER_CHUNK_S:g}-second chunk.")
        with gr.Row():
            with gr.Column(scale=3):
                prompt = gr.Textbox(label="Jam prompt", value="calm piano", max_length=2000,
                                    info="press Enter to apply it while the jam plays")
                with gr.Row():
                    blend = gr.Textbox(label="Blend with (optional)", scale=3, max_length=2000,
                                       placeholder="jazz trumpet")
                    weight = gr.Slider(0, 1, value=0.5, step=0.05, label="Blend", scale=2,
                                       info="0: the prompt alone, 1: the blend alone")
                mic = gr.Audio(sources=["microphone"], streaming=True, label="Live microphone")
                follow = gr.Checkbox(value=True, label="Follow my humming")
                heard = gr.Markdown()
            with gr.Column(scale=2):
                bpm = gr.Number(value=0, minimum=0, maximum=240, label="Tempo, BPM (0 = the prompt's)")
                key = gr.Dropdown(["Auto", *KEYS], value="Auto", label="Key")
                keep_minutes = gr.Slider(1, 5, value=2, step=1, label="Keep the last minutes")
        with gr.Row():
            start = gr.Button("Start jam", variant="primary")
            stop = gr.Button("Stop jam", variant="stop")
            keep = gr.Button("Keep")
        status = gr.Markdown()
        out = gr.Audio(label="Jam", streaming=True, autoplay=True, interactive=False)

        def run(prompt_v, blend_v, weight_v, bpm_v, key_v, request: gr.Request):
            try:
                live = jams.start(request, **_controls(prompt_v, blend_v, weight_v, bpm_v, key_v))
            except (GenerationError, ValueError) as e:
                raise gr.Error(str(e))
            for chunk in live.jam.stream(stop=lambda: live.stopped, lead=BROWSER_LEAD_S):
                yield SAMPLE_RATE, to_int16(chunk)

        def change(what):
            def apply(prompt_v, blend_v, weight_v, bpm_v, key_v, request: gr.Request):
                live = jams.get(request)
                if live is None:
                    return ""
                c = _controls(prompt_v, blend_v, weight_v, bpm_v, key_v)
                try:
                    live.jam.set(**{k: c[k] for k in what})
                except (GenerationError, ValueError) as e:
                    return f"⚠️ {e} (the jam plays on as it was)"
                return f"From the next chunk: {', '.join(f'{k} {c[k]}' for k in what if c[k] is not None) or 'auto'}"
            return apply

        inputs = [prompt, blend, weight, bpm, key]
        go = start.click(run, inputs, out, api_name="jam", concurrency_limit=None)
        def stop_jam(request: gr.Request):
            jams.stop(request)
        stop.click(stop_jam, None, None, cancels=[go], api_name="jam_stop")
        prompt.submit(change(("prompt",)), inputs, status, api_name="jam_prompt")
        blend.submit(change(("blend", "weight")), inputs, status, api_name="jam_blend")
        weight.release(change(("blend", "weight")), inputs, status, api_visibility="private")
        bpm.submit(change(("bpm",)), inputs, status, api_name="jam_bpm")
        key.change(change(("key",)), inputs, status, api_visibility="private")

        def hum(chunk, follow_v, request: gr.Request):
            if chunk is None:
                return ""
            sr, data = chunk
            x = np.asarray(data, dtype=np.float32)
            x = (x.mean(1) if x.ndim == 2 else x) / (32768.0 if np.issubdtype(np.asarray(data).dtype, np.integer) else 1)
            x = resample(x, int(sr), SAMPLE_RATE) if int(sr) != SAMPLE_RATE else x
            live = jams.get(request)
            if live is None:
                return f"{level_bar(x)}  \nStart the jam to play along."
            meter = level_bar(x)
            if not follow_v:
                live.mic, live.blocks = [], []
                if live.following:
                    live.jam.set(melody=None)
                    live.following, live.heard = False, ""
                return meter
            live.mic.append(x)
            if sum(len(m) for m in live.mic) >= TRACK_EVERY_S * SAMPLE_RATE and not live.tracking:
                block, live.mic = np.concatenate(live.mic), []
                live.tracking = True
                threading.Thread(target=_track, args=(live, block), daemon=True).start()
            return f"{meter}  \n{live.heard}"

        mic.stream(hum, [mic, follow], heard, stream_every=0.5, time_limit=None, api_visibility="private",
                   concurrency_limit=None)

        def do_keep(minutes, request: gr.Request):
            live = jams.get(request)
            if live is None:
                raise gr.Error("start a jam first: Keep saves its last minutes")
            try:
                audio, story = live.jam.kept(float(minutes))
                c = live.jam.controls
                meta = {"prompt": " → ".join(s["prompt"] for s in story), "story": story if len(story) > 1 else None,
                        "seed": live.jam.seed, "settings": {"jam": True, "bpm": c.bpm, "key": c.key,
                                                             "chunk_seconds": live.jam.chunk / 50},
                        "versions": st.engine.versions, "analysis": analyse(audio)}
                clip = st.library.save(audio, meta)
            except (GenerationError, LibraryError) as e:
                raise gr.Error(str(e))
            return f"Kept {len(audio) / SAMPLE_RATE:.0f} s as clip {clip.id} (Library tab)."

        keep.click(do_keep, keep_minutes, status, api_name="jam_keep")


def _track(live: Live, block: np.ndarray) -> None:
    """Track the microphone's newest block and follow the last blocks' melody; silence (no melody in any of them)
    stops the following. A thread at low priority: the stream handler must not wait, nor the jam's chunks."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
    except (AttributeError, OSError):  # not Linux: the thread keeps the process's priority
        pass
    try:
        loud = 20 * np.log10(float(np.sqrt(np.mean(np.square(block)))) + 1e-9) > QUIET_DB
        try:
            tokens = melody_from_audio(block, SAMPLE_RATE).tokens if loud else None
        except MelodyError:
            tokens = None
        n = int(len(block) / SAMPLE_RATE * 25)
        live.blocks = [*live.blocks, np.zeros(n, np.int64) if tokens is None else np.asarray(tokens)][-HUM_BLOCKS:]
        melody = np.concatenate(live.blocks)
        if (melody > 0).any():
            live.jam.set(melody=melody)
            live.following = True
            live.heard = "Following: " + " ".join(n for n, _, _ in Heard("microphone", melody, melody).notes()[:16])
        elif live.following:
            live.jam.set(melody=None)
            live.following, live.heard = False, "Stopped following: no humming heard"
        else:
            live.heard = "Heard no melody yet: hum or whistle a tune"
    except GenerationError as e:
        live.heard = f"⚠️ {e}"
    finally:
        live.tracking = False
