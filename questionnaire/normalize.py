"""Normalisers that turn spoken answers (ASR transcripts) into comparable values, in Chinese and English.

Transcripts say "一万五", "八五年三月", "fifteen thousand", "March eighty-five", "one three nine ...":
each function here extracts the value a person meant so the scorer compares facts, not wording.
"""

from __future__ import annotations

import re
import unicodedata
import warnings
from dataclasses import dataclass
from datetime import date
from functools import lru_cache

__all__ = [
    "PartialDate",
    "clean",
    "digits_in",
    "has_cjk",
    "name_keys",
    "numbers_in",
    "org_core",
    "parse_dates",
    "pinyin",
    "place_core",
    "stem",
    "tokens",
    "yes_no",
]

_CJK = re.compile(r"[\u4e00-\u9fff]")


def has_cjk(text: str) -> bool:
    return bool(_CJK.search(text or ""))


def clean(text: str) -> str:
    """Full-width to half-width, lower case, punctuation to spaces, single spaces."""
    t = unicodedata.normalize("NFKC", text or "").lower().replace("\u2019", "'")
    t = re.sub(r"(\d),(\d{3})", r"\1\2", t)
    t = re.sub(r"\b(\d+)(st|nd|rd|th)\b", r"\1", t)
    t = re.sub(r"[^\w\s\u4e00-\u9fff.+'-]", " ", t)
    t = re.sub(r"(?<!\w)'|'(?!\w)", " ", t)
    t = re.sub(r"(?<!\d)[.](?!\d)", " ", t)
    return re.sub(r"\s+", " ", t).strip()


def stem(word: str) -> str:
    """A crude English stem, enough for "mortgaged"/"mortgage", "nursing"/"nurse", "cards"/"card"."""
    for suf in ("ing", "ed", "es", "s", "d", "e"):
        if word.endswith(suf) and len(word) - len(suf) >= 4:
            return word[: -len(suf)]
    return word


def tokens(text: str) -> list[str]:
    """Words for English, single characters for Chinese runs."""
    out: list[str] = []
    for tok in clean(text).split():
        if has_cjk(tok):
            out.extend(ch for ch in tok if not ch.isspace())
        else:
            out.append(tok)
    return out


# ---------------------------------------------------------------- numbers

_EN_UNITS = {
    "zero": 0,
    "oh": 0,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "thirteen": 13,
    "fourteen": 14,
    "fifteen": 15,
    "sixteen": 16,
    "seventeen": 17,
    "eighteen": 18,
    "nineteen": 19,
    "a": 1,
    "an": 1,
}
_EN_TENS = {
    "twenty": 20,
    "thirty": 30,
    "forty": 40,
    "fifty": 50,
    "sixty": 60,
    "seventy": 70,
    "eighty": 80,
    "ninety": 90,
}
_EN_SCALES = {"hundred": 100, "thousand": 1000, "k": 1000, "grand": 1000, "million": 1_000_000}
_EN_ORD = {
    "first": 1,
    "second": 2,
    "third": 3,
    "fourth": 4,
    "fifth": 5,
    "sixth": 6,
    "seventh": 7,
    "eighth": 8,
    "ninth": 9,
    "tenth": 10,
    "eleventh": 11,
    "twelfth": 12,
    "thirteenth": 13,
    "fourteenth": 14,
    "fifteenth": 15,
    "sixteenth": 16,
    "seventeenth": 17,
    "eighteenth": 18,
    "nineteenth": 19,
    "twentieth": 20,
    "thirtieth": 30,
}


