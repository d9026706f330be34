"""The adaptive interview: a per-applicant paper, follow-ups, escalation and a sequential verdict.

Each answer is weighed as evidence: the log-likelihood ratio of "the real owner" against "an impostor"
given how often each gets this fact right (``owner_rate``/``guess_rate`` in the bank). The interview
stops as soon as the sum crosses a pass or fail bound (a sequential probability ratio test), or when
the question limit is reached. Wrong, hesitant or evasive answers pull owner-only questions forward, so
an impostor meets the hardest facts early while a genuine caller is rarely asked more than a few.
The whole state is a JSON-able dict, so the service stores it after every answer.
"""

from __future__ import annotations

import hashlib
import math
import random
from enum import StrEnum
from typing import Any

from callvet.core.application import Application
from callvet.core.errors import Conflict, InvalidInput
from callvet.questionnaire import normalize as nz
from callvet.questionnaire.bank import Bank, Question
from callvet.questionnaire.options import choice_options, money
from callvet.questionnaire.prosody import delivery, features_of, hesitation, lookup_delay
from callvet.questionnaire.scoring import Judgement, Outcome, RenderedQuestion, Scorer, Validity

__all__ = ["LIMITS", "InterviewEngine", "InterviewState", "Verdict", "seed_for"]


class InterviewState(StrEnum):
    ASKING = "asking"
    FINISHED = "finished"
    ABORTED = "aborted"


