"""Judging one answer against the application: correctness with evidence, and whether it is an answer.

Typed matchers compare normalised values (numbers, dates, digits, names by pinyin, places and
organisations without suffixes). Free text goes to the sentence encoder: for English it decides; for
Chinese, character and pinyin overlap decides first because MiniLM is English-centric, and the encoder
only settles the unclear middle.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import Any, Protocol

from callvet.questionnaire import normalize as nz

__all__ = ["AnswerOutcome", "Judgement", "Outcome", "RenderedQuestion", "Scorer", "Validity"]


class AnswerOutcome(StrEnum):
    CORRECT = "correct"
    PARTLY = "partly"
    WRONG = "wrong"
    NO_ANSWER = "no_answer"


#: The older name (kept for callers); ``decision.Outcome`` is the decision's, unrelated.
Outcome = AnswerOutcome


class Validity(StrEnum):
    ANSWER = "answer"
    EMPTY = "empty"
    DONT_KNOW = "dont_know"
    REFUSAL = "refusal"
    QUESTION_BACK = "question_back"
    OFF_TOPIC = "off_topic"


class Encoder(Protocol):
    def similarity(self, a: str, b: str) -> float: ...


@dataclass
class RenderedQuestion:
    """A question as asked: public fields go to the caller; ``options`` hold the hidden values."""

    question_id: str
    bank_id: str
    text: str
    language: str
    answer_type: str
    checks: list[str]
    choices: list[str] | None = None
    options: list[dict[str, Any]] | None = None
    matcher: dict[str, Any] = field(default_factory=dict)

    def public(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "question_id": self.question_id,
            "text": self.text,
            "language": self.language,
            "answer_type": self.answer_type,
            "checks": list(self.checks),
        }
        if self.choices is not None:
            out["choices"] = list(self.choices)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {**self.public(), "bank_id": self.bank_id, "options": self.options, "matcher": self.matcher}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RenderedQuestion:
        return cls(
            question_id=d["question_id"],
            bank_id=d["bank_id"],
            text=d["text"],
            language=d["language"],
            answer_type=d["answer_type"],
            checks=list(d["checks"]),
            choices=d.get("choices"),
            options=d.get("options"),
            matcher=d.get("matcher") or {},
        )


@dataclass
class Judgement:
    outcome: Outcome
    validity: Validity
    evidence: dict[str, Any]
    flags: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome.value,
            "validity": self.validity.value,
            "evidence": self.evidence,
            "flags": list(self.flags),
        }


_DONT_KNOW = re.compile(
    r"(i don't know|i do not know|dont know|not sure|can't remember|cannot remember|don't remember|"
    r"no idea|forgot|forget|不知道|不清楚|记不得|记不清|忘了|不记得|想不起)"
)
_REFUSAL = re.compile(
    r"(rather not|won't tell|not telling|none of your business|not comfortable|prefer not|"
    r"不方便|不想说|不告诉|无可奉告|不愿意)"
)
_QUESTION_BACK = re.compile(
    r"^(what|why|who|which|how|sorry|pardon|can you repeat|could you repeat|say again)\b|"
    r"(为什么|什么意思|你说什么|再说一遍|请重复|你是谁|干什么用|干嘛)"
)
_GENERIC = {
    "yes",
    "yeah",
    "yep",
    "ok",
    "okay",
    "sure",
    "right",
    "that's right",
    "correct",
    "yes that's right",
    "the usual",
    "the same",
    "i think so",
    "normal",
    "fine",
    "是",
    "是的",
    "对",
    "对的",
    "嗯",
    "好的",
    "没错",
    "对对",
    "一般",
    "正常",
    "就那样",
}
_FILLERS = re.compile(r"\b(um+|uh+|er+|erm|hmm+|let me think|well)\b|嗯+|呃+|那个|让我想想|这个嘛")
_PLACE_LEAD = re.compile(
    r"^(i live in|i live at|i'm in|it's in|it is in|we live in|in|at|the|我住在|住在|我家在|在|就在|是)\s*"
)
_NAME_PREFIX = re.compile(
    r"^(my name is|my name's|i am|i'm|it's|it is|this is|我叫|我是|我的名字是|名字是|叫)\s*"
)


def _strip_fillers(text: str) -> str:
    return re.sub(r"\s+", " ", _FILLERS.sub(" ", nz.clean(text))).strip()


def _zh_chars(text: str) -> str:
    return "".join(ch for ch in text if nz.has_cjk(ch))


def _lcs(a: str, b: str) -> int:
    if not a or not b:
        return 0
    prev = [0] * (len(b) + 1)
    for ca in a:
        cur = [0]
        for j, cb in enumerate(b):
            cur.append(prev[j] + 1 if ca == cb else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def _overlap(truth: str, answer: str) -> float:
    """Share of the truth's characters found in order in the answer (script-aware)."""
    if nz.has_cjk(truth):
        t, a = _zh_chars(truth), _zh_chars(answer)
        if not a:
            pt, pa = nz.pinyin(truth), nz.clean(answer).replace(" ", "")
            return _lcs(pt, pa) / max(len(pt), 1) if pt in pa else 0.0
        return _lcs(t, a) / max(len(t), 1)
    tt = [nz.stem(w) for w in nz.clean(truth).split() if len(w) > 1]
    aa = {nz.stem(w) for w in nz.clean(answer).split()}
    return sum(w in aa for w in tt) / max(len(tt), 1)


