"""The reliability fuzz (``bench/reliability_data.py``) on 150 cases, and one regression test per
crash or silent loss it found in the readers and the dataset."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from bench.reliability_data import FORMATS, KINDS, fuzz
from facedet.data import build_dataloader, build_transforms
from facedet.data.formats import read_coco_json, read_retinaface_txt, read_voc_xml, read_wider_txt, read_yolo_txt
from facedet.data.records import LabelError
from facedet.registry import DATASETS, build


def test_fuzz_150_cases_no_crash_no_silent_drop(tmp_path: Path) -> None:
    results = fuzz(150, 1, tmp_path)
    assert {r["kind"] for r in results} == set(KINDS) and {r["fmt"] for r in results} == set(FORMATS)
    for flag in ("crash", "silent", "no_file", "no_line", "wrong"):
        bad = [f"case {r['case']} ({r['kind']}, {r['fmt']}): {r[flag]}" for r in results if r[flag]]
        assert not bad, f"{flag}:\n" + "\n".join(bad[:5])
    # the corruptions reached every outcome: errors, dropped faces, skipped images
    reasons = {reason for r in results for reason, _ in r["reasons"]}
    assert {"LabelError", "nonpositive_size", "outside_image", "missing_image", "unreadable_image",
            "size_mismatch", "undecodable_image"} <= reasons, reasons


def _jpg(path: Path, h: int = 40, w: int = 50, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.random.default_rng(seed).integers(0, 255, (h, w, 3), np.uint8))
    return path


def _coco(tmp_path: Path, images: list[dict], anns: list[dict]) -> Path:
    _jpg(tmp_path / "a.jpg")
    (tmp_path / "ann.json").write_text(json.dumps({"images": images, "annotations": anns}))
    return tmp_path / "ann.json"


def test_coco_integer_beyond_float_range_is_a_label_error(tmp_path: Path) -> None:
    # was OverflowError from numpy: json reads 1e400 written out as an exact Python int
    ann = _coco(tmp_path, [{"id": 1, "file_name": "a.jpg"}], [{"id": 7, "image_id": 1, "bbox": [1, 1, 5, 5]}])
    ann.write_text(ann.read_text().replace("[1, 1, 5, 5]", "[1, " + "1" + "0" * 400 + ", 5, 5]"))
    with pytest.raises(LabelError, match=r"ann\.json: annotations\[0\] \(id 7\) bbox: non-finite"):
        read_coco_json(ann, tmp_path)


def test_coco_not_utf8_names_the_line(tmp_path: Path) -> None:
    ann = _coco(tmp_path, [{"id": 1, "file_name": "a.jpg"}], [])
    ann.write_bytes(b'{"images": [\n{"id": 1, "file_name": "caf\xe9.jpg"}\n]}')  # latin-1
    with pytest.raises(LabelError, match=r"ann\.json:2: not UTF-8"):
        read_coco_json(ann, tmp_path)


@pytest.mark.parametrize("value", ["0", [1], None, 2])
def test_coco_iscrowd_must_be_0_or_1(tmp_path: Path, value: object) -> None:
    # "0" read as true made the face silently ignored
    ann = _coco(tmp_path, [{"id": 1, "file_name": "a.jpg"}],
                [{"id": 3, "image_id": 1, "bbox": [1, 1, 5, 5], "iscrowd": value}])
    with pytest.raises(LabelError, match=r"annotations\[0\] \(id 3\) iscrowd: expected 0 or 1"):
        read_coco_json(ann, tmp_path)
    ann.write_text(ann.read_text().replace(json.dumps(value), "true"))
    assert read_coco_json(ann, tmp_path)[0][0].ignore.tolist() == [True]


def test_an_image_listed_twice_is_a_label_error(tmp_path: Path) -> None:
    # two records of one image: evaluation matched predictions to one, the other's faces all missed
    _jpg(tmp_path / "a.jpg")
    (tmp_path / "gt.txt").write_text("a.jpg\n1\n1 1 5 5\nb.jpg\n0\n0 0 0 0\na.jpg\n1\n2 2 5 5\n")
    with pytest.raises(LabelError, match=r"gt\.txt:7: image 'a\.jpg' is listed again \(first at .*gt\.txt:1\)"):
        read_wider_txt(tmp_path / "gt.txt", tmp_path)
    (tmp_path / "label.txt").write_text("# a.jpg\n1 1 5 5\n# a.jpg\n")
    with pytest.raises(LabelError, match=r"label\.txt:3: image 'a\.jpg' is listed again"):
        read_retinaface_txt(tmp_path / "label.txt", tmp_path)
    ann = _coco(tmp_path, [{"id": 1, "file_name": "a.jpg"}, {"id": 2, "file_name": "a.jpg"}], [])
    with pytest.raises(LabelError, match=r"images\[1\]: image 'a\.jpg' is listed again .*images\[0\]"):
        read_coco_json(ann, tmp_path)
    xml = "<annotation><filename>a.jpg</filename><object><name>face</name><bndbox><xmin>1</xmin><ymin>1" \
          "</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></object></annotation>"
    for name in ("a.xml", "a_copy.xml"):  # an xml copied without editing <filename>
        (tmp_path / "voc" / name).parent.mkdir(exist_ok=True)
        (tmp_path / "voc" / name).write_text(xml)
    with pytest.raises(LabelError, match=r"a_copy\.xml: image 'a\.jpg' is listed again \(first at .*a\.xml\)"):
        read_voc_xml(tmp_path / "voc", tmp_path)


def test_line_numbers_count_only_line_breaks(tmp_path: Path) -> None:
    # str.splitlines() also splits at \f, \v, \x1c-\x1e, \x85, \u2028: errors named line 3 here
    _jpg(tmp_path / "images" / "a.jpg")
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "a.txt").write_text("0 0.5 0.5 0.1 0.1\f\n0 0.5 x 0.1 0.1\n")
    with pytest.raises(LabelError, match=r"a\.txt:2: expected numbers"):
        read_yolo_txt(tmp_path / "images")


def test_folders_named_like_label_files_are_not_read(tmp_path: Path) -> None:
    # were IsADirectoryError
    _jpg(tmp_path / "images" / "a.jpg")
    (tmp_path / "labels" / "old.txt").mkdir(parents=True)
    recs, stats = read_yolo_txt(tmp_path / "images")
    assert len(recs) == 1 and not stats.skipped
    (tmp_path / "voc" / "backup.xml").mkdir(parents=True)
    recs, stats = read_voc_xml(tmp_path / "voc", tmp_path / "images")
    assert recs == [] and stats.images == 0 and not stats.skipped


def test_duplicate_boxes_are_kept_and_noted(tmp_path: Path) -> None:
    _jpg(tmp_path / "a.jpg")
    (tmp_path / "label.txt").write_text("# a.jpg\n1 1 5 5\n1 1 5 5\n3 3 6 6\n")
    recs, stats = read_retinaface_txt(tmp_path / "label.txt", tmp_path)
    assert len(recs[0].boxes) == 3 and stats.notes == {"duplicate boxes (kept)": 1}
    assert "notes: 1 duplicate boxes (kept)" in stats.summary()


def test_training_loader_survives_an_image_cut_short_after_loading(tmp_path: Path, caplog) -> None:
    names = ["a.jpg", "b.jpg", "c.jpg", "d.jpg"]
    for k, name in enumerate(names):
        _jpg(tmp_path / name, seed=k)
    (tmp_path / "gt.txt").write_text("".join(f"{n}\n1\n2 2 10 10\n" for n in names))
    node = {"type": "wider_txt", "ann_file": str(tmp_path / "gt.txt"), "img_dir": str(tmp_path),
            "verify_images": True}
    ds = build(node, DATASETS, transform=build_transforms([], 64), cache_images=False)
    data = (tmp_path / "b.jpg").read_bytes()
    (tmp_path / "b.jpg").write_bytes(data[: len(data) // 2])  # the header still reads, the pixels do not
    with caplog.at_level("WARNING"):
        batches = list(build_dataloader(ds, batch_size=2, shuffle=False, num_workers=0, seed=0))
    assert len(batches) == 2 and batches[0]["images"].shape == (2, 3, 64, 64)
    assert [len(t["boxes"]) for b in batches for t in b["targets"]] == [1, 0, 1, 1]  # b.jpg: grey, no faces
    assert "b.jpg" in caplog.text and "grey image" in caplog.text
    st = ds.stats
    assert (st.images, st.faces, st.skipped["undecodable_image"], st.dropped["undecodable_image"]) == (3, 3, 1, 1)
