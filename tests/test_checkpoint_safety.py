"""Checkpoint and resume safety: train.resume=true/auto takes only this run's own checkpoint (or an
earlier compatible run of the same name, never a sweep sibling); a best metric of other data is not
carried over; files that are no checkpoint are named for what they are; a full disk or a killed save
leaves the previous checkpoint loadable; export checks its output before working. The kill-and-resume
part of bench/reliability_checkpoints.py runs as a slow test."""

from __future__ import annotations

import errno
import json
import logging
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

import facedet.checkpoint as ck
from facedet.checkpoint import CheckpointError, load_checkpoint, remove_stale_temps, save_checkpoint
from facedet.engine.resume import find_resume_checkpoint
from facedet.engine.run import run_training
from facedet.inference.predictor import load_detector
from facedet.models import build_detector
from facedet.models.weights import load_weights
from facedet.registry import ConfigError

from .checkpoint_utils import TINY, tiny_run
from .conftest import ROOT, compose_config

NAME = "synthetic-yolov4_nano"


def _config(lr: float = 0.002, epochs: int = 3) -> dict:
    return {"name": NAME, "optim": {"lr": lr}, "train": {"epochs": epochs, "resume": False}, "data": {"name": "s"}}


def _fake_run(run_dir: Path, config: dict, mtime: float) -> Path:
    path = run_dir / "checkpoints" / "last.pt"
    save_checkpoint({"model": {}, "optimizer": {}, "config": config, "step": 1}, path)
    os.utime(path, (mtime, mtime))
    return path


# ------------------------------------------------------------------ which checkpoint resume=true/auto takes
def test_resume_auto_prefers_its_own_checkpoint_then_a_compatible_run_of_the_same_name(tmp_path, caplog):
    runs = tmp_path / NAME
    old = _fake_run(runs / "t1", _config(epochs=2), 1000)  # other epochs: resume-compatible
    _fake_run(runs / "t2", _config(lr=0.02), 2000)  # newer, but another learning rate
    with caplog.at_level(logging.INFO, logger="facedet"):
        assert find_resume_checkpoint("auto", runs / "t3", name=NAME, config=_config()) == old
    assert "has another config: optim.lr: 0.02 -> 0.002" not in caplog.text  # t1 was found: nothing to excuse
    own = _fake_run(runs / "t3", _config(), 500)
    assert find_resume_checkpoint(True, runs / "t3", name=NAME, config=_config()) == own


def test_resume_never_takes_an_incompatible_or_unrelated_checkpoint(tmp_path, caplog):
    runs = tmp_path / NAME
    _fake_run(runs / "t1", _config(lr=0.02), 1000)
    with caplog.at_level(logging.INFO, logger="facedet"):
        assert find_resume_checkpoint("auto", runs / "t2", name=NAME, config=_config()) is None
    assert "has another config: optim.lr: 0.02 -> 0.002" in caplog.text and "starting afresh" in caplog.text
    with pytest.raises(CheckpointError, match=r"no checkpoints/last.pt of this run .*optim.lr: 0.02 -> 0.002"):
        find_resume_checkpoint(True, runs / "t2", name=NAME, config=_config())
    # hydra.run.dir=Y name=never_ran: runs of another name beside Y are not candidates
    _fake_run(tmp_path / "sibling", _config(), 3000)
    assert find_resume_checkpoint("auto", tmp_path / "Y", name="never_ran", config=_config()) is None
    # a sweep job (name=None): its sibling jobs are never candidates, even with the same config
    _fake_run(tmp_path / "sweep" / NAME / "0", _config(), 4000)
    assert find_resume_checkpoint("auto", tmp_path / "sweep" / NAME / "1", name=None, config=_config()) is None
    # a state dict where last.pt should be: passed over, saying why
    torch.save({"w": torch.zeros(1)}, runs / "t1" / "checkpoints" / "last.pt")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="facedet"):
        assert find_resume_checkpoint("auto", runs / "t9", name=NAME, config=_config()) is None
    assert "holds no config" in caplog.text


