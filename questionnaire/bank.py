"""The question bank: YAML data files shipped with the package, validated once at load.

Questions are data so risk and operations staff can add phrasings or facts without code changes; the
loader rejects a malformed bank at start-up (unknown answer type, matcher or language) rather than at
call time.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from callvet.core.errors import InvalidInput
from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["ANSWER_TYPES", "MATCHERS", "SOURCES", "Bank", "BankError", "Matcher", "Question", "load_bank",
           "source_of"]

ANSWER_TYPES = ("date", "amount", "name", "place", "organisation", "yes_no", "choice", "free_text", "digits")
MATCHERS = ("date", "amount", "name", "place", "organisation", "yes_no", "choice", "free_text", "digits_tail")
BANK_DIR = Path(__file__).resolve().parent / "bank"
#: Where the fact a question checks comes from: what the applicant typed (``form``), the credit bureau
#: (``bureau``, ``credit_profile``) or the bank's own books (``bank``, ``bank_relationship``). Only
#: bureau and bank facts tell the owner from someone who holds the filled-in form.
SOURCES = ("form", "bureau", "bank")


class BankError(InvalidInput, ValueError):
    """The bank's files do not fit together (a duplicate id, an unknown follow-up). A question that is
    malformed on its own fails pydantic validation instead (validators must raise plain ValueError)."""

    code = "bad_bank"


def source_of(path: str) -> Literal["form", "bureau", "bank"]:
    if path.startswith("credit_profile"):
        return "bureau"
    if path.startswith("bank_relationship"):
        return "bank"
    return "form"


class Matcher(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal[
        "date", "amount", "name", "place", "organisation", "yes_no", "choice", "free_text", "digits_tail"
    ]
    params: dict[str, Any] = Field(default_factory=dict)


class Question(BaseModel):
    """One bank entry; ``guess_rate``/``owner_rate`` give the evidence an answer carries."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str
    topic: str
    checks: list[str]
    answer_type: Literal[
        "date", "amount", "name", "place", "organisation", "yes_no", "choice", "free_text", "digits"
    ]
    difficulty: int = Field(ge=0, le=3)
    owner_only: bool = False
    warmup: bool = False
    followup_only: bool = False
    escalation_only: bool = False
    guess_rate: float = Field(gt=0, lt=1)
    owner_rate: float = Field(gt=0, lt=1)
    matcher: Matcher
    text: dict[Literal["en", "zh"], list[str]]
    followups: list[str] = Field(default_factory=list)
    risk: list[str] = Field(default_factory=list)
    source: Literal["form", "bureau", "bank"] | None = None

    @model_validator(mode="after")
    def _both_languages(self) -> Question:
        for lang in ("en", "zh"):
            if not self.text.get(lang):  # type: ignore[call-overload]
                raise ValueError(f"question {self.id}: needs at least one {lang} phrasing")
        derived = source_of(self.checks[0]) if self.checks else "form"
        if self.source is not None and self.source != derived:
            raise ValueError(
                f"question {self.id}: source {self.source} but it checks {self.checks[0]} ({derived})"
            )
        object.__setattr__(self, "source", derived)
        return self

    @property
    def independent(self) -> bool:
        """A fact the applicant did not type: the bureau's or the bank's."""
        return self.source != "form"


class Bank(BaseModel):
    questions: dict[str, Question]
    enums: dict[str, dict[str, dict[str, list[str]]]]
    pools: dict[str, dict[str, list[str]]]

    def question(self, qid: str) -> Question:
        return self.questions[qid]

    def enum_labels(self, enum: str, value: str, lang: str) -> list[str]:
        entry = self.enums.get(enum, {}).get(value)
        return list(entry.get(lang, [])) if entry else [value]


@lru_cache(maxsize=4)
def load_bank(directory: Path = BANK_DIR) -> Bank:
    questions: dict[str, Question] = {}
    values: dict[str, Any] = {}
    for path in sorted(Path(directory).glob("*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if path.name == "values.yaml":
            values = data
            continue
        for raw in data.get("questions", []):
            q = Question.model_validate(raw)
            if q.id in questions:
                raise BankError(f"duplicate question id {q.id} in {path.name}")
            questions[q.id] = q
    for q in questions.values():
        for f in q.followups:
            if f not in questions:
                raise BankError(f"question {q.id}: unknown follow-up {f}")
    return Bank(questions=questions, enums=values.get("enums", {}), pools=values.get("pools", {}))
