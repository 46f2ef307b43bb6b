"""torch.distributed inside jobs that Hydra's submitit launcher starts (SLURM, or submitit's local executor).

Why one task per GPU, not one torchrun per node: the launcher (``hydra/launcher=slurm_train``) runs
Hydra's task function in every task SLURM starts (``srun`` with ``--ntasks-per-node``), so each task
already is one training process. A torchrun per node would have to re-run ``tools/train.py`` in
subprocesses from inside the task function: a second Hydra run per process, run folders nested in
run folders, and signals passing through one more parent. Instead each task translates what SLURM
(through ``submitit.JobEnvironment``) says about it into the variables torchrun would have set:
RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR (the job's first node), MASTER_PORT.
``facedet.engine.distributed`` then works unchanged (``env_world``, ``init_distributed``; the GPU is
``cuda:LOCAL_RANK``, as under torchrun).

The launcher configs wire this in through Hydra's job callback (``SubmititTorchEnv.on_job_start``),
which runs in each task before the task function; on ranks other than 0 it also removes the log
file handler, so rank 0 alone writes the run's log, metrics and checkpoints (as under torchrun).

One write is not rank 0's alone: Hydra saves ``.hydra/{config,hydra,overrides}.yaml`` in every task
before any callback runs, and a launcher config cannot switch that off per rank (``hydra.output_subdir``
set in ``hydra/launcher/*.yaml`` is overridden by Hydra's own default, which merges after it). All
tasks of a job compose the same config from the same overrides, so they write the same bytes to
those three files.
"""

from __future__ import annotations

import logging
import os
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

from hydra.experimental.callback import Callback

from facedet.engine.distributed import DistInfo, env_world

log = logging.getLogger(__name__)

TORCH_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
PORT_RANGE = (20000, 60000)  # above the well-known and registered ports most clusters use


def torch_dist_env(*, job_id: str, hostnames: Sequence[str], num_nodes: int, num_tasks: int, global_rank: int,
                   local_rank: int, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The torch.distributed ``env://`` variables for one task of a job of ``num_tasks`` tasks.

    MASTER_ADDR is the first of ``hostnames`` (the job's node list), or 127.0.0.1 on one node (no name
    lookup needed: every task is on this host). MASTER_PORT is ``environ``'s when set, else one derived
    from ``job_id``: equal in every task of a job, different for the jobs of an array that share a node.
    """
    if num_tasks < 1 or num_nodes < 1 or num_tasks % num_nodes:
        raise ValueError(f"{num_tasks} tasks do not split evenly over {num_nodes} nodes: give every node the same "
                         "number of tasks (hydra.launcher.tasks_per_node)")
    if not 0 <= global_rank < num_tasks:
        raise ValueError(f"task rank {global_rank} is outside a job of {num_tasks} tasks")
    environ = os.environ if environ is None else environ
    port = environ.get("MASTER_PORT") or str(PORT_RANGE[0] + zlib.crc32(job_id.encode()) % (PORT_RANGE[1] -
                                                                                         PORT_RANGE[0]))
    return {
        "RANK": str(global_rank),
        "WORLD_SIZE": str(num_tasks),
        "LOCAL_RANK": str(local_rank),
        "LOCAL_WORLD_SIZE": str(num_tasks // num_nodes),
        "MASTER_ADDR": "127.0.0.1" if num_nodes == 1 else str(hostnames[0]),
        "MASTER_PORT": port,
    }


def _job_environment() -> Any:
    """submitit's description of the running task, or None outside a submitit job."""
    if not os.environ.get("SUBMITIT_EXECUTOR"):
        return None
    import submitit  # only inside a submitit job, where it is installed

    return submitit.JobEnvironment()


def export_torch_env() -> DistInfo | None:
    """Inside a submitit job of several tasks, set the torch.distributed variables of this task
    (``torch_dist_env``) in ``os.environ`` and return what ``env_world`` now reads; None (nothing
    changed) outside submitit or for a job of one task, which trains as a single process."""
    job = _job_environment()
    if job is None or job.num_tasks <= 1:
        return None
    env = torch_dist_env(job_id=str(job.job_id), hostnames=job.hostnames, num_nodes=job.num_nodes,
                         num_tasks=job.num_tasks, global_rank=job.global_rank, local_rank=job.local_rank)
    os.environ.update(env)
    return env_world()


def _drop_log_files() -> None:
    """Close and remove the file handlers Hydra's job logging gave the root logger (ranks other than 0
    log to the console only, as ``hydra/job_logging=stdout`` does under torchrun)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, logging.FileHandler):
            root.removeHandler(handler)
            handler.close()


class SubmititTorchEnv(Callback):
    """Hydra job callback (``hydra.callbacks`` in ``configs/hydra/launcher/*.yaml``): before the task
    function of a submitit task runs, export its torch.distributed environment (``export_torch_env``)
    and, on ranks other than 0, stop writing the run's log file. Outside a submitit job: nothing."""

    def on_job_start(self, config: Any, **kwargs: Any) -> None:
        info = export_torch_env()
        if info is None:
            return
        if info.rank != 0:
            _drop_log_files()
        log.info("submitit task: rank %d of %d (local rank %d), rendezvous %s:%s", info.rank, info.world_size,
                 info.local_rank, os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"])
