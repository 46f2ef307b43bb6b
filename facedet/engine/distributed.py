"""torch.distributed for training under ``torchrun``: process-group setup, rank queries, object
collectives on a side gloo group, and the evaluation gather.

Launch: ``torchrun --nproc_per_node=N tools/train.py ...`` (one node) or with ``--nnodes`` and a
rendezvous endpoint (several nodes); torchrun sets RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR/PORT.
Without those variables everything here degrades to a single process: ranks are 0 of 1 and the
collectives return their input.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import logging
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)

BACKENDS = ("auto", "nccl", "gloo")
_control_group: Any = None  # a gloo group for small host-side messages (no GPU sync under NCCL)


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    backend: str = ""

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def env_world() -> DistInfo:
    """What torchrun (or a compatible launcher) put in the environment; 0 of 1 without it."""
    return DistInfo(rank=int(os.environ.get("RANK", 0)), local_rank=int(os.environ.get("LOCAL_RANK", 0)),
                    world_size=int(os.environ.get("WORLD_SIZE", 1)))


def init_distributed(device: torch.device, backend: str = "auto", timeout_minutes: float = 30) -> DistInfo:
    """Join the process group torchrun describes (no-op for a single process).

    ``device`` is this rank's device (``cuda:LOCAL_RANK`` or the CPU); ``backend`` ``auto`` picks NCCL
    on CUDA and gloo on the CPU.
    """
    info = env_world()
    if not info.enabled:
        return info
    if backend not in BACKENDS:
        from facedet.registry import ConfigError

        raise ConfigError(f"train.dist_backend must be one of {list(BACKENDS)}, got {backend!r}.")
    if backend == "auto":
        backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        # torch.distributed.nn declares ``group=group.WORLD`` defaults, evaluated when it is first imported.
        # DDP imports it (through torch._dynamo) after the group exists, and that default then keeps the
        # group alive past destroy_process_group, so cleanup() could not join gloo's threads. Imported
        # before the group exists, the default is None.
        import torch.distributed.nn  # noqa: F401

        kwargs: dict[str, Any] = {"backend": backend, "timeout": timedelta(minutes=timeout_minutes)}
        if device.type == "cuda":
            torch.cuda.set_device(device)
            kwargs["device_id"] = device  # binds NCCL to this GPU at once (no guessing later)
        dist.init_process_group(**kwargs)
    global _control_group
    _control_group = dist.new_group(backend="gloo") if backend != "gloo" else dist.group.WORLD
    return DistInfo(rank=dist.get_rank(), local_rank=info.local_rank, world_size=dist.get_world_size(),
                    backend=backend)


def cleanup() -> None:
    """Leave the process group, on every rank and every path (``run_training`` calls it in ``finally``).

    Why it must join gloo's threads: gloo runs each collective on a worker thread, which drops its
    reference to the finished work (holding tensors that Python created) a moment after ``wait()``
    returns in the main thread. On a busy machine that moment can come after the interpreter began
    finalizing; the worker's GIL request then ends the thread with pthread_exit, whose unwinding
    through a noexcept destructor aborts the process ("terminate called without an active
    exception", exit code -6, after the last collective of a run). Destroying the group joins those
    threads while the interpreter is alive, but only if nothing else holds it: the DDP wrapper (kept
    by the Trainer <-> hooks reference cycle) is collected first, and torch.distributed.nn must not
    hold it (see ``init_distributed``). The barrier lets every rank finish its collectives before any
    rank closes its connections; it is skipped while an exception propagates (a failed peer would
    never reach it).
    """
    global _control_group
    if is_distributed():
        failing = sys.exc_info()[1] is not None
        if not failing:
            dist.barrier(group=_control_group)
        _control_group = None
        gc.collect()  # frees the DDP wrapper and its reducer, which hold the group
        dist.destroy_process_group()  # the last reference: joins gloo's threads
        left = gloo_threads()
        if left and not failing:  # (while an exception propagates, its traceback still holds the trainer)
            log.warning("%d gloo threads outlive destroy_process_group: something still holds the process group, "
                        "and the process may abort at exit", left)
    _control_group = None


def gloo_threads() -> int:
    """Number of live gloo threads in this process (Linux; 0 where /proc is absent)."""
    count = 0
    with contextlib.suppress(OSError):
        for tid in os.listdir("/proc/self/task"):
            with contextlib.suppress(OSError), open(f"/proc/self/task/{tid}/comm") as f:
                count += "gloo" in f.read()
    return count


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    return get_rank() == 0


def barrier() -> None:
    if is_distributed():
        dist.barrier(group=_control_group)


@contextlib.contextmanager
def main_process_first() -> Iterator[None]:
    """Rank 0 runs the block first (e.g. renders the synthetic set), the others after it."""
    if not is_main_process():
        barrier()
    yield
    if is_main_process():
        barrier()


def all_gather_objects(obj: Any) -> list[Any]:
    """``obj`` of every rank, in rank order (``[obj]`` for one process). Pickled: small objects only."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * get_world_size()
    dist.all_gather_object(out, obj, group=_control_group)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src, group=_control_group)
    return box[0]


