"""Field types: turn the text found at a field's place into a contract value and say how valid it is.

Each normaliser takes raw OCR text and returns a :class:`Parsed` (value or None, validity 0-1, note).
Validity is the format's evidence only (a complete ID number with a right check digit is 1.0, an
unknown city 0.6); OCR score and label match multiply in later. The questionnaire's normalisers do the
language work (Chinese numerals, dates, places), so a form and a spoken answer normalise alike.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from pathlib import Path

import yaml
from callvet.core.errors import InvalidArgument
from callvet.questionnaire.normalize import numbers_in, parse_dates

__all__ = ["NORMALISERS", "Parsed", "id_check_digit", "normalise", "places"]

_CJK = r"\u4e00-\u9fff"


@dataclass(frozen=True)
class Parsed:
    value: object | None
    validity: float
    note: str = ""


def _nfkc(text: str) -> str:
    return unicodedata.normalize("NFKC", text or "").strip()


def _compact(text: str) -> str:
    return re.sub(r"\s+", "", _nfkc(text))


@lru_cache(maxsize=1)
def places() -> dict[str, set[str]]:
    """City (without 市) -> its districts, from the gazetteer shipped beside the templates."""
    raw = yaml.safe_load((Path(__file__).parent / "templates" / "places.yaml").read_text("utf-8"))
    return {str(city): set(str(d) for d in districts) for city, districts in raw["cities"].items()}


_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


def id_check_digit(first17: str) -> str:
    """GB 11643 check character of an 18-character resident ID number."""
    return _ID_CHECK[sum(int(c) * w for c, w in zip(first17, _ID_WEIGHTS, strict=True)) % 11]


_DIGIT_LIKE = str.maketrans(
    {
        "O": "0",
        "o": "0",
        "D": "0",
        "Q": "0",
        "I": "1",
        "l": "1",
        "|": "1",
        "Z": "2",
        "S": "5",
        "B": "8",
        "g": "9",
        "×": "X",
        "x": "X",
        "＊": "*",
        "°": "",
        "·": "",
        "。": "",
        ".": "",
        "-": "",
        "_": "",
    }
)


# Amounts keep their decimal point (1.5万 is 15000).
_NUMBER_LIKE = str.maketrans({k: v for k, v in _DIGIT_LIKE.items() if chr(k) not in ".-"})


def parse_id_number(text: str) -> Parsed:
    t = _compact(text).translate(_DIGIT_LIKE).upper()
    t = re.sub(r"[^0-9X*]", "", t)
    if re.fullmatch(r"\d{17}[\dX]", t):
        ok = id_check_digit(t[:17]) == t[17]
        born = t[6:14]
        try:
            date(int(born[:4]), int(born[4:6]), int(born[6:]))
            plausible = True
        except ValueError:
            plausible = False
        if ok and plausible:
            return Parsed(t, 1.0)
        return Parsed(t, 0.2, "check digit or birth date in the number is wrong")
    if re.fullmatch(r"\d{6}\*{8}\d{3}[\dX]", t):
        return Parsed(t, 0.97, "masked: check digit cannot be verified")
    if re.fullmatch(r"\d{6}\*+\d{3}[\dX]", t) or re.fullmatch(r"\d+\*{8}\d+", t):
        return Parsed(t, 0.1, "masked number of the wrong length")
    loose = re.sub(r"[^0-9X]", "#", _compact(text).translate(_DIGIT_LIKE).upper())
    m = re.fullmatch(r"(\d{6})#*(\d{3}[\dX])", loose)
    if m:
        return Parsed(f"{m.group(1)}********{m.group(2)}", 0.4, "mask characters unreadable; reconstructed")
    return Parsed(t or None, 0.0, "not an ID number") if t else Parsed(None, 0.0, "empty")


def parse_mobile(text: str) -> Parsed:
    t = _compact(text).translate(_DIGIT_LIKE)
    t = re.sub(r"^\+?86", "", re.sub(r"[^\d+]", "", t))
    if re.fullmatch(r"1[3-9]\d{9}", t):
        return Parsed(t, 1.0)
    if t:
        return Parsed(t, 0.1, "not an 11-digit mainland mobile number")
    return Parsed(None, 0.0, "empty")


def parse_date(text: str) -> Parsed:
    t = _compact(text)
    t = re.sub(r"(?<=\d)[oO](?=\d)|(?<=\d)[oO]|[oO](?=\d)", "0", t)
    found = [d for d in parse_dates(t, "zh") if d.year and d.month and d.day]
    for d in found:
        try:
            v = date(d.year, d.month, d.day)  # type: ignore[arg-type]
        except ValueError:
            continue
        if date(1900, 1, 1) <= v <= date.today():
            return Parsed(v.isoformat(), 1.0)
        return Parsed(v.isoformat(), 0.1, "date out of range")
    return Parsed(None, 0.0, "no complete date")


def _integer(text: str, lo: float, hi: float, unit: str) -> Parsed:
    t = _compact(text).translate(_NUMBER_LIKE)
    t = t.replace(",", "").replace("，", "")
    t = re.sub(rf"[{unit}]+$", "", t)
    t = re.sub(r"(人民币|RMB|¥|￥|约)", "", t)
    nums = numbers_in(t, "zh")
    if not nums:
        return Parsed(None, 0.0, "no number")
    v = nums[0]
    validity = 1.0 if len(nums) == 1 else 0.5
    if not (lo <= v <= hi):
        return Parsed(int(v) if v == int(v) else v, 0.1, f"outside {lo:g}-{hi:g}")
    if v != int(v):
        return Parsed(v, 0.5, "not a whole number")
    if re.match(r"0\d", t):
        return Parsed(int(v), 0.2, "leading zero: misread or upside-down print")
    residue = re.sub(r"[\d零〇一二两三四五六七八九十百千万亿.元年]", "", t)
    if residue:
        validity = min(validity, 0.6)
    return Parsed(int(v), validity, "stray characters" if residue else "")


def parse_amount(text: str) -> Parsed:
    return _integer(text, 1, 100_000_000, "元")


def parse_years(text: str) -> Parsed:
    return _integer(text, 0, 60, "年")


def parse_name(text: str) -> Parsed:
    t = _compact(text)
    t = re.sub(r"^(姓名|名字|Name)[:：]?", "", t)
    chars = re.sub(rf"[^{_CJK}·]", "", t)
    if not chars:
        latin = re.sub(r"[^A-Za-z ]", "", _nfkc(text)).strip()
        if 2 <= len(latin) <= 60:
            return Parsed(latin, 0.8, "latin-script name")
        return Parsed(None, 0.0, "no name")
    validity = 1.0 if 2 <= len(chars) <= 4 else 0.4
    if len(chars) != len(re.sub(r"[\s.,，。、:：]", "", t)):
        validity = min(validity, 0.7)
    return Parsed(chars, validity, "" if validity == 1.0 else "unusual name")


def _split_city(t: str) -> tuple[str | None, str]:
    """(city without 市, the rest) of a place string such as 北京市朝阳区 or 北京朝阳区."""
    t = re.sub(rf"^(中国)?([{_CJK}]{{2,3}}省)", "", t)
    for city in sorted(places(), key=len, reverse=True):
        if t.startswith(city):
            rest = t[len(city) :]
            return city, rest[1:] if rest.startswith("市") else rest
    m = re.match(rf"([{_CJK}]{{2,4}}?)市(.*)", t)
    if m:
        return m.group(1), m.group(2)
    return None, t


def parse_city(text: str) -> Parsed:
    t = re.sub(rf"[^{_CJK}]", "", _compact(text))
    city, _ = _split_city(t)
    if city is None:
        if 2 <= len(t) <= 4 and not re.search("[区县]$", t):
            return Parsed(t, 0.5, "city not in the gazetteer")
        return Parsed(None, 0.0, "no city")
    return Parsed(city, 1.0 if city in places() else 0.6, "" if city in places() else "unknown city")


def parse_district(text: str) -> Parsed:
    t = re.sub(rf"[^{_CJK}]", "", _compact(text))
    city, rest = _split_city(t)
    m = re.search(rf"([{_CJK}]{{1,6}}?(?:新区|区|县|旗))$", rest) or re.search(
        rf"([{_CJK}]{{1,6}}?(?:新区|区|县|旗))", rest
    )
    if not m:
        return Parsed(None, 0.0, "no district")
    d = m.group(1)
    pool = (
        places()[city] if city is not None and city in places() else {x for v in places().values() for x in v}
    )
    if d in pool:
        return Parsed(d, 1.0)
    # Stamp text or a neighbour's words before the district: the longest known district it ends with.
    for k in sorted(pool, key=len, reverse=True):
        if d.endswith(k):
            return Parsed(k, 0.8, "extra characters before the district")
    close = difflib.get_close_matches(d[-3:], list(pool), n=1, cutoff=0.6)
    if close and len(d) > 3:
        return Parsed(close[0], 0.4, f"read {d!r}; closest known district {close[0]!r}")
    if close:
        return Parsed(close[0], 0.5, f"read {d!r}; closest known district {close[0]!r}")
    return Parsed(d, 0.6, "district not in the gazetteer")


_ORG_END = (
    "公司",
    "集团",
    "银行",
    "医院",
    "学校",
    "大学",
    "学院",
    "研究院",
    "研究所",
    "局",
    "中心",
    "事务所",
    "厂",
    "委员会",
    "政府",
    "店",
    "社",
    "院",
    "馆",
    "部",
    "所",
    "协会",
    "中学",
    "小学",
)


def parse_employer(text: str) -> Parsed:
    t = _compact(text)
    t = re.sub(r"^[:：]", "", t)
    if not t:
        return Parsed(None, 0.0, "empty")
    ok = t.endswith(_ORG_END) and len(t) >= 4
    return Parsed(t, 1.0 if ok else 0.6, "" if ok else "does not read as an organisation")


def parse_text(text: str) -> Parsed:
    t = _compact(text)
    t = re.sub(r"^[:：]", "", t)
    if not t:
        return Parsed(None, 0.0, "empty")
    ok = 1 <= len(t) <= 20 and not re.search(r"[□√☑]", t)
    return Parsed(t, 1.0 if ok else 0.5)


def parse_application_id(text: str) -> Parsed:
    t = _compact(text).upper()
    m = re.search(r"([A-Z]{2})([0-9OIL]{14})(?![0-9])", t)
    if not m:
        return Parsed(None, 0.0, "no application number")
    digits = m.group(2).translate(_DIGIT_LIKE)
    return Parsed(m.group(1) + digits, 1.0 if digits == m.group(2) else 0.7)


def choice(options: dict[str, str]) -> Callable[[str], Parsed]:
    """A closed list: printed wording -> contract code; fuzzy matches lose validity by their distance."""

    def parse(text: str) -> Parsed:
        t = re.sub(r"[□☐■☑√✓✔:：*]", "", _compact(text))
        if not t:
            return Parsed(None, 0.0, "empty")
        for word in sorted(options, key=len, reverse=True):
            if word in t:
                extra = len(t) - len(word)
                return Parsed(options[word], 1.0 if extra <= 1 else 0.7)
        best, ratio = None, 0.0
        for word in options:
            r = difflib.SequenceMatcher(None, t, word).ratio()
            if r > ratio:
                best, ratio = word, r
        if best is None or ratio < 0.5:
            return Parsed(None, 0.0, f"{t!r} is not one of the options")
        return Parsed(options[best], round(ratio * 0.8, 3), f"read {t!r}, closest option {best!r}")

    return parse


NORMALISERS: dict[str, Callable[[str], Parsed]] = {
    "application_id": parse_application_id,
    "name": parse_name,
    "id_number": parse_id_number,
    "date": parse_date,
    "mobile": parse_mobile,
    "amount": parse_amount,
    "years": parse_years,
    "city": parse_city,
    "district": parse_district,
    "employer": parse_employer,
    "text": parse_text,
}


def normalise(kind: str, text: str, options: dict[str, str] | None = None) -> Parsed:
    if kind == "choice":
        return choice(options or {})(text)
    try:
        return NORMALISERS[kind](text)
    except KeyError:
        raise InvalidArgument(f"unknown field type {kind!r}") from None
