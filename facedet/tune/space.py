"""Search spaces: the ``params`` node of an ``hparams_search`` config, parsed into ``Param`` objects
that ask an Optuna trial for a value and turn it into one Hydra override string.

    params:
      optim.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}   # -> optim.lr=0.0031
      aug.close_mosaic: {type: int, low: 0, high: 5}                  # -> aug.close_mosaic=3
      aug: {type: categorical, choices: [mosaic, mosaic_sat]}          # a config group -> aug=mosaic_sat

A key that names a config group (``aug``, ``model/backbone``) chooses an option of it; any other key
sets a value. Which keys are groups is known only once the train config is composed
(``facedet.tune.compose``), so ``Param`` just formats ``key=value`` for both.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import optuna

from facedet.registry import ConfigError, closest

WHERE = "hparams_search.params"
SPEC_KEYS = {
    "float": {"type", "low", "high", "log", "step"},
    "int": {"type", "low", "high", "log", "step"},
    "categorical": {"type", "choices"},
}
_PLAIN = re.compile(r"^[A-Za-z0-9_./\-]+$")  # strings Hydra's override grammar takes unquoted


@dataclass(frozen=True)
class Param:
    """One searched config key: ``float``/``int`` in [low, high] (``log``: log scale; ``step``: a
    grid), or ``categorical`` among ``choices`` (numbers, strings, booleans or null)."""

    key: str
    type: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: optuna.Trial) -> Any:
        """The trial's value of this key (Optuna records it under the key's name)."""
        if self.type == "categorical":
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.type == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.key, float(self.low), float(self.high), step=self.step, log=self.log)

    def first(self) -> Any:
        """The value the up-front check composes with: the first choice, or ``low``."""
        return self.choices[0] if self.type == "categorical" else self.low

    def last(self) -> Any:
        return self.choices[-1] if self.type == "categorical" else self.high

    def override(self, value: Any) -> str:
        return f"{self.key}={format_value(value)}"


def format_value(value: Any) -> str:
    """``value`` in Hydra's override grammar (``true``, ``null``, ``0.003``, ``'a b'``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value)
    if _PLAIN.match(text) and text.lower() not in ("true", "false", "null"):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def parse_space(params: Mapping[str, Any] | None) -> list[Param]:
    """The ``params`` node as ``Param`` objects; a ConfigError names ``hparams_search.params.<key>``
    for an unknown type or spec key, a missing bound or choice, or bounds in the wrong order."""
    if not params:
        raise ConfigError(f"{WHERE} is empty: name at least one config key to search")
    return [_parse_one(str(key), spec) for key, spec in params.items()]


def _parse_one(key: str, spec: Any) -> Param:
    where = f"{WHERE}.{key}"
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{where} must be a mapping such as {{type: float, low: 0.001, high: 0.01}}, got {spec!r}")
    kind = str(spec.get("type", ""))
    if kind not in SPEC_KEYS:
        guess = closest(kind, list(SPEC_KEYS))
        raise ConfigError(f"{where}.type must be one of {', '.join(SPEC_KEYS)}, got {kind!r}"
                          + (f". Did you mean '{guess}'?" if guess else ""))
    unknown = sorted(set(spec) - SPEC_KEYS[kind])
    if unknown:
        guess = closest(unknown[0], sorted(SPEC_KEYS[kind]))
        raise ConfigError(f"{where}: unknown key '{unknown[0]}' for type {kind}; accepted: "
                          f"{', '.join(sorted(SPEC_KEYS[kind]))}" + (f". Did you mean '{guess}'?" if guess else ""))
    if kind == "categorical":
        choices = list(spec["choices"]) if _is_list(spec.get("choices")) else None
        if not choices:
            raise ConfigError(f"{where}.choices must be a non-empty list, got {spec.get('choices')!r}")
        bad = [c for c in choices if c is not None and not isinstance(c, (bool, int, float, str))]
        if bad:
            raise ConfigError(f"{where}.choices may hold numbers, strings, booleans and null (Optuna's "
                              f"categorical values), got {bad[0]!r}")
        return Param(key, kind, choices=tuple(choices))
    return _parse_range(key, kind, spec, where)


def _is_list(value: Any) -> bool:
    """An OmegaConf ListConfig or a plain list/tuple."""
    return value is not None and not isinstance(value, (str, bytes)) and hasattr(value, "__len__") \
        and not hasattr(value, "keys")


def _parse_range(key: str, kind: str, spec: Mapping[str, Any], where: str) -> Param:
    number = int if kind == "int" else float
    values: dict[str, Any] = {}
    for name in ("low", "high", "step"):
        raw = spec.get(name)
        if raw is None:
            if name == "step":
                continue
            raise ConfigError(f"{where}.{name} is missing (type {kind} needs low and high)")
        if isinstance(raw, bool) or not isinstance(raw, (int, float)) or (kind == "int" and raw != int(raw)):
            raise ConfigError(f"{where}.{name} must be {'an integer' if kind == 'int' else 'a number'}, got {raw!r}")
        values[name] = number(raw)
    low, high, log = values["low"], values["high"], bool(spec.get("log", False))
    if not (math.isfinite(low) and math.isfinite(high)) or low > high:
        raise ConfigError(f"{where}: low ({low}) must be <= high ({high}), both finite")
    if log and low <= 0:
        raise ConfigError(f"{where}: log: true needs low > 0, got {low}")
    if log and values.get("step") is not None:
        raise ConfigError(f"{where}: step and log: true cannot be combined (Optuna's rule)")
    if values.get("step") is not None and values["step"] <= 0:
        raise ConfigError(f"{where}.step must be > 0, got {values['step']}")
    return Param(key, kind, low=low, high=high, log=log, step=values.get("step"))


def overrides_of(params: list[Param], values: Mapping[str, Any]) -> list[str]:
    """The Hydra overrides of one trial's ``values`` (key -> value), in the order of ``params``."""
    return [p.override(values[p.key]) for p in params if p.key in values]


def check_enqueued(params: list[Param], values: Mapping[str, Any], where: str) -> None:
    """A ConfigError naming ``where.<key>`` when a trial to enqueue sets a key that is not searched or
    a value outside the key's range or choices (Optuna would run it anyway, off the space)."""
    by_key = {p.key: p for p in params}
    for key, value in values.items():
        p = by_key.get(str(key))
        if p is None:
            guess = closest(str(key), list(by_key))
            raise ConfigError(f"{where}.{key} is not a searched key ({', '.join(by_key)})"
                              + (f". Did you mean '{guess}'?" if guess else ""))
        if p.type == "categorical":
            ok = value in p.choices
        else:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and p.low <= value <= p.high
        if not ok:
            space = f"one of {list(p.choices)}" if p.type == "categorical" else f"in [{p.low}, {p.high}]"
            raise ConfigError(f"{where}.{key}={value!r} is outside the search space: {space}")
