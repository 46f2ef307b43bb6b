"""Fit anchors to a data set: ``python tools/kmeans_anchors.py data=facemask`` (facedet/cli/kmeans_anchors.py)."""
from facedet.cli.kmeans_anchors import main, run  # noqa: F401  (run: for tests/test_anchors.py, which loads this file)

if __name__ == "__main__":
    raise SystemExit(main())
