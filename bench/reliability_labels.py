"""The valid little data sets behind bench/reliability_data.py's cases: their JPEGs, their label files
written line by line in each format (``Unit``), the box a reader must make of a face's tokens and
the documented fate of that box, and where a ``LabelError`` about a line must point."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

FORMATS = ("wider", "retinaface", "coco", "voc", "yolo")
DECODE_FAIL = "truncated_image|undecodable_image"  # either is right for a JPEG cut after its header
SIZES = ((40, 50), (33, 61), (48, 48), (64, 40))  # (H, W) of the generated JPEGs
COORDS = {"yolo": [1, 2, 3, 4]}  # token positions of the 4 box numbers (default 0-3)
NODES = {"wider": ("wider_txt", "gt.txt"), "retinaface": ("retinaface_txt", "label.txt"),
         "coco": ("coco_json", "ann.json"), "voc": ("voc_xml", "ann"), "yolo": ("yolo_txt", "labels")}


@dataclass
class Unit:
    """One line of a label file: plain ``text``, or a face (``tokens``) / image entry (``tag``)."""

    text: str = ""
    tag: tuple = ()  # ("img", k) or ("face", k, j)
    tokens: list[str] | None = None
    section: str = ""  # json list the line is an entry of ("images" / "annotations")
    omit: tuple[str, ...] = ()  # json keys / xml elements left out
    extra: str = ""  # appended json keys / xml elements


@dataclass
class Expect:
    faces: int  # faces in the input (kept + dropped must equal this)
    images: int  # images listed in the input (kept + skipped)
    error: tuple[Path, str] | None = None  # a LabelError must name this file and this locator
    dropped: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)


@dataclass
class Case:
    kind: str
    fmt: str
    node: dict
    expect: Expect
    verify: bool = False
    break_after_load: list[tuple[Path, int]] = field(default_factory=list)  # (file, bytes kept)


def _jpegs() -> dict[tuple[int, int], bytes]:
    rng = np.random.default_rng(0)
    out = {}
    for h, w in (*SIZES, *((h + 9, w - 7) for h, w in SIZES)):
        img = cv2.GaussianBlur(rng.integers(0, 255, (h, w, 3), np.uint8), (5, 5), 2)
        out[h, w] = cv2.imencode(".jpg", img)[1].tobytes()
    return out


JPEGS = _jpegs()


def num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() and abs(v) < 1e15 else repr(float(v))


def face_tokens(fmt: str, box: list[float], h: int, w: int) -> list[str]:
    x1, y1, x2, y2 = box
    if fmt == "yolo":
        return ["0"] + [repr(v) for v in ((x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h)]
    if fmt == "voc":
        return [num(v) for v in box]
    toks = [num(x1), num(y1), num(x2 - x1), num(y2 - y1)]
    if fmt == "wider":
        return toks + ["0"] * 6
    if fmt == "retinaface":  # five landmarks at the centre, flag 0
        return toks + [num((x1 + x2) / 2), num((y1 + y2) / 2), "0.0"] * 5
    return toks


def decode(fmt: str, toks: list[str], h: int, w: int) -> np.ndarray | None:
    """xyxy the reader must make of a face's box tokens; None where it must refuse the line."""
    try:
        v = np.array([float(toks[i]) for i in COORDS.get(fmt, [0, 1, 2, 3])], np.float64)
    except ValueError:
        return None
    if not np.isfinite(v).all() or (fmt == "yolo" and (v > 1.5).any()):  # yolo: pixel units are an error
        return None
    if fmt == "voc":
        return v
    if fmt == "yolo":
        c, s = v[:2] * [w, h], v[2:] * [w, h]
        return np.concatenate([c - s / 2, c + s / 2])
    return np.concatenate([v[:2], v[:2] + v[2:]])


def fate(b: np.ndarray, h: int, w: int) -> str:
    """The documented rule: no area -> nonpositive_size; nothing inside -> outside_image; else kept."""
    if b[2] <= b[0] or b[3] <= b[1]:
        return "nonpositive_size"
    x1, x2 = np.clip(b[[0, 2]], 0, w)
    y1, y2 = np.clip(b[[1, 3]], 0, h)
    return "outside_image" if x2 <= x1 or y2 <= y1 else "kept"


def _face_text(fmt: str, u: Unit) -> str:
    if fmt == "coco":
        k, j = u.tag[1], u.tag[2]
        keys = {"id": str(100 * k + j + 1), "image_id": str(k + 1), "category_id": "1",
                "bbox": "[" + ", ".join(u.tokens) + "]", "iscrowd": "0"}
        return "{" + ", ".join(f'"{key}": {v}' for key, v in keys.items() if key not in u.omit) + u.extra + "}"
    if fmt == "voc":
        box = "".join(f"<{t}>{v}</{t}>" for t, v in zip(("xmin", "ymin", "xmax", "ymax"), u.tokens, strict=True)
                      if t not in u.omit)
        box = "" if "bndbox" in u.omit else f"<bndbox>{box}</bndbox>"
        return f"<object>{u.text or '<name>face</name>'}<difficult>0</difficult>{box}{u.extra}</object>"
    return " ".join(u.tokens)


def render(fmt: str, units: list[Unit]) -> str:
    lines = []
    for i, u in enumerate(units):
        text = u.text if u.tokens is None else _face_text(fmt, u)
        if u.section and i + 1 < len(units) and units[i + 1].section == u.section:
            text += ","
        lines.append(text)
    return "".join(line + "\n" for line in lines)


