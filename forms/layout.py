"""Where things are on a page of OCR lines: printed labels (exact or one character off), rows, cells.

The geometry :mod:`callvet.forms.extract` reads values with: a label hit with its box, sub-boxes of a
line by character span, same-row tests, and unions of boxes.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any

import numpy as np
from callvet.forms.ocr import TextLine
from callvet.forms.templates import Template

__all__ = [
    "Hit", "Page", "clip_at_hits", "context_ok", "find_label", "label_hits", "norm", "sub_box", "union",
]

_ENUM = re.compile(r"^[*＊]?[(（]?[一二三四五六七八九十\d]{1,2}[)）]?[、.．]?$")  # "五、" before a heading


@dataclass(frozen=True)
class Hit:
    line: int
    start: int
    end: int
    box: tuple[float, float, float, float]
    paths: tuple[str, ...]  # empty for an ignore label (a stop)
    exact: bool


def norm(text: str) -> str:
    return unicodedata.normalize("NFKC", text).replace(" ", "").upper()


def sub_box(line: TextLine, start: int, end: int, n: int) -> tuple[float, float, float, float]:
    x0, y0, x1, y1 = line.box
    w = (x1 - x0) / max(n, 1)
    return (x0 + start * w, y0, x0 + end * w, y1)


def find_label(label: str, text: str) -> list[tuple[int, int, bool]]:
    """Occurrences of a label in a line: exact, or (labels of 4+ characters) one character off."""
    lab = norm(label)
    out = [(m.start(), m.start() + len(lab), True) for m in re.finditer(re.escape(lab), text)]
    if out or len(lab) < 4:
        return out
    n = len(lab)
    for i in range(0, len(text) - n + 1):
        window = text[i : i + n]
        if sum(a != b for a, b in zip(window, lab, strict=True)) == 1 and window[0] == lab[0]:
            out.append((i, i + n, False))
    return out


class Page:
    def __init__(self, lines: list[TextLine], image: np.ndarray | None) -> None:
        self.lines = lines
        self.texts = [norm(ln.text) for ln in lines]
        self.image = image
        self.height = (
            float(image.shape[0]) if image is not None else max((ln.box[3] for ln in lines), default=1)
        )
        self.width = (
            float(image.shape[1]) if image is not None else max((ln.box[2] for ln in lines), default=1)
        )
        self.median_h = float(np.median([ln.h for ln in lines])) if lines else 20.0

    def same_row(self, a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
        ha, hb = a[3] - a[1], b[3] - b[1]
        overlap = min(a[3], b[3]) - max(a[1], b[1])
        return overlap >= 0.5 * min(ha, hb) and abs((a[1] + a[3]) / 2 - (b[1] + b[3]) / 2) < 0.6 * max(ha, hb)


def label_hits(page: Page, template: Template) -> list[Hit]:
    specs = template.fields
    cands: list[tuple[int, int, int, bool, str, str | None]] = []  # line, start, end, exact, label, path
    for i, text in enumerate(page.texts):
        for spec in specs:
            for lab in spec.labels:
                for s, e, exact in find_label(lab, text):
                    cands.append((i, s, e, exact, lab, spec.path))
            for lab in spec.context_labels:
                for s, e, exact in find_label(lab, text):
                    cands.append((i, s, e, exact, lab, "ctx:" + spec.path))
        for lab in template.ignore_labels:
            for s, e, exact in find_label(lab, text):
                cands.append((i, s, e, exact, lab, None))
    cands.sort(key=lambda c: (c[0], -(c[2] - c[1]), not c[3]))
    kept: list[list[Any]] = []
    for line, s, e, exact, _lab, path in cands:
        clash = None
        for k in kept:
            if k[0] == line and s < k[2] and k[1] < e:
                clash = k
                break
        if clash is None:
            kept.append([line, s, e, exact, {path}])
        elif clash[1] == s and clash[2] == e:
            clash[4].add(path)
    hits: list[Hit] = []
    for line, s, e, exact, paths in kept:
        ln = page.lines[line]
        box = sub_box(ln, s, e, len(page.texts[line]))
        plain = {p for p in paths if p and not p.startswith("ctx:")}
        ctx = {p[4:] for p in paths if p and p.startswith("ctx:")}
        chosen: set[str] = set()
        by_ctx = {p for p in ctx if context_ok(page, box, next(f for f in specs if f.path == p).context)}
        if by_ctx:
            chosen = by_ctx
        elif plain:
            chosen = plain
        hits.append(Hit(line, s, e, box, tuple(sorted(chosen)), exact))
    return hits


def context_ok(page: Page, box: tuple[float, float, float, float], context: tuple[str, ...]) -> bool:
    if not context:
        return False
    h = box[3] - box[1]
    for i, text in enumerate(page.texts):
        if not any(norm(c) in text for c in context):
            continue
        b = page.lines[i].box
        left_same_row = page.same_row(b, box) and b[0] < box[0]
        inside = b[0] <= box[0] and b[2] >= box[2] and b[1] <= box[1] + 1 and b[3] >= box[3] - 1
        above = b[3] <= box[1] + 2 and box[1] - b[3] < 2.5 * h and b[0] < box[2] and b[2] > box[0] - 3 * h
        if left_same_row or above or (inside and text.find(norm(context[0])) != -1):
            return True
    return False


def clip_at_hits(
    page: Page, hits_by_line: dict[int, list[Hit]], line: int, start: int
) -> tuple[str, bool]:
    """The text of a line from ``start`` up to the next label hit in it; (text, whether cut)."""
    text = page.texts[line]
    cut = len(text)
    for h in hits_by_line.get(line, []):
        if h.start >= start and h.start < cut:
            cut = h.start
    part = text[start:cut]
    if cut < len(text) and _ENUM.match(part):
        part = ""
    return part, cut < len(text)


def union(boxes: list[tuple[float, float, float, float]]) -> tuple[float, float, float, float] | None:
    if not boxes:
        return None
    return (
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[2] for b in boxes),
        max(b[3] for b in boxes),
    )