def _truth_date(v: object) -> date | None:
    if isinstance(v, datetime):
        return v.date()
    if isinstance(v, date):
        return v
    return None


class Scorer:
    """Stateless per-answer judge; ``encoder`` is optional (lexical fallback when None)."""

    def __init__(self, encoder: Encoder | None = None) -> None:
        self.encoder = encoder

    def validity(self, q: RenderedQuestion, transcript: str) -> Validity:
        t = _strip_fillers(transcript)
        if not t:
            return Validity.EMPTY
        if _REFUSAL.search(t):
            return Validity.REFUSAL
        if _DONT_KNOW.search(t):
            return Validity.DONT_KNOW
        raw = nz.clean(transcript)
        if _QUESTION_BACK.search(t) or (transcript.strip().endswith(("?", "？")) and len(raw) < 40):
            return Validity.QUESTION_BACK
        if q.answer_type != "yes_no" and t in _GENERIC:
            return Validity.OFF_TOPIC
        return Validity.ANSWER

    def judge(self, q: RenderedQuestion, transcript: str, truth: object) -> Judgement:
        validity = self.validity(q, transcript)
        flags: list[str] = []
        if _FILLERS.search(nz.clean(transcript)):
            flags.append("filler_words")
        if validity is not Validity.ANSWER:
            return Judgement(Outcome.NO_ANSWER, validity, {"reason": validity.value}, flags)
        text = _strip_fillers(transcript)
        kind = q.matcher.get("kind", "")
        params: dict[str, Any] = q.matcher.get("params", {}) or {}
        fn = getattr(self, f"_m_{kind}")
        outcome, evidence = fn(q, text, truth, params)
        if outcome is None:
            return Judgement(Outcome.NO_ANSWER, Validity.OFF_TOPIC, evidence, flags)
        if kind == "choice" and outcome is Outcome.WRONG and evidence.get("chosen") is not None:
            flags.append("decoy_chosen")
        return Judgement(outcome, Validity.ANSWER, {"matcher": kind, **evidence}, flags)

    # Each matcher returns (outcome or None when the answer holds no value of the type, evidence).

    def _m_name(self, q: RenderedQuestion, text: str, truth: object, p: dict[str, Any]):
        said = _NAME_PREFIX.sub("", text).strip()
        full, fam, given = nz.name_keys(str(truth))
        if nz.has_cjk(str(truth)):
            tz = _zh_chars(nz.clean(str(truth)))
            if tz and tz in said.replace(" ", ""):
                return Outcome.CORRECT, {"heard": said, "method": "characters"}
            heard_py = nz.pinyin(said).replace(" ", "")
            syll = [s for s in (fam, given) if s]
            if full and (full in heard_py or (given + fam) in heard_py):
                return Outcome.CORRECT, {"heard": said, "method": "pinyin"}
            if any(s and s in heard_py for s in syll):
                return Outcome.PARTLY, {"heard": said, "method": "pinyin_part"}
            return Outcome.WRONG, {"heard": said, "method": "pinyin"}
        words = set(said.split())
        truth_words = [w for w in nz.clean(str(truth)).split() if w not in ("mr", "mrs", "ms", "dr")]
        if truth_words and all(w in words for w in truth_words):
            return Outcome.CORRECT, {"heard": said, "method": "tokens"}
        if any(w in words for w in truth_words):
            return Outcome.PARTLY, {"heard": said, "method": "tokens_part"}
        return Outcome.WRONG, {"heard": said, "method": "tokens"}

    def _m_place(self, q: RenderedQuestion, text: str, truth: object, p: dict[str, Any]):
        core = nz.place_core(str(truth))
        said = _PLACE_LEAD.sub("", text).strip()
        if not said:
            return None, {"reason": "no place heard"}
        heard = text.replace(" ", "") if nz.has_cjk(text) else text
        if core and core in heard:
            return Outcome.CORRECT, {"heard": text, "method": "core"}
        if core and nz.has_cjk(core) and not nz.has_cjk(text) and nz.pinyin(core) in heard.replace(" ", ""):
            return Outcome.CORRECT, {"heard": text, "method": "pinyin"}
        return Outcome.WRONG, {"heard": text, "method": "core"}

    def _m_organisation(self, q: RenderedQuestion, text: str, truth: object, p: dict[str, Any]):
        core = nz.org_core(str(truth))
        heard = nz.org_core(text)
        ratio = _overlap(core, heard)
        ev = {"heard": heard, "overlap": round(ratio, 3)}
        if ratio >= 0.75:
            return Outcome.CORRECT, ev
        if ratio >= 0.5:
            return Outcome.PARTLY, ev
        return Outcome.WRONG, ev

    def _m_amount(self, q: RenderedQuestion, text: str, truth: object, p: dict[str, Any]):
        nums = nz.numbers_in(text, q.language)
        if not nums or truth is None:
            return None, {"reason": "no number heard"}
        t = float(truth)  # type: ignore[arg-type]
        best = min(nums, key=lambda v: abs(v - t))
        err = abs(best - t)
        rel = err / max(abs(t), 1e-9)
        ev = {"heard": best, "relative_error": round(rel, 3) if t else None}
        if "abs_tol" in p:
            if err <= float(p["abs_tol"]):
                return Outcome.CORRECT, ev
            if err <= float(p.get("partly_abs", p["abs_tol"])):
                return Outcome.PARTLY, ev
            return Outcome.WRONG, ev
        if rel <= float(p.get("rel_tol", 0.05)):
            return Outcome.CORRECT, ev
        if rel <= float(p.get("partly_tol", p.get("rel_tol", 0.05))):
            return Outcome.PARTLY, ev
        return Outcome.WRONG, ev

    def _m_digits_tail(self, q: RenderedQuestion, text: str, truth: object, p: dict[str, Any]):
        n = int(p.get("n", 4))
        heard = nz.digits_in(text, q.language)
        if len(heard) < n:
            return None, {"reason": f"fewer than {n} digits heard"}
        real = re.sub(r"\D", "", str(truth))[-n:]
        mine = heard[-n:]
        same = sum(a == b for a, b in zip(mine, real, strict=True))
        ev = {"heard": mine, "digits_matching": same}
        if same == n:
            return Outcome.CORRECT, ev
        if same == n - 1:
            return Outcome.PARTLY, ev
        return Outcome.WRONG, ev

    def _m_date(self, q: RenderedQuestion, text: str, truth: object, p: dict[str, Any]):
        real = _truth_date(truth)
        found = nz.parse_dates(text, q.language)
        if not found or real is None:
            return None, {"reason": "no date heard"}
        if p.get("parts", "ymd") == "md":
            best_days = None
            for d in found:
                if d.month is None:
                    continue
                if d.day is None:
                    continue
                try:
                    cand = date(d.year or real.year, d.month, d.day)
                except ValueError:
                    continue
                diff = abs((cand - real).days)
                best_days = diff if best_days is None else min(best_days, diff)
            if best_days is None:
                d0 = found[0]
                if d0.month == real.month:
                    return Outcome.PARTLY, {"heard": str(d0), "reason": "month only"}
                return None, {"reason": "no day and month heard"}
            ev = {"days_off": best_days}
            if best_days <= int(p.get("tolerance_days", 0)):
                return Outcome.CORRECT, ev
            if best_days <= int(p.get("partly_days", 0)):
                return Outcome.PARTLY, ev
            return Outcome.WRONG, ev
        scored = [(d.matches(real), d) for d in found]
        (agree, given), best = max(scored, key=lambda x: (x[0][0], -x[0][1] + x[0][0]))
        ev = {"heard": {"year": best.year, "month": best.month, "day": best.day}, "parts_agreeing": agree}
        if agree == 3:
            return Outcome.CORRECT, ev
        if agree == 2 and given <= 3:
            return Outcome.PARTLY, ev
        return Outcome.WRONG, ev

    def _m_yes_no(self, q: RenderedQuestion, text: str, truth: object, p: dict[str, Any]):
        said = nz.yes_no(text)
        if said is None:
            return None, {"reason": "neither yes nor no"}
        mode = p.get("expected", True)
        if mode == "from_value":
            expected = bool(truth)
        elif mode == "from_positive":
            expected = float(truth or 0) > 0  # type: ignore[arg-type]
        else:
            expected = bool(mode)
        return (Outcome.CORRECT if said == expected else Outcome.WRONG), {"heard": said}

    def _m_choice(self, q: RenderedQuestion, text: str, truth: object, p: dict[str, Any]):
        options = q.options or []
        idx = _pick_option(text, options, q.language)
        if idx is None:
            return None, {"reason": "no option recognised"}
        opt = options[idx]
        ev = {"chosen": idx, "label": opt["label"]}
        return (Outcome.CORRECT if opt.get("correct") else Outcome.WRONG), ev

    def _m_free_text(self, q: RenderedQuestion, text: str, truth: object, p: dict[str, Any]):
        ref = str(truth or "")
        hi, lo = float(p.get("correct", 0.55)), float(p.get("partly", 0.4))
        # The bank's bounds were set for MiniLM; an encoder calibrated otherwise brings its own.
        own = getattr(self.encoder, "thresholds", None)
        if own:
            hi, lo = float(own["correct"]), float(own["partly"])
        reads_zh = bool(getattr(self.encoder, "reads_chinese", False))
        lex = _overlap(ref, text)
        cjk = nz.has_cjk(ref) or nz.has_cjk(text)
        if cjk:
            if lex >= 0.66:
                return Outcome.CORRECT, {"method": "characters", "overlap": round(lex, 3)}
            if self.encoder is None or (lex == 0.0 and not reads_zh):
                out = Outcome.PARTLY if lex >= 0.33 else Outcome.WRONG
                return out, {"method": "characters", "overlap": round(lex, 3)}
        if self.encoder is None:
            out = Outcome.CORRECT if lex >= 0.99 else Outcome.PARTLY if lex > 0 else Outcome.WRONG
            return out, {"method": "lexical", "overlap": round(lex, 3)}
        frame = f"我的工作是{ref}" if reads_zh and nz.has_cjk(ref) else f"I work as a {ref}"
        sim = max(self.encoder.similarity(text, ref), self.encoder.similarity(text, frame))
        ev = {"method": "encoder", "similarity": round(sim, 3), "overlap": round(lex, 3)}
        if sim >= hi or lex >= 0.99:
            return Outcome.CORRECT, ev
        if sim >= lo:
            return Outcome.PARTLY, ev
        return Outcome.WRONG, ev