def any_rank(*flags: bool) -> list[bool]:
    """For each flag: is it set on any rank? One small all-reduce on the host (gloo)."""
    if not is_distributed():
        return [bool(f) for f in flags]
    t = torch.tensor([int(bool(f)) for f in flags], dtype=torch.int32)
    dist.all_reduce(t, op=dist.ReduceOp.MAX, group=_control_group)
    return [bool(v) for v in t.tolist()]


def state_digest(state: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over the names, dtypes, shapes and bytes of a state dict: equal digests mean
    bit-identical weights (used to check that DDP ranks did not drift apart)."""
    h = hashlib.sha256()
    for k, v in state.items():
        t = v.detach().cpu().contiguous()
        h.update(f"{k}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


class RankGatheredEvaluator:
    """An evaluator whose ``update`` calls are collected on every rank and replayed on rank 0
    before ``compute``; rank 0's metrics are then broadcast, so every rank returns the same dict.
    ``write_results`` and other attributes go to the wrapped evaluator (meaningful on rank 0)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self._pending: list[tuple[list[dict[str, torch.Tensor]], list[str]]] = []

    def update(self, predictions: Sequence[dict[str, torch.Tensor]], image_ids: Sequence[str]) -> None:
        preds = [{k: v.detach().cpu() for k, v in p.items()} for p in predictions]
        self._pending.append((preds, list(image_ids)))

    def compute(self) -> dict[str, Any]:
        parts = all_gather_objects(self._pending)
        self._pending = []
        metrics = None
        if is_main_process():
            for part in parts:
                for preds, ids in part:
                    self.inner.update(preds, ids)
            metrics = self.inner.compute()
        return broadcast_object(metrics)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def gather_across_ranks(evaluator: Any) -> Any:
    """``evaluator`` itself in a single process; under DDP a wrapper that gathers every rank's
    predictions (each rank evaluated its ``ShardSampler`` share) before scoring them once."""
    return RankGatheredEvaluator(evaluator) if is_distributed() else evaluator


def hydra_overrides_for_rank() -> list[str]:
    """Command-line overrides for ranks other than 0 under torchrun: they write no Hydra output
    folder and no log file (rank 0 owns the run directory; its path is broadcast to the others)."""
    if env_world().rank == 0:
        return []
    return ["hydra.output_subdir=null", "hydra.run.dir=.", "hydra/job_logging=stdout"]


class _LossForward(torch.nn.Module):
    """Routes ``model.loss`` through ``forward`` so DistributedDataParallel sees the pass."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor, targets: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        return self.model.loss(images, targets)


def wrap_ddp(model: torch.nn.Module, device: torch.device, find_unused_parameters: bool) -> torch.nn.Module:
    """``model.loss`` under DistributedDataParallel (the trainer keeps the bare model for hooks,
    EMA and checkpoints)."""
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    # buffers: synced once at construction, then averaged per optimizer step (BufferKeeper)
    return DistributedDataParallel(_LossForward(model), device_ids=ids, output_device=ids[0] if ids else None,
                                   forward_sync_buffers=False, find_unused_parameters=find_unused_parameters)
