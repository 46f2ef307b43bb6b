"""Hyperparameter search with Optuna over Hydra-composed training configs (docs/TUNING.md).

Between the command-line tools and the engine: a study composes a train config per trial, runs
``facedet.engine.run.run_training`` on it, and reports the metric after each evaluation so that a
pruner can stop bad trials early.
"""

from facedet.tune.compose import Composed, Composer, check_space, hydra_composer
from facedet.tune.objective import Objective, TrialReporter
from facedet.tune.samplers import PRUNERS, SAMPLERS, build_pruner, build_sampler
from facedet.tune.settings import SearchSettings, parse_settings
from facedet.tune.space import Param, parse_space
from facedet.tune.study import StudyOutcome, run_study

__all__ = ["PRUNERS", "SAMPLERS", "Composed", "Composer", "Objective", "Param", "SearchSettings", "StudyOutcome",
           "TrialReporter", "build_pruner", "build_sampler", "check_space", "hydra_composer", "parse_settings",
           "parse_space", "run_study"]
