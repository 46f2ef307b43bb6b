"""facedet-tune's plumbing (facedet/tune, docs/TUNING.md) with a fake training function: a 2-trial
study's files, resume after a kill and after Ctrl-C, pruning, search-space errors, the pictures;
the trainer's clean stop. Trials of real training: tests/test_tune_training.py."""

from __future__ import annotations

import csv
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from omegaconf import OmegaConf

optuna = pytest.importorskip("optuna")

from facedet.engine.hook_base import HookBase  # noqa: E402
from facedet.engine.trainer import Trainer  # noqa: E402
from facedet.registry import ConfigError  # noqa: E402
from facedet.tune import SearchSettings, hydra_composer, run_study  # noqa: E402
from facedet.tune.compose import check_experiment  # noqa: E402

from .conftest import CONFIG_DIR  # noqa: E402
from .test_trainer import Linear, Points  # noqa: E402

PARAMS = {"optim.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
          "aug": {"type": "categorical", "choices": ["default", "mosaic"]}}


def settings(**changes: Any) -> SearchSettings:
    base = dict(study_name="t", params=PARAMS, n_trials=2, sampler={"type": "random", "seed": 0},
                pruner={"type": "none"}, plots=False)
    return SearchSettings(**(base | changes))


class FakeTrainer:
    """What TrialReporter reads and calls on a Trainer."""

    def __init__(self) -> None:
        self.metrics: dict[str, Any] = {}
        self.epoch = 0
        self.stop_reason: str | None = None

    def request_stop(self, reason: str) -> None:
        self.stop_reason = reason


