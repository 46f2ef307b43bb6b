"""Parameters and GFLOPs: ``python tools/model_info.py model=yolov4`` (facedet/cli/model_info.py)."""
from facedet.cli.model_info import main

if __name__ == "__main__":
    raise SystemExit(main())
