"""Cartoon faces (skin, eyes, brows, nose, mouth; sometimes hair, glasses or a mask), face-sized
distractors that are not faces, and the placement of faces in an image."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from facedet.data.synthetic.draw import draw_ellipse, draw_line, draw_poly, half_extent

FACE_RANGE = (8.0, 200.0)  # face box widths before clipping to the image

# RGB palettes
SKIN = np.float32(
    [[255, 224, 196], [241, 194, 125], [224, 172, 105], [198, 134, 66], [141, 85, 36], [92, 58, 32]]
)
HAIR = np.float32(
    [[20, 15, 10], [60, 40, 25], [110, 75, 40], [200, 170, 110], [150, 150, 150], [140, 60, 25]]
)
MASKS = np.float32([[170, 210, 235], [240, 240, 240], [30, 30, 35], [90, 140, 200]])
EYES = np.float32([[40, 25, 15], [60, 90, 140], [60, 100, 60]])


def skin_tone(rng: np.random.Generator) -> np.ndarray:
    i = rng.uniform(0, len(SKIN) - 1)  # interpolate between palette tones for a continuum
    lo = int(i)
    return SKIN[lo] + (i - lo) * (SKIN[lo + 1] - SKIN[lo]) + rng.normal(0, 8, 3)


def draw_distractor(img: np.ndarray, rng: np.random.Generator) -> None:
    """Face-sized things that are not faces: plain skin ellipses (with hair: a back of a head),
    coloured ellipses and irregular blobs, some skin-coloured."""
    h, w = img.shape[:2]
    s = float(np.exp(rng.uniform(np.log(10), np.log(150))))
    x, y = rng.uniform(0, w), rng.uniform(0, h)
    col = skin_tone(rng) * rng.uniform(0.6, 1.2) if rng.random() < 0.5 else rng.uniform(0, 255, 3)
    kind = rng.integers(3)
    if kind == 0:
        angle = rng.uniform(-40, 40)
        if rng.random() < 0.3:
            draw_ellipse(img, (x, y - 0.15 * s), (0.55 * s, 0.6 * s), angle, HAIR[rng.integers(len(HAIR))])
        draw_ellipse(img, (x, y), (s / 2, s / 2 * rng.uniform(0.7, 1.5)), angle, col)
    elif kind == 1:
        n = int(rng.integers(7, 14))
        t = np.sort(rng.uniform(0, 2 * np.pi, n))
        r = s / 2 * rng.uniform(0.55, 1.2, n)
        draw_poly(img, np.stack([x + r * np.cos(t), y + r * np.sin(t)], 1), col)
    else:  # ellipse with a stripe or a single spot: features, but not a face's arrangement
        draw_ellipse(img, (x, y), (s / 2, s / 2 * rng.uniform(0.6, 1.4)), rng.uniform(0, 180), col)
        dark = col * rng.uniform(0.2, 0.6)
        if rng.random() < 0.5:
            draw_line(img, (x - s / 3, y), (x + s / 3, y), dark, max(1, int(s / 12)))
        else:
            draw_ellipse(img, (x + rng.uniform(-0.2, 0.2) * s, y), (s / 8, s / 8), 0, dark)


def draw_face(
    img: np.ndarray, rng: np.random.Generator, cx: float, cy: float, a: float, b: float, angle: float
) -> np.ndarray:
    """Draw a face ellipse with semi-axes ``a`` (x) and ``b`` (y) rotated by ``angle`` degrees;
    returns its five points (see ``face_points``), computed from the drawn geometry without a random
    draw of their own, so the pixels and the generator's stream are those of a renderer without them."""
    c, s = np.cos(np.deg2rad(angle)), np.sin(np.deg2rad(angle))
    yaw = rng.uniform(-0.22, 0.22)

    def P(dx: float, dy: float) -> tuple[float, float]:  # face frame (units of a, b) -> image
        x, y = dx * a, dy * b
        return cx + x * c - y * s, cy + x * s + y * c

    light = rng.uniform(0.55, 1.25)
    skin = skin_tone(rng) * light
    hair = HAIR[rng.integers(len(HAIR))] * light
    line = max(1, int(round(0.05 * a)))
    if rng.random() < 0.6:  # hair behind the head; long hair shows at the sides
        draw_ellipse(img, P(0, -0.2), (1.12 * a, 0.98 * b), angle, hair)
        if rng.random() < 0.35:
            draw_ellipse(img, P(0, 0.15), (1.2 * a, 1.05 * b), angle, hair)
    if rng.random() < 0.6:
        for side in (-1, 1):
            draw_ellipse(img, P(side * 0.98, 0.0), (0.17 * a, 0.28 * b), angle, skin * 0.9)
    draw_ellipse(img, (cx, cy), (a, b), angle, skin)
    draw_ellipse(img, P(-0.25 * np.sign(yaw), -0.25), (0.45 * a, 0.35 * b), angle, skin * 1.06)  # highlight
    eye_col = EYES[rng.integers(len(EYES))]
    closed = rng.random() < 0.08
    eyes = []
    for side in (-1, 1):
        ex, k = side * 0.36 + yaw, 1.0 - side * yaw * 1.5  # the far eye looks smaller under yaw
        eyes.append(P(ex, -0.08))
        if closed:
            draw_ellipse(img, P(ex, -0.08), (0.16 * a * k, 0.04 * b), angle, skin * 0.45, line, 0, 180)
        else:
            draw_ellipse(img, P(ex, -0.08), (0.17 * a * k, 0.075 * b), angle, np.array([235, 235, 228]) * light)
            draw_ellipse(img, P(ex + 0.3 * yaw, -0.08), (0.075 * a * k, 0.075 * a * k), 0, eye_col * light)
            draw_ellipse(img, P(ex + 0.3 * yaw, -0.08), (0.035 * a * k, 0.035 * a * k), 0, (10, 10, 10))
        if rng.random() < 0.85:
            draw_ellipse(img, P(ex, -0.26), (0.2 * a * k, 0.07 * b), angle, hair * 0.7, line, 200, 340)
    draw_line(img, P(yaw * 0.6, -0.02), P(yaw + 0.06, 0.22), skin * 0.72, line)  # nose
    draw_ellipse(img, P(yaw, 0.25), (0.12 * a, 0.04 * b), angle, skin * 0.7)
    lips = np.array([170, 70, 70], np.float32) * light
    m, mouth = P(yaw * 0.8, 0.52), rng.integers(3)
    if mouth == 0:  # smile
        draw_ellipse(img, P(yaw * 0.8, 0.42), (0.3 * a, 0.12 * b), angle, lips, line + 1, 10, 170)
    elif mouth == 1:  # open
        draw_ellipse(img, m, (0.24 * a, 0.09 * b), angle, lips * 0.45)
    else:
        draw_ellipse(img, m, (0.28 * a, 0.05 * b), angle, lips)
    draw_accessory(img, rng, P, eyes, (a, b, angle), light, line)
    return face_points(P, yaw, int(mouth))


