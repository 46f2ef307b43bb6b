"""Fuzz the readers and the image loading with hundreds of generated malformed label files and
broken images. Every case must end in a clear error (LabelError naming the file) or a load whose
every face and image is accounted for: never a crash from deep inside, never a silent drop."""

from __future__ import annotations

import json
import re
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from facedet.data import FaceDataset, LabelError, build_transforms
from facedet.data.convert import read_labels, write_labels
from facedet.data.records import Record

CASES_PER_FORMAT = 100  # x 5 formats, plus the broken images
OUT = {"wider": "gt.txt", "retinaface": "label.txt", "coco": "ann.json", "voc": "voc", "yolo": "labels"}
JUNK = ["", "x", "-1", "0", "1e309", "nan", "inf", "-0", "1e-320", "12abc", "0x1F", "1,5", "é", "\t", "#",
        "99999999999999999999", "3.5e2", "[", "{", "}", "<", "null", "true", '"', "\\", "1_000", "--", "0 0 0 0"]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A valid little data set (images + records) to mutate."""
    root = tmp_path_factory.mktemp("fuzz")
    rng = np.random.default_rng(1)
    records = []
    for k, (h, w) in enumerate([(40, 50), (33, 61), (48, 48)]):
        path = root / "images" / f"i{k}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), rng.integers(0, 255, (h, w, 3), np.uint8))
        n = 3
        xy = rng.uniform(0, [w - 8, h - 8], (n, 2))
        boxes = np.concatenate([xy, xy + rng.uniform(2, 8, (n, 2))], 1).astype(np.float32)
        lm = np.repeat(((boxes[:, :2] + boxes[:, 2:]) / 2)[:, None], 5, 1).astype(np.float32)
        records.append(Record(path, f"i{k}.jpg", boxes, np.array([False, True, False]), lm, (h, w),
                              np.zeros((n, 6), np.int16)))
    return root, records


def _files(out: Path) -> list[Path]:
    return sorted(p for p in out.rglob("*") if p.is_file()) if out.is_dir() else [out]


def _mutate_text(text: str, rng: np.random.Generator) -> str:
    lines = text.split("\n")
    for _ in range(int(rng.integers(1, 4))):
        kind = int(rng.integers(8))
        i = int(rng.integers(len(lines))) if lines else 0
        if kind == 0 and lines:  # replace a token
            tok = lines[i].split(" ")
            tok[int(rng.integers(len(tok)))] = str(rng.choice(JUNK))
            lines[i] = " ".join(tok)
        elif kind == 1 and lines:  # delete a line
            del lines[i]
        elif kind == 2 and lines:  # duplicate a line
            lines.insert(i, lines[i])
        elif kind == 3:  # insert junk
            lines.insert(i, " ".join(str(rng.choice(JUNK)) for _ in range(int(rng.integers(1, 12)))))
        elif kind == 4:  # cut the file short
            return "\n".join(lines)[: int(rng.integers(0, max(1, len(text))))]
        elif kind == 5 and lines:  # drop a token
            tok = lines[i].split(" ")
            del tok[int(rng.integers(len(tok)))]
            lines[i] = " ".join(tok)
        elif kind == 6 and lines:  # scale every number on a line (wrong units)
            lines[i] = re.sub(r"\d+\.?\d*", lambda m: str(float(m.group()) * 997), lines[i])
        elif kind == 7 and len(lines) > 1:  # swap two lines
            j = int(rng.integers(len(lines)))
            lines[i], lines[j] = lines[j], lines[i]
    return "\n".join(lines)


def _mutate_json(text: str, rng: np.random.Generator) -> str:
    if rng.random() < 0.4:
        return _mutate_text(text, rng)
    data = json.loads(text)
    bad = [None, "12", [1, 2, 3], [1, "2", 3, 4], {"a": 1}, -5, 1e308, True, [float("1e20")] * 4, []]
    for _ in range(int(rng.integers(1, 3))):
        section = ["images", "annotations"][int(rng.integers(2))]
        items = data[section]
        if not items:
            continue
        item = items[int(rng.integers(len(items)))]
        key = str(rng.choice(list(item) + ["keypoints", "attributes", "iscrowd"]))
        if rng.random() < 0.2:
            item.pop(key, None)
        else:
            item[key] = bad[int(rng.integers(len(bad)))]
    return json.dumps(data)


def _mutate_xml(text: str, rng: np.random.Generator) -> str:
    if rng.random() < 0.4:
        return _mutate_text(text, rng)
    values = list(re.finditer(r">([^<>]*)<", text))
    for _ in range(int(rng.integers(1, 3))):
        m = values[int(rng.integers(len(values)))]
        if rng.random() < 0.7:  # an element's text
            text = text[: m.start(1)] + str(rng.choice(JUNK)).replace("<", "") + text[m.end(1) :]
        else:  # an element removed
            text = re.sub(r"<(xmin|ymax|difficult|name|width|bndbox)>.*?</\1>", "", text, count=1, flags=re.S)
        values = list(re.finditer(r">([^<>]*)<", text))
    return text


def _expected_faces(fmt: str, out: Path) -> int | None:
    """The face entries in a label file that read without error, counted independently of the readers
    (None where the format makes that a parse of its own: wider)."""
    if fmt == "yolo":
        return sum(1 for f in _files(out) if f.name != "classes.txt" for line in f.read_text().splitlines()
                   if line.strip())
    if fmt == "retinaface":
        return sum(1 for line in out.read_text().splitlines() if line.strip() and not line.strip().startswith("#"))
    if fmt == "voc":
        return sum(f.read_text().count("<object>") for f in _files(out))
    if fmt == "coco":
        return len(json.loads(out.read_text(encoding="utf-8-sig")).get("annotations", []))
    return None


@pytest.mark.parametrize("fmt", sorted(OUT))
def test_fuzzed_label_files(base, tmp_path, fmt):
    root, records = base
    outcomes = {"error": 0, "loaded": 0}
    for case in range(CASES_PER_FORMAT):
        rng = np.random.default_rng([case, len(fmt)])
        out = tmp_path / f"{case}" / OUT[fmt]
        write_labels(records, fmt, out)
        files = [f for f in _files(out)]
        for f in [files[int(rng.integers(len(files)))]] if rng.random() < 0.7 else files:
            text = f.read_text()
            mutate = {"coco": _mutate_json, "voc": _mutate_xml}.get(fmt, _mutate_text)
            f.write_text(mutate(text, rng))
        if rng.random() < 0.1:  # binary garbage in a label file
            f = files[0]
            f.write_bytes(f.read_bytes()[:20] + bytes(rng.integers(0, 256, 64, dtype=np.uint8)))
        where = f"case {case} ({fmt}): {out}"
        try:
            recs, stats = read_labels(fmt, out, root / "images", **({"ignore_class": 1} if fmt == "yolo" else {}))
        except LabelError as e:
            assert str(out) in str(e) or any(str(f) in str(e) for f in _files(out)), f"{where}: {e}"
            outcomes["error"] += 1
            continue
        except Exception as e:  # anything else is a crash from deep inside
            pytest.fail(f"{where}: {type(e).__name__}: {e}")
        outcomes["loaded"] += 1
        # everything accounted for: kept + dropped (by reason) == the faces in the file
        assert stats.faces == sum(len(r.boxes) for r in recs) and stats.images == len(recs), where
        expected = _expected_faces(fmt, out)
        if expected is not None:
            assert stats.faces + sum(stats.dropped.values()) == expected, f"{where}: {stats.summary()}"
        for r in recs:
            h, w = r.orig_size
            assert r.boxes.dtype == np.float32 and np.isfinite(r.boxes).all(), where
            assert (r.boxes[:, 2] > r.boxes[:, 0]).all() and (r.boxes[:, 3] > r.boxes[:, 1]).all(), where
            assert (r.boxes >= 0).all() and (r.boxes[:, [0, 2]] <= w).all() and (r.boxes[:, [1, 3]] <= h).all()
            assert r.landmarks.shape == (len(r.boxes), 5, 2) and r.ignore.dtype == bool, where
        if recs:  # and what loaded goes through the training pipeline
            ds = FaceDataset(recs, transform=build_transforms([{"type": "hflip", "p": 1.0}], 64), stats=stats)
            for i in range(len(ds)):
                assert ds[i]["image"].shape == (3, 64, 64), where
    assert outcomes["error"] > 5 and outcomes["loaded"] > 5, outcomes  # the fuzzing reached both outcomes


def _broken_images(good: bytes, png: bytes, rng: np.random.Generator) -> list[bytes]:
    out = [b"", b"\xff\xd8", b"\x89PNG\r\n\x1a\n", b"GIF89a" + bytes(20), b"not an image at all"]
    out += [good[: int(rng.integers(1, len(good)))] for _ in range(15)]  # cut short
    out += [png[: int(rng.integers(1, len(png)))] for _ in range(10)]
    for _ in range(15):  # bytes flipped inside
        b = bytearray(good)
        for _ in range(int(rng.integers(1, 20))):
            b[int(rng.integers(2, len(b)))] = int(rng.integers(256))
        out.append(bytes(b))
    out += [bytes(rng.integers(0, 256, int(rng.integers(1, 4000)), dtype=np.uint8)) for _ in range(10)]
    # a PNG header claiming 40000 x 40000 pixels (a decompression bomb): refused at the header
    ihdr = b"IHDR" + (40000).to_bytes(4, "big") * 2 + bytes([8, 2, 0, 0, 0])
    out.append(b"\x89PNG\r\n\x1a\n" + (13).to_bytes(4, "big") + ihdr + zlib.crc32(ihdr).to_bytes(4, "big"))
    return out


def test_fuzzed_images(tmp_path):
    rng = np.random.default_rng(5)
    img = cv2.GaussianBlur(rng.integers(0, 255, (48, 64, 3), np.uint8), (5, 5), 2)
    good = cv2.imencode(".jpg", img)[1].tobytes()
    png = cv2.imencode(".png", img)[1].tobytes()
    broken = _broken_images(good, png, rng)
    lines = []
    for k, data in enumerate(broken):
        ext = ".png" if data.startswith(b"\x89PNG") else ".jpg"
        (tmp_path / f"b{k}{ext}").write_bytes(data)
        lines += [f"b{k}{ext}", "1", "2 2 20 20"]
    (tmp_path / "gt.txt").write_text("\n".join(lines) + "\n")
    from facedet.registry import DATASETS, build

    node = {"type": "wider_txt", "ann_file": str(tmp_path / "gt.txt"), "img_dir": str(tmp_path)}
    for cache, verify in ((True, False), (False, True)):
        ds = build(node | {"verify_images": verify}, DATASETS, transform=build_transforms([], 64), cache_images=cache)
        st = ds.stats
        # every image is either usable or skipped and counted, with its face
        assert len(ds) + sum(st.skipped.values()) == len(broken), st.summary()
        assert st.faces + sum(st.dropped.values()) == len(broken), st.summary()
        assert sum(st.skipped.values()) > len(broken) // 2, st.summary()
        for i in range(len(ds)):
            assert ds[i]["image"].shape == (3, 64, 64)
    lazy = build(node, DATASETS, transform=None, cache_images=False)
    for i in range(len(lazy)):  # without decoding up front: each image loads or names itself
        try:
            lazy[i]
        except ValueError as e:
            assert lazy.records[i].image_id in str(e)
