"""Cluster launches through Hydra's submitit launcher (configs/hydra/launcher/*.yaml): the configs
compose with the values docs/ENGINE.md promises, each task's torch.distributed environment comes
from SLURM's (facedet/engine/slurm_env.py), and submitit's local executor really runs a sweep and a
2-process data-parallel run on this machine."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
pytest.importorskip("submitit")

from facedet.engine import slurm_env  # noqa: E402  (after the skip: the launcher configs need the plugin)
from facedet.engine.distributed import env_world  # noqa: E402

from .conftest import CONFIG_DIR, ROOT  # noqa: E402

LAUNCHERS = CONFIG_DIR / "hydra" / "launcher"
PLUGIN = "hydra_plugins.hydra_submitit_launcher.submitit_launcher."
# the smallest training the other tests use (tests/checkpoint_utils.py), on the CPU, one thread
TINY = ["data.num_train=8", "data.num_val=6", "data.img_size=64", "train.epochs=1", "train.batch_size=8",
        "train.num_workers=0", "train.tensorboard=false", "train.threads=1", "model.backbone.width=0.125",
        "device=cpu"]
SLURM_JOB = {  # task 9 of a 2-node job with 8 tasks per node, as srun describes it
    "SUBMITIT_EXECUTOR": "slurm", "SLURM_JOB_ID": "4242", "SLURM_NTASKS": "16", "SLURM_JOB_NUM_NODES": "2",
    "SLURM_NODEID": "1", "SLURM_PROCID": "9", "SLURM_LOCALID": "1", "SLURM_JOB_NODELIST": "gpu[07-08]",
}


def _launcher(name: str):
    """The ``hydra`` node of the training config with ``hydra/launcher=<name>``."""
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name="train", overrides=[f"hydra/launcher={name}"], return_hydra_config=True).hydra


@pytest.fixture
def clean_env(monkeypatch):
    """No torch.distributed or submitit variables; whatever the test sets is undone afterwards."""
    for key in (*slurm_env.TORCH_VARS, *SLURM_JOB, "SUBMITIT_LOCAL_GLOBALID"):
        # set, then delete: monkeypatch records only what it changes, and a variable that was absent
        # must be absent again after the test (export_torch_env sets RANK, WORLD_SIZE ... directly;
        # left behind, they made every later in-process training wait for a 16-process rendezvous)
        monkeypatch.setenv(key, "")
        monkeypatch.delenv(key)
    return monkeypatch


def test_slurm_train_is_one_job_of_one_task_per_gpu():
    hydra = _launcher("slurm_train")
    launcher = hydra.launcher
    assert launcher._target_ == PLUGIN + "SlurmLauncher"
    assert (launcher.nodes, launcher.gpus_per_node, launcher.tasks_per_node) == (2, 8, 8)
    assert launcher.partition is None and launcher.account is None  # the user's to fill in
    assert launcher.max_num_timeout > 0 and launcher.signal_delay_s > 0  # requeued at the time limit
    assert isinstance(instantiate(hydra.callbacks.torch_distributed), slurm_env.SubmititTorchEnv)


def test_slurm_sweep_is_an_array_of_one_gpu_jobs():
    hydra = _launcher("slurm_sweep")
    launcher = hydra.launcher
    assert launcher._target_ == PLUGIN + "SlurmLauncher"
    assert (launcher.nodes, launcher.gpus_per_node, launcher.tasks_per_node) == (1, 1, 1)
    assert launcher.array_parallelism == 8
    assert launcher.max_num_timeout == _launcher("slurm_train").launcher.max_num_timeout  # inherited
    assert "torch_distributed" in hydra.callbacks


def _sbatch(monkeypatch, tmp_path: Path, name: str, *overrides: str, jobs: int = 1) -> str:
    """The sbatch script submitit would write for ``hydra/launcher=<name>`` and ``jobs`` sweep points,
    with the launcher's parameters passed as the plugin's ``launch`` passes them (a fake ``srun`` on
    PATH stands in for the cluster; nothing is submitted)."""
    import submitit
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
    from omegaconf import OmegaConf

    (tmp_path / "srun").write_text("#!/bin/sh\n")
    (tmp_path / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"hydra/launcher={name}", f"hydra.sweep.dir={tmp_path}",
                                                      "hydra.job.name=train", *overrides], return_hydra_config=True)
    params = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    del params["_target_"]
    executor = submitit.AutoExecutor(cluster="slurm", folder=params.pop("submitit_folder"),
                                     slurm_max_num_timeout=params.pop("max_num_timeout"))
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(**{k if k in base else f"slurm_{k}": v for k, v in params.items()})
    if jobs > 1:
        executor._executor.parameters["map_count"] = jobs  # what map_array sets for a job array
    return executor._executor._make_submission_file_text("python -u -m submitit.core._submit", "uid")


def test_slurm_train_sbatch(monkeypatch, tmp_path):
    text = _sbatch(monkeypatch, tmp_path, "slurm_train", "hydra.launcher.partition=gpu", "hydra.launcher.account=lab")
    for line in ("--nodes=2", "--ntasks-per-node=8", "--gpus-per-node=8", "--cpus-per-task=8", "--time=1440",
                 "--partition=gpu", "--account=lab", "--signal=USR2@300", "--job-name=train"):
        assert f"#SBATCH {line}\n" in text, line
    assert "--array" not in text and "srun" in text


def test_slurm_sweep_sbatch_is_an_array(monkeypatch, tmp_path):
    text = _sbatch(monkeypatch, tmp_path, "slurm_sweep", jobs=12)
    for line in ("--array=0-11%8", "--nodes=1", "--ntasks-per-node=1", "--gpus-per-node=1", "--time=600"):
        assert f"#SBATCH {line}\n" in text, line
    assert "--partition" not in text and "--account" not in text  # null: the cluster's defaults


@pytest.mark.parametrize(("name", "tasks"), [("local", 1), ("local_ddp", 2)])
def test_local_variants(name, tasks):
    hydra = _launcher(name)
    assert hydra.launcher._target_ == PLUGIN + "LocalLauncher"
    assert hydra.launcher.tasks_per_node == tasks and hydra.launcher.nodes == 1
    assert "torch_distributed" in hydra.callbacks


@pytest.mark.parametrize("path", sorted(LAUNCHERS.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_key_is_commented(path):
    keys = [line for line in path.read_text().splitlines() if re.match(r"\s*\w+:\s*[^\s#]", line)]  # key: value
    assert keys and all("#" in line for line in keys), [line for line in keys if "#" not in line]


def test_env_of_a_multi_node_task():
    env = slurm_env.torch_dist_env(job_id="4242", hostnames=["gpu07", "gpu08"], num_nodes=2, num_tasks=16,
                                   global_rank=9, local_rank=1, environ={})
    port = int(env.pop("MASTER_PORT"))
    assert env == {"RANK": "9", "WORLD_SIZE": "16", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "8",
                   "MASTER_ADDR": "gpu07"}
    assert slurm_env.PORT_RANGE[0] <= port < slurm_env.PORT_RANGE[1]
    other_rank = slurm_env.torch_dist_env(job_id="4242", hostnames=["gpu07", "gpu08"], num_nodes=2, num_tasks=16,
                                          global_rank=0, local_rank=0, environ={})
    assert int(other_rank["MASTER_PORT"]) == port  # every task of the job meets at one port
    next_job = slurm_env.torch_dist_env(job_id="4242_1", hostnames=["gpu07"], num_nodes=1, num_tasks=2,
                                        global_rank=0, local_rank=0, environ={})
    assert next_job["MASTER_PORT"] != str(port) and next_job["MASTER_ADDR"] == "127.0.0.1"
    given = slurm_env.torch_dist_env(job_id="4242", hostnames=["gpu07"], num_nodes=1, num_tasks=2, global_rank=1,
                                     local_rank=1, environ={"MASTER_PORT": "29500"})
    assert given["MASTER_PORT"] == "29500"


@pytest.mark.parametrize(("tasks", "nodes", "rank", "match"), [(12, 8, 0, "evenly"), (4, 1, 4, "outside")])
def test_env_rejects_impossible_jobs(tasks, nodes, rank, match):
    with pytest.raises(ValueError, match=match):
        slurm_env.torch_dist_env(job_id="1", hostnames=["a"], num_nodes=nodes, num_tasks=tasks, global_rank=rank,
                                 local_rank=0, environ={})


def test_export_from_a_fake_slurm_task(clean_env):
    for key, value in SLURM_JOB.items():
        clean_env.setenv(key, value)
    info = slurm_env.export_torch_env()
    assert info is not None and (info.rank, info.local_rank, info.world_size) == (9, 1, 16)
    assert env_world() == info
    assert {k: os.environ[k] for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR")} == {
        "RANK": "9", "WORLD_SIZE": "16", "LOCAL_RANK": "1", "MASTER_ADDR": "gpu07"}
    assert os.environ["MASTER_PORT"].isdigit()


def test_no_export_outside_submitit_or_for_one_task(clean_env):
    assert slurm_env.export_torch_env() is None
    for key, value in {**SLURM_JOB, "SLURM_NTASKS": "1", "SLURM_JOB_NUM_NODES": "1", "SLURM_PROCID": "0"}.items():
        clean_env.setenv(key, value)
    assert slurm_env.export_torch_env() is None
    assert not any(k in os.environ for k in slurm_env.TORCH_VARS)


def test_ranks_other_than_0_write_no_log_file(clean_env, tmp_path):
    hydra = _launcher("slurm_train")
    for key, value in SLURM_JOB.items():
        clean_env.setenv(key, value)
    root = logging.getLogger()
    handler = logging.FileHandler(tmp_path / "train.log")
    root.addHandler(handler)
    try:
        slurm_env.SubmititTorchEnv().on_job_start(config=hydra)
        assert handler not in root.handlers  # task 9 logs to its console only
    finally:
        root.removeHandler(handler)
        handler.close()
    assert os.environ["RANK"] == "9"


def _train(tmp_path: Path, launcher: str, *overrides: str) -> Path:
    """``tools/train.py -m hydra/launcher=<launcher>`` on pre-rendered synthetic faces; the sweep folder."""
    from facedet.data.synthetic.store import ensure_synthetic

    data = tmp_path / "data"
    ensure_synthetic(data, num_train=16, num_val=6)  # once, before jobs that would all render it at once
    sweep = tmp_path / "sweep"
    cmd = [sys.executable, str(ROOT / "tools" / "train.py"), "-m", f"hydra/launcher={launcher}", *TINY,
           f"data.root={data}", "data.num_train=16", *overrides, f"hydra.sweep.dir={sweep}"]
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    for key in slurm_env.TORCH_VARS:
        env.pop(key, None)
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    logs = "".join(p.read_text()[-2000:] for p in sweep.glob(".submitit/*/*_log.err"))
    assert proc.returncode == 0, proc.stderr[-3000:] + logs
    return sweep


def test_local_executor_runs_a_sweep(tmp_path):
    sweep = _train(tmp_path, "local", "seed=0,1")
    for num, seed in (("0", 0), ("1", 1)):
        metrics = json.loads((sweep / num / "metrics.json").read_text())
        assert metrics["world_size"] == 1 and metrics["steps"] == 2  # 16 images, batches of 8
        assert f"seed: {seed}\n" in (sweep / num / "config.yaml").read_text()
        assert (sweep / num / ".hydra" / "overrides.yaml").is_file()


@pytest.mark.slow
def test_local_executor_runs_one_run_on_two_processes(tmp_path):
    sweep = _train(tmp_path, "local_ddp", "seed=0")
    assert sorted(p.name for p in sweep.iterdir()) == [".submitit", "0", "multirun.yaml"]
    metrics = json.loads((sweep / "0" / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["ddp"]["backend"] == "gloo" and metrics["ddp"]["identical"]
    assert metrics["steps"] == 2  # 16 images in batches of 8, 4 per process
    log = (sweep / "0" / "train.log").read_text()
    assert log.count("distributed: 2 processes, backend gloo") == 1 and "rank 0 of 2" in log
    assert "rank 1 of 2" not in log  # rank 1 logs to its console (.submitit/<job>/<job>_1_log.err) only
    assert "rank 1 of 2" in "".join(p.read_text() for p in sweep.glob(".submitit/*/*_1_log.*"))
