"""Safe to share: a bundle from anyone never breaks the library, a damaged clip is reported and removable, and a
server reachable beyond this machine refuses every call without the password (checked through raw HTTP)."""
from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import urllib.parse
import zipfile

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from app.library import MAX_CLIP_SECONDS, ClipLibrary, LibraryError

from .conftest import free_port

# ------------------------------------------------------------------------------------------------ bundles (fuzz)
json_values = st.recursive(st.none() | st.booleans() | st.integers(-2 ** 70, 2 ** 70) | st.floats() | st.text(max_size=40),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                        max_size=4), max_leaves=12)
FIELDS = ["prompt", "name", "seed", "created", "settings", "story", "melody_tokens", "versions", "seconds", "id",
          "continues", "melody_file", "imported", "whatever"]


@st.composite
def metas(draw):
    kind = draw(st.sampled_from(["fields"] * 5 + ["not-a-dict", "huge", "bad-json"]))
    if kind == "not-a-dict":
        return json.dumps(draw(json_values))
    if kind == "bad-json":
        return draw(st.binary(max_size=200))
    meta = {"prompt": "folk tune", "seed": 3}
    for k in draw(st.lists(st.sampled_from(FIELDS), max_size=4)):
        meta[k] = draw(json_values)
    if kind == "huge":
        meta[draw(st.sampled_from(["prompt", "name", "whatever"]))] = "x" * draw(st.integers(60_000, 300_000))
    return json.dumps(meta)


@st.composite
def wavs(draw):
    kind = draw(st.sampled_from(["wav"] * 6 + ["garbage", "truncated", "empty"]))
    if kind == "garbage":
        return draw(st.binary(max_size=300))
    if kind == "empty":
        return b""
    rate = draw(st.sampled_from([1, 100, 7_999, 8_000, 16_000, 24_000, 24_000, 44_100, 192_000, 192_001, 1_000_000]))
    buf = io.BytesIO()
    x = np.random.default_rng(draw(st.integers(0, 99))).uniform(-1, 1, (draw(st.integers(0, 2_000)),
                                                                         draw(st.integers(1, 3))))
    sf.write(buf, x, rate, format="WAV", subtype=draw(st.sampled_from(["PCM_U8", "PCM_16", "FLOAT"])))
    data = buf.getvalue()
    if draw(st.integers(0, 5)) == 0:  # a header that claims far more samples than there are
        data = data[:40] + (2 ** 31 - 1).to_bytes(4, "little") + data[44:]
    if kind == "truncated":
        data = data[: draw(st.integers(0, len(data)))]
    return data


@st.composite
def bundles(draw):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        entries = [("meta.json", draw(metas())), ("audio.wav", draw(wavs()))]
        if draw(st.integers(0, 4)) == 0:
            entries.append(draw(st.sampled_from(entries)))  # the same name twice
        if draw(st.integers(0, 6)) == 0:
            entries.pop(draw(st.integers(0, len(entries) - 1)))
        if draw(st.integers(0, 6)) == 0:  # a symlink entry, or a path out of the library
            info = zipfile.ZipInfo(draw(st.sampled_from(["audio.wav", "../../escape.wav", "/etc/cantus"])))
            info.external_attr = 0o120777 << 16
            entries.append((info, b"/etc/passwd"))
        for name, data in entries:
            z.writestr(name, data)
    data = buf.getvalue()
    if draw(st.integers(0, 5)) == 0:
        data = data[: draw(st.integers(0, len(data)))]
    return data


@pytest.mark.filterwarnings("ignore:Duplicate name")
@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=bundles())
def test_no_bundle_breaks_the_library(tmp_path, data):
    root = tmp_path / "library"
    lib = ClipLibrary(root)
    before = {c.id for c in lib.list()}
    try:
        clip = lib.import_bundle(data)
    except LibraryError as e:
        msg = str(e)
        event(f"refused: {msg.split(':')[0].split('(')[0][:40]}")
        assert msg and len(msg) < 400 and "Traceback" not in msg
        assert {c.id for c in lib.list()} == before, "a refused bundle leaves nothing behind"
    else:
        event("imported")
        assert lib.get(clip.id).meta["imported"] is True
        assert 0 < len(lib.audio(clip.id)) <= MAX_CLIP_SECONDS * 24_000
        assert json.dumps(clip.meta).encode().__len__() <= 64 * 1024
    clips, damaged = lib.scan()
    assert not damaged and all(c.id in before or c.meta["imported"] for c in clips)
    assert {p.name for p in tmp_path.iterdir()} == {"library"}, "nothing is written outside the library"
    assert not list(root.glob(".tmp-*"))


