"""Page normalisation before recognition: orientation, skew, scanner-lid fill, stamps and lighting.

A scan arrives sideways, upside down, a few degrees skewed, with dark corners where the lid did not
cover, a red bank stamp over a value and a lamp's gradient across it. Each step is cheap and undoes one
of those, in an order where each helps the next:

1. stamp removal by colour: a red stamp is bright in the red channel while black or blue-black ink stays
   dark there, so the red channel is the grey page without the stamp (a grey scan keeps its stamp; the
   recogniser reads through a light one and low scores flag the rest);
2. the lid fill: dark regions connected to the border become paper;
3. flat field: the page divided by its blurred background removes uneven lighting and edge shadows;
4. orientation: text-line boxes from the detector are long and flat on an upright (or upside-down)
   page and tall on a sideways one; the line-orientation classifier then votes upright vs 180°;
5. skew: the median angle of long text-line boxes, undone by an affine rotation.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from callvet.forms.ocr import RapidOcrEngine

__all__ = ["NormalisedPage", "flatten", "normalise_page", "remove_red"]

_PROBE_SIDE = 960


@dataclass
class NormalisedPage:
    image: np.ndarray  # grey uint8, upright and deskewed
    rotation: int  # degrees counter-clockwise the scan had been rotated by (0/90/180/270)
    skew: float  # degrees counter-clockwise of the residual skew that was undone
    stamp_removed: bool
    text_boxes: int  # detector boxes on the probe image (0 = blank page)


def remove_red(rgb: np.ndarray) -> tuple[np.ndarray, bool]:
    """Grey page with red ink (stamps) removed when the page has colour; (grey, whether red was found)."""
    r, g, b = (rgb[:, :, i].astype(np.int16) for i in range(3))
    redness = r - np.maximum(g, b)
    found = bool((redness > 60).mean() > 0.002)
    if not found and float(np.abs(r - g).mean() + np.abs(g - b).mean()) < 2.0:
        return rgb[:, :, 1].copy(), False
    return rgb[:, :, 0].copy(), found


def _fill_lid(grey: np.ndarray) -> np.ndarray:
    small = cv2.resize(grey, None, fx=0.25, fy=0.25, interpolation=cv2.INTER_AREA)
    dark = (small < 90).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(dark, connectivity=4)
    h, w = small.shape
    mask = np.zeros_like(dark)
    for i in range(1, n):
        x, y, bw, bh, area = stats[i]
        touches = x == 0 or y == 0 or x + bw >= w or y + bh >= h
        if touches and area > 0.001 * h * w:
            mask[labels == i] = 1
    if not mask.any():
        return grey
    mask = cv2.dilate(mask, np.ones((3, 3), np.uint8))
    big = cv2.resize(mask, (grey.shape[1], grey.shape[0]), interpolation=cv2.INTER_NEAREST).astype(bool)
    out = grey.copy()
    out[big] = 255
    return out


def flatten(grey: np.ndarray) -> np.ndarray:
    """Divide by the background (a large closing then blur) so lighting gradients and shadows vanish."""
    scale = 0.25
    small = cv2.resize(grey, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    bg = cv2.morphologyEx(small, cv2.MORPH_CLOSE, np.ones((15, 15), np.uint8))
    bg = cv2.GaussianBlur(bg, (0, 0), 8)
    bg = cv2.resize(bg, (grey.shape[1], grey.shape[0]), interpolation=cv2.INTER_LINEAR)
    out = grey.astype(np.float32) / np.maximum(bg.astype(np.float32), 1.0) * 245.0
    return np.clip(out, 0, 255).astype(np.uint8)


def _probe(grey: np.ndarray) -> tuple[np.ndarray, float]:
    s = _PROBE_SIDE / max(min(grey.shape[:2]), 1)
    s = min(s, 1.0)
    return cv2.resize(grey, None, fx=s, fy=s, interpolation=cv2.INTER_AREA) if s < 1 else grey, s


def _quad_geometry(quads: list[np.ndarray]) -> tuple[int, int, list[float]]:
    """(flat boxes, tall boxes, skew angles in degrees of the flat ones, counter-clockwise positive)."""
    flat = tall = 0
    angles: list[float] = []
    for q in quads:
        e1, e2 = q[1] - q[0], q[3] - q[0]
        l1, l2 = float(np.hypot(*e1)), float(np.hypot(*e2))
        long_e, long_l, short_l = (e1, l1, l2) if l1 >= l2 else (e2, l2, l1)
        if long_l < 2.0 * short_l:
            continue
        if abs(long_e[0]) >= abs(long_e[1]):
            flat += 1
            ang = float(np.degrees(np.arctan2(-long_e[1], long_e[0] if long_e[0] != 0 else 1e-6)))
            if ang > 90:
                ang -= 180
            if ang < -90:
                ang += 180
            if long_l > 4 * short_l:
                angles.append(ang)
        else:
            tall += 1
    return flat, tall, angles


def _rotate_bound(grey: np.ndarray, angle: float) -> np.ndarray:
    """Rotate counter-clockwise by ``angle`` degrees, white outside the page, same size."""
    h, w = grey.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    return cv2.warpAffine(grey, m, (w, h), flags=cv2.INTER_LINEAR, borderValue=255)


def _rot90(grey: np.ndarray, ccw: int) -> np.ndarray:
    k = (ccw // 90) % 4
    return np.ascontiguousarray(np.rot90(grey, k)) if k else grey


def _crops(grey: np.ndarray, quads: list[np.ndarray], limit: int = 24) -> list[np.ndarray]:
    boxes = []
    for q in quads:
        x0, y0 = q.min(axis=0)
        x1, y1 = q.max(axis=0)
        if (x1 - x0) > 2.5 * (y1 - y0) and (y1 - y0) >= 8:
            boxes.append((float((x1 - x0) * (y1 - y0)), int(x0), int(y0), int(x1), int(y1)))
    boxes.sort(reverse=True)
    out = []
    for _, x0, y0, x1, y1 in boxes[:limit]:
        c = grey[max(y0, 0) : y1, max(x0, 0) : x1]
        if c.size:
            out.append(np.repeat(c[:, :, None], 3, axis=2))
    return out


def normalise_page(rgb: np.ndarray, engine: RapidOcrEngine) -> NormalisedPage:
    grey, stamp = remove_red(rgb)
    grey = flatten(_fill_lid(grey))
    probe, _ = _probe(grey)
    quads = engine.detect(probe)
    flat, tall, _ = _quad_geometry(quads)
    correction = 0
    if tall > flat:
        correction = 90
        probe = _rot90(probe, 90)
        quads = engine.detect(probe)
    up, down = engine.upright_votes(_crops(probe, quads))
    if down > up:
        correction = (correction + 180) % 360
        probe = _rot90(probe, 180)
        quads = engine.detect(probe)
    if correction == 90 and not quads:
        correction = 0
    _, _, angles = _quad_geometry(quads)
    skew = float(np.median(angles)) if len(angles) >= 3 else 0.0
    page = _rot90(grey, correction)
    if abs(skew) > 0.15:
        page = _rotate_bound(page, -skew)
    return NormalisedPage(
        image=page, rotation=(-correction) % 360, skew=round(skew, 2), stamp_removed=stamp,
        text_boxes=len(quads),
    )
