"""Readers for every label format: what they read, what they skip and count, how they fail."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from omegaconf import OmegaConf

from facedet.data import (
    FaceDataset,
    LabelError,
    read_coco_json,
    read_retinaface_txt,
    read_voc_xml,
    read_wider_txt,
    read_yolo_txt,
)
from facedet.data.formats import default_label_dir
from facedet.registry import DATASETS, build

FACEMASK = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "facemask"


def _jpg(path: Path, h: int, w: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.random.default_rng(h * w).integers(0, 255, (h, w, 3), np.uint8))
    return path


def test_wider_attributes_and_invalid(tmp_path):
    _jpg(tmp_path / "img/0--Parade/a.jpg", 100, 120)
    (tmp_path / "gt.txt").write_text(
        "0--Parade/a.jpg\n3\n"
        "10 20 30 40 2 1 0 0 1 0\n"  # blur 2, expression 1, occlusion 1
        "50 50 5 6 0 0 1 1 2 1\n"  # invalid: ignored
        "1.5 2.25 10 10\n"  # no attribute columns
    )
    (rec,), stats = read_wider_txt(tmp_path / "gt.txt", tmp_path / "img")
    np.testing.assert_array_equal(rec.boxes, np.float32([[10, 20, 40, 60], [50, 50, 55, 56], [1.5, 2.25, 11.5, 12.25]]))
    assert rec.ignore.tolist() == [False, True, False] and rec.image_id == "0--Parade/a.jpg"
    assert rec.attributes.tolist() == [[2, 1, 0, 0, 1, 0], [0, 0, 1, 1, 2, 1], [-1] * 6]
    assert stats.faces == 3 and stats.ignored == 1


@pytest.mark.parametrize("text, line, what", [
    ("a.jpg\n1\n1 2 3 4 0 0 0 0 0 0 7\n", 3, "up to 6 attributes"),
    ("a.jpg\n1\n1 2 3 4 0.5 0 0 0 0 0\n", 3, "small integers"),
    ("a.jpg\n1\n1 2 nan 4\n", 3, "non-finite"),
    ("a.jpg\n1\n1 2 3 4\n5 6 7 8 0 0 0 0 0 0\n", 4, "expected an image path"),  # count too small
])
def test_wider_malformed(tmp_path, text, line, what):
    (tmp_path / "gt.txt").write_text(text)
    with pytest.raises(LabelError, match=rf"gt\.txt:{line}: .*{what}"):
        read_wider_txt(tmp_path / "gt.txt", tmp_path)


RETINA = """# a.jpg
10 10 40 50 20.0 25.0 0.0 40.0 25.5 0.0 30.0 35.0 1.0 22.0 45.0 0.0 38.0 45.0 0.0 0.82
60 10 20 20 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0
5 60 10 10
# sub/b.jpg 90 80
1 1 8 8 3 3 -1 -1 5 5 2 6 6 6
# missing.jpg
1 1 2 2
"""


def test_retinaface_landmarks(tmp_path):
    _jpg(tmp_path / "a.jpg", 100, 100)
    _jpg(tmp_path / "sub/b.jpg", 80, 90)
    (tmp_path / "label.txt").write_text(RETINA)
    (a, b), stats = read_retinaface_txt(tmp_path / "label.txt", tmp_path)
    np.testing.assert_array_equal(a.boxes, np.float32([[10, 10, 50, 60], [60, 10, 80, 30], [5, 60, 15, 70]]))
    np.testing.assert_allclose(a.landmarks[0], [[20, 25], [40, 25.5], [30, 35], [22, 45], [38, 45]])
    assert np.isnan(a.landmarks[1]).all() and np.isnan(a.landmarks[2]).all()
    np.testing.assert_allclose(b.landmarks[0, [0, 2, 3, 4]], [[3, 3], [5, 5], [2, 6], [6, 6]])
    assert np.isnan(b.landmarks[0, 1]).all()  # "-1 -1": absent
    assert b.orig_size == (80, 90) and not a.ignore.any()
    assert stats.missing_images == 1 and stats.dropped == {"missing_image": 1}


def test_load_summary_counts_faces_with_all_some_and_no_points(tmp_path, caplog):
    """Per point, not per face; kept faces only; an image skipped at decoding takes its faces' counts
    along; a point outside the image is kept as labelled and noted (training makes it absent)."""
    _jpg(tmp_path / "a.jpg", 100, 100)
    _jpg(tmp_path / "sub/b.jpg", 80, 90)
    (tmp_path / "label.txt").write_text(RETINA + "# c.jpg\n0 0 9 9 1 1 0.0 95 2 0.0 4 4 0.0 2 6 0.0 6 6 0.0\n")
    data = _jpg(tmp_path / "x.jpg", 60, 60).read_bytes()
    (tmp_path / "c.jpg").write_bytes(data[: len(data) // 2])  # the header intact, the pixels cut off
    (a, b, c), stats = read_retinaface_txt(tmp_path / "label.txt", tmp_path)
    assert stats.faces == 5 and stats.landmark_counts == (2, 1, 2)  # a: 5 / none / none; b: 4 of 5; c: 5
    assert np.isfinite(a.landmarks[0]).all()  # the nose flagged 1.0 (occluded) is a point
    assert c.landmarks[0, 1].tolist() == [95, 2]  # as labelled, outside the 60 px image
    assert stats.notes == {"landmark points outside the image (absent in training)": 1}
    assert "faces with 5 / some / no landmarks: 2 / 1 / 2" in stats.summary()
    node = {"type": "retinaface_txt", "ann_file": str(tmp_path / "label.txt"), "img_dir": str(tmp_path)}
    ds = build(node | {"verify_images": True}, DATASETS, transform=None, cache_images=False)
    assert [r.image_id for r in ds.records] == ["a.jpg", "sub/b.jpg"] and ds.stats.landmark_counts == (1, 1, 2)


@pytest.mark.parametrize("text, line", [
    ("1 2 3 4\n", 1),  # a face before any '# image'
    ("# a.jpg\n1 2 3 4 5\n", 2),  # 5 numbers: neither a box nor box + landmarks
    ("# a.jpg\n1 2 3 x\n", 2),
    ("#\n", 1),
])
def test_retinaface_malformed(tmp_path, text, line):
    (tmp_path / "label.txt").write_text(text)
    with pytest.raises(LabelError, match=rf"label\.txt:{line}:"):
        read_retinaface_txt(tmp_path / "label.txt", tmp_path)


def test_coco_validation(tmp_path):
    _jpg(tmp_path / "p.jpg", 60, 50)
    base = {"images": [{"id": 1, "file_name": "p.jpg", "width": 50, "height": 60}], "categories": []}

    def read(anns, images=None):
        data = base | {"annotations": anns} | ({"images": images} if images else {})
        (tmp_path / "c.json").write_text(json.dumps(data))
        return read_coco_json(tmp_path / "c.json", tmp_path)

    with pytest.raises(LabelError, match=r"c\.json: annotations\[0\] \(id 7\) bbox: expected a list of 4"):
        read([{"id": 7, "image_id": 1, "bbox": [1, 2, 3]}])
    with pytest.raises(LabelError, match="keypoints"):
        read([{"id": 1, "image_id": 1, "bbox": [1, 2, 3, 4], "keypoints": [1, 2, 2]}])
    with pytest.raises(LabelError, match=r"images\[1\].*used twice"):
        read([], [{"id": 1, "file_name": "p.jpg"}, {"id": 1, "file_name": "p.jpg"}])
    # a size in the json that is not the image's: skipped and counted, never misplaced boxes
    recs, stats = read([{"id": 1, "image_id": 1, "bbox": [1, 2, 3, 4]}],
                       [{"id": 1, "file_name": "p.jpg", "width": 60, "height": 50}])
    assert recs == [] and stats.skipped == {"size_mismatch": 1} and stats.dropped == {"size_mismatch": 1}
    assert "labels say 60x50, the image is 50x60" in stats.summary()
    (tmp_path / "c.json").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00binary")
    with pytest.raises(LabelError, match=r"c\.json"):
        read_coco_json(tmp_path / "c.json", tmp_path)


VOC = """<annotation><folder>x</folder><filename>{name}</filename>
<size><width>{w}</width><height>{h}</height><depth>3</depth></size>
<object><name>con_mascarilla</name><difficult>0</difficult>
  <bndbox><xmin>10</xmin><ymin>12.5</ymin><xmax>30</xmax><ymax>40</ymax></bndbox></object>
