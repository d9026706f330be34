"""Simulated applicants and a population generator: the evidence that the questionnaire separates owners
from impostors.

Three kinds of caller answer the real engine through the same fields the API takes:

* ``GenuineApplicant``: answers from their own application, in the many ways people say things
  ("一万五", "fifteen grand", "my wife", "the second one"), with natural slips (a date off by days, an
  income rounded too far, "I don't remember" the contact's number) and requests to repeat.
* ``PartialIdentityFraudster``: holds the stolen name, ID, birth date and mobile, maybe the employer and
  city, and guesses everything else plausibly from what applicants usually say; some are nervous.
* ``Guesser``: brute force: quick generic answers, "yes", echoing the question, popular values.

Applications come from :func:`make_application` with a seed; tune on seeds 0-999 and report on an unseen
range (the benchmark uses 10_000+).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar

from callvet.core.application import Application
from callvet.questionnaire.bank import Bank, load_bank
from callvet.questionnaire.interview import InterviewEngine
from callvet.questionnaire.normalize import org_core
from callvet.sim.population import (
    _JOB_PARAPHRASE_EN,
    _ZH_GIVEN,
    _ZH_SURNAMES,
    _say_date,
    _say_digits,
    make_application,
    say_number,
)

__all__ = [
    "Caller",
    "EngineDriver",
    "FormHolder",
    "GenuineApplicant",
    "Guesser",
    "InformedFraudster",
    "NoisyGenuineApplicant",
    "PartialIdentityFraudster",
    "make_application",
    "run_interview",
    "say_number",
]


# ---------------------------------------------------------------- callers


@dataclass
class Caller:
    """Base caller: a voice (baseline timing and prosody) and a way to answer public questions."""

    app: Application
    rng: random.Random
    bank: Bank = field(default_factory=load_bank)
    known: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        r = self.rng
        self.lang = self.app.lang
        self.base_delay = r.uniform(0.6, 1.6)
        self.base_rate = r.uniform(2.8, 4.5)
        self.base_pitch = r.uniform(100, 240)
        self.base_energy = r.uniform(0.05, 0.2)

    def speak(self, text: str, *, hesitate: float = 0.0, fast: bool = False, delay: float | None = None,
              read: bool = False) -> dict[str, Any]:
        """``delay`` overrides the caller's own pace (a number looked up); ``read`` is prepared reading:
        an even pause and rate, no pauses inside."""
        r = self.rng
        if delay is None:
            delay = (
                r.uniform(0.05, 0.3)
                if fast
                else max(0.15, r.gauss(self.base_delay, 0.25) + hesitate * r.uniform(1.0, 3.0))
            )
        pauses = [] if read else [round(r.uniform(0.2, 0.6), 2) for _ in range(r.choice([0, 0, 1]))]
        if hesitate > 0:
            pauses += [round(r.uniform(0.4, 1.5), 2) for _ in range(int(hesitate * r.choice([1, 2, 3])))]
        syllables = max(1, len(re.findall(r"[\u4e00-\u9fff]|[aeiouy]+", text.lower())))
        rate = max(1.0, r.gauss(self.base_rate - 0.6 * hesitate, 0.06 if read else 0.3))
        return {
            "transcript": text,
            "timing": {
                "delay_s": round(delay, 3),
                "duration_s": round(syllables / rate + sum(pauses), 3),
                "pauses": pauses,
                "speech_rate": round(rate, 3),
            },
            "prosody": {
                "pitch_mean": round(r.gauss(self.base_pitch * (1 + 0.04 * hesitate), 6), 2),
                "pitch_std": round(abs(r.gauss(20, 4)), 2),
                "energy_mean": round(abs(r.gauss(self.base_energy, 0.02)), 4),
                "energy_std": round(abs(r.gauss(0.03, 0.01)), 4),
            },
        }

    def respond(self, q: dict[str, Any]) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    # Helpers to say the truth about a field in a natural way.

    def _true_answer(self, q: dict[str, Any], value: object) -> str:
        r, lang = self.rng, self.lang
        path = q["checks"][0]
        kind = q["answer_type"]
        zh = lang == "zh"
        if kind == "name":
            return (
                r.choice([str(value), ("我叫" if zh else "My name is ") + str(value)])
                if path == "applicant.name"
                else str(value)
            )
        if kind == "date":
            d = value.date() if isinstance(value, datetime) else value
            return _say_date(d, lang, r, with_year=path != "applied_at")  # type: ignore[arg-type]
        if kind == "digits":
            return _say_digits(re.sub(r"\D", "", str(value))[-4:], lang, r)
        if kind == "amount":
            v = float(value)  # type: ignore[arg-type]
            if path == "bank_relationship.last_repayment_amount":
                # Nobody remembers 2 860.50: people round.
                step = r.choice([100, 100, 500, 1000]) if v >= 1000 else 50
                v = max(step, round(v / step) * step)
                said = say_number(v, lang, r)
                return ("大概" + said) if zh else ("about " + said)
            said = say_number(v, lang, r)
            if path.endswith(("income", "obligations")) and r.random() < 0.4:
                return ("大概" + said + "左右") if zh else ("about " + said)
            unit = {
                "employment.years_employed": ("年", " years"),
                "credit_profile.existing_cards": ("张", " cards"),
            }
            if path in unit and r.random() < 0.6:
                return said + (unit[path][0] if zh else unit[path][1])
            return said
        if kind == "place":
            v = str(value)
            if zh:
                return r.choice([v, v.rstrip("区"), "在" + v])
            return (
                r.choice([v, f"I live in {v}", f"{v}, in {self.app.get_path('home.city')}"])
                if path.startswith("home")
                else r.choice([v, f"It's in {v}"])
            )
        if kind == "organisation":
            core = org_core(v := str(value))
            if zh:
                return r.choice(
                    [v, core, "在" + core + "上班", str(self.app.get_path("employment.work_city")) + v]
                )
            return r.choice([v, core, f"I work for {core}", f"{v}, I've been there a while"])
        if kind == "free_text":
            v = str(value)
            if zh:
                return r.choice([v, f"我是{v}", f"做{v}的", f"我在单位当{v}"])
            return r.choice([v, f"I'm a {v}", *_JOB_PARAPHRASE_EN.get(v, [v])])
        if kind == "yes_no" and path != "risk_reasons":
            num = float(value or 0)  # type: ignore[arg-type]
            yes = bool(value) if path.startswith("bank_relationship") else num > 0
            if zh:
                return r.choice(["是的", "对，是的", "有过一次"] if yes else ["不是", "没有", "没有过"])
            return r.choice(
                ["Yes", "Yes, it is", "Yes, once"] if yes else ["No", "No, it isn't", "No, never"]
            )
        if kind == "yes_no":
            return r.choice(
                ["是的，是我自己申请的", "对，是我"] if zh else ["Yes, that was me", "Yes, I applied myself"]
            )
        if kind == "choice":
            return self._choose_truth(q, value)
        return str(value)

    def _choose_truth(self, q: dict[str, Any], value: object) -> str:
        r, lang = self.rng, self.lang
        choices: list[str] = q.get("choices") or []
        path = q["checks"][0]
        if path in ("employment.monthly_income", "credit_profile.monthly_obligations"):
            # Income: half say the figure itself; repayments: asked as bands because the figure was
            # not remembered, so a band is picked.
            if path == "employment.monthly_income" and r.random() < 0.5:
                return say_number(float(value), lang, r)  # type: ignore[arg-type]
            idx = next((i for i, c in enumerate(choices) if _in_band(c, float(value))), 0)  # type: ignore[arg-type]
        else:
            labels = {str(value)}
            for enum in self.bank.enums.values():
                if str(value) in enum:
                    labels |= set(enum[str(value)].get(lang, []))
            idx = next((i for i, c in enumerate(choices) if c in labels), None)
            if idx is None:
                return str(value)
            if r.random() < 0.3 and path != "card_product":
                return r.choice(sorted(labels - {str(value)}) or [choices[idx]])
        how = r.random()
        if how < 0.5:
            return choices[idx]
        if how < 0.75:
            return "ABCD"[idx] if lang == "en" else f"第{'一二三四'[idx]}个"
        return (
            f"the {['first', 'second', 'third', 'fourth'][idx]} one" if lang == "en" else f"是{choices[idx]}"
        )


def _in_band(label: str, v: float) -> bool:
    nums = [float(x) for x in re.findall(r"\d+", label.replace(",", ""))]
    return len(nums) == 2 and nums[0] <= v < nums[1]


class GenuineApplicant(Caller):
    """The real owner: knows every fact, slips sometimes, now and then asks to repeat."""

    SLIP: ClassVar[dict[str, float]] = {
        "applied_at": 0.1,
        "emergency_contact.mobile": 0.1,
        "credit_profile.monthly_obligations": 0.12,
        "employment.years_employed": 0.06,
        "employment.monthly_income": 0.04,
        "requested_limit": 0.06,
        "credit_profile.inquiries_6m": 0.15,
        "bank_relationship.cards_held": 0.05,
        "bank_relationship.salary_account": 0.03,
        "bank_relationship.last_repayment_amount": 0.2,
        "bank_relationship.recent_transaction.merchant": 0.25,
        "credit_profile.delinquencies_24m": 0.05,
    }

    def respond(self, q: dict[str, Any]) -> dict[str, Any]:
        r, lang = self.rng, self.lang
        path = q["checks"][0]
        if r.random() < 0.03:
            return self.speak("sorry, could you repeat that?" if lang == "en" else "不好意思，你说什么？")
        value = True if path == "risk_reasons" else self.app.get_path(path)
        if r.random() < self.SLIP.get(path, 0.02):
            return self.speak(self._slip(q, value), hesitate=r.choice([0.0, 0.5, 1.0]))
        text = self._true_answer(q, value)
        if r.random() < 0.1:
            text = ("嗯，" if lang == "zh" else "um, ") + text
        owner_hard = path.startswith(("emergency_contact", "credit_profile", "bank_relationship")) or (
            path in ("applied_at", "requested_limit"))
        money = path.endswith(("monthly_income", "last_repayment_amount", "monthly_obligations"))
        if money and r.random() < 0.35:
            return self.speak(text, hesitate=r.uniform(0.3, 1.0))  # people pause on money
        if path.startswith("applicant.") and r.random() < 0.7:
            return self.speak(text, delay=max(0.15, r.gauss(self.base_delay * 0.8, 0.2)))
        return self.speak(text, hesitate=0.3 if owner_hard and r.random() < 0.3 else 0.0)

    def _slip(self, q: dict[str, Any], value: object) -> str:
        r, lang = self.rng, self.lang
        kind = q["answer_type"]
        if kind == "amount" and isinstance(value, float | int) and value and r.random() < 0.6:
            return say_number(float(value) * r.choice([0.7, 1.3, 0.8, 1.25]), lang, r)
        if kind == "amount" and isinstance(value, int) and not isinstance(value, bool):
            return say_number(max(0, value + r.choice([-1, 1])), lang, r)
        if kind == "yes_no" and isinstance(value, bool):
            return ("不是" if value else "是的") if lang == "zh" else ("No" if value else "Yes")
        if kind == "date" and isinstance(value, datetime):
            return _say_date(
                value.date() + timedelta(days=r.choice([-3, -2, 2, 3])), lang, r, with_year=False
            )
        return "我记不清了" if lang == "zh" else "I'm sorry, I don't remember"


_COMMON_ZH = (
    _ZH_SURNAMES + _ZH_GIVEN + "国果郭锅过建见件健剑英鹰应营华化话花明名鸣铭伟为位维文闻问稳"
    "海害亥区曲去趣阳洋杨养东冬动懂西希喜习南男难楠京经晶精州周洲舟"
)


def _homophones() -> dict[str, list[str]]:
    from pypinyin import lazy_pinyin

    groups: dict[str, list[str]] = {}
    for ch in dict.fromkeys(_COMMON_ZH):
        groups.setdefault(lazy_pinyin(ch)[0], []).append(ch)
    return {ch: [o for o in g if o != ch] for g in groups.values() for ch in g if len(g) > 1}


class NoisyGenuineApplicant(GenuineApplicant):
    """Beyond the brief: the genuine owner heard through an imperfect recogniser: a Chinese character
    replaced by a homophone, English lower-cased without punctuation and now and then a word lost."""

    _HOMO: ClassVar[dict[str, list[str]]] = {}

    def respond(self, q: dict[str, Any]) -> dict[str, Any]:
        out = super().respond(q)
        r, text = self.rng, out["transcript"]
        if not NoisyGenuineApplicant._HOMO:
            NoisyGenuineApplicant._HOMO = _homophones()
        if r.random() < 0.3:
            if self.lang == "zh":
                spots = [i for i, ch in enumerate(text) if ch in self._HOMO]
                if spots:
                    i = r.choice(spots)
                    text = text[:i] + r.choice(self._HOMO[text[i]]) + text[i + 1 :]
            else:
                words = re.sub(r"[^\w\s']", " ", text).lower().split()
                keep = [w for w in words if not w.isdigit()]
                if len(words) > 2 and keep and r.random() < 0.5:
                    words.remove(r.choice(keep))
                text = " ".join(words)
        return {**out, "transcript": text}


class PartialIdentityFraudster(Caller):
    """Holds name, ID, birth date and mobile; maybe employer and city; guesses the rest plausibly."""

    def __post_init__(self) -> None:
        super().__post_init__()
        r = self.rng
        self.known = {"applicant.name", "applicant.id_number", "applicant.birth_date", "applicant.mobile"}
        if r.random() < 0.5:
            self.known.add("employment.employer")
        if r.random() < 0.5:
            self.known |= {"home.city", "employment.work_city"}
        if r.random() < 0.15:
            self.known.add("home.district")
        self.nervous = r.random() < 0.5
        self.decoy = make_application(r.randrange(10**9), self.bank)

    def respond(self, q: dict[str, Any]) -> dict[str, Any]:
        r = self.rng
        path = q["checks"][0]
        if path in self.known or path == "risk_reasons":
            value = True if path == "risk_reasons" else self.app.get_path(path)
            return self.speak(self._true_answer(q, value))
        hes = r.uniform(0.5, 1.5) if self.nervous else 0.0
        if r.random() < 0.12:
            return self.speak(
                "我不太记得了" if self.lang == "zh" else "I can't remember exactly", hesitate=hes
            )
        if q["answer_type"] == "choice":
            choices = q.get("choices") or ["A"]
            return self.speak(r.choice(choices), hesitate=hes)
        guess = self._guess(path)
        return self.speak(self._true_answer(q, guess), hesitate=hes)

    def _guess(self, path: str) -> object:
        """A plausible value: what an applicant of this kind typically has, consistent with known facts."""
        if path == "home.district":
            city = str(self.app.get_path("home.city")) if "home.city" in self.known else None
            pool = self.bank.pools["district"].get(city or "", None)
            return self.rng.choice(pool) if pool else self.decoy.get_path(path)
        if path == "employment.work_district":
            city = (
                str(self.app.get_path("employment.work_city"))
                if "employment.work_city" in self.known
                else None
            )
            pool = self.bank.pools["district"].get(city or "", None)
            return self.rng.choice(pool) if pool else self.decoy.get_path(path)
        got = self.decoy.get_path(path)
        return got if got is not None else _plausible(path, self.lang, self.rng, self.bank)


def _plausible(path: str, lang: str, rng: random.Random, bank: Bank) -> object:
    """What a caller without the fact would say when even a look-alike application does not hold it."""
    if path.endswith("cards_held"):
        return rng.choice([0, 1, 1, 2])
    if path.endswith("salary_account"):
        return rng.random() < 0.5
    if path.endswith("merchant"):
        return rng.choice(bank.pools["merchant"][lang])
    if path.endswith("delinquencies_24m"):
        return 0 if rng.random() < 0.8 else 1
    return 3000.0 if lang == "zh" else 300.0


class InformedFraudster(PartialIdentityFraudster):
    """Beyond the brief's threat: also knows what social media and a stolen payslip tell (employer, job,
    home and office districts); still guesses the emergency contact, money and application details."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.known |= {
            "employment.employer",
            "employment.job_title",
            "employment.work_city",
            "employment.work_district",
            "home.city",
            "home.district",
        }


