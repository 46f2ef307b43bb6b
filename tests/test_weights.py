"""Weights from a user's local file: PyTorch state dicts with a load report (strict or partial), and
Darknet .weights import in the darknet53.conv.74 / yolov4.conv.137 layouts, tested by writing a
model's weights in Darknet's format and reading them into a fresh model."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import torch
from torch import nn
from torchvision.models import mobilenet_v2

from facedet.checkpoint import CheckpointError
from facedet.models import build_detector
from facedet.models.backbones import CSPDarknet, Darknet53
from facedet.models.darknet_weights import darknet_layout, load_darknet_weights, save_darknet_weights
from facedet.models.layers import ConvBNAct
from facedet.models.necks import PAN
from facedet.models.weights import load_weights
from facedet.registry import ConfigError

NANO = ["model.backbone.width=0.125", "model.neck.width=0.25"]  # the smallest model: fast to build


def _randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every weight and BN statistic distinct values, as training would: signed kernels, shifts
    and means, positive variances (a fresh model's BN statistics are all 0 and 1)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) + 0.1)
            elif t.is_floating_point():
                t.copy_(torch.randn(t.shape, generator=g))
    return model


def _same(a: nn.Module, b: nn.Module, prefix: str = "") -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return all(torch.equal(sa[k], sb[k]) for k in sa if k.startswith(prefix) and "num_batches" not in k)


def test_state_dict_round_trip(compose_cfg, tmp_path) -> None:
    src = _randomize(build_detector(compose_cfg(NANO).model))
    torch.save(src.state_dict(), tmp_path / "w.pt")
    dst = build_detector(compose_cfg(NANO).model)
    report = load_weights(dst, tmp_path / "w.pt")
    assert len(report.matched) == len(src.state_dict()) and not (report.missing or report.unexpected)
    assert _same(src, dst)
    assert f"{len(report.matched)} matched; 0 missing; 0 unexpected; 0 shape mismatch" in report.summary()


def test_mismatch_is_an_error_unless_partial(compose_cfg, tmp_path) -> None:
    src = _randomize(build_detector(compose_cfg(NANO).model))
    torch.save({"state_dict": src.state_dict()}, tmp_path / "w.pth")
    wider = compose_cfg(["model.backbone.width=0.125", "model.neck.width=0.5"]).model  # another neck and head
    dst = build_detector(wider)
    before = {k: v.clone() for k, v in dst.state_dict().items()}
    with pytest.raises(CheckpointError, match=r"shape mismatch.*neck\..*weights_partial=true"):
        load_weights(dst, tmp_path / "w.pth")
    assert all(torch.equal(before[k], v) for k, v in dst.state_dict().items())  # untouched on error
    report = load_weights(dst, tmp_path / "w.pth", partial=True)
    assert report.mismatched and all(k.startswith(("neck.", "head.")) for k in report.mismatched)
    assert _same(src, dst, "backbone.")  # the matching part loaded
    key = report.mismatched[0].split()[0]
    assert torch.equal(dst.state_dict()[key], before[key])  # what does not fit keeps its initial value


def test_facedet_checkpoint_gives_its_ema_weights(compose_cfg, tmp_path) -> None:
    model_sd = _randomize(build_detector(compose_cfg(NANO).model), 1).state_dict()
    ema = _randomize(build_detector(compose_cfg(NANO).model), 2)
    torch.save({"model": model_sd, "hooks": {"EMAHook": {"module": ema.state_dict()}}, "epoch": 3},
               tmp_path / "last.pt")
    dst = build_detector(compose_cfg(NANO).model)
    report = load_weights(dst, tmp_path / "last.pt")
    assert _same(ema, dst) and "(the ema weights of a facedet checkpoint)" in report.summary()


def test_torchvision_backbone_state_dict_loads_into_the_backbone(compose_cfg, tmp_path) -> None:
    tv = _randomize(mobilenet_v2(weights=None))
    torch.save(tv.state_dict(), tmp_path / "mobilenet_v2.pth")
    det = build_detector(compose_cfg(["model=mobilenetv2_yolo"]).model)
    with pytest.raises(CheckpointError, match="unexpected"):  # its classifier, and the unused last conv
        load_weights(det, tmp_path / "mobilenet_v2.pth")
    report = load_weights(det, tmp_path / "mobilenet_v2.pth", partial=True)
    assert "'backbone.' prefix" in report.summary()
    assert all(k.startswith("backbone.features.") for k in report.matched)
    assert set(report.unexpected) >= {"backbone.classifier.1.weight", "backbone.features.18.0.weight"}
    assert torch.equal(det.backbone.features[3].conv[0][0].weight, tv.features[3].conv[0][0].weight)


def test_bad_files_are_clear_errors(compose_cfg, tmp_path) -> None:
    det = build_detector(compose_cfg(NANO).model)
    with pytest.raises(FileNotFoundError, match="model.weights"):
        load_weights(det, tmp_path / "nope.pt")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="holds no state dict"):
        load_weights(det, tmp_path / "list.pt")
    torch.save({"w": nn.Linear(1, 1)}, tmp_path / "module.pt")  # a pickled module would run code to load
    with pytest.raises(CheckpointError, match="Refusing"):
        load_weights(det, tmp_path / "module.pt")
    torch.save({"something.else": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="no weight matches"):
        load_weights(det, tmp_path / "other.pt", partial=True)


class _SmallDarknetBackbone(nn.Module):
    """A stand-in backbone with a Darknet layout, so the neck's part of yolov4.conv.137 is tested on
    small channels (the real thing is ``test_yolov4_conv137_round_trip``, marked slow)."""

    def __init__(self) -> None:
        super().__init__()
        self.convs = nn.Sequential(ConvBNAct(3, 8, 3), ConvBNAct(8, 16, 3, 2))
        self.out_channels = [16, 32, 64]

    def darknet_convs(self) -> list[ConvBNAct]:
        return list(self.convs)


class _SmallYOLOv4(nn.Module):
    def __init__(self, spp: bool | str = True, width: float = 1.0) -> None:
        super().__init__()
        self.backbone = _SmallDarknetBackbone()
        self.neck = PAN(in_channels=self.backbone.out_channels, spp=spp, width=width)


def _conv_values(conv: ConvBNAct) -> int:
    return 4 * conv.bn.num_features + conv.conv.weight.numel()


def test_yolov4_neck_layout_and_spp_order(tmp_path) -> None:
    src = _randomize(_SmallYOLOv4())
    layout, n_backbone = darknet_layout(src)
    assert (n_backbone, len(layout)) == (2, 22)  # + yolov4.cfg layers 105-136: 20 convolutions
    assert [n for n, _, _ in layout[2:6]] == ["neck.c5_pre.0", "neck.c5_pre.1", "neck.c5_pre.2", "neck.c5_post.0"]
    n_values = save_darknet_weights(src, tmp_path / "small.conv.weights", seen=32013312)
    assert (tmp_path / "small.conv.weights").stat().st_size == 20 + 4 * n_values

    dst = _SmallYOLOv4()
    report = load_weights(dst, tmp_path / "small.conv.weights")
    assert _same(src, dst, "backbone.")
    for name, _, _ in layout[n_backbone:]:
        assert _same(src, dst, name + ".")
    assert not torch.equal(src.neck.bu5[0].conv.weight, dst.neck.bu5[0].conv.weight)  # not in the file
    assert len(report.matched) == 22 * 5 and all(k.startswith("neck.") for k in report.missing)
    assert "v0.2.5, 32013312 images seen: 22 convolutions (20 in the neck)" in report.summary()

    # Darknet concatenates SPP as [maxpool13, maxpool9, maxpool5, input], we as [input, 5, 9, 13]: the
    # file holds the conv after SPP with its input blocks reversed.
    data = np.fromfile(tmp_path / "small.conv.weights", dtype="<f4", offset=20)
    conv = src.neck.c5_post[0]
    start = sum(_conv_values(c) for _, c, _ in layout[:5]) + 4 * conv.bn.num_features
    c = conv.conv.in_channels // 4
    first_row = data[start : start + 4 * c]
    assert np.array_equal(first_row[:c], conv.conv.weight[0, 3 * c :, 0, 0].detach().numpy())  # maxpool13 first
    assert np.array_equal(first_row[3 * c :], conv.conv.weight[0, :c, 0, 0].detach().numpy())  # input last

    # A full file (more layers after these) loads them and reports the rest unused; an old header
    # (v0.1) stores "seen" as int32.
    data = (tmp_path / "small.conv.weights").read_bytes()
    (tmp_path / "full.weights").write_bytes(struct.pack("<3ii", 0, 1, 0, 7) + data[20:] + bytes(4000))
    report = load_weights(_SmallYOLOv4(), tmp_path / "full.weights")
    assert "v0.1.0, 7 images seen: 22 convolutions" in report.summary()
    assert "1000 values after them unused" in report.summary()

    # A backbone-only file loads the backbone; a file ending inside the neck is refused.
    save_darknet_weights(src, tmp_path / "backbone.weights", convs=2)
    report = load_weights(_SmallYOLOv4(), tmp_path / "backbone.weights")
    assert len(report.matched) == 10 and "2 convolutions (0 in the neck)" in report.summary()
    save_darknet_weights(src, tmp_path / "cut.weights", convs=7)
    with pytest.raises(CheckpointError, match="ends inside convolution 7"):
        load_weights(_SmallYOLOv4(), tmp_path / "cut.weights")
    # A neck that is not YOLOv4's (no SPP, or another width) has no layout: the backbone loads and
    # the rest of the file is reported unused instead of filling it with shifted values.
    for other in (_SmallYOLOv4(spp=False), _SmallYOLOv4(width=0.5)):
        report = load_weights(other, tmp_path / "small.conv.weights")
        assert len(report.matched) == 10 and "values after them unused" in report.summary()
    assert darknet_layout(_SmallYOLOv4(spp="sppf"))[0][5][2] == 4  # SPPF keeps SPP's order


def test_darknet53_conv74_round_trip(tmp_path) -> None:
    src, dst = _randomize(Darknet53()), Darknet53()
    save_darknet_weights(src, tmp_path / "darknet53.conv.74.weights")
    report = load_darknet_weights(dst, tmp_path / "darknet53.conv.74.weights")
    assert _same(src, dst) and not report.missing and "52 convolutions" in report.summary()

    # Files that do not fit.
    csp = CSPDarknet()
    before = {k: v.clone() for k, v in csp.state_dict().items()}
    with pytest.raises(CheckpointError, match="running variances"):  # a bigger file of another architecture
        load_darknet_weights(csp, tmp_path / "darknet53.conv.74.weights")
    assert all(torch.equal(before[k], v) for k, v in csp.state_dict().items())  # left untouched
    with open(tmp_path / "darknet53.conv.74.weights", "rb") as f:
        head = f.read(20 + 4 * 1000)
    for name, data, message in [("short", head, "fewer than"), ("odd", head[:23], "whole number"),
                                ("header", head[:12], "too short")]:
        (tmp_path / f"{name}.weights").write_bytes(data)
        with pytest.raises(CheckpointError, match=message):
            load_darknet_weights(dst, tmp_path / f"{name}.weights")
    with pytest.raises(ConfigError, match="width 1 and depth 1"):
        load_darknet_weights(Darknet53(width=0.5), tmp_path / "darknet53.conv.74.weights")


def test_darknet_import_needs_a_darknet_backbone(compose_cfg, tmp_path) -> None:
    (tmp_path / "x.weights").write_bytes(struct.pack("<3iq", 0, 2, 5, 0) + bytes(400))
    with pytest.raises(ConfigError, match="supports the darknet53 and cspdarknet"):
        load_weights(build_detector(compose_cfg(["model=mobilenetv3_yolo"]).model), tmp_path / "x.weights")


@pytest.mark.slow
def test_yolov4_conv137_round_trip(compose_cfg, tmp_path) -> None:
    """The full yolov4 config: CSPDarknet53 (72 convolutions) + SPP/top-down PAN (20), 92 in all."""
    src = _randomize(build_detector(compose_cfg(["model=yolov4"]).model))
    layout, n_backbone = darknet_layout(src)
    assert (n_backbone, len(layout)) == (72, 92)
    save_darknet_weights(src, tmp_path / "yolov4.conv.137")  # no .weights suffix: call the importer directly
    dst = build_detector(compose_cfg(["model=yolov4"]).model)
    report = load_darknet_weights(dst, tmp_path / "yolov4.conv.137")
    assert "92 convolutions (20 in the neck)" in report.summary() and len(report.matched) == 92 * 5
    assert _same(src, dst, "backbone.") and _same(src, dst, "neck.td3.")
    assert all(k.startswith(("neck.", "head.")) for k in report.missing)


def test_training_starts_from_weights_with_model_info_and_dropblock(compose_cfg, tmp_path, caplog, monkeypatch):
    """run_training: loads model.weights, logs the model-info figures, schedules DropBlock."""
    import facedet.engine.run as run

    overrides = NANO + ["model.backbone.dropblock=0.1", "data.img_size=64", "data.num_train=8", "data.num_val=4",
                        f"data.root={tmp_path / 'data'}", "train.epochs=1", "train.batch_size=4",
                        "train.num_workers=0", "train.tensorboard=false", "eval.batch_size=4"]
    src = _randomize(build_detector(compose_cfg(overrides).model))
    with torch.no_grad():  # BN scales and variances of a trained model are positive
        for m in src.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.abs_().add_(0.5)
    torch.save(src.state_dict(), tmp_path / "start.pt")
    hooks, real_model_hooks = [], run.model_hooks

    def spy(model: nn.Module) -> list:
        hooks.extend(real_model_hooks(model))
        return hooks

    monkeypatch.setattr(run, "model_hooks", spy)
    cfg = compose_cfg(overrides + [f"model.weights={tmp_path / 'start.pt'}"])
    with caplog.at_level("INFO"):
        run.run_training(cfg, tmp_path / "run", progress=False)
    text = caplog.text
    n_keys = len(src.state_dict())
    assert f"{n_keys} matched; 0 missing; 0 unexpected; 0 shape mismatch" in text
    assert "GFLOPs at 64x64" in text and "backbone" in text
    assert len(hooks) == 1 and all(b.progress == 1.0 for b in hooks[0].blocks)  # ramped to the end
