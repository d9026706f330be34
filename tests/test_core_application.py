from __future__ import annotations

import json
from pathlib import Path

import pytest
from callvet.core.application import Application
from pydantic import ValidationError

EXAMPLE = json.loads((Path(__file__).parent / "data" / "application.example.json").read_text())


def test_contract_example_parses() -> None:
    app = Application.model_validate(EXAMPLE)
    assert app.lang == "zh"
    assert app.get_path("employment.employer") == "北京华信电子有限公司"
    assert app.get_path("credit_profile.inquiries_6m") == 1
    assert app.get_path("nope.deeper") is None


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("applicant", "birth_date"), "1985-13-45"),
        (("applicant", "mobile"), "call me"),
        (("employment", "monthly_income"), -5),
        (("home", "housing"), "castle"),
        (("language",), "fr"),
    ],
)
def test_malformed_field_is_named(path: tuple[str, ...], value: object) -> None:
    data = json.loads(json.dumps(EXAMPLE))
    node = data
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value
    with pytest.raises(ValidationError) as ei:
        Application.model_validate(data)
    assert tuple(ei.value.errors()[0]["loc"][: len(path)]) == path


def test_only_id_name_language_required() -> None:
    app = Application.model_validate({"application_id": "A1", "language": "en", "applicant": {"name": "Jo"}})
    assert app.employment is None and app.risk_reasons == []
