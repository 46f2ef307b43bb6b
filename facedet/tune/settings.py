"""The ``hparams_search`` node (configs/hparams_search/*.yaml) as typed settings, checked up front:
an unknown key or a bad value is a ConfigError naming ``hparams_search.<key>``."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from facedet.registry import ConfigError, closest

WHERE = "hparams_search"


@dataclass(frozen=True)
class SearchSettings:
    """What one study is: see configs/hparams_search/synthetic.yaml for each key's meaning."""

    study_name: str
    params: dict[str, Any]
    experiment: str | None = None
    trial_overrides: list[str] = field(default_factory=list)
    n_trials: int = 20
    metric: str = "AP50"
    direction: str = "maximize"
    sampler: dict[str, Any] = field(default_factory=lambda: {"type": "tpe", "seed": 0})
    pruner: dict[str, Any] = field(default_factory=lambda: {"type": "median"})
    storage: str | None = None
    heartbeat_interval: int = 60
    grace_period: int = 180
    max_failures: int = 3
    best_experiment: str | None = None
    plots: bool = True
    enqueue_trials: list[dict[str, Any]] = field(default_factory=list)

    @property
    def base_overrides(self) -> list[str]:
        """The overrides every trial starts from: the base experiment, then ``trial_overrides``."""
        return ([f"experiment={self.experiment}"] if self.experiment else []) + list(self.trial_overrides)

    def storage_url(self, study_dir: Path) -> str:
        return self.storage or f"sqlite:///{Path(study_dir).absolute() / 'study.db'}"


def parse_settings(node: DictConfig | Mapping[str, Any]) -> SearchSettings:
    """``SearchSettings`` from the ``hparams_search`` node (resolved)."""
    data = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node)
    known = [f.name for f in dataclasses.fields(SearchSettings)]
    for key in data:
        if key not in known:
            guess = closest(str(key), known)
            raise ConfigError(f"{WHERE}.{key} is not a search setting; known: {', '.join(known)}"
                              + (f". Did you mean '{guess}'?" if guess else ""))
    for key in ("study_name", "params"):
        if not data.get(key):
            raise ConfigError(f"{WHERE}.{key} is missing")
    if data.get("direction", "maximize") not in ("maximize", "minimize"):
        raise ConfigError(f"{WHERE}.direction must be maximize or minimize, got {data['direction']!r}")
    for key in ("n_trials", "heartbeat_interval", "grace_period", "max_failures"):
        value = data.get(key, 1)
        if isinstance(value, bool) or not isinstance(value, int) or value < (0 if key == "max_failures" else 1):
            raise ConfigError(f"{WHERE}.{key} must be an integer >= {0 if key == 'max_failures' else 1}, "
                              f"got {value!r}")
    if not isinstance(data.get("trial_overrides") or [], list):
        raise ConfigError(f"{WHERE}.trial_overrides must be a list of key=value strings")
    data["trial_overrides"] = [str(o) for o in data.get("trial_overrides") or []]
    enqueued = data.get("enqueue_trials") or []
    if not isinstance(enqueued, list) or not all(isinstance(v, Mapping) for v in enqueued):
        raise ConfigError(f"{WHERE}.enqueue_trials must be a list of mappings (searched key -> value)")
    data["enqueue_trials"] = [dict(v) for v in enqueued]
    for key in ("sampler", "pruner"):
        if isinstance(data.get(key), str):
            data[key] = {"type": data[key]}
    return SearchSettings(**data)