def _en_words_to_numbers(text: str) -> str:
    """Replace runs of English number words by digits ("fifteen thousand" -> "15000")."""
    words = re.sub(r"(\d),(\d{3})", r"\1\2", text).replace("-", " ").split()
    out: list[str] = []
    total = current = 0
    in_num = False
    half = False

    def flush() -> None:
        nonlocal total, current, in_num, half
        if in_num:
            value = total + current
            out.append(str(value + (500 if half and value >= 1000 else 0)))
        total = current = 0
        in_num = False
        half = False

    for i, w in enumerate(words):
        nxt = words[i + 1] if i + 1 < len(words) else ""
        if w in ("a", "an") and nxt not in _EN_SCALES:
            flush()
            out.append(w)
            continue
        if w in _EN_UNITS and not (w == "oh" and not in_num):
            value = _EN_UNITS[w]
            if total == 0 and 10 <= current <= 99 and current % 10 == 0 and value < 10:
                current += value
            elif total == 0 and current >= 10 and value >= 10:
                current = current * 100 + value
            elif total == 0 and current >= 100 and current % 100 >= 10 and value < 10 and w != "oh":
                current += value
            else:
                current += value
            in_num = True
        elif w in _EN_TENS:
            value = _EN_TENS[w]
            current = current * 100 + value if (total == 0 and 10 <= current < 100) else current + value
            in_num = True
        elif w in _EN_ORD:
            current += _EN_ORD[w]
            in_num = True
            flush()
        elif w in _EN_SCALES and (in_num or re.fullmatch(r"\d+(\.\d+)?", out[-1] if out else "")):
            if not in_num:
                prev = float(out.pop())
                out.append(str(int(prev * _EN_SCALES[w])))
                continue
            scale = _EN_SCALES[w]
            if scale == 100:
                current = max(current, 1) * 100
            else:
                total += max(current, 1) * scale
                current = 0
        elif w == "and" and in_num and nxt in ("a", "half"):
            continue
        elif w == "half" and in_num:
            half = True
        elif w == "and" and in_num:
            continue
        else:
            flush()
            m = re.fullmatch(r"(\d+(?:\.\d+)?)(k|m)", w)
            if m:
                out.append(str(int(float(m.group(1)) * (1000 if m.group(2) == "k" else 1_000_000))))
            else:
                out.append(w)
    flush()
    return " ".join(out)


_ZH_DIGIT = {
    "零": "0",
    "〇": "0",
    "幺": "1",
    "一": "1",
    "二": "2",
    "两": "2",
    "三": "3",
    "四": "4",
    "五": "5",
    "六": "6",
    "七": "7",
    "八": "8",
    "九": "9",
}


