"""Evaluate a checkpoint: ``python tools/eval.py checkpoint=runs/<name>/<time>/checkpoints/best.pt``.

By default the model, data and test size are those the checkpoint was trained with; override
them with ``data=facemask``, ``img_size=416``, ``score_thresh=0.01`` and so on. ``eval=widerface``
adds WIDER FACE Easy/Medium/Hard; ``eval.tta=flip`` test-time augmentation. Another detector's
detections are scored with ``--results detections.json data=<name>`` (or ``results=...``).
"""

from facedet.cli.evaluate import main

if __name__ == "__main__":
    main()
