"""Ground truth in original pixels (``Record``), what loading kept and lost (``LoadStats``), and the
validation every reader shares.

Rules (the same for every label format):
- a missing or unreadable image is skipped; the image and its faces are counted by reason;
- a box is clipped to the image (counted); a box with zero or negative size, or entirely outside the
  image, is dropped (counted by reason);
- a malformed line raises ``LabelError`` naming the file and line (or the json/xml element).

So ``faces in the label file == stats.faces + sum(stats.dropped.values())`` always: nothing is lost
without a count ("AP 0 with no hint why" often starts with labels lost while loading).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from facedet.structures import IMAGE_SUFFIXES

# The five points, in the order of every label format and of ``landmarks`` arrays ("left" = the
# image's left, so a horizontal flip swaps the pairs: ``transforms.FLIP_ORDER``).
LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "left_mouth", "right_mouth")

# WIDER FACE attribute columns after ``x y w h`` (``invalid`` becomes ``ignore``).
WIDER_ATTRIBUTES = ("blur", "expression", "illumination", "invalid", "occlusion", "pose")


class LabelError(ValueError):
    """A label file that cannot be read as its format; the message starts with ``file:line:``."""


@dataclass
class Record:
    """Ground truth of one image, in original pixels."""

    image_path: Path
    image_id: str  # file name relative to the image directory
    boxes: np.ndarray  # (N, 4) float32 xyxy
    ignore: np.ndarray  # (N,) bool
    landmarks: np.ndarray  # (N, 5, 2) float32, NaN where absent
    orig_size: tuple[int, int]  # (H, W)
    attributes: np.ndarray | None = None  # (N, 6) int16 WIDER_ATTRIBUTES, -1 = unknown; None = none read
    coco_id: int | str | None = None  # the image's id in the COCO json it was read from (evaluation keeps it)


@dataclass
class LoadStats:
    """What a reader loaded and what it dropped, by reason."""

    source: str = ""
    images: int = 0  # images kept (with or without faces)
    faces: int = 0  # kept faces, ignored ones included
    ignored: int = 0
    clipped: int = 0  # kept boxes that were clipped to the image
    landmarks_all: int = 0  # kept faces with all five points
    landmarks_some: int = 0  # kept faces with one to four points (the others absent)
    dropped: Counter = field(default_factory=Counter)  # reason -> number of faces (boxes)
    skipped: Counter = field(default_factory=Counter)  # reason -> number of images
    notes: Counter = field(default_factory=Counter)  # informational counts (nothing lost)
    examples: dict = field(default_factory=dict)  # skip reason -> the first file it happened to

    @property
    def landmark_counts(self) -> tuple[int, int, int]:
        """Kept faces with all five points, with some, with none (ignored faces included)."""
        return self.landmarks_all, self.landmarks_some, self.faces - self.landmarks_all - self.landmarks_some

    def count_landmarks(self, landmarks: np.ndarray, sign: int = 1) -> None:
        """Add (``sign`` 1) or take back (-1, an image skipped after loading) the faces of one image
        to the landmark counts; ``landmarks`` (N, 5, 2), NaN where absent."""
        present = np.isfinite(np.asarray(landmarks, np.float32).reshape(-1, 5, 2)).all(2).sum(1)
        self.landmarks_all += sign * int((present == 5).sum())
        self.landmarks_some += sign * int(((present > 0) & (present < 5)).sum())

    @property
    def missing_images(self) -> int:
        return int(self.skipped.get("missing_image", 0))

    def skip_image(self, reason: str, num_faces: int, example: str = "") -> None:
        """Count a skipped image and the faces it carried (as dropped faces ``<reason>``);
        ``example`` (the file, and why) is kept for the first image skipped for each reason."""
        self.skipped[reason] += 1
        if num_faces:
            self.dropped[reason] += int(num_faces)
        if example:
            self.examples.setdefault(reason, example)

    def summary(self) -> str:
        """One line for the log."""
        drops = ", ".join(f"{n} {reason}" for reason, n in sorted(self.dropped.items())) or "none"
        other = {k: v for k, v in self.skipped.items() if k != "missing_image"}
        skipped = ", ".join(f"{n} {reason}" for reason, n in sorted(other.items())) or "none"
        line = (
            f"{self.source}: {self.images} images, {self.faces} faces ({self.ignored} ignored, "
            f"{self.clipped} clipped to the image); dropped faces: {drops}; "
            f"missing images: {self.missing_images}; unreadable images: {skipped}"
        )
        if self.landmarks_all or self.landmarks_some:  # a set of boxes only says nothing of points
            full, some, none = self.landmark_counts
            line += f"; faces with 5 / some / no landmarks: {full} / {some} / {none}"
        if self.notes:
            line += "; notes: " + ", ".join(f"{n} {k}" for k, n in sorted(self.notes.items()))
        if self.examples:
            line += "; e.g. " + "; ".join(f"{r}: {e}" for r, e in sorted(self.examples.items()))
        return line

    @property
    def lossy(self) -> bool:
        """Whether anything was skipped or dropped (then the summary is logged as a warning)."""
        return bool(self.skipped or self.dropped)


def image_size(path: Path) -> tuple[int, int] | str:
    """(H, W) from the image header (PIL reads no pixels for this), or the reason it cannot be used:
    ``missing_image`` or ``unreadable_image``."""
    try:
        if not path.is_file():
            return "missing_image"
    except (OSError, ValueError):  # a name too long for the file system, or with a NUL byte
        return "missing_image"
    try:
        with Image.open(path) as im:
            w, h = im.size
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        # PIL raises these for truncated headers, non-images and absurd sizes
        return "unreadable_image"
    if w <= 0 or h <= 0:
        return "unreadable_image"
    return int(h), int(w)


def resolve_image(
    stats: LoadStats, path: Path, num_faces: int, size: tuple[int, int] | None = None
) -> tuple[int, int] | None:
    """The (H, W) to use for ``path``, or None when the image is skipped (counted in ``stats``).

    ``size`` is what the label file says: it must match the image header, or the boxes would be
    misplaced (a common sign of EXIF-rotated photos or labels of another image version).
    """
    got = image_size(path)
    if isinstance(got, str):
        stats.skip_image(got, num_faces, str(path))
        return None
    if size is not None and tuple(size) != got:
        why = f"{path} (labels say {size[1]}x{size[0]}, the image is {got[1]}x{got[0]} WxH)"
        stats.skip_image("size_mismatch", num_faces, why)
        return None
    return got


def parse_numbers(tokens: list[str], where: str) -> np.ndarray:
    """float64 numbers (finite) or a LabelError naming ``where``. float64, so ``x + w`` written by
    a writer reproduces the float32 corner exactly."""
    try:
        vals = np.array([float(t) for t in tokens], np.float64)
    except ValueError:
        raise LabelError(f"{where}: expected numbers, got {' '.join(tokens)!r}") from None
    if not np.isfinite(vals).all():
        raise LabelError(f"{where}: non-finite number in {' '.join(tokens)!r}")
    return vals


def make_record(
    stats: LoadStats,
    path: Path,
    image_id: str,
    boxes: np.ndarray,
    ignore: np.ndarray,
    size: tuple[int, int],
    landmarks: np.ndarray | None = None,
    attributes: np.ndarray | None = None,
    *,
    box_format: str = "xywh",
) -> Record:
    """Clip boxes (``xywh`` or ``xyxy``, original pixels, float64) to the image, drop those with no
    area (counted by reason) and build the Record (float32)."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    ignore = np.asarray(ignore, bool).reshape(-1)
    if box_format == "xywh":
        b = np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], 1)
    elif box_format != "xyxy":
        raise ValueError(f"box_format must be 'xywh' or 'xyxy', got {box_format!r}")
    n = len(b)
    lm = np.full((n, 5, 2), np.nan, np.float32) if landmarks is None else np.asarray(landmarks, np.float32)
    h, w = size
    clipped = np.clip(b, 0, np.array([w, h, w, h], np.float64))
    nonpositive = (b[:, 2] <= b[:, 0]) | (b[:, 3] <= b[:, 1])
    outside = ~nonpositive & ((clipped[:, 2] <= clipped[:, 0]) | (clipped[:, 3] <= clipped[:, 1]))
    keep = ~(nonpositive | outside)
    counts = {"nonpositive_size": int(nonpositive.sum()), "outside_image": int(outside.sum())}
    stats.dropped.update({reason: k for reason, k in counts.items() if k})  # only reasons that occurred
    dups = int(keep.sum()) - len(np.unique(clipped[keep], axis=0))  # often a line pasted twice
    if dups:
        stats.notes["duplicate boxes (kept)"] += dups
    # float round-off from normalised formats (1e-13 px) is not worth reporting as clipping
    stats.clipped += int((keep & np.any(np.abs(clipped - b) > 1e-4, 1)).sum())
    stats.images += 1
    stats.faces += int(keep.sum())
    stats.ignored += int((keep & ignore).sum())
    stats.count_landmarks(lm[keep])
    with np.errstate(invalid="ignore"):  # NaN (absent) compares False
        out = ((lm[keep] < 0) | (lm[keep] > np.array([w, h], np.float32))).any(2).sum()
    if out:  # kept as labelled (conversion is lossless); training has no pixels for them
        stats.notes["landmark points outside the image (absent in training)"] += int(out)
    attrs = None if attributes is None else np.asarray(attributes, np.int16).reshape(n, len(WIDER_ATTRIBUTES))[keep]
    return Record(
        path, image_id, clipped[keep].astype(np.float32), ignore[keep], lm[keep], (int(h), int(w)), attrs
    )