class Verdict(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"


_TRANSITIONS: dict[InterviewState, set[InterviewState]] = {
    InterviewState.ASKING: {InterviewState.ASKING, InterviewState.FINISHED, InterviewState.ABORTED},
    InterviewState.FINISHED: set(),
    InterviewState.ABORTED: set(),
}

LIMITS = {
    "max_questions": 12,  # fact questions answered (re-asks of the same question not counted)
    "max_asks": 16,  # every question put to the caller, re-asks included
    "min_facts": 4,  # fact answers (warm-up excluded) before a pass
    "min_facts_fail": 3,  # ... and before a fail, unless the evidence is twice the fail bound
    "pass_llr": 5.0,
    "fail_llr": -4.0,
    "end_fail_llr": -1.0,  # at the question limit: below this fail, between this and pass inconclusive
    "max_reasks": 2,
    # Evidence against "someone who holds the filled-in form" (issue 13): only facts the form does not
    # hold (bureau, bank) and how the answers were delivered count. A pass needs this bound too when the
    # application carries at least ``min_independent`` such facts.
    "holder_pass_llr": 2.0,
    "min_independent": 2,
}
# Evidence against the form-holder from delivery: a number looked up (several seconds later than the
# caller's own word answers); identity numbers an owner knows by heart weigh more than income, on which
# owners hesitate naturally. A number said at once is weak evidence for the owner (a reader is quick too).
_LOOKUP_LLR = {"identity": -2.0, "other": -1.0}
_RECALL_LLR = 0.4
_SCRIPTED_LLR = -2.5
_IDENTITY_NUMBERS = ("applicant.birth_date", "applicant.mobile", "applicant.id_number")
_BEHAVIOUR_LLR = {
    "echo": -1.5,
    "fast_generic": -1.0,
    "repeated_yes": -1.5,
    "hesitant": -0.6,
    "tone_shift": -0.3,
}


def seed_for(application_id: str, attempt: int) -> int:
    digest = hashlib.sha256(f"{application_id}\x00{attempt}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def _value(app: Application, q: Question) -> object:
    if q.checks == ["risk_reasons"]:
        return bool(set(q.risk) & set(app.risk_reasons)) or None
    return app.get_path(q.checks[0])


def _llr(q: Question, outcome: Outcome) -> float:
    o, g = q.owner_rate, q.guess_rate
    if outcome is Outcome.NO_ANSWER and q.independent:
        # Owners forget what the bank booked far more often than what they typed themselves.
        return 0.5 * math.log((1 - o) / (1 - g))
    right = math.log(o / g)
    wrong = math.log((1 - o) / (1 - g))
    if outcome is Outcome.CORRECT:
        return right
    if outcome is Outcome.PARTLY:
        return 0.25 * right if g < 0.5 else 0.0
    if outcome is Outcome.WRONG:
        return wrong
    return 0.8 * wrong


def _answer_llr(q: Question, outcome: Outcome, flags: list[str], *, reask: bool) -> float:
    """The evidence of one answer: the fact's LLR (none for a re-ask or a right warm-up; a wrong
    warm-up counts at least -1) plus the behaviour flags' (hesitation counts only against owner-only
    facts when the answer was right, and then half)."""
    llr = 0.0 if (reask or (q.warmup and outcome is Outcome.CORRECT)) else _llr(q, outcome)
    if q.warmup and not reask and outcome is not Outcome.CORRECT:
        llr = min(llr, -1.0)
    for f in flags:
        if f == "hesitant" and outcome is Outcome.CORRECT and not q.owner_only:
            continue
        llr += _BEHAVIOUR_LLR.get(f, 0.0) * (0.5 if f == "hesitant" and outcome is Outcome.CORRECT else 1.0)
    return llr


class InterviewEngine:
    """Pure logic over a state dict; the service persists ``state`` after every call."""

    def __init__(self, bank: Bank, scorer: Scorer, state: dict[str, Any]) -> None:
        self.bank = bank
        self.scorer = scorer
        self.state = state
        self.app = Application.model_validate(state["application"])

    # ------------------------------------------------------------------ creation

    @classmethod
    def new(
        cls, bank: Bank, scorer: Scorer, app: Application, *, attempt: int, language: str | None = None
    ) -> InterviewEngine:
        lang = "zh" if (language or app.language).startswith("zh") else "en"
        seed = seed_for(app.application_id, attempt)
        state: dict[str, Any] = {
            "application": app.model_dump(mode="json"),
            "attempt": attempt,
            "lang": lang,
            "seed": seed,
            "status": InterviewState.ASKING.value,
            "queue": [],
            "asked": [],
            "reasks": {},
            "answers": [],
            "llr": 0.0,
            "llr_holder": 0.0,
            "scripted": False,
            "current": None,
            "result": None,
            "seq": 0,
        }
        eng = cls(bank, scorer, state)
        state["queue"] = eng._paper()
        eng._ask_next()
        return eng

    def _eligible(self, q: Question) -> bool:
        """Asked only when the application holds the fact and the scorer can judge the answer: English
        free text needs the sentence encoder (words alone miss "nursing" for "nurse")."""
        if q.answer_type == "free_text" and self.state["lang"] == "en" and self.scorer.encoder is None:
            return False
        return _value(self.app, q) not in (None, "", [])

    def _paper(self) -> list[str]:
        """The order of questions for this applicant and attempt: risk reasons first, rest shuffled."""
        rng = random.Random(self.state["seed"])
        qs = [
            q
            for q in self.bank.questions.values()
            if self._eligible(q) and not q.followup_only and not q.escalation_only
        ]
        warm = [q.id for q in qs if q.warmup]
        rng.shuffle(warm)
        risks = set(self.app.risk_reasons)
        risky = [q.id for q in qs if not q.warmup and set(q.risk) & risks]
        rest = [q.id for q in qs if not q.warmup and q.id not in risky]
        rng.shuffle(risky)
        rng.shuffle(rest)
        # Identity facts an impostor likely holds (high guess rate) carry little weight; keep them late.
        # A lead-in whose follow-up is hard to guess (employer -> office district) counts as that follow-up.
        rest.sort(
            key=lambda i: (
                min(
                    [self.bank.questions[i].guess_rate]
                    + [self.bank.questions[f].guess_rate for f in self.bank.questions[i].followups]
                )
                >= 0.5
            )
        )
        indep = [i for i in rest if self.bank.questions[i].independent]
        if self.app.risk_reasons and len(indep) >= LIMITS["min_independent"]:
            # A risky applicant meets the facts a form-holder cannot know before the ones he can.
            rest = [i for i in rest if i not in indep[:2]]
            return warm[:1] + indep[:1] + risky[:2] + indep[1:2] + rest
        order = warm[:1] + risky[:2] + rest[:1] + risky[2:] + rest[1:]
        return order

    def _independent_available(self) -> int:
        return sum(1 for q in self.bank.questions.values()
                   if q.independent and not q.escalation_only and self._eligible(q))

    # ------------------------------------------------------------------ asking

    @property
    def status(self) -> InterviewState:
        return InterviewState(self.state["status"])

    def _transition(self, to: InterviewState) -> None:
        if to not in _TRANSITIONS[self.status]:
            raise Conflict(
                f"interview is {self.status.value}; cannot become {to.value}", code="interview_state"
            )
        self.state["status"] = to.value

    def _rng(self) -> random.Random:
        return random.Random(self.state["seed"] + 7919 * (self.state["seq"] + 1))

    def render(self, q: Question, *, said: str | None = None, avoid: str | None = None) -> RenderedQuestion:
        lang = self.state["lang"]
        rng = self._rng()
        phrasings = [p for p in q.text[lang] if p != avoid] or q.text[lang]  # type: ignore[index]
        phrasings = [p for p in phrasings if "{said}" not in p or said]
        template = rng.choice(phrasings)
        self.state["current_template"], self.state["current_said"] = template, said
        choices = options = None
        if q.matcher.kind == "choice":
            options = self._options(q, rng)
            letters = "ABCDEFGH"
            labelled = [f"{letters[i]}) {o['label']}" for i, o in enumerate(options)]
            joined = "；".join(labelled) if lang == "zh" else ", ".join(labelled[:-1]) + " or " + labelled[-1]
            choices = [o["label"] for o in options]
        else:
            joined = ""
        city = str(self.app.get_path("home.city") or ("您所在的城市" if lang == "zh" else "your city"))
        txn = self.app.bank_relationship.recent_transaction if self.app.bank_relationship else None
        txn_date = txn_amount = ""
        if txn is not None:
            txn_date = (f"{txn.date.month}月{txn.date.day}日" if lang == "zh"
                        else f"{txn.date.day} {txn.date.strftime('%B')}")
            txn_amount = money(round(txn.amount / 10) * 10 if txn.amount >= 50 else txn.amount, lang)
            if lang == "en":
                txn_amount = f"£{txn_amount}"
        text = template.format(choices=joined, said=said or "", city=city, txn_date=txn_date,
                               txn_amount=txn_amount)
        self.state["seq"] += 1
        return RenderedQuestion(
            question_id=f"q{self.state['seq']}-{q.id}",
            bank_id=q.id,
            text=text,
            language="zh-CN" if lang == "zh" else "en",
            answer_type=q.answer_type,
            checks=list(q.checks),
            choices=choices,
            options=options,
            matcher=q.matcher.model_dump(),
        )

    def _options(self, q: Question, rng: random.Random) -> list[dict[str, Any]]:
        return choice_options(q, _value(self.app, q), self.bank, self.state["lang"], rng)

    def _ask_next(self, *, said_for: dict[str, str] | None = None) -> None:
        while self.state["queue"]:
            qid = self.state["queue"].pop(0)
            if qid in self.state["asked"]:
                continue
            q = self.bank.questions[qid]
            if not self._eligible(q):
                continue
            said = (said_for or {}).get(qid)
            if "{said}" in " ".join(q.text[self.state["lang"]]) and q.followup_only and not said:  # type: ignore[index]
                continue
            self.state["asked"].append(qid)
            self.state["current"] = self.render(q, said=said).to_dict()
            return
        self.state["current"] = None

    @property
    def current(self) -> RenderedQuestion | None:
        cur = self.state.get("current")
        return RenderedQuestion.from_dict(cur) if cur else None

    # ------------------------------------------------------------------ answering

    def answer(
        self,
        question_id: str,
        transcript: str,
        timing: dict[str, Any] | None = None,
        prosody: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Score one answer, update the evidence, and return ``{assessment, question | result}``."""
        cur = self._pending(question_id, transcript)
        q = self.bank.questions[cur.bank_id]
        truth = _value(self.app, q)
        judgement = self.scorer.judge(cur, transcript, truth)
        feats = features_of(timing, prosody)
        history = [a["features"] for a in self.state["answers"] if a.get("features")]
        hes = hesitation(feats, history)
        flags = list(judgement.flags) + list(hes["flags"])
        flags += self._guessing_flags(cur, transcript, judgement, hes)
        reask = (
            judgement.validity is Validity.QUESTION_BACK
            and self.state["reasks"].get(q.id, 0) < LIMITS["max_reasks"]
        )
        llr = _answer_llr(q, judgement.outcome, flags, reask=reask)
        self.state["llr"] += llr
        holder, look = self._holder_llr(q, judgement, feats, llr)
        if look["looked_up"]:
            flags.append("lookup_delay")
        self.state["llr_holder"] = self.state.get("llr_holder", 0.0) + holder
        record = {
            "question_id": cur.question_id,
            "bank_id": q.id,
            "topic": q.topic,
            "checks": q.checks,
            "owner_only": q.owner_only,
            "warmup": q.warmup,
            "outcome": judgement.outcome.value,
            "validity": judgement.validity.value,
            "flags": flags,
            "llr": round(llr, 3),
            "llr_holder": round(holder, 3),
            "source": q.source,
            "answer_type": q.answer_type,
            "lookup_excess_s": look["excess_s"],
            "features": feats,
            "reask": reask,
            "transcript": transcript,
        }
        self.state["answers"].append(record)
        dv = delivery(self.state["answers"])
        if dv["scripted"] and not self.state.get("scripted"):
            self.state["scripted"] = True
            self.state["llr_holder"] += _SCRIPTED_LLR
            record["llr_holder"] = round(record["llr_holder"] + _SCRIPTED_LLR, 3)
            flags.append("scripted_delivery")
        assessment = {
            "question_id": cur.question_id,
            **judgement.to_dict(),
            "flags": flags,
            "hesitation": {"score": hes["score"], "z": hes["z"]},
            "evidence_llr": round(llr, 3),
            "holder_evidence_llr": record["llr_holder"],
            "source": q.source,
            "delivery": {"lookup_excess_s": look["excess_s"], **dv},
            "running_risk": round(self.risk_score(), 3),
        }
        self._plan_after(q, cur, judgement, flags, transcript, reask)
        return {"assessment": assessment, **self.view()}

    def _pending(self, question_id: str, transcript: str) -> RenderedQuestion:
        """The pending question ``question_id`` answers; Conflict or InvalidInput when it does not."""
        if self.status is not InterviewState.ASKING:
            raise Conflict(
                f"interview is {self.status.value}; no more answers are taken", code="interview_finished"
            )
        cur = self.current
        if cur is None:
            raise Conflict("no question is pending", code="interview_state")
        if question_id != cur.question_id:
            raise InvalidInput(
                f"question_id {question_id!r} is not the pending question {cur.question_id!r}",
                code="wrong_question",
                field="question_id",
            )
        if not isinstance(transcript, str) or len(transcript) > 2000:
            raise InvalidInput("transcript must be a string of at most 2000 characters", field="transcript")
        return cur

    def _holder_llr(
        self, q: Question, j: Judgement, feats: dict[str, float], fact_llr: float
    ) -> tuple[float, dict[str, Any]]:
        """Evidence of this answer for the owner against someone who holds the filled-in form: the fact
        itself only when the form does not hold it; for form numbers, how late the answer came."""
        history = [a for a in self.state["answers"] if not a.get("reask")]
        look = lookup_delay(q.answer_type, feats.get("delay_s"), history)
        out = fact_llr if q.independent else 0.0
        if q.source == "form" and look["excess_s"] is not None and j.validity is Validity.ANSWER:
            kind = "identity" if q.checks[0] in _IDENTITY_NUMBERS else "other"
            if look["looked_up"]:
                out += _LOOKUP_LLR[kind]
            elif look["excess_s"] < 1.0 and kind == "identity":
                out += _RECALL_LLR
        return out, look

    def _guessing_flags(
        self, cur: RenderedQuestion, transcript: str, j: Judgement, hes: dict[str, Any]
    ) -> list[str]:
        out: list[str] = []
        ans = [t for t in nz.tokens(transcript) if len(t) > 1 or nz.has_cjk(t)]
        qtok = set(nz.tokens(cur.text))
        if (
            len(ans) >= 2
            and j.outcome is not Outcome.CORRECT
            and sum(t in qtok for t in ans) / len(ans) >= 0.7
        ):
            out.append("echo")
        if j.validity is Validity.OFF_TOPIC and "very_fast" in hes["flags"]:
            out.append("fast_generic")
        if cur.answer_type != "yes_no" and nz.yes_no(transcript) is True and j.outcome is not Outcome.CORRECT:
            earlier = sum(1 for a in self.state["answers"] if "said_yes" in a["flags"])
            out.append("said_yes")
            if earlier >= 1:
                out.append("repeated_yes")
        return out

    def _plan_after(
        self, q: Question, cur: RenderedQuestion, j: Judgement, flags: list[str], transcript: str, reask: bool
    ) -> None:
        if reask:
            self.state["reasks"][q.id] = self.state["reasks"].get(q.id, 0) + 1
            self.state["current"] = self.render(
                q, said=self.state.get("current_said"), avoid=self.state.get("current_template")
            ).to_dict()
            self._maybe_finish(force=False)
            return
        said_for: dict[str, str] = {}
        bad = (
            j.outcome in (Outcome.WRONG, Outcome.NO_ANSWER)
            or "hesitant" in flags
            or (j.outcome is Outcome.PARTLY and not q.warmup)
        )
        if j.outcome in (Outcome.CORRECT, Outcome.PARTLY):
            heard = str(j.evidence.get("heard") or nz.clean(transcript))
            for f in q.followups:
                said_for[f] = heard[:40]
            self.state["queue"][:0] = list(q.followups)
        if bad:
            escalate = [
                x.id
                for x in self.bank.questions.values()
                if x.owner_only
                and x.id not in self.state["asked"]
                and self._eligible(x)
                and not x.followup_only
                and not x.escalation_only
            ]
            rng = self._rng()
            rng.shuffle(escalate)
            escalate.sort(key=lambda i: -self.bank.questions[i].difficulty)
            extra = escalate[:1]
            if j.outcome is Outcome.NO_ANSWER:
                extra += [
                    x.id
                    for x in self.bank.questions.values()
                    if x.escalation_only and x.checks == q.checks and x.id not in self.state["asked"]
                ]
            self.state["queue"][:0] = extra
        rehearsed = "lookup_delay" in flags or "scripted_delivery" in flags
        holder_short = (self.state["llr"] >= LIMITS["pass_llr"] and self._holder_required()
                        and self.state.get("llr_holder", 0.0) < LIMITS["holder_pass_llr"])
        if rehearsed or holder_short:
            # Form answers that look rehearsed, or form facts alone that would pass: ask what only the
            # owner can know.
            indep = [x.id for x in self.bank.questions.values()
                     if x.independent and not x.escalation_only and not x.followup_only
                     and x.id not in self.state["asked"] and self._eligible(x)]
            indep.sort(key=lambda i: self.bank.questions[i].guess_rate)
            if indep:
                self.state["queue"][:0] = indep[:1]
        if self._maybe_finish(force=False):
            return
        self._ask_next(said_for=said_for)
        if self.state["current"] is None:
            self._maybe_finish(force=True)

    def _facts(self) -> int:
        return sum(1 for a in self.state["answers"] if not a["warmup"] and not a["reask"])

    def _holder_required(self) -> bool:
        return self._independent_available() >= LIMITS["min_independent"]

    def _evidence(self) -> float:
        """The evidence the verdict rests on: against the identity thief and, when the application
        holds facts the form does not, against the form-holder too (the weaker of the two)."""
        llr = self.state["llr"]
        if self._holder_required():
            hold = self.state.get("llr_holder", 0.0)
            # The form-holder bound is lower than the thief's; scale so both meet at the pass bound.
            llr = min(llr, hold * LIMITS["pass_llr"] / LIMITS["holder_pass_llr"] if hold > 0 else hold)
        return llr

    def _maybe_finish(self, *, force: bool) -> bool:
        llr = self._evidence()
        asked = len(self.state["answers"])
        facts = sum(1 for a in self.state["answers"] if not a["reask"])
        verdict: Verdict | None = None
        if llr <= LIMITS["fail_llr"] and (
            self._facts() >= LIMITS["min_facts_fail"] or llr <= 2 * LIMITS["fail_llr"]
        ):
            verdict = Verdict.FAIL
        elif llr >= LIMITS["pass_llr"] and self._facts() >= LIMITS["min_facts"]:
            verdict = Verdict.PASS
        elif force or facts >= LIMITS["max_questions"] or asked >= LIMITS["max_asks"]:
            if llr >= LIMITS["pass_llr"]:
                verdict = Verdict.PASS
            elif llr <= LIMITS["end_fail_llr"]:
                verdict = Verdict.FAIL
            else:
                verdict = Verdict.INCONCLUSIVE
        if verdict is None:
            return False
        self._transition(InterviewState.FINISHED)
        self.state["current"] = None
        self.state["result"] = {
            "verdict": verdict.value,
            "risk_score": round(self.risk_score(), 4),
            "reasons": self.reasons(verdict),
            "questions_asked": asked,
            "evidence_llr": round(llr, 3),
            "evidence_by_threat": {"identity_thief": round(self.state["llr"], 3),
                                   "form_holder": round(self.state.get("llr_holder", 0.0), 3)},
        }
        return True

    def abort(self, reason: str) -> None:
        self._transition(InterviewState.ABORTED)
        self.state["current"] = None
        self.state["result"] = {
            "verdict": Verdict.INCONCLUSIVE.value,
            "risk_score": round(self.risk_score(), 4),
            "reasons": ["aborted", *self.reasons(Verdict.INCONCLUSIVE)],
            "questions_asked": len(self.state["answers"]),
            "abort_reason": reason,
            "evidence_llr": round(self.state["llr"], 3),
        }

    def risk_score(self) -> float:
        """0 (surely the owner) .. 1 (surely not): a logistic of the accumulated evidence."""
        return 1.0 / (1.0 + math.exp(max(-50.0, min(50.0, self._evidence() / 1.5))))

    def reasons(self, verdict: Verdict) -> list[str]:
        out: list[str] = []
        for a in self.state["answers"]:
            if a["reask"]:
                continue
            tag = a["bank_id"]
            if a["outcome"] == Outcome.WRONG.value:
                out.append(f"wrong_answer:{tag}")
            elif a["outcome"] == Outcome.NO_ANSWER.value:
                out.append(f"{a['validity']}:{tag}")
            elif a["outcome"] == Outcome.PARTLY.value:
                out.append(f"partly_correct:{tag}")
            for f in a["flags"]:
                if f in ("echo", "fast_generic", "repeated_yes"):
                    out.append(f"guessing_{f}")
                elif f in ("decoy_chosen", "hesitant", "tone_shift", "lookup_delay"):
                    out.append(f"{f}:{tag}")
                elif f == "scripted_delivery":
                    out.append(f)
        if verdict is Verdict.INCONCLUSIVE:
            out.append("insufficient_evidence")
            if self._holder_required() and self.state["llr"] >= LIMITS["pass_llr"]:
                out.append("independent_facts_unconfirmed")
        if verdict is Verdict.PASS and not out:
            out.append("all_facts_confirmed")
        return list(dict.fromkeys(out))

    def view(self) -> dict[str, Any]:
        cur = self.current
        if self.status is InterviewState.ASKING and cur is not None:
            return {"state": self.status.value, "question": cur.public()}
        return {"state": self.status.value, "result": self.state["result"]}
