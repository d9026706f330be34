"""Page normalisation and OCR on forms rendered here with Pillow and a Debian CJK font (no shared data)."""

from __future__ import annotations

from pathlib import Path

import callvet.forms as forms
import numpy as np
import pytest
from callvet.forms import RapidOcrEngine, normalise_page, remove_red
from PIL import Image, ImageDraw, ImageFont

FONT = Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc")
pytestmark = pytest.mark.skipif(not FONT.is_file(), reason="fonts-wqy-microhei not installed")

ROWS = [("申请人姓名", "王建国"), ("手机号码", "13912345678"), ("工作单位", "北京华信电子有限公司"),
        ("月收入(元)", "15000"), ("申请卡种", "牡丹白金卡"), ("申请额度", "50000")]


def render(stamp: bool = False) -> Image.Image:
    img = Image.new("RGB", (1240, 1754), "white")
    d = ImageDraw.Draw(img)
    big = ImageFont.truetype(str(FONT), 48)
    font = ImageFont.truetype(str(FONT), 30)
    d.text((380, 80), "牡丹信用卡申请表", font=big, fill="black")
    for i, (label, value) in enumerate(ROWS):
        y = 220 + i * 90
        d.rectangle((100, y - 20, 1140, y + 60), outline="black", width=2)
        d.text((120, y), label, font=font, fill="black")
        d.text((480, y), value, font=font, fill=(20, 30, 90))
    if stamp:
        layer = Image.new("RGB", img.size, "white")
        ImageDraw.Draw(layer).ellipse((420, 200, 700, 480), outline=(220, 30, 30), width=14)
        blended = np.asarray(img, np.float32) * np.asarray(layer, np.float32) / 255
        img = Image.fromarray(blended.astype(np.uint8))
    return img


@pytest.fixture(scope="module")
def engine() -> RapidOcrEngine:
    return RapidOcrEngine(threads=1)


def test_public_names_are_guarded() -> None:
    assert sorted(forms.__all__) == forms.__all__
    for name in forms.__all__:
        assert hasattr(forms, name)


def test_models_ship_in_the_wheel_and_nothing_downloads(engine: RapidOcrEngine,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from rapidocr.utils import download_file

    def no_download(*_a: object, **_k: object) -> None:
        raise AssertionError("RapidOCR tried to download a model")

    monkeypatch.setattr(download_file.DownloadFile, "run", no_download)
    for path in forms.rapidocr_model_paths().values():
        assert path.is_file()
    RapidOcrEngine(threads=1).read(np.asarray(render().convert("L")))


def test_red_stamp_is_removed_by_colour() -> None:
    rgb = np.asarray(render(stamp=True))
    grey, found = remove_red(rgb)
    assert found
    assert grey[205:215, 555:565].min() > 200  # the stamp ring at its top is paper again
    ink = remove_red(np.asarray(render()))[0]
    assert ink.min() < 60  # the text is still there


@pytest.mark.parametrize("rotation", [0, 90, 180, 270])
def test_rotation_and_skew_are_undone(engine: RapidOcrEngine, rotation: int) -> None:
    skewed = render(stamp=rotation == 180).rotate(2.5, expand=True, fillcolor="white")
    scan = skewed.rotate(rotation, expand=True)
    page = normalise_page(np.asarray(scan), engine)
    assert page.rotation == rotation
    assert abs(page.skew - 2.5) < 0.8
    text = "".join(line.text for line in engine.read(page.image))
    assert "申请人姓名" in text
    assert "13912345678" in text


def test_blank_page_has_no_text_boxes(engine: RapidOcrEngine) -> None:
    page = normalise_page(np.full((1754, 1240, 3), 235, np.uint8), engine)
    assert page.text_boxes == 0
