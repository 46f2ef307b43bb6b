"""Draw a results json on its val split: ``python tools/draw_predictions.py ...`` (facedet/cli/draw_predictions.py)."""
from facedet.cli.draw_predictions import main

if __name__ == "__main__":
    raise SystemExit(main())
