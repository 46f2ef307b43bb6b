"""The training engine. Importing it registers the hooks that live in modules nothing below them
imports (the high-res hook imports ``data_hooks``, so ``data_hooks`` cannot import it)."""

from facedet.engine import high_res as _high_res  # noqa: F401  (registers the "high_res" hook)