class FakeTrain:
    """Stands in for run_training: writes the run's config, 'evaluates' ``curve(call, epoch)`` after
    every epoch through the extra hooks and stops when one asks. ``interrupt_on`` / ``kill_on``: the
    call (0-based) that ends as Ctrl-C does (trainer stopped by SIGINT) / as a killed process."""

    def __init__(self, curve=lambda call, epoch: 0.1 * epoch, epochs: int = 3, metric: str = "AP50",
                 interrupt_on: int | None = None, kill_on: int | None = None,
                 stop_after: tuple[int, int] | None = None) -> None:
        self.curve, self.epochs, self.metric = curve, epochs, metric
        self.interrupt_on, self.kill_on = interrupt_on, kill_on
        self.stop_after = stop_after  # (call, epochs): that call ends as Ctrl-C after that many epochs
        self.runs: list[dict[str, Any]] = []

    def __call__(self, cfg, run_dir, *, progress, extra_hooks) -> dict[str, Any]:
        call = len(self.runs)
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True)
        (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
        run = {"run_dir": run_dir, "lr": float(cfg.optim.lr), "mosaic_p": float(cfg.aug.mosaic.p), "epochs": 0,
               "resume": cfg.train.get("resume"), "epochs_run": 0}
        start = int(Path(run["resume"]).read_text()) if run["resume"] else 0  # a fake last.pt holds its epoch
        self.runs.append(run)
        if call == self.kill_on:
            raise SimulatedKill  # leaves the trial RUNNING in the storage, as SIGKILL would
        if call == self.interrupt_on:
            return {"interrupted": "SIGINT"}
        trainer = FakeTrainer()
        for hook in extra_hooks:
            hook.trainer = trainer
        for epoch in range(start, self.epochs):
            trainer.epoch, run["epochs"] = epoch, epoch + 1
            run["epochs_run"] += 1
            trainer.metrics = {self.metric: self.curve(call, epoch + 1), "epoch": epoch + 1}
            for hook in extra_hooks:
                hook.after_epoch()
            (run_dir / "checkpoints").mkdir(exist_ok=True)
            (run_dir / "checkpoints" / "last.pt").write_text(str(epoch + 1))
            if trainer.stop_reason:
                return {"interrupted": trainer.stop_reason}
            if self.stop_after == (call, epoch + 1):
                return {"interrupted": "SIGINT"}
        return {"interrupted": None}


class SimulatedKill(BaseException):
    """Not an Exception: Optuna lets it through without finishing the trial."""


@pytest.fixture(scope="module")
def composer():
    return hydra_composer(str(CONFIG_DIR))


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_a_two_trial_study_writes_its_table_a_composing_best_experiment_and_pictures(tmp_path, composer):
    configs = tmp_path / "configs"  # a config folder of the user's, found through hydra.searchpath
    train = FakeTrain(curve=lambda call, epoch: [0.3, 0.6][call] * epoch / 3)
    out = run_study(settings(plots=True), composer=composer, study_dir=tmp_path / "study", train_fn=train,
                    best_paths=[configs / "experiment" / "tuned" / "t.yaml"])
    rows = read_csv(tmp_path / "study" / "trials.csv")
    assert [(r["number"], r["state"]) for r in rows] == [("0", "COMPLETE"), ("1", "COMPLETE")]
    assert [float(r["value"]) for r in rows] == pytest.approx([0.3, 0.6])  # the best of each run's evaluations
    for row, run in zip(rows, train.runs, strict=True):
        assert row["run_dir"] == str(tmp_path / "study" / f"trial_{row['number'].zfill(3)}") == str(run["run_dir"])
        params = json.loads(row["params"])
        assert run["lr"] == params["optim.lr"]  # the sampled value reached the train config
        assert run["mosaic_p"] == (1.0 if params["aug"] == "mosaic" else 0.0)  # and the group choice
    best = out.best
    assert best.number == 1 and out.groups == {"aug"}
    text = (tmp_path / "study" / "best_experiment.yaml").read_text()
    assert text.startswith("# @package _global_") and text == (configs / "experiment" / "tuned" / "t.yaml").read_text()
    user = hydra_composer(str(CONFIG_DIR))
    check_experiment(lambda o: user([f"hydra.searchpath=[file://{configs}]", *o]), "tuned/t", best.params, {"aug"})
    cfg = user([f"hydra.searchpath=[file://{configs}]", "experiment=tuned/t"])
    assert cfg.cfg.optim.lr == best.params["optim.lr"] and cfg.choices["aug"] == best.params["aug"]
    assert cfg.cfg.train.epochs == 8  # the recipe at full length, not the trials' overrides
    names = {p.name for p in out.plots}
    assert {"optimization_history.html", "parallel_coordinate.html", "intermediate_values.html"} <= names
    html = (tmp_path / "study" / "plots" / "optimization_history.html").read_text()
    assert 'src="plotly.min.js"' in html and "cdn.plot.ly" not in html  # opens offline
    assert (tmp_path / "study" / "plots" / "plotly.min.js").stat().st_size > 1_000_000


def test_a_rerun_resumes_without_repeating_finished_trials_and_retries_a_killed_one(tmp_path, composer):
    s = settings(n_trials=3, heartbeat_interval=1, grace_period=1)
    first = FakeTrain(kill_on=1)
    with pytest.raises(SimulatedKill):
        run_study(s, composer=composer, study_dir=tmp_path, train_fn=first)
    time.sleep(2.5)  # the killed trial's heartbeat goes stale
    second = FakeTrain()
    out = run_study(s, composer=composer, study_dir=tmp_path, train_fn=second)
    states = {t.number: t.state.name for t in out.study.trials}
    assert states == {0: "COMPLETE", 1: "FAIL", 2: "COMPLETE", 3: "COMPLETE"}
    assert len(second.runs) == 2  # trial 0 was not run again
    assert second.runs[0]["lr"] == first.runs[1]["lr"]  # the killed trial's values, run again first
    assert out.study.trials[2].system_attrs["failed_trial"] == 1
    again = FakeTrain()
    run_study(s, composer=composer, study_dir=tmp_path, train_fn=again)
    assert again.runs == []  # n_trials is the total: nothing left to do


def test_ctrl_c_ends_the_run_cleanly_and_the_interrupted_trial_runs_again_on_resume(tmp_path, composer):
    first = FakeTrain(interrupt_on=1)
    out = run_study(settings(), composer=composer, study_dir=tmp_path, train_fn=first)
    assert out.interrupted and [t.state.name for t in out.study.trials] == ["COMPLETE", "FAIL", "WAITING"]
    second = FakeTrain()
    out = run_study(settings(), composer=composer, study_dir=tmp_path, train_fn=second)
    assert not out.interrupted and len(second.runs) == 1 and second.runs[0]["lr"] == first.runs[1]["lr"]
    assert [r["state"] for r in read_csv(tmp_path / "trials.csv")] == ["COMPLETE", "FAIL", "COMPLETE"]


def test_the_pruner_stops_a_bad_trial_after_its_first_report(tmp_path, composer):
    train = FakeTrain(curve=lambda call, epoch: 0.9 if call == 0 else 0.1, epochs=5)
    s = settings(pruner={"type": "median", "n_startup_trials": 1, "n_warmup_steps": 0})
    out = run_study(s, composer=composer, study_dir=tmp_path, train_fn=train)
    good, bad = out.study.trials
    assert good.state.name == "COMPLETE" and good.intermediate_values == {e: 0.9 for e in range(1, 6)}
    assert bad.state.name == "PRUNED" and bad.intermediate_values == {1: 0.1}
    assert [r["epochs"] for r in train.runs] == [5, 1]  # the trainer was asked to stop after epoch 1


def test_minimize_keeps_the_lowest_evaluation(tmp_path, composer):
    train = FakeTrain(curve=lambda call, epoch: {1: 0.5, 2: 0.2, 3: 0.4}[epoch], metric="NME_box")
    out = run_study(settings(n_trials=1, metric="NME_box", direction="minimize"), composer=composer,
                    study_dir=tmp_path, train_fn=train)
    assert out.best.value == pytest.approx(0.2)


def test_a_diverged_trial_fails_alone_and_too_many_failures_stop_the_run(tmp_path, composer):
    from facedet.engine.trainer import TrainingDiverged

    class Diverging(FakeTrain):
        def __call__(self, cfg, run_dir, **kwargs):
            result = super().__call__(cfg, run_dir, **kwargs)
            if len(self.runs) == 1:
                raise TrainingDiverged("loss is NaN")
            return result

    out = run_study(settings(), composer=composer, study_dir=tmp_path / "a", train_fn=Diverging(),
                    catch=(TrainingDiverged,))
    assert [t.state.name for t in out.study.trials] == ["FAIL", "COMPLETE", "COMPLETE"]
    out = run_study(settings(max_failures=0), composer=composer, study_dir=tmp_path / "b", train_fn=Diverging(),
                    catch=(TrainingDiverged,))
    assert [t.state.name for t in out.study.trials] == ["FAIL"] and not out.interrupted


@pytest.mark.parametrize("params, words", [
    ({"optim.lrr": {"type": "float", "low": 1e-4, "high": 1e-2}},
     ["hparams_search.params.optim.lrr", "has no key 'optim.lrr'", "Did you mean 'optim.lr'"]),
    ({"optim.lr": {"type": "float", "low": 1e-4, "hihg": 1e-2}}, ["hparams_search.params.optim.lr", "'hihg'"]),
    ({"optim.lr": {"type": "floot", "low": 1e-4, "high": 1e-2}}, ["hparams_search.params.optim.lr.type", "'float'"]),
    ({"aug": {"type": "categorical", "choices": ["default", "mosiac"]}}, ["hparams_search.params", "aug/mosiac"]),
    ({"aug": {"type": "float", "low": 0, "high": 1}}, ["hparams_search.params.aug", "config group"]),
    ({"optim.lr": {"type": "float", "low": -1.0, "high": 1e-2}}, ["hparams_search.params", "optim.lr"]),
])
def test_a_bad_search_space_is_a_config_error_naming_the_key_before_any_trial(tmp_path, composer, params, words):
    train = FakeTrain()
    with pytest.raises(ConfigError) as e:
        run_study(settings(params=params), composer=composer, study_dir=tmp_path, train_fn=train)
    assert all(w in str(e.value) for w in words), str(e.value)
    assert train.runs == []


def test_a_metric_the_evaluation_does_not_produce_is_an_error_after_the_first_evaluation(tmp_path, composer):
    train = FakeTrain(metric="AP")
    with pytest.raises(ConfigError, match="hparams_search.metric 'AP50' is not among the evaluation metrics: AP"):
        run_study(settings(), composer=composer, study_dir=tmp_path, train_fn=train)
    assert len(train.runs) == 1


@pytest.mark.parametrize("sampler", [{"type": "nsga2", "seed": 0, "population_size": 2}, {"type": "tpe", "seed": 0,
                                     "n_startup_trials": 2}, {"type": "random", "seed": 0}])
def test_each_sampler_drives_a_study_within_the_space(tmp_path, composer, sampler):
    train = FakeTrain(curve=lambda call, epoch: 0.1 * call)
    out = run_study(settings(n_trials=5, sampler=sampler), composer=composer, study_dir=tmp_path, train_fn=train)
    assert [t.state.name for t in out.study.trials] == ["COMPLETE"] * 5
    assert all(1e-4 <= r["lr"] <= 1e-2 and r["mosaic_p"] in (0.0, 1.0) for r in train.runs)


def test_samplers_and_pruners_by_name_with_clear_errors():
    from facedet.tune import build_pruner, build_sampler

    assert isinstance(build_sampler({"type": "nsga2", "seed": 1, "population_size": 4}), optuna.samplers.NSGAIISampler)
    assert isinstance(build_pruner("sha"), optuna.pruners.SuccessiveHalvingPruner)
    with pytest.raises(ConfigError, match=r"hparams_search.sampler.type .* Did you mean 'nsga2'"):
        build_sampler({"type": "nsga"})
    with pytest.raises(ConfigError, match=r"hparams_search.pruner.n_startup .* Did you mean 'n_startup_trials'"):
        build_pruner({"type": "median", "n_startup": 2})
    if "cmaes" not in sys.modules and not __import__("importlib.util").util.find_spec("cmaes"):
        with pytest.raises(ConfigError, match="needs the 'cmaes' package"):
            build_sampler({"type": "cmaes"})


def test_a_hook_can_stop_the_trainer_cleanly_after_an_epoch():
    class StopAfterFirst(HookBase):
        def after_epoch(self) -> None:
            self.trainer.request_stop("pruned")

    class Count(HookBase):
        priority = 900  # after the stopping hook: the epoch's remaining hooks still run
        epochs = 0

        def after_epoch(self) -> None:
            Count.epochs += 1

    model = Linear()
    trainer = Trainer(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.01),
                      train_loader=torch.utils.data.DataLoader(Points(4), batch_size=2, collate_fn=_collate()),
                      device=torch.device("cpu"), max_epochs=4, base_lr=0.01, lr_factor=lambda s: 1.0,
                      hooks=[StopAfterFirst(), Count()], handle_signals=False)
    trainer.train()
    assert trainer.interrupted == "pruned" and trainer.epoch == 0 and Count.epochs == 1 and trainer.step == 2


