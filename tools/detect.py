"""Detect faces: ``python tools/detect.py checkpoint=<best.pt> source=<image, folder or video>``.

Writes annotated images / videos and ``detections.json`` to ``runs/detect/<time>`` (or ``out=``);
``score_thresh``, ``nms`` (diou_nms, nms, soft_nms), ``img_size``, ``tta`` and ``smooth`` (video)
are overridable. See configs/detect.yaml.
"""

from facedet.cli.detect import main

if __name__ == "__main__":
    main()
