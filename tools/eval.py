"""Evaluate a checkpoint or results file: ``python tools/eval.py checkpoint=<best.pt>`` (facedet/cli/evaluate.py)."""
from facedet.cli.evaluate import main

if __name__ == "__main__":
    raise SystemExit(main())
