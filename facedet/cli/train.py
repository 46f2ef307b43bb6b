"""``facedet-train`` / ``tools/train.py``: train a detector from the composed Hydra config.

Under ``torchrun`` every process runs this; ranks other than 0 get overrides that keep Hydra from
writing an output folder or log file of their own (rank 0 owns the run directory).
"""

from __future__ import annotations

import math
import signal
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from facedet.cli.common import CONFIG_DIR, hydra_argv, preflight, user_errors
from facedet.config_check import validate_train_config
from facedet.engine.distributed import env_world, hydra_overrides_for_rank


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def _train(cfg: DictConfig) -> float:
    from facedet.engine.run import run_training

    with user_errors():
        validate_train_config(cfg)  # before any data is rendered or read
        result = run_training(cfg, HydraConfig.get().runtime.output_dir)
    best, main_rank = result["best"], env_world().rank == 0
    run_dir = HydraConfig.get().runtime.output_dir
    if result["interrupted"]:
        if main_rank:
            print(f"facedet: stopped by {result['interrupted']} at step {result['steps']}; checkpoints/last.pt saved; "
                  f"continue with train.resume={run_dir}/checkpoints/last.pt", file=sys.stderr)
        name = str(result["interrupted"])
        sys.exit(128 + signal.Signals[name].value if name in signal.Signals.__members__ else 1)
    value = best.get(cfg.train.best_metric)
    if main_rank and isinstance(value, float) and math.isnan(value):
        print(f"facedet: {cfg.train.best_metric} could not be measured: the val set has no faces it counts (see "
              f"the warning in the log), so there is no best; run dir: {run_dir}", file=sys.stderr)
    elif main_rank and value is not None:
        print(f"facedet: best {cfg.train.best_metric} = {best[cfg.train.best_metric]:.4f} "
              f"(AP50 {best['AP50']:.4f}, AP50:95 {best['AP']:.4f}) in {result['train_seconds']:.0f} s; "
              f"run dir: {run_dir}")
    return float(best.get(cfg.train.best_metric, float("nan")))  # the value a Hydra sweeper would optimise


def main(argv: list[str] | None = None) -> None:
    preflight(hydra_argv(argv), "train", output_dir=env_world().rank == 0)  # other ranks write no output folder
    sys.argv += hydra_overrides_for_rank()
    _train()


if __name__ == "__main__":
    main()
