"""Optuna samplers and pruners by name, from the ``sampler`` and ``pruner`` nodes of a search:

    sampler: {type: nsga2, seed: 0, population_size: 8}   # other keys go to the Optuna class
    pruner: {type: median, n_startup_trials: 2, n_warmup_steps: 1}

Samplers: ``nsga2`` (NSGA-II, the genetic algorithm YOLOv4 and yolov5's ``--evolve`` stand for),
``tpe`` (Bayesian, Optuna's default), ``cmaes`` (needs the ``cmaes`` package), ``random``.
Pruners: ``median``, ``sha`` (successive halving), ``none``.
"""

from __future__ import annotations

import importlib.util
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import optuna

from facedet.registry import ConfigError, closest

SAMPLERS: dict[str, Callable[..., optuna.samplers.BaseSampler]] = {
    "nsga2": optuna.samplers.NSGAIISampler,
    "tpe": optuna.samplers.TPESampler,
    "cmaes": optuna.samplers.CmaEsSampler,
    "random": optuna.samplers.RandomSampler,
}
PRUNERS: dict[str, Callable[..., optuna.pruners.BasePruner]] = {
    "median": optuna.pruners.MedianPruner,
    "sha": optuna.pruners.SuccessiveHalvingPruner,
    "none": optuna.pruners.NopPruner,
}


def _options(node: Mapping[str, Any] | str | None, where: str, table: Mapping[str, Callable[..., Any]],
             default: str) -> tuple[str, Callable[..., Any], dict[str, Any]]:
    """(name, class, keyword options) of a ``{type: name, ...}`` node (or a bare name); unknown names and
    keys are a ConfigError naming ``where``."""
    node = {"type": node} if isinstance(node, str) or node is None else dict(node)
    name = str(node.pop("type", None) or default)
    if name not in table:
        guess = closest(name, list(table))
        raise ConfigError(f"{where}.type must be one of {', '.join(table)}, got '{name}'"
                          + (f". Did you mean '{guess}'?" if guess else ""))
    cls = table[name]
    accepted = [p for p in inspect.signature(cls).parameters if p not in ("self", "args", "kwargs")]
    for key in node:
        if key not in accepted:
            guess = closest(str(key), accepted)
            raise ConfigError(f"{where}.{key} is not an option of {cls.__name__} ({name}); accepted: "
                              f"{', '.join(accepted)}" + (f". Did you mean '{guess}'?" if guess else ""))
    return name, cls, node


def build_sampler(node: Mapping[str, Any] | str | None, *, seed_offset: int = 0,
                  where: str = "hparams_search.sampler") -> optuna.samplers.BaseSampler:
    """The sampler of ``node``. ``seed_offset`` (the trials already in a resumed study) shifts the
    seed, so that a resumed seeded sampler does not propose the first trials' values again."""
    name, cls, options = _options(node, where, SAMPLERS, "tpe")
    if name == "cmaes" and importlib.util.find_spec("cmaes") is None:
        raise ConfigError(f"{where}.type cmaes needs the 'cmaes' package (pip install cmaes), which is not "
                          "installed; or pick nsga2, tpe or random")
    if options.get("seed") is not None:
        options["seed"] = int(options["seed"]) + seed_offset
    try:
        return cls(**options)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {cls.__name__}({options}): {e}") from e


def build_pruner(node: Mapping[str, Any] | str | None, *, where: str = "hparams_search.pruner"
                 ) -> optuna.pruners.BasePruner:
    """The pruner of ``node`` (``none``: trials always run to the end)."""
    _, cls, options = _options(node, where, PRUNERS, "median")
    try:
        return cls(**options)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {cls.__name__}({options}): {e}") from e
