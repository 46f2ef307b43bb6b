"""Search hyperparameters: ``python tools/tune.py hparams_search=facemask [key=value ...]`` (facedet/cli/tune.py)."""
from facedet.cli.tune import main

if __name__ == "__main__":
    raise SystemExit(main())
