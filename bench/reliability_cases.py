"""The corruptions of bench/reliability_data.py: ``make_case`` writes a valid little data set, hands
it to the builder of the case's kind (``BUILDERS``; their order is ``KINDS``, the round-robin order),
and writes the result with the outcome that corruption must have. A builder changes the label
lines or the images and records what the change must cost in the case's ``Expect``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench import reliability_labels as labels
from bench.reliability_labels import COORDS, DECODE_FAIL, JPEGS, Case, Expect, Unit, decode, fate, num, render


@dataclass
class Draft:
    """A case being corrupted: its images, its label files as lines, the face (line ``u`` of file
    ``p``) a label corruption hits, and what the corruption must cost."""

    root: Path
    fmt: str
    rng: np.random.Generator
    imgs: list[dict]
    docs: dict[Path, list[Unit]]
    case: Case
    p: Path
    u: Unit
    variant: bool  # a coin flip some kinds use to choose between two forms
    err: tuple | None = None  # (file, Unit / good lines before / None, line): the error must name these
    encoding: str = "utf-8"  # of the label file ``p``
    raw: bytes | None = None  # bytes written as ``p`` instead of its lines

    @property
    def ex(self) -> Expect:
        return self.case.expect

    @property
    def units(self) -> list[Unit]:
        return self.docs[self.p]

    @property
    def coords(self) -> list[int]:  # token positions of the 4 box numbers
        return COORDS.get(self.fmt, [0, 1, 2, 3])

    @property
    def k(self) -> int:  # the image of the face
        return self.u.tag[1]

    @property
    def im(self) -> dict:
        return self.imgs[self.k]

    def pick(self, options: list | tuple) -> object:
        return options[int(self.rng.integers(len(options)))]

    def expect_box(self, tokens: list[str], h: int, w: int, line_error: bool = False) -> None:
        """The face's box becomes ``tokens`` in an ``h`` x ``w`` image: an error, a drop, or nothing."""
        box = decode(self.fmt, tokens, h, w)
        if box is None:
            self.err = (self.p, self.u, line_error)
        elif fate(box, h, w) != "kept":
            self.ex.dropped[fate(box, h, w)] += 1

    def skip(self, reason: str, kk: int) -> None:
        """Image ``kk`` is skipped for ``reason``, its faces dropped with it."""
        self.ex.skipped[reason] += 1
        self.ex.dropped[reason] += len(self.imgs[kk]["boxes"])


# ---------------------------------------------------------------- a box number
def _nonfinite(d: Draft, c: int) -> None:
    d.u.tokens[c] = d.pick(["NaN", "Infinity", "-Infinity", "1e400", "1" + "0" * 400] if d.fmt == "coco"
                           else ["nan", "inf", "-inf", "1e400", "NaN"])


def _negative(d: Draft, c: int) -> None:
    d.u.tokens[c] = repr(-d.rng.uniform(0.01, 1.0)) if d.fmt == "yolo" else str(-int(d.rng.integers(1, 100)))


def _huge(d: Draft, c: int) -> None:
    d.u.tokens[c] = d.pick(["1e6", "1e30", "1e300", "1.7e308"])


def _no_size(d: Draft, c: int) -> None:
    toks = d.u.tokens
    if d.fmt == "voc":  # x2 <= x1 or y2 <= y1
        i = int(d.rng.integers(2))
        toks[2 + i] = num(float(toks[i]) - int(d.rng.integers(0, 5)))
    else:
        toks[d.coords[2] + int(d.rng.integers(2))] = d.pick(
            ["0", "-0.1"] if d.fmt == "yolo" else ["0", "-5", "-0.0"])


def _non_numeric(d: Draft, c: int) -> None:
    d.u.tokens[c] = d.pick(['"12"', "null", "true", "[1, 2]", "12abc"] if d.fmt == "coco"
                           else ["12abc", "x", "1,5", "0x1F", "--"])


def _coord(change: Callable[[Draft, int], None]) -> Callable[[Draft], None]:
    """A builder that changes one of the face's box numbers (drawn first) with ``change``."""
    def build(d: Draft) -> None:
        c = d.pick(d.coords)
        change(d, c)
        # "12abc" is not json: the error names the line
        d.expect_box(d.u.tokens, d.im["h"], d.im["w"], line_error=d.u.tokens[c] == "12abc" and d.fmt == "coco")
    return build


