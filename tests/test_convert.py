"""Label conversion and facedet-convert (facedet/cli/convert.py): every format round-trips with
identical boxes; lossy conversions are refused."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from facedet.cli.convert import main
from facedet.data.convert import convert, read_labels, write_labels
from facedet.data.formats import FORMATS
from facedet.data.records import Record

OUT = {"wider": "gt.txt", "retinaface": "label.txt", "coco": "ann.json", "voc": "voc", "yolo": "labels"}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Images plus records with awkward float32 boxes (sub-pixel, touching the border, tiny), ignore
    flags, landmarks with absent points, WIDER attributes, a sub-folder and an image without faces."""
    root = tmp_path_factory.mktemp("conv")
    rng = np.random.default_rng(0)
    records = []
    for k, (h, w) in enumerate([(60, 80), (97, 71), (50, 50)]):
        image_id = f"sub/img{k}.png" if k == 1 else f"img{k}.png"
        path = root / "images" / image_id
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), rng.integers(0, 255, (h, w, 3), np.uint8))
        n = 0 if k == 2 else 5
        xy = rng.uniform(0, [w - 5, h - 5], (n, 2))
        boxes = np.concatenate([xy, xy + rng.uniform(0.3, [w / 3, h / 3], (n, 2))], 1).clip(0, [w, h, w, h])
        if n:
            boxes[0] = [0, 0, w, h]  # the whole image
            boxes[1, :2] = np.float32(1 / 3)
        lm = rng.uniform(0, [w, h], (n, 5, 2)).astype(np.float32)
        if n:
            lm[1] = np.nan
            lm[2, 3] = np.nan
        attrs = rng.integers(0, 3, (n, 6)).astype(np.int16)
        ignore = np.arange(n) % 3 == 2
        attrs[:, 3] = ignore
        records.append(Record(path, image_id, boxes.astype(np.float32), ignore, lm, (h, w), attrs))
    return root, records


def _by_id(records):
    return {r.image_id: r for r in records}


def _same(a: list[Record], b: list[Record], fmt_a: str, fmt_b: str) -> None:
    fa, fb = FORMATS[fmt_a], FORMATS[fmt_b]
    da, db = _by_id(a), _by_id(b)
    assert da.keys() == db.keys()
    for k, ra in da.items():
        rb = db[k]
        assert ra.orig_size == rb.orig_size
        np.testing.assert_array_equal(ra.boxes, rb.boxes)  # identical, not approximately equal
        if fa.ignore and fb.ignore:
            np.testing.assert_array_equal(ra.ignore, rb.ignore)
        if fa.landmarks and fb.landmarks:
            np.testing.assert_array_equal(ra.landmarks, rb.landmarks)  # NaN where absent, on both sides
        if fa.attributes and fb.attributes:
            np.testing.assert_array_equal(ra.attributes, rb.attributes)


@pytest.mark.parametrize("src", sorted(FORMATS))
def test_each_format_writes_and_reads_back_exactly(dataset, tmp_path, src):
    root, records = dataset
    write_labels(records, src, tmp_path / OUT[src])
    opts = {"ignore_class": 1} if src == "yolo" else {}
    back, stats = read_labels(src, tmp_path / OUT[src], root / "images", **opts)
    assert stats.images == 3 and stats.faces == 10 and not stats.dropped and not stats.skipped
    _same(records, back, "coco", src)  # coco holds everything the records carry, bar nothing


@pytest.mark.parametrize("dst", sorted(FORMATS))
@pytest.mark.parametrize("src", sorted(FORMATS))
def test_round_trip_through_every_pair(dataset, tmp_path, src, dst):
    """src -> dst -> src with tools' convert: identical boxes; whatever both formats hold survives."""
    root, records = dataset
    write_labels(records, src, tmp_path / f"a_{OUT[src]}")
    first, _ = read_labels(src, tmp_path / f"a_{OUT[src]}", root / "images",
                           **({"ignore_class": 1} if src == "yolo" else {}))
    convert(src, tmp_path / f"a_{OUT[src]}", root / "images", dst, tmp_path / f"b_{OUT[dst]}", allow_loss=True)
    convert(dst, tmp_path / f"b_{OUT[dst]}", root / "images", src, tmp_path / f"c_{OUT[src]}", allow_loss=True)
    back, _ = read_labels(src, tmp_path / f"c_{OUT[src]}", root / "images",
                          **({"ignore_class": 1} if src == "yolo" else {}))
    _same(first, back, dst, dst)


