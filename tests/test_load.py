"""Eight people at once: concurrent gradio_client sessions against a launched app (tiny models, bounded time).
No errors, the queue serves everyone, every clip lands in the library, memory stays bounded."""
from __future__ import annotations

import resource
import threading
import time

import pytest

from .conftest import free_port

gradio_client = pytest.importorskip("gradio_client")


def test_eight_concurrent_sessions(tiny_assets, tmp_path):
    from app.server import make_app
    demo, lib = make_app(tiny_assets, tmp_path / "library")
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, enable_monitoring=False)
    url = f"http://127.0.0.1:{port}/"
    errors, first_chunk, done = [], [], []
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    def user(k):
        try:
            client = gradio_client.Client(url, verbose=False)
            for j in range(2):
                t0 = time.time()
                job = client.submit(f"a folk tune number {k}-{j}", {"headers": ["prompt", "seconds"], "data": [["", 10]]},
                                    2, 100 * k + j, 1.0, 0, 3.0, 1, api_name="/generate")
                got_first = False
                for out in job:
                    if out[0] and not got_first:
                        first_chunk.append(time.time() - t0)
                        got_first = True
                final = job.outputs()[-1]
                assert final[2].startswith("Saved as"), final[2]
                done.append(final[2].split("`")[1])
        except Exception as e:  # collected and reported below
            errors.append(repr(e))

    try:
        threads = [threading.Thread(target=user, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=600)
        assert not errors, errors
        assert len(done) == 16 and len(set(done)) == 16
        assert {c.id for c in lib.list()} == set(done), "every clip is in the library"
        assert len(first_chunk) == 16
        grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
        assert grown_mb < 1500, f"peak memory grew by {grown_mb:.0f} MB"
    finally:
        demo.close()
