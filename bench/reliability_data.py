"""Fuzzed label files and images through every reader and the whole dataset path, each case checked
against an outcome the generator works out itself (not by asking the readers).

    python bench/reliability_data.py --n 1000 --seed 0

A case is a small valid data set (1-3 JPEGs, 0-3 faces each) in one label format (WIDER txt,
RetinaFace label.txt, COCO json, VOC xml, YOLO txt) with one corruption of one kind (``KINDS``). The
generator writes the labels itself, line by line, so it knows what each corruption must cost: a face
dropped with a reason, an image skipped with a reason, a ``LabelError`` naming the file and line (or
json/xml element), or nothing. The case is then built as its registered dataset and every item read
through letterbox + to-tensor, with ``verify_images`` on or off; for ``unreadable_after_load`` the
image is cut short after the dataset was built. Per case it checks: no exception other than
``LabelError`` (crash); faces in == kept + dropped and images in == kept + skipped (else a silent
drop); errors name the file and the line; the dropped / skipped reasons are the expected ones.
``tests/test_reliability_data.py`` runs the same generator on 150 cases.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from facedet.data import LabelError, build_transforms  # noqa: E402
from facedet.registry import DATASETS, ConfigError, build  # noqa: E402

FORMATS = ("wider", "retinaface", "coco", "voc", "yolo")
KINDS = (
    "valid", "nonfinite_coord", "negative_coord", "huge_coord", "zero_or_negative_size", "non_numeric",
    "missing_field", "extra_field", "duplicated_line", "empty_file", "latin1", "utf16", "utf8_bom",
    "binary_garbage", "truncated_jpeg", "broken_image", "missing_image", "wrong_image_size",
    "unreadable_after_load",
)
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


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() and abs(v) < 1e15 else repr(float(v))


def _face_tokens(fmt: str, box: list[float], h: int, w: int) -> list[str]:
    x1, y1, x2, y2 = box
    if fmt == "yolo":
        return ["0"] + [repr(v) for v in ((x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h)]
    if fmt == "voc":
        return [_num(v) for v in box]
    toks = [_num(x1), _num(y1), _num(x2 - x1), _num(y2 - y1)]
    if fmt == "wider":
        return toks + ["0"] * 6
    if fmt == "retinaface":  # five landmarks at the centre, flag 0
        return toks + [_num((x1 + x2) / 2), _num((y1 + y2) / 2), "0.0"] * 5
    return toks


def _decode(fmt: str, toks: list[str], h: int, w: int) -> np.ndarray | None:
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


def _fate(b: np.ndarray, h: int, w: int) -> str:
    """The documented rule: no area -> nonpositive_size; nothing inside -> outside_image; else kept."""
    if b[2] <= b[0] or b[3] <= b[1]:
        return "nonpositive_size"
    x1, x2 = np.clip(b[[0, 2]], 0, w)
    y1, y2 = np.clip(b[[1, 3]], 0, h)
    return "outside_image" if x2 <= x1 or y2 <= y1 else "kept"


def _render(fmt: str, units: list[Unit]) -> str:
    lines = []
    for i, u in enumerate(units):
        text = u.text
        if u.tokens is not None and fmt == "coco":
            k, j = u.tag[1], u.tag[2]
            keys = {"id": str(100 * k + j + 1), "image_id": str(k + 1), "category_id": "1",
                    "bbox": "[" + ", ".join(u.tokens) + "]", "iscrowd": "0"}
            text = "{" + ", ".join(f'"{key}": {v}' for key, v in keys.items() if key not in u.omit) + u.extra + "}"
        elif u.tokens is not None and fmt == "voc":
            box = "".join(f"<{t}>{v}</{t}>" for t, v in zip(("xmin", "ymin", "xmax", "ymax"), u.tokens, strict=True)
                          if t not in u.omit)
            box = "" if "bndbox" in u.omit else f"<bndbox>{box}</bndbox>"
            text = f"<object>{u.text or '<name>face</name>'}<difficult>0</difficult>{box}{u.extra}</object>"
        elif u.tokens is not None:
            text = " ".join(u.tokens)
        if u.section and i + 1 < len(units) and units[i + 1].section == u.section:
            text += ","
        lines.append(text)
    return "".join(line + "\n" for line in lines)


def _docs(fmt: str, root: Path, imgs: list[dict]) -> dict[Path, list[Unit]]:
    """The label files of a valid case, as lines."""
    def faces(k: int, im: dict) -> list[Unit]:
        return [Unit(tag=("face", k, j), tokens=_face_tokens(fmt, b, im["h"], im["w"]),
                     section="annotations" if fmt == "coco" else "") for j, b in enumerate(im["boxes"])]

    if fmt in ("voc", "yolo"):
        docs = {}
        for k, im in enumerate(imgs):
            units = faces(k, im)
            if fmt == "voc":
                size = f"<size><width>{im['w']}</width><height>{im['h']}</height><depth>3</depth></size>"
                units = [Unit("<annotation>"), Unit(f"<filename>{im['name']}</filename>", ("img", k)), Unit(size),
                         *units, Unit("</annotation>")]
            docs[root / NODES[fmt][1] / f"{Path(im['name']).stem}.{'xml' if fmt == 'voc' else 'txt'}"] = units
        return docs
    units: list[Unit] = []
    if fmt == "coco":
        units.append(Unit('{"images": ['))
        for k, im in enumerate(imgs):
            entry = {"id": k + 1, "file_name": im["name"], "width": im["w"], "height": im["h"]}
            units.append(Unit(json.dumps(entry), ("img", k), section="images"))
        units += [Unit("],"), Unit('"annotations": [')]
        units += [u for k, im in enumerate(imgs) for u in faces(k, im)]
        units.append(Unit("]}"))
    for k, im in enumerate(imgs):
        if fmt == "wider":
            units += [Unit(im["name"], ("img", k)), Unit(str(len(im["boxes"])), ("count", k)), *faces(k, im)]
            units += [] if im["boxes"] else [Unit("0 0 0 0 0 0 0 0 0 0")]
        elif fmt == "retinaface":
            size = f" {im['w']} {im['h']}" if im.get("declare") else ""
            units += [Unit(f"# {im['name']}{size}", ("img", k)), *faces(k, im)]
    return {root / NODES[fmt][1]: units}


def _locate(fmt: str, path: Path, units: list[Unit], unit: Unit, line: bool = False) -> str:
    """What a LabelError about ``unit`` must contain: ``file:line:``, or the json / xml element."""
    i = next(i for i, u in enumerate(units) if u is unit)
    if fmt == "coco" and unit.section and not line:
        return f"{unit.section}[{sum(u.section == unit.section for u in units[:i])}]"
    if fmt == "voc" and unit.tag[:1] == ("face",) and not line:
        return f"object {sum(u.tag[:1] == ('face',) for u in units[:i])}"
    return f"{path}:{i + 1}:"


def make_case(root: Path, kind: str, fmt: str, rng: np.random.Generator) -> Case:
    """Write a valid little data set in ``fmt`` under ``root``, corrupt it as ``kind`` says, and
    return it with the outcome that corruption must have."""
    (root / "images").mkdir(parents=True)
    imgs = []
    for k in range(int(rng.integers(1, 4))):
        h, w = SIZES[int(rng.integers(len(SIZES)))]
        boxes = []
        for _ in range(int(rng.integers(1 if k == 0 else 0, 4))):  # image 0 has a face to corrupt
            x1, y1 = int(rng.integers(0, w - 12)), int(rng.integers(0, h - 12))
            boxes.append([x1, y1, x1 + int(rng.integers(2, 12)), y1 + int(rng.integers(2, 12))])
        imgs.append({"name": f"i{k}.jpg", "h": h, "w": w, "boxes": boxes, "declare": rng.random() < 0.5})
        (root / "images" / f"i{k}.jpg").write_bytes(JPEGS[h, w])
    docs = _docs(fmt, root, imgs)
    ex = Expect(faces=sum(len(im["boxes"]) for im in imgs), images=len(imgs))
    faces = [(p, u) for p, us in docs.items() for u in us if u.tag[:1] == ("face",)]
    p, u = faces[int(rng.integers(len(faces)))]  # the face (and its file) a label corruption hits
    units, k = docs[p], u.tag[1]
    im, toks = imgs[k], u.tokens
    coords = COORDS.get(fmt, [0, 1, 2, 3])
    err: tuple[Path, Unit, bool] | None = None  # the error must name this file and line / element
    encoding, raw = "utf-8", None
    pick = lambda options: options[int(rng.integers(len(options)))]  # noqa: E731
    variant = rng.random() < 0.5
    case = Case(kind, fmt, {}, ex)

    def expect_box(tokens: list[str], h: int, w: int, line_error: bool = False) -> None:
        nonlocal err
        box = _decode(fmt, tokens, h, w)
        if box is None:
            err = (p, u, line_error)
        elif _fate(box, h, w) != "kept":
            ex.dropped[_fate(box, h, w)] += 1

    def skip(reason: str, kk: int) -> None:
        ex.skipped[reason] += 1
        ex.dropped[reason] += len(imgs[kk]["boxes"])

    if kind in ("nonfinite_coord", "negative_coord", "huge_coord", "zero_or_negative_size", "non_numeric"):
        c = pick(coords)
        if kind == "nonfinite_coord":
            toks[c] = pick(["NaN", "Infinity", "-Infinity", "1e400", "1" + "0" * 400] if fmt == "coco"
                           else ["nan", "inf", "-inf", "1e400", "NaN"])
        elif kind == "negative_coord":
            toks[c] = repr(-rng.uniform(0.01, 1.0)) if fmt == "yolo" else str(-int(rng.integers(1, 100)))
        elif kind == "huge_coord":
            toks[c] = pick(["1e6", "1e30", "1e300", "1.7e308"])
        elif kind == "zero_or_negative_size":
            if fmt == "voc":  # x2 <= x1 or y2 <= y1
                d = int(rng.integers(2))
                toks[2 + d] = _num(float(toks[d]) - int(rng.integers(0, 5)))
            else:
                toks[coords[2] + int(rng.integers(2))] = pick(["0", "-0.1"] if fmt == "yolo" else ["0", "-5", "-0.0"])
        else:
            toks[c] = pick(['"12"', "null", "true", "[1, 2]", "12abc"] if fmt == "coco"
                           else ["12abc", "x", "1,5", "0x1F", "--"])
        expect_box(toks, im["h"], im["w"], line_error=toks[c] == "12abc" and fmt == "coco")  # not json: a line
    elif kind == "missing_field":
        if fmt == "wider" and variant:  # the count line of the image gone: its first face line is read as one
            i = next(i for i, v in enumerate(units) if v.tag == ("count", k))
            del units[i]
            err = (p, units[i], True)
        elif fmt in ("wider", "retinaface", "yolo"):
            gone = pick(coords)
            u.tokens = toks[:3] if fmt == "wider" else [t for j, t in enumerate(toks) if j != gone]
            err = (p, u, False)
        elif fmt == "coco":
            if variant:
                u.omit = ("bbox",)
                err = (p, u, False)
            else:  # an annotation without image_id belongs to no image: dropped, counted
                u.omit = ("image_id",)
                ex.dropped["unknown_image_id"] += 1
        elif variant:  # voc: no <bndbox> or no <xmin>: an error; no <size>: the header's size is used
            u.omit = pick([("bndbox",), ("xmin",)])
            err = (p, u, False)
        else:
            del units[2]
    elif kind == "extra_field":
        if fmt == "coco":
            u.extra = ', "score": 0.9, "note": "x"'
        elif fmt == "voc":
            u.extra = "<truncated>0</truncated><pose>Left</pose>"
        else:
            extra = 1 if fmt != "retinaface" or variant else 2  # retinaface reads one more as a score
            u.tokens = toks + ["0"] * extra
            err = None if fmt == "retinaface" and extra == 1 else (p, u, False)
    elif kind == "duplicated_line":
        i = units.index(u)
        if fmt == "wider" and variant:  # one face too many: the extra line is read as an image path
            units.insert(i, Unit(tag=u.tag, tokens=list(toks)))
            count = next(j for j, v in enumerate(units) if v.tag == ("count", k))
            err = (p, units[count + len(im["boxes"]) + 1], True)
        elif fmt == "voc" and variant:  # a second xml for the same image
            copy = p.with_name(p.stem + "_copy.xml")
            docs[copy] = units
            ex.images, ex.faces = ex.images + 1, ex.faces + len(im["boxes"])
            err = (copy, None, False)
        elif fmt == "wider" or (variant and fmt in ("retinaface", "coco")):  # an image twice: an error
            first = next(j for j, v in enumerate(units) if v.tag == ("img", k))
            last = max(j for j, v in enumerate(units) if v.tag[1:2] == (k,)) + (fmt == "wider" and not im["boxes"])
            dup = [Unit(v.text, v.tag, list(v.tokens) if v.tokens else None, v.section) for v in units[first:last + 1]]
            if fmt == "coco":  # the image entry only
                dup, last = [dup[0]], first
            units[last + 1:last + 1] = dup
            ex.images, ex.faces = ex.images + 1, ex.faces + sum(v.tag[:1] == ("face",) for v in dup)
            err = (p, dup[0], fmt != "coco")
        else:
            units.insert(i, Unit(tag=u.tag, tokens=list(toks), section=u.section))
            ex.faces += 1
    elif kind == "empty_file":
        docs[p] = units = []
        if fmt in ("wider", "retinaface"):
            ex.faces = ex.images = 0
        elif fmt == "yolo":
            ex.faces -= len(im["boxes"])
        else:
            err = (p, None, True)
    elif kind in ("latin1", "utf16", "utf8_bom", "binary_garbage"):
        if kind == "latin1":
            encoding = "latin-1"
            if fmt in ("wider", "retinaface", "coco"):  # in the image's name
                img_unit = next(v for v in units if v.tag == ("img", k))
                img_unit.text = img_unit.text.replace(".jpg", "é.jpg")
                err = (p, img_unit, True)
            elif fmt == "yolo":
                u.tokens = toks + ["é"]
                err = (p, u, True)
            else:
                u.text = "<name>visagé</name>"
                if variant:  # declared: valid XML
                    units.insert(0, Unit('<?xml version="1.0" encoding="ISO-8859-1"?>'))
                else:
                    err = (p, u, True)
        elif kind == "utf16":
            encoding = "utf-16"
            if fmt != "voc":  # XML with a byte-order mark may be UTF-16
                err = (p, None, True)
        elif kind == "utf8_bom":
            encoding = "utf-8-sig"
        else:
            m = int(rng.integers(0, max(1, len(units))))
            junk = bytes(rng.integers(0, 256, int(rng.integers(10, 60)), dtype=np.uint8))
            raw = _render(fmt, units[:m]).encode() + (b"\x80" + junk if variant else b"\x00 1 2 abc\n")
            err = (p, m, True)
    elif kind in ("truncated_jpeg", "broken_image", "missing_image", "wrong_image_size", "unreadable_after_load"):
        kk = int(rng.integers(len(imgs)))
        path, h, w = root / "images" / imgs[kk]["name"], imgs[kk]["h"], imgs[kk]["w"]
        data = JPEGS[h, w]
        cut = int(rng.integers(data.index(b"\xff\xda") + 16, len(data) - 2))  # after the header
        if kind == "truncated_jpeg":
            path.write_bytes(data[:cut])
            case.verify = variant
            skip(DECODE_FAIL, kk)
        elif kind == "unreadable_after_load":
            case.verify = True
            case.break_after_load.append((path, cut))
            skip(DECODE_FAIL, kk)
        elif kind == "broken_image":
            path.write_bytes(pick([b"", b"not an image", b"\x00" + data[1:], data[: int(rng.integers(2, 20))]]))
            skip("unreadable_image", kk)
        elif kind == "missing_image":
            path.unlink()
            skip("missing_image", kk)
        else:
            h2, w2 = h + 9, w - 7
            path.write_bytes(JPEGS[h2, w2])
            if fmt in ("coco", "voc") or (fmt == "retinaface" and imgs[kk]["declare"]):
                skip("size_mismatch", kk)
            else:
                for v in units:  # boxes are read against the new size
                    if v.tag[:2] == ("face", kk):
                        toks = v.tokens
                        expect_box(toks, h2, w2)
    for path, us in docs.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        text = _render(fmt, us)
        path.write_bytes(raw if raw is not None and path == p else text.encode(encoding if path == p else "utf-8"))
    if err is not None:
        path, unit, line = err
        if unit is None:
            ex.error = (path, f"{path}:1:" if line else str(path))
        elif isinstance(unit, int):  # binary garbage after ``unit`` good lines
            ex.error = (path, f"{path}:{unit + 1}:")
        else:
            ex.error = (path, _locate(fmt, path, docs[path], unit, line))
    typ, name = NODES[fmt]
    case.node = {"type": typ, "img_dir": str(root / "images")}
    case.node |= {"ann_dir": str(root / name)} if fmt == "voc" else {"label_dir": str(root / name)} \
        if fmt == "yolo" else {"ann_file": str(root / name)}
    return case


TRANSFORM = build_transforms([], 64)


def _norm(c: Counter) -> Counter:
    return Counter({(DECODE_FAIL if k in DECODE_FAIL.split("|") else k): v for k, v in c.items() if v})


def run_case(case: Case) -> dict:
    """Build and read ``case``; the flags of the table (crash, silent, no_file, no_line, wrong)."""
    out: dict = {"kind": case.kind, "fmt": case.fmt, "crash": "", "silent": "", "no_file": "", "no_line": "",
                 "wrong": "", "reasons": Counter()}
    ex = case.expect
    try:
        ds = build(case.node | {"verify_images": case.verify}, DATASETS, transform=TRANSFORM, cache_images=False)
    except ConfigError as e:
        if not isinstance(e.__cause__, LabelError):  # a ValueError from deep inside, wrapped by build()
            out["crash"] = f"{type(e.__cause__).__name__}: {e}"
            return out
        msg = str(e.__cause__)
        out["reasons"]["LabelError", "cases"] += 1
        if ex.error is None:
            out["wrong"] = f"unexpected error: {msg}"
            named = any(v in msg for k, v in case.node.items() if k != "type")  # the label file or folder
            out["no_file"] = "" if named else msg
            return out
        path, locator = ex.error
        out["no_file"] = "" if str(path) in msg else msg
        out["no_line"] = "" if locator in msg else f"{locator!r} not in {msg}"
        return out
    except Exception as e:  # anything else is a crash
        out["crash"] = f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=-3)}"
        return out
    for path, keep in case.break_after_load:
        path.write_bytes(path.read_bytes()[:keep])
    try:
        for i in range(len(ds)):
            if ds[i]["image"].shape != (3, 64, 64):
                out["crash"] = f"item {i}: image shape {tuple(ds[i]['image'].shape)}"
    except Exception as e:
        out["crash"] = f"reading items: {type(e).__name__}: {e}\n{traceback.format_exc(limit=-3)}"
        return out
    st = ds.stats
    out["reasons"].update({(k, "images"): v for k, v in st.skipped.items()})
    out["reasons"].update({(k, "faces"): v for k, v in st.dropped.items()})
    out["reasons"].update({(f"note: {k}", "faces"): v for k, v in st.notes.items()})
    if st.faces + sum(st.dropped.values()) != ex.faces or st.images + sum(st.skipped.values()) != ex.images:
        out["silent"] = f"in: {ex.faces} faces, {ex.images} images; {st.summary()}"
    if ex.error is not None:
        out["wrong"] = f"loaded, expected an error at {ex.error[1]}"
    elif _norm(st.dropped) != _norm(ex.dropped) or _norm(st.skipped) != _norm(ex.skipped):
        out["wrong"] = f"dropped {dict(st.dropped)} skipped {dict(st.skipped)}, expected " \
                       f"{dict(ex.dropped)} / {dict(ex.skipped)}"
    for r in ds.records:
        h, w = r.orig_size
        b = r.boxes
        if not (np.isfinite(b).all() and (b[:, 2:] > b[:, :2]).all() and (b >= 0).all()
                and (b[:, [0, 2]] <= w).all() and (b[:, [1, 3]] <= h).all()):
            out["wrong"] = f"{r.image_id}: box not inside its {w}x{h} image: {b.tolist()}"
    return out


def fuzz(n: int, seed: int, root: Path) -> list[dict]:
    """``n`` cases (kinds round-robin, formats in turn), generated under ``root`` and run."""
    log, level = logging.getLogger("facedet"), logging.getLogger("facedet").level
    cv_level = cv2.utils.logging.getLogLevel()
    log.setLevel(logging.ERROR)  # each case logs its load summary, each grey stand-in a warning
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)  # libjpeg: a warning per cut JPEG
    results = []
    try:
        for i in range(n):
            kind, fmt = KINDS[i % len(KINDS)], FORMATS[(i // len(KINDS)) % len(FORMATS)]
            case = make_case(root / f"{i:04d}", kind, fmt, np.random.default_rng([seed, i]))
            results.append(run_case(case) | {"case": i})
    finally:  # callers (tests) keep their logging
        log.setLevel(level)
        cv2.utils.logging.setLogLevel(cv_level)
    return results


def table(results: list[dict]) -> str:
    cols = ("crash", "silent", "no_file", "no_line", "wrong")
    lines = [f"{'case kind':22s} {'count':>5s} {'crashes':>7s} {'silent':>6s} {'no file':>7s} {'no line':>7s} "
             f"{'wrong':>5s}  reasons seen"]
    for kind in [*KINDS, "total"]:
        rows = [r for r in results if kind in ("total", r["kind"])]
        by: dict[str, list[str]] = {}
        for (reason, unit), n in sorted(sum((r["reasons"] for r in rows), Counter()).items()):
            by.setdefault(reason, []).append(f"{n} {unit}")
        seen = "; ".join(f"{r}: {', '.join(v)}" for r, v in by.items()) if kind != "total" else ""
        counts = " ".join(f"{sum(bool(r[c]) for r in rows):>{w}d}" for c, w in zip(cols, (7, 6, 7, 7, 5),
                                                                                     strict=True))
        lines.append(f"{kind:22s} {len(rows):5d} {counts}  {seen}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1000, help="cases")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    from bench.common import print_header

    print_header()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        results = fuzz(args.n, args.seed, Path(tmp))
    print(f"{args.n} cases ({len(KINDS)} kinds x {len(FORMATS)} formats: {', '.join(FORMATS)}), seed {args.seed}, "
          f"{time.perf_counter() - t0:.0f} s\n")
    print(table(results))
    bad = [r for r in results if any(r[c] for c in ("crash", "silent", "no_file", "no_line", "wrong"))]
    for r in bad[:10]:
        flags = "; ".join(f"{c}: {r[c]}" for c in ("crash", "silent", "no_file", "no_line", "wrong") if r[c])
        print(f"\ncase {r['case']} ({r['kind']}, {r['fmt']}): {flags}")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
