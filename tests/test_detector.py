"""The Detector as the one door: candidates feed predict, TTA and the ONNX wrapper; the loss is
built with the head's decoding (mismatches refused at build time); model configs written before the
IoU keys were renamed build the same detector; state-dict keys of every model are unchanged."""

from __future__ import annotations

import hashlib
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from facedet.anchors.report import check_training_anchors
from facedet.export.onnx import ExportWrapper
from facedet.inference.predictor import load_detector
from facedet.inference.tta import TTA, predict_with_tta
from facedet.models import Detector, build_detector
from facedet.models.model_config import anchor_iou_of, upgrade_model_config, upgrade_train_config
from facedet.registry import ConfigError

SMALL = ["model=yolov4_nano", "model.backbone.width=0.25"]

# sha256 (first 16 hex) of "key shape" lines of each model's state dict, from main before issue 13:
# checkpoints of every model must keep loading.
STATE_KEYS = {
    "yolov4": "4863e68ae78a0fab", "yolov3": "6d203f7ccd188b63", "yolov4_tiny": "20b7ffebb4933523",
    "yolov4_nano": "ac8af84c1e687c5e", "yolov4_csp_s": "9e7dbb75fc607f0f",
    "mobilenetv2_yolo": "805b1044c8aa675d", "mobilenetv3_yolo": "5b999b1c26ef0610",
}


def _small(compose_cfg, extra=()):
    torch.manual_seed(0)
    return build_detector(compose_cfg([*SMALL, *extra]).model)


def _images() -> torch.Tensor:
    return torch.rand(2, 3, 96, 128, generator=torch.Generator().manual_seed(1))


def _old_form(model_cfg) -> dict:
    """A model config as stored in checkpoints before issue 13 (iou_t, ignore_thresh, iou_thresh)."""
    old = OmegaConf.to_container(model_cfg, resolve=True)
    old["loss"]["assigner"]["iou_t"] = old["loss"]["assigner"].pop("anchor_iou")
    old["loss"]["ignore_thresh"] = old["loss"].pop("ignore_iou")
    old["postprocess"]["iou_thresh"] = old["postprocess"].pop("nms_iou")
    return old


@pytest.mark.parametrize("model", sorted(STATE_KEYS))
def test_state_dict_keys_unchanged(compose_cfg, model):
    det = build_detector(compose_cfg([f"model={model}"]).model)
    lines = "\n".join(f"{k} {tuple(v.shape)}" for k, v in det.state_dict().items())
    assert hashlib.sha256(lines.encode()).hexdigest()[:16] == STATE_KEYS[model]


def test_predict_tta_and_export_all_go_through_candidates(compose_cfg, monkeypatch):
    det = _small(compose_cfg).eval()
    x = _images()
    with torch.no_grad():
        boxes, scores, points = det.candidates(x)
        raw_boxes, raw_scores, raw_points = det.head.decode(det(x))
    cells = 12 * 16 + 6 * 8 + 3 * 4  # 96x128 at strides 8, 16, 32
    assert boxes.dtype == scores.dtype == torch.float32 and boxes.shape[:2] == scores.shape == (2, 3 * cells)
    assert points is None and raw_points is None and det.num_landmarks == 0
    assert torch.equal(boxes, raw_boxes.float()) and torch.equal(scores, raw_scores.float())
    calls = []
    original = Detector.candidates
    monkeypatch.setattr(Detector, "candidates", lambda self, im: calls.append(im.shape) or original(self, im))
    preds = det.predict(x)
    ref = det.postprocess(boxes, scores)
    assert all(torch.equal(p["boxes"], r["boxes"]) and torch.equal(p["scores"], r["scores"])
               for p, r in zip(preds, ref, strict=True))
    assert all("landmarks" not in p for p in preds)
    assert len(calls) == 1
    predict_with_tta(det, x, TTA.from_mode("flip"))
    assert len(calls) == 3  # one per pass
    with torch.no_grad():
        out_boxes, out_scores = ExportWrapper(det)(x)
    assert len(calls) == 4 and torch.equal(out_boxes, boxes) and torch.equal(out_scores, scores)
    assert det.strides == [8, 16, 32] and det.max_stride == 32 and det.anchors.shape == (3, 3, 2)


def test_loss_is_built_with_the_heads_decoding(compose_cfg):
    det = _small(compose_cfg)
    assert det.loss_fn.decoder.anchors is det.head.anchors and det.loss_fn.decoder.strides == det.strides
    # a weights file loading other anchors into the head: the loss assigns with them too
    with torch.no_grad():
        det.head.anchors.mul_(2)
    assert torch.equal(det.loss_fn.decoder.anchors, det.anchors)
    tg = [{"boxes": torch.tensor([[10.0, 12.0, 40.0, 50.0]])}, {"boxes": torch.zeros((0, 4))}]
    out = det.loss(_images(), tg)
    assert torch.isfinite(out["loss"]) and out["num_pos"] > 0


