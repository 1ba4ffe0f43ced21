"""The Gradio app: create (prompt, hum, settings, story, stream), library (browse, play, rename, delete, remix,
share) — widgets only; the work is in ``app.studio`` and ``app.library``. Read-only (``build(..., read_only=True)``):
the library's clips and permalinks only; the events that would change anything are not even registered, so no API
call can reach them.

Streaming: the generate event is a generator that yields 1 s int16 chunks at a fixed gain into a streaming
``gr.Audio`` (Gradio would rescale float chunks one by one). Stop cancels the event; the engine stops at the next
step. Every finished clip is saved to the library before it is shown; ``/?clip=<id>`` opens a clip.
"""
from __future__ import annotations

import atexit
import functools
import random
import shutil
import tempfile

import gradio as gr
import numpy as np
import pandas as pd

from engine import DRAFTS, KEYS, SAMPLE_RATE, Cancelled

from . import studio
from .export import FORMATS, ExportError, export, export_midi
from .jam_tab import build_jam_tab
from .library import LibraryError, clean_text
from .studio import EXAMPLES, Studio, UserError

HEADERS = studio.HEADERS


@functools.cache
def _downloads() -> str:
    """The folder for prepared downloads: made on first use (most runs never download), removed at exit."""
    path = tempfile.mkdtemp(prefix="cantus-dl-")
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def build(st: Studio, read_only: bool = False) -> gr.Blocks:

    # uploads and served copies live in Gradio's cache: cleared of files older than an hour, every hour
    with gr.Blocks(title="Cantus", delete_cache=(3600, 3600)) as demo:
        heard_state = gr.State(None)
        clip_state = gr.State(None)  # id of the clip on show
        gr.Markdown("# Cantus\n" + ("Clips shared from a Cantus library." if read_only else
                                      "Type what you want to hear; hum, whistle or sing a melody if you like."))
        with gr.Tab("Create", visible=not read_only):
            with gr.Row():
                with gr.Column(scale=3):
                    prompt = gr.Textbox(label="Prompt", lines=2, max_length=2000,
                                        placeholder="slow meditative flute and guitar")
                    controls_text = gr.Markdown()
                    gr.Examples(EXAMPLES, inputs=prompt, label="Examples")
                    melody = gr.Audio(sources=["microphone", "upload"], type="filepath",
                                      label="Melody (optional): record a hum or upload a file")
                    heard_text = gr.Markdown()
                    with gr.Row():
                        reference = gr.Audio(sources=["upload"], type="filepath", scale=3,
                                             label="Sounds like (optional): a recording whose style, tempo and key to follow")
                        ref_weight = gr.Slider(0, 1, value=0.5, step=0.05, scale=1, label="Its share of the style",
                                               info="with a prompt too; alone it is the whole style")
                    heard_plot = gr.LinePlot(x="seconds", y="MIDI note", height=180, label="What I heard",
                                             visible=False)
                with gr.Column(scale=2):
                    duration = gr.Slider(1, 300, value=10, step=1, label="Duration (s)")
                    with gr.Row():
                        seed = gr.Number(value=0, precision=0, label="Seed", minimum=0)
                        dice = gr.Button("Random", scale=0, min_width=80)
                    temperature = gr.Slider(0.1, 2.0, value=1.0, step=0.05, label="Temperature (x stage defaults)")
                    top_k = gr.Slider(0, 1024, value=0, step=1, label="Top-k (0 = off)")
                    guidance = gr.Slider(1.0, 8.0, value=3.0, step=0.5, label="Guidance")
                    bpm = gr.Number(value=0, minimum=0, maximum=240, label="Tempo, BPM (0 = auto)",
                                    info="0: as the prompt says (\"at 96 bpm\", \"slow\", \"up-tempo\"), else the "
                                    "model's choice")
                    key = gr.Dropdown(["Auto", *KEYS], value="Auto", label="Key",
                                      info="Auto: a key the prompt names; a key chosen here also moves a hum into it")
                    variations = gr.Slider(1, 4, value=1, step=1, label="Variations (seed, seed+1, …)")
                    loop_bars = gr.Number(value=0, precision=0, minimum=0, maximum=64, label="Loop: bars (0 = off)",
                                          info="a seamless loop of N bars (4 beats each) at the tempo above or the "
                                          "prompt's (else its own, found first); the duration is ignored")
                    drafts = gr.Slider(1, 16, value=DRAFTS, step=1, label="Drafts (text alone)",
                                       info="keeps the best-fitting of N sketches; 1 = the fastest first sound")
            with gr.Accordion("Story mode: a new prompt every few seconds", open=False):
                story = gr.Dataframe(headers=["prompt", "seconds"], datatype=["str", "number"], row_count=3,
                                     column_count=2, value=[["", 10], ["", 10], ["", 10]], label="Story")
            with gr.Row():
                go = gr.Button("Generate", variant="primary")
                extend = gr.Button("Extend this clip")
                stop = gr.Button("Stop", variant="stop")
            status = gr.Markdown()
            live = gr.Audio(label="Live", streaming=True, autoplay=True, interactive=False)
            result = gr.Audio(label="Clip", type="filepath", interactive=False)
            info = gr.Markdown()
            with gr.Row():  # one click each: the files are made when the clip is shown
                downloads = [gr.DownloadButton(f"Download {f.upper()}", visible=False) for f in (*FORMATS, "midi")]

        if not read_only:
            build_jam_tab(st)

        with gr.Tab("Library"):
            with gr.Row():
                search = gr.Textbox(label="Search", placeholder="words of the prompt or name, a key (A minor), a "
                                    "tempo (120bpm)", scale=3)
                sort = gr.Radio(["newest", "tempo", "key"], value="newest", label="Sort by", scale=1)
                refresh = gr.Button("Refresh", scale=0)
            table = gr.Dataframe(headers=HEADERS, interactive=False, label="Clips (newest first)")
            damaged_note = gr.Markdown()
            lib_player = gr.Audio(type="filepath", label="Selected clip (click a row to play it)", interactive=False,
                                  autoplay=True)
            lib_info = gr.Markdown()
            with gr.Row():
                lib_downloads = [gr.DownloadButton(f"Download {f.upper()}", visible=False) for f in (*FORMATS, "midi")]
            with gr.Row(visible=not read_only):
                new_name = gr.Textbox(label="Rename to", scale=3)
                rename_btn = gr.Button("Rename")
                remix_btn = gr.Button("Remix (load its settings)")
                delete_btn = gr.Button("Delete", variant="stop")
                clean_btn = gr.Button("Remove damaged clips")
            with gr.Row():
                bundle_btn = gr.Button("Export bundle (zip)")
                bundle_file = gr.File(label="Bundle", interactive=False)
                import_file = gr.File(label="Import a bundle", file_types=[".zip"], type="filepath",
                                      visible=not read_only)
            lib_status = gr.Markdown()

        # ------------------------------------------------------------------------------------------ create
        def on_melody(path):
            if not path:
                return None, "", gr.update(visible=False)
            try:
                h = studio.hear(path)
            except UserError as e:
                return None, f"⚠️ {e}", gr.update(visible=False)
            t = np.arange(len(h.midi)) / 25
            df = pd.DataFrame({"seconds": t, "MIDI note": h.midi}).dropna()
            return h, h.summary(), gr.update(value=df, visible=True)

        if not read_only:  # one hum analysis at a time (studio.hear holds a lock too, for other callers)
            melody.change(on_melody, melody, [heard_state, heard_text, heard_plot], api_name="hear",
                          concurrency_limit=1, concurrency_id="hear")
            dice.click(lambda: random.randrange(2 ** 31), None, seed)

        def run(prompt_v, story_v, heard, dur, seed_v, temp, k, g, tempo, n_var, n_drafts, key_v, ref, ref_w, cont_id,
                progress, bars=0):
            try:
                settings = studio.settings_from_ui(dur, seed_v, temp, k, g, tempo, n_drafts, key_v, ref_w)
                segs = studio.story_from_rows(story_v)
                if not segs and not (prompt_v or "").strip() and not ref:
                    raise UserError("type a prompt first (or fill the story table, or give a 'sounds like' recording)")
                last = None
                for v in range(int(n_var)):
                    s = studio.Settings(**{**settings.__dict__, "seed": settings.seed + v})
                    req, meta = st.request(prompt_v, segs, heard, s, cont_id, ref, studio.loop_bars_from_ui(bars))
                    label = f"variation {v + 1}/{int(n_var)}: " if n_var > 1 else ""
                    yield gr.skip(), gr.skip(), f"{label}generating…", gr.skip(), gr.skip()
                    for kind, item in st.stream(req, meta, progress=lambda f, what: progress(f, desc=label + what)):
                        if kind == "chunk":
                            yield (SAMPLE_RATE, item), gr.skip(), gr.skip(), gr.skip(), gr.skip()
                        else:
                            last = item
                    yield gr.skip(), str(last.audio_path), f"Saved as `{last.id}` ({label or 'done'})", \
                        studio.describe(last), last.id
            except (UserError, LibraryError) as e:
                raise gr.Error(str(e))
            except Cancelled:
                yield gr.skip(), gr.skip(), "Stopped.", gr.skip(), gr.skip()

        inputs = [prompt, story, heard_state, duration, seed, temperature, top_k, guidance, bpm, variations, drafts,
                  key, reference, ref_weight, loop_bars]
        outputs = [live, result, status, info, clip_state]

        def generate(prompt_v, story_v, heard, dur, seed_v, temp, k, g, tempo, n_var, n_drafts, key_v="Auto",
                     ref=None, ref_w=0.5, bars=0, progress=gr.Progress()):
            yield from run(prompt_v, story_v, heard, dur, seed_v, temp, k, g, tempo, n_var, n_drafts, key_v, ref, ref_w,
                           None, progress, bars)

        def extend_clip(prompt_v, story_v, heard, dur, seed_v, temp, k, g, tempo, n_var, n_drafts, key_v, ref, ref_w,
                        bars, cont_id, progress=gr.Progress()):
            if not cont_id:
                raise gr.Error("there is no clip to extend yet: generate one or pick one in the library")
            yield from run(prompt_v, story_v, heard, dur, seed_v, temp, k, g, tempo, n_var, n_drafts, key_v, ref, ref_w,
                           cont_id, progress, bars)

        def show_controls(prompt_v, heard, dur, seed_v, tempo, key_v):
            try:
                settings = studio.settings_from_ui(dur, seed_v, 1.0, 0, 3.0, tempo, 1, key_v)
            except UserError as e:
                return f"⚠️ {e}"
            return studio.controls_line(prompt_v, settings, heard)

        if not read_only:
            gen = go.click(generate, inputs, outputs, concurrency_limit=1, concurrency_id="generate",
                           api_name="generate")
            ext = extend.click(extend_clip, inputs + [clip_state], outputs, concurrency_limit=1,
                               concurrency_id="generate", api_name="extend")
            stop.click(None, None, None, cancels=[gen, ext])
            shown = [prompt, heard_state, duration, seed, bpm, key]
            for trigger in (prompt.change, heard_state.change, seed.change, bpm.change, key.change):
                trigger(show_controls, shown, controls_text, api_visibility="private", queue=False)

        def prepare_downloads(cid):
            """The clip on show as WAV, MP3 and FLAC (tags: prompt, settings, tempo, key) and MIDI, one button
            each; a format that cannot be made (ffmpeg or the transcriber missing) shows no button."""
            hidden = gr.update(visible=False)
            if not cid:
                return [hidden] * (2 * len(FORMATS) + 2)
            try:
                clip = st.library.get(cid)
                audio = st.library.audio(cid)
            except LibraryError:
                return [hidden] * (2 * len(FORMATS) + 2)  # the clip went away meanwhile

            def made(make):
                try:
                    return gr.update(value=str(make()), visible=True)
                except (ExportError, LibraryError):
                    return hidden
            shown = [made(lambda f=f: export(audio, SAMPLE_RATE, clip.meta, f, _downloads())) for f in FORMATS]
            shown.append(made(lambda: export_midi(audio, clip.meta, _downloads(), st.assets)))
            return shown * 2

        clip_state.change(prepare_downloads, clip_state, [*downloads, *lib_downloads], api_visibility="private")

        # ----------------------------------------------------------------------------------------- library
        def list_clips(q, order="newest"):
            clips, damaged = st.library.scan(clean_text(q or "", 200))
            note = (f"⚠️ {len(damaged)} damaged clip(s) not listed ({', '.join(damaged[:5])}"
                    f"{', …' if len(damaged) > 5 else ''})" + ("" if read_only else ": *Remove damaged clips* deletes "
                                                                 "them") if damaged else "")
            return pd.DataFrame(studio.clip_table(clips, order if order in ("tempo", "key") else "newest"),
                                columns=HEADERS), note

        def pick(df, evt: gr.SelectData):
            try:
                clip = st.library.get(str(df.iloc[evt.index[0], 0]))
            except (LibraryError, IndexError) as e:
                raise gr.Error(str(e))
            return str(clip.audio_path), studio.describe(clip), clip.id, clip.name

        def do_rename(cid, name, q):
            try:
                clip = st.library.rename(_need(cid), name)
            except LibraryError as e:
                raise gr.Error(str(e))
            return *list_clips(q), studio.describe(clip), "Renamed."

        def do_delete(cid, q):
            try:
                st.library.delete(_need(cid))
            except LibraryError as e:
                raise gr.Error(str(e))
            return *list_clips(q), None, "", None, "Deleted."

        def do_remix(cid):
            try:
                v = studio.remix_values(st.library.get(_need(cid)))
            except LibraryError as e:
                raise gr.Error(str(e))
            story_rows = v["story"] or [["", 10], ["", 10], ["", 10]]
            return v["prompt"], v["duration"], v["seed"], v["temperature"], v["top_k"], v["guidance"], v["bpm"], \
                v["drafts"], v["key"], v["loop_bars"], story_rows, "Settings loaded into Create."

        def do_bundle(cid):
            try:
                data = st.library.export_bundle(_need(cid))
            except LibraryError as e:
                raise gr.Error(str(e))
            path = f"{_downloads()}/cantus-{cid}.zip"
            with open(path, "wb") as fh:
                fh.write(data)
            return path

        def do_import(path, q):
            if not path:
                return gr.skip(), gr.skip()
            try:
                clip = st.library.import_bundle(path)
            except (LibraryError, OSError) as e:
                raise gr.Error(str(e))
            return *list_clips(q), f"Imported as `{clip.id}`: {clip.name}"

        def do_clean(q):
            removed = []
            for cid in st.library.scan()[1]:
                try:
                    st.library.delete(cid)
                    removed.append(cid)
                except LibraryError:
                    pass  # gone meanwhile
            return *list_clips(q), f"Removed {len(removed)} damaged clip(s)."

        listing = [table, damaged_note]
        search.submit(list_clips, [search, sort], listing)
        refresh.click(list_clips, [search, sort], listing)
        sort.change(list_clips, [search, sort], listing)
        table.select(pick, table, [lib_player, lib_info, clip_state, new_name])
        bundle_btn.click(do_bundle, clip_state, bundle_file)
        if not read_only:
            rename_btn.click(do_rename, [clip_state, new_name, search], [*listing, lib_info, lib_status])
            delete_btn.click(do_delete, [clip_state, search], [*listing, lib_player, lib_info, clip_state, lib_status])
            remix_btn.click(do_remix, clip_state, [prompt, duration, seed, temperature, top_k, guidance, bpm, drafts,
                                                   key, loop_bars, story, lib_status])
            import_file.upload(do_import, [import_file, search], [*listing, lib_status])
            clean_btn.click(do_clean, search, [*listing, lib_status])

        # --------------------------------------------------------------------------------------- permalinks
        def on_load(q, request: gr.Request):
            cid = (request.query_params.get("clip") if request else None) or ""
            listed = list_clips(q)
            if not cid:
                return *listed, None, "", None, ""
            try:
                clip = st.library.get(cid[:64])  # a link of any length gets an answer, not a stalled queue
            except LibraryError as e:
                return *listed, None, f"⚠️ {e}", None, ""
            return *listed, str(clip.audio_path), studio.describe(clip), clip.id, clip.name

        shown = [lib_player, lib_info] if read_only else [result, info]
        demo.load(on_load, search, [*listing, *shown, clip_state, new_name])
    return demo


def _need(cid):
    if not cid:
        raise LibraryError("pick a clip in the table first")
    return cid
