"""``facedet-convert`` / ``tools/convert.py``: convert face labels between formats: wider,
retinaface, coco, voc, yolo.

    facedet-convert --from voc --src ../shared/datasets/facemask/train/annotations \\
        --images ../shared/datasets/facemask/train/images --to yolo --out data/facemask_yolo/labels

``--src`` / ``--out`` are the label file (wider, retinaface, coco) or folder (voc, yolo). Images are
not copied: the output refers to the same image folder. A conversion that would lose ignore flags,
landmarks or WIDER attributes is refused unless ``--allow-loss``; ``--yolo-landmarks xyv`` writes YOLO
points as 5 x (x, y, visibility) instead of yolov5-face's (x, y). The only tool without a config
(it converts files; there is nothing to train or evaluate): flags alone. See docs/DATA.md.
"""

from __future__ import annotations

import argparse

from facedet.cli.common import setup_logging, tool_parser, user_errors
from facedet.data.convert import convert
from facedet.data.formats import FORMATS, YOLO_LANDMARK_LAYOUTS


def _parser() -> argparse.ArgumentParser:
    ap = tool_parser(__doc__, overrides=None)
    ap.add_argument("--from", dest="src_format", required=True, choices=sorted(FORMATS), help="source format")
    ap.add_argument("--src", required=True, help="source label file (wider/retinaface/coco) or folder (voc/yolo)")
    ap.add_argument("--images", required=True, help="the image folder the labels refer to")
    ap.add_argument("--to", dest="dst_format", required=True, choices=sorted(FORMATS), help="target format")
    ap.add_argument("--out", required=True, help="target label file or folder")
    ap.add_argument("--allow-loss", action="store_true", help="convert even if the target cannot hold everything")
    ap.add_argument("--yolo-ignore-class", type=int, default=1,
                    help="YOLO class id of ignored faces, read and written (default 1; -1 = none)")
    ap.add_argument("--yolo-landmarks", choices=YOLO_LANDMARK_LAYOUTS, default="xy",
                    help="layout of written YOLO landmarks: xy = yolov5-face's 15 columns (-1 -1 absent), "
                         "xyv = 5 x (x, y, visibility), 20 columns (yolov7/v8-face, ultralytics pose; 0 0 0 "
                         "absent); reading tells them apart by the column count (default xy)")
    ap.add_argument("--voc-classes", nargs="*", default=None, help="VOC object names that are faces (default all)")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_intermixed_args(argv)
    setup_logging()
    with user_errors(ValueError, OSError):  # a lossy conversion refused, a malformed or unreadable label file
        rep = convert(args.src_format, args.src, args.images, args.dst_format, args.out,
                      allow_loss=args.allow_loss,
                      yolo_ignore_class=None if args.yolo_ignore_class < 0 else args.yolo_ignore_class,
                      voc_classes=args.voc_classes, yolo_landmarks=args.yolo_landmarks)
    print(f"read: {rep.stats.summary()}")
    print(f"{rep.summary()} -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