def test_loss_and_predictions_match_main_before_issue_13(compose_cfg):
    # values printed by main (before the one-door change) for this seed, model and batch
    det = _small(compose_cfg)
    tg = [{"boxes": torch.tensor([[10.0, 12.0, 40.0, 50.0], [60.0, 20.0, 90.0, 70.0]])}, {"boxes": torch.zeros((0, 4))}]
    out = det.train().loss(_images(), tg)
    assert float(out["loss"].detach()) == pytest.approx(0.4257657825946808, rel=1e-6) and float(out["num_pos"]) == 27.0
    preds = det.eval().predict(_images())
    assert float(preds[0]["boxes"].double().sum()) == pytest.approx(66291.93325471878, rel=1e-6)
    assert float(preds[1]["scores"].double().sum()) == pytest.approx(3.0203584041446447, rel=1e-6)


@pytest.mark.parametrize(("overrides", "keys"), [
    (["model.loss.assigner.near_cells=true", "model.head.scale_x_y=[1.05,1.05,1.05]"],
     ["model.loss", "near_cells", "scale_x_y"]),
    (["model.loss.balance=[1.0,1.0]"], ["model.loss", "balance has 2 weights", "3 levels"]),
])
def test_loss_options_that_do_not_fit_the_head_are_config_errors(compose_cfg, overrides, keys):
    with pytest.raises(ConfigError) as e:
        build_detector(compose_cfg([*SMALL, *overrides]).model)
    assert all(k in str(e.value) for k in keys)


def test_a_model_config_in_the_old_form_builds_the_same_detector(compose_cfg):
    new_cfg = compose_cfg(SMALL).model
    old = _old_form(new_cfg)
    assert upgrade_model_config(old) == OmegaConf.to_container(new_cfg, resolve=True)
    torch.manual_seed(0)
    a = build_detector(new_cfg).eval()
    torch.manual_seed(0)
    b = build_detector(old).eval()
    assert a.postprocess.nms_iou == b.postprocess.nms_iou == 0.6 and b.loss_fn.ignore_iou == 0.7
    assert b.anchor_iou == anchor_iou_of(old) == anchor_iou_of(new_cfg) == 0.213
    pa, pb = a.predict(_images()), b.predict(_images())
    assert all(torch.equal(x["boxes"], y["boxes"]) for x, y in zip(pa, pb, strict=True))
    both = dict(old, postprocess={**old["postprocess"], "nms_iou": 0.5})
    with pytest.raises(ConfigError, match="iou_thresh is the old name of model.postprocess.nms_iou"):
        build_detector(both)


def test_an_old_checkpoint_reevaluates_with_its_settings(compose_cfg, tmp_path):
    cfg = compose_cfg(SMALL)
    det = _small(compose_cfg).eval()
    old = OmegaConf.to_container(cfg, resolve=True)
    old["model"] = _old_form(cfg.model)
    old["model"]["postprocess"]["iou_thresh"] = 0.45  # a non-default value must survive the upgrade
    assert upgrade_train_config(old)["model"]["postprocess"]["nms_iou"] == 0.45
    torch.save({"config": old, "model": det.state_dict()}, tmp_path / "best.pt")
    loaded, train_cfg, _ = load_detector(tmp_path / "best.pt")
    assert loaded.postprocess.nms_iou == 0.45 and train_cfg.model.postprocess.nms_iou == 0.45
    det.postprocess.nms_iou = 0.45
    pa, pb = det.predict(_images()), loaded.predict(_images())
    assert all(torch.equal(x["boxes"], y["boxes"]) for x, y in zip(pa, pb, strict=True))
    # the eval/detect override is nms_iou too; the old name is refused, naming the known keys
    overridden, _, _ = load_detector(tmp_path / "best.pt", nms_iou=0.3)
    assert overridden.postprocess.nms_iou == 0.3
    with pytest.raises(ConfigError, match="iou_thresh.*nms_iou"):
        load_detector(tmp_path / "best.pt", iou_thresh=0.3)


def test_anchor_iou_of_a_config_defaults_to_the_assigners(compose_cfg):
    cfg = OmegaConf.to_container(compose_cfg(SMALL).model, resolve=True)
    del cfg["loss"]["assigner"]["anchor_iou"]
    assert anchor_iou_of(cfg) == 0.213
    cfg["loss"]["assigner"]["anchor_iou"] = 0.3
    assert anchor_iou_of(cfg) == 0.3


def test_training_anchor_check_takes_values(caplog):
    assert check_training_anchors(None, torch.ones(1, 1, 2), img_size=64, anchor_iou=0.2) is None
    rec = SimpleNamespace(orig_size=(100, 100), boxes=np.array([[0, 0, 20, 20.0]]), ignore=np.array([False]))
    rep = check_training_anchors([rec], torch.tensor([[[10.0, 10.0]]]), img_size=100, anchor_iou=0.3,
                                 data_name="mine")
    assert rep.anchor_iou == 0.3 and rep.n == 1 and rep.bpr == 0.0  # IoU 0.25 is not above 0.3
    assert "data=mine" in caplog.text
