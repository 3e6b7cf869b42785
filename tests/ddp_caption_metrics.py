"""A real 2-process (CPU, gloo) run of CaptionMetrics: each rank scores its shard, torchmetrics gathers.

Run by ``tests/test_metrics.py`` as ``python ddp_caption_metrics.py OUT.json``: spawns two processes; each
updates the metric with its DistributedSampler shard of a split (padded with a repeat, as the sampler does)
and computes; rank 0 writes the scores and the gathered pair names to OUT.json.
"""

from __future__ import annotations

import json
import os
import socket
import sys

import torch.distributed as dist
import torch.multiprocessing as mp

from semcc.metrics.captioning import CaptionMetrics

NAMES = [f"p{i}.png" for i in range(7)]
REFS = {n: ([f"a house is built at the {w}" for w in ("top", "left", "right", "bottom", "corner")] if i % 2
            else ["the scene is the same as before", "no change has occurred", "there is no difference",
                  "nothing has changed", "the two scenes seem identical"]) for i, n in enumerate(NAMES)}
PREDS = {n: ("a house is built at the top" if i % 3 else "the scene is the same as before") for i, n in
         enumerate(NAMES)}


def _run(rank: int, world: int, port: str, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    padded = NAMES + NAMES[: (-len(NAMES)) % world]  # DistributedSampler pads with repeats
    shard = padded[rank::world]
    metric = CaptionMetrics(meteor=False)
    for i in range(0, len(shard), 2):  # batches of two
        names = shard[i : i + 2]
        metric.update(names, [PREDS[n] for n in names], [REFS[n] for n in names])
    scores = metric.compute()
    if rank == 0:
        with open(out, "w") as f:
            json.dump({"scores": scores, "names": sorted(metric.items), "local": len(shard)}, f)
    dist.barrier()
    dist.destroy_process_group()


def _free_port() -> str:
    """A port no process listens on now (the OS picks it), so that tests running side by side do not collide."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return str(sock.getsockname()[1])


if __name__ == "__main__":
    port = _free_port()
    mp.spawn(_run, args=(2, port, sys.argv[1]), nprocs=2, join=True)
