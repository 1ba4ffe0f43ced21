"""A real browser drives the app: record a hum through a fake microphone, generate, hear it play, reopen the clip
from its permalink. Debian's chromium + playwright (see ../shared/notes/browser-testing.md); .ci/run installs both.
``CANTUS_SCREENSHOTS=DIR`` keeps the screenshots (the README's come from a run on the shipped weights)."""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from .conftest import free_port

playwright = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium: apt-get install chromium")


@pytest.fixture(scope="module")
def app_url(tiny_assets, tmp_path_factory):
    from app.server import make_app
    assets = os.environ.get("CANTUS_BROWSER_ASSETS", str(tiny_assets))
    demo, lib = make_app(assets, tmp_path_factory.mktemp("library"))
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, enable_monitoring=False)
    yield f"http://127.0.0.1:{port}/", lib
    demo.close()


@pytest.fixture(scope="module")
def hum_wav(tmp_path_factory) -> Path:
    sr = 48_000
    notes = [67, 67, 69, 67, 72, 71]
    t = np.arange(int(0.45 * sr)) / sr
    env = np.minimum(1, np.minimum(t / 0.03, (0.45 - t) / 0.05))
    hum = np.concatenate([0.3 * env * np.sin(2 * np.pi * 440 * 2 ** ((n - 69) / 12) * t) for n in notes])
    hum = np.concatenate([np.zeros(sr // 2), hum, np.zeros(sr * 2)])
    path = tmp_path_factory.mktemp("hum") / "hum.wav"
    sf.write(path, hum.astype(np.float32), sr, subtype="PCM_16")
    return path


def test_record_a_hum_generate_listen_and_reopen_by_permalink(app_url, hum_wav):
    url, lib = app_url
    shots = os.environ.get("CANTUS_SCREENSHOTS")
    args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={hum_wav}%noloop", "--autoplay-policy=no-user-gesture-required"]
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=args, headless=True)
        ctx = browser.new_context(permissions=["microphone"], viewport={"width": 1280, "height": 1000})
        page = ctx.new_page()
        page.goto(url)
        page.get_by_label("Prompt").fill("a cheerful folk tune on the fiddle")
        page.get_by_role("button", name="Record", exact=True).click()
        page.wait_for_timeout(3500)
        page.get_by_role("button", name="Stop", exact=True).first.click()
        page.get_by_text("Heard", exact=False).first.wait_for(timeout=60_000)
        assert "notes" in page.get_by_text("Heard", exact=False).first.inner_text()
        page.get_by_label("Duration (s)").first.fill("3")
        page.get_by_role("button", name="Generate", exact=True).click()
        page.get_by_text("Saved as", exact=False).wait_for(timeout=180_000)
        if shots:
            Path(shots).mkdir(parents=True, exist_ok=True)
            page.screenshot(path=f"{shots}/create.png", full_page=True)
        # the streamed audio played in the page
        page.wait_for_timeout(2000)
        played = page.evaluate("() => Array.from(document.querySelectorAll('audio, video')).map(a => [a.src, a.currentTime, a.duration, a.paused, a.played.length])")
        assert any(p[1] > 0 or p[4] > 0 for p in played), f"no audio element played: {played}"
        clip = lib.list()[0]
        assert clip.meta["melody_file"], "the hum reached the generator"
        page.goto(f"{url}?clip={clip.id}")
        page.get_by_text(clip.id, exact=False).first.wait_for(timeout=30_000)
        if shots:
            page.get_by_role("tab", name="Library").click()
            page.wait_for_timeout(1000)
            page.screenshot(path=f"{shots}/library.png", full_page=True)
        browser.close()


def test_a_jam_sounds_within_seconds_keeps_playing_two_minutes_and_hears_a_new_prompt(app_url, hum_wav):
    url, lib = app_url
    args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={hum_wav}", "--autoplay-policy=no-user-gesture-required"]
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=args, headless=True)
        page = browser.new_context(permissions=["microphone"], viewport={"width": 1280, "height": 1000}).new_page()
        page.goto(url)
        page.get_by_role("tab", name="Jam").click()
        page.get_by_label("Jam prompt").fill("calm piano")
        page.wait_for_timeout(2000)  # a microphone started while the page still settles sends nothing
        page.get_by_role("button", name="Record", exact=True).click()  # the live microphone
        page.get_by_text("🎤", exact=False).first.wait_for(timeout=20_000)
        clock = "() => Math.max(0, ...Array.from(document.querySelectorAll('audio')).map(a => a.currentTime))"
        page.get_by_role("button", name="Start jam").click()
        t0, first = time.time(), None
        while time.time() - t0 < 30:
            if page.evaluate(clock) > 0:
                first = time.time() - t0
                break
            page.wait_for_timeout(100)
        assert first is not None and first <= 3.0, f"first sound after {first} s"
        played = []
        for second in range(120):
            page.wait_for_timeout(1000)
            played.append(page.evaluate(clock))
            if second == 60:
                page.get_by_label("Jam prompt").fill("energetic techno")
                page.get_by_label("Jam prompt").press("Enter")
        # A stall is a second in which less than half a second played. On a quiet machine there are none (the
        # count is in BENCHMARKS.md); a test machine shared with other work may hiccup once or twice, so this
        # asserts the stream keeps up rather than a timing: no more than three short stalls, 114 of 120 s heard.
        steps = np.diff(played)
        stalls = int((steps < 0.5).sum())
        assert stalls <= 3 and played[-1] - played[0] > 114, f"the audio stalled {stalls} times in 2 minutes: {played}"
        page.get_by_text("From the next chunk: prompt energetic techno").wait_for(timeout=10_000)
        heard = page.get_by_text("🎤", exact=False).first.inner_text()
        assert "dB" in heard and "Following" in heard, f"the microphone's level and the notes followed: {heard}"
        page.get_by_role("button", name="Keep").click()
        page.get_by_text("Kept", exact=False).wait_for(timeout=30_000)
        clip = lib.list()[0]
        assert [s["prompt"] for s in clip.meta["story"]][-1] == "energetic techno", clip.meta
        page.get_by_role("button", name="Stop jam").click()
        browser.close()
