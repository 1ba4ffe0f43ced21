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
    if world > 1:
        for p in model.parameters():
            if p.grad is not None:
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
