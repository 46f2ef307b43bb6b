"""Export to ONNX: ``python tools/export.py checkpoint=<best.pt>`` (facedet/cli/export.py)."""
from facedet.cli.export import main

if __name__ == "__main__":
    raise SystemExit(main())
