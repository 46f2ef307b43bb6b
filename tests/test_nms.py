"""DIoU-NMS against a slow greedy reference, plain NMS against torchvision, and the shared pipeline."""

from __future__ import annotations

import pytest
import torch
from torchvision.ops import nms

from facedet.postprocess import NMS, DIoUNMS, diou_nms, greedy_suppression
from facedet.registry import POSTPROCESSORS, build

EPS = 1e-7  # torchvision's distance_box_iou adds this to the squared enclosing diagonal


def diou_py(a: list[float], b: list[float]) -> float:
    """DIoU of two xyxy boxes in plain Python floats."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    cw = max(a[2], b[2]) - min(a[0], b[0])
    ch = max(a[3], b[3]) - min(a[1], b[1])
    rho2 = ((a[0] + a[2]) / 2 - (b[0] + b[2]) / 2) ** 2 + ((a[1] + a[3]) / 2 - (b[1] + b[3]) / 2) ** 2
    return inter / union - rho2 / (cw**2 + ch**2 + EPS)


def greedy_reference(boxes: list[list[float]], scores: list[float], thresh: float) -> list[int]:
    """Textbook greedy DIoU-NMS, one box at a time."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    kept: list[int] = []
    for i in order:
        if all(diou_py(boxes[k], boxes[i]) <= thresh for k in kept):
            kept.append(i)
    return kept


