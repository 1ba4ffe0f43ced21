"""The trainers' ``torchrun`` support: process group from the environment, gradient averaging across ranks."""
from __future__ import annotations

import os

import torch
import torch.distributed as dist


def setup() -> tuple[int, int]:
    """(rank, world size); joins the process group when launched by torchrun with more than one process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def average_gradients(model: torch.nn.Module, world: int) -> None:
    """Average every trainable parameter's gradient over the ranks. A parameter one rank did not use this step
    (the quantizer levels that dropout skipped) takes part with zeros, so every rank reduces the same tensors."""
    if world > 1:
        for p in model.parameters():
            if p.requires_grad:
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
                dist.all_reduce(p.grad)
                p.grad /= world


def agreed_stop(stop: bool, world: int) -> bool:
    """A wall-clock budget under torchrun: each rank sees its own clock, but all must stop at the same step (else
    the others wait forever in the next gradient all-reduce), so stop when any rank would."""
    if world > 1:
        flag = torch.tensor([float(stop)])
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        stop = bool(flag.item())
    return stop


def leave_group(world: int) -> None:
    """The end of a run under torchrun: wait for every rank (rank 0 validates and saves after the last step), then
    leave the process group. Without it, a rank leaving while the other still held the group aborted (SIGABRT) in
    tests/test_train_torchrun.py in 2 of 5 full suite runs (never in 10 runs on its own)."""
    if world > 1 and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
