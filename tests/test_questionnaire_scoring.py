"""Per-answer judging: typed matchers, validity, choices and free text with the real sentence encoder."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
from callvet.questionnaire.scoring import Outcome, RenderedQuestion, Scorer, Validity


def _q(
    kind: str,
    answer_type: str,
    lang: str = "en",
    params: dict[str, Any] | None = None,
    options: list[dict[str, Any]] | None = None,
    text: str = "question?",
) -> RenderedQuestion:
    return RenderedQuestion(
        question_id="q1-x",
        bank_id="x",
        text=text,
        language=lang,
        answer_type=answer_type,
        checks=["x"],
        choices=[o["label"] for o in options] if options else None,
        options=options,
        matcher={"kind": kind, "params": params or {}},
    )


@pytest.mark.parametrize(
    ("kind", "atype", "lang", "params", "answer", "truth", "outcome"),
    [
        ("name", "name", "zh", {}, "我叫王建国", "王建国", Outcome.CORRECT),
        ("name", "name", "en", {}, "Wang Jianguo", "王建国", Outcome.CORRECT),
        ("name", "name", "zh", {}, "王建军", "王建国", Outcome.PARTLY),
        ("name", "name", "zh", {}, "李明", "王建国", Outcome.WRONG),
        ("name", "name", "en", {}, "My name is John Smith", "John Smith", Outcome.CORRECT),
        ("name", "name", "en", {}, "Smith", "John Smith", Outcome.PARTLY),
        ("place", "place", "zh", {}, "在海淀", "海淀区", Outcome.CORRECT),
        ("place", "place", "en", {}, "Haidian district", "海淀区", Outcome.CORRECT),
        ("place", "place", "zh", {}, "朝阳区", "海淀区", Outcome.WRONG),
        ("place", "place", "en", {}, "I live in Camden", "Camden", Outcome.CORRECT),
        ("place", "place", "en", {}, "i live in", "Camden", Outcome.NO_ANSWER),
        (
            "organisation",
            "organisation",
            "zh",
            {},
            "我在华信电子上班",
            "北京华信电子有限公司",
            Outcome.CORRECT,
        ),
        ("organisation", "organisation", "zh", {}, "远航物流", "北京华信电子有限公司", Outcome.WRONG),
        (
            "organisation",
            "organisation",
            "en",
            {},
            "I work for Northwind Logistics",
            "Northwind Logistics Ltd",
            Outcome.CORRECT,
        ),
        ("organisation", "organisation", "en", {}, "Northwind", "Northwind Logistics Ltd", Outcome.PARTLY),
        (
            "amount",
            "amount",
            "zh",
            {"rel_tol": 0.1, "partly_tol": 0.25},
            "一万五左右",
            15000.0,
            Outcome.CORRECT,
        ),
        (
            "amount",
            "amount",
            "en",
            {"rel_tol": 0.1, "partly_tol": 0.25},
            "about thirteen grand",
            15000.0,
            Outcome.PARTLY,
        ),
        (
            "amount",
            "amount",
            "en",
            {"rel_tol": 0.1, "partly_tol": 0.25},
            "five thousand",
            15000.0,
            Outcome.WRONG,
        ),
        ("amount", "amount", "zh", {"abs_tol": 1, "partly_abs": 2}, "六年了", 6.0, Outcome.CORRECT),
        ("digits_tail", "digits", "zh", {"n": 4}, "尾号五六七八", "13912345678", Outcome.CORRECT),
        ("digits_tail", "digits", "en", {"n": 4}, "five six seven nine", "13912345678", Outcome.PARTLY),
        ("digits_tail", "digits", "en", {"n": 4}, "1234", "13912345678", Outcome.WRONG),
        ("date", "date", "zh", {"parts": "ymd"}, "八五年三月十二号", date(1985, 3, 12), Outcome.CORRECT),
        ("date", "date", "en", {"parts": "ymd"}, "March eighty-five", date(1985, 3, 12), Outcome.PARTLY),
        (
            "date",
            "date",
            "en",
            {"parts": "ymd"},
            "the first of January 1990",
            date(1985, 3, 12),
            Outcome.WRONG,
        ),
        (
            "date",
            "date",
            "en",
            {"parts": "md", "tolerance_days": 1, "partly_days": 4},
            "on the 20th of November",
            datetime(2026, 11, 20, 10, 31),
            Outcome.CORRECT,
        ),
        (
            "date",
            "date",
            "zh",
            {"parts": "md", "tolerance_days": 1, "partly_days": 4},
            "十一月十七号",
            datetime(2026, 11, 20, 10, 31),
            Outcome.PARTLY,
        ),
        ("yes_no", "yes_no", "zh", {"expected": True}, "是的，是我自己", True, Outcome.CORRECT),
        ("yes_no", "yes_no", "en", {"expected": True}, "no, it wasn't me", True, Outcome.WRONG),
    ],
)
def test_typed_matchers(
    kind: str, atype: str, lang: str, params: dict[str, Any], answer: str, truth: object, outcome: Outcome
) -> None:
    j = Scorer().judge(_q(kind, atype, lang, params), answer, truth)
    assert j.outcome is outcome, j.evidence


@pytest.mark.parametrize(
    ("answer", "validity"),
    [
        ("", Validity.EMPTY),
        ("um, er", Validity.EMPTY),
        ("I don't know", Validity.DONT_KNOW),
        ("我记不清了", Validity.DONT_KNOW),
        ("I'd rather not say", Validity.REFUSAL),
        ("why do you need that?", Validity.QUESTION_BACK),
        ("不好意思，你说什么？", Validity.QUESTION_BACK),
        ("yes", Validity.OFF_TOPIC),
        ("fifteen thousand", Validity.ANSWER),
    ],
)
def test_validity(answer: str, validity: Validity) -> None:
    assert Scorer().validity(_q("amount", "amount"), answer) is validity


def test_off_topic_when_no_value_of_the_type() -> None:
    j = Scorer().judge(_q("amount", "amount"), "I work in an office", 15000.0)
    assert j.outcome is Outcome.NO_ANSWER and j.validity is Validity.OFF_TOPIC


OPTIONS = [
    {"label": "rented", "synonyms": ["renting", "租房"], "value": "rented", "correct": False},
    {"label": "own it", "synonyms": ["owned", "自有住房", "my own place"], "value": "owned", "correct": True},
    {"label": "mortgaged", "synonyms": ["按揭"], "value": "mortgaged", "correct": False},
    {"label": "with family", "synonyms": ["父母家"], "value": "family", "correct": False},
]


@pytest.mark.parametrize(
    ("answer", "outcome"),
    [
        ("B", Outcome.CORRECT),
        ("the second one", Outcome.CORRECT),
        ("第二个", Outcome.CORRECT),
        ("it's my own place", Outcome.CORRECT),
        ("自有住房", Outcome.CORRECT),
        ("we're renting", Outcome.WRONG),
        ("A", Outcome.WRONG),
        ("按揭的", Outcome.WRONG),
        ("a boat", Outcome.NO_ANSWER),
    ],
)
def test_choice(answer: str, outcome: Outcome) -> None:
    j = Scorer().judge(_q("choice", "choice", options=OPTIONS), answer, "owned")
    assert j.outcome is outcome
    if outcome is Outcome.WRONG:
        assert "decoy_chosen" in j.flags


def test_income_band_by_number() -> None:
    bands = [
        {"label": f"{lo} to {hi}", "band": [lo, hi], "correct": lo <= 15000 < hi}
        for lo, hi in [(8000, 12000), (12000, 20000), (20000, 30000), (30000, 50000)]
    ]
    assert (
        Scorer().judge(_q("choice", "choice", options=bands), "about fifteen thousand", 15000.0).outcome
        is Outcome.CORRECT
    )


@pytest.fixture(scope="module")
def encoder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from callvet.core.settings import default_models_dir
    from callvet.models import sentence
    from callvet.questionnaire.encoder import SentenceEncoder

    models = default_models_dir()
    if not sentence.is_built(models):
        models = Path(tmp_path_factory.mktemp("models"))
        sentence.build(models)
    yield SentenceEncoder(models)


def test_encoder_embeddings_are_normalised_and_meaningful(encoder: Any) -> None:
    v = encoder.encode(["software engineer", "I write code for a living", "I drive a taxi"])
    assert v.shape == (3, 384)
    assert abs(float((v[0] ** 2).sum()) - 1.0) < 1e-4
    assert float(v[0] @ v[1]) > float(v[0] @ v[2]) + 0.2


@pytest.mark.parametrize(
    ("answer", "truth", "outcome"),
    [
        ("I'm a developer, I write code", "software engineer", Outcome.CORRECT),
        ("I look after patients, nursing", "nurse", Outcome.CORRECT),
        ("I drive a delivery van", "accountant", Outcome.WRONG),
        ("我在单位当工程师", "工程师", Outcome.CORRECT),
        ("我是厨师", "会计", Outcome.WRONG),
    ],
)
def test_free_text_with_encoder(encoder: Any, answer: str, truth: str, outcome: Outcome) -> None:
    q = _q("free_text", "free_text", "zh" if truth[0] >= "\u4e00" else "en", {"correct": 0.55, "partly": 0.4})
    j = Scorer(encoder).judge(q, answer, truth)
    assert j.outcome is outcome, j.evidence
