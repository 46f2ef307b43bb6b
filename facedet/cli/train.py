"""``facedet-train`` / ``tools/train.py``: train a detector from the composed Hydra config."""

from __future__ import annotations

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from facedet.cli.common import CONFIG_DIR, user_errors


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> float:
    from facedet.engine.run import run_training

    with user_errors():
        result = run_training(cfg, HydraConfig.get().runtime.output_dir)
    best = result["best"]
    print(f"facedet: best {cfg.train.best_metric} = {best[cfg.train.best_metric]:.4f} "
          f"(AP50 {best['AP50']:.4f}, AP50:95 {best['AP']:.4f}) in {result['train_seconds']:.0f} s; "
          f"run dir: {HydraConfig.get().runtime.output_dir}")
    return float(best[cfg.train.best_metric])  # the value a Hydra sweeper would optimise


if __name__ == "__main__":
    main()
