"""The simulated applicant population: seeded applications (Chinese and English) and how people say
values aloud. Tune on seeds 0-999 and report on an unseen range (the benchmark uses 10_000+).
The callers that answer from these applications are :mod:`callvet.sim.questionnaire`."""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta, timezone
from typing import Any

from callvet.core.application import Application
from callvet.questionnaire.bank import Bank, load_bank

__all__ = ["make_application", "say_number"]

_ZH_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘"
_ZH_GIVEN = "建国秀英伟芳娜敏静丽强磊军洋勇艳杰娟涛明超霞平刚桂英华玉兰文辉鹏飞宇欣怡浩然子涵思雨博文嘉琪"
_EN_FIRST = [
    "James",
    "Oliver",
    "Harry",
    "Jack",
    "George",
    "Noah",
    "Charlie",
    "Thomas",
    "Oscar",
    "William",
    "Amelia",
    "Olivia",
    "Isla",
    "Emily",
    "Ava",
    "Lily",
    "Sophie",
    "Grace",
    "Ella",
    "Chloe",
    "Daniel",
    "Priya",
    "Mohammed",
    "Aisha",
    "Lucas",
    "Hannah",
    "Ethan",
    "Zara",
    "Samuel",
    "Ruby",
]
_EN_LAST = [
    "Smith",
    "Jones",
    "Taylor",
    "Brown",
    "Williams",
    "Wilson",
    "Johnson",
    "Davies",
    "Robinson",
    "Wright",
    "Thompson",
    "Evans",
    "Walker",
    "White",
    "Roberts",
    "Green",
    "Hall",
    "Wood",
    "Jackson",
    "Clarke",
    "Patel",
    "Khan",
    "Lewis",
    "Harris",
    "Martin",
    "Cooper",
    "King",
    "Lee",
    "Baker",
    "Hill",
]
_REF_DAY = date(2026, 11, 20)
_RISKS = ["new_device", "address_mismatch", "income_mismatch", "high_velocity"]
_HOUSING_W = {"owned": 0.3, "mortgaged": 0.25, "rented": 0.3, "family": 0.1, "company": 0.05}
_CHANNEL_W = {"mobile_app": 0.5, "website": 0.2, "branch": 0.15, "partner": 0.1, "phone": 0.05}
_RELATION_W = {
    "spouse": 0.4,
    "parent": 0.3,
    "sibling": 0.15,
    "friend": 0.08,
    "colleague": 0.04,
    "child": 0.03,
}
_JOB_PARAPHRASE_EN = {
    "software engineer": ["I write software", "I'm a developer, I write code", "software engineering"],
    "accountant": ["I do the accounts for the company", "I'm in accounting", "bookkeeping and accounts"],
    "teacher": ["I teach at a school", "I'm a school teacher", "teaching"],
    "nurse": ["I'm a nurse on a hospital ward", "I look after patients, nursing", "nursing"],
    "sales manager": ["I manage the sales team", "I'm in sales, a manager", "sales management"],
    "delivery driver": ["I drive deliveries", "I'm a driver, delivering parcels", "driving a van"],
    "graphic designer": ["I design graphics", "I'm a designer", "graphic design"],
    "office administrator": ["I run the office admin", "administration in an office", "office admin"],
    "doctor": ["I'm a doctor", "I work as a GP doctor", "medical doctor"],
    "electrician": ["I'm an electrician", "electrical work, wiring", "I fix electrics"],
    "chef": ["I'm a chef in a restaurant", "I cook in a kitchen, chef", "cooking, I'm a chef"],
    "customer service advisor": [
        "I work in customer service",
        "I handle customer calls",
        "customer service advisor on the phones",
    ],
}


def _weighted(rng: random.Random, weights: dict[str, float]) -> str:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def _zh_name(rng: random.Random) -> str:
    return rng.choice(_ZH_SURNAMES) + "".join(rng.choice(_ZH_GIVEN) for _ in range(rng.choice([1, 2, 2])))


def _en_name(rng: random.Random) -> str:
    return f"{rng.choice(_EN_FIRST)} {rng.choice(_EN_LAST)}"


