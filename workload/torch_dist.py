"""Process groups for the torch scenarios' ``--processes N`` (DistributedDataParallel, one process per GPU).

Rank 0 is the run's own process, the only one that records events; it starts ranks 1..N-1 as spawned
processes and all join one group: NCCL on GPUs (rank r on ``cuda:r``), gloo on the CPU. NVLink multicast
stays off (``NCCL_NVLS_ENABLE=0``, ``TORCH_SYMM_MEM_DISABLE_MULTICAST=1``): on shared hosts a program that
uses it can put every GPU of the host out of service.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from mltelemetry.errors import MltelemetryError

RANK_JOIN_S = 30.0
MULTICAST_OFF = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "NVSHMEM_DISABLE_NVLS": "1"}


def rank_device(wanted: str, rank: int, world: int) -> torch.device:
    """The device of ``rank`` in a group of ``world``: ``cuda:rank`` when the run asks for a GPU (``auto``
    with one present), else the CPU."""
    use_cuda = wanted.startswith("cuda") or (wanted == "auto" and torch.cuda.is_available())
    if not use_cuda:
        return torch.device("cpu")
    if torch.cuda.device_count() < world:
        raise MltelemetryError(f"--processes {world} needs {world} GPUs, {torch.cuda.device_count()} visible")
    torch.cuda.set_device(rank)
    return torch.device("cuda", rank)


def _free_address() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


class ProcessGroup:
    """Rank 0's view: starts the other ranks with ``worker(rank, address, *args)`` and joins the group."""

    def __init__(self, device: torch.device, world: int) -> None:
        self.device, self.world = device, world
        self.workers: list[Any] = []
        self.address = ""

    def start(self, worker: Callable[..., None], *args: Any) -> None:
        for name, value in MULTICAST_OFF.items():
            os.environ.setdefault(name, value)  # inherited by the spawned ranks
        self.address = _free_address()
        context = mp.get_context("spawn")
        for rank in range(1, self.world):
            process = context.Process(target=worker, args=(rank, self.address, *args), daemon=True)
            process.start()
            self.workers.append(process)
        join(self.device, self.address, 0, self.world)

    def close(self) -> None:
        """Leave the group and reap the other ranks (terminated if they do not end in time)."""
        leave()
        for process in self.workers:
            process.join(RANK_JOIN_S)
            if process.is_alive():
                process.terminate()
                process.join(5)
        self.workers = []


def join(device: torch.device, address: str, rank: int, world: int) -> None:
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", init_method=address, rank=rank,
                            world_size=world)


def leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The model itself: the module a DistributedDataParallel wrapper holds, else ``model``."""
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


def all_sum(values: torch.Tensor, world: int) -> torch.Tensor:
    """``values`` summed over every rank (each rank gets the sum); itself in a group of one."""
    if world > 1:
        dist.all_reduce(values)
    return values
