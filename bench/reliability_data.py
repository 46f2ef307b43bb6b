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

import logging
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import fuzz_args  # noqa: E402
from bench.reliability_cases import KINDS, make_case  # noqa: E402
from bench.reliability_labels import DECODE_FAIL, FORMATS, Case  # noqa: E402
from facedet.data import LabelError, build_transforms  # noqa: E402
from facedet.registry import DATASETS, ConfigError, build  # noqa: E402

TRANSFORM = build_transforms([], 64)
FLAGS = ("crash", "silent", "no_file", "no_line", "wrong")  # a case's failures, the columns of the table


def _norm(c: Counter) -> Counter:
    return Counter({(DECODE_FAIL if k in DECODE_FAIL.split("|") else k): v for k, v in c.items() if v})


def run_case(case: Case) -> dict:
    """Build and read ``case``; the flags of the table (crash, silent, no_file, no_line, wrong)."""
    out: dict = {"kind": case.kind, "fmt": case.fmt, **dict.fromkeys(FLAGS, ""), "reasons": Counter()}
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
    lines = [f"{'case kind':22s} {'count':>5s} {'crashes':>7s} {'silent':>6s} {'no file':>7s} {'no line':>7s} "
             f"{'wrong':>5s}  reasons seen"]
    for kind in [*KINDS, "total"]:
        rows = [r for r in results if kind in ("total", r["kind"])]
        by: dict[str, list[str]] = {}
        for (reason, unit), n in sorted(sum((r["reasons"] for r in rows), Counter()).items()):
            by.setdefault(reason, []).append(f"{n} {unit}")
        seen = "; ".join(f"{r}: {', '.join(v)}" for r, v in by.items()) if kind != "total" else ""
        counts = " ".join(f"{sum(bool(r[c]) for r in rows):>{w}d}" for c, w in zip(FLAGS, (7, 6, 7, 7, 5), strict=True))
        lines.append(f"{kind:22s} {len(rows):5d} {counts}  {seen}")
    return "\n".join(lines)


def main() -> None:
    args = fuzz_args(__doc__, n=1000, n_help="cases")
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        results = fuzz(args.n, args.seed, Path(tmp))
    print(f"{args.n} cases ({len(KINDS)} kinds x {len(FORMATS)} formats: {', '.join(FORMATS)}), seed {args.seed}, "
          f"{time.perf_counter() - t0:.0f} s\n")
    print(table(results))
    bad = [r for r in results if any(r[c] for c in FLAGS)]
    for r in bad[:10]:
        flags = "; ".join(f"{c}: {r[c]}" for c in FLAGS if r[c])
        print(f"\ncase {r['case']} ({r['kind']}, {r['fmt']}): {flags}")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
