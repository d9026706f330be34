"""OCR lines -> contract fields: label matching, value regions, normalisation and confidence.

For every field the template names, the extractor finds the printed labels on the page (exact, or one
character off for long labels), resolves overlaps (the longest label wins, so 推荐人姓名 never reads
as 姓名), takes the text at the template's position, and normalises it with the field's type.

Confidence = OCR score x format validity x label match x position certainty. A field below
``review_below`` goes into ``needs_review``; one that does not normalise keeps its raw text in
``fields`` with confidence 0 and stays out of the application, so nothing is guessed silently.
A page that is blank, or whose text does not read as an application form, is rejected with a reason.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
from callvet.core.application import Application
from callvet.core.errors import InvalidInput
from callvet.forms.fields import Parsed, normalise
from callvet.forms.layout import (
    Hit,
    Page,
    clip_at_hits,
    label_hits,
    norm,
    sub_box,
    union,
)
from callvet.forms.ocr import TextLine
from callvet.forms.templates import FieldSpec, Template, TemplateSet
from pydantic import ValidationError

__all__ = ["REVIEW_BELOW", "ExtractedField", "Extraction", "NotAForm", "extract_fields"]

REVIEW_BELOW = 0.85
_UNIT = re.compile(r"^[(（][^)）]{0,4}[)）]")  # 月收入(元): a unit printed with the label
_PUNCT = re.compile(r"^[\s:：*＊.,，。、;；|()（）\[\]]+|[\s:：*＊,，。、;；|]+$")


class NotAForm(InvalidInput):
    """The page is not an application form (blank, another document): nothing is extracted."""


@dataclass
class ExtractedField:
    path: str
    value: object | None
    confidence: float
    box: tuple[int, int, int, int] | None
    raw: str = ""
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "value": self.value,
            "confidence": round(self.confidence, 3),
            "box": list(self.box) if self.box else None,
            "raw": self.raw,
            "note": self.note,
        }


@dataclass
class Extraction:
    template: str
    fields: list[ExtractedField]
    application: dict[str, Any] | None
    needs_review: list[str]
    errors: list[str] = field(default_factory=list)

    def value(self, path: str) -> object | None:
        for f in self.fields:
            if f.path == path:
                return f.value
        return None


@dataclass
class _Candidate:
    parsed: Parsed
    raw: str
    score: float
    box: tuple[float, float, float, float] | None
    label: float
    position: float
    segments: list[tuple[int, int]] = field(default_factory=list)

    @property
    def confidence(self) -> float:
        return self.parsed.validity * self.score * self.label * self.position


class _Extractor:
    def __init__(
        self,
        page: Page,
        template: Template,
        hits: list[Hit],
        reread: Callable[[tuple[float, float, float, float]], list[TextLine]] | None,
    ) -> None:
        self.page = page
        self.template = template
        self.hits = hits
        self.reread = reread
        self.by_line: dict[int, list[Hit]] = {}
        for h in hits:
            self.by_line.setdefault(h.line, []).append(h)

    # -- value regions -------------------------------------------------------------------------
    def same_cell(self, hit: Hit) -> list[tuple[str, float, tuple[float, float, float, float], int]]:
        text, _ = clip_at_hits(self.page, self.by_line, hit.line, hit.end)
        text = _PUNCT.sub("", _UNIT.sub("", text))
        if not text:
            return []
        ln = self.page.lines[hit.line]
        box = sub_box(ln, hit.end, hit.end + len(text), len(self.page.texts[hit.line]))
        return [(text, ln.score, box, hit.line)]

    def right_of(self, hit: Hit) -> list[tuple[str, float, tuple[float, float, float, float], int]]:
        segs = self.same_cell(hit)
        _, cut = clip_at_hits(self.page, self.by_line, hit.line, hit.end)
        if cut:
            return segs
        stop = self.page.width
        for h in self.hits:
            if (
                h is not hit
                and h.line != hit.line
                and self.page.same_row(h.box, hit.box)
                and h.box[0] > hit.box[2]
            ):
                stop = min(stop, h.box[0])
        row = []
        for i, ln in enumerate(self.page.lines):
            if i == hit.line or not self.page.same_row(ln.box, hit.box):
                continue
            if ln.box[0] < hit.box[2] - 0.5 * hit.box[3] + 0.5 * hit.box[1] or ln.cx > stop:
                continue
            row.append(i)
        row.sort(key=lambda i: self.page.lines[i].box[0])
        for i in row:
            starts = [h.start for h in self.by_line.get(i, [])]
            if starts and min(starts) == 0:
                break
            text, cut = clip_at_hits(self.page, self.by_line, i, 0)
            text = _PUNCT.sub("", text)
            ln = self.page.lines[i]
            if text:
                segs.append((text, ln.score, sub_box(ln, 0, len(text), len(self.page.texts[i])), i))
            if cut:
                break
        return segs

    def below(self, hit: Hit) -> list[tuple[str, float, tuple[float, float, float, float], int]]:
        lh = hit.box[3] - hit.box[1]
        right = self.page.width
        for h in self.hits:
            if h is not hit and self.page.same_row(h.box, hit.box) and h.box[0] > hit.box[2]:
                right = min(right, h.box[0])
        left = hit.box[0] - 1.0 * lh
        cands = []
        for i, ln in enumerate(self.page.lines):
            if i == hit.line:
                continue
            x0, y0 = ln.box[0], ln.box[1]
            if y0 < hit.box[3] - 0.4 * lh or y0 > hit.box[3] + 2.0 * lh:
                continue
            if x0 < left or x0 >= right - 0.5 * lh:
                continue
            if ln.h < 0.6 * lh and ln.score < 0.6:
                continue
            cands.append(i)
        if not cands:
            return []
        for i in cands:
            if any(h.start == 0 for h in self.by_line.get(i, [])):
                cands = [c for c in cands if self.page.lines[c].box[1] < self.page.lines[i].box[1]]
        if not cands:
            return []
        top = min(cands, key=lambda i: self.page.lines[i].box[1])
        row = [
            i
            for i in cands
            if self.page.same_row(self.page.lines[i].box, self.page.lines[top].box)
            or abs(self.page.lines[i].cy - self.page.lines[top].cy) < 0.7 * lh
        ]
        row.sort(key=lambda i: self.page.lines[i].box[0])
        segs = []
        for i in row:
            text, _ = clip_at_hits(self.page, self.by_line, i, 0)
            text = _PUNCT.sub("", text)
            if text:
                ln = self.page.lines[i]
                segs.append((text, ln.score, sub_box(ln, 0, len(text), len(self.page.texts[i])), i))
        return segs

    # -- reading -------------------------------------------------------------------------------
    def candidate(
        self,
        spec: FieldSpec,
        segs: list[tuple[str, float, tuple[float, float, float, float], int]],
        hit: Hit | None,
        position: float,
    ) -> _Candidate | None:
        if not segs:
            return None
        if len(segs) > 1 and spec.type != "checkbox":
            # Stamp text or a neighbour's value may follow on the row: the best-validating prefix wins,
            # the longer one on a tie (a city and its district printed as two pieces).
            options = [self._candidate(spec, segs[:k], hit, position) for k in range(1, len(segs) + 1)]
            cand = max(options, key=lambda c: (round(c.confidence, 3), len(c.raw)))
        else:
            cand = self._candidate(spec, segs, hit, position)
        if (
            cand.parsed.validity < 0.95
            and self.reread is not None
            and cand.box is not None
            and spec.type != "checkbox"
        ):
            better = self.second_look(spec, cand.box, hit, position)
            if better is not None and better.confidence > cand.confidence:
                return better
        return cand

    def _candidate(
        self,
        spec: FieldSpec,
        segs: list[tuple[str, float, tuple[float, float, float, float], int]],
        hit: Hit | None,
        position: float,
    ) -> _Candidate:
        raw = "".join(s[0] for s in segs)
        box = union([s[2] for s in segs])
        score = float(np.mean([s[1] for s in segs])) if spec.type == "id_number" else min(s[1] for s in segs)
        parsed = self.parse(spec, raw, box)
        if spec.type == "id_number" and parsed.validity == 1.0:
            score = max(score, 0.97)
        label = 1.0 if hit is None or hit.exact else 0.9
        return _Candidate(parsed, raw, score, box, label, position, [(s[3], 0) for s in segs])

    def parse(self, spec: FieldSpec, raw: str, box: tuple[float, float, float, float] | None) -> Parsed:
        if spec.type == "checkbox":
            return self.checkbox(spec, box)
        return normalise(spec.type, raw, spec.options)

    def second_look(
        self, spec: FieldSpec, box: tuple[float, float, float, float], hit: Hit | None, position: float
    ) -> _Candidate | None:
        """Recognise the value's region again on its own, enlarged: small or stamped print often reads
        right the second time; the reading only counts if it validates better."""
        assert self.reread is not None
        lines = self.reread(box)
        if not lines:
            return None
        raw = "".join(norm(ln.text) for ln in lines)
        if hit is not None:
            for lab in spec.labels:
                if raw.startswith(norm(lab)):
                    raw = raw[len(norm(lab)) :]
        raw = _PUNCT.sub("", raw)
        parsed = self.parse(spec, raw, box)
        score = min(ln.score for ln in lines)
        if spec.type == "id_number" and parsed.validity == 1.0:
            score = max(score, 0.97)
        label = 1.0 if hit is None or hit.exact else 0.9
        return _Candidate(parsed, raw, score * 0.97, box, label, position)

    def checkbox(self, spec: FieldSpec, box: tuple[float, float, float, float] | None) -> Parsed:
        """The ticked option. Two kinds of evidence: the recogniser reads an empty box as "□" before
        its word but not a ticked one, and a ticked box holds more ink. Agreement gives full validity;
        disagreement or a lone reading goes to a human."""
        if box is None:
            return Parsed(None, 0.0, "no options found")
        region_h = box[3] - box[1]
        opts: list[tuple[int, int, str, str]] = []  # line, index of the word, word, code
        for i, ln in enumerate(self.page.lines):
            b = ln.box
            if (
                b[2] < box[0] - region_h
                or b[0] > box[2] + region_h
                or b[3] < box[1] - region_h
                or b[1] > box[3] + region_h
            ):
                continue
            text = self.page.texts[i]
            for word, code in sorted(spec.options.items(), key=lambda kv: -len(kv[0])):
                k = text.find(norm(word))
                if k >= 0 and not any(o[0] == i and o[1] == k for o in opts):
                    opts.append((i, k, word, code))
        if not opts:
            return Parsed(None, 0.0, "no options found")
        codes = {o[3] for o in opts}
        empty = {o[3] for o in opts if o[1] > 0 and self.page.texts[o[0]][o[1] - 1] in "□口☐O0"}
        if len(codes) == 1:
            if empty or opts[0][3] in (self._empty_boxes(opts) or set()):
                return Parsed(None, 0.0, "the ticked option is unreadable")
            return Parsed(opts[0][3], 0.5, "only one option found")
        by_text = codes - empty if len(codes - empty) == 1 else set()
        empty_px = self._empty_boxes(opts)
        by_ink = None
        if empty_px is not None and len(codes - empty_px) == 1:
            by_ink = next(iter(codes - empty_px))
        if by_text and by_ink is not None:
            (t,) = by_text
            return Parsed(t, 1.0) if t == by_ink else Parsed(t, 0.5, "tick reading and box ink disagree")
        if by_text:
            return Parsed(next(iter(by_text)), 0.8, "box ink inconclusive")
        if by_ink is not None:
            return Parsed(by_ink, 0.75, "read from box ink only")
        return Parsed(None, 0.0, "no option is clearly ticked")

    def _empty_boxes(self, opts: list[tuple[int, int, str, str]]) -> set[str] | None:
        """Options preceded by an empty square box, found in the pixels: a connected component about a
        character high, square, whose inside holds no ink. A tick joins the box to its strokes, so a
        ticked box never reads as empty. None when the page image is missing."""
        if self.page.image is None:
            return None
        hh = float(min(self.page.lines[i].h for i, _, _, _ in opts))
        boxes = [self.page.lines[i].box for i, _, _, _ in opts]
        x0 = int(max(min(b[0] for b in boxes) - 2 * hh, 0))
        x1 = int(min(max(b[2] for b in boxes) + hh, self.page.width))
        y0 = int(max(min(b[1] for b in boxes) - 0.5 * hh, 0))
        y1 = int(min(max(b[3] for b in boxes) + 0.5 * hh, self.page.height))
        strip = (self.page.image[y0:y1, x0:x1] < 150).astype(np.uint8)
        if strip.size == 0:
            return None
        n, _, stats, _ = cv2.connectedComponentsWithStats(strip, connectivity=8)
        starts: list[tuple[float, str]] = []
        for i, k, _w, code in opts:
            b = self.page.lines[i].box
            cw = (b[2] - b[0]) / max(len(self.page.texts[i]), 1)
            starts.append((b[0] + k * cw - x0, code))
        empty: set[str] = set()
        for c in range(1, n):
            bx, by, bw, bh, _area = stats[c]
            if not (0.45 * hh <= bw <= 1.3 * hh and 0.45 * hh <= bh <= 1.3 * hh and 0.75 <= bw / bh <= 1.33):
                continue
            m = max(int(0.2 * min(bw, bh)), 2)
            inner = strip[by + m : by + bh - m, bx + m : bx + bw - m]
            if inner.size == 0 or inner.mean() > 0.04:
                continue
            ring = strip[by : by + bh, bx : bx + bw].mean()
            if ring < 0.12:
                continue
            right = [(abs(st - (bx + bw)), code) for st, code in starts if st >= bx - 0.5 * hh]
            if right:
                dist, code = min(right)
                if dist < 1.5 * hh:
                    empty.add(code)
        return empty

    def sentence(self, spec: FieldSpec, stream: str, spans: list[tuple[int, int, int]]) -> list[_Candidate]:
        out = []
        for pat in spec.patterns:
            for m in pat.finditer(stream):
                out.append(self._from_span(spec, stream, spans, m.start("v"), m.end("v"), 1.0))
        if any(c is not None and c.parsed.validity >= 0.9 for c in out):
            return [c for c in out if c is not None]
        for lab in spec.labels:
            for m in re.finditer(re.escape(norm(lab)), stream):
                tail = re.match(r"[:：]?(?:为|是|系)?([^，。；;,！!？?]{1,30})", stream[m.end() :])
                if tail:
                    s = m.end() + tail.start(1)
                    out.append(self._from_span(spec, stream, spans, s, s + len(tail.group(1)), 0.9))
        return [c for c in out if c is not None]

    def _from_span(
        self, spec: FieldSpec, stream: str, spans: list[tuple[int, int, int]], s: int, e: int, label: float
    ) -> _Candidate | None:
        raw = stream[s:e]
        used = [(i, a, b) for i, a, b in spans if a < e and b > s]
        if not used:
            return None
        boxes = [sub_box(self.page.lines[i], max(s - a, 0), min(e, b) - a, b - a) for i, a, b in used]
        score = min(self.page.lines[i].score for i, _, _ in used)
        parsed = self.parse(spec, raw, union(boxes))
        return _Candidate(parsed, raw, score, union(boxes), label, 0.95)

    def stream(self) -> tuple[str, list[tuple[int, int, int]]]:
        """The page text in reading order (rows top to bottom, left to right) and each line's span."""
        order = sorted(range(len(self.page.lines)), key=lambda i: self.page.lines[i].cy)
        rows: list[list[int]] = []
        for i in order:
            if rows and self.page.same_row(self.page.lines[rows[-1][0]].box, self.page.lines[i].box):
                rows[-1].append(i)
            else:
                rows.append([i])
        text, spans = "", []
        for row in rows:
            for i in sorted(row, key=lambda k: self.page.lines[k].box[0]):
                spans.append((i, len(text), len(text) + len(self.page.texts[i])))
                text += self.page.texts[i]
        return text, spans

    def anywhere(self, spec: FieldSpec) -> _Candidate | None:
        readings = []
        for i, text in enumerate(self.page.texts):
            p = normalise(spec.type, text, spec.options)
            if p.value is not None and p.validity > 0:
                readings.append((p, i))
        if not readings:
            return None
        votes = Counter(str(p.value) for p, _ in readings)
        value, n = votes.most_common(1)[0]
        p, i = next((p, i) for p, i in readings if str(p.value) == value)
        agree = 1.0 if n >= 2 and len(votes) == 1 else (0.9 if len(votes) == 1 else 0.5)
        ln = self.page.lines[i]
        return _Candidate(p, ln.text, ln.score, ln.box, 1.0, agree)

    def read(self, spec: FieldSpec, stream: tuple[str, list[tuple[int, int, int]]]) -> _Candidate | None:
        if spec.anywhere:
            return self.anywhere(spec)
        hits = [h for h in self.hits if spec.path in h.paths]
        cands: list[_Candidate] = []
        pos = spec.position
        for hit in hits:
            tries: list[tuple[str, float]] = (
                [("same_cell", 0.97), ("right_of", 0.97), ("below", 0.95)]
                if pos == "any"
                else [(pos, 1.0)]
                if pos != "sentence"
                else []
            )
            beside = False
            for name, certainty in tries:
                if name == "below" and beside:
                    continue  # a valid value beside the label: the row below belongs to another label
                segs = getattr(self, name)(hit)
                c = self.candidate(spec, segs, hit, certainty)
                if c is not None:
                    cands.append(c)
                    beside = beside or (name != "below" and c.parsed.validity >= 0.9)
        if pos == "sentence" or (pos == "any" and not any(c.parsed.validity >= 0.9 for c in cands)):
            cands += self.sentence(spec, *stream) if pos == "sentence" or spec.patterns else []
        cands = [c for c in cands if c.parsed.value is not None]
        if not cands:
            return None
        cands.sort(key=lambda c: c.confidence, reverse=True)
        best = cands[0]
        rivals = {str(c.parsed.value) for c in cands if c.confidence >= 0.9 * best.confidence}
        if len(rivals) > 1:
            best.position *= 0.7
            best.parsed = Parsed(best.parsed.value, best.parsed.validity, "several readings disagree")
        return best