_LETTERS = "abcdefgh"
_ORDINALS_EN = ["first", "second", "third", "fourth", "fifth", "sixth"]
_ORDINALS_ZH = ["一", "二", "三", "四", "五", "六"]


def _pick_option(text: str, options: list[dict[str, Any]], lang: str) -> int | None:
    """Which option an answer picks: by letter or ordinal, by a number inside a band, else by wording."""
    t = nz.clean(text)
    m = re.fullmatch(r"(?:option |letter |choice )?([a-h])", t)
    if m and _LETTERS.index(m.group(1)) < len(options):
        return _LETTERS.index(m.group(1))
    for i, o in enumerate(_ORDINALS_EN[: len(options)]):
        if re.search(rf"\b(the )?{o}( one| option)?\b", t) and len(t.split()) <= 4:
            return i
    for i, o in enumerate(_ORDINALS_ZH[: len(options)]):
        if re.search(rf"第{o}(个|种|项)?", t):
            return i
    if options and "band" in options[0]:
        nums = nz.numbers_in(text, lang)
        for n in nums:
            for i, o in enumerate(options):
                lo, hi = o["band"]
                if lo <= n < hi:
                    return i
        return None
    best, best_score = None, 0.0
    for i, o in enumerate(options):
        for syn in [o["label"], *o.get("synonyms", [])]:
            s = nz.clean(syn)
            score = 1.0 if s and s in t.replace(" ", "" if nz.has_cjk(s) else " ") else 0.0
            if not score:
                core = nz.org_core(s)
                score = _overlap(core, t) if core else 0.0
            score = score + len(s) * 1e-3 if score > 0 else 0.0
            if score > best_score:
                best, best_score = i, score
    return best if best_score >= 0.6 else None
