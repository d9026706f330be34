"""The adaptive investigation questionnaire: question bank, answer scoring, interview engine, service
and call adapter. Entry point: :class:`InterviewService` (built by the composition root,
``callvet.services.Services.interviews``). The applicant simulator is :mod:`callvet.sim.questionnaire`.
"""

from __future__ import annotations

from callvet.questionnaire.bank import Bank, BankError, Question, load_bank
from callvet.questionnaire.interview import InterviewEngine, InterviewState, Verdict
from callvet.questionnaire.scoring import AnswerOutcome, Judgement, Validity
from callvet.questionnaire.service import InterviewService

__all__ = [
    "AnswerOutcome",
    "Bank",
    "BankError",
    "InterviewEngine",
    "InterviewService",
    "InterviewState",
    "Judgement",
    "Question",
    "Validity",
    "Verdict",
    "load_bank",
]
