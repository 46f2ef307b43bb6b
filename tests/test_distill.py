"""Distillation (issue 16, option 6): ``loss_distill`` is 0 for a teacher equal to the student and
grows as they part; its gradient reaches the student only; the teacher stays out of the student's
state dict, EMA copy and checkpoints; a teacher of another layout or a file that is not a facedet
checkpoint is a ConfigError naming the file; off changes nothing; a tiny run trains and logs it."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from facedet.checkpoint import load_checkpoint, save_checkpoint
from facedet.engine.distill import attach_distillation
from facedet.engine.hook_base import HookBase
from facedet.losses.distill import DistillLoss, objectness_kl
from facedet.models import Detector, build_detector
from facedet.registry import ConfigError

SMALL = ["model=yolov4_nano"]


def _detector(compose_cfg, overrides=(), seed: int = 0) -> Detector:
    torch.manual_seed(seed)
    return build_detector(compose_cfg([*SMALL, *overrides]).model)


def _batch() -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    boxes = [torch.tensor([[10.0, 12.0, 30.0, 36.0]]), torch.tensor([[20.0, 20.0, 44.0, 50.0], [2.0, 2.0, 9.0, 10.0]])]
    targets = [{"boxes": b, "labels": torch.zeros(len(b), dtype=torch.int64), "ignore": torch.zeros(len(b), dtype=bool),
                "landmarks": torch.full((len(b), 5, 2), float("nan"))} for b in boxes]
    return images, targets


def _distilled(student: Detector, teacher: Detector, **weights: float) -> Detector:
    student.loss_fn = DistillLoss(base=student.loss_fn, teacher=teacher, teacher_decoder=teacher.head.decoding(),
                                  **weights)
    return student


def _save_training_checkpoint(compose_cfg, path: Path, overrides=(), seed: int = 0) -> Detector:
    """A file as facedet training writes it (the config it was trained with, and the weights)."""
    cfg = compose_cfg([*SMALL, *overrides])
    torch.manual_seed(seed)
    model = build_detector(cfg.model)
    save_checkpoint({"config": OmegaConf.to_container(cfg, resolve=True), "model": model.state_dict()}, path)
    return model


def test_objectness_term_is_bce_minus_the_teachers_entropy():
    s, t = torch.randn(50), torch.randn(50)
    p = t.sigmoid()
    entropy = -(p * p.log() + (1 - p) * (1 - p).log())
    expected = F.binary_cross_entropy_with_logits(s, p, reduction="none") - entropy
    torch.testing.assert_close(objectness_kl(s, t), expected, atol=1e-5, rtol=1e-5)
    assert torch.equal(objectness_kl(t, t), torch.zeros_like(t))  # exactly 0, not to rounding


def test_zero_for_a_copy_of_the_student_and_positive_once_perturbed(compose_cfg):
    student = _detector(compose_cfg).eval()  # eval: both use running BatchNorm statistics
    images, targets = _batch()
    plain = student.loss(images, targets)
    _distilled(student, copy.deepcopy(student))
    out = student.loss(images, targets)
    assert abs(float(out["loss_distill"].detach())) < 1e-6
    torch.testing.assert_close(out["loss"], plain["loss"])  # the detection terms are untouched
    assert float(out["loss_box"].detach()) == float(plain["loss_box"].detach())

    with torch.no_grad():
        for p in student.head.parameters():
            p.add_(0.05 * torch.randn_like(p))
    assert float(student.loss(images, targets)["loss_distill"].detach()) > 1e-3
    for weights in ({"obj_weight": 0.0}, {"box_weight": 0.0}):  # each term alone is > 0 too
        student.loss_fn = DistillLoss(base=student.loss_fn.base, teacher=student.loss_fn.teacher,
                                      teacher_decoder=student.loss_fn.teacher_decoder, **weights)
        assert float(student.loss(images, targets)["loss_distill"].detach()) > 1e-4


def test_gradients_reach_the_student_and_never_the_teacher(compose_cfg):
    student, teacher = _detector(compose_cfg, seed=0), _detector(compose_cfg, seed=1)
    _distilled(student, teacher, obj_weight=1.0, box_weight=1.0).train()
    images, targets = _batch()
    student.loss(images, targets)["loss_distill"].backward()
    grads = [p.grad for p in student.parameters() if p.requires_grad]
    assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)
    assert all(not p.requires_grad and p.grad is None for p in teacher.parameters())
    assert not teacher.training  # the student's train() does not reach it: BatchNorm statistics stay frozen


def test_teacher_is_not_in_the_state_dict_and_the_ema_copy_shares_it(compose_cfg):
    student = _detector(compose_cfg)
    keys = list(student.state_dict())
    teacher = _detector(compose_cfg, ["model=yolov4_csp_s"])
    _distilled(student, teacher)
    assert list(student.state_dict()) == keys
    assert not any(p is q for p in student.parameters() for q in teacher.parameters())
    ema = copy.deepcopy(student)  # what ModelEMA does
    assert ema.loss_fn.teacher is teacher and ema.loss_fn.base is not student.loss_fn.base
    assert ema.loss_fn.decoder.anchors is ema.head.anchors  # the copy's loss decodes with the copy's head
    assert student.anchor_iou == ema.anchor_iou  # the Detector's reads of its loss go to the detection loss


def test_sat_attack_does_not_run_the_teacher(compose_cfg):
    student, teacher = _detector(compose_cfg, seed=0), _detector(compose_cfg, seed=1)
    calls = []
    teacher.register_forward_hook(lambda *_: calls.append(1))
    _distilled(student, teacher)
    images, targets = _batch()
    out = student.loss(images, targets, distill=False)
    assert "loss_distill" not in out and not calls
    assert "loss_distill" in student.loss(images, targets) and len(calls) == 1


def test_attach_loads_the_checkpoint_and_off_changes_nothing(compose_cfg, tmp_path):
    path = tmp_path / "teacher.pt"
    saved = _save_training_checkpoint(compose_cfg, path, ["model=yolov4_csp_s"])
    student = _detector(compose_cfg)
    base = student.loss_fn
    assert attach_distillation(student, compose_cfg(SMALL).distill) is None and student.loss_fn is base
    node = compose_cfg([*SMALL, f"distill.teacher={path}", "distill.obj_weight=2"]).distill
    teacher = attach_distillation(student, node)
    assert isinstance(student.loss_fn, DistillLoss) and student.loss_fn.base is base
    assert student.loss_fn.obj_weight == 2.0 and student.loss_fn.teacher is teacher
    assert all(torch.equal(a, b) for a, b in zip(teacher.state_dict().values(), saved.state_dict().values(),
                                                  strict=True))
    assert "loss_distill" in student.loss(*_batch())


def test_layout_mismatch_and_bad_files_are_config_errors_naming_the_file(compose_cfg, tmp_path):
    tiny = tmp_path / "tiny_teacher.pt"  # yolov4_tiny: two levels (strides 16, 32), the student three
    _save_training_checkpoint(compose_cfg, tiny, ["model=yolov4_tiny"])
    node = {"teacher": str(tiny), "type": "yolo_distill"}
    with pytest.raises(ConfigError, match=r"tiny_teacher\.pt.*\(16, 3\), \(32, 3\)\].*\(8, 3\), \(16, 3\)"):
        attach_distillation(_detector(compose_cfg), node)

    text = tmp_path / "notes.txt"
    text.write_text("not a checkpoint\n")
    with pytest.raises(ConfigError, match=r"distill\.teacher=.*notes\.txt"):
        attach_distillation(_detector(compose_cfg), {"teacher": str(text), "type": "yolo_distill"})
    weights_only = tmp_path / "state.pt"
    torch.save(_detector(compose_cfg).state_dict(), weights_only)
    with pytest.raises(ConfigError, match=r"state\.pt is a state dict"):
        attach_distillation(_detector(compose_cfg), {"teacher": str(weights_only), "type": "yolo_distill"})

    same = tmp_path / "same.pt"
    _save_training_checkpoint(compose_cfg, same)
    with pytest.raises(ConfigError, match=r"distill.*box_weight"):
        attach_distillation(_detector(compose_cfg), {"teacher": str(same), "type": "yolo_distill",
                                                     "obj_weight": 0, "box_weight": 0})
    with pytest.raises(ConfigError, match=r"distill\.temperature"):
        attach_distillation(_detector(compose_cfg), {"teacher": str(same), "type": "yolo_distill",
                                                     "temperature": 2})


class _Losses(HookBase):
    def __init__(self) -> None:
        self.seen: list[dict[str, float]] = []

    def after_step(self) -> None:
        self.seen.append(dict(self.trainer.losses))


TINY = ["data.num_train=16", "data.num_val=4", "data.img_size=64", "train.epochs=1", "train.batch_size=8",
        "train.num_workers=0", "train.tensorboard=false", "eval.batch_size=8", "train.vis_images=0"]


def test_tiny_run_with_a_teacher_trains_and_logs_loss_distill(compose_cfg, tmp_path):
    from facedet.engine.run import run_training

    data = [f"data.root={tmp_path / 'data'}"]
    run_training(compose_cfg([*TINY, *data, "model=yolov4_csp_s", "model.backbone.width=0.25"]), tmp_path / "t",
                 progress=False)
    teacher = tmp_path / "t" / "checkpoints" / "last.pt"
    losses = _Losses()
    result = run_training(compose_cfg([*TINY, *data, f"distill.teacher={teacher}"]), tmp_path / "s",
                          progress=False, extra_hooks=[losses])
    assert result["steps"] == 2 and result["skipped_steps"] == 0
    assert all("loss_distill" in s and s["loss_distill"] > 0 for s in losses.seen)
    ckpt = load_checkpoint(tmp_path / "s" / "checkpoints" / "last.pt")
    assert set(ckpt["model"]) == set(ckpt["hooks"]["ema"]["module"]) == set(_detector(compose_cfg).state_dict())
