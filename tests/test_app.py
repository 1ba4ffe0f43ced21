"""The app through gradio_client, on a launched server with tiny models: streaming, library, errors, cancel."""
from __future__ import annotations

import time

import numpy as np
import pytest
import soundfile as sf

from .conftest import free_port

gradio_client = pytest.importorskip("gradio_client")


@pytest.fixture(scope="module")
def server(tiny_assets, tmp_path_factory):
    from app.server import make_app
    lib_dir = tmp_path_factory.mktemp("library")
    demo, lib = make_app(tiny_assets, lib_dir)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, enable_monitoring=False,
                max_file_size="20mb", allowed_paths=[str(lib.root)])
    yield f"http://127.0.0.1:{port}/", lib
    demo.close()


def _story(rows=None):
    return {"headers": ["prompt", "seconds"], "data": rows or [["", 10]]}


def _args(prompt="calm piano ballad", duration=3, seed=1):
    return {"prompt_v": prompt, "story_v": _story(), "dur": duration, "seed_v": seed, "temp": 1.0, "k": 0, "g": 3.0, "tempo": 0, "n_var": 1,
                "n_drafts": 8, "key_v": "Auto", "ref": None, "ref_w": 0.5}


def test_text_only_generation_streams_chunks_and_lands_in_the_library(server):
    url, lib = server
    client = gradio_client.Client(url, verbose=False)
    before = len(lib.list())
    job = client.submit(*_args().values(), api_name="/generate")
    outputs = list(job)
    live_chunks = [o for o in outputs if o[0]]
    assert len(live_chunks) >= 3, "one streamed chunk per second of music"
    final = outputs[-1]
    assert final[2].startswith("Saved as")
    audio, sr = sf.read(final[1])
    assert sr == 24_000 and len(audio) == 3 * 24_000
    assert len(lib.list()) == before + 1
    clip = lib.get(final[2].split("`")[1])
    assert clip.meta["seed"] == 1 and clip.meta["prompt"] == "calm piano ballad"


def test_a_loop_from_the_app_is_exactly_its_bars_and_says_so(server):
    url, lib = server
    client = gradio_client.Client(url, verbose=False)
    final = list(client.submit(*{**_args(prompt="a techno track"), "tempo": 120, "bars": 2}.values(),
                               api_name="/generate"))[-1]
    audio, sr = sf.read(final[1])
    assert len(audio) == 2 * 4 * 0.5 * sr, "2 bars of 4 beats at 120 BPM"
    clip = lib.get(final[2].split("`")[1])
    assert clip.meta["loop"]["bpm"] == clip.meta["analysis"]["bpm"] == 120, "the tags carry the loop's exact tempo"
    assert "Loop: 2-bar loop at 120 BPM" in final[3]
    with pytest.raises(Exception, match="at most 5 minutes"):
        client.predict(*{**_args(), "tempo": 40, "bars": 64}.values(), api_name="/generate")


def test_bad_inputs_get_readable_errors(server, tmp_path):
    url, _ = server
    client = gradio_client.Client(url, verbose=False)
    with pytest.raises(Exception, match="type a prompt"):
        client.predict(*_args(prompt="  ").values(), api_name="/generate")
    bad = tmp_path / "not_audio.wav"
    bad.write_bytes(b"this is text, not sound" * 10)
    said = client.predict(gradio_client.handle_file(str(bad)), api_name="/hear")[0]
    assert said.startswith("⚠️") and "audio" in said.lower()
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(24_000 * 2, np.float32), 24_000)
    said = client.predict(gradio_client.handle_file(str(silent)), api_name="/hear")[0]
    assert said.startswith("⚠️") and "silent" in said


def test_a_hum_upload_is_heard_as_notes(server, tmp_path):
    url, _ = server
    client = gradio_client.Client(url, verbose=False)
    sr, notes = 16_000, [60, 62, 64, 65, 67]
    t = np.arange(int(0.5 * sr)) / sr
    hum = np.concatenate([0.3 * np.sin(2 * np.pi * 440 * 2 ** ((n - 69) / 12) * t) for n in notes]).astype(np.float32)
    path = tmp_path / "hum.wav"
    sf.write(path, hum, sr)
    summary = client.predict(gradio_client.handle_file(str(path)), api_name="/hear")[0]
    assert "C D E F G" in summary


def test_stop_cancels_a_long_generation(server):
    url, lib = server
    client = gradio_client.Client(url, verbose=False)
    before = len(lib.list())
    job = client.submit(*_args(duration=120).values(), api_name="/generate")
    deadline = time.time() + 120
    while len(job.outputs()) < 2 and time.time() < deadline:
        time.sleep(0.2)
    job.cancel()
    time.sleep(3)
    assert len(job.outputs()) < 120, "cancelled long before the end"
    assert len(lib.list()) == before, "a cancelled clip is not saved"


def test_a_jam_plays_on_takes_a_new_prompt_and_keeps_its_last_minutes(server):
    url, lib = server
    client = gradio_client.Client(url, verbose=False)
    job = client.submit("calm piano", "", 0.5, 0, "Auto", api_name="/jam")
    deadline = time.time() + 60
    while len(job.outputs()) < 2 and time.time() < deadline:
        time.sleep(0.2)
    assert len(job.outputs()) >= 2, "the jam streams chunk after chunk"
    said = client.predict("energetic techno", "", 0.5, 0, "Auto", api_name="/jam_prompt")
    assert said.startswith("From the next chunk: prompt energetic techno"), said
    refused = client.predict(" ", "", 0.5, 0, "Auto", api_name="/jam_prompt")
    assert refused.startswith("⚠️") and "plays on" in refused
    n = len(job.outputs())
    while len(job.outputs()) < n + 3 and time.time() < deadline + 60:
        time.sleep(0.2)
    kept = client.predict(1, api_name="/jam_keep")
    clip = lib.get(kept.split("clip ")[1].split()[0])
    assert [s["prompt"] for s in clip.meta["story"]] == ["calm piano", "energetic techno"], clip.meta
    assert clip.meta["settings"]["jam"] and clip.meta["seconds"] >= 8
    client.predict(api_name="/jam_stop")
    job.cancel()
    time.sleep(3)
    n = len(job.outputs())
    time.sleep(4)
    assert len(job.outputs()) == n, "Stop ends the jam"
    with pytest.raises(Exception, match="start a jam first"):
        client.predict(1, api_name="/jam_keep")
