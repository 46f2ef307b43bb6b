"""WIDER FACE official txt (``wider_face_train_bbx_gt.txt``).

Per image: the image path (relative to the image directory), the face count, then one line per face
``x y w h blur expression illumination invalid occlusion pose`` (pixels; the six attribute columns
are optional). ``invalid = 1`` makes the face ``ignore``. The official files follow a 0-face image
with one line of zeros, which is skipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from facedet.data.records import (
    WIDER_ATTRIBUTES,
    LabelError,
    LoadStats,
    Record,
    check_new_image,
    fmt,
    make_record,
    parse_numbers,
    read_lines,
    resolve_image,
)

_INVALID = WIDER_ATTRIBUTES.index("invalid")


def _is_zero_line(line: str) -> bool:
    tokens = line.split()
    try:
        return len(tokens) >= 4 and all(float(t) == 0 for t in tokens)
    except ValueError:
        return False


def _looks_numeric(line: str) -> bool:
    tokens = line.split()
    try:
        return len(tokens) >= 4 and all(isinstance(float(t), float) for t in tokens)
    except ValueError:
        return False


def read_wider_txt(ann_file: str | Path, img_dir: str | Path) -> tuple[list[Record], LoadStats]:
    """Read WIDER FACE txt -> (records, stats). Malformed input raises ``LabelError`` naming the
    file and line; missing or unreadable images are skipped and counted with their faces."""
    ann_file, img_dir = Path(ann_file), Path(img_dir)
    lines = read_lines(ann_file)
    stats = LoadStats(source=f"wider_txt {ann_file}")
    records: list[Record] = []
    seen: dict[str, str] = {}
    i = 0
    while i < len(lines):
        name = lines[i].strip()
        if not name:  # tolerate blank lines (e.g. at the end)
            i += 1
            continue
        if _looks_numeric(name):
            raise LabelError(
                f"{ann_file}:{i + 1}: expected an image path, got numbers {name!r} "
                "(is the face count of the previous image too small?)"
            )
        check_new_image(seen, name, f"{ann_file}:{i + 1}")
        where = f"{ann_file}:{i + 2}"
        if i + 1 >= len(lines):
            raise LabelError(f"{where}: file ends after image name {name!r}; expected a face count")
        try:
            count = int(lines[i + 1].strip())
        except ValueError:
            raise LabelError(f"{where}: expected a face count for {name!r}, got {lines[i + 1].strip()!r}") from None
        if count < 0:
            raise LabelError(f"{where}: negative face count {count} for {name!r}")
        i += 2
        if count == 0 and i < len(lines) and _is_zero_line(lines[i]):
            i += 1  # official files follow a 0-face image with one line of zeros
        if i + count > len(lines):
            raise LabelError(f"{ann_file}:{len(lines) + 1}: file ends inside the {count} faces of {name!r}")
        rows = np.zeros((count, 4), np.float64)
        attrs = np.full((count, len(WIDER_ATTRIBUTES)), -1, np.int16)
        for j in range(count):
            where = f"{ann_file}:{i + j + 1}"
            tokens = lines[i + j].split()
            if not 4 <= len(tokens) <= 4 + len(WIDER_ATTRIBUTES):
                raise LabelError(
                    f"{where}: expected 'x y w h' and up to 6 attributes (10 numbers), got {lines[i + j]!r}"
                )
            vals = parse_numbers(tokens, where)
            extra = vals[4:]
            if np.any(extra != np.round(extra)) or np.any(np.abs(extra) > 1000):
                raise LabelError(f"{where}: attributes must be small integers, got {' '.join(tokens[4:])!r}")
            rows[j] = vals[:4]
            attrs[j, : len(extra)] = extra
        i += count
        path = img_dir / name
        size = resolve_image(stats, path, count)
        if size is None:
            continue
        ignore = attrs[:, _INVALID] == 1
        records.append(make_record(stats, path, name, rows, ignore, size, attributes=attrs))
    return records, stats


def write_wider_txt(records: Sequence[Record], out_file: str | Path) -> None:
    """Write records as WIDER FACE txt. ``ignore`` is written as ``invalid = 1``; attributes come
    from the records (0 where unknown). Widths are exact float64 differences, so reading the file
    back reproduces the float32 corners exactly."""
    out: list[str] = []
    for r in records:
        b = r.boxes.astype(np.float64)
        attrs = np.zeros((len(b), len(WIDER_ATTRIBUTES)), np.int64)
        if r.attributes is not None:
            attrs = np.maximum(r.attributes.astype(np.int64), 0)
        attrs[:, _INVALID] = np.asarray(r.ignore, bool)
        out += [r.image_id, str(len(b))]
        for (x1, y1, x2, y2), a in zip(b, attrs, strict=True):
            out.append(" ".join([fmt(x1), fmt(y1), fmt(x2 - x1), fmt(y2 - y1)] + [str(v) for v in a]))
        if not len(b):
            out.append("0 0 0 0 0 0 0 0 0 0")
    path = Path(out_file)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(out) + "\n")