def _collate():
    from facedet.data import collate

    return collate


@pytest.mark.parametrize("name", sorted(p.stem for p in (CONFIG_DIR / "hparams_search").glob("*.yaml")))
def test_every_search_config_parses_and_its_space_composes(name, composer):
    from facedet.tune import check_space, parse_settings, parse_space

    s = parse_settings(OmegaConf.load(CONFIG_DIR / "hparams_search" / f"{name}.yaml"))
    assert s.study_name == name
    params = parse_space(s.params)
    groups = check_space(composer, s.base_overrides, params)
    assert groups <= {"aug"} and len(params) >= 3
    if s.best_experiment:
        assert s.best_experiment == f"experiment/tuned/{name}.yaml"
    from facedet.evaluation.coco import COCOEvaluator
    from facedet.evaluation.landmarks import LandmarkEvaluator

    assert s.metric in COCOEvaluator.metric_names + LandmarkEvaluator.metric_names  # a key metrics.json holds
    assert (s.direction == "minimize") == s.metric.startswith("NME")


def test_the_tool_reports_a_bad_setting_in_one_line_with_status_2(tmp_path, capsys, monkeypatch):
    from facedet.cli import tune

    monkeypatch.setattr(sys, "argv", ["facedet-tune"])  # Hydra reads sys.argv: restored afterwards
    with pytest.raises(SystemExit) as e:
        tune.main(["hparams_search=synthetic", "hparams_search.sampler.type=nsga3", f"hydra.run.dir={tmp_path}"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "Traceback" not in err
    assert "facedet: error: hparams_search.sampler.type must be one of" in err and "Did you mean 'nsga2'" in err



def test_enqueued_values_run_first_once_per_study_and_must_lie_in_the_space(tmp_path, composer):
    recipe = {"optim.lr": 0.002, "aug": "mosaic"}
    train = FakeTrain()
    out = run_study(settings(enqueue_trials=[recipe]), composer=composer, study_dir=tmp_path, train_fn=train)
    assert out.study.trials[0].params == recipe and out.study.trials[0].user_attrs["enqueued"] == 0
    assert train.runs[0]["lr"] == 0.002 and train.runs[0]["mosaic_p"] == 1.0  # the values reached the config
    assert out.study.trials[1].params != recipe  # the sampler's own proposal next
    again = run_study(settings(enqueue_trials=[recipe], n_trials=3), composer=composer, study_dir=tmp_path,
                      train_fn=FakeTrain())
    assert sum(t.params == recipe for t in again.study.trials) == 1  # a resume does not enqueue it again
    for bad, words in (({"optim.lrr": 0.002}, "enqueue_trials[0].optim.lrr is not a searched key"),
                       ({"optim.lr": 0.5}, "outside the search space"),
                       ({"aug": "all"}, "one of ['default', 'mosaic']")):
        with pytest.raises(ConfigError, match=re.escape(words)):
            run_study(settings(enqueue_trials=[bad]), composer=composer, study_dir=tmp_path / "bad",
                      train_fn=FakeTrain())


def test_a_trial_stopped_after_some_epochs_is_continued_from_its_last_checkpoint(tmp_path, composer):
    first = FakeTrain(stop_after=(1, 2))  # trial 1: Ctrl-C after 2 of its 3 epochs
    out = run_study(settings(), composer=composer, study_dir=tmp_path, train_fn=first)
    assert out.interrupted and out.study.trials[1].intermediate_values == {1: 0.1, 2: 0.2}
    second = FakeTrain(curve=lambda call, epoch: 0.05)  # a continued run's own evaluations (epoch 3 only)
    out = run_study(settings(), composer=composer, study_dir=tmp_path, train_fn=second)
    run = second.runs[0]
    assert run["resume"] == str(tmp_path / "trial_001" / "checkpoints" / "last.pt") and run["epochs_run"] == 1
    assert run["run_dir"] == tmp_path / "trial_002" and run["lr"] == first.runs[1]["lr"]
    trial = out.study.trials[2]
    assert trial.intermediate_values == {1: 0.1, 2: 0.2, 3: 0.05}  # the failed run's reports, then its own
    assert trial.value == pytest.approx(0.2) and trial.user_attrs["resumed_from"] == run["resume"]
    assert "train.resume" not in (tmp_path / "best_experiment.yaml").read_text()  # the recipe, not the resume


def test_a_continued_trial_killed_again_is_continued_from_the_newest_checkpoint(tmp_path):
    # the real chain: 0 Ctrl-C'd (epoch 2); 1 continued it (retry_of 0) to epoch 5 and was killed;
    # Optuna's heartbeat retry 2 inherits 1's user attrs (retry_of 0 too) and has retry_history [1]
    from facedet.tune.objective import continuation
    study = optuna.create_study(direction="maximize")
    dist = {"x": optuna.distributions.FloatDistribution(0, 1)}
    for number, epoch in ((0, 2), (1, 5)):
        (tmp_path / f"t{number}" / "checkpoints").mkdir(parents=True)
        (tmp_path / f"t{number}" / "checkpoints" / "last.pt").write_text(str(epoch))
        attrs = {"run_dir": str(tmp_path / f"t{number}"), **({"retry_of": 0} if number else {})}
        study.add_trial(optuna.create_trial(state=optuna.trial.TrialState.FAIL, params={"x": 0.5},
                                            distributions=dist, user_attrs=attrs,
                                            intermediate_values={e: 0.1 * e for e in range(1, epoch + 1)}))
    study.add_trial(optuna.create_trial(state=optuna.trial.TrialState.WAITING, params={"x": 0.5},
                                        distributions=dist, user_attrs={"retry_of": 0, "run_dir": "x"},
                                        system_attrs={"failed_trial": 1, "retry_history": [1]}))
    trial = study.ask()
    assert trial.number == 2
    overrides, reports = continuation(trial)
    assert overrides == [f"train.resume={tmp_path / 't1' / 'checkpoints' / 'last.pt'}"]
    assert [e for e, _ in reports] == [1, 2, 3, 4, 5]
    (tmp_path / "t1" / "checkpoints" / "last.pt").unlink()  # killed before its first save: the older one
    assert continuation(trial)[0] == [f"train.resume={tmp_path / 't0' / 'checkpoints' / 'last.pt'}"]


def test_a_retry_of_a_retry_finds_the_run_that_got_furthest_through_the_whole_chain(tmp_path):
    # 1 continued 0 to epoch 6 and was killed; 2 (heartbeat retry of 1, inheriting retry_of 0) wrongly
    # restarted from 0's epoch 1 and was Ctrl-C'd at epoch 2; 3 (Ctrl-C retry: retry_of 2 only) must
    # follow 2 back to 1, the furthest run, not take the newest
    from facedet.tune.objective import continuation
    study = optuna.create_study(direction="maximize")
    dist = {"x": optuna.distributions.FloatDistribution(0, 1)}
    links = {0: ({}, {}), 1: ({"retry_of": 0}, {}), 2: ({"retry_of": 0}, {"failed_trial": 1, "retry_history": [1]})}
    for number, epoch in ((0, 1), (1, 6), (2, 2)):
        (tmp_path / f"t{number}" / "checkpoints").mkdir(parents=True)
        (tmp_path / f"t{number}" / "checkpoints" / "last.pt").write_text(str(epoch))
        user, system = links[number]
        study.add_trial(optuna.create_trial(state=optuna.trial.TrialState.FAIL, params={"x": 0.5},
                                            distributions=dist, user_attrs={"run_dir": str(tmp_path / f"t{number}"),
                                                                            **user}, system_attrs=system,
                                            intermediate_values={e: 0.1 * e for e in range(1, epoch + 1)}))
    study.enqueue_trial({"x": 0.5}, user_attrs={"retry_of": 2})
    trial = study.ask()
    overrides, reports = continuation(trial)
    assert overrides == [f"train.resume={tmp_path / 't1' / 'checkpoints' / 'last.pt'}"] and len(reports) == 6
