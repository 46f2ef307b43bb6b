"""Composing the train config of a trial with Hydra's compose API, and checking a search space
against it before the study starts (a typo must not cost a trial's worth of training first).

The tune layer sits below the command-line tools, so the config folder comes in as an argument
(``facedet.cli.common.CONFIG_DIR`` from the tool, a path from tests).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from facedet.config_check import validate_train_config
from facedet.registry import ConfigError, closest
from facedet.tune.space import WHERE, Param

_ABSENT = object()


@dataclass(frozen=True)
class Composed:
    """A trial's train config (without the ``hydra`` node) and its group choices (``aug`` -> ``mosaic``)."""

    cfg: DictConfig
    choices: dict[str, Any] = field(default_factory=dict)


Composer = Callable[[Sequence[str]], Composed]


def hydra_composer(config_dir: str, config_name: str = "train") -> Composer:
    """``overrides -> Composed`` for ``<config_dir>/<config_name>.yaml``. Inside a ``@hydra.main``
    app (the tune tool) Hydra is already set up with the same folder and is used as it is."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    def run(overrides: Sequence[str]) -> Composed:
        if GlobalHydra.instance().is_initialized():
            full = compose(config_name=config_name, overrides=list(overrides), return_hydra_config=True)
        else:
            with initialize_config_dir(config_dir=config_dir, version_base="1.3"):
                full = compose(config_name=config_name, overrides=list(overrides), return_hydra_config=True)
        choices = OmegaConf.to_container(full.hydra.runtime.choices, resolve=False)
        with open_dict(full):
            del full["hydra"]
        return Composed(full, {str(k): v for k, v in dict(choices).items() if not str(k).startswith("hydra/")})

    return run


def compose_checked(composer: Composer, overrides: Sequence[str], what: str) -> Composed:
    """``composer(overrides)``; a Hydra composition error becomes a ConfigError starting with ``what``."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        return composer(overrides)
    except (HydraException, OmegaConfBaseException) as e:
        cause = str(e.__cause__ or "").strip().splitlines()
        msg = str(e).split("\nConfig search path:")[0].strip().replace("\n", " ")
        raise ConfigError(f"{what}: {msg}" + (f" ({cause[0]})" if cause and cause[0] not in msg else "")) from e


def check_space(composer: Composer, base: Sequence[str], params: Sequence[Param]) -> set[str]:
    """Compose the train config with the search's ``base`` overrides and each param's first (then
    last) value before any trial runs; returns the keys that are config groups. A key the train
    config does not have is a ConfigError naming ``hparams_search.params.<key>``."""
    plain = compose_checked(composer, base, f"hparams_search base overrides {list(base)}")
    groups = {p.key for p in params if p.key in plain.choices}
    for p in params:
        if p.key in groups and p.type != "categorical":
            raise ConfigError(f"{WHERE}.{p.key}: '{p.key}' is a config group; search it with "
                              f"{{type: categorical, choices: [{plain.choices[p.key]}, ...]}}")
    first_groups = [p.override(p.first()) for p in params if p.key in groups]
    with_groups = compose_checked(composer, [*base, *first_groups], f"{WHERE} (config group choices)")
    for p in params:
        if p.key not in groups:
            _check_key(with_groups.cfg, p.key, base)
    # every categorical choice of a group, and all first / all last values, must compose and validate
    trials = [[p.override(p.first()) for p in params], [p.override(p.last()) for p in params]]
    for p in params:
        if p.key in groups:
            trials += [[p.override(c) if q is p else q.override(q.first()) for q in params] for c in p.choices[1:]]
    for overrides in trials:
        composed = compose_checked(composer, [*base, *overrides], f"{WHERE} with {overrides}")
        try:
            validate_train_config(composed.cfg)
        except ConfigError as e:
            raise ConfigError(f"{WHERE} with {overrides}: {e}") from e
    return groups


def _check_key(cfg: DictConfig, key: str, base: Sequence[str]) -> None:
    if OmegaConf.select(cfg, key, default=_ABSENT, throw_on_missing=False) is not _ABSENT:
        return
    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(cfg, parent, default=None) if parent else cfg
    known = [str(k) for k in node.keys()] if isinstance(node, DictConfig) else []
    guess = closest(leaf, known)
    raise ConfigError(
        f"{WHERE}.{key}: the train config (with {list(base) or 'no overrides'}) has no key '{key}'"
        + (f". Did you mean '{parent + '.' if parent else ''}{guess}'?" if guess else "")
    )


def selected(composed: Composed, key: str, groups: set[str]) -> Any:
    """The value of ``key`` in a composed config: the option chosen for a group, else the value."""
    if key in groups:
        return composed.choices.get(key)
    return OmegaConf.select(composed.cfg, key, default=None)


def check_experiment(composer: Composer, experiment: str, values: dict[str, Any], groups: set[str]) -> None:
    """Compose ``experiment=<experiment>`` and check that it gives ``values`` (key -> the searched
    value or group choice); a ConfigError says which key differs."""
    composed = compose_checked(composer, [f"experiment={experiment}"], f"the best experiment file {experiment}")
    for key, want in values.items():
        got = selected(composed, key, groups)
        same = math.isclose(got, want, rel_tol=1e-12) if isinstance(want, float) and isinstance(got, float) \
            else got == want
        if not same:
            raise ConfigError(f"the best experiment file {experiment} composes to {key}={got!r}, not the "
                              f"searched {want!r}")
