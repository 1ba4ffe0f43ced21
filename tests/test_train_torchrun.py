"""The trainers under ``torchrun`` (what a multi-GPU user runs), here with 2 CPU processes over gloo and a wall-clock
budget: each rank reads its own clock, so unless the stop is agreed the ranks leave the loop a step apart and the one
still training waits forever in its gradient all-reduce."""
from __future__ import annotations

import os
import subprocess
import sys

import torch

from .test_train_codec import TINY_ARGS


def torchrun(module: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    # --standalone: torchrun binds a free port itself (picking one first and passing it races other processes)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", module, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_codec_training_under_torchrun_stops_on_its_budget(tiny_corpus, tmp_path):
    out = tmp_path / "run"
    # --steps far beyond what 0.25 min allows: the budget ends the run; tiny steps make the ranks' clocks disagree
    r = torchrun("engine.train.codec", "autoencoder", "--data", str(tiny_corpus), "--out", str(out), "--steps", "100000",
                 "--minutes", "0.25", *TINY_ARGS)
    assert r.returncode == 0, r.stderr[-2000:]
    ck = torch.load(out / "last.pt", weights_only=False)
    assert 0 < ck["step"] < 100000 and ck["history"][-1]["step"] == ck["step"]


def test_stage_training_under_torchrun_stops_on_its_budget(tiny_corpus, tiny_assets, tmp_path):
    from engine.train import tokenize
    toks = tmp_path / "tokens"
    assert tokenize.main(["--data", str(tiny_corpus), "--features", str(tmp_path / "feats"), "--out", str(toks),
                          "--codec", str(tiny_assets / "codec"), "--mulan", str(tiny_assets / "mulan"),
                          "--semantic", str(tiny_assets / "semantic")]) == 0
    r = torchrun("engine.train.stage", "coarse", "--tokens", str(toks), "--out", str(tmp_path / "runs"), "--assets",
                 str(tiny_assets), "--steps", "100000", "--minutes", "0.25", "--d-model", "32", "--n-layer", "1",
                 "--n-head", "2", "--batch", "2", "--eval-every", "5")
    assert r.returncode == 0, r.stderr[-2000:]
    ck = torch.load(tmp_path / "runs" / "coarse" / "last.pt", weights_only=False)
    assert 0 < ck["step"] < 100000 and ck["history"][-1]["step"] == ck["step"]
