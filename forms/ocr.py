"""OCR engines behind one small interface: RapidOCR (PP-OCRv6, the product's) and Tesseract (the peer).

Both return :class:`TextLine` objects in page pixel coordinates. RapidOCR is built with explicit model
paths inside its wheel, so it never reaches for its download code (the service runs offline); a missing
model file is a clear :class:`~callvet.core.errors.Unavailable`, not a download attempt.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from callvet.core.errors import Unavailable

__all__ = ["OcrEngine", "RapidOcrEngine", "TesseractEngine", "TextLine", "rapidocr_model_paths"]


@dataclass(frozen=True)
class TextLine:
    """One recognised text line: its text, recogniser score (0-1) and axis-aligned box (x0, y0, x1, y1)."""

    text: str
    score: float
    box: tuple[float, float, float, float]

    @property
    def cx(self) -> float:
        return (self.box[0] + self.box[2]) / 2

    @property
    def cy(self) -> float:
        return (self.box[1] + self.box[3]) / 2

    @property
    def h(self) -> float:
        return self.box[3] - self.box[1]

    @property
    def w(self) -> float:
        return self.box[2] - self.box[0]


class OcrEngine(Protocol):
    name: str

    def read(self, image: np.ndarray) -> list[TextLine]:
        """Text lines of an RGB or grey ``uint8`` image."""
        ...


def rapidocr_model_paths() -> dict[str, Path]:
    """The detection, recognition and line-orientation ONNX models shipped inside the rapidocr wheel."""
    try:
        import rapidocr
    except ImportError as exc:  # pragma: no cover - a broken install
        raise Unavailable("rapidocr is not installed", code="ocr_unavailable") from exc
    root = Path(rapidocr.__file__).resolve().parent / "models"
    paths = {
        "det": root / "PP-OCRv6_det_small.onnx",
        "rec": root / "PP-OCRv6_rec_small.onnx",
        "cls": root / "ch_ppocr_mobile_v2.0_cls_mobile.onnx",
    }
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise Unavailable(f"RapidOCR model files missing: {', '.join(missing)}", code="ocr_unavailable")
    return paths


def _quad_box(quad: object) -> tuple[float, float, float, float]:
    pts = np.asarray(quad, dtype=np.float32).reshape(-1, 2)
    return (float(pts[:, 0].min()), float(pts[:, 1].min()), float(pts[:, 0].max()), float(pts[:, 1].max()))


class RapidOcrEngine:
    """RapidOCR on onnxruntime with the wheel's PP-OCRv6 small models; thread-safe by a lock.

    ``threads`` bounds onnxruntime's intra-op threads (a shared server should not take every core).
    Detection runs at ``det_side`` pixels on the short side: at 150 dpi a form's small print needs
    about its native resolution. ``line_cls`` turns on the per-line orientation classifier in ``read``.
    """

    name = "rapidocr"

    def __init__(
        self, *, threads: int = 1, det_side: int = 960, min_score: float = 0.3, line_cls: bool = False
    ) -> None:
        from rapidocr import RapidOCR
        from rapidocr.utils.log import logger

        paths = rapidocr_model_paths()
        logger.setLevel("ERROR")
        engine_cfg = {
            "EngineConfig.onnxruntime.intra_op_num_threads": threads,
            "EngineConfig.onnxruntime.inter_op_num_threads": 1,
        }
        self._ocr = RapidOCR(
            params={
                "Global.log_level": "error",
                "Global.text_score": min_score,
                "Global.max_side_len": 4000,
                "Det.model_path": str(paths["det"]),
                "Rec.model_path": str(paths["rec"]),
                "Cls.model_path": str(paths["cls"]),
                "Det.limit_side_len": det_side,
                "Det.limit_type": "min",
                **engine_cfg,
            }
        )
        self._lock = threading.Lock()
        # Pages are made upright before recognition; the per-line 180-degree classifier would only
        # flip short lines ("9" read as "6", "100000" as "000001"), so it is off unless asked for.
        self._line_cls = line_cls

    def read(self, image: np.ndarray) -> list[TextLine]:
        img = image if image.ndim == 3 else np.repeat(image[:, :, None], 3, axis=2)
        with self._lock:
            out = self._ocr(
                np.ascontiguousarray(img[:, :, ::-1]), use_det=True, use_cls=self._line_cls, use_rec=True
            )
        if out.boxes is None or out.txts is None:
            return []
        return [
            TextLine(text=str(t), score=float(s), box=_quad_box(b))
            for b, t, s in zip(out.boxes, out.txts, out.scores, strict=True)
            if str(t).strip()
        ]

    def recognise(self, image: np.ndarray) -> tuple[str, float]:
        """Recognition only, of a crop holding one line of text: (text, score)."""
        img = image if image.ndim == 3 else np.repeat(image[:, :, None], 3, axis=2)
        with self._lock:
            out = self._ocr(np.ascontiguousarray(img[:, :, ::-1]), use_det=False, use_cls=False, use_rec=True)
        if not out.txts:
            return "", 0.0
        return str(out.txts[0]), float(out.scores[0])

    def detect(self, image: np.ndarray) -> list[np.ndarray]:
        """Text-line quadrilaterals only (no recognition): cheap evidence for page orientation and skew."""
        img = image if image.ndim == 3 else np.repeat(image[:, :, None], 3, axis=2)
        with self._lock:
            out = self._ocr(np.ascontiguousarray(img[:, :, ::-1]), use_det=True, use_cls=False, use_rec=False)
        return [] if out.boxes is None else [np.asarray(b, dtype=np.float32) for b in out.boxes]

    def upright_votes(self, crops: list[np.ndarray]) -> tuple[int, int]:
        """(lines the orientation classifier calls upright, lines it calls upside down)."""
        if not crops:
            return 0, 0
        with self._lock:
            cls = self._ocr._load_cls_model()
            res = cls([np.ascontiguousarray(c[:, :, ::-1]) for c in crops])
        up = down = 0
        for label, score in res.cls_res:
            if float(score) < 0.6:
                continue
            if str(label) == "180":
                down += 1
            else:
                up += 1
        return up, down


class TesseractEngine:
    """Tesseract 5 (Debian ``tesseract-ocr`` + ``tesseract-ocr-chi-sim``) through its CLI, TSV output.

    Only the benchmark uses it, as the peer RapidOCR is measured against. Words are grouped into lines
    by Tesseract's own block/paragraph/line numbers.
    """

    name = "tesseract"

    def __init__(self, *, lang: str = "chi_sim+eng", timeout_s: float = 120.0) -> None:
        exe = shutil.which("tesseract")
        if exe is None:
            raise Unavailable("tesseract is not installed (Debian tesseract-ocr)", code="ocr_unavailable")
        self._exe = exe
        self._lang = lang
        self._timeout = timeout_s

    def read(self, image: np.ndarray) -> list[TextLine]:
        from PIL import Image

        with tempfile.TemporaryDirectory(prefix="callvet-tess-") as tmp:
            src = Path(tmp) / "page.png"
            Image.fromarray(image).save(src)
            proc = subprocess.run(
                [self._exe, str(src), "stdout", "-l", self._lang, "--psm", "11", "tsv"],
                capture_output=True, text=True, timeout=self._timeout, check=False,
                env={"OMP_THREAD_LIMIT": "1", "PATH": "/usr/bin:/bin"},
            )
        if proc.returncode != 0:
            raise Unavailable(f"tesseract failed: {proc.stderr.strip()[:200]}", code="ocr_failed")
        groups: dict[tuple[str, str, str], list[tuple[str, float, tuple[int, int, int, int]]]] = {}
        for row in proc.stdout.splitlines()[1:]:
            cols = row.split("\t")
            if len(cols) < 12 or not cols[11].strip() or float(cols[10]) < 0:
                continue
            x, y, w, h = (int(c) for c in cols[6:10])
            groups.setdefault((cols[2], cols[3], cols[4]), []).append(
                (cols[11].strip(), float(cols[10]) / 100, (x, y, x + w, y + h))
            )
        lines: list[TextLine] = []
        for words in groups.values():
            words.sort(key=lambda w: w[2][0])
            text = "".join(w[0] for w in words)
            box = (
                float(min(w[2][0] for w in words)), float(min(w[2][1] for w in words)),
                float(max(w[2][2] for w in words)), float(max(w[2][3] for w in words)),
            )
            lines.append(TextLine(text=text, score=float(np.mean([w[1] for w in words])), box=box))
        return lines