<object><name>sin_mascarilla</name><difficult>1</difficult>
  <bndbox><xmin>40</xmin><ymin>5</ymin><xmax>70</xmax><ymax>35</ymax></bndbox></object>
<object><name>car</name><difficult>0</difficult>
  <bndbox><xmin>0</xmin><ymin>0</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></object>
</annotation>"""


def test_voc_classes_difficult_and_errors(tmp_path):
    _jpg(tmp_path / "img/sub/v.jpg", 50, 60)
    (tmp_path / "ann/sub").mkdir(parents=True)
    (tmp_path / "ann/sub/v.xml").write_text(VOC.format(name="v.jpg", w=60, h=50))
    (rec,), stats = read_voc_xml(tmp_path / "ann", tmp_path / "img")
    assert rec.image_id == "sub/v.jpg" and len(rec.boxes) == 3  # every object is a face by default
    np.testing.assert_array_equal(rec.boxes[0], np.float32([10, 12.5, 30, 40]))
    assert rec.ignore.tolist() == [False, True, False]
    (rec,), stats = read_voc_xml(tmp_path / "ann", tmp_path / "img", classes=["con_mascarilla", "sin_mascarilla"])
    assert len(rec.boxes) == 2 and stats.dropped == {"class_not_listed": 1} and "'car'" in stats.summary()
    (tmp_path / "ann/sub/v.xml").write_text("<annotation>\n<object><name>x</name>\n</annotation>")
    with pytest.raises(LabelError, match=r"v\.xml:3: not valid XML"):
        read_voc_xml(tmp_path / "ann", tmp_path / "img")
    (tmp_path / "ann/sub/v.xml").write_text(VOC.format(name="v.jpg", w=60, h=50).replace("<xmax>30", "<xmax>3O"))
    with pytest.raises(LabelError, match=r"v\.xml: object 0 \('con_mascarilla'\): <xmax> must be a number"):
        read_voc_xml(tmp_path / "ann", tmp_path / "img")


def test_yolo_layout_landmarks_units_and_orphans(tmp_path):
    _jpg(tmp_path / "data/images/train/a.jpg", 100, 200)
    _jpg(tmp_path / "data/images/train/b.jpg", 100, 200)  # no label file: no faces (a note)
    labels = tmp_path / "data/labels/train"
    labels.mkdir(parents=True)
    (labels / "a.txt").write_text(
        "0 0.5 0.5 0.1 0.2\n"
        "1 0.25 0.25 0.1 0.1 0.22 0.22 0.28 0.22 -1 -1 0.23 0.28 0.27 0.28\n"
        "\n"
        "2 0.75 0.75 0.1 0.1 0.7 0.7 2 0.8 0.7 0 0.75 0.75 1 0.72 0.8 2 0.78 0.8 2\n"
    )
    (labels / "orphan.txt").write_text("0 0.5 0.5 0.1 0.1\n0 0.2 0.2 0.1 0.1\n")
    (labels / "classes.txt").write_text("face\n")
    assert default_label_dir(tmp_path / "data/images/train") == labels
    (a, b), stats = read_yolo_txt(tmp_path / "data/images/train", ignore_class=1)
    np.testing.assert_allclose(a.boxes, [[90, 40, 110, 60], [40, 20, 60, 30], [140, 70, 160, 80]], atol=1e-4)
    assert a.ignore.tolist() == [False, True, False] and len(b.boxes) == 0
    np.testing.assert_allclose(a.landmarks[1, 0], [44, 22], atol=1e-4)
    assert np.isnan(a.landmarks[1, 2]).all() and np.isnan(a.landmarks[2, 1]).all()  # "-1 -1" and v = 0
    assert np.isnan(a.landmarks[0]).all()
    assert stats.skipped == {"missing_image": 1} and stats.dropped == {"missing_image": 2}
    assert stats.notes == {"images without a label file (no faces)": 1}
    (_, _), stats = read_yolo_txt(tmp_path / "data/images/train", classes=[0, 2])
    assert stats.dropped["class_not_listed"] == 1
    (labels / "a.txt").write_text("0 120 45 20 30\n")  # pixels, not normalised
    with pytest.raises(LabelError, match=r"a\.txt:1: YOLO coordinates must be normalised.*pixel units"):
        read_yolo_txt(tmp_path / "data/images/train")


def test_corrupt_images_are_skipped_and_counted(tmp_path, caplog):
    good = _jpg(tmp_path / "good.jpg", 40, 50)
    data = good.read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[:-2])  # only the end marker gone (OpenCV < 5 decodes it)
    (tmp_path / "half.jpg").write_bytes(data[: len(data) // 2])  # header intact, pixels cut off
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("not an image")
    names = ["good.jpg", "cut.jpg", "half.jpg", "empty.jpg", "text.jpg", "gone.jpg"]
    (tmp_path / "gt.txt").write_text("".join(f"{n}\n1\n1 1 10 10\n" for n in names))
    node = {"type": "wider_txt", "ann_file": str(tmp_path / "gt.txt"), "img_dir": str(tmp_path)}
    lazy = build(node, DATASETS, transform=None, cache_images=False)
    # the header check catches empty and non-image files and missing ones at load time ...
    assert [r.image_id for r in lazy.records] == ["good.jpg", "cut.jpg", "half.jpg"]
    assert lazy.stats.skipped == {"unreadable_image": 2, "missing_image": 1}
    # ... decoding finds the cut ones; read lazily they become grey images without faces, warned
    # about once and counted, so training goes on
    with caplog.at_level("WARNING"):
        for _ in range(2):
            for i, name in ((1, "cut.jpg"), (2, "half.jpg")):
                item = lazy[i]
                assert item["image"].shape == (40, 50, 3) and (item["image"] == 128).all(), name
                assert len(item["boxes"]) == len(item["ignore"]) == len(item["landmarks"]) == 0
    warned = [r.getMessage() for r in caplog.records if "grey image" in r.getMessage()]
    assert len(warned) == 2 and "cut.jpg" in warned[0] and "half.jpg" in warned[1]  # once each
    assert len(lazy[0]["boxes"]) == 1
    for ds in (lazy, build(node | {"verify_images": True}, DATASETS, transform=None, cache_images=False),
               build(node, DATASETS, transform=None, cache_images=True)):
        if ds is lazy:
            assert lazy.stats.images == 1 and lazy.stats.faces == 1 and sum(lazy.stats.skipped.values()) == 5
            assert sum(lazy.stats.dropped.values()) == 5
            continue
        assert [r.image_id for r in ds.records] == ["good.jpg"] and ds.stats.images == 1 and ds.stats.faces == 1
        assert sum(ds.stats.skipped.values()) == 5 and ds.stats.skipped["unreadable_image"] == 2
        assert sum(ds.stats.dropped.values()) == 5  # the face of every skipped image is counted
        assert len(ds) == 1 and ds[0]["image"].shape == (40, 50, 3)


def test_load_summary_is_logged(tmp_path, caplog):
    _jpg(tmp_path / "a.jpg", 40, 50)
    (tmp_path / "gt.txt").write_text("a.jpg\n2\n1 1 10 10 0 0 0 1 0 0\n-5 -5 3 3\nb.jpg\n1\n1 1 2 2\n")
    with caplog.at_level("INFO"):
        ds = build({"type": "wider_txt", "ann_file": str(tmp_path / "gt.txt"), "img_dir": str(tmp_path)},
                   DATASETS, transform=None, cache_images=False)
    assert isinstance(ds, FaceDataset)
    (msg,) = [r for r in caplog.records if "gt.txt" in r.getMessage()]
    assert msg.levelname == "WARNING"  # something was lost: say so loudly
    text = msg.getMessage()
    for part in ("1 images, 1 faces (1 ignored", "dropped faces: 1 missing_image, 1 outside_image",
                 "missing images: 1", "e.g. missing_image:"):
        assert part in text


@pytest.mark.skipif(not FACEMASK.exists(), reason="facemask data set not present")
def test_facemask_voc_coco_wider_agree():
    d = FACEMASK / "train"
    sets = {
        "voc": read_voc_xml(d / "annotations", d / "images"),
        "coco": read_coco_json(d / "coco.json", d / "images"),
        "wider": read_wider_txt(d / "wider_format.txt", d / "images"),
    }
    for name, (records, stats) in sets.items():
        assert stats.images == len(records) == 683 and stats.faces == 3267, (name, stats.summary())
        assert not stats.skipped and not stats.dropped and stats.ignored == 0
    by_id = {k: {r.image_id: r for r in recs} for k, (recs, _) in sets.items()}
    assert by_id["voc"].keys() == by_id["coco"].keys() == by_id["wider"].keys()
    for image_id, r in by_id["coco"].items():  # the same boxes (the VOC ones clipped like the others)
        np.testing.assert_array_equal(by_id["voc"][image_id].boxes, r.boxes)
        np.testing.assert_array_equal(by_id["wider"][image_id].boxes, r.boxes)


FACES5PT = FACEMASK.parent / "faces5pt"


@pytest.mark.skipif(not FACES5PT.exists(), reason="faces5pt data set not present")
@pytest.mark.parametrize("split,n", [("train", 2693), ("val", 400)])
def test_faces5pt_loads_one_face_with_five_points_per_image(compose_cfg, split, n):
    """RetinaFace label.txt and COCO keypoints give the same faces and points, through the config."""
    d = FACES5PT / split
    retina, rs = read_retinaface_txt(d / "label.txt", d / "images")
    coco, cs = read_coco_json(d / "coco.json", d / "images")
    for records, stats in ((retina, rs), (coco, cs)):
        assert stats.images == len(records) == n and stats.faces == n, stats.summary()
        assert not stats.skipped and not stats.dropped and stats.landmark_counts == (n, 0, 0)
        assert f"faces with 5 / some / no landmarks: {n} / 0 / 0" in stats.summary()
    by_id = {r.image_id: r for r in coco}
    for r in retina:
        np.testing.assert_array_equal(by_id[r.image_id].boxes, r.boxes)
        np.testing.assert_array_equal(by_id[r.image_id].landmarks, r.landmarks)
        lm = r.landmarks[0]  # left = the image's left: the left eye and mouth corner lie left of the others
        assert lm[0, 0] < lm[1, 0] and lm[3, 0] < lm[4, 0], r.image_id
    cfg = compose_cfg(["data=faces5pt", f"data.root={FACES5PT}"])
    ds = build(OmegaConf.to_container(cfg.data[split], resolve=True), DATASETS, where=f"data.{split}")
    assert len(ds) == n and ds.stats.landmark_counts == (n, 0, 0)
