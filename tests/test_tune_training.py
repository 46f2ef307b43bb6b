"""facedet-tune with real training: one tiny trial (default suite) and the synthetic search of
configs/hparams_search/synthetic.yaml, six trials (slow)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

pytest.importorskip("optuna")

from facedet.tune import SearchSettings, hydra_composer, run_study  # noqa: E402
from facedet.tune.compose import check_experiment  # noqa: E402

from .conftest import CONFIG_DIR  # noqa: E402


@pytest.fixture(scope="module")
def composer():
    return hydra_composer(str(CONFIG_DIR))


def test_one_real_tiny_trial_trains_reports_and_writes_its_run_directory(tmp_path, composer):
    from facedet.engine.run import run_training

    tiny = [f"data.root={tmp_path / 'syn'}", "data.num_train=8", "data.num_val=2", "data.img_size=64",
            "train.epochs=2", "train.eval_interval=1", "train.num_workers=0", "train.tensorboard=false",
            "train.vis_images=0", "train.batch_size=8", "eval.pr_curve=false"]
    lr = {"optim.lr": {"type": "float", "low": 1e-3, "high": 2e-3}}
    s = SearchSettings(study_name="t", params=lr, n_trials=1, trial_overrides=tiny,
                       sampler={"type": "random", "seed": 0}, pruner={"type": "none"}, plots=False)
    out = run_study(s, composer=composer, study_dir=tmp_path / "study", train_fn=run_training)
    trial = out.study.trials[0]
    run_dir = Path(trial.user_attrs["run_dir"])
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert trial.state.name == "COMPLETE" and sorted(trial.intermediate_values) == [1, 2]
    assert trial.intermediate_values == {h["epoch"]: h["AP50"] for h in metrics["history"]}
    assert trial.value == max(h["AP50"] for h in metrics["history"])
    assert OmegaConf.load(run_dir / "config.yaml").optim.lr == trial.params["optim.lr"]
    assert (run_dir / "checkpoints" / "last.pt").is_file()


@pytest.mark.slow
def test_the_synthetic_search_runs_six_real_trials_and_prunes_with_what_training_measured(tmp_path, composer):
    import dataclasses

    from facedet.engine.run import run_training
    from facedet.tune import parse_settings

    s = parse_settings(OmegaConf.load(CONFIG_DIR / "hparams_search" / "synthetic.yaml"))
    own_data = [f"data.root={tmp_path / 'syn'}" if o.startswith("data.root=") else o for o in s.trial_overrides]
    s = dataclasses.replace(s, trial_overrides=own_data)
    configs = tmp_path / "configs"
    out = run_study(s, composer=composer, study_dir=tmp_path / "study", train_fn=run_training,
                    best_paths=[configs / "experiment" / "tuned" / "synthetic.yaml"])
    trials = out.study.trials
    epochs = int(next(o.split("=")[1] for o in s.trial_overrides if o.startswith("train.epochs=")))
    assert s.n_trials >= 6 and [t.state.name for t in trials].count("FAIL") == 0 and len(trials) == s.n_trials
    for t in trials:
        metrics = json.loads((Path(t.user_attrs["run_dir"]) / "metrics.json").read_text())
        history = {h["epoch"]: h["AP50"] for h in metrics["history"]}
        assert t.intermediate_values == history  # every evaluation was reported, none invented
        if t.state.name == "COMPLETE":
            assert t.value == max(history.values()) and max(history) == epochs
        else:  # PRUNED: stopped cleanly after the evaluation that was pruned, checkpoint saved
            assert max(history) < epochs and metrics["interrupted"] == "pruned"
            assert metrics["epochs_done"] == max(history)
            assert (Path(t.user_attrs["run_dir"]) / "checkpoints" / "last.pt").is_file()
    user = hydra_composer(str(CONFIG_DIR))
    check_experiment(lambda o: user([f"hydra.searchpath=[file://{configs}]", *o]), "tuned/synthetic",
                     out.best.params, out.groups)
    assert {p.name for p in out.plots} >= {"optimization_history.html", "parallel_coordinate.html"}