def _mobile(rng: random.Random, lang: str) -> str:
    if lang == "zh":
        return rng.choice(["139", "138", "137", "186", "158", "150"]) + "".join(
            rng.choice("0123456789") for _ in range(8)
        )
    return (
        "07"
        + "".join(rng.choice("0123456789") for _ in range(3))
        + " "
        + "".join(rng.choice("0123456789") for _ in range(6))
    )


def make_application(seed: int, bank: Bank | None = None) -> Application:
    """A random, self-consistent application; the same seed always gives the same one."""
    bank = bank or load_bank()
    rng = random.Random(seed)
    lang = rng.choice(["zh", "en"])
    pools = bank.pools
    city = rng.choice(pools["city"][lang])
    work_city = city if rng.random() < 0.8 else rng.choice(pools["city"][lang])
    income = round(rng.lognormvariate(9.4 if lang == "zh" else 8.0, 0.45) / 500) * 500 or 500
    name = _zh_name(rng) if lang == "zh" else _en_name(rng)
    data: dict[str, Any] = {
        "application_id": f"SIM-{seed}",
        "language": "zh-CN" if lang == "zh" else "en-GB",
        "applicant": {
            "name": name,
            "id_number": f"{rng.randrange(110000, 660000)}********{rng.randrange(1000, 9999)}",
            "birth_date": date(1960, 1, 1) + timedelta(days=rng.randrange(0, 43 * 365)),
            "mobile": _mobile(rng, lang),
        },
        "employment": {
            "employer": rng.choice(pools["employer"][lang]),
            "job_title": rng.choice(pools["job_title"][lang]),
            "monthly_income": float(income),
            "years_employed": float(rng.randrange(0, 21)),
            "work_city": work_city,
            "work_district": rng.choice(pools["district"][work_city]),
        },
        "home": {
            "city": city,
            "district": rng.choice(pools["district"][city]),
            "housing": _weighted(rng, _HOUSING_W),
        },
        "card_product": rng.choice(pools["card_product"][lang]),
        "channel": _weighted(rng, _CHANNEL_W),
        "applied_at": datetime.combine(
            _REF_DAY - timedelta(days=rng.randrange(0, 14)),
            datetime.min.time(),
            tzinfo=timezone(timedelta(hours=8)),
        ).replace(hour=rng.randrange(8, 22)),
        "requested_limit": float(
            rng.choice(
                [10000, 20000, 30000, 50000, 80000, 100000]
                if lang == "zh"
                else [1000, 2000, 3000, 5000, 8000, 10000]
            )
        ),
        "emergency_contact": {
            "name": _zh_name(rng) if lang == "zh" else _en_name(rng),
            "relation": _weighted(rng, _RELATION_W),
            "mobile": _mobile(rng, lang),
        },
        "credit_profile": {
            "monthly_obligations": float(round(income * rng.uniform(0.0, 0.4) / 100) * 100),
            "existing_cards": rng.randrange(0, 6),
            "delinquencies_24m": rng.randrange(0, 2),
            "credit_history_months": rng.randrange(6, 240),
            "inquiries_6m": rng.randrange(0, 5),
        },
        "risk_reasons": rng.sample(_RISKS, k=rng.choice([0, 1, 1, 2])),
    }
    data["bank_relationship"] = _bank_relationship(seed, lang, income, bank)
    return Application.model_validate(data)


def _bank_relationship(seed: int, lang: str, income: float, bank: Bank) -> dict[str, Any] | None:
    """Two applicants in three are existing customers whose books the bank can quote (issue 13). A
    separate generator, so the rest of each seeded application stays what it was before."""
    rng = random.Random(seed * 7 + 0xBA4C)
    if rng.random() >= 0.65:
        return None
    when = _REF_DAY - timedelta(days=rng.randrange(2, 21))
    return {
        "cards_held": rng.choice([0, 1, 1, 1, 2, 2, 3]),
        "salary_account": rng.random() < 0.45,
        "last_repayment_amount": round(income * rng.uniform(0.05, 0.35), 2) if rng.random() < 0.8 else None,
        "recent_transaction": {
            "merchant": rng.choice(bank.pools["merchant"][lang]),
            "amount": round(rng.lognormvariate(5.0 if lang == "zh" else 3.3, 0.8), 2),
            "date": when,
        },
    }


