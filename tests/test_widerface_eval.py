"""WIDER FACE protocol: hand-built cases, a literal transcription of the official code as a
cross-check, the evaluator's image handling, and the official ground truth files when present."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from facedet.evaluation.widerface import (
    WiderFaceEvaluator,
    WiderGroundTruth,
    evaluate_wider,
    image_matches,
    voc_ap,
)

from .conftest import SHARED
from .wider_utils import GTImage, write_wider_gt

OFFICIAL = SHARED / "datasets" / "widerface_val_gt"


def xyxy(xywh):
    b = np.asarray(xywh, np.float64).reshape(-1, 4)
    return np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], 1)


# Two events, three images. Image a: 3 faces (the small third counts in hard only); b: 2 faces,
# the second never counts (e.g. invalid); c: no faces.
IMAGES = [
    GTImage("0--Parade", "a", np.array([[10, 10, 40, 50], [100, 20, 40, 44], [200, 30, 12, 14]]),
            {"easy": [1, 2], "medium": [1, 2], "hard": [1, 2, 3]}),
    GTImage("0--Parade", "b", np.array([[30, 30, 60, 70], [150, 40, 30, 30]]),
            {"easy": [1], "medium": [1], "hard": [1]}),
    GTImage("1--Handshaking", "c", np.zeros((0, 4)), {}),
]


@pytest.fixture(scope="module")
def gt(tmp_path_factory) -> WiderGroundTruth:
    return WiderGroundTruth.from_dir(write_wider_gt(tmp_path_factory.mktemp("gt"), IMAGES))


def run(gt, preds, keys=None):
    """preds: key -> (xywh boxes, scores); returns AP per setting."""
    p = {k: (xyxy(b), np.asarray(s, np.float64)) for k, (b, s) in preds.items()}
    res = evaluate_wider(p, gt, keys or list(gt.images))
    return {s: r["ap"] for s, r in res.items()}


def perfect():
    return {f"{im.event}/{im.name}": (im.boxes, np.linspace(0.9, 0.5, len(im.boxes))) for im in IMAGES}


def test_the_mat_files_are_read_with_their_one_based_lists(gt):
    a = gt.images["0--Parade/a"]
    assert a.boxes.shape == (3, 4) and a.counted["easy"].tolist() == [True, True, False]
    assert gt.images["1--Handshaking/c"].boxes.shape == (0, 4)
    assert gt.key_of("0--Parade/a.jpg") == gt.key_of("a") == gt.key_of("x/y/0--Parade/a.png") == "0--Parade/a"
    with pytest.raises(KeyError, match="zzz"):
        gt.key_of("0--Parade/zzz.jpg")


def test_perfect_predictions_give_one_on_all_three(gt):
    assert run(gt, perfect()) == {"easy": 1.0, "medium": 1.0, "hard": 1.0}


def test_a_match_on_an_ignored_face_is_neither_true_nor_false_positive(gt):
    preds = perfect()
    # the second face of b never counts: a confident detection on it must not change AP,
    # while the same detection 200 px away (matching nothing) is a false positive
    b_boxes, _ = preds["0--Parade/b"]
    preds["0--Parade/b"] = (b_boxes, [0.7, 0.95])
    assert run(gt, preds) == {"easy": 1.0, "medium": 1.0, "hard": 1.0}
    moved = b_boxes.copy()
    moved[1, 0] += 200
    preds["0--Parade/b"] = (moved, [0.7, 0.95])
    assert all(ap < 1.0 for ap in run(gt, preds).values())


def test_a_duplicate_detection_is_a_false_positive_and_recalls_nothing(gt):
    preds = perfect()
    a_boxes, a_scores = preds["0--Parade/a"]
    preds["0--Parade/a"] = (np.vstack([a_boxes, a_boxes[:1] + 1]), np.append(a_scores, 0.99))
    aps = run(gt, preds)
    assert all(0.5 < ap < 1.0 for ap in aps.values())
    proposal, recalled = image_matches(xyxy(np.vstack([a_boxes[:1], a_boxes[:1] + 1])), a_boxes,
                                       np.array([True, True, False]))
    assert proposal.tolist() == [1, 1] and recalled.tolist() == [1, 1]  # counted as a proposal, recalls once


def test_empty_images(gt):
    preds = perfect()
    # detections on the face-less image are skipped, as in the official code
    preds["1--Handshaking/c"] = (np.array([[5, 5, 20, 20]]), [0.99])
    assert run(gt, preds) == {"easy": 1.0, "medium": 1.0, "hard": 1.0}
    # an image with faces but no detections loses its faces' recall: easy counts 3 faces, b's one is missed
    del preds["0--Parade/b"]
    aps = run(gt, preds)
    assert aps["easy"] == pytest.approx(2 / 3) and aps["hard"] == pytest.approx(3 / 4)
    # no detections at all
    assert run(gt, {}) == {"easy": 0.0, "medium": 0.0, "hard": 0.0}


def test_only_the_evaluated_images_count(gt):
    preds = perfect()
    del preds["0--Parade/b"]  # b would cost recall if it were evaluated
    assert run(gt, preds, keys=["0--Parade/a", "1--Handshaking/c"]) == {"easy": 1.0, "medium": 1.0, "hard": 1.0}
    res = evaluate_wider({}, gt, ["0--Parade/b"])
    assert res["easy"]["faces"] == 1 and res["hard"]["faces"] == 1


def test_ap_depends_on_score_order_only(gt):
    rng = np.random.default_rng(0)
    preds = {k: (b + rng.normal(0, 3, b.shape), rng.uniform(0, 1, len(b))) for k, (b, _) in perfect().items()}
    preds["0--Parade/a"] = (np.vstack([preds["0--Parade/a"][0], [[300, 300, 20, 20]]]),
                            np.append(preds["0--Parade/a"][1], 0.8))
    base = run(gt, preds)
    scaled = run(gt, {k: (b, 5 * s + 2) for k, (b, s) in preds.items()})  # min-max normalisation undoes it
    assert scaled == pytest.approx(base, abs=1e-12)


def test_voc_ap_is_the_area_under_the_precision_envelope():
    assert voc_ap(np.array([0.5, 1.0]), np.array([1.0, 0.5])) == pytest.approx(0.5 * 1.0 + 0.5 * 0.5)
    # a later, higher precision lifts the envelope; NaN (0/0) is skipped as MATLAB's max skips it
    assert voc_ap(np.array([0.5, 0.5, 1.0]), np.array([0.2, np.nan, 0.6])) == pytest.approx(0.6)


# ---- a literal transcription of the official code (eval_tools/wider_eval.m and its Python port) ----

def _official_overlaps(boxes, query):
    out = np.zeros((len(boxes), len(query)))
    for k in range(len(query)):
        q_area = (query[k, 2] - query[k, 0] + 1) * (query[k, 3] - query[k, 1] + 1)
        for n in range(len(boxes)):
            iw = min(boxes[n, 2], query[k, 2]) - max(boxes[n, 0], query[k, 0]) + 1
            ih = min(boxes[n, 3], query[k, 3]) - max(boxes[n, 1], query[k, 1]) + 1
            if iw > 0 and ih > 0:
                ua = (boxes[n, 2] - boxes[n, 0] + 1) * (boxes[n, 3] - boxes[n, 1] + 1) + q_area - iw * ih
                out[n, k] = iw * ih / ua
    return out


def official_ap(preds, gts, keeps, thresh_num=1000, iou_thresh=0.5):
    """preds: per image (N, 5) x y w h score; gts: per image (G, 4) x y w h; keeps: 1-based lists."""
    scores = np.concatenate([p[:, 4] for p in preds if len(p)])
    lo, hi = scores.min(), scores.max()
    pr_curve, count_face = np.zeros((thresh_num, 2)), 0
    for pred, gt, keep in zip(preds, gts, keeps, strict=True):
        count_face += len(keep)
        if len(gt) == 0 or len(pred) == 0:
            continue
        pred = pred[np.argsort(-pred[:, 4], kind="stable")].copy()
        pred[:, 4] = (pred[:, 4] - lo) / (hi - lo)
        ignore = np.zeros(len(gt))
        ignore[np.asarray(keep, int) - 1] = 1
        _p, _g = pred.copy(), gt.astype(float).copy()
        _p[:, 2:4] += _p[:, 0:2]
        _g[:, 2:4] += _g[:, 0:2]
        overlaps = _official_overlaps(_p[:, :4], _g)
        recall_list, proposal_list, pred_recall = np.zeros(len(gt)), np.ones(len(pred)), np.zeros(len(pred))
        for h in range(len(pred)):
            max_overlap, max_idx = overlaps[h].max(), overlaps[h].argmax()
            if max_overlap >= iou_thresh:
                if ignore[max_idx] == 0:
                    recall_list[max_idx] = -1
                    proposal_list[h] = -1
                elif recall_list[max_idx] == 0:
                    recall_list[max_idx] = 1
            pred_recall[h] = len(np.where(recall_list == 1)[0])
        for t in range(thresh_num):
            r_index = np.where(pred[:, 4] >= 1 - (t + 1) / thresh_num)[0]
            if len(r_index):
                r_index = r_index[-1]
                pr_curve[t, 0] += len(np.where(proposal_list[: r_index + 1] == 1)[0])
                pr_curve[t, 1] += pred_recall[r_index]
    with np.errstate(invalid="ignore"):
        precision, recall = pr_curve[:, 1] / pr_curve[:, 0], pr_curve[:, 1] / count_face
    mrec, mpre = np.concatenate(([0.0], recall, [1.0])), np.concatenate(([0.0], precision, [0.0]))
    for i in range(mpre.size - 1, 0, -1):
        mpre[i - 1] = np.fmax(mpre[i - 1], mpre[i])
    i = np.where(mrec[1:] != mrec[:-1])[0]
    return np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1])


def test_matches_a_literal_transcription_of_the_official_code(tmp_path):
    rng = np.random.default_rng(1)
    images, preds = [], {}
    for i in range(12):
        n = int(rng.integers(0, 7))
        xy, wh = rng.uniform(0, 300, (n, 2)), rng.uniform(4, 80, (n, 2))
        boxes = np.round(np.concatenate([xy, wh], 1))
        keep = {"hard": sorted(rng.choice(n, size=int(rng.integers(0, n + 1)), replace=False) + 1)} if n else {}
        keep["medium"] = keep.get("hard", [])[: max(0, len(keep.get("hard", [])) - 1)]
        keep["easy"] = keep["medium"][:1]
        images.append(GTImage(f"{i % 3}--Event", f"img_{i}", boxes, keep))
        # detections: jittered faces, some duplicates, some false positives
        det = boxes + rng.normal(0, 4, boxes.shape) if n else np.zeros((0, 4))
        det = np.vstack([det, det[: n // 2] + 2, rng.uniform(0, 300, (int(rng.integers(0, 3)), 4)) + [0, 0, 5, 5]])
        preds[f"{i % 3}--Event/img_{i}"] = (det, rng.uniform(0.01, 1.0, len(det)).round(3))  # ties in scores too
    gt = WiderGroundTruth.from_dir(write_wider_gt(tmp_path, images))
    keys = [f"{im.event}/{im.name}" for im in images]
    ours = evaluate_wider({k: (xyxy(b), s) for k, (b, s) in preds.items()}, gt, keys)
    for s in ("easy", "medium", "hard"):
        ref = official_ap([np.concatenate([preds[k][0], preds[k][1][:, None]], 1) for k in keys],
                          [im.boxes for im in images], [im.keep.get(s, []) for im in images])
        assert ours[s]["ap"] == pytest.approx(ref, abs=1e-12), s
        assert 0.05 < ours[s]["ap"] < 0.999  # a case where the details matter


def test_evaluator_counts_the_data_set_images_and_rejects_strangers(gt, tmp_path):
    from dataclasses import dataclass

    @dataclass
    class Rec:
        image_id: str

    gt_dir = gt.source
    ev = WiderFaceEvaluator(gt_dir=gt_dir, records=[Rec("0--Parade/a.jpg"), Rec("1--Handshaking/c.jpg")])
    a = IMAGES[0]
    ev.update([{"boxes": torch.tensor(xyxy(a.boxes)), "scores": torch.tensor([0.9, 0.8, 0.7])}], ["0--Parade/a.jpg"])
    m = ev.compute()
    assert m == {"wider_easy": 1.0, "wider_medium": 1.0, "wider_hard": 1.0, "wider_images": 2}
    assert set(ev.pr_curves()) == {"WIDER easy", "WIDER medium", "WIDER hard"}
    with pytest.raises(ValueError, match=r"1 of 2 images are not in the WIDER FACE ground truth.*other\.jpg"):
        WiderFaceEvaluator(gt_dir=gt_dir, records=[Rec("0--Parade/a.jpg"), Rec("x/other.jpg")])
    with pytest.raises(FileNotFoundError, match="wider_face_val.mat"):
        WiderFaceEvaluator(gt_dir=str(tmp_path / "nowhere"))


needs_official = pytest.mark.skipif(not OFFICIAL.is_dir(), reason="official WIDER FACE ground truth not in ../shared")


@needs_official
def test_official_ground_truth_files_agree_with_the_txt():
    gt = WiderGroundTruth.from_dir(OFFICIAL)
    lines = (OFFICIAL / "wider_face_val_bbx_gt.txt").read_text().split("\n")
    i, n_images = 0, 0
    while i < len(lines) and lines[i].strip():
        name, count = lines[i].strip(), int(lines[i + 1])
        boxes = np.array([list(map(float, ln.split()[:4])) for ln in lines[i + 2 : i + 2 + count]]).reshape(-1, 4)
        img = gt.images[gt.key_of(name)]
        assert np.array_equal(img.boxes, boxes), name
        i += 2 + max(count, 1)  # a 0-face image is followed by a line of zeros
        n_images += 1
    assert n_images == len(gt)
    for img in gt.images.values():  # easy faces are medium faces are hard faces
        assert not (img.counted["easy"] & ~img.counted["medium"]).any()
        assert not (img.counted["medium"] & ~img.counted["hard"]).any()


def _perfect_on_official(every: int) -> dict:
    """Perfect predictions on every ``every``-th official image: AP 1 but for the faces that no detector
    can output (the files annotate one face twice and one with a negative width)."""
    gt = WiderGroundTruth.from_dir(OFFICIAL)
    keys = list(gt.images)[::every]
    rng = np.random.default_rng(0)
    preds, unreachable = {}, dict.fromkeys(("easy", "medium", "hard"), 0)
    for key in keys:
        img = gt.images[key]
        _, first = np.unique(img.boxes, axis=0, return_index=True)
        ok = np.zeros(len(img.boxes), bool)
        ok[first] = True
        ok &= (img.boxes[:, 2] >= 0) & (img.boxes[:, 3] >= 0)
        for s in unreachable:
            unreachable[s] += int((img.counted[s] & ~ok).sum())
        preds[key] = (xyxy(img.boxes[ok]), rng.uniform(0.1, 1.0, ok.sum()))
    res = evaluate_wider(preds, gt, keys)
    for s, r in res.items():
        assert r["ap"] == pytest.approx(1 - unreachable[s] / r["faces"], abs=1e-12), s
    return res


@needs_official
def test_perfect_predictions_on_a_subset_of_the_official_val_set():
    res = _perfect_on_official(every=5)
    assert res["hard"]["faces"] < 20000  # a subset: only its images' faces count


@needs_official
@pytest.mark.slow
def test_perfect_predictions_on_the_full_official_val_set():
    res = _perfect_on_official(every=1)
    assert res["easy"]["ap"] == 1.0 and res["hard"]["ap"] < 1.0
