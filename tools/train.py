"""Train a detector: ``python tools/train.py [group=option ...] [key=value ...]`` (facedet/cli/train.py)."""
from facedet.cli.train import main

if __name__ == "__main__":
    raise SystemExit(main())
