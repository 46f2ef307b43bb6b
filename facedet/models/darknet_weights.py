"""Darknet ``.weights`` files: import into (and, for tests and round trips, export from) facedet models.

The format (darknet's ``src/parser.c``): a header of three int32 (major, minor, revision) and the
number of images seen (int64 when ``major * 10 + minor >= 2``, else int32), then float32 values,
convolution by convolution in cfg order with no names or shapes. A convolution with BatchNorm
stores its BN shift (beta), scale (gamma), running mean, running variance (``out`` values each),
then its kernel ``(out, in, k, k)`` row-major, PyTorch's layout.

Since the file has no shapes, the model's convolutions are listed in Darknet order
(``darknet_layout``) and the file must fit that list: it must hold at least the backbone, and end
exactly at the backbone or at the end of the layout, or go beyond it (a full ``.weights`` file:
the rest is reported unused). The layouts are those of ``darknet53.conv.74`` (Darknet53) and
``yolov4.conv.137`` (CSPDarknet53 plus YOLOv4's SPP and top-down PAN convolutions, when the neck
is a width-1 PAN with SPP). Darknet's BN epsilon is 1e-5, ours 1e-3: negligible next to the
running variances of a trained network.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import torch
from torch import nn

from facedet.checkpoint import CheckpointError, describe_non_binary
from facedet.models.layers import ConvBNAct
from facedet.models.load_report import LoadReport
from facedet.registry import ConfigError

# (file name or module path, conv, number of input-channel blocks stored in reverse order)
LayoutEntry = tuple[str, ConvBNAct, int]


def darknet_layout(model: nn.Module) -> tuple[list[LayoutEntry], int]:
    """The convolutions of ``model`` (a Detector or a bare backbone) in Darknet file order, and
    how many of them belong to the backbone. ConfigError when the backbone has no Darknet layout."""
    names = {id(m): n for n, m in model.named_modules()}
    backbone = getattr(model, "backbone", model)
    if not hasattr(backbone, "darknet_convs"):
        raise ConfigError(
            f"Darknet .weights import supports the darknet53 and cspdarknet backbones, not {type(backbone).__name__}."
        )
    layout = [(names[id(c)], c, 1) for c in backbone.darknet_convs()]
    n_backbone = len(layout)
    neck = getattr(model, "neck", None)
    if neck is not None and hasattr(neck, "darknet_convs"):
        layout += [(names[id(c)], c, blocks) for c, blocks in neck.darknet_convs()]
    return layout, n_backbone


def _conv_size(conv: ConvBNAct) -> int:
    return 4 * conv.bn.num_features + conv.conv.weight.numel()


def _reverse_blocks(w: torch.Tensor, blocks: int) -> torch.Tensor:
    """Reverse the order of ``blocks`` equal groups of input channels (an involution)."""
    if blocks == 1:
        return w
    out_c, in_c = w.shape[:2]
    return w.reshape(out_c, blocks, in_c // blocks, *w.shape[2:]).flip(1).reshape(w.shape)


def read_header(data: bytes, path: Path) -> tuple[tuple[int, int, int], int, int]:
    """``((major, minor, revision), seen, header bytes)`` of a ``.weights`` file's contents."""
    if len(data) < 16:
        raise CheckpointError(f"{path} is too short for a Darknet .weights file ({len(data)} bytes).")
    major, minor, revision = struct.unpack_from("<3i", data)
    if major * 10 + minor >= 2 and major < 1000 and minor < 1000:
        (seen,) = struct.unpack_from("<q", data, 12)
        return (major, minor, revision), seen, 20
    (seen,) = struct.unpack_from("<i", data, 12)
    return (major, minor, revision), seen, 16


def _convs_in_file(n: int, layout: list[LayoutEntry], n_backbone: int, path: Path) -> int:
    """How many convolutions of ``layout`` a file of ``n`` values fills: the backbone, the whole
    layout, or (a longer file) the whole layout; CheckpointError when it ends anywhere else."""
    ends = np.cumsum([_conv_size(c) for _, c, _ in layout]).tolist()
    if n < ends[n_backbone - 1]:
        raise CheckpointError(
            f"{path} holds {n} values, fewer than the {ends[n_backbone - 1]} of this backbone's "
            f"{n_backbone} convolutions in Darknet order: it is for another architecture or size."
        )
    if n in (ends[n_backbone - 1], ends[-1]):
        return ends.index(n) + 1
    if n > ends[-1]:
        return len(layout)
    at = next(i for i, e in enumerate(ends) if e > n)
    raise CheckpointError(
        f"{path} ends inside convolution {at} ({layout[at][0]}) of this model's Darknet layout: "
        f"{n} values, the layout's convolutions end at {ends[n_backbone - 1]} (backbone) and {ends[-1]}."
    )


