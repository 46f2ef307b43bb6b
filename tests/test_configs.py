"""Every config composes with Hydra's compose API and builds; typos fail naming the key."""

from __future__ import annotations

import pytest
import torch
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ConfigKeyError

from facedet.models import Detector, build_detector
from facedet.registry import ConfigError

from .conftest import CONFIG_DIR

MODELS = sorted(p.stem for p in (CONFIG_DIR / "model").glob("*.yaml"))
DATA = sorted(p.stem for p in (CONFIG_DIR / "data").glob("*.yaml"))


def test_there_are_configs_to_test():
    zoo = {"yolov3", "yolov4", "yolov4_tiny", "yolov4_csp_s", "mobilenetv2_yolo", "mobilenetv3_yolo", "yolov4_nano"}
    assert zoo <= set(MODELS)
    assert {"synthetic", "facemask"} <= set(DATA)


@pytest.mark.parametrize("model", MODELS)
def test_every_model_config_builds_and_runs(compose_cfg, model):
    cfg = compose_cfg([f"model={model}"])
    det = build_detector(cfg.model)
    assert isinstance(det, Detector)
    strides = list(det.backbone.strides)
    assert strides == {"yolov4_tiny": [16, 32], "yolov4_nano_p2": [4, 8, 16, 32]}.get(model, [8, 16, 32])
    expected = [(1, 3, 128 // s, 128 // s, 5) for s in strides]  # the head promises (B, A, S/stride, S/stride, 5)
    det.eval()
    x = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        raws = det(x)
    assert [tuple(r.shape) for r in raws] == expected
    preds = det.predict(x)
    assert len(preds) == 1 and preds[0]["boxes"].shape[1] == 4
    # The loss on the same maps (what loss() computes after its forward pass): finite, with positives.
    face = {"boxes": torch.tensor([[20.0, 24.0, 60.0, 76.0]]), "labels": torch.zeros(1, dtype=torch.long)}
    out = det.loss_fn(raws, [face])
    assert torch.isfinite(out["loss"]) and out["loss"] > 0 and out["num_pos"] > 0


@pytest.mark.parametrize("data", DATA)
def test_every_data_config_composes(compose_cfg, data):
    cfg = compose_cfg([f"data={data}"])
    assert cfg.data.img_size % 32 == 0
    assert cfg.data.train.type and cfg.data.val.type
    assert cfg.name == f"{cfg.data.name}-{cfg.model.name}"


def test_eval_config_composes(compose_cfg):
    cfg = compose_cfg(["checkpoint=x.pt"], name="eval")
    assert cfg.checkpoint == "x.pt" and cfg.data.root is None and "val" not in cfg.data
    cfg = compose_cfg(["checkpoint=x.pt", "data=facemask"], name="eval")
    assert cfg.data.name == "facemask"


def test_overrides_reach_the_built_model(compose_cfg):
    small = build_detector(compose_cfg(["model.backbone.width=0.125"]).model)
    default = build_detector(compose_cfg().model)
    assert small.backbone.out_channels[-1] < default.backbone.out_channels[-1]


def test_typo_in_an_override_fails_naming_the_key(compose_cfg):
    with pytest.raises((ConfigCompositionException, ConfigKeyError)) as e:
        compose_cfg(["model.backbone.widht=0.5"])
    assert "widht" in str(e.value) + str(e.value.__cause__)


def test_typo_added_with_plus_is_caught_by_the_registry(compose_cfg):
    cfg = compose_cfg(["+model.backbone.widht=0.5"])
    with pytest.raises(ConfigError) as e:
        build_detector(cfg.model)
    assert "model.backbone.widht" in str(e.value) and "Did you mean 'width'" in str(e.value)


def test_unknown_component_name_lists_the_known_ones(compose_cfg):
    cfg = compose_cfg(["model.backbone.type=cspdarknet54"])
    with pytest.raises(ConfigError, match=r"Unknown backbone 'cspdarknet54'.*Did you mean 'cspdarknet'"):
        build_detector(cfg.model)


EXPERIMENTS = sorted(p.stem for p in (CONFIG_DIR / "experiment").glob("*.yaml"))


def test_there_are_experiments_to_test():
    assert {"facemask", "widerface_light", "widerface_cspdarknet53"} <= set(EXPERIMENTS)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_and_builds(compose_cfg, experiment):
    cfg = compose_cfg([f"experiment={experiment}"])
    default = compose_cfg()
    assert cfg.name != default.name  # an experiment names its runs
    assert cfg.data.img_size % 32 == 0 and cfg.train.epochs > 0
    det = build_detector(cfg.model)
    assert [len(a) for a in cfg.model.anchors] == [6, 6, 6]
    assert isinstance(det, Detector)


def test_widerface_recipes_have_their_advertised_size(compose_cfg):
    from facedet.models.info import model_info

    light = compose_cfg(["experiment=widerface_light"])
    info = model_info(build_detector(light.model), light.data.img_size, depth=0)
    assert light.data.img_size == 640 and 1.5 < info.gflops < 2.5  # the yolov5n-face budget (2.1 GFLOPs)
    large = compose_cfg(["experiment=widerface_cspdarknet53"])
    assert large.model.backbone.type == "cspdarknet" and large.model.backbone.width == 1.0
    assert "widerface" in large.eval.evaluators and large.data.name == "widerface"
