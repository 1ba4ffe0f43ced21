"""The loop every trainer shares, and the one rule by which a trained model replaces a shipped one.

A trainer describes one run as a ``Task``: the modules a checkpoint holds, what one step's loss is, how a model is
scored on validation data (``score``: lower is better) and what to keep of the best. ``fit`` does the rest the same
way for every model: warm-up and linear decay of the learning rate over the call's budget (``--minutes`` of wall
time, else ``--steps``), gradient clipping, gradient averaging and an agreed stop under ``torchrun``, a progress bar,
validation every ``--eval-every`` steps, the best kept in ``OUT/best``, and a checkpoint ``OUT/last.pt`` written
atomically every ``--ckpt-every`` steps and read back on start, so an interrupted run resumes where it stopped.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import torch
from tqdm import tqdm

from .distributed import agreed_stop, average_gradients, leave_group, setup


def add_run_args(ap: argparse.ArgumentParser, *, lr: float, batch: int, eval_every: int = 500, ckpt_every: int = 100,
                 warmup: int = 0, final_lr: float | None = None, steps: int = 1_000_000, resumable: bool = True) -> None:
    """The flags every trainer takes, with that trainer's defaults; ``resumable``: it runs through ``fit`` (the
    learning-rate schedule and checkpoint flags), else it is a run of minutes that restarts."""
    ap.add_argument("--steps", type=int, default=steps, help="stop after this many steps in all")
    ap.add_argument("--minutes", type=float, default=None, help="stop after this much wall time (this call)")
    ap.add_argument("--batch", type=int, default=batch)
    ap.add_argument("--lr", type=float, default=lr)
    if resumable:
        ap.add_argument("--final-lr", type=float, default=final_lr,
                        help="decay the learning rate linearly to this over the call's budget (--minutes, else --steps)")
        ap.add_argument("--warmup", type=int, default=warmup, help="steps of linear learning-rate warm-up")
        ap.add_argument("--ckpt-every", type=int, default=ckpt_every)
    ap.add_argument("--eval-every", type=int, default=eval_every)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")


class Task(Protocol):
    """One training run, as ``fit`` drives it."""

    name: str  # the progress bar's label

    def modules(self) -> dict[str, torch.nn.Module]:
        """What a checkpoint holds (and what is trained: gradients are clipped and averaged over these)."""

    def identity(self) -> dict:
        """What must match for a checkpoint to be resumed (the model's config, the data it reads)."""

    def loss(self, step: int, rank: int) -> tuple[torch.Tensor, dict]:
        """One batch's loss and the numbers the progress bar shows."""

    def validate(self, step: int) -> dict:
        """Validation metrics, with ``score``: what the best minimises."""

    def keep_best(self, metrics: dict, step: int) -> None:
        """Save the model that scored ``metrics`` (``publish.save_best``)."""


@dataclasses.dataclass
class Progress:
    step: int = 0
    best: float = float("inf")
    history: list = dataclasses.field(default_factory=list)
    trained_s: float = 0.0
    extra: dict = dataclasses.field(default_factory=dict)  # a task's own state that must survive a resume


def lr_at(a: argparse.Namespace, step: int, frac: float) -> float:
    """Warm-up over ``a.warmup`` steps, then linear decay to ``a.final_lr`` as ``frac`` of the budget passes."""
    lr = a.lr * min(1.0, (step + 1) / a.warmup) if a.warmup else a.lr
    return lr + (a.final_lr - lr) * min(1.0, frac) if a.final_lr is not None else lr


def fit(task: Task, opt: torch.optim.Optimizer, out: Path, a: argparse.Namespace, world: int = 1, rank: int = 0,
        progress: Progress | None = None) -> Progress:
    """Train ``task`` with ``opt`` until ``a.steps`` or ``a.minutes``; param groups may carry a ``scale`` of the
    learning rate. Resumes from ``out/last.pt`` when it exists (its ``identity`` must match)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / "last.pt"
    mods = task.modules()
    p = progress or Progress()
    if ckpt.exists():
        ck = torch.load(ckpt, map_location="cpu", weights_only=False)
        if ck["identity"] != task.identity():
            raise SystemExit(f"{ckpt} was trained with another configuration or data; use another --out")
        for k, m in mods.items():
            m.load_state_dict(ck["modules"][k])
        opt.load_state_dict(ck["opt"])
        p = Progress(ck["step"], ck["best"], ck["history"], ck["trained_s"], ck["extra"])
        print(f"resumed from {ckpt} at step {p.step}", file=sys.stderr)
    params = [q for m in mods.values() for q in m.parameters() if q.requires_grad]
    start_step, t_start = p.step, time.time()
    deadline = t_start + a.minutes * 60 if a.minutes else float("inf")
    bar = tqdm(total=a.steps, initial=p.step, desc=task.name, disable=rank != 0)
    t0 = time.time()
    stop = agreed_stop(time.time() >= deadline, world)
    while p.step < a.steps and not stop:
        frac = (time.time() - t_start) / (deadline - t_start) if a.minutes else \
            (p.step - start_step) / max(1, a.steps - start_step)
        lr = lr_at(a, p.step, frac)
        for g in opt.param_groups:
            g["lr"] = lr * g.get("scale", 1.0)
        loss, shown = task.loss(p.step, rank)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        for m in mods.values():
            average_gradients(m, world)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        p.step += 1
        bar.update()
        bar.set_postfix({k: f"{v:.3f}" for k, v in shown.items()}, refresh=False)
        stop = agreed_stop(time.time() >= deadline, world)
        last = p.step >= a.steps or stop
        if rank == 0 and (p.step % a.eval_every == 0 or last):
            p.trained_s += time.time() - t0
            t0 = time.time()
            m = task.validate(p.step)
            if not math.isfinite(m["score"]):
                raise SystemExit(f"{task.name}: validation scored {m['score']} at step {p.step} (no validation "
                                 "data, or the model diverged); nothing saved as best")
            m.update(step=p.step, train_loss=round(float(loss.detach()), 4), train_hours=round(p.trained_s / 3600, 3))
            p.history.append(m)
            tqdm.write(json.dumps(m))
            if m["score"] < p.best:
                p.best = m["score"]
                task.keep_best(m, p.step)
        if rank == 0 and (p.step % a.ckpt_every == 0 or last):
            tmp = out / "last.tmp"
            torch.save({"modules": {k: m.state_dict() for k, m in mods.items()}, "opt": opt.state_dict(),
                        "step": p.step, "best": p.best, "history": p.history, "identity": task.identity(),
                        "trained_s": p.trained_s + time.time() - t0, "extra": p.extra}, tmp)
            os.replace(tmp, ckpt)
    bar.close()
    leave_group(world)
    return p


def start(a: argparse.Namespace) -> tuple[int, int]:
    """(rank, world) of this process, with the thread count and seed a trainer's flags ask for."""
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    return setup()


def ship(best: Path, assets: Path, files: tuple[str, ...] | Callable[[], None], what: str, measure: str, new: float,
         old: float | None, higher_is_better: bool = False, vetoes: tuple[str, ...] = ()) -> bool:
    """The one rule for replacing a shipped model: ``new`` must beat ``old`` (both measured the same way; None when
    nothing is shipped yet) and no veto may stand (each a sentence saying why not). ``files`` are copied from
    ``best`` into ``assets``, or a callable writes them. Prints what it did; returns whether it shipped."""
    better = old is None or (new > old if higher_is_better else new < old)
    if not better:
        print(f"not shipped: the {what}'s {measure} {new:.4f} does not beat the shipped {old:.4f}")
        return False
    if vetoes:
        print(f"not shipped: {vetoes[0]}")
        return False
    assets = Path(assets)
    assets.mkdir(parents=True, exist_ok=True)
    if callable(files):
        files()
    else:
        for f in files:
            shutil.copy2(Path(best) / f, assets / f)
    was = "nothing" if old is None else f"{old:.4f}"
    print(f"shipped the {what} of {best} -> {assets} ({measure} {was} -> {new:.4f})")
    return True


def metrics_of(directory: Path, name: str = "metrics.json") -> dict | None:
    """The metrics a trained or shipped model was saved with, or None."""
    f = Path(directory) / name
    return json.loads(f.read_text()) if f.exists() else None


def save_best(model, out: Path, metrics: dict, name: str = "best") -> Path:
    """``model.save(dir)`` + ``dir/metrics.json`` -> ``out/name``, swapped in by a rename, so a crash mid-save never
    leaves a half-written best model where a ship step would pick it up."""
    out, final = Path(out), Path(out) / name
    tmp = out / f"{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save(tmp)
    (tmp / "metrics.json").write_text(json.dumps(metrics, indent=1))
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    return final