def check_new_image(seen: dict[str, str], image_id: str, where: str) -> None:
    """LabelError when ``image_id`` is listed a second time (``seen``: id -> where first): two records
    of one image would leave one of them without predictions in evaluation, its faces all missed."""
    if image_id in seen:
        raise LabelError(f"{where}: image {image_id!r} is listed again (first at {seen[image_id]})")
    seen[image_id] = where


def landmarks_from_points(xy: np.ndarray, absent: np.ndarray) -> np.ndarray:
    """``(N, 5, 2)`` float32 landmarks with NaN where ``absent`` ``(N, 5)`` is True."""
    out = np.asarray(xy, np.float32).reshape(-1, 5, 2).copy()
    out[np.asarray(absent, bool).reshape(-1, 5)] = np.nan
    return out


def fmt(v: float) -> str:
    """Shortest text that reads back as the same float (integers without '.0'), for writers."""
    v = float(v)
    if math.isfinite(v) and v == int(v) and abs(v) < 2**53:
        return str(int(v))
    return repr(v)


def list_images(img_dir: Path) -> list[Path]:
    """Image files under ``img_dir`` (recursive), sorted."""
    return sorted(p for p in img_dir.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def read_lines(path: Path) -> list[str]:
    """The lines of a text label file (UTF-8, a BOM allowed); a binary or undecodable file is a
    LabelError naming it rather than a UnicodeDecodeError from deep inside."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = path.read_bytes()[: e.start].count(b"\n") + 1
        raise LabelError(f"{path}:{line}: not UTF-8 text ({e.reason}); is this a label file?") from None
    if "\x00" in text:
        raise LabelError(f"{path}:{text[: text.index(chr(0))].count(chr(10)) + 1}: NUL byte; is this a label file?")
    lines = re.split(r"\r\n|\r|\n", text)  # not splitlines(): it splits at \f, \x1c, ... too (lines drift)
    return lines[:-1] if lines and not lines[-1] else lines