def _set(obj: dict[str, Any], path: str, value: object) -> None:
    parts = path.split(".")
    for p in parts[:-1]:
        obj = obj.setdefault(p, {})
    obj[parts[-1]] = value


def _cross_check(fields: dict[str, ExtractedField]) -> None:
    """A complete ID number carries the birth date: the two must agree, or both go to a human."""
    idf, bd = fields.get("applicant.id_number"), fields.get("applicant.birth_date")
    if idf is None or bd is None or not isinstance(idf.value, str) or not isinstance(bd.value, str):
        return
    if re.fullmatch(r"\d{17}[\dX]", idf.value):
        born = f"{idf.value[6:10]}-{idf.value[10:12]}-{idf.value[12:14]}"
        if born != bd.value:
            for f in (idf, bd):
                f.confidence *= 0.5
                f.note = (f.note + "; " if f.note else "") + "ID number and birth date disagree"


def extract_fields(
    lines: list[TextLine],
    image: np.ndarray | None,
    templates: TemplateSet,
    *,
    template: str | None = None,
    review_below: float = REVIEW_BELOW,
    reread: Callable[[tuple[float, float, float, float]], list[TextLine]] | None = None,
) -> Extraction:
    """Fields of one upright page. Raises :class:`NotAForm` when the page is not an application."""
    if len(lines) < 3:
        raise NotAForm("the page is blank: no text was found on it", code="blank_page")
    page = Page(lines, image)
    full_text = "".join(page.texts)
    tpl = templates.get(template) if template else templates.choose(full_text)
    hits = label_hits(page, tpl)
    ex = _Extractor(page, tpl, hits, reread)
    labelled = {p for h in hits for p in h.paths}
    words = [w for w in tpl.form_words if norm(w) in full_text]
    if len(labelled) < tpl.min_fields or not words:
        raise NotAForm(
            f"the page does not read as an application form: {len(labelled)} field labels found "
            f"(at least {tpl.min_fields} needed), form words {'found' if words else 'missing'}",
            code="not_a_form",
        )
    stream = ex.stream()
    found: dict[str, ExtractedField] = {}
    for spec in tpl.fields:
        cand = ex.read(spec, stream)
        if cand is None:
            found[spec.path] = ExtractedField(spec.path, None, 0.0, None, "", "not found on the page")
            continue
        box = tuple(round(v) for v in cand.box) if cand.box else None
        found[spec.path] = ExtractedField(
            spec.path,
            cand.parsed.value if cand.parsed.validity > 0 else None,
            cand.confidence,
            box,  # type: ignore[arg-type]
            cand.raw,
            cand.parsed.note,
        )
    _cross_check(found)
    fields = list(found.values())
    review = [f.path for f in fields if f.confidence < review_below]
    app: dict[str, Any] = {"language": tpl.language}
    for f in fields:
        if f.value is not None:
            _set(app, f.path, f.value)
    errors: list[str] = []
    application: dict[str, Any] | None
    try:
        application = Application.model_validate(app).model_dump(
            mode="json", exclude_none=True, exclude_defaults=True
        )
        application["language"] = tpl.language
    except ValidationError as exc:
        application = None
        for err in exc.errors():
            path = ".".join(str(p) for p in err["loc"])
            errors.append(f"{path}: {err['msg']}")
            if path not in review:
                review.append(path)
    return Extraction(
        template=tpl.name, fields=fields, application=application, needs_review=review, errors=errors
    )
