"""Normalisers, table-driven, in Chinese and English."""

from __future__ import annotations

import pytest
from callvet.questionnaire import normalize as nz


@pytest.mark.parametrize(
    ("text", "lang", "expected"),
    [
        ("一万五", "zh", 15000),
        ("大概一万五左右吧", "zh", 15000),
        ("1.5万", "zh", 15000),
        ("一点五万", "zh", 15000),
        ("三千二", "zh", 3200),
        ("六年了", "zh", 6),
        ("两张", "zh", 2),
        ("月薪1万5", "zh", 15000),
        ("1万5千块", "zh", 15000),
        ("15000元", "zh", 15000),
        ("fifteen thousand", "en", 15000),
        ("about 15,000 a month", "en", 15000),
        ("15k", "en", 15000),
        ("fifteen grand", "en", 15000),
        ("two hundred and fifty", "en", 250),
        ("twenty five", "en", 25),
        ("three thousand two hundred", "en", 3200),
        ("six years", "en", 6),
        ("1 500", "en", 1500),
    ],
)
def test_numbers(text: str, lang: str, expected: float) -> None:
    assert expected in nz.numbers_in(text, lang)


@pytest.mark.parametrize(
    ("text", "lang", "ymd"),
    [
        ("八五年三月", "zh", (1985, 3, None)),
        ("一九八五年三月十二日", "zh", (1985, 3, 12)),
        ("85年3月12号", "zh", (1985, 3, 12)),
        ("十一月二十号", "zh", (None, 11, 20)),
        ("March eighty-five", "en", (1985, 3, None)),
        ("the twelfth of March nineteen eighty-five", "en", (1985, 3, 12)),
        ("March 12, 1985", "en", (1985, 3, 12)),
        ("12 March 1985", "en", (1985, 3, 12)),
        ("1985-03-12", "en", (1985, 3, 12)),
        ("on the 20th of November", "en", (None, 11, 20)),
        ("two thousand and three, June the first", "en", (2003, 6, 1)),
        ("12/03/1985", "en", (1985, 3, 12)),
        ("3/12/85", "en", (1985, 3, 12)),
        ("1985/3/12", "zh", (1985, 3, 12)),
    ],
)
def test_dates(text: str, lang: str, ymd: tuple[int | None, int | None, int | None]) -> None:
    found = [(d.year, d.month, d.day) for d in nz.parse_dates(text, lang)]
    assert ymd in found


@pytest.mark.parametrize(
    ("text", "digits"),
    [
        ("one three nine one two three four five six seven eight", "13912345678"),
        ("幺三九一二三四五六七八", "13912345678"),
        ("尾号是四三二一", "4321"),
        ("double eight four three", "8843"),
        ("5 6 7 8", "5678"),
        ("oh seven seven", "077"),
    ],
)
def test_digits(text: str, digits: str) -> None:
    assert nz.digits_in(text) == digits


def test_names_compare_across_scripts() -> None:
    assert nz.name_keys("王建国")[0] == nz.name_keys("Wang Jianguo")[0] == "wangjianguo"
    assert nz.name_keys("John Smith") == ("johnsmith", "smith", "john")


@pytest.mark.parametrize(
    ("raw", "core"),
    [("海淀区", "海淀"), ("浦东新区", "浦东"), ("Haidian District", "haidian"), ("City of London", "london")],
)
def test_places(raw: str, core: str) -> None:
    assert nz.place_core(raw) == core


@pytest.mark.parametrize(
    ("raw", "core"),
    [
        ("北京华信电子有限公司", "华信电子"),
        ("远航物流股份有限公司", "远航物流"),
        ("金桥建设集团", "金桥建设"),
        ("Northwind Logistics Ltd.", "northwind logistics"),
        ("Harbour Bank plc", "harbour bank"),
        ("The Acme Company Limited", "acme"),
    ],
)
def test_organisations(raw: str, core: str) -> None:
    assert nz.org_core(raw) == core


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("是的", True),
        ("对，是我", True),
        ("不是", False),
        ("没有", False),
        ("yes that's right", True),
        ("no, I didn't", False),
        ("maybe", None),
    ],
)
def test_yes_no(text: str, value: bool | None) -> None:
    assert nz.yes_no(text) is value


@pytest.mark.parametrize(
    ("word", "stem"),
    [
        ("mortgaged", "mortgag"),
        ("mortgage", "mortgag"),
        ("nursing", "nurs"),
        ("cards", "card"),
        ("card", "card"),
    ],
)
def test_stem(word: str, stem: str) -> None:
    assert nz.stem(word) == stem
