"""Issue 16: OHEM for the objectness loss (``model.loss.obj_mining: {type: ohem}``): which negatives
the miner keeps, that only they and the positives get a gradient, and that it reduces to the
unmasked loss when every negative is kept."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from facedet.assign import YOLOv4Assigner
from facedet.losses import YOLOLoss
from facedet.losses.objectness import OHEMMiner
from facedet.models.heads import yolo_decode
from facedet.registry import LOSSES, OBJECTNESS_MINERS, ConfigError, build

SIZE = 64  # input pixels: grids 8x8, 4x4, 2x2
GRIDS = [(8, 8), (4, 4), (2, 2)]
FACES = [[[20.0, 18.0, 30.0, 31.0], [40.0, 8.0, 60.0, 34.0]], []]  # image 0: two faces; image 1: none


def make_head() -> SimpleNamespace:
    head = SimpleNamespace(
        anchors=torch.tensor([[[4.0, 5.0], [8.0, 10.0], [12.0, 14.0]], [[16.0, 20.0], [24.0, 28.0], [32.0, 36.0]],
                              [[40.0, 48.0], [52.0, 56.0], [64.0, 64.0]]]),
        strides=[8, 16, 32], scale_x_y=[1.0] * 3, wh_mode="exp",
    )
    head.decode_level = lambda raw, i: yolo_decode.decode_level(
        raw, head.anchors[i], head.strides[i], head.scale_x_y[i], head.wh_mode
    )
    return head


def target(boxes: list[list[float]], ignore: list[bool] | None = None) -> dict[str, torch.Tensor]:
    return {"boxes": torch.tensor(boxes).reshape(-1, 4), "labels": torch.zeros(len(boxes), dtype=torch.int64),
            "ignore": torch.tensor(ignore or [False] * len(boxes), dtype=torch.bool)}


def make_raws(seed: int = 0) -> list[torch.Tensor]:
    """Random raw maps (distinct BCEs, so the ranking has no ties), batch 2."""
    g = torch.Generator().manual_seed(seed)
    return [torch.randn((2, 3, SIZE // s, SIZE // s, 5), generator=g).requires_grad_() for s in (8, 16, 32)]


def run(raws: list[torch.Tensor], targets: list, **kw) -> tuple[dict, list[torch.Tensor]]:
    """Loss terms and the objectness gradient per level."""
    out = YOLOLoss(assigner=YOLOv4Assigner(), decoder=make_head(), **kw)(raws, targets)
    grads = torch.autograd.grad(out["loss_obj"], raws)
    return out, [g[..., 4] for g in grads]


def positives(targets: list) -> list[torch.Tensor]:
    """Cells assigned to non-ignored faces, per level, as the loss finds them."""
    rows = [[b, *box, float(ign)] for b, t in enumerate(targets)
            for box, ign in zip(t["boxes"].tolist(), t["ignore"].tolist(), strict=True)]
    asg = YOLOv4Assigner()(torch.tensor(rows).reshape(-1, 6), make_head().anchors, [8, 16, 32], GRIDS)
    masks = []
    for lvl, m in enumerate(asg):
        mask = torch.zeros((2, 3, SIZE // 8 >> lvl, SIZE // 8 >> lvl), dtype=torch.bool)
        keep = torch.tensor([rows[t][5] == 0 for t in m.t.tolist()], dtype=torch.bool)
        mask[m.b[keep], m.a[keep], m.gy[keep], m.gx[keep]] = True
        masks.append(mask)
    return masks


def test_miner_keeps_positives_and_the_k_hardest_negatives_over_levels() -> None:
    bce = [torch.tensor([[0.1, 0.9, 0.5, 0.2], [0.3, 0.4, 0.8, 0.7]]), torch.tensor([[0.95, 0.05], [0.6, 0.1]])]
    pos = [torch.tensor([[True, False, False, False], [False] * 4]), torch.zeros((2, 2), dtype=torch.bool)]
    cand = [torch.tensor([[True, True, True, False], [True] * 4]), torch.ones((2, 2), dtype=torch.bool)]
    chosen = OHEMMiner(neg_ratio=2, min_negatives=3)(bce, cand, pos)
    # image 0: 1 positive -> max(2, 3) = 3 negatives: 0.95 (level 1), 0.9, 0.5; 0.2 is not a candidate
    assert chosen[0][0].tolist() == [True, True, True, False] and chosen[1][0].tolist() == [True, False]
    # image 1: no positive -> min_negatives = 3: 0.8, 0.7, 0.6 (level 1)
    assert chosen[0][1].tolist() == [False, False, True, True] and chosen[1][1].tolist() == [True, False]


def test_miner_rounds_up_and_caps_at_the_negatives_there_are() -> None:
    bce = [torch.arange(6.0).reshape(1, 6)]
    pos = [torch.tensor([[True, False, False, False, False, False]])]
    cand = [torch.ones((1, 6), dtype=torch.bool)]
    assert int(OHEMMiner(neg_ratio=1.5, min_negatives=0)(bce, cand, pos)[0].sum()) == 1 + 2  # ceil(1.5)
    assert int(OHEMMiner(neg_ratio=100, min_negatives=0)(bce, cand, pos)[0].sum()) == 6  # all 5 negatives


def test_only_positives_and_the_top_k_negatives_get_a_gradient() -> None:
    targets = [target(b) for b in FACES]
    raws = make_raws()
    _, grads = run(raws, targets, obj_mining=OHEMMiner(neg_ratio=3, min_negatives=16))
    pos = positives(targets)
    n_pos = [int(sum(p[b].sum() for p in pos)) for b in range(2)]
    assert n_pos[0] > 0 and n_pos[1] == 0
    with torch.no_grad():
        dec = [make_head().decode_level(r, i)[..., 4] for i, r in enumerate(raws)]
    for b in range(2):
        k = max(math.ceil(3 * n_pos[b]), 16)
        got = torch.cat([(g[b] != 0).flatten() for g in grads])
        is_pos = torch.cat([p[b].flatten() for p in pos])
        assert int(got.sum()) == n_pos[b] + k and bool(got[is_pos].all())
        # the chosen negatives are the k whose BCE with target 0 (softplus of the logit) is largest
        neg_bce = torch.cat([torch.nn.functional.softplus(d[b]).flatten() for d in dec]).masked_fill(is_pos, -1)
        assert set(neg_bce.topk(k).indices.tolist()) == set((got & ~is_pos).nonzero().flatten().tolist())


def test_huge_neg_ratio_is_the_unmasked_loss_and_ignore_iou_is_not_used() -> None:
    targets = [target(b) for b in FACES]
    raws = make_raws(1)
    # ignore_iou 0 would mask almost every cell of image 0 without mining; with mining it is unused
    # (min_negatives huge too: image 1 has no face, so its k is min_negatives whatever neg_ratio is)
    mined, g_mined = run(raws, targets, obj_mining=OHEMMiner(neg_ratio=1e9, min_negatives=10**9), ignore_iou=0.0)
    plain, g_plain = run(raws, targets, ignore_iou=1.0)
    masked, _ = run(raws, targets, ignore_iou=0.0)
    assert mined["loss_obj"].item() == pytest.approx(plain["loss_obj"].item(), rel=1e-6)
    assert masked["loss_obj"].item() != pytest.approx(plain["loss_obj"].item(), rel=1e-3)
    for a, b in zip(g_mined, g_plain, strict=True):
        torch.testing.assert_close(a, b)
    assert mined["loss_box"].item() == plain["loss_box"].item()


def test_positive_gradients_are_unchanged_by_mining() -> None:
    targets = [target(b) for b in FACES]
    raws = make_raws(2)
    _, g_mined = run(raws, targets, obj_mining=OHEMMiner(neg_ratio=3, min_negatives=16))
    _, g_plain = run(raws, targets, ignore_iou=1.0)
    for a, b, p in zip(g_mined, g_plain, positives(targets), strict=True):
        torch.testing.assert_close(a[p], b[p])
        kept = (a != 0) & ~p  # the chosen negatives: also exactly as in the unmasked loss
        torch.testing.assert_close(a[kept], b[kept])


def test_ignored_face_cells_are_never_mined() -> None:
    box = [20.0, 18.0, 30.0, 31.0]
    targets = [target([box], [True]), target([])]
    raws = [r.detach().clone() for r in make_raws(3)]
    for r in raws:  # make every cell look like a confident face: the ignored face's cells are the hardest too
        r[..., 4] = 5.0
    raws = [r.requires_grad_() for r in raws]
    _, grads = run(raws, targets, obj_mining=OHEMMiner(min_negatives=10**9))  # no positive: k = min_negatives
    asg = YOLOv4Assigner()(torch.tensor([[0.0, *box, 1.0]]), make_head().anchors, [8, 16, 32], GRIDS)
    assert sum(m.num for m in asg) > 0
    for g, m in zip(grads, asg, strict=True):
        assert (g[m.b, m.a, m.gy, m.gx] == 0).all()
    n_cells = sum(g[0].numel() for g in grads)
    assert sum(int((g[0] != 0).sum()) for g in grads) == n_cells - sum(m.num for m in asg)


def test_built_from_config_and_bad_values_name_the_key() -> None:
    node = {"type": "yolo_loss", "assigner": {"type": "yolov4"}, "obj_mining": {"type": "ohem", "neg_ratio": 5}}
    loss = build(node, LOSSES, decoder=make_head())
    assert isinstance(loss.obj_mining, OHEMMiner) and loss.obj_mining.neg_ratio == 5.0
    assert build({**node, "obj_mining": None}, LOSSES, decoder=make_head()).obj_mining is None
    for key, value in (("neg_ratio", 0), ("neg_ratio", float("inf")), ("min_negatives", -1), ("min_negatives", 2.5)):
        with pytest.raises(ConfigError, match=key):
            build({"type": "ohem", key: value}, OBJECTNESS_MINERS, where="model.loss.obj_mining")
    with pytest.raises(ConfigError, match="ohem"):
        build({**node, "obj_mining": {"type": "ohme"}}, LOSSES, where="model.loss", decoder=make_head())
