"""Run a function in N local processes joined by a gloo process group (benchmarks and tests).

Why not torchrun: tests call Python functions and want their return values. Everything stays on
loopback (GLOO_SOCKET_IFNAME=lo) so nothing listens on a real interface.

Why the ranks meet through a file and not a TCP port: a port found free by a probe is free
again once the probe closes it, and stays so until rank 0's store binds it, seconds later (after
the spawned ranks import torch). Any process may take it in between; another run of the same
code (a parallel test run on the machine) picks ports the same way. Two runs handed one port
meet at one store: the first to bind it serves both runs' ranks, whose rank-1 keys overwrite
each other, so a rank of one run can be connected to a rank of the other. Their gloo pairs then
carry two different programs' collectives, and the first message of another size is fatal: gloo
aborts the process from its I/O thread (SIGABRT), typically at the first collective whose size
depends on the program (the sharded embeddings' all-to-alls of a forward/backward). A file store
in the call's own temporary folder cannot be shared with anyone; gloo's own sockets are bound
to port 0 and kept, so they cannot be taken.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch.multiprocessing as mp


def _worker(rank: int, world_size: int, rendezvous: str, fn: Callable[..., Any], args: tuple, out_dir: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size), GLOO_SOCKET_IFNAME="lo")
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=world_size)
    try:
        result = fn(rank, world_size, *args)
        Path(out_dir, f"rank{rank}.pkl").write_bytes(pickle.dumps(result))
    finally:
        dist.barrier()
        dist.destroy_process_group()


def run_local(fn: Callable[..., Any], world_size: int, *args: Any) -> list[Any]:
    """``fn(rank, world_size, *args)`` in ``world_size`` processes; their results in rank order.
    ``fn`` must be importable (module level) and its results picklable."""
    with tempfile.TemporaryDirectory() as out_dir:
        rendezvous = str(Path(out_dir, "rendezvous"))  # this call's own, never reused (see the module's docstring)
        mp.start_processes(_worker, args=(world_size, rendezvous, fn, args, out_dir), nprocs=world_size, join=True, start_method="spawn")
        return [pickle.loads(Path(out_dir, f"rank{r}.pkl").read_bytes()) for r in range(world_size)]
