"""Fit anchors to a data set: ``python tools/kmeans_anchors.py data=facemask`` (facedet/cli/kmeans_anchors.py)."""
from facedet.cli.kmeans_anchors import main

if __name__ == "__main__":
    raise SystemExit(main())
