"""Application forms from scanned images (issue 15): scans in, validated ``application`` JSON out.

Pipeline: :func:`normalise_page` (stamp, lid fill, lighting, rotation, skew) -> an :class:`OcrEngine`
(RapidOCR with the PP-OCRv6 models inside its wheel, offline; Tesseract as the benchmark's peer) ->
:func:`extract_fields` driven by YAML templates (:func:`load_templates`; generic label matching for an
unknown layout) -> per-field confidence, ``needs_review`` and a validated application.
:class:`FormReader` ties it together for the API (``POST /v1/forms/extract``) and the batch robot
(:func:`run_batch`, ``callvet forms batch``). A page that is not a form raises :class:`NotAForm`.
"""

from __future__ import annotations

from callvet.forms.batch import BatchReport, run_batch
from callvet.forms.extract import ExtractedField, Extraction, NotAForm, extract_fields
from callvet.forms.ocr import OcrEngine, RapidOcrEngine, TesseractEngine, TextLine, rapidocr_model_paths
from callvet.forms.page import NormalisedPage, flatten, normalise_page, remove_red
from callvet.forms.service import FormReader, FormResult, decode_image
from callvet.forms.templates import Template, TemplateSet, load_templates

__all__ = [
    "BatchReport",
    "ExtractedField",
    "Extraction",
    "FormReader",
    "FormResult",
    "NormalisedPage",
    "NotAForm",
    "OcrEngine",
    "RapidOcrEngine",
    "Template",
    "TemplateSet",
    "TesseractEngine",
    "TextLine",
    "decode_image",
    "extract_fields",
    "flatten",
    "load_templates",
    "normalise_page",
    "rapidocr_model_paths",
    "remove_red",
    "run_batch",
]