# ---------------------------------------------------------------- a line's fields
def _missing_field(d: Draft) -> None:
    u, units = d.u, d.units
    if d.fmt == "wider" and d.variant:  # the count line of the image gone: its first face line is read as one
        i = next(i for i, v in enumerate(units) if v.tag == ("count", d.k))
        del units[i]
        d.err = (d.p, units[i], True)
    elif d.fmt in ("wider", "retinaface", "yolo"):
        gone = d.pick(d.coords)
        u.tokens = u.tokens[:3] if d.fmt == "wider" else [t for j, t in enumerate(u.tokens) if j != gone]
        d.err = (d.p, u, False)
    elif d.fmt == "coco":
        if d.variant:
            u.omit = ("bbox",)
            d.err = (d.p, u, False)
        else:  # an annotation without image_id belongs to no image: dropped, counted
            u.omit = ("image_id",)
            d.ex.dropped["unknown_image_id"] += 1
    elif d.variant:  # voc: no <bndbox> or no <xmin>: an error; no <size>: the header's size is used
        u.omit = d.pick([("bndbox",), ("xmin",)])
        d.err = (d.p, u, False)
    else:
        del units[2]


def _extra_field(d: Draft) -> None:
    if d.fmt == "coco":
        d.u.extra = ', "score": 0.9, "note": "x"'
    elif d.fmt == "voc":
        d.u.extra = "<truncated>0</truncated><pose>Left</pose>"
    else:
        extra = 1 if d.fmt != "retinaface" or d.variant else 2  # retinaface reads one more as a score
        d.u.tokens = d.u.tokens + ["0"] * extra
        d.err = None if d.fmt == "retinaface" and extra == 1 else (d.p, d.u, False)


# ---------------------------------------------------------------- lines twice, no lines
def _image_twice(d: Draft) -> None:
    """The image's lines (coco: its entry) a second time: an error at the second."""
    units, k, wider = d.units, d.k, d.fmt == "wider"
    first = next(j for j, v in enumerate(units) if v.tag == ("img", k))
    last = max(j for j, v in enumerate(units) if v.tag[1:2] == (k,)) + (wider and not d.im["boxes"])
    dup = [Unit(v.text, v.tag, list(v.tokens) if v.tokens else None, v.section) for v in units[first:last + 1]]
    if d.fmt == "coco":  # the image entry only
        dup, last = [dup[0]], first
    units[last + 1:last + 1] = dup
    d.ex.images, d.ex.faces = d.ex.images + 1, d.ex.faces + sum(v.tag[:1] == ("face",) for v in dup)
    d.err = (d.p, dup[0], d.fmt != "coco")


def _duplicated_line(d: Draft) -> None:
    u, units, im = d.u, d.units, d.im
    i = units.index(u)
    if d.fmt == "wider" and d.variant:  # one face too many: the extra line is read as an image path
        units.insert(i, Unit(tag=u.tag, tokens=list(u.tokens)))
        count = next(j for j, v in enumerate(units) if v.tag == ("count", d.k))
        d.err = (d.p, units[count + len(im["boxes"]) + 1], True)
    elif d.fmt == "voc" and d.variant:  # a second xml for the same image
        copy = d.p.with_name(d.p.stem + "_copy.xml")
        d.docs[copy] = units
        d.ex.images, d.ex.faces = d.ex.images + 1, d.ex.faces + len(im["boxes"])
        d.err = (copy, None, False)
    elif d.fmt == "wider" or (d.variant and d.fmt in ("retinaface", "coco")):  # an image twice: an error
        _image_twice(d)
    else:
        units.insert(i, Unit(tag=u.tag, tokens=list(u.tokens), section=u.section))
        d.ex.faces += 1


def _empty_file(d: Draft) -> None:
    d.docs[d.p] = []
    if d.fmt in ("wider", "retinaface"):
        d.ex.faces = d.ex.images = 0
    elif d.fmt == "yolo":
        d.ex.faces -= len(d.im["boxes"])
    else:
        d.err = (d.p, None, True)


# ---------------------------------------------------------------- encodings
def _latin1(d: Draft) -> None:
    d.encoding = "latin-1"
    if d.fmt in ("wider", "retinaface", "coco"):  # in the image's name
        img_unit = next(v for v in d.units if v.tag == ("img", d.k))
        img_unit.text = img_unit.text.replace(".jpg", "é.jpg")
        d.err = (d.p, img_unit, True)
    elif d.fmt == "yolo":
        d.u.tokens = d.u.tokens + ["é"]
        d.err = (d.p, d.u, True)
    else:
        d.u.text = "<name>visagé</name>"
        if d.variant:  # declared: valid XML
            d.units.insert(0, Unit('<?xml version="1.0" encoding="ISO-8859-1"?>'))
        else:
            d.err = (d.p, d.u, True)


def _utf16(d: Draft) -> None:
    d.encoding = "utf-16"
    if d.fmt != "voc":  # XML with a byte-order mark may be UTF-16
        d.err = (d.p, None, True)


