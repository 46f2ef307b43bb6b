"""onnxslim clean-up of an exported model: constant folding, dead-node removal, fusions and shape
inference (``onnxslim.slim``), keeping the model's ``metadata_props``.

onnxslim is optional (the ``deploy`` extra) and imported only when slimming is asked for, so a
plain ONNX export does not need it. Whatever onnxslim keeps or drops of the metadata, the
original entries are written back afterwards, in their order, so the runtime reads the same
settings from the slimmed file.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from facedet.registry import ConfigError

log = logging.getLogger(__name__)


def metadata_of(proto) -> dict[str, str]:
    """The ``metadata_props`` of an ``onnx.ModelProto`` as an ordered dict."""
    return {p.key: p.value for p in proto.metadata_props}


def set_metadata(proto, meta: dict[str, str]) -> None:
    """Replace ``proto``'s ``metadata_props`` by ``meta`` (in its order)."""
    del proto.metadata_props[:]
    for k, v in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v


def save_atomic(proto, path: str | Path) -> Path:
    """Write ``proto`` to ``path`` through a temporary name, so a failed write leaves no half model."""
    import onnx

    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        onnx.save_model(proto, str(tmp))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def require_onnxslim():
    """The onnxslim module; ConfigError saying how to install it (or to set slim=false) without it."""
    try:
        import onnxslim
    except ImportError as e:
        raise ConfigError(f"slim=true needs onnxslim (the [deploy] extra: pip install -e '.[deploy]'), "
                          f"or set slim=false ({e})") from e
    return onnxslim


def slim_onnx(src: str | Path, dst: str | Path | None = None) -> Path:
    """Slim the ONNX file ``src`` with onnxslim into ``dst`` (default: ``src`` itself), keeping its
    metadata; returns the written path. ConfigError when onnxslim is not installed."""
    onnxslim = require_onnxslim()
    import onnx

    src = Path(src)
    original = onnx.load(str(src))
    meta = metadata_of(original)
    nodes = len(original.graph.node)
    slimmed = onnxslim.slim(original)
    if slimmed is None:  # onnxslim reports a failure by returning nothing: keep the file as it is
        raise RuntimeError(f"onnxslim could not slim {src}")
    set_metadata(slimmed, meta)
    out = save_atomic(slimmed, dst or src)
    log.info("slimmed %s: %d -> %d nodes", out.name, nodes, len(slimmed.graph.node))
    return out