def _faces(fmt: str, k: int, im: dict) -> list[Unit]:
    return [Unit(tag=("face", k, j), tokens=face_tokens(fmt, b, im["h"], im["w"]),
                 section="annotations" if fmt == "coco" else "") for j, b in enumerate(im["boxes"])]


def _per_image_docs(fmt: str, root: Path, imgs: list[dict]) -> dict[Path, list[Unit]]:
    """VOC / YOLO: one label file per image."""
    docs = {}
    for k, im in enumerate(imgs):
        units = _faces(fmt, k, im)
        if fmt == "voc":
            size = f"<size><width>{im['w']}</width><height>{im['h']}</height><depth>3</depth></size>"
            units = [Unit("<annotation>"), Unit(f"<filename>{im['name']}</filename>", ("img", k)), Unit(size),
                     *units, Unit("</annotation>")]
        docs[root / NODES[fmt][1] / f"{Path(im['name']).stem}.{'xml' if fmt == 'voc' else 'txt'}"] = units
    return docs


def _coco_units(imgs: list[dict]) -> list[Unit]:
    units = [Unit('{"images": [')]
    for k, im in enumerate(imgs):
        entry = {"id": k + 1, "file_name": im["name"], "width": im["w"], "height": im["h"]}
        units.append(Unit(json.dumps(entry), ("img", k), section="images"))
    units += [Unit("],"), Unit('"annotations": [')]
    units += [u for k, im in enumerate(imgs) for u in _faces("coco", k, im)]
    return [*units, Unit("]}")]


def _text_units(fmt: str, imgs: list[dict]) -> list[Unit]:
    """WIDER / RetinaFace: one file, each image's line followed by its faces."""
    units: list[Unit] = []
    for k, im in enumerate(imgs):
        if fmt == "wider":
            units += [Unit(im["name"], ("img", k)), Unit(str(len(im["boxes"])), ("count", k)), *_faces(fmt, k, im)]
            units += [] if im["boxes"] else [Unit("0 0 0 0 0 0 0 0 0 0")]
        else:
            size = f" {im['w']} {im['h']}" if im.get("declare") else ""
            units += [Unit(f"# {im['name']}{size}", ("img", k)), *_faces(fmt, k, im)]
    return units


def write_images(root: Path, rng: np.random.Generator) -> list[dict]:
    """1-3 JPEGs with 0-3 faces each (image 0 has one at least: a face to corrupt)."""
    (root / "images").mkdir(parents=True)
    imgs = []
    for k in range(int(rng.integers(1, 4))):
        h, w = SIZES[int(rng.integers(len(SIZES)))]
        boxes = []
        for _ in range(int(rng.integers(1 if k == 0 else 0, 4))):
            x1, y1 = int(rng.integers(0, w - 12)), int(rng.integers(0, h - 12))
            boxes.append([x1, y1, x1 + int(rng.integers(2, 12)), y1 + int(rng.integers(2, 12))])
        imgs.append({"name": f"i{k}.jpg", "h": h, "w": w, "boxes": boxes, "declare": rng.random() < 0.5})
        (root / "images" / f"i{k}.jpg").write_bytes(JPEGS[h, w])
    return imgs


def docs_for(fmt: str, root: Path, imgs: list[dict]) -> dict[Path, list[Unit]]:
    """The label files of a valid case, as lines."""
    if fmt in ("voc", "yolo"):
        return _per_image_docs(fmt, root, imgs)
    return {root / NODES[fmt][1]: _coco_units(imgs) if fmt == "coco" else _text_units(fmt, imgs)}


def write_labels(fmt: str, docs: dict[Path, list[Unit]], bad: Path, encoding: str, raw: bytes | None) -> None:
    """Write the label files: ``bad`` (the corrupted one) in ``encoding`` or as ``raw`` bytes where given,
    the others in UTF-8."""
    for path, units in docs.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        if raw is not None and path == bad:
            path.write_bytes(raw)
        else:
            path.write_bytes(render(fmt, units).encode(encoding if path == bad else "utf-8"))


def locate(fmt: str, path: Path, units: list[Unit], unit: Unit, line: bool = False) -> str:
    """What a LabelError about ``unit`` must contain: ``file:line:``, or the json / xml element."""
    i = next(i for i, u in enumerate(units) if u is unit)
    if fmt == "coco" and unit.section and not line:
        return f"{unit.section}[{sum(u.section == unit.section for u in units[:i])}]"
    if fmt == "voc" and unit.tag[:1] == ("face",) and not line:
        return f"object {sum(u.tag[:1] == ('face',) for u in units[:i])}"
    return f"{path}:{i + 1}:"


def expected_error(fmt: str, docs: dict[Path, list[Unit]], err: tuple | None) -> tuple[Path, str] | None:
    """What the expected LabelError must name: the file, and its line or json / xml element. ``err``
    is (file, Unit / number of good lines before the bad bytes / None for line 1 or the file, line)."""
    if err is None:
        return None
    path, unit, line = err
    if unit is None:
        return path, f"{path}:1:" if line else str(path)
    if isinstance(unit, int):  # binary garbage after ``unit`` good lines
        return path, f"{path}:{unit + 1}:"
    return path, locate(fmt, path, docs[path], unit, line)


def node_for(fmt: str, root: Path) -> dict:
    """The dataset config node of a case written under ``root``."""
    typ, name = NODES[fmt]
    key = {"voc": "ann_dir", "yolo": "label_dir"}.get(fmt, "ann_file")
    return {"type": typ, "img_dir": str(root / "images"), key: str(root / name)}
