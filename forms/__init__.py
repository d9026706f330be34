"""Application forms from scanned images (issue 15): page normalisation and OCR.

This first part turns a scan into an upright, deskewed, flattened grey page and recognises its text
lines with RapidOCR (PP-OCRv6 models inside the wheel, offline). Template-driven field extraction, the
API route and the batch robot are still to come (see the issue's report).
"""

from __future__ import annotations

from callvet.forms.ocr import OcrEngine, RapidOcrEngine, TesseractEngine, TextLine, rapidocr_model_paths
from callvet.forms.page import NormalisedPage, flatten, normalise_page, remove_red

__all__ = [
    "NormalisedPage",
    "OcrEngine",
    "RapidOcrEngine",
    "TesseractEngine",
    "TextLine",
    "flatten",
    "normalise_page",
    "rapidocr_model_paths",
    "remove_red",
]
