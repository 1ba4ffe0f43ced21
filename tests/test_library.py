"""The clip library keeps clips across restarts and crashes, and never lets a request outside its folder."""
from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from app.library import ClipLibrary, LibraryError


def _tone(seconds=1.0):
    t = np.arange(int(24_000 * seconds)) / 24_000
    return (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


def test_save_list_search_rename_delete_survive_a_restart(tmp_path):
    lib = ClipLibrary(tmp_path)
    a = lib.save(_tone(), {"prompt": "calm flute", "seed": 7})
    b = lib.save(_tone(0.5), {"prompt": "fast techno", "seed": 8})
    lib2 = ClipLibrary(tmp_path)  # a restart
    assert {c.id for c in lib2.list()} == {a.id, b.id}
    assert [c.id for c in lib2.list("FLUTE")] == [a.id]
    assert [c.id for c in lib2.list("techno fast")] == [b.id]
    assert np.abs(lib2.audio(a.id) - _tone()).max() < 1e-3
    lib2.rename(a.id, "  my   tune ")
    assert ClipLibrary(tmp_path).get(a.id).name == "my tune"
    lib2.delete(b.id)
    assert [c.id for c in ClipLibrary(tmp_path).list()] == [a.id]


def test_ids_cannot_escape_the_library(tmp_path):
    lib = ClipLibrary(tmp_path / "lib")
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "meta.json").write_text("{}")
    for bad in ("../secret", "/etc/passwd", "..", "", "ABCDEFABCDEF", None):
        with pytest.raises(LibraryError):
            lib.get(bad)
    with pytest.raises(LibraryError):
        lib.delete("../secret")
    assert (tmp_path / "secret" / "meta.json").exists()


def _save_forever(root):
    lib = ClipLibrary(root)
    big = np.tile(_tone(), 120)  # 2 minutes of audio: a slow write
    while True:
        lib.save(big, {"prompt": "being written"})


def test_a_crash_mid_save_lists_nothing_half_written_and_loses_nothing(tmp_path):
    lib = ClipLibrary(tmp_path)
    kept = lib.save(_tone(), {"prompt": "kept"})
    p = mp.get_context("spawn").Process(target=_save_forever, args=(str(tmp_path),))
    p.start()
    deadline = time.time() + 60
    while not list(tmp_path.glob(".tmp-*")) and time.time() < deadline:  # wait until a save is in flight
        time.sleep(0.005)
    os.kill(p.pid, signal.SIGKILL)
    p.join()
    lib = ClipLibrary(tmp_path)  # the restart after the crash
    clips = lib.list()
    assert kept.id in {c.id for c in clips}
    for c in clips:  # every listed clip is whole
        assert len(lib.audio(c.id)) == round(c.meta["seconds"] * 24_000)
    assert not list(tmp_path.glob(".tmp-*"))


def test_bundles_round_trip_and_bad_bundles_get_readable_errors(tmp_path):
    src, dst = ClipLibrary(tmp_path / "a"), ClipLibrary(tmp_path / "b")
    clip = src.save(_tone(), {"prompt": "folk tune", "seed": 3, "settings": {"temperature": 1.0}})
    imported = dst.import_bundle(src.export_bundle(clip.id))
    assert imported.meta["prompt"] == "folk tune" and imported.meta["seed"] == 3 and imported.meta["imported"]
    assert np.abs(dst.audio(imported.id) - src.audio(clip.id)).max() == 0
    with pytest.raises(LibraryError, match="not a zip"):
        dst.import_bundle(b"hello")
    import io
    import zipfile
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("meta.json", "{}")
    with pytest.raises(LibraryError, match="audio.wav"):
        dst.import_bundle(buf.getvalue())
    with pytest.raises(LibraryError):
        src.save(np.zeros(0, np.float32), {})


@pytest.mark.parametrize("fmt", ["wav", "flac", "mp3"])
def test_downloads_carry_prompt_and_seed_in_their_tags(tmp_path, fmt):
    import json
    import subprocess

    from app.export import export
    meta = {"id": "0123456789ab", "prompt": "calm flute", "seed": 42, "settings": {"temperature": 1.0}}
    path = export(_tone(), 24_000, meta, fmt, tmp_path)
    probe = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format_tags:format=duration", "-of", "json",
                            str(path)], capture_output=True, text=True, check=True)
    info = json.loads(probe.stdout)["format"]
    tags = {k.lower(): v for k, v in info.get("tags", {}).items()}
    assert tags["title"] == "calm flute"
    assert json.loads(tags["comment"])["seed"] == 42
    assert abs(float(info["duration"]) - 1.0) < 0.1


def test_killing_the_app_mid_generation_keeps_the_library_whole(tiny_assets, tmp_path):
    """SIGKILL of launch.py while a clip streams: earlier clips survive whole, nothing partial is listed, and the
    restarted app serves and saves again."""
    import subprocess
    import sys
    import urllib.request

    gradio_client = pytest.importorskip("gradio_client")
    from .conftest import free_port
    root = Path(__file__).resolve().parent.parent
    lib_dir = tmp_path / "library"
    kept = ClipLibrary(lib_dir).save(_tone(), {"prompt": "saved yesterday", "seed": 1})

    def launch():
        port = free_port()
        proc = subprocess.Popen([sys.executable, str(root / "launch.py"), "--assets", str(tiny_assets), "--library",
                                 str(lib_dir), "--port", str(port), "--no-browser"], cwd=root,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}/"
        deadline = time.time() + 180
        while True:
            assert proc.poll() is None, "the app exited at start-up"
            try:
                urllib.request.urlopen(url, timeout=2)
                return proc, gradio_client.Client(url, verbose=False)
            except OSError:
                assert time.time() < deadline, "the app did not start"
                time.sleep(0.5)

    story = {"headers": ["prompt", "seconds"], "data": [["", 10]]}
    proc, client = launch()
    try:
        job = client.submit("a long folk tune", story, 120, 7, 1.0, 0, 3.0, 0, 1, 8, api_name="/generate")
        deadline = time.time() + 120
        while not any(o[0] for o in job.outputs()) and time.time() < deadline:  # audio is streaming
            time.sleep(0.05)
        assert any(o[0] for o in job.outputs()), "generation never started streaming"
    finally:
        proc.kill()
        proc.wait()
    lib = ClipLibrary(lib_dir)
    assert [c.id for c in lib.list()] == [kept.id]
    assert np.abs(lib.audio(kept.id) - _tone()).max() < 1e-3, "the earlier clip is intact"
    proc, client = launch()
    try:
        final = client.predict("a short folk tune", story, 2, 8, 1.0, 0, 3.0, 0, 1, 8, api_name="/generate")
        assert final[2].startswith("Saved as"), final[2]
        assert len(ClipLibrary(lib_dir).list()) == 2
    finally:
        proc.kill()
        proc.wait()