def _clip_bundle(meta: dict, seconds: float = 0.5, rate: int = 24_000) -> bytes:
    buf, wav = io.BytesIO(), io.BytesIO()
    sf.write(wav, np.zeros(int(rate * seconds), np.float32), rate, format="WAV", subtype="PCM_U8")
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("meta.json", json.dumps(meta))
        z.writestr("audio.wav", wav.getvalue())
    return buf.getvalue()


@pytest.mark.parametrize("meta,msg", [({"prompt": "x", "created": 1}, "created"), ({"prompt": 123}, "prompt"),
                                      ({"prompt": "x", "seed": "seven"}, "seed"),
                                      ({"prompt": "x" * 70_000}, "64 KB")])
def test_a_bundle_with_wrong_types_is_refused_and_later_imports_still_work(tmp_path, meta, msg):
    lib = ClipLibrary(tmp_path)
    with pytest.raises(LibraryError, match=msg):
        lib.import_bundle(_clip_bundle(meta))
    assert lib.list() == []
    ok = lib.import_bundle(_clip_bundle({"prompt": "fine", "seed": 1}))
    assert [c.id for c in lib.list()] == [ok.id]


def test_header_limits_are_read_before_the_audio_is_decoded(tmp_path):
    lib = ClipLibrary(tmp_path)
    with pytest.raises(LibraryError, match="Hz"):
        lib.import_bundle(_clip_bundle({"prompt": "x"}, seconds=100, rate=1))  # the 338-byte 100 s clip
    with pytest.raises(LibraryError, match="at most"):
        lib.import_bundle(_clip_bundle({"prompt": "x"}, seconds=MAX_CLIP_SECONDS + 60, rate=8_000))


def test_a_damaged_clip_is_reported_not_fatal_and_can_be_removed(tmp_path):
    lib = ClipLibrary(tmp_path)
    good = lib.save(np.zeros(2_400, np.float32), {"prompt": "good", "seed": 1})
    bad = lib.save(np.zeros(2_400, np.float32), {"prompt": "soon bad", "seed": 2})
    meta = json.loads((tmp_path / bad.id / "meta.json").read_text())
    (tmp_path / bad.id / "meta.json").write_text(json.dumps({**meta, "created": 1}))
    clips, damaged = lib.scan()
    assert [c.id for c in clips] == [good.id] and damaged == [bad.id]
    with pytest.raises(LibraryError, match="damaged"):
        lib.get(bad.id)
    lib.delete(bad.id)
    assert [c.id for c in lib.scan()[0]] == [good.id] and lib.scan()[1] == []
    assert not (tmp_path / bad.id).exists()


def test_a_name_with_a_lone_surrogate_is_cleaned_and_leaves_no_temp_file(tmp_path):
    lib = ClipLibrary(tmp_path)
    clip = lib.save(np.zeros(2_400, np.float32), {"prompt": "x", "seed": 1})
    assert lib.rename(clip.id, "tune\ud800 one\x00").name == "tune one"
    assert not list((tmp_path / clip.id).glob("*.tmp"))


# ------------------------------------------------------------------------------------------------ serving
def _opts(env=None, **flags):
    from app.server import launch_options
    a = argparse.Namespace(**{"listen": False, "share": False, "port": None, "auth": None, "no_auth": False,
                              "read_only": False, "no_browser": True, **flags})
    return launch_options(a, env or {}, "/tmp/lib")


