"""Registries of named components and the recursive ``build`` that turns config nodes into objects.

A config node such as ``{type: cspdarknet, width: 0.5}`` names a registered class and its keyword
arguments. Only registered names can be built, so a config file cannot call arbitrary code (the
reason we prefer this to Hydra's ``_target_``). Nested nodes that carry ``type`` are built first,
so constructors receive built objects and stay usable from plain Python.

Errors are ``ConfigError`` and name the config key, the known names and the closest match, so a
typo fails at once with a message instead of a traceback from deep inside.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

from omegaconf import DictConfig, ListConfig, OmegaConf

T = TypeVar("T")


class ConfigError(ValueError):
    """A user-facing configuration error (unknown name, unknown or missing key, bad value)."""


def closest(name: str, choices: list[str]) -> str | None:
    """The choice most similar to ``name``, or None when nothing is close."""
    match = difflib.get_close_matches(name, choices, n=1, cutoff=0.5)
    return match[0] if match else None


def plural(kind: str) -> str:
    """'loss' -> 'losses', 'backbone' -> 'backbones' (for messages)."""
    return f"{kind}es" if kind.endswith("s") else f"{kind}s"


def _did_you_mean(name: str, choices: list[str]) -> str:
    guess = closest(name, choices)
    return f" Did you mean '{guess}'?" if guess else ""


# Every registry by kind, filled as registries are created.
ALL_REGISTRIES: dict[str, Registry] = {}


class Registry:
    """Maps short names to classes (or factory functions) of one kind of component."""

    def __init__(self, kind: str) -> None:
        if kind in ALL_REGISTRIES:
            raise KeyError(f"a registry of kind '{kind}' already exists")
        self.kind = kind
        self._items: dict[str, Callable[..., Any]] = {}
        ALL_REGISTRIES[kind] = self  # so nested nodes can name any kind ("kind:name")

    def register(self, name: str | None = None) -> Callable[[T], T]:
        """Decorator: ``@BACKBONES.register("cspdarknet")``; the name defaults to the object's name."""

        def deco(obj: T) -> T:
            key = name or obj.__name__  # type: ignore[attr-defined]
            if key in self._items and self._items[key] is not obj:
                raise KeyError(f"{self.kind} '{key}' is already registered to {self._items[key]!r}")
            self._items[key] = obj  # type: ignore[assignment]
            return obj

        return deco

    def get(self, name: str, *, where: str = "") -> Callable[..., Any]:
        if name not in self._items:
            known = sorted(self._items)
            at = f" at '{where}'" if where else ""
            raise ConfigError(
                f"Unknown {self.kind} '{name}'{at}. Known {plural(self.kind)}: {', '.join(known) or '(none)'}."
                + _did_you_mean(name, known)
            )
        return self._items[name]

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"


BACKBONES = Registry("backbone")
NECKS = Registry("neck")
HEADS = Registry("head")
LOSSES = Registry("loss")
ASSIGNERS = Registry("assigner")
POSTPROCESSORS = Registry("postprocessor")
DATASETS = Registry("dataset")
TRANSFORMS = Registry("transform")
# One registry per kind of swappable part, all here so a newcomer finds every kind in one place.
ACTIVATIONS = Registry("activation")  # models: name -> nn.Module factory
POOLS = Registry("pool")  # models: spatial-pyramid pooling blocks (spp, sppf)
READERS = Registry("reader")  # data: label-format readers (wider_txt, coco_json, ...)
DATASET_WRAPPERS = Registry("dataset_wrapper")  # data: oversample, mosaic, copy_paste, mixup
EVALUATORS = Registry("evaluator")  # evaluation: coco, widerface
OPTIMIZERS = Registry("optimizer")  # engine: sgd, adamw
SCHEDULES = Registry("schedule")  # engine: learning-rate factor per step (cosine)
HOOKS = Registry("hook")  # engine: optional training hooks built from config (close_mosaic, sat, ...)
LANDMARK_LOSSES = Registry("landmark_loss")  # losses: per-coordinate point losses (wing, smooth_l1)
OBJECTNESS_MINERS = Registry("objectness_miner")  # losses: which negatives the objectness loss trains (ohem)
DISTILL_LOSSES = Registry("distill_loss")  # losses: a detection loss plus a term towards a teacher (yolo_distill)