# Mouth corners in the face frame (units of a, b) relative to the mouth's centre, by mouth kind:
# the ends of the drawn ellipse's long axis, or of the smile's arc (10 to 170 degrees of an ellipse
# of semi-axes 0.3, 0.12 centred 0.1 above the other mouths).
_SMILE = 10.0
MOUTH_CORNERS = {
    0: (0.3 * np.cos(np.deg2rad(_SMILE)), 0.42 + 0.12 * np.sin(np.deg2rad(_SMILE))),  # smile
    1: (0.24, 0.52),  # open
    2: (0.28, 0.52),  # closed
}


def face_points(P: Callable[[float, float], tuple[float, float]], yaw: float, mouth: int) -> np.ndarray:
    """The five points (left eye, right eye, nose tip, left and right mouth corner; "left" = the
    image's left) of a face ``draw_face`` drew, (5, 2) float64 image pixels: the centres of the eye
    shapes (open or closed), the centre of the nose's tip (the dark ellipse under the nose line) and
    the ends of the mouth. ``P`` maps the face frame to the image; in-plane rotations stay below 20
    degrees, so the frame's -x side is the image's left. Points under glasses or a mask are still
    points: they are where the face has them, as annotators place occluded points (RetinaFace,
    WFLW), and a face-recognition crop needs all five."""
    mx, my = MOUTH_CORNERS[mouth]
    frame = [(-0.36 + yaw, -0.08), (0.36 + yaw, -0.08), (yaw, 0.25), (yaw * 0.8 - mx, my), (yaw * 0.8 + mx, my)]
    return np.array([P(dx, dy) for dx, dy in frame], np.float64)