def test_gradio_conventions_and_passwords_follow_the_flags():
    opts, note = _opts({"GRADIO_SERVER_PORT": "7999", "GRADIO_SERVER_NAME": "127.0.0.1"})
    assert (opts["server_port"], opts["server_name"], opts["auth"], note) == (7999, "127.0.0.1", None, None)
    assert opts["app_kwargs"]["middleware"], "the local default checks the Host header"
    opts, note = _opts(listen=True)
    assert opts["server_name"] == "0.0.0.0" and opts["auth"][0] == "cantus" and opts["auth"][1] in note
    opts, _ = _opts({"GRADIO_SERVER_NAME": "0.0.0.0"})
    assert opts["auth"] is not None, "an address beyond this machine from the environment needs a password too"
    opts, _ = _opts({"CANTUS_AUTH": "me:pw"}, share=True)
    assert opts["auth"] == ("me", "pw") and len(opts["app_kwargs"]["middleware"]) == 1, "no host check for a share"
    assert _opts(listen=True, port=8123, read_only=True)[0]["auth"] is None
    opts, note = _opts(listen=True, no_auth=True)
    assert opts["auth"] is None and "trusted network" in note
    with pytest.raises(ValueError, match="USER:PASS"):
        _opts(auth="nocolon")


def _http(port, method, path, body=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request(method, path, body=body, headers=headers or {})
    r = conn.getresponse()
    data = r.read()
    conn.close()
    return r.status, data, r.getheader("set-cookie")


@pytest.fixture(scope="module")
def listening(tiny_assets, tmp_path_factory):
    """The app as ``launch.py --listen --auth u:secret`` serves it (tiny models), on a free port."""
    from app.server import make_app
    lib_dir = tmp_path_factory.mktemp("library")
    demo, lib = make_app(tiny_assets, lib_dir)
    port = free_port()
    opts, _ = _opts(listen=True, auth="u:secret", port=port)
    demo.launch(**{**opts, "prevent_thread_lock": True})
    lib.save(np.zeros(2_400, np.float32), {"prompt": "keep me", "seed": 1})
    yield port, lib, demo
    demo.close()


def test_beyond_this_machine_every_endpoint_needs_the_password(listening):
    port, lib, demo = listening
    names = [d["api_name"] for d in demo.config["dependencies"] if d.get("api_name")]
    payload = json.dumps({"data": [], "fn_index": 0, "session_hash": "x"}).encode()
    for method, path, body in [("GET", "/config", None), ("GET", "/gradio_api/info", None),
                               ("POST", "/gradio_api/queue/join", payload),
                               *[("POST", f"/gradio_api/call/{n}", b'{"data": []}') for n in names]]:
        status, _, _ = _http(port, method, path, body, {"Content-Type": "application/json"})
        assert status in (401, 403), f"{method} {path} answered {status} without a login"
    assert len(lib.list()) == 1, "nothing was deleted"
    form = urllib.parse.urlencode({"username": "u", "password": "wrong"})
    status, _, _ = _http(port, "POST", "/login", form, {"Content-Type": "application/x-www-form-urlencoded"})
    assert status in (400, 401)
    form = urllib.parse.urlencode({"username": "u", "password": "secret"})
    status, _, cookie = _http(port, "POST", "/login", form, {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 200 and cookie
    status, _, _ = _http(port, "GET", "/config", None, {"Cookie": cookie.split(";")[0]})
    assert status == 200


def test_the_local_default_refuses_other_host_names(tiny_assets, tmp_path):
    from app.server import make_app
    demo, _ = make_app(tiny_assets, tmp_path / "lib")
    port = free_port()
    opts, _ = _opts(port=port)
    demo.launch(**{**opts, "prevent_thread_lock": True})
    try:
        assert _http(port, "GET", "/config", headers={"Host": f"127.0.0.1:{port}"})[0] == 200
        assert _http(port, "GET", "/config", headers={"Host": f"attacker.example:{port}"})[0] == 400
        status, body, _ = _http(port, "GET", "/?clip=" + "a" * 100_000)  # answered, not an internal error
        assert status == 414 and b"too long" in body
    finally:
        demo.close()


def test_read_only_sharing_registers_nothing_that_changes_the_library(tiny_assets, tmp_path):
    from app.server import make_app
    demo, lib = make_app(tiny_assets, tmp_path / "lib", read_only=True)
    fns = {getattr(fn.fn, "__name__", "") for fn in demo.fns.values()}
    assert not fns & {"do_rename", "do_delete", "do_import", "do_clean", "do_remix", "generate", "extend_clip",
                      "on_melody"}, fns
    assert {"list_clips", "pick", "on_load"} <= fns


def test_env_port_is_honoured_by_the_command_line(monkeypatch):
    monkeypatch.setitem(os.environ, "GRADIO_SERVER_PORT", "7123")
    assert _opts(dict(os.environ))[0]["server_port"] == 7123
