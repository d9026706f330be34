"""The form reader: scan bytes in, a validated application (or a reason it is none) out.

One :class:`FormReader` per process holds the OCR engine and the templates; ``read_bytes`` decodes a
PNG/JPEG/TIFF image or the first page of a PDF within size and pixel bounds, normalises the page,
recognises it, extracts the fields and returns a :class:`FormResult` shaped like the API's answer.

Exceptions (all :class:`~callvet.core.errors.CallvetError`):

- ``InvalidInput`` ``bad_image`` / ``image_too_large`` / ``too_many_pixels``: the upload cannot be read;
- ``NotAForm`` (an ``InvalidInput``) ``blank_page`` / ``not_a_form``: nothing is extracted from it;
- ``Unavailable`` ``ocr_unavailable``: the recogniser cannot run.
"""

from __future__ import annotations

import io
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from callvet.core.errors import InvalidInput
from callvet.forms.extract import REVIEW_BELOW, ExtractedField, Extraction, extract_fields
from callvet.forms.ocr import OcrEngine, RapidOcrEngine, TextLine
from callvet.forms.page import normalise_page
from callvet.forms.templates import TemplateSet, load_templates

__all__ = ["MAX_BYTES", "MAX_PIXELS", "FormReader", "FormResult", "decode_image"]

MAX_BYTES = 20 * 1024 * 1024
MAX_PIXELS = 40_000_000
_PDF_DPI = 150


def decode_image(data: bytes, *, max_bytes: int = MAX_BYTES, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """RGB ``uint8`` array of a PNG, JPEG or TIFF scan, or the first page of a PDF rendered at 150 dpi."""
    from PIL import Image

    if not data:
        raise InvalidInput("the upload is empty", code="bad_image")
    if len(data) > max_bytes:
        raise InvalidInput(f"the upload has {len(data)} bytes; at most {max_bytes}", code="image_too_large")
    if data[:5] == b"%PDF-":
        return _pdf_page(data, max_pixels)
    Image.MAX_IMAGE_PIXELS = None  # bounded below, before decoding, with a clear error
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            if img.format not in ("PNG", "JPEG", "TIFF", "MPO"):
                raise InvalidInput(
                    f"unsupported image format {img.format}; PNG, JPEG, TIFF or PDF", code="bad_image"
                )
            if img.width * img.height > max_pixels:
                raise InvalidInput(
                    f"the image has {img.width}x{img.height} pixels; at most {max_pixels}",
                    code="too_many_pixels",
                )
            img.seek(0)
            rgb = np.asarray(img.convert("RGB"))
    except InvalidInput:
        raise
    except Exception as exc:
        raise InvalidInput(f"the upload is not a readable image: {exc}", code="bad_image") from exc
    return rgb


def _pdf_page(data: bytes, max_pixels: int) -> np.ndarray:
    import pypdfium2 as pdfium

    try:
        pdf = pdfium.PdfDocument(data)
    except Exception as exc:
        raise InvalidInput(f"the PDF cannot be opened: {exc}", code="bad_image") from exc
    try:
        if len(pdf) < 1:
            raise InvalidInput("the PDF has no pages", code="bad_image")
        page = pdf[0]
        w, h = page.get_size()
        scale = _PDF_DPI / 72
        if w * scale * h * scale > max_pixels:
            raise InvalidInput(
                f"the PDF page renders to more than {max_pixels} pixels", code="too_many_pixels"
            )
        bitmap = page.render(scale=scale)
        rgb = np.asarray(bitmap.to_pil().convert("RGB"))
    finally:
        pdf.close()
    return rgb


@dataclass
class FormResult:
    application: dict[str, Any] | None
    fields: list[ExtractedField]
    rotation: int
    skew: float
    template: str
    needs_review: list[str]
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "application": self.application,
            "fields": [f.to_dict() for f in self.fields],
            "rotation": self.rotation,
            "skew": self.skew,
            "template": self.template,
            "needs_review": self.needs_review,
            "errors": self.errors,
        }


class FormReader:
    """Page normalisation, OCR and template extraction, built once per process (models load once)."""

    def __init__(
        self,
        *,
        engine: OcrEngine | None = None,
        templates: TemplateSet | None = None,
        template_dirs: tuple[Path, ...] = (),
        threads: int = 1,
        review_below: float = REVIEW_BELOW,
    ) -> None:
        self.engine = engine or RapidOcrEngine(threads=threads)
        self._orienter = self.engine if isinstance(self.engine, RapidOcrEngine) else None
        self.templates = templates or load_templates(*template_dirs)
        self.review_below = review_below

    def _orientation_engine(self) -> RapidOcrEngine:
        if self._orienter is None:
            self._orienter = RapidOcrEngine(threads=1)
        return self._orienter

    def read_bytes(self, data: bytes, *, template: str | None = None) -> FormResult:
        return self.read(decode_image(data), template=template)

    def read(self, rgb: np.ndarray, *, template: str | None = None) -> FormResult:
        t0 = time.perf_counter()
        page = normalise_page(rgb, self._orientation_engine())
        lines = self.engine.read(page.image)
        ex = self.extract(lines, page.image, template=template)
        return FormResult(
            application=ex.application,
            fields=ex.fields,
            rotation=page.rotation,
            skew=page.skew,
            template=ex.template,
            needs_review=ex.needs_review,
            errors=ex.errors,
            seconds=time.perf_counter() - t0,
        )

    def extract(
        self,
        lines: list[TextLine],
        image: np.ndarray,
        *,
        template: str | None = None,
        templates: TemplateSet | None = None,
    ) -> Extraction:
        return extract_fields(
            lines,
            image,
            templates or self.templates,
            template=template,
            review_below=self.review_below,
            reread=self._rereader(image),
        )

    def _rereader(
        self, image: np.ndarray
    ) -> Callable[[tuple[float, float, float, float]], list[TextLine]] | None:
        recognise = getattr(self.engine, "recognise", None)
        if recognise is None:
            return None

        def reread(box: tuple[float, float, float, float]) -> list[TextLine]:
            x0, y0, x1, y1 = box
            pad = 0.25 * (y1 - y0)
            ys, ye = int(max(y0 - pad, 0)), int(min(y1 + pad, image.shape[0]))
            xs, xe = int(max(x0 - pad, 0)), int(min(x1 + pad, image.shape[1]))
            crop = image[ys:ye, xs:xe]
            if crop.size == 0 or crop.shape[1] > 40 * crop.shape[0]:
                return []
            text, score = recognise(crop)
            return [TextLine(text, score, box)] if text.strip() else []

        return reread
