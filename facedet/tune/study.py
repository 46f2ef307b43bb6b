"""Running a study: storage, resume, the trial loop and the files written after each trial.

Resume: the study lives in its storage (``sqlite:///<study_dir>/study.db`` by default), so running
the same command again continues it. ``n_trials`` is the total wanted: trials that ended COMPLETE
or PRUNED are never run again. A trial whose process was killed stays RUNNING in the storage; its
heartbeat stops, and once it is older than ``grace_period`` the next trial start marks it FAIL and
queues its values again (Optuna's heartbeat + ``RetryHeartbeatStaleTrialCallback``; this is also
what makes several machines on one study safe: nobody fails a trial whose owner is alive).
A trial stopped by Ctrl-C ends FAIL and is queued again at once (``objective.py``).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import optuna
import sqlalchemy.exc
from optuna.trial import TrialState

from facedet.registry import ConfigError
from facedet.tune.compose import Composer, check_space
from facedet.tune.objective import Objective, TrainFn
from facedet.tune.outputs import write_best_experiment, write_plots, write_trials_csv
from facedet.tune.samplers import build_pruner, build_sampler
from facedet.tune.settings import SearchSettings
from facedet.tune.space import check_enqueued, parse_space

log = logging.getLogger(__name__)

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


@dataclass
class StudyOutcome:
    """What a run of the tune command did."""

    study: optuna.Study
    study_dir: Path
    groups: set[str]
    interrupted: bool = False  # Ctrl-C: resume by running the same command again
    best: optuna.trial.FrozenTrial | None = None
    best_files: list[Path] = field(default_factory=list)
    plots: list[Path] = field(default_factory=list)


def make_storage(url: str, settings: SearchSettings) -> optuna.storages.BaseStorage:
    """An RDB storage (SQLite, PostgreSQL, MySQL URLs) with heartbeats and retries of stale trials."""
    retry_cls = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None)  # optuna >= 4.9
    callback_arg = "heartbeat_stale_trial_callback" if retry_cls else "failed_trial_callback"
    try:
        with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna since 2.8
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            retry = (retry_cls or optuna.storages.RetryFailedTrialCallback)(max_retry=2)
            return optuna.storages.RDBStorage(url, heartbeat_interval=settings.heartbeat_interval,
                                              grace_period=settings.grace_period, **{callback_arg: retry})
    except (ImportError, ValueError, sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError) as e:
        raise ConfigError(f"hparams_search.storage '{url}': {e}") from e


def _finished(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def open_study(settings: SearchSettings, study_dir: Path) -> optuna.Study:
    """Create the study, or load it when it exists (resume); a study created with the other
    direction is a ConfigError."""
    storage = make_storage(settings.storage_url(study_dir), settings)
    try:  # a resumed seeded sampler must not propose the first trials' values again
        seen = len(optuna.load_study(study_name=settings.study_name, storage=storage).trials)
    except KeyError:
        seen = 0
    study = optuna.create_study(study_name=settings.study_name, storage=storage, load_if_exists=True,
                                direction=settings.direction, sampler=build_sampler(settings.sampler, seed_offset=seen),
                                pruner=build_pruner(settings.pruner))
    if study.direction.name.lower() != settings.direction:
        raise ConfigError(f"hparams_search.direction is {settings.direction} but the study '{settings.study_name}' "
                          f"in {settings.storage_url(study_dir)} was created to {study.direction.name.lower()}")
    return study


def run_study(settings: SearchSettings, *, composer: Composer, study_dir: Path, train_fn: TrainFn,
              best_paths: Sequence[Path] = (), catch: tuple[type[Exception], ...] = ()) -> StudyOutcome:
    """Check the search space, open (or resume) the study, run trials until ``n_trials`` have
    finished, and write ``trials.csv``, the best experiment file(s) and the pictures.

    ``catch``: errors that fail one trial but not the study (e.g. a diverged run); more than
    ``max_failures`` of them in one run of the command stop it. Ctrl-C ends the run cleanly
    (``outcome.interrupted``)."""
    params = parse_space(settings.params)
    for i, values in enumerate(settings.enqueue_trials):
        check_enqueued(params, values, where=f"hparams_search.enqueue_trials[{i}]")
    base = settings.base_overrides
    groups = check_space(composer, base, params)
    study_dir = Path(study_dir)
    study_dir.mkdir(parents=True, exist_ok=True)
    study = open_study(settings, study_dir)
    for i, values in enumerate(settings.enqueue_trials):  # once per study: a rerun finds them and skips
        study.enqueue_trial(values, user_attrs={"enqueued": i}, skip_if_exists=True)
    outcome = StudyOutcome(study, study_dir, groups)
    best_kwargs = dict(params=params, groups=groups, experiment=settings.experiment, study_name=settings.study_name,
                       metric=settings.metric)
    paths = [study_dir / "best_experiment.yaml", *best_paths]
    failures = 0

    def after_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        nonlocal failures
        write_trials_csv(study, study_dir / "trials.csv")
        write_best_experiment(study, paths, **best_kwargs)
        failures += trial.state == TrialState.FAIL
        if failures > settings.max_failures:
            log.error("%d trials failed in this run (hparams_search.max_failures=%d): stopping the study",
                      failures, settings.max_failures)
            study.stop()

    objective = Objective(composer=composer, base=base, params=params, study_dir=study_dir, metric=settings.metric,
                          direction=settings.direction, train_fn=train_fn)
    done = _finished(study)
    if done >= settings.n_trials:
        log.info("study '%s' already has %d finished trials (n_trials=%d): nothing to run", settings.study_name,
                 done, settings.n_trials)
    else:
        log.info("study '%s': %d of %d trials finished; running the rest", settings.study_name, done,
                 settings.n_trials)
        stop_at_total = optuna.study.MaxTrialsCallback(settings.n_trials, states=FINISHED)
        try:
            study.optimize(objective, callbacks=[after_trial, stop_at_total], catch=catch, gc_after_trial=True)
        except KeyboardInterrupt:
            outcome.interrupted = True
    write_trials_csv(study, study_dir / "trials.csv")
    outcome.best = write_best_experiment(study, paths, **best_kwargs)
    outcome.best_files = paths if outcome.best else []
    if settings.plots:
        outcome.plots = write_plots(study, study_dir / "plots", settings.metric)
    return outcome
