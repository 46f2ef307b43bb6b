"""The convolutional part of the YOLOv3/v4 head (the loss lives in ``facedet.losses``).

Per level: a 3x3 ConvBNAct doubling the channels, then a 1x1 conv with bias to
``num_anchors * num_outputs`` channels, reshaped to ``(B, A, H, W, num_outputs)``. The first five
outputs are ``tx, ty, tw, th, tobj``, then ``2 * num_landmarks`` point offsets (``num_outputs`` is
``5 + 2 * num_landmarks`` unless given), decoded by ``facedet.models.heads.yolo_decode`` so the loss
and inference share one decoding.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from facedet.models.heads.yolo_decode import WH_MODES, decode_level, parse_anchors
from facedet.models.layers import ConvBNAct
from facedet.models.specials import SAM
from facedet.registry import HEADS, ConfigError
from facedet.structures import cxcywh_to_xyxy

LANDMARK_COUNTS = (0, 5)  # boxes only, or the five points face recognition aligns with


def outputs_per_anchor(num_outputs: int | None, num_landmarks: int) -> int:
    """Channels per anchor: ``num_outputs``, or ``5 + 2 * num_landmarks`` when None; ConfigError
    for a point count other than 0 or 5, or too few outputs to hold them."""
    if num_landmarks not in LANDMARK_COUNTS:
        raise ConfigError(
            f"model.head.num_landmarks must be one of {LANDMARK_COUNTS} (5: eyes, nose tip, mouth "
            f"corners), got {num_landmarks!r}"
        )
    needed = 5 + 2 * num_landmarks
    if num_outputs is not None and num_outputs < needed:
        raise ConfigError(
            f"num_outputs must be at least 5 (x, y, w, h, obj) + 2 * num_landmarks ({needed}), got {num_outputs}"
        )
    return needed if num_outputs is None else int(num_outputs)


@HEADS.register("yolo_head")
class YOLOHead(nn.Module):
    """YOLO detection head over L feature levels.

    ``in_channels``, ``anchors`` (per-level flat ``[w1, h1, w2, h2, ...]`` lists in input pixels, or
    an ``(L, A, 2)`` tensor) and ``strides`` are supplied by the framework. ``scale_x_y`` is
    YOLOv4's grid sensitivity (one value, or one per level); ``wh_mode`` is ``"exp"`` or
    ``"sigmoid"``. ``obj_prior`` sets the initial objectness probability. ``sam=True`` puts
    YOLOv4's point-wise spatial attention (``specials.SAM``) on each level's input.
    ``num_landmarks``: 0 (boxes only) or 5 points per face (left eye, right eye, nose tip, left
    and right mouth corner; "left" is the image's left), ``2 * num_landmarks`` more outputs per
    anchor. ``num_outputs``: channels per anchor, ``5 + 2 * num_landmarks`` when not given (more
    are allowed and left undecoded).

    ``forward([(B, C_i, H_i, W_i)]) -> [(B, A, H_i, W_i, num_outputs)]`` raw maps; ``decode`` turns
    them into boxes and scores, ``decoding()`` is what the loss is built with.
    """

    def __init__(
        self,
        *,
        in_channels: list[int],
        anchors: Tensor | Sequence[Sequence[float]],
        strides: list[int],
        scale_x_y: float | list[float] = 1.05,
        wh_mode: str = "exp",
        act: str = "leaky",
        num_outputs: int | None = None,
        obj_prior: float = 0.01,
        sam: bool = False,
        num_landmarks: int = 0,
    ) -> None:
        super().__init__()
        anchors_t = anchors.float() if isinstance(anchors, Tensor) and anchors.dim() == 3 else None
        if anchors_t is None:
            anchors_t = parse_anchors(anchors.tolist() if isinstance(anchors, Tensor) else anchors)
        n_levels, n_anchors = anchors_t.shape[:2]
        if not len(in_channels) == len(strides) == n_levels:
            raise ConfigError(
                f"yolo_head needs one entry per level: got {len(in_channels)} in_channels, "
                f"{len(strides)} strides and {n_levels} anchor levels"
            )
        scales = (
            [float(s) for s in scale_x_y]
            if isinstance(scale_x_y, Sequence)
            else [float(scale_x_y)] * n_levels
        )
        if len(scales) != n_levels:
            raise ConfigError(f"scale_x_y needs one value or {n_levels} (one per level), got {scale_x_y!r}")
        if wh_mode not in WH_MODES:
            raise ConfigError(f"wh_mode must be one of {WH_MODES}, got {wh_mode!r}")
        num_outputs = outputs_per_anchor(num_outputs, num_landmarks)
        if not 0.0 < obj_prior < 1.0:
            raise ConfigError(f"obj_prior must lie in (0, 1), got {obj_prior}")

        self.register_buffer("anchors", anchors_t.clone(), persistent=True)  # (L, A, 2), saved in checkpoints
        self.strides: list[int] = [int(s) for s in strides]
        self.scale_x_y: list[float] = scales
        self.wh_mode = wh_mode
        self.num_anchors = int(n_anchors)
        self.num_outputs = num_outputs
        self.num_landmarks = int(num_landmarks)
        if sam:
            self.sams = nn.ModuleList(SAM(c) for c in in_channels)
        self.convs = nn.ModuleList(ConvBNAct(c, 2 * c, 3, act=act) for c in in_channels)
        self.preds = nn.ModuleList(
            nn.Conv2d(2 * c, n_anchors * num_outputs, 1, bias=True) for c in in_channels
        )
        self._init_bias(obj_prior)

    def _init_bias(self, obj_prior: float) -> None:
        # Start every anchor at objectness ~obj_prior: with a 0.5 start the many negatives swamp the
        # objectness loss in the first iterations. Point offsets start at 0: the cell centre.
        with torch.no_grad():
            for pred in self.preds:
                b = pred.bias.view(self.num_anchors, self.num_outputs)
                b.zero_()
                b[:, 4] = math.log(obj_prior / (1.0 - obj_prior))

    def forward(self, feats: list[Tensor]) -> list[Tensor]:
        """Raw maps ``(B, A, H, W, num_outputs)`` per level (not decoded)."""
        outs = []
        if hasattr(self, "sams"):
            feats = [sam(x) for sam, x in zip(self.sams, feats, strict=True)]
        for x, conv, pred in zip(feats, self.convs, self.preds, strict=True):
            y = pred(conv(x))
            b, _, h, w = y.shape
            outs.append(
                y.view(b, self.num_anchors, self.num_outputs, h, w).permute(0, 1, 3, 4, 2).contiguous()
            )
        return outs

    def decode_level(self, raw: Tensor, i: int) -> Tensor:
        """Level ``i``'s raw map -> ``(B, A, H, W, 5 + 2K)``: cx, cy, w, h (input pixels), objectness
        logit, then K points ``x, y`` (input pixels)."""
        return decode_level(
            raw, self.anchors[i], self.strides[i], self.scale_x_y[i], self.wh_mode, self.num_landmarks
        )

    def decoding(self) -> HeadDecoding:
        """The decoding the loss needs (anchors, strides, ``scale_x_y``, ``decode_level``), given to
        it when ``build_detector`` builds it."""
        return HeadDecoding(self)

    def decode(self, raws: list[Tensor]) -> tuple[Tensor, Tensor, Tensor | None]:
        """All levels flattened (level, anchor, row, column order) and concatenated.

        Returns boxes ``(B, N, 4)`` xyxy in input pixels, objectness probabilities ``(B, N)`` and
        landmarks ``(B, N, K, 2)`` in input pixels (None when the head predicts no points).
        """
        dec = torch.cat([self.decode_level(r, i).flatten(1, 3) for i, r in enumerate(raws)], 1)
        points = dec[..., 5:].unflatten(-1, (self.num_landmarks, 2)) if self.num_landmarks else None
        return cxcywh_to_xyxy(dec[..., :4]), dec[..., 4].sigmoid(), points


class HeadDecoding:
    """A YOLO head's decoding as the loss sees it: the anchors, strides, ``scale_x_y`` and
    ``decode_level`` of ``head`` and nothing else.

    A view, not a copy: ``anchors`` is read from the head at every call, because checkpoints and
    weights files load into the head's buffer and ``.to(device)`` replaces it, and the loss must
    assign with the anchors the head predicts with.
    """

    def __init__(self, head: YOLOHead) -> None:
        self._head = head

    @property
    def anchors(self) -> Tensor:
        """``(L, A, 2)`` anchor sizes in input pixels."""
        return self._head.anchors

    @property
    def strides(self) -> list[int]:
        return self._head.strides

    @property
    def scale_x_y(self) -> list[float]:
        return self._head.scale_x_y

    @property
    def num_landmarks(self) -> int:
        """Points per face the head predicts (0: boxes only)."""
        return self._head.num_landmarks

    def decode_level(self, raw: Tensor, i: int) -> Tensor:
        """Level ``i``'s raw map -> ``(B, A, H, W, 5 + 2K)``: cx, cy, w, h (input pixels), objectness
        logit, then K points ``x, y`` (input pixels)."""
        return self._head.decode_level(raw, i)
