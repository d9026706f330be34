"""End to end on forms rendered here: scan -> upright page -> OCR -> validated application; the API,
the batch robot (resume, grouping, summary) and ``test-template``. Needs the Debian CJK fonts."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from callvet.forms.extract import NotAForm
from callvet.forms.ocr import RapidOcrEngine, TextLine
from callvet.forms.service import FormReader, decode_image
from formsheet import FONTS_PRESENT, TRUTH, render_form, render_letter, render_notice, scan
from PIL import Image

pytestmark = pytest.mark.skipif(not FONTS_PRESENT, reason="fonts-wqy-* not installed")


def leaves(d: dict[str, Any], pre: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for k, v in d.items():
        out += leaves(v, pre + k + ".") if isinstance(v, dict) else [(pre + k, v)]
    return out


class CountingEngine(RapidOcrEngine):
    pages = 0

    def read(self, image: np.ndarray) -> list[TextLine]:
        CountingEngine.pages += 1
        return super().read(image)


@pytest.fixture(scope="module")
def reader() -> FormReader:
    return FormReader(engine=CountingEngine(threads=1))


def png(img: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format=fmt)
    return buf.getvalue()


def test_a_sideways_skewed_table_form_is_read_exactly(reader: FormReader) -> None:
    res = reader.read_bytes(png(scan(render_form("table"), rotation=90, skew=2.0), "JPEG"))
    assert res.rotation == 90
    assert abs(res.skew - 2.0) < 0.8
    by = {f.path: f for f in res.fields}
    for path, truth in leaves(TRUTH):
        assert by[path].value == truth, (path, by[path])
    assert res.application is not None and res.application["language"] == "zh-CN"
    assert res.application["applicant"]["id_number"] == TRUTH["applicant"]["id_number"]


def test_handwritten_stamped_boxes_upside_down_never_wrong_silently(reader: FormReader) -> None:
    res = reader.read_bytes(png(scan(render_form("boxes", hand=True), rotation=180, stamp=True)))
    assert res.rotation == 180
    by = {f.path: f for f in res.fields}
    right = 0
    for path, truth in leaves(TRUTH):
        if by[path].value == truth:
            right += 1
        else:
            assert path in res.needs_review, (path, by[path])
    assert right >= 14


def test_a_letter_in_prose(reader: FormReader) -> None:
    res = reader.read(np.asarray(render_letter()))
    assert res.template == "letter"
    assert res.application is not None
    assert res.application["applicant"]["mobile"] == "13912345678"
    assert res.application["employment"]["employer"] == "北京华信电子有限公司"
    assert res.application["requested_limit"] == 50000
    assert "home.city" in res.needs_review  # not in the letter: for a human, not invented


def test_another_document_and_a_blank_page_are_rejected(reader: FormReader) -> None:
    with pytest.raises(NotAForm) as err:
        reader.read(np.asarray(render_notice()))
    assert err.value.code == "not_a_form"
    with pytest.raises(NotAForm) as err:
        reader.read(np.full((1754, 1240, 3), 236, np.uint8))
    assert err.value.code == "blank_page"


def test_uploads_are_bounded_and_pdf_tiff_decode() -> None:
    from callvet.core.errors import InvalidInput

    img = render_notice().resize((620, 877))
    assert decode_image(png(img, "TIFF")).shape == (877, 620, 3)
    buf = io.BytesIO()
    img.save(buf, format="PDF", resolution=75)
    h, w = decode_image(buf.getvalue()).shape[:2]
    assert abs(h - 1754) <= 1 and abs(w - 1240) <= 1  # 75 dpi page rendered at 150 dpi
    for data, code in ((b"", "bad_image"), (b"not an image", "bad_image"), (png(img, "GIF"), "bad_image")):
        with pytest.raises(InvalidInput) as err:
            decode_image(data)
        assert err.value.code == code
    with pytest.raises(InvalidInput) as err:
        decode_image(png(img), max_pixels=1000)
    assert err.value.code == "too_many_pixels"
    with pytest.raises(InvalidInput) as err:
        decode_image(png(img), max_bytes=100)
    assert err.value.code == "image_too_large"


def test_api_extract(
    api: tuple[Any, dict[str, dict[str, str]]], reader: FormReader, monkeypatch: pytest.MonkeyPatch
) -> None:
    from callvet.api.routes import forms as route

    monkeypatch.setattr(route, "reader", lambda _ctx: reader)
    client, headers = api
    page = render_form("table")
    buf = io.BytesIO()
    page.save(buf, format="PDF", resolution=150)
    files = {"image": ("scan.pdf", buf.getvalue(), "application/pdf")}
    assert client.post("/v1/forms/extract", files=files).status_code == 401
    assert client.post("/v1/forms/extract", files=files, headers=headers["marketer"]).status_code == 403
    r = client.post("/v1/forms/extract", files=files, headers=headers["robot"])
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) >= {"application", "fields", "rotation", "template", "needs_review"}
    assert body["application"]["application_id"] == TRUTH["application_id"]
    assert body["rotation"] == 0
    f = next(f for f in body["fields"] if f["path"] == "applicant.mobile")
    assert f["value"] == "13912345678" and 0 < f["confidence"] <= 1 and len(f["box"]) == 4
    blank = {"image": ("blank.png", png(Image.new("RGB", (620, 877), "white")), "image/png")}
    r = client.post("/v1/forms/extract", files=blank, headers=headers["robot"])
    assert r.status_code == 422 and r.json()["code"] == "blank_page"
    junk = {"image": ("x.png", b"\x89PNG broken", "image/png")}
    r = client.post("/v1/forms/extract", files=junk, headers=headers["analyst"])
    assert r.status_code == 422 and r.json()["code"] == "bad_image"
    audit = client.get("/v1/audit?action=forms.extract", headers=headers["auditor"])
    assert audit.status_code == 200
    entries = audit.json()["entries"]
    assert [e["target_id"] for e in entries] == [TRUTH["application_id"]]
    assert "13912345678" not in json.dumps(entries, ensure_ascii=False)  # no personal data in the log


def test_batch_sorts_resumes_and_submits_once(tmp_path: Path, reader: FormReader) -> None:
    from callvet.forms.batch import run_batch

    src, out = tmp_path / "scans", tmp_path / "out"
    src.mkdir()
    scan(render_form("table"), rotation=270).convert("RGB").save(src / "a_form.jpg", quality=80)
    render_letter().save(src / "b_letter.png")
    Image.new("RGB", (1240, 1754), "white").save(src / "c_blank.png")
    (src / "d_broken.tif").write_bytes(b"II*\x00 not really a tiff")
    (src / "notes.txt").write_text("ignored")
    sent: list[dict[str, Any]] = []

    def submit(app: dict[str, Any]) -> dict[str, Any]:
        sent.append(app)
        return {"verdict": "manual_review"}

    before = CountingEngine.pages
    rep = run_batch(src, out, reader, submit=submit)
    assert (rep.pages, rep.read, rep.skipped, rep.rejected, rep.failed) == (4, 4, 0, 1, 1)
    # the form and the letter carry the same application number: one application, two pages
    form = json.loads((out / "forms" / f"{TRUTH['application_id']}.json").read_text("utf-8"))
    assert sorted(p["file"] for p in form["pages"]) == ["a_form.jpg", "b_letter.png"]
    assert form["application"]["applicant"]["name"] == "王建国"
    assert form["application"]["home"]["housing"] == "rented"
    with (out / "summary.csv").open(encoding="utf-8") as f:
        rows = {r["file"]: r for r in csv.DictReader(f)}
    assert rows["c_blank.png"]["status"] == "rejected" and rows["c_blank.png"]["reason"] == "blank_page"
    assert rows["d_broken.tif"]["status"] == "failed"
    assert rows["a_form.jpg"]["form"] == TRUTH["application_id"]
    assert len(sent) == (0 if form["needs_review"] else 1)
    read_pages = CountingEngine.pages - before

    # interrupted after one page: its result is gone, the others stay; only that page is read again
    (out / "pages" / "b_letter.png.json").unlink()
    before = CountingEngine.pages
    rep2 = run_batch(src, out, reader, submit=submit)
    assert (rep2.read, rep2.skipped) == (1, 3)
    assert CountingEngine.pages - before == 1 < read_pages
    assert len(sent) == (0 if form["needs_review"] else 1)  # not submitted twice
    assert (
        json.loads((out / "forms" / f"{TRUTH['application_id']}.json").read_text("utf-8"))["application"]
        == form["application"]
    )


def test_cli_test_template(tmp_path: Path) -> None:
    from callvet.cli import app
    from typer.testing import CliRunner

    img = tmp_path / "sample.png"
    render_form("table").save(img)
    r = CliRunner().invoke(app, ["forms", "test-template", "table_left", str(img), "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)[0]
    assert res["template"] == "table_left"
    assert res["application"]["applicant"]["mobile"] == "13912345678"
    r = CliRunner().invoke(app, ["forms", "test-template", "no_such", str(img)])
    assert r.exit_code == 2 and "unknown_template" in r.output


def test_cli_batch_progress_and_resume(tmp_path: Path) -> None:
    from callvet.cli import app
    from typer.testing import CliRunner

    src = tmp_path / "in"
    src.mkdir()
    Image.new("RGB", (620, 877), "white").save(src / "blank.png")
    (src / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["forms", "batch", str(src), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "2 pages (2 read, 0 already done)" in r.output and "1 rejected, 1 failed" in r.output
    r = CliRunner().invoke(app, ["forms", "batch", str(src), "--out", str(out)])
    assert "2 pages (0 read, 2 already done)" in r.output
    r = CliRunner().invoke(app, ["forms", "batch", str(src), "--out", str(out), "--submit"])
    assert r.exit_code != 0 and "--key" in r.output


def test_cli_batch_submits_complete_applications_to_the_decision_engine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from callvet.cli import app
    from callvet.core.settings import get_settings
    from decision_fixtures import credit_models_dir
    from typer.testing import CliRunner

    monkeypatch.setenv("CALLVET_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("CALLVET_MODELS_DIR", str(credit_models_dir()))
    monkeypatch.delenv("CALLVET_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    try:
        run = CliRunner().invoke
        robot = run(app, ["keys", "create", "--role", "robot", "--label", "rpa"]).stdout.strip()
        src, out = tmp_path / "in", tmp_path / "out"
        src.mkdir()
        render_form("table").save(src / "form.png")
        r = run(app, ["forms", "batch", str(src), "--out", str(out), "--submit", "--key", robot])
        assert r.exit_code == 0, r.output
        form = json.loads((out / "forms" / f"{TRUTH['application_id']}.json").read_text("utf-8"))
        assert form["needs_review"] == [], form["needs_review"]
        assert "1 submitted" in r.output
        decision_id = form["decision"]["decision_id"]
        shown = run(app, ["decision", "show", decision_id])
        assert json.loads(shown.stdout)["application_id"] == TRUTH["application_id"]
        again = run(app, ["forms", "batch", str(src), "--out", str(out), "--submit", "--key", robot])
        assert "0 submitted" in again.output
    finally:
        get_settings.cache_clear()