def random_boxes(g: torch.Generator, n: int, spread: float = 60.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Clustered boxes (so suppression chains happen) with distinct random scores, float64."""
    c = torch.rand(n, 2, generator=g, dtype=torch.float64) * spread
    wh = torch.rand(n, 2, generator=g, dtype=torch.float64) * 30 + 2
    return torch.cat((c - wh / 2, c + wh / 2), 1), torch.rand(n, generator=g, dtype=torch.float64)


def test_diou_nms_matches_greedy_reference() -> None:
    g = torch.Generator().manual_seed(0)
    total_suppressed = 0
    for trial in range(300):
        n = int(torch.randint(1, 60, (1,), generator=g))
        boxes, scores = random_boxes(g, n, spread=20.0 + trial % 5 * 30)
        thresh = [0.3, 0.45, 0.6][trial % 3]
        got = diou_nms(boxes, scores, thresh).tolist()
        want = greedy_reference(boxes.tolist(), scores.tolist(), thresh)
        assert got == want, f"trial {trial}"
        total_suppressed += n - len(want)
    assert total_suppressed > 1000  # the sets really exercise suppression


@pytest.mark.parametrize("block", [1, 7, 256])
def test_blocked_diou_nms_with_early_stop_matches_the_reference(block: int) -> None:
    g = torch.Generator().manual_seed(2)
    for trial in range(40):
        n = int(torch.randint(20, 120, (1,), generator=g))
        boxes, scores = random_boxes(g, n, spread=40.0)
        want = greedy_reference(boxes.tolist(), scores.tolist(), 0.45)
        assert diou_nms(boxes, scores, 0.45, block=block).tolist() == want, f"trial {trial}"
        k = max(1, len(want) // 2)
        assert diou_nms(boxes, scores, 0.45, max_keep=k, block=block).tolist() == want[:k], f"trial {trial}"


def test_postprocessor_output_matches_reference_order() -> None:
    g = torch.Generator().manual_seed(1)
    boxes, scores = random_boxes(g, 50)
    want = greedy_reference(boxes.tolist(), scores.tolist(), 0.5)
    out = DIoUNMS(score_thresh=-1.0, nms_iou=0.5)(boxes[None], scores[None])[0]
    assert torch.equal(out["boxes"], boxes[want]) and torch.equal(out["scores"], scores[want])
    assert out["labels"].dtype == torch.int64 and (out["labels"] == 0).all()


def test_greedy_suppression_chain() -> None:
    # 0 suppresses 1, 1 would suppress 2, 0 does not touch 2: greedy keeps 0 and 2 (1 was removed first).
    s = torch.zeros(4, 4, dtype=torch.bool)
    s[0, 1] = s[1, 2] = s[2, 3] = True
    assert greedy_suppression(s).tolist() == [True, False, True, False]


def test_diou_keeps_overlapping_boxes_with_distant_centres() -> None:
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [2.0, 2.0, 12.0, 12.0]])  # IoU 64 / 136 = 0.471
    scores = torch.tensor([0.9, 0.8])
    assert len(NMS(nms_iou=0.45)(boxes[None], scores[None])[0]["scores"]) == 1
    # DIoU = 0.471 - rho^2 / c^2 = 0.471 - 8 / 288 = 0.443 < 0.45: both survive.
    assert len(DIoUNMS(nms_iou=0.45)(boxes[None], scores[None])[0]["scores"]) == 2


def test_plain_nms_matches_torchvision() -> None:
    g = torch.Generator().manual_seed(2)
    for _ in range(20):
        boxes, scores = random_boxes(g, 80)
        boxes, scores = boxes.float(), scores.float()
        out = NMS(score_thresh=-1.0, nms_iou=0.5)(boxes[None], scores[None])[0]
        keep = nms(boxes, scores, 0.5)
        assert torch.equal(out["boxes"], boxes[keep]) and torch.equal(out["scores"], scores[keep])


@pytest.mark.parametrize("cls", [NMS, DIoUNMS])
def test_score_thresh_topk_and_max_det(cls: type) -> None:
    g = torch.Generator().manual_seed(3)
    boxes, scores = random_boxes(g, 200, spread=400.0)  # spread out: little suppression
    batch = (torch.stack((boxes, boxes)), torch.stack((scores, scores * 0.5)))
    outs = cls(score_thresh=0.3, nms_iou=0.5)(*batch)
    assert len(outs) == 2
    for out, s in zip(outs, (scores, scores * 0.5), strict=True):
        assert (out["scores"] > 0.3).all() and 0 < len(out["scores"]) <= int((s > 0.3).sum())
        assert (out["scores"][:-1] >= out["scores"][1:]).all()  # descending
    assert len(cls(score_thresh=0.0, max_det=7)(*batch)[0]["scores"]) == 7
    top = cls(score_thresh=0.0, pre_nms_topk=5)(*batch)[0]["scores"]
    assert len(top) <= 5 and (top >= scores.topk(5).values.min()).all()


@pytest.mark.parametrize("cls", [NMS, DIoUNMS])
def test_empty_input(cls: type) -> None:
    for boxes, scores in (
        (torch.zeros(2, 0, 4), torch.zeros(2, 0)),
        (torch.ones(1, 3, 4), torch.zeros(1, 3)),
    ):
        outs = cls()(boxes, scores)
        assert len(outs) == boxes.shape[0]
        for out in outs:
            assert (
                out["boxes"].shape == (0, 4) and out["scores"].shape == (0,) and out["labels"].shape == (0,)
            )
            assert out["labels"].dtype == torch.int64


def test_built_from_config() -> None:
    pp = build({"type": "diou_nms", "score_thresh": 0.01, "max_det": 100}, POSTPROCESSORS)
    assert isinstance(pp, DIoUNMS) and pp.score_thresh == 0.01 and pp.max_det == 100
    assert isinstance(build({"type": "nms"}, POSTPROCESSORS), NMS)


@pytest.mark.parametrize("kind", ["nms", "diou_nms", "soft_nms"])
def test_kept_boxes_carry_their_own_landmarks(kind):
    # every candidate's points encode its row (x = row, y = -row): a kept box must bring its own
    node = {"type": kind, "score_thresh": 0.05, "nms_iou": 0.5, "max_det": 20, "pre_nms_topk": 60}
    post = build(node, POSTPROCESSORS)
    g = torch.Generator().manual_seed(5)
    xy = torch.rand(2, 80, 2, generator=g) * 100
    boxes = torch.cat((xy, xy + 10 + torch.rand(2, 80, 2, generator=g) * 30), -1)
    scores = torch.rand(2, 80, generator=g)
    rows = torch.arange(80, dtype=torch.float32).view(1, 80, 1).expand(2, 80, 5)
    points = torch.stack((rows, -rows), -1)
    with_points = post(boxes, scores, points)
    without = post(boxes, scores)
    for b, (p, q) in enumerate(zip(with_points, without, strict=True)):
        assert "landmarks" not in q and p["landmarks"].shape == (len(p["boxes"]), 5, 2)
        assert torch.equal(p["boxes"], q["boxes"]) and torch.equal(p["scores"], q["scores"])
        assert 3 < len(p["boxes"]) <= 20
        row = p["landmarks"][:, 0, 0].long()
        assert torch.equal(boxes[b, row], p["boxes"])  # the points of the box that was kept
        assert torch.equal(p["landmarks"][..., 1], -p["landmarks"][..., 0])
    with pytest.raises(ValueError, match="landmarks"):
        post(boxes, scores, points[:, :10])


@pytest.mark.parametrize("kind", ["nms", "diou_nms", "soft_nms"])
def test_landmark_voting_is_the_score_weighted_mean_of_overlapping_candidates(kind):
    # A (0.9) and B (0.3) overlap with IoU 0.8; C (0.6) stands apart. Voting at 0.6 gives A's face
    # (0.9 * 0 + 0.3 * 10) / 1.2 = 2.5 and leaves C's own points; the boxes and scores do not change.
    boxes = torch.tensor([[[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 8.0], [50.0, 50.0, 60.0, 60.0]]])
    scores = torch.tensor([[0.9, 0.3, 0.6]])
    points = torch.tensor([0.0, 10.0, 50.0]).view(1, 3, 1, 1).expand(1, 3, 5, 2)
    node = {"type": kind, "score_thresh": 0.01, "nms_iou": 0.5}
    own = build(node, POSTPROCESSORS)(boxes, scores, points)[0]
    voted = build({**node, "landmark_vote_iou": 0.6}, POSTPROCESSORS)(boxes, scores, points)[0]
    assert torch.equal(own["boxes"], voted["boxes"]) and torch.equal(own["scores"], voted["scores"])
    a = (voted["boxes"] == boxes[0, 0]).all(1).nonzero().item()
    c = (voted["boxes"] == boxes[0, 2]).all(1).nonzero().item()
    assert torch.equal(own["landmarks"][a], torch.zeros(5, 2))
    assert torch.allclose(voted["landmarks"][a], torch.full((5, 2), 2.5))
    assert torch.equal(voted["landmarks"][c], torch.full((5, 2), 50.0))
    # above the pair's IoU nothing else votes: every face keeps its own points
    strict = build({**node, "landmark_vote_iou": 0.85}, POSTPROCESSORS)(boxes, scores, points)[0]
    assert torch.equal(strict["landmarks"], own["landmarks"])


def test_landmark_vote_iou_outside_zero_one_is_refused():
    with pytest.raises(ValueError, match="landmark_vote_iou"):
        DIoUNMS(landmark_vote_iou=1.5)
