"""Detect faces: ``python tools/detect.py checkpoint=<best.pt> source=<path>`` (facedet/cli/detect.py)."""
from facedet.cli.detect import main

if __name__ == "__main__":
    raise SystemExit(main())
