"""A PNG grid of augmented training samples: ``python tools/show_batch.py aug=mosaic`` (facedet/cli/show_batch.py)."""
from facedet.cli.show_batch import main

if __name__ == "__main__":
    raise SystemExit(main())
