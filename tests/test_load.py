"""Eight people at once: concurrent gradio_client sessions against a launched app (tiny models, bounded time).
No errors, the queue serves everyone, every clip lands in the library, memory stays bounded."""
from __future__ import annotations

import resource

import pytest

from .conftest import free_port

pytest.importorskip("gradio_client")


def test_eight_concurrent_sessions(tiny_assets, tmp_path):
    from app.loadtest import run_sessions
    from app.server import make_app
    demo, lib = make_app(tiny_assets, tmp_path / "library")
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, enable_monitoring=False)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        r = run_sessions(f"http://127.0.0.1:{port}/", sessions=8, seconds=2, per_session=2)
        assert not r["errors"], r["errors"]
        assert r["served"] == 16 and len(set(r["saved"])) == 16
        assert {c.id for c in lib.list()} == set(r["saved"]), "every clip is in the library"
        assert len(r["first_chunk_s"]) == 16 and all(t > 0 for t in r["first_chunk_s"]), "every request streamed"
        grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
        assert grown_mb < 1500, f"peak memory grew by {grown_mb:.0f} MB"
    finally:
        demo.close()