class FormHolder(Caller):
    """The person who typed the application (or reads it off a fraud ring's sheet): every form field is
    known, but nothing the bureau or the bank knows. Looks up every number on the sheet (several seconds
    before each) and is quick on names; two in five instead read every answer at one prepared, even pace.
    Bureau and bank facts are guessed plausibly (from a look-alike application)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        r = self.rng
        self.reader = r.random() < 0.4
        self.read_delay = r.uniform(1.2, 2.6)
        self.decoy = make_application(r.randrange(10**9), self.bank)

    def _delivery(self, kind: str, independent: bool) -> dict[str, Any]:
        r = self.rng
        if self.reader:
            return {"delay": max(0.2, r.gauss(self.read_delay, 0.06)), "read": True}
        if kind in ("date", "digits", "amount") and not independent:
            return {"delay": r.uniform(3.0, 8.0)}
        if independent:
            return {"hesitate": r.uniform(0.0, 0.8)}
        return {"delay": r.uniform(0.3, 0.9)}

    def respond(self, q: dict[str, Any]) -> dict[str, Any]:
        r = self.rng
        path = q["checks"][0]
        independent = path.startswith(("credit_profile", "bank_relationship"))
        how = self._delivery(q["answer_type"], independent)
        if not independent:
            value = True if path == "risk_reasons" else self.app.get_path(path)
            return self.speak(self._true_answer(q, value), **how)
        if r.random() < 0.1:
            return self.speak("我不太记得了" if self.lang == "zh" else "I can't remember exactly", **how)
        if q["answer_type"] == "choice":
            return self.speak(r.choice(q.get("choices") or ["A"]), **how)
        guess = self.decoy.get_path(path)
        if guess is None:
            guess = _plausible(path, self.lang, r, self.bank)
        return self.speak(self._true_answer(q, guess), **how)


class Guesser(Caller):
    """Brute force: fast generic answers, "yes", echoes of the question, popular values."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.rng.random() < 0.5:
            self.known = {"applicant.name"}

    def respond(self, q: dict[str, Any]) -> dict[str, Any]:
        r, zh = self.rng, self.lang == "zh"
        path = q["checks"][0]
        if path in self.known:
            return self.speak(str(self.app.get_path(path)), fast=True)
        style = r.random()
        if style < 0.3:
            return self.speak(
                r.choice(["是的", "对", "嗯对"] if zh else ["yes", "yes that's right", "correct"]), fast=True
            )
        if style < 0.5:
            words = re.sub(r"[?？。，,]", " ", q["text"]).split()
            echo = q["text"][-8:-1] if zh else " ".join(words[-4:])
            return self.speak(echo, fast=True)
        if q["answer_type"] == "choice" and q.get("choices"):
            return self.speak(
                r.choice(["A", "the first one", q["choices"][0]] if not zh else ["第一个", "A"]), fast=True
            )
        popular: dict[str, list[str]] = {
            "date": ["一九九零年一月一日", "上个月"] if zh else ["the first of January 1990", "last week"],
            "amount": ["一万", "五千", "两万"]
            if zh
            else ["ten thousand", "five thousand", "about two grand"],
            "name": ["张伟", "王芳"] if zh else ["John Smith", "Sarah Jones"],
            "place": ["北京", "朝阳区", "市中心"] if zh else ["London", "the city centre", "Manchester"],
            "organisation": ["一家科技公司", "国企"] if zh else ["a tech company", "the council"],
            "digits": ["1234", "8888", "6666"] if zh else ["1234", "one two three four", "0000"],
            "free_text": ["上班", "普通职员"] if zh else ["office work", "normal job"],
            "yes_no": ["是的"] if zh else ["yes"],
        }
        return self.speak(r.choice(popular.get(q["answer_type"], ["yes"])), fast=r.random() < 0.7)