def load_darknet_weights(model: nn.Module, path: str | Path) -> LoadReport:
    """Load a Darknet ``.weights`` file into ``model`` (see the module docstring); returns the
    report: the state-dict keys filled (``matched``) and the model's other keys (``missing``)."""
    path = Path(path)
    data = path.read_bytes()
    what = describe_non_binary(data[:512], len(data))
    if what is None and data.startswith((b"PK\x03\x04", b"\x80")):  # torch's zip or pickle format
        what = "a PyTorch file, not Darknet .weights (give it a .pt suffix)"
    if what:
        raise CheckpointError(f"Cannot load {path}: {what}")
    version, seen, offset = read_header(data, path)
    if (len(data) - offset) % 4:
        raise CheckpointError(f"{path}: {len(data) - offset} bytes after the header is not a whole number "
                              "of float32 values; the file is truncated or not a Darknet .weights file.")
    values = np.frombuffer(data, dtype="<f4", offset=offset)
    layout, n_backbone = darknet_layout(model)
    n = len(values)
    count = _convs_in_file(n, layout, n_backbone, path)

    # Read everything first and check it, so a file that does not fit leaves the model untouched.
    arch = type(getattr(model, "backbone", model)).__name__
    pos, staged = 0, []
    for name, conv, blocks in layout[:count]:
        tensors = []
        for t in (conv.bn.bias, conv.bn.weight, conv.bn.running_mean, conv.bn.running_var, conv.conv.weight):
            tensors.append(torch.from_numpy(values[pos : pos + t.numel()].copy()).view_as(t))
            pos += t.numel()
        if not (tensors[3] > 0).all():
            # Without shapes in the file, a misaligned read shows up as kernels in the variance slot.
            raise CheckpointError(
                f"{path}: convolution {len(staged)} ({name}) would get non-positive BatchNorm running "
                f"variances: the file's layout is not this model's ({arch})."
            )
        tensors[4] = _reverse_blocks(tensors[4], blocks)
        staged.append((name, conv, tensors))

    loaded: set[str] = set()
    with torch.no_grad():
        for name, conv, tensors in staged:
            targets = (conv.bn.bias, conv.bn.weight, conv.bn.running_mean, conv.bn.running_var, conv.conv.weight)
            for dst, src in zip(targets, tensors, strict=True):
                dst.copy_(src)
            loaded.update(f"{name}.{k}" for k in ("conv.weight", "bn.weight", "bn.bias", "bn.running_mean",
                                                  "bn.running_var"))
    keys = [k for k in model.state_dict() if not k.endswith("num_batches_tracked")]  # counters, not weights
    report = LoadReport(str(path), matched=[k for k in keys if k in loaded],
                        missing=[k for k in keys if k not in loaded])
    report.notes.append(f"Darknet v{version[0]}.{version[1]}.{version[2]}, {seen} images seen: "
                        f"{count} convolutions ({count - min(count, n_backbone)} in the neck), {pos} values")
    if n > pos:
        report.notes.append(f"{n - pos} values after them unused (layers this model does not have)")
    return report


def save_darknet_weights(model: nn.Module, path: str | Path, *, convs: int | None = None,
                         version: tuple[int, int, int] = (0, 2, 5), seen: int = 0) -> int:
    """Write the first ``convs`` convolutions (all by default) of ``model``'s Darknet layout to
    ``path`` in Darknet's format; returns the number of values written. With a yolov4 model
    (width 1, PAN with SPP) the result has the layout of ``yolov4.conv.137``; with a Darknet53
    backbone, that of ``darknet53.conv.74``."""
    layout, _ = darknet_layout(model)
    major, minor, revision = version
    wide_seen = major * 10 + minor >= 2 and major < 1000 and minor < 1000
    header = struct.pack("<3i", major, minor, revision) + struct.pack("<q" if wide_seen else "<i", seen)
    chunks = []
    with torch.no_grad():
        for _, conv, blocks in layout[:convs]:
            bn = conv.bn
            w = _reverse_blocks(conv.conv.weight, blocks)
            chunks += [t.detach().float().cpu().reshape(-1) for t in (bn.bias, bn.weight, bn.running_mean,
                                                                      bn.running_var, w)]
    values = torch.cat(chunks).numpy().astype("<f4")
    Path(path).write_bytes(header + values.tobytes())
    return int(values.size)
