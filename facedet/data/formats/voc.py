"""Pascal VOC xml: one ``<annotation>`` file per image with ``<filename>``, ``<size>`` and
``<object>`` elements (``<name>``, ``<difficult>``, ``<bndbox>`` xmin ymin xmax ymax).

Coordinates are read as continuous pixel corners (box width = xmax - xmin), the convention of
labelImg/CVAT exports and of the facemask set's COCO and WIDER files; the original VOC devkit's
1-based inclusive boxes are 1 px wider. Every object is a face unless ``classes`` lists the names
that are (others are dropped and counted); ``difficult = 1`` makes a face ``ignore``. The image is
``<img_dir>/<folder of the xml below ann_dir>/<filename>``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from facedet.data.records import LabelError, LoadStats, Record, check_new_image, fmt, make_record, resolve_image
from facedet.structures import IMAGE_SUFFIXES


def _text(el: ET.Element | None) -> str | None:
    return None if el is None or el.text is None else el.text.strip()


def _parse(xml_file: Path) -> ET.Element:
    try:
        root = ET.fromstring(xml_file.read_bytes())
    except ET.ParseError as e:
        raise LabelError(f"{xml_file}:{e.position[0]}: not valid XML ({e})") from None
    if root.tag != "annotation":
        raise LabelError(f"{xml_file}:1: expected an <annotation> root element, got <{root.tag}>")
    return root


def _number(obj: ET.Element, tag: str, where: str) -> float:
    value = _text(obj.find(tag))
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise LabelError(f"{where}: <{tag}> must be a number, got {value!r}") from None
    if not np.isfinite(v):
        raise LabelError(f"{where}: <{tag}> is not finite ({value!r})")
    return v


def read_voc_xml(
    ann_dir: str | Path, img_dir: str | Path, *, classes: Sequence[str] | None = None
) -> tuple[list[Record], LoadStats]:
    """Read every ``*.xml`` under ``ann_dir`` (sorted) -> (records, stats). Malformed files raise
    ``LabelError`` naming the file (and line for XML syntax errors, the object index otherwise)."""
    ann_dir, img_dir = Path(ann_dir), Path(img_dir)
    stats = LoadStats(source=f"voc_xml {ann_dir}")
    wanted = None if classes is None else set(classes)
    records: list[Record] = []
    seen: dict[str, str] = {}
    for xml_file in sorted(p for p in ann_dir.rglob("*.xml") if p.is_file()):
        root = _parse(xml_file)
        rel = xml_file.parent.relative_to(ann_dir)
        filename = _text(root.find("filename")) or xml_file.with_suffix(".jpg").name
        image_id = (rel / filename).as_posix()
        boxes, ignore = [], []
        for k, obj in enumerate(root.iter("object")):
            name = _text(obj.find("name")) or ""
            where = f"{xml_file}: object {k} ({name!r})"
            if wanted is not None and name not in wanted:
                stats.dropped["class_not_listed"] += 1
                stats.examples.setdefault("class_not_listed", f"{xml_file}: {name!r}")
                continue
            bnd = obj.find("bndbox")
            if bnd is None:
                raise LabelError(f"{where}: no <bndbox>")
            boxes.append([_number(bnd, t, where) for t in ("xmin", "ymin", "xmax", "ymax")])
            difficult = _text(obj.find("difficult")) or "0"
            if difficult not in ("0", "1"):
                raise LabelError(f"{where}: <difficult> must be 0 or 1, got {difficult!r}")
            ignore.append(difficult == "1")
        size = None
        size_el = root.find("size")
        if size_el is not None:
            w, h = (_number(size_el, t, f"{xml_file}: <size>") for t in ("width", "height"))
            size = (int(h), int(w)) if w > 0 and h > 0 else None  # some tools write 0: use the header
        path = img_dir / rel / filename
        if not Path(filename).suffix:  # some tools omit the extension
            path = next((p for p in (path.with_suffix(x) for x in IMAGE_SUFFIXES) if p.is_file()), path)
            image_id = (rel / path.name).as_posix()
        check_new_image(seen, image_id, str(xml_file))  # e.g. an xml copied without editing <filename>
        got = resolve_image(stats, path, len(boxes), size)
        if got is None:
            continue
        records.append(
            make_record(stats, path, image_id, np.array(boxes, np.float64).reshape(-1, 4), np.array(ignore, bool),
                        got, box_format="xyxy")
        )
    return records, stats


def write_voc_xml(records: Sequence[Record], out_dir: str | Path) -> None:
    """One xml per record under ``out_dir`` (``<image_id without suffix>.xml``); every face is an
    object named ``face``; ``ignore`` is written as ``difficult``."""
    out_dir = Path(out_dir)
    for r in records:
        ann = ET.Element("annotation")
        rel = Path(r.image_id)
        ET.SubElement(ann, "folder").text = rel.parent.as_posix() if rel.parent != Path(".") else ""
        ET.SubElement(ann, "filename").text = rel.name
        size = ET.SubElement(ann, "size")
        h, w = r.orig_size
        for tag, v in (("width", w), ("height", h), ("depth", 3)):
            ET.SubElement(size, tag).text = str(int(v))
        for box, ign in zip(r.boxes.astype(np.float64), r.ignore, strict=True):
            obj = ET.SubElement(ann, "object")
            ET.SubElement(obj, "name").text = "face"
            ET.SubElement(obj, "difficult").text = str(int(ign))
            bnd = ET.SubElement(obj, "bndbox")
            for tag, v in zip(("xmin", "ymin", "xmax", "ymax"), box, strict=True):
                ET.SubElement(bnd, tag).text = fmt(v)
        ET.indent(ann)
        path = out_dir / rel.with_suffix(".xml")
        path.parent.mkdir(parents=True, exist_ok=True)
        ET.ElementTree(ann).write(path, encoding="utf-8", xml_declaration=False)
