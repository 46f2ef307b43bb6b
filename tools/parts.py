"""Every registered name of every kind of part, with its code: ``python tools/parts.py`` (facedet/cli/parts.py)."""
from facedet.cli.parts import main

if __name__ == "__main__":
    raise SystemExit(main())