@lru_cache(maxsize=8192)
def _zh_to_arabic(text: str) -> str:
    """Chinese numerals to digits inside a sentence, with cn2an ("一万五" -> "15000")."""
    import cn2an

    t = _wan(text)
    t = re.sub(
        r"([一二两三四五六七八九])点([一二三四五六七八九])万",
        lambda m: str(int(_ZH_DIGIT[m.group(1)]) * 10000 + int(_ZH_DIGIT[m.group(2)]) * 1000),
        t,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            t = cn2an.transform(t, "cn2an")
        except Exception:
            t = "".join(_ZH_DIGIT.get(ch, ch) for ch in t)
    return _wan(t)


def _wan(t: str) -> str:
    """Digit forms with 万 (ten thousand): "1万5" and "1万5千" are 15000, "1.5万" is 15000."""
    t = re.sub(r"(\d+)\s*万\s*(\d+)\s*千", lambda m: str(int(m.group(1)) * 10000 + int(m.group(2)) * 1000), t)
    t = re.sub(
        r"(\d+)\s*万\s*(\d)(?![\d.])", lambda m: str(int(m.group(1)) * 10000 + int(m.group(2)) * 1000), t
    )
    return re.sub(r"(\d+(?:\.\d+)?)\s*万", lambda m: str(int(float(m.group(1)) * 10000)), t)


def _arabic(text: str, lang: str | None = None) -> str:
    t = clean(text)
    if lang == "zh" or has_cjk(t):
        t = _zh_to_arabic(t)
    return _en_words_to_numbers(t)


def numbers_in(text: str, lang: str | None = None) -> list[float]:
    """Every number the answer says, words and digits alike, in order."""
    t = _arabic(text, lang)
    t = re.sub(r"(\d),(\d{3})", r"\1\2", t)
    # A recogniser that drops the comma leaves "1 500": a 1-3 digit group then exactly three digits.
    t = re.sub(r"(?<![\d.])(\d{1,3}) (\d{3})(?![\d.])", r"\1\2", t)
    out: list[float] = []
    for m in re.finditer(r"(\d+(?:\.\d+)?)\s*(k|千)?", t):
        v = float(m.group(1))
        if m.group(2):
            v *= 1000
        out.append(v)
    return out


_EN_DIGIT_WORDS = {
    "zero": "0",
    "oh": "0",
    "o": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
}


def digits_in(text: str, lang: str | None = None) -> str:
    """The digit string of a spoken number ("one three nine ... double eight", "幺三九") for phones."""
    t = clean(text)
    t = "".join(_ZH_DIGIT.get(ch, ch) for ch in t)
    words = t.replace("-", " ").split()
    out: list[str] = []
    repeat = 1
    for w in words:
        if w in ("double", "triple"):
            repeat = 2 if w == "double" else 3
            continue
        if w in _EN_DIGIT_WORDS:
            out.append(_EN_DIGIT_WORDS[w] * repeat)
        else:
            ds = re.sub(r"\D", "", w)
            if ds:
                out.append(ds[0] * repeat + ds[1:])
        repeat = 1
    return "".join(out)


# ---------------------------------------------------------------- dates


@dataclass(frozen=True)
class PartialDate:
    """A spoken date may omit parts ("March eighty-five"): missing parts are None."""

    year: int | None = None
    month: int | None = None
    day: int | None = None

    def matches(self, truth: date) -> tuple[int, int]:
        """(parts that agree, parts given)."""
        given = agree = 0
        for mine, real in ((self.year, truth.year), (self.month, truth.month), (self.day, truth.day)):
            if mine is not None:
                given += 1
                agree += int(mine == real)
        return agree, given


_MONTHS = {
    m: i + 1
    for i, m in enumerate(
        [
            "january",
            "february",
            "march",
            "april",
            "may",
            "june",
            "july",
            "august",
            "september",
            "october",
            "november",
            "december",
        ]
    )
}
_MONTHS.update({k[:3]: v for k, v in list(_MONTHS.items())})
_MONTHS["sept"] = 9


def _year(v: int) -> int:
    if v < 100:
        return 1900 + v if v > 30 else 2000 + v
    return v


def parse_dates(text: str, lang: str | None = None) -> list[PartialDate]:
    """Dates in an answer: ISO and numeric forms, "1985年3月12日", "八五年三月", "12th of March 1985"."""
    found: list[PartialDate] = []
    raw = unicodedata.normalize("NFKC", text or "")
    for m in re.finditer(r"(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})", raw):
        found.append(PartialDate(int(m.group(1)), int(m.group(2)), int(m.group(3))))
    for m in re.finditer(r"(?<!\d)(\d{1,2})[/.-](\d{1,2})[/.-](\d{2}|\d{4})(?!\d)", raw):
        a, b, y = int(m.group(1)), int(m.group(2)), _year(int(m.group(3)))
        # Day-first (UK, most of the world) and month-first (US) readings are both kept.
        for day, month in ((a, b), (b, a)):
            if 1 <= month <= 12 and 1 <= day <= 31:
                found.append(PartialDate(y, month, day))
    if found:
        return found
    t = _arabic(text, lang)
    for m in re.finditer(r"(?:(\d{2,4})\s*年)?\s*(?:(\d{1,2})\s*月)\s*(?:(\d{1,2})\s*[日号])?", t):
        y, mo, d = m.group(1), m.group(2), m.group(3)
        if mo and 1 <= int(mo) <= 12:
            found.append(PartialDate(_year(int(y)) if y else None, int(mo), int(d) if d else None))
    if not found:
        for m in re.finditer(r"(\d{2,4})\s*年", t):
            found.append(PartialDate(_year(int(m.group(1))), None, None))
    words = t.split()
    years4 = [int(x) for x in words if x.isdigit() and len(x) == 4 and 1900 <= int(x) <= 2100]
    for i, w in enumerate(words):
        month = _MONTHS.get(w)
        if month is None:
            continue
        day = year = None
        after = [x for x in words[i + 1 : i + 4] if x.isdigit()]
        before = [x for x in words[max(0, i - 3) : i] if x.isdigit() and len(x) <= 2]
        if before and 1 <= int(before[-1]) <= 31:
            day = int(before[-1])
        for x in after:
            v = int(x)
            if len(x) == 4:
                year = year or v
            elif day is None and 1 <= v <= 31 and len(after) > 1:
                day = v
            elif year is None and len(x) <= 2 and (day is not None or v > 31):
                year = _year(v)
            elif day is None and 1 <= v <= 31:
                day = v
        if year is None and years4:
            year = years4[0]
        found.append(PartialDate(year, month, day))
    return found


# ---------------------------------------------------------------- yes / no

_YES_EN = {"yes", "yeah", "yep", "yup", "correct", "right", "sure", "true", "indeed", "absolutely", "ok"}
_NO_EN = {"no", "nope", "not", "never", "don't", "didn't", "haven't", "isn't", "wasn't", "nah"}


def yes_no(text: str) -> bool | None:
    """True for an affirmative answer, False for a negative one, None when neither is clear."""
    t = clean(text)
    if has_cjk(t):
        if re.search(r"(不是|没有|不对|没|否|不)", t):
            return False
        if re.search(r"(是|对|有|嗯|没错|好的|当然)", t):
            return True
        return None
    words = set(t.split())
    if (
        re.search(r"\b(it was me|i did|that's me|that was me|of course|i applied)\b", t)
        and not words & _NO_EN
    ):
        return True
    if words & _NO_EN:
        return False
    if words & _YES_EN:
        return True
    return None


# ---------------------------------------------------------------- names, places, organisations


@lru_cache(maxsize=8192)
def pinyin(text: str) -> str:
    """Toneless pinyin without spaces ("王建国" -> "wangjianguo"); other characters pass through."""
    from pypinyin import lazy_pinyin

    return "".join(lazy_pinyin(clean(text).replace(" ", "")))


def name_keys(name: str) -> tuple[str, str, str]:
    """(full key, family-name key, given-name key) compared script-independently via pinyin."""
    t = clean(name)
    if has_cjk(t):
        chars = [c for c in t if _CJK.match(c)]
        full = "".join(chars)
        fam, given = full[:1], full[1:]
        return pinyin(full), pinyin(fam), pinyin(given)
    parts = [p for p in t.split() if p not in ("mr", "mrs", "ms", "miss", "dr")]
    if not parts:
        return "", "", ""
    return "".join(parts), parts[-1], parts[0]


_PLACE_SUFFIX_ZH = ("特别行政区", "自治区", "新区", "省", "市", "区", "县", "镇")
_PLACE_SUFFIX_EN = ("district", "city", "county", "province", "borough", "town", "new area")


def place_core(text: str) -> str:
    """A place without administrative suffixes ("海淀区" -> "海淀", "Haidian District" -> "haidian")."""
    t = clean(text).replace(" ", "") if has_cjk(text) else clean(text)
    if has_cjk(t):
        for suf in _PLACE_SUFFIX_ZH:
            if t.endswith(suf) and len(t) > len(suf) + 1:
                t = t[: -len(suf)]
                break
        return t
    for suf in _PLACE_SUFFIX_EN:
        t = re.sub(rf"\b{suf}\b", " ", t)
    t = re.sub(r"\b(the|of)\b", " ", t)
    return re.sub(r"\s+", " ", t).strip()


_ORG_SUFFIX_ZH = (
    "股份有限公司",
    "有限责任公司",
    "有限公司",
    "集团公司",
    "集团",
    "公司",
    "分公司",
    "总公司",
    "股份",
)
_ORG_SUFFIX_EN = (
    "limited",
    "ltd",
    "inc",
    "incorporated",
    "co",
    "corp",
    "corporation",
    "company",
    "group",
    "plc",
    "llc",
    "holdings",
    "the",
)
_ZH_CITY_PREFIX = (
    "北京",
    "上海",
    "广州",
    "深圳",
    "杭州",
    "成都",
    "南京",
    "武汉",
    "天津",
    "重庆",
    "西安",
    "苏州",
    "长沙",
    "郑州",
    "青岛",
    "厦门",
    "宁波",
    "合肥",
    "济南",
    "沈阳",
    "大连",
    "福州",
    "昆明",
    "中国",
)


def org_core(text: str) -> str:
    """An organisation without legal-form suffixes or leading city ("北京华信电子有限公司" -> "华信电子")."""
    t = clean(text)
    if has_cjk(t):
        t = t.replace(" ", "")
        changed = True
        while changed:
            changed = False
            for suf in _ORG_SUFFIX_ZH:
                if t.endswith(suf) and len(t) > len(suf) + 1:
                    t = t[: -len(suf)]
                    changed = True
        for pre in _ZH_CITY_PREFIX:
            if t.startswith(pre) and len(t) > len(pre) + 1:
                t = t[len(pre) :]
                break
        t = re.sub(r"^(在|我在|就在)", "", t)
        return t
    words = [w for w in t.replace("&", " and ").split() if w not in _ORG_SUFFIX_EN]
    return " ".join(words)