def _utf8_bom(d: Draft) -> None:
    d.encoding = "utf-8-sig"


def _binary_garbage(d: Draft) -> None:
    m = int(d.rng.integers(0, max(1, len(d.units))))
    junk = bytes(d.rng.integers(0, 256, int(d.rng.integers(10, 60)), dtype=np.uint8))
    d.raw = render(d.fmt, d.units[:m]).encode() + (b"\x80" + junk if d.variant else b"\x00 1 2 abc\n")
    d.err = (d.p, m, True)


# ---------------------------------------------------------------- an image file
def _image(change: Callable[[Draft, int, Path, bytes, int], None]) -> Callable[[Draft], None]:
    """A builder that draws an image and a cut point after its JPEG header, then calls
    ``change(d, image index, image path, its JPEG bytes, cut)``."""
    def build(d: Draft) -> None:
        kk = int(d.rng.integers(len(d.imgs)))
        data = JPEGS[d.imgs[kk]["h"], d.imgs[kk]["w"]]
        cut = int(d.rng.integers(data.index(b"\xff\xda") + 16, len(data) - 2))  # after the header
        change(d, kk, d.root / "images" / d.imgs[kk]["name"], data, cut)
    return build


def _truncated_jpeg(d: Draft, kk: int, path: Path, data: bytes, cut: int) -> None:
    path.write_bytes(data[:cut])
    d.case.verify = d.variant
    d.skip(DECODE_FAIL, kk)


def _unreadable_after_load(d: Draft, kk: int, path: Path, data: bytes, cut: int) -> None:
    d.case.verify = True
    d.case.break_after_load.append((path, cut))
    d.skip(DECODE_FAIL, kk)


def _broken_image(d: Draft, kk: int, path: Path, data: bytes, cut: int) -> None:
    path.write_bytes(d.pick([b"", b"not an image", b"\x00" + data[1:], data[: int(d.rng.integers(2, 20))]]))
    d.skip("unreadable_image", kk)


def _missing_image(d: Draft, kk: int, path: Path, data: bytes, cut: int) -> None:
    path.unlink()
    d.skip("missing_image", kk)


def _wrong_image_size(d: Draft, kk: int, path: Path, data: bytes, cut: int) -> None:
    h2, w2 = d.imgs[kk]["h"] + 9, d.imgs[kk]["w"] - 7
    path.write_bytes(JPEGS[h2, w2])
    if d.fmt in ("coco", "voc") or (d.fmt == "retinaface" and d.imgs[kk]["declare"]):
        d.skip("size_mismatch", kk)
        return
    for v in d.units:  # boxes are read against the new size
        if v.tag[:2] == ("face", kk):
            d.expect_box(v.tokens, h2, w2)


BUILDERS: dict[str, Callable[[Draft], None]] = {
    "valid": lambda d: None, "nonfinite_coord": _coord(_nonfinite), "negative_coord": _coord(_negative),
    "huge_coord": _coord(_huge), "zero_or_negative_size": _coord(_no_size), "non_numeric": _coord(_non_numeric),
    "missing_field": _missing_field, "extra_field": _extra_field, "duplicated_line": _duplicated_line,
    "empty_file": _empty_file, "latin1": _latin1, "utf16": _utf16, "utf8_bom": _utf8_bom,
    "binary_garbage": _binary_garbage, "truncated_jpeg": _image(_truncated_jpeg),
    "broken_image": _image(_broken_image), "missing_image": _image(_missing_image),
    "wrong_image_size": _image(_wrong_image_size), "unreadable_after_load": _image(_unreadable_after_load),
}
KINDS = tuple(BUILDERS)


# ---------------------------------------------------------------- a whole case
def make_case(root: Path, kind: str, fmt: str, rng: np.random.Generator) -> Case:
    """Write a valid little data set in ``fmt`` under ``root``, corrupt it as ``kind`` says, and
    return it with the outcome that corruption must have."""
    imgs = labels.write_images(root, rng)
    docs = labels.docs_for(fmt, root, imgs)
    ex = Expect(faces=sum(len(im["boxes"]) for im in imgs), images=len(imgs))
    faces = [(p, u) for p, us in docs.items() for u in us if u.tag[:1] == ("face",)]
    p, u = faces[int(rng.integers(len(faces)))]  # the face (and its file) a label corruption hits
    d = Draft(root, fmt, rng, imgs, docs, Case(kind, fmt, {}, ex), p, u, variant=rng.random() < 0.5)
    BUILDERS[kind](d)
    labels.write_labels(fmt, d.docs, p, d.encoding, d.raw)
    ex.error = labels.expected_error(fmt, d.docs, d.err)
    d.case.node = labels.node_for(fmt, root)
    return d.case