def draw_accessory(img: np.ndarray, rng: np.random.Generator, P: Callable[[float, float], tuple[float, float]],
                   eyes: list[tuple[float, float]], shape: tuple[float, float, float], light: float,
                   line: int) -> None:
    """Glasses (15%), a surgical mask (20%) or nothing, on the face ``draw_face`` drew: ``P`` maps the
    face frame to the image, ``shape`` is its semi-axes and angle."""
    a, b, angle = shape
    r = rng.random()
    if r < 0.15:  # glasses, a third of them sunglasses
        dark = np.array([25, 25, 25], np.float32)
        for e in eyes:
            draw_ellipse(img, e, (0.24 * a, 0.2 * b), angle, dark, -1 if rng.random() < 0.33 else line)
        draw_line(img, P(-0.12, -0.08), P(0.12, -0.08), dark, line)
    elif r < 0.35:  # a surgical mask over nose and mouth, with its strings
        col = MASKS[rng.integers(len(MASKS))] * light
        fr = np.array([(-0.97, 0.08), (0.97, 0.08), (0.85, 0.6), (0.35, 0.93), (-0.35, 0.93), (-0.85, 0.6)])
        draw_poly(img, np.array([P(*p) for p in fr]), col)
        for dy in (0.35, 0.6):  # pleats
            draw_line(img, P(-0.8, dy), P(0.8, dy), col * 0.8)
        for side in (-1, 1):  # strings
            draw_line(img, P(side * 0.97, 0.12), P(side * 1.02, -0.15), col * 0.9)


def place_faces(rng: np.random.Generator, h: int, w: int) -> list[tuple[float, float, float, float, float]]:
    """(cx, cy, a, b, angle) per face, biggest first, overlapping each other by at most a little."""
    n = int(rng.integers(1, 9))
    widths = np.sort(np.exp(rng.uniform(np.log(FACE_RANGE[0]), np.log(FACE_RANGE[1]), n)))[::-1]
    faces, boxes = [], np.zeros((0, 4))
    for fw in widths:
        a = fw / 2
        b = a * rng.uniform(1.15, 1.35)
        angle = rng.uniform(-20, 20)
        hw, hh = half_extent(a, b, angle)
        k = min(1.0, 0.45 * w / hw, 0.45 * h / hh)  # clip to fit the image
        a, b, hw, hh = a * k, b * k, hw * k, hh * k
        for _ in range(30):
            cx, cy = rng.uniform(hw, w - hw), rng.uniform(hh, h - hh)
            box = np.array([cx - hw, cy - hh, cx + hw, cy + hh])
            iw = np.clip(np.minimum(boxes[:, 2], box[2]) - np.maximum(boxes[:, 0], box[0]), 0, None)
            ih = np.clip(np.minimum(boxes[:, 3], box[3]) - np.maximum(boxes[:, 1], box[1]), 0, None)
            smaller = np.minimum((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]), 4 * hw * hh)
            if not np.any(iw * ih > 0.1 * smaller):
                faces.append((cx, cy, a, b, angle))
                boxes = np.vstack([boxes, box])
                break
    return faces
