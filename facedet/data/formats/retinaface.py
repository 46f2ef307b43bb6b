"""RetinaFace ``label.txt`` (the WIDER FACE re-annotation with five landmarks).

Per image a line ``# <image path>`` (optionally followed by ``<width> <height>``), then one line per
face: ``x y w h`` (pixels), optionally followed by five landmarks (left eye, right eye, nose, left and
right mouth corner) as ``lx ly flag`` triplets (19 numbers; ``-1 -1 -1`` = absent), or as ``lx ly``
pairs (14 numbers; ``-1 -1`` = absent), and optionally one more number (a quality score the
official files carry; not kept). The format has no ignore flag.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from facedet.data.records import (
    LabelError,
    LoadStats,
    Record,
    check_new_image,
    fmt,
    landmarks_from_points,
    make_record,
    parse_numbers,
    read_lines,
    resolve_image,
)

_WIDTHS = {4: (False, 0), 14: (True, 2), 15: (True, 2), 19: (True, 3), 20: (True, 3)}  # -> landmarks, stride


def _header(line: str, where: str) -> tuple[str, tuple[int, int] | None]:
    """``# name [width height]`` -> (name, (H, W) or None)."""
    rest = line[1:].strip()
    if not rest:
        raise LabelError(f"{where}: '#' line without an image path")
    tokens = rest.split()
    if len(tokens) >= 3 and all(t.isdigit() for t in tokens[-2:]):
        w, h = int(tokens[-2]), int(tokens[-1])
        return " ".join(tokens[:-2]), (h, w)
    return rest, None


def read_retinaface_txt(ann_file: str | Path, img_dir: str | Path) -> tuple[list[Record], LoadStats]:
    """Read RetinaFace label.txt -> (records, stats); landmarks NaN where absent. Malformed lines
    raise ``LabelError`` naming the file and line."""
    ann_file, img_dir = Path(ann_file), Path(img_dir)
    stats = LoadStats(source=f"retinaface_txt {ann_file}")
    records: list[Record] = []
    current: tuple[str, tuple[int, int] | None, list[np.ndarray], list[np.ndarray]] | None = None
    seen: dict[str, str] = {}

    def flush() -> None:
        if current is None:
            return
        name, size, boxes, lms = current
        path = img_dir / name
        got = resolve_image(stats, path, len(boxes), size)
        if got is None:
            return
        xy = np.array(lms, np.float64).reshape(-1, 5, 2)
        absent = (xy == -1).all(2)
        records.append(make_record(stats, path, name, np.array(boxes).reshape(-1, 4), np.zeros(len(boxes), bool),
                                   got, landmarks_from_points(xy, absent)))

    for lineno, line in enumerate(read_lines(ann_file), 1):
        s = line.strip()
        where = f"{ann_file}:{lineno}"
        if not s:
            continue
        if s.startswith("#"):
            flush()
            name, size = _header(s, where)
            check_new_image(seen, name, where)
            current = (name, size, [], [])
            continue
        if current is None:
            raise LabelError(f"{where}: face line before the first '# <image path>' line")
        vals = parse_numbers(s.split(), where)
        if len(vals) not in _WIDTHS:
            raise LabelError(
                f"{where}: expected 4 numbers (x y w h), 4 + 10 or 4 + 15 (five landmarks, with flags), "
                f"optionally + 1 score; got {len(vals)}"
            )
        has_lm, stride = _WIDTHS[len(vals)]
        current[2].append(vals[:4])
        if has_lm:
            pts = vals[4 : 4 + 5 * stride].reshape(5, stride)
            xy = pts[:, :2].copy()
            if stride == 3:
                xy[pts[:, 2] == -1] = -1  # the flag marks an absent point too
            current[3].append(xy)
        else:
            current[3].append(np.full((5, 2), -1.0))
    flush()
    return records, stats


def write_retinaface_txt(records: Sequence[Record], out_file: str | Path) -> None:
    """Write records as RetinaFace label.txt: ``x y w h`` plus, when any face of the set has
    landmarks, ``lx ly 0.0`` per point (``-1 -1 -1`` where absent). ``ignore`` cannot be written
    (``facedet.data.convert`` refuses to lose it unless asked)."""
    with_lm = any(np.isfinite(r.landmarks).any() for r in records)
    out: list[str] = []
    for r in records:
        out.append(f"# {r.image_id}")
        b = r.boxes.astype(np.float64)
        for k, (x1, y1, x2, y2) in enumerate(b):
            cols = [fmt(x1), fmt(y1), fmt(x2 - x1), fmt(y2 - y1)]
            if with_lm:
                for x, y in r.landmarks[k].astype(np.float64):
                    cols += ["-1", "-1", "-1"] if np.isnan(x) or np.isnan(y) else [fmt(x), fmt(y), "0.0"]
            out.append(" ".join(cols))
    path = Path(out_file)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(out) + "\n")
