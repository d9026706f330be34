"""The batch robot: a folder of mixed scans in, one JSON per application form and a summary CSV out.

Every page's result is written atomically to ``OUT/pages/<file>.json`` with the source's SHA-256, so
an interrupted run resumes where it stopped: a page whose result exists for the same content is not
read again. Pages are then grouped per application (by the application number read on them); pages
of one application are merged field by field (the most confident reading wins) into
``OUT/forms/<application_id>.json``. Rejected pages (blank, not a form) and unreadable files are listed
in ``OUT/summary.csv`` with their reason. With a submit function, each complete application (nothing
left for review) goes to the decision engine once; the decision is kept in its form file.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from callvet.core.application import Application
from callvet.core.errors import CallvetError
from callvet.forms.extract import NotAForm
from callvet.forms.service import FormReader
from pydantic import ValidationError

__all__ = ["SCAN_SUFFIXES", "BatchReport", "run_batch", "scan_files"]

SCAN_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".pdf")


@dataclass
class BatchReport:
    pages: int
    read: int
    skipped: int
    forms: int
    rejected: int
    failed: int
    needs_review: int
    submitted: int


def scan_files(src: Path) -> list[Path]:
    return sorted(p for p in Path(src).iterdir() if p.is_file() and p.suffix.lower() in SCAN_SUFFIXES)


def _sha(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _write_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, ensure_ascii=False, indent=1), encoding="utf-8")
    os.replace(tmp, path)


def _page_result(reader: FormReader, path: Path, sha: str) -> dict[str, Any]:
    base: dict[str, Any] = {"file": path.name, "sha256": sha}
    try:
        res = reader.read_bytes(path.read_bytes())
    except NotAForm as exc:
        return {**base, "status": "rejected", "reason": exc.code, "message": exc.message}
    except CallvetError as exc:
        return {**base, "status": "failed", "reason": exc.code, "message": exc.message}
    out = {**base, **res.to_dict(), "seconds": round(res.seconds, 2)}
    out["status"] = "needs_review" if res.needs_review or res.application is None else "extracted"
    return out


def _merge(pages: list[dict[str, Any]]) -> dict[str, Any]:
    """One application from its pages: per field path, the most confident reading."""
    best: dict[str, dict[str, Any]] = {}
    for page in pages:
        for f in page.get("fields", []):
            cur = best.get(f["path"])
            if (
                f["value"] is not None
                and (cur is None or cur["value"] is None or f["confidence"] > cur["confidence"])
            ) or cur is None:
                best[f["path"]] = {**f, "file": page["file"]}
    app: dict[str, Any] = {
        "language": pages[0].get("application", {}).get("language", "zh-CN")
        if pages[0].get("application")
        else "zh-CN"
    }
    for path, f in best.items():
        if f["value"] is None:
            continue
        node = app
        parts = path.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = f["value"]
    review = sorted(
        {
            p
            for page in pages
            for p in page.get("needs_review", [])
            if best.get(p) is None or best[p]["confidence"] < 0.85
        }
    )
    try:
        application: dict[str, Any] | None = Application.model_validate(app).model_dump(
            mode="json", exclude_none=True, exclude_defaults=True
        )
        application["language"] = app["language"]
    except ValidationError as exc:
        application = None
        review = sorted({*review, *(".".join(str(x) for x in e["loc"]) for e in exc.errors())})
    return {
        "application": application,
        "fields": sorted(best.values(), key=lambda f: f["path"]),
        "needs_review": review,
        "pages": [
            {"file": p["file"], "template": p.get("template"), "rotation": p.get("rotation")} for p in pages
        ],
    }


def _iter_done(pages_dir: Path) -> Iterator[dict[str, Any]]:
    for p in sorted(pages_dir.glob("*.json")):
        try:
            yield json.loads(p.read_text("utf-8"))
        except (OSError, json.JSONDecodeError):
            continue


def _write_summary(out: Path, pages: list[dict[str, Any]], form_of: dict[str, str]) -> None:
    """``summary.csv``: one row per page, written whole then renamed (a reader never sees half)."""
    with (out / "summary.csv.tmp").open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["file", "status", "form", "template", "rotation", "needs_review", "reason"])
        for page in sorted(pages, key=lambda p: p["file"]):
            w.writerow(
                [
                    page["file"],
                    page["status"],
                    form_of.get(page["file"], ""),
                    page.get("template", ""),
                    page.get("rotation", ""),
                    ";".join(page.get("needs_review", [])),
                    page.get("reason", "") or "; ".join(page.get("errors", [])),
                ]
            )
    os.replace(out / "summary.csv.tmp", out / "summary.csv")


def run_batch(
    src: Path,
    out: Path,
    reader: FormReader,
    *,
    submit: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    progress: Callable[[Path, str], None] | None = None,
) -> BatchReport:
    """Read every scan in ``src`` not yet read (same name and content), then regroup and summarise."""
    out = Path(out)
    pages_dir, forms_dir = out / "pages", out / "forms"
    pages_dir.mkdir(parents=True, exist_ok=True)
    forms_dir.mkdir(parents=True, exist_ok=True)
    files = scan_files(Path(src))
    read = skipped = 0
    for path in files:
        target = pages_dir / (path.name + ".json")
        sha = _sha(path)
        if target.is_file():
            try:
                if json.loads(target.read_text("utf-8")).get("sha256") == sha:
                    skipped += 1
                    if progress:
                        progress(path, "skipped")
                    continue
            except (OSError, json.JSONDecodeError):
                pass
        result = _page_result(reader, path, sha)
        _write_atomic(target, result)
        read += 1
        if progress:
            progress(path, result["status"])
    names = {p.name for p in files}
    pages = [p for p in _iter_done(pages_dir) if p.get("file") in names]
    groups: dict[str, list[dict[str, Any]]] = {}
    for page in pages:
        if page.get("status") in ("rejected", "failed"):
            continue
        app_id = next(
            (f["value"] for f in page.get("fields", []) if f["path"] == "application_id" and f["value"]), None
        )
        groups.setdefault(str(app_id) if app_id else f"unassigned-{Path(page['file']).stem}", []).append(page)
    submitted = review = 0
    form_of: dict[str, str] = {}
    for key, group in sorted(groups.items()):
        target = forms_dir / f"{key}.json"
        merged = _merge(sorted(group, key=lambda p: p["file"]))
        previous = json.loads(target.read_text("utf-8")) if target.is_file() else {}
        if previous.get("decision") and previous.get("application") == merged["application"]:
            merged["decision"] = previous["decision"]
        elif submit is not None and merged["application"] is not None and not merged["needs_review"]:
            merged["decision"] = submit(merged["application"])
            submitted += 1
        review += bool(merged["needs_review"])
        _write_atomic(target, merged)
        for p in group:
            form_of[p["file"]] = key
    _write_summary(out, pages, form_of)
    return BatchReport(
        pages=len(files),
        read=read,
        skipped=skipped,
        forms=len(groups),
        rejected=sum(p["status"] == "rejected" for p in pages),
        failed=sum(p["status"] == "failed" for p in pages),
        needs_review=review,
        submitted=submitted,
    )