def test_lossy_conversion_is_refused_naming_what_would_be_lost(dataset, tmp_path):
    root, records = dataset
    n_ignored = sum(int(r.ignore.sum()) for r in records)
    n_with_lm = sum(int(np.isfinite(r.landmarks).any((1, 2)).sum()) for r in records)
    assert n_ignored and n_with_lm
    write_labels(records, "coco", tmp_path / "ann.json")
    with pytest.raises(ValueError, match=rf"retinaface cannot hold.*{n_ignored} ignore flags.*--allow-loss"):
        convert("coco", tmp_path / "ann.json", root / "images", "retinaface", tmp_path / "label.txt")
    with pytest.raises(ValueError, match=rf"{n_with_lm} faces' landmarks.*faces' WIDER attributes"):
        convert("coco", tmp_path / "ann.json", root / "images", "voc", tmp_path / "voc")
    rep = convert("coco", tmp_path / "ann.json", root / "images", "voc", tmp_path / "voc", allow_loss=True)
    assert rep.lost["faces' landmarks"] == n_with_lm and "lost: " in rep.summary()
    assert "ignore flags (written as faces)" not in rep.lost  # VOC has difficult
    assert (tmp_path / "voc/sub/img1.xml").is_file()


def test_convert_tool_command_line(dataset, tmp_path, capsys):
    root, records = dataset
    write_labels(records, "wider", tmp_path / "gt.txt")
    base = ["--from", "wider", "--src", str(tmp_path / "gt.txt"), "--images", str(root / "images")]
    assert main(base + ["--to", "coco", "--out", str(tmp_path / "c.json")]) == 0
    assert "wrote 3 images, 10 faces; lost: nothing" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        main(base + ["--to", "yolo", "--out", str(tmp_path / "labels")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "facedet: error:" in err and "WIDER attributes" in err
    assert not (tmp_path / "labels").exists()  # refused before writing anything


# the formats that hold points, YOLO in both face layouts: (format, yolo_landmarks)
POINT_FORMATS = [("retinaface", "xy"), ("coco", "xy"), ("yolo", "xy"), ("yolo", "xyv")]


@pytest.mark.parametrize("layout,columns", [("xy", 15), ("xyv", 20)])
def test_yolo_writes_either_face_layout_and_reads_it_back_exactly(dataset, tmp_path, layout, columns):
    root, records = dataset
    write_labels(records, "yolo", tmp_path / "labels", landmarks=layout)
    lines = (tmp_path / "labels/img0.txt").read_text().splitlines()
    assert len(lines) == 5 and {len(line.split()) for line in lines} == {columns}
    absent = "-1 -1" if layout == "xy" else "0 0 0"
    assert lines[1].endswith(" ".join([absent] * 5))  # the face without points
    back, stats = read_labels("yolo", tmp_path / "labels", root / "images", ignore_class=1)
    _same(records, back, "coco", "yolo")  # points identical, NaN per point where absent
    assert stats.landmark_counts == (6, 2, 2)  # per image: 3 faces with 5, 1 with 4, 1 with none
    with pytest.raises(ValueError, match="layout must be one of xy, xyv"):
        write_labels(records, "yolo", tmp_path / "x", landmarks="15")


@pytest.mark.parametrize("dst,dst_layout", POINT_FORMATS)
@pytest.mark.parametrize("src,src_layout", POINT_FORMATS)
def test_points_round_trip_through_every_pair_that_holds_them(dataset, tmp_path, src, src_layout, dst, dst_layout):
    """src -> dst -> src keeps every point, and every absent one absent, exactly (per point)."""
    root, records = dataset
    a, b, c = tmp_path / f"a_{OUT[src]}", tmp_path / f"b_{OUT[dst]}", tmp_path / f"c_{OUT[src]}"
    write_labels(records, src, a, **({"landmarks": src_layout} if src == "yolo" else {}))
    convert(src, a, root / "images", dst, b, allow_loss=True, yolo_landmarks=dst_layout)
    convert(dst, b, root / "images", src, c, allow_loss=True, yolo_landmarks=src_layout)
    back, stats = read_labels(src, c, root / "images")
    for r in records:
        got = _by_id(back)[r.image_id]
        np.testing.assert_array_equal(got.landmarks, r.landmarks)
    assert stats.landmark_counts == (6, 2, 2)
    if src == "yolo":
        widths = {len(line.split()) for line in (c / "img0.txt").read_text().splitlines()}
        assert widths == {15 if src_layout == "xy" else 20}


def test_convert_tool_picks_the_yolo_layout(dataset, tmp_path, capsys):
    root, records = dataset
    write_labels(records, "coco", tmp_path / "ann.json")
    base = ["--from", "coco", "--src", str(tmp_path / "ann.json"), "--images", str(root / "images"),
            "--to", "yolo", "--out", str(tmp_path / "labels"), "--allow-loss"]
    assert main(base + ["--yolo-landmarks", "xyv"]) == 0
    out = capsys.readouterr().out
    assert "faces with 5 / some / no landmarks: 6 / 2 / 2" in out.splitlines()[0]  # the "read:" summary
    assert {len(line.split()) for line in (tmp_path / "labels/img0.txt").read_text().splitlines()} == {20}
    with pytest.raises(SystemExit) as e:
        main(base + ["--yolo-landmarks", "xyz"])
    assert e.value.code == 2 and "invalid choice: 'xyz'" in capsys.readouterr().err
