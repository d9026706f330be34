"""The population generator and simulated callers."""

from __future__ import annotations

import random

from callvet.questionnaire.normalize import numbers_in
from callvet.sim.questionnaire import (
    GenuineApplicant,
    PartialIdentityFraudster,
    make_application,
    say_number,
)


def test_population_is_deterministic_and_varied() -> None:
    assert make_application(5) == make_application(5)
    apps = [make_application(s) for s in range(40)]
    assert {a.language for a in apps} == {"zh-CN", "en-GB"}
    assert len({a.applicant.name for a in apps}) > 30
    assert all(a.employment and a.employment.employer for a in apps)


def test_spoken_numbers_parse_back() -> None:
    rng = random.Random(0)
    for v in (1500, 3200, 15000, 25000, 80000):
        for lang in ("zh", "en"):
            for _ in range(5):
                said = say_number(v, lang, rng)
                assert float(v) in numbers_in(said, lang), said


def test_fraudster_knows_only_the_stolen_part() -> None:
    app = make_application(9)
    f = PartialIdentityFraudster(app, random.Random(1))
    assert {"applicant.name", "applicant.mobile"} <= f.known
    assert "emergency_contact.mobile" not in f.known
    g = GenuineApplicant(app, random.Random(1))
    q = {
        "question_id": "q1-x",
        "text": "?",
        "language": "en",
        "answer_type": "digits",
        "checks": ["emergency_contact.mobile"],
    }
    assert g.respond(q)["transcript"]
