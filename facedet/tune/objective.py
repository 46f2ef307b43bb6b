"""The objective of a study: one trial = one normal training run in ``<study_dir>/trial_<NNN>/``.

The trial's train config is the search's base overrides plus one override per sampled value.
``TrialReporter``, a training hook, reports the metric to the trial after every evaluation and asks
the trainer to stop cleanly when the pruner says so. The train function is a parameter (tests give
a fake; the tool gives ``facedet.engine.run.run_training``).

A trial that runs the values of a FAILed one again (stopped by Ctrl-C, or killed and retried by the
heartbeat) continues that run: it starts from the failed run's ``checkpoints/last.pt``
(``train.resume``) in its own folder, and its reports start with the failed run's, so neither the
finished epochs nor what the pruner saw of them are lost.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import optuna

from facedet.engine.hook_base import PRIORITY_EVAL, HookBase
from facedet.registry import ConfigError
from facedet.tune.compose import Composer, compose_checked
from facedet.tune.space import Param, format_value, overrides_of

log = logging.getLogger(__name__)

TrainFn = Callable[..., dict[str, Any]]  # run_training(cfg, run_dir, *, progress, extra_hooks) -> result
PRUNED = "pruned"  # trainer.interrupted of a pruned trial


class TrialReporter(HookBase):
    """After each evaluation: ``trial.report(metric, epoch)``; stop the run when the trial should be
    pruned. A metric the evaluators do not produce is a ConfigError at the first evaluation."""

    priority = PRIORITY_EVAL + 1  # right after the evaluation hook has written trainer.metrics

    def __init__(self, trial: optuna.Trial, metric: str, earlier: Sequence[tuple[int, float]] = ()) -> None:
        self.trial = trial
        self.metric = metric
        self.values: list[tuple[int, float]] = list(earlier)  # (epoch, value) of every evaluation
        self.pruned = False
        for epoch, value in self.values:  # a continued run: the failed run's reports come first
            trial.report(value, epoch)

    def after_epoch(self) -> None:
        t = self.trainer
        metrics, epoch = t.metrics or {}, t.epoch + 1
        if metrics.get("epoch") != epoch:  # no evaluation this epoch
            return
        if self.metric not in metrics:
            known = sorted(k for k, v in metrics.items() if isinstance(v, (int, float)) and k not in ("epoch", "step"))
            raise ConfigError(f"hparams_search.metric '{self.metric}' is not among the evaluation metrics: "
                              f"{', '.join(known)}")
        value = float(metrics[self.metric])
        # NaN: not measurable (no faces of that kind); a continued run may redo an epoch the failed run reported
        if math.isnan(value) or any(e == epoch for e, _ in self.values):
            return
        self.values.append((epoch, value))
        self.trial.report(value, epoch)
        if self.trial.should_prune():
            self.pruned = True
            log.info("trial %d pruned after epoch %d (%s %.4f)", self.trial.number, epoch, self.metric, value)
            t.request_stop(PRUNED)


class Objective:
    """``objective(trial) -> value``: compose, train, return the best value of ``metric`` over the
    run's evaluations (the highest when maximizing, the lowest when minimizing), the one
    ``checkpoints/best.pt``-style reporting gives. Raises ``optuna.TrialPruned`` for pruned trials."""

    def __init__(self, *, composer: Composer, base: Sequence[str], params: Sequence[Param], study_dir: Path,
                 metric: str, direction: str, train_fn: TrainFn) -> None:
        self.composer = composer
        self.base = list(base)
        self.params = list(params)
        self.study_dir = Path(study_dir)
        self.metric = metric
        self.maximize = direction == "maximize"
        self.train_fn = train_fn

    def __call__(self, trial: optuna.Trial) -> float:
        values = {p.key: p.suggest(trial) for p in self.params}
        overrides = overrides_of(self.params, values)
        run_dir = self.study_dir / f"trial_{trial.number:03d}"
        trial.set_user_attr("run_dir", str(run_dir))
        trial.set_user_attr("overrides", overrides)
        log.info("trial %d: %s -> %s", trial.number, " ".join(overrides), run_dir)
        resume, earlier = continuation(trial)
        cfg = compose_checked(self.composer, [*self.base, *overrides, *resume], f"trial {trial.number}").cfg
        reporter = TrialReporter(trial, self.metric, earlier)
        try:
            result = self.train_fn(cfg, run_dir, progress=False, extra_hooks=[reporter])
            interrupted = result.get("interrupted")
            if interrupted and interrupted != PRUNED:  # Ctrl-C / SIGTERM: the trainer stopped cleanly
                raise KeyboardInterrupt(str(interrupted))
        except KeyboardInterrupt:
            # run these values again when the study resumes (a Ctrl-C'd trial ends FAIL)
            trial.set_user_attr("interrupted", True)
            trial.study.enqueue_trial(values, user_attrs={"retry_of": trial.number})
            raise
        if reporter.pruned:
            raise optuna.TrialPruned(f"{self.metric} {reporter.values[-1][1]:.4f} at epoch {reporter.values[-1][0]}")
        if not reporter.values:
            raise ConfigError(f"trial {trial.number}: no evaluation measured {self.metric} (see {run_dir})")
        pick = max if self.maximize else min
        return pick(v for _, v in reporter.values)


def continuation(trial: optuna.Trial) -> tuple[list[str], list[tuple[int, float]]]:
    """For a trial that runs a FAILed trial's values again (``retry_of``: Ctrl-C; ``retry_history``:
    Optuna's heartbeat retries of a killed one): the override that resumes the newest ``last.pt``
    among the failed runs it repeats, and that run's reports (epoch, value); nothing when none left
    a checkpoint."""
    trials = {t.number: t for t in trial.study.get_trials(deepcopy=False)}
    chain = _repeated(trials, trial.number, trial.user_attrs.get("retry_of"))
    runs = [(n, Path(str(trials[n].user_attrs.get("run_dir", ""))) / "checkpoints" / "last.pt") for n in chain]
    runs = [(n, last) for n, last in runs if last.is_file()]
    if not runs:
        return [], []
    # the run that got furthest (its last report; a continuation re-reports what it continued), newest on ties
    number, last = max(runs, key=lambda r: (max(trials[r[0]].intermediate_values, default=0), r[0]))
    failed = trials[number]
    trial.set_user_attr("resumed_from", str(last))
    log.info("trial %d continues trial %d from %s", trial.number, number, last)
    return [f"train.resume={format_value(str(last))}"], sorted(failed.intermediate_values.items())


def _repeated(trials: dict[int, optuna.trial.FrozenTrial], number: int, retry_of: int | None) -> set[int]:
    """Every earlier trial whose values trial ``number`` runs again, followed through retries of
    retries: ``retry_of`` (a Ctrl-C'd trial, enqueued again) and ``failed_trial``/``retry_history``
    (Optuna's heartbeat retry, which also copies the failed trial's user attrs, ``retry_of`` included)."""
    def links(t: optuna.trial.FrozenTrial | None, extra: int | None = None) -> set[int]:
        if t is None:
            return {extra} if extra is not None else set()
        found = {t.user_attrs.get("retry_of"), t.system_attrs.get("failed_trial"), extra}
        return {n for n in found | set(t.system_attrs.get("retry_history", [])) if n is not None and n != t.number}

    chain: set[int] = set()
    todo = links(trials.get(number), retry_of)
    while todo:
        n = todo.pop()
        if n not in chain and n in trials:
            chain.add(n)
            todo |= links(trials[n])
    return chain