def run_interview(service: Any, caller: Caller, *, actor: str = "simulator") -> dict[str, Any]:
    """Drive one interview through ``service`` (an InterviewService or the engine adapter) to its end."""
    out = service.create(caller.app, actor=actor)
    iid = out["interview_id"]
    for _ in range(40):
        if out.get("state") != "asking":
            break
        q = out["question"]
        reply = caller.respond(q)
        out = service.answer(
            iid,
            q["question_id"],
            reply["transcript"],
            timing=reply["timing"],
            prosody=reply["prosody"],
            actor=actor,
        )
    return out


class EngineDriver:
    """The engine without storage, for fast population runs; same ``create``/``answer`` as the service."""

    def __init__(self, scorer: Any, bank: Bank | None = None) -> None:
        self._engine_cls = InterviewEngine
        self.bank = bank or load_bank()
        self.scorer = scorer
        self._live: dict[str, Any] = {}
        self._attempts: dict[str, int] = {}

    def create(self, app: Application, *, actor: str = "") -> dict[str, Any]:
        attempt = self._attempts.get(app.application_id, 0) + 1
        self._attempts[app.application_id] = attempt
        eng = self._engine_cls.new(self.bank, self.scorer, app, attempt=attempt)
        iid = f"{app.application_id}#{attempt}"
        self._live[iid] = eng
        return {"interview_id": iid, **eng.view()}

    def answer(
        self,
        iid: str,
        question_id: str,
        transcript: str,
        *,
        timing: Any = None,
        prosody: Any = None,
        actor: str = "",
    ) -> dict[str, Any]:
        eng = self._live[iid]
        out = eng.answer(question_id, transcript, timing, prosody)
        if out.get("state") != "asking":
            del self._live[iid]
        return out
