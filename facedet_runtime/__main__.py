"""``python -m facedet_runtime MODEL SOURCE`` / ``facedet-runtime``: detect faces in an image, a
folder (searched recursively) or a video with an exported model, and write ``detections.json`` (the
schema of facedet's ``tools/detect.py``: ``settings``, ``images``, ``videos``, ``skipped``)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path

from facedet_runtime.backends import BACKENDS, BackendUnavailable
from facedet_runtime.detector import FaceDetector
from facedet_runtime.run import detect_source


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="facedet-runtime", description=__doc__.split("\n\n")[0])
    p.add_argument("model", help="exported model: .onnx (or for --backend openvino also an IR .xml)")
    p.add_argument("source", help="an image, a folder of images and videos, or a video")
    p.add_argument("--out", default=".", help="folder for detections.json (default: the current one)")
    p.add_argument("--backend", default="onnxruntime", choices=BACKENDS)
    p.add_argument("--score-thresh", type=float, default=None, help="minimum score (default: the model's metadata)")
    p.add_argument("--nms-iou", type=float, default=None, help="NMS IoU (default: the model's metadata)")
    p.add_argument("--max-det", type=int, default=None, help="detections kept per image (default: the metadata's)")
    p.add_argument("--img-size", type=int, default=None, help="input size, a multiple of 32 (default: the export's)")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads (default: the backend's choice)")
    p.add_argument("--batch-size", type=int, default=8, help="images per forward pass")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="facedet-runtime: %(message)s")
    try:
        det = FaceDetector(args.model, backend=args.backend, threads=args.threads, score_thresh=args.score_thresh,
                           nms_iou=args.nms_iou, max_det=args.max_det, img_size=args.img_size)
        result = detect_source(det, args.source, batch_size=args.batch_size)
    except (BackendUnavailable, FileNotFoundError, ValueError) as e:  # bad input: one line naming it
        print(f"facedet-runtime: error: {e}", file=sys.stderr)
        return 2
    settings = {"model": str(args.model), "backend": args.backend, "source": str(args.source),
                "img_size": det.img_size, "postprocess": dataclasses.asdict(det.postprocess),
                "nms_in_graph": det.info.nms_in_graph, "boxes": "xyxy in original image pixels"}
    if det.num_landmarks:
        settings["landmarks"] = ("x1, y1, ..., x5, y5 in original image pixels: left eye, right eye, nose tip, "
                                 "left and right mouth corner (left = the image's left)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "detections.json").write_text(json.dumps({"settings": settings} | result, indent=1))
    faces = sum(len(v["detections"]) for v in result["images"].values())
    frames = sum(len(v["frames"]) for v in result["videos"].values())
    print(f"facedet-runtime: {len(result['images'])} images ({faces} faces), {len(result['videos'])} videos "
          f"({frames} frames), {len(result['skipped'])} skipped; written to {out / 'detections.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