def _registry_for_nested(type_name: str, default: Registry, where: str) -> tuple[Registry, str]:
    """Find the registry of a nested node: ``kind:name`` explicitly, else the parent's, else unique."""
    if ":" in type_name:
        kind, name = type_name.split(":", 1)
        if kind not in ALL_REGISTRIES:
            raise ConfigError(
                f"Unknown component kind '{kind}' in '{type_name}' at '{where}'. "
                f"Known kinds: {', '.join(sorted(ALL_REGISTRIES))}." + _did_you_mean(kind, list(ALL_REGISTRIES))
            )
        return ALL_REGISTRIES[kind], name
    if type_name in default:
        return default, type_name
    owners = [r for r in ALL_REGISTRIES.values() if type_name in r]
    if len(owners) == 1:
        return owners[0], type_name
    if len(owners) > 1:
        kinds = ", ".join(f"'{r.kind}:{type_name}'" for r in owners)
        raise ConfigError(f"'{type_name}' at '{where}' is ambiguous; write one of {kinds}.")
    # Unknown everywhere: report it against the registry the node most likely meant, so the
    # suggestion comes from the right names ('wings' at model.loss.landmark_loss -> 'wing'): the
    # registry named like the node's key, else the one holding the closest name, else the parent's.
    key = where.rsplit(".", 1)[-1].split("[", 1)[0]
    if key in ALL_REGISTRIES:
        return ALL_REGISTRIES[key], type_name
    guess = closest(type_name, [n for r in ALL_REGISTRIES.values() for n in r.names()])
    near = [r for r in ALL_REGISTRIES.values() if guess in r]
    return (near[0] if len(near) == 1 else default), type_name  # .get raises the error with suggestions


def _to_plain(value: Any) -> Any:
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    return value


def _build_value(value: Any, registry: Registry, where: str) -> Any:
    if isinstance(value, Mapping) and "type" in value:
        reg, name = _registry_for_nested(str(value["type"]), registry, where)
        return build({**value, "type": name}, reg, where=where)
    if isinstance(value, Mapping):
        return {k: _build_value(v, registry, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_build_value(v, registry, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def accepted_arguments(fn: Callable[..., Any]) -> tuple[list[str], list[str], bool]:
    """(all accepted keyword names, required ones, whether ``**kwargs`` is accepted)."""
    sig = inspect.signature(fn)
    names, required, var_kw = [], [], False
    for p in sig.parameters.values():
        if p.kind is p.VAR_KEYWORD:
            var_kw = True
        elif p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD):
            names.append(p.name)
            if p.default is p.empty:
                required.append(p.name)
    return names, required, var_kw


def build(node: Mapping[str, Any] | DictConfig, registry: Registry, *, where: str = "", **extra: Any) -> Any:
    """Build ``node`` (a mapping with ``type``) from ``registry``.

    ``extra`` are keyword arguments supplied by the caller rather than the config (for example the
    input channels of a neck, known only once its backbone is built); a config value wins over
    ``extra`` only if the caller did not supply it. ``where`` is the config path used in errors.
    """
    where = where or registry.kind
    node = _to_plain(node)
    if not isinstance(node, Mapping):
        raise ConfigError(f"'{where}' must be a mapping with a 'type' key, got {type(node).__name__}: {node!r}")
    if "type" not in node:
        raise ConfigError(
            f"'{where}' has no 'type' key. Known {plural(registry.kind)}: {', '.join(registry.names())}."
        )
    cls = registry.get(str(node["type"]), where=f"{where}.type")
    kwargs = {k: _build_value(v, registry, f"{where}.{k}") for k, v in node.items() if k != "type"}
    for k, v in extra.items():
        if k in kwargs:
            raise ConfigError(f"'{where}.{k}' is set by the framework and must not be given in the config.")
        kwargs[k] = v

    names, required, var_kw = accepted_arguments(cls)
    if not var_kw:
        unknown = [k for k in kwargs if k not in names]
        if unknown:
            k = unknown[0]
            settable = [n for n in names if n not in extra]
            raise ConfigError(
                f"Unknown key '{where}.{k}' for {registry.kind} '{node['type']}'. "
                f"Accepted keys: {', '.join(settable) or '(none)'}." + _did_you_mean(k, settable)
            )
    missing = [k for k in required if k not in kwargs]
    if missing:
        raise ConfigError(
            f"Missing key(s) {', '.join(f'{where}.{k}' for k in missing)} for {registry.kind} "
            f"'{node['type']}'. Accepted keys: {', '.join(names)}."
        )
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as e:
        raise ConfigError(f"Could not build {registry.kind} '{node['type']}' at '{where}': {e}") from e
