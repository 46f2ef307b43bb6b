"""``facedet-tune`` / ``tools/tune.py``: a hyperparameter search with Optuna (docs/TUNING.md).

    python tools/tune.py hparams_search=facemask [hparams_search.n_trials=30 ...]

Each trial trains a normal run in ``<study folder>/trial_<NNN>`` (``hydra.run.dir``, by default
``runs/tune/<study_name>``); running the same command again resumes the study. The best trial is
written as an experiment file and the command that trains it is printed.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from facedet.cli.common import CONFIG_DIR, hydra_argv, preflight, user_errors


def _experiment_name(path: Path) -> str | None:
    """``tuned/facemask`` for ``<configs>/experiment/tuned/facemask.yaml``; None outside that folder."""
    try:
        return path.resolve().relative_to(Path(CONFIG_DIR, "experiment").resolve()).with_suffix("").as_posix()
    except ValueError:
        return None


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="tune")
def _tune(cfg: DictConfig) -> float | None:
    from facedet.engine.run import run_training
    from facedet.engine.trainer import TrainingDiverged
    from facedet.tune import hydra_composer, parse_settings, run_study
    from facedet.tune.compose import check_experiment

    study_dir = Path(HydraConfig.get().runtime.output_dir)
    with user_errors():
        settings = parse_settings(cfg.hparams_search)
        best_paths = [Path(CONFIG_DIR, settings.best_experiment)] if settings.best_experiment else []
        composer = hydra_composer(CONFIG_DIR)
        outcome = run_study(settings, composer=composer, study_dir=study_dir, train_fn=run_training,
                            best_paths=best_paths, catch=(TrainingDiverged,))
        name = _experiment_name(best_paths[0]) if best_paths else None
        if outcome.best is not None and name:
            check_experiment(composer, name, outcome.best.params, outcome.groups)
    finished = [t for t in outcome.study.trials if t.state.name in ("COMPLETE", "PRUNED")]
    print(f"facedet: study '{settings.study_name}': {len(finished)} of {settings.n_trials} trials finished "
          f"({sum(t.state.name == 'PRUNED' for t in finished)} pruned); trials table {study_dir / 'trials.csv'}")
    if outcome.best is not None:
        best = outcome.best
        print(f"facedet: best trial {best.number}: {settings.metric} = {best.value:.4f} with "
              + " ".join(best.user_attrs.get("overrides", [])) + f"; run dir {best.user_attrs.get('run_dir')}")
        print(f"facedet: best experiment file: {', '.join(map(str, outcome.best_files))}")
        if name:
            print(f"facedet: train it at full length with: python tools/train.py experiment={name}")
        else:
            print("facedet: copy it into configs/experiment/ to train it with python tools/train.py experiment=<name>")
    if outcome.plots:
        print(f"facedet: pictures: {study_dir / 'plots'} ({', '.join(p.name for p in outcome.plots)})")
    if outcome.interrupted:
        print(f"facedet: interrupted; the unfinished trial runs again on resume. Resume with the same command: "
              f"python tools/tune.py {shlex.join(sys.argv[1:])}", file=sys.stderr)
        sys.exit(130)
    return None if outcome.best is None else float(outcome.best.value)


def main(argv: list[str] | None = None) -> None:
    preflight(hydra_argv(argv), "tune")
    _tune()


if __name__ == "__main__":
    main()
