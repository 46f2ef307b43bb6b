"""What a study leaves in its folder besides the trial run directories: ``trials.csv``, the best
trial as a ready experiment file, and HTML pictures (optimisation history, learning curves,
parameter importances, parallel coordinates) viewable offline."""

from __future__ import annotations

import csv
import datetime
import io
import json
import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
from omegaconf import OmegaConf

from facedet.tune.space import Param

log = logging.getLogger(__name__)

CSV_FIELDS = ("number", "state", "value", "params", "run_dir", "epochs_reported", "seconds")


def _write_atomic(path: Path, text: str) -> None:
    """Readers (and a second machine on the study) never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", newline="") as f:
        f.write(text)
    os.replace(tmp, path)


def write_trials_csv(study: optuna.Study, path: Path) -> None:
    """One row per trial: number, state, value, params (JSON), run_dir, the epochs it reported (a pruned
    trial stops early) and its wall time."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_FIELDS)
    writer.writeheader()
    for t in study.get_trials(deepcopy=False):
        ended = t.datetime_complete is not None and t.datetime_start is not None
        seconds = round((t.datetime_complete - t.datetime_start).total_seconds(), 1) if ended else ""
        writer.writerow({"number": t.number, "state": t.state.name, "value": "" if t.value is None else t.value,
                         "params": json.dumps(t.params, sort_keys=True), "run_dir": t.user_attrs.get("run_dir", ""),
                         "epochs_reported": " ".join(map(str, sorted(t.intermediate_values))),
                         "seconds": seconds})
    _write_atomic(path, out.getvalue())


def best_trial(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    """The best COMPLETE trial, or None before one."""
    if not study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        return None
    return study.best_trial


def best_experiment_text(trial: optuna.trial.FrozenTrial, *, params: Sequence[Param], groups: set[str],
                         experiment: str | None, study_name: str, metric: str) -> str:
    """The experiment file of ``trial``: ``# @package _global_``, a defaults list with the base
    experiment and the group choices, then the values. The trials' own overrides (shorter runs) are
    left out: this is the recipe at full length."""
    defaults: list[Any] = [f"/experiment/{experiment}"] if experiment else []
    searched = [p for p in params if p.key in trial.params]  # a study resumed with a changed space may lack some
    defaults += [{f"override /{p.key}": trial.params[p.key]} for p in searched if p.key in groups]
    defaults.append("_self_")
    body = OmegaConf.create({"defaults": defaults, "name": f"{study_name}-tuned"})
    for p in searched:
        if p.key not in groups:
            OmegaConf.update(body, p.key, trial.params[p.key], force_add=True)
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    header = (f"# @package _global_\n# The best trial ({trial.number}) of the study '{study_name}': {metric} = "
              f"{trial.value:.5g} in its short trial run ({trial.user_attrs.get('run_dir', '?')}).\n"
              f"# Written by facedet-tune on {when}; the values below are the ones searched, the rest is "
              f"{'experiment/' + experiment if experiment else 'train.yaml'}.\n")
    return header + OmegaConf.to_yaml(body, sort_keys=False)


def write_best_experiment(study: optuna.Study, paths: Sequence[Path], **kwargs: Any) -> optuna.trial.FrozenTrial | None:
    """Write the best trial's experiment file to each of ``paths``; returns that trial (None: no
    COMPLETE trial yet, nothing written)."""
    trial = best_trial(study)
    if trial is None:
        return None
    text = best_experiment_text(trial, **kwargs)
    for path in paths:
        _write_atomic(Path(path), text)
    return trial


def write_plots(study: optuna.Study, out_dir: Path, metric: str) -> list[Path]:
    """HTML pictures in ``out_dir`` (plotly.js written once beside them, so they open offline):
    optimisation history, intermediate values (the pruner's view), and with >= 2 complete trials,
    parameter importances (PED-ANOVA: needs no scikit-learn) and parallel coordinates."""
    import optuna.visualization as vis
    from optuna.importance import PedAnovaImportanceEvaluator

    if not vis.is_available():  # plotly is an optional dependency of optuna
        log.warning("no pictures: plotly is not installed (pip install plotly)")
        return []
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    figures = {"optimization_history": lambda: vis.plot_optimization_history(study, target_name=metric),
               "intermediate_values": lambda: vis.plot_intermediate_values(study)}
    if len(complete) >= 2:
        figures["param_importances"] = lambda: vis.plot_param_importances(
            study, evaluator=PedAnovaImportanceEvaluator(), target_name=metric)
        figures["parallel_coordinate"] = lambda: vis.plot_parallel_coordinate(study, target_name=metric)
    written = []
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, make in figures.items():
        try:
            fig = make()
        except (ValueError, RuntimeError, ZeroDivisionError) as e:  # too few trials for this picture
            log.warning("no %s picture: %s", name, e)
            continue
        path = out_dir / f"{name}.html"
        fig.write_html(str(path), include_plotlyjs="directory")  # <script src="plotly.min.js">, written once
        written.append(path)
    return written