def test_a_sweep_job_does_not_resume_a_sibling_job(tmp_path):
    """The reported case: ``-m ... train.resume=auto``; the jobs differ only in a resume-compatible key
    and the sweep folder is named like the run, so only the sweep itself tells them apart."""
    data = tmp_path / "data"
    args = [*TINY, f"data.root={data}", "train.resume=auto", "train.log_interval=10,11",
            f"hydra.sweep.dir={tmp_path / NAME}"]
    proc = subprocess.run([sys.executable, "tools/train.py", "-m", *args], cwd=ROOT, capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert proc.returncode == 0, proc.stderr[-2000:]
    job1 = json.loads((tmp_path / NAME / "1" / "metrics.json").read_text())
    assert job1["resumed_from"] is None and job1["steps"] == 1  # trained itself
    assert "resuming" not in (tmp_path / NAME / "1" / "train.log").read_text()


# ------------------------------------------------------------------ the best of other data is not carried
@pytest.fixture(scope="module")
def famous(tmp_path_factory) -> tuple[Path, Path]:
    """(a 1-step checkpoint claiming a best coco_ap50 of 0.8765, as a facemask run's would; its data root)."""
    run = tiny_run(tmp_path_factory)
    ckpt = load_checkpoint(run / "checkpoints" / "last.pt")
    ckpt["best_metric"] = 0.8765
    ckpt["best_metrics"] = {"AP50": 0.8765, "AP": 0.5, "coco_ap50": 0.8765, "epoch": 1}
    path = tmp_path_factory.mktemp("famous") / "last.pt"
    torch.save(ckpt, path)
    return path, run.parent / "synthetic"


def test_resuming_onto_other_data_resets_the_best_and_says_why(famous, tmp_path, caplog):
    path, data = famous
    base = [*TINY, f"data.root={data}", "train.epochs=2", f"train.resume={path}"]
    same = run_training(compose_config(base), tmp_path / "same", progress=False)
    assert same["best"]["coco_ap50"] == 0.8765  # same data: the old best stands (2 steps do not beat it)
    with caplog.at_level(logging.INFO, logger="facedet"):
        other = run_training(compose_config([*base, "data.num_val=4"]), tmp_path / "other", progress=False)
    assert other["best"]["coco_ap50"] != 0.8765 and other["best"]["epoch"] == 2
    assert "does not apply here" in caplog.text and "data.num_val: 6 -> 4" in caplog.text
    assert [h["epoch"] for h in other["history"]] == [2]  # the old data's evaluations are not in this history
    best = load_checkpoint(tmp_path / "other" / "checkpoints" / "best.pt")  # this run's, not a copy of the old one
    assert best["best_metric"] == other["best"]["coco_ap50"] != 0.8765


def test_fine_tuning_from_model_weights_starts_with_no_best(famous, tmp_path):
    path, data = famous
    cfg = compose_config([*TINY, f"data.root={data}", "data.num_val=4", f"model.weights={path}"])
    result = run_training(cfg, tmp_path / "ft", progress=False)
    assert result["best"]["coco_ap50"] != 0.8765 and result["resumed_from"] is None


# ------------------------------------------------------------------ files that are no checkpoint
class _RunsCode:
    def __reduce__(self):
        return (print, ("this would run at load time",))


def _bad_files(folder: Path, good: Path) -> dict[str, tuple[Path, str]]:
    data = good.read_bytes()
    files = {
        "truncated": (data[: len(data) // 2], "truncated zip (incomplete download or write)"),
        "lfs": (b"version https://git-lfs.github.com/spec/v1\noid sha256:4d7a\nsize 24889786\n",
                "a git-LFS pointer, not a checkpoint"),
        "empty": (b"", "empty file"),
        "text": (b"epoch 3 loss 1.234\n", "a text file, not a checkpoint (it starts 'epoch 3 loss 1.234')"),
        "html": (b"<!DOCTYPE html>\n<html><title>404</title></html>", "an HTML page"),
        "random": (bytes(range(7, 256)) * 16, "not a PyTorch file (random bytes?)"),
    }
    out = {}
    for name, (content, message) in files.items():
        (folder / f"{name}.pt").write_bytes(content)
        out[name] = (folder / f"{name}.pt", message)
    with open(folder / "code.pt", "wb") as f:
        torch.save({"model": {}, "payload": _RunsCode()}, f, pickle_module=pickle)
    out["code"] = (folder / "code.pt", "Refusing to load")
    return out


def test_each_kind_of_bad_file_is_named_by_every_loader(tmp_path_factory, tmp_path):
    good = tiny_run(tmp_path_factory) / "checkpoints" / "last.pt"
    model = build_detector(compose_config(TINY).model)
    for name, (path, message) in _bad_files(tmp_path, good).items():
        for load in (load_checkpoint, load_detector, lambda p: load_weights(model, p)):
            with pytest.raises(CheckpointError) as e:
                load(path)
            assert message in str(e.value) and str(path) in str(e.value), (name, str(e.value))
    lfs = tmp_path / "yolov4.conv.137"  # Darknet by name (not only by the .weights suffix)
    lfs.write_bytes((tmp_path / "lfs.pt").read_bytes())
    with pytest.raises(CheckpointError, match="git-LFS pointer"):
        load_weights(model, lfs)


def test_a_state_dict_given_as_a_training_checkpoint_says_use_model_weights(tmp_path_factory, tmp_path):
    run = tiny_run(tmp_path_factory)
    state = tmp_path / "weights.pt"
    torch.save(load_checkpoint(run / "checkpoints" / "last.pt")["model"], state)
    with pytest.raises(CheckpointError, match=r"is a state dict .*checkpoint= cannot use it: use model.weights="):
        load_detector(state)
    cfg = compose_config([*TINY, f"data.root={run.parent / 'synthetic'}", f"train.resume={state}"])
    with pytest.raises(CheckpointError, match=r"is a state dict .*train.resume cannot use it: use model.weights="):
        run_training(cfg, tmp_path / "run", progress=False)
    assert load_weights(build_detector(cfg.model), state).matched  # where a state dict belongs


def test_eval_of_a_bad_file_is_one_line_not_a_traceback(tmp_path):
    (tmp_path / "lfs.pt").write_text("version https://git-lfs.github.com/spec/v1\noid sha256:4d7a\nsize 9\n")
    proc = subprocess.run([sys.executable, "tools/eval.py", f"checkpoint={tmp_path / 'lfs.pt'}",
                           f"hydra.run.dir={tmp_path / 'out'}"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        f"facedet: error: Cannot load {tmp_path / 'lfs.pt'}: a git-LFS pointer, not a checkpoint (fetch the file "
        "itself: git lfs pull)")


# ------------------------------------------------------------------ writes
def test_disk_full_mid_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint({"step": 1, "w": torch.arange(3.0)}, path)

    def enospc(state, f):
        f.write(b"PK\x03\x04" + bytes(4096))  # half a file on disk, then the disk is full
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(ck, "_write", enospc)
    with pytest.raises(CheckpointError, match=rf"Could not write checkpoint {path}: No space left on device; the "
                                              r"previous last.pt is intact"):
        save_checkpoint({"step": 2, "w": torch.zeros(3)}, path)
    assert load_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # the half-written temporary file is gone


def test_a_save_killed_mid_write_leaves_a_temp_that_the_next_run_removes(tmp_path_factory, tmp_path, caplog):
    run = tiny_run(tmp_path_factory)
    ckpts = tmp_path / "run" / "checkpoints"
    ckpts.mkdir(parents=True)
    good = (run / "checkpoints" / "last.pt").read_bytes()
    stray = ckpts / ".last.pt.k1ll3d.tmp"  # what save_checkpoint's temporary file looks like after SIGKILL
    stray.write_bytes(good[: len(good) // 3])
    (ckpts / "notes.tmp").write_text("not ours")
    with pytest.raises(CheckpointError, match="truncated zip"):
        load_checkpoint(stray)  # never loadable as if it were a checkpoint
    with caplog.at_level(logging.INFO, logger="facedet"):
        run_training(compose_config([*TINY, f"data.root={run.parent / 'synthetic'}", "train.resume=auto"]),
                     tmp_path / "run", progress=False)
    assert not stray.exists() and (ckpts / "notes.tmp").exists()
    assert "removed 1 temporary file(s) of a checkpoint write that did not finish" in caplog.text
    assert remove_stale_temps(ckpts) == []


def test_export_checks_its_output_before_the_work(tmp_path):
    from facedet.cli.export import export

    (tmp_path / "afile").write_text("x")
    out = tmp_path / "afile" / "model.onnx"
    cfg = compose_config([f"checkpoint={tmp_path / 'missing.pt'}", f"out={out}"], name="export")
    with pytest.raises(ConfigError, match=rf"Cannot write the ONNX model to {out}: {tmp_path / 'afile'} is a file"):
        export(cfg, tmp_path / "run")  # the checkpoint (missing) was not even read yet


# ------------------------------------------------------------------ the reliability bench, part (a)
@pytest.mark.slow
def test_sigkill_during_an_evaluation_and_a_checkpoint_write_then_resume_is_bit_identical(tmp_path):
    from bench.reliability_checkpoints import kill_and_resume, plan_kills

    plan = plan_kills(2, seed=3, evals=4, writes=12)
    assert sorted(p.split(":")[0] for p in plan) == ["eval", "write"]
    results = kill_and_resume(tmp_path, plan=plan)
    assert [r["ok"] for r in results] == [True, True], results
    assert any("refused (truncated zip" in r["left"] for r in results)  # the cut write was there, and refused


def test_config_dict_roundtrip_for_resume_search(tmp_path):
    """The config find_resume_checkpoint compares is the resolved run config, as run_training saves it."""
    cfg = compose_config([*TINY, f"data.root={tmp_path}"])
    config = OmegaConf.to_container(cfg, resolve=True)
    _fake_run(tmp_path / NAME / "a", config, 1000)
    resumed = OmegaConf.to_container(compose_config([*TINY, f"data.root={tmp_path}", "train.resume=auto",
                                                     "train.epochs=5"]), resolve=True)
    assert find_resume_checkpoint("auto", tmp_path / NAME / "b", name=str(cfg.name), config=resumed) == \
        tmp_path / NAME / "a" / "checkpoints" / "last.pt"
