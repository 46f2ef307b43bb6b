"""Convert face labels between formats: ``python tools/convert.py --from voc ...`` (facedet/cli/convert.py)."""
from facedet.cli.convert import main

if __name__ == "__main__":
    raise SystemExit(main())