# ---------------------------------------------------------------- saying values

_EN_SMALL = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
]
_EN_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_EN_MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
_EN_ORD = {1: "first", 2: "second", 3: "third", 5: "fifth", 8: "eighth", 9: "ninth", 12: "twelfth"}


def _en_words(n: int) -> str:
    if n < 20:
        return _EN_SMALL[n]
    if n < 100:
        return _EN_TENS[n // 10] + ("" if n % 10 == 0 else "-" + _EN_SMALL[n % 10])
    if n < 1000:
        rest = n % 100
        return _EN_SMALL[n // 100] + " hundred" + ("" if not rest else " and " + _en_words(rest))
    if n < 1_000_000:
        rest = n % 1000
        return (
            _en_words(n // 1000)
            + " thousand"
            + ("" if not rest else (" and " if rest < 100 else " ") + _en_words(rest))
        )
    return str(n)


def _en_ordinal(n: int) -> str:
    if n in _EN_ORD:
        return _EN_ORD[n]
    if n < 20:
        return _EN_SMALL[n] + "th"
    if n % 10 == 0:
        return _EN_TENS[n // 10][:-1] + "ieth"
    return _EN_TENS[n // 10] + "-" + _en_ordinal(n % 10)


def _en_year(y: int) -> str:
    if 2000 <= y < 2010:
        return "two thousand and " + _EN_SMALL[y - 2000] if y > 2000 else "two thousand"
    return _en_words(y // 100) + " " + (_en_words(y % 100) if y % 100 >= 10 else "oh " + _EN_SMALL[y % 100])


def say_number(v: float, lang: str, rng: random.Random) -> str:
    """A number as people say it: digits, words, 万/k shorthand."""
    import cn2an

    n = round(v)
    if lang == "zh":
        forms = [str(n), cn2an.an2cn(n)]
        if n >= 10000 and n % 1000 == 0:
            w, k = divmod(n, 10000)
            forms.append(f"{w}万" if not k else f"{w}.{k // 1000}万" if k % 1000 == 0 else str(n))
            if k and k % 1000 == 0:
                forms.append(cn2an.an2cn(w) + "万" + cn2an.an2cn(k // 1000))
        return rng.choice(forms)
    forms = [str(n), f"{n:,}", _en_words(n)]
    if n >= 1000 and n % 1000 == 0:
        forms += [f"{n // 1000}k", _en_words(n // 1000) + " grand"]
    return rng.choice(forms)


def _say_date(d: date, lang: str, rng: random.Random, *, with_year: bool = True) -> str:
    import cn2an

    if lang == "zh":
        y = rng.choice([f"{d.year}年", f"{str(d.year)[2:]}年", cn2an.an2cn(d.year, "low").replace("千", "")])
        if y.endswith("五") or not y.endswith("年"):
            y = "".join("〇一二三四五六七八九"[int(c)] for c in str(d.year)) + "年"
        if rng.random() < 0.3:
            y = "".join("〇一二三四五六七八九"[int(c)] for c in str(d.year)[2:]) + "年"
        md = rng.choice(
            [
                f"{d.month}月{d.day}日",
                f"{d.month}月{d.day}号",
                f"{cn2an.an2cn(d.month)}月{cn2an.an2cn(d.day)}号",
            ]
        )
        return (y if with_year else "") + md
    month = _EN_MONTHS[d.month - 1]
    y = rng.choice([str(d.year), _en_year(d.year)]) if with_year else ""
    forms = [f"{d.day} {month} {y}", f"{month} {d.day}, {y}", f"the {_en_ordinal(d.day)} of {month} {y}"]
    return rng.choice(forms).strip().rstrip(",")


def _say_digits(s: str, lang: str, rng: random.Random) -> str:
    if lang == "zh":
        zh = "".join("零一二三四五六七八九"[int(c)] for c in s)
        return rng.choice([s, zh, "尾号" + zh, zh.replace("一", "幺")])
    return rng.choice([s, " ".join(_EN_SMALL[int(c)] for c in s), " ".join(s)])


