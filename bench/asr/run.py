"""Server-side ASR on interview answers: Whisper base (int8, CTranslate2) on synthetic Mandarin and
English, with PocketSphinx on the same English audio as the peer.

    nice -n 10 .venv/bin/python bench/asr/run.py [--zh 40] [--en 20] [--seed-from 50000]

Speech: the simulator's genuine answers to the questions of simulated applicants (seeds from
``--seed-from``, never used elsewhere), spoken by espeak-ng: Mandarin with the ``cmn-latn-pinyin`` voice
reading tone-numbered pinyin made from the hanzi by pypinyin (espeak's ``cmn`` voice reads hanzi badly),
English with ``en-us`` variants; then the phone channel the call server sees (8 kHz mu-law, back to
16 kHz). Each answer is decoded as on a call: the question as Whisper's prompt, OpenCC t2s.

Figures: character error rate (zh, on hanzi/digits after dropping punctuation and writing Arabic numbers
as Chinese numerals), word error rate (en), and scoring agreement -- the scorer's outcome on the
recognised text equals its outcome on the true text (what matters to the interview). RTF = decode time /
audio duration, one thread, one process.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import re
import statistics
import subprocess
import sys
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np
from callvet.core.settings import default_models_dir
from callvet.questionnaire.bank import load_bank
from callvet.questionnaire.interview import InterviewEngine, _value
from callvet.questionnaire.scoring import Scorer
from callvet.sim.questionnaire import GenuineApplicant, make_application
from callvet.voice.asr import PocketSphinxRecognizer
from callvet.voice.whisper import WhisperRecognizer
from scipy.signal import resample_poly

_ZH_DIGITS = "零一二三四五六七八九"


def espeak(text: str, voice: str, rate: int) -> np.ndarray:
    out = subprocess.run(["espeak-ng", "-v", voice, "-s", str(rate), "--stdout", text],
                         check=True, capture_output=True).stdout
    with wave.open(io.BytesIO(out)) as w:
        sr = w.getframerate()
        x = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32768.0
    g = np.gcd(sr, 8000)
    x8 = resample_poly(x, 8000 // g, sr // g)
    mu = np.sign(x8) * np.log1p(255 * np.minimum(np.abs(x8), 1.0)) / np.log1p(255)  # mu-law companding
    q = np.round(mu * 127) / 127
    x8 = np.sign(q) * ((1 + 255) ** np.abs(q) - 1) / 255
    return resample_poly(x8, 2, 1).astype(np.float32)


def pinyin(text: str, *, digits: bool = False) -> str:
    """Tone-numbered pinyin of what a caller says: digits as the words spoken ("3" -> san1)."""
    import cn2an
    from pypinyin import Style, lazy_pinyin

    if digits:  # phone-number tails are said digit by digit
        text = re.sub(r"\d", lambda m: "零一二三四五六七八九"[int(m.group(0))], text)
    text = re.sub(r"\d+(\.\d+)?", lambda m: cn2an.an2cn(m.group(0), "low"), text)
    return " ".join(lazy_pinyin(text, style=Style.TONE3, neutral_tone_with_five=True,
                                errors=lambda s: list(s)))


def zh_chars(text: str) -> str:
    import cn2an

    t = re.sub(r"\d+(\.\d+)?", lambda m: cn2an.an2cn(m.group(0), "low"), text)
    return "".join(c for c in t if "\u4e00" <= c <= "\u9fff")


def edit(a: list[str], b: list[str]) -> int:
    d = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        prev, d[0] = d[0], i
        for j in range(1, len(b) + 1):
            prev, d[j] = d[j], min(d[j] + 1, d[j - 1] + 1, prev + (a[i - 1] != b[j - 1]))
    return d[len(b)]


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def answers(lang: str, n: int, seed_from: int) -> list[tuple[Any, Any, str]]:
    """(engine, rendered question, true answer) from genuine callers' interviews."""
    bank, scorer = load_bank(), Scorer(None)
    out: list[tuple[Any, Any, str]] = []
    seed = seed_from
    while len(out) < n:
        app = make_application(seed)
        seed += 1
        if app.lang != lang:
            continue
        caller = GenuineApplicant(app, random.Random(seed))
        eng = InterviewEngine.new(bank, scorer, app, attempt=1)
        for _ in range(3):
            rq = eng.current
            if rq is None or eng.status.value != "asking":
                break
            q = rq.public()
            reply = caller.respond(q)["transcript"]
            ok = zh_chars(reply) if lang == "zh" else words(reply)
            if ok and (lang == "en" or not re.search(r"[A-Za-z]", reply)):
                out.append(((scorer, rq, _value(app, bank.questions[rq.bank_id])), q, reply))
            eng.answer(q["question_id"], reply)
    return out[:n]


def outcome(ctx: Any, text: str) -> str:
    scorer, rq, truth = ctx
    return str(scorer.judge(rq, text, truth).outcome)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--zh", type=int, default=40)
    ap.add_argument("--en", type=int, default=20)
    ap.add_argument("--seed-from", type=int, default=50_000)
    ap.add_argument("--models-dir", type=Path, default=default_models_dir())
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("RESULTS.md"))
    args = ap.parse_args()
    whisper = WhisperRecognizer(args.models_dir, processes=0)
    t0 = time.perf_counter()
    whisper.warm()
    load_s = time.perf_counter() - t0
    sphinx = PocketSphinxRecognizer(processes=0)
    rows: list[dict[str, Any]] = []
    for lang, n in (("zh", args.zh), ("en", args.en)):
        for i, (eng, q, truth) in enumerate(answers(lang, n, args.seed_from)):
            if lang == "zh":
                audio = espeak(pinyin(truth, digits=q["answer_type"] == "digits"), "cmn-latn-pinyin", 140)
            else:
                audio = espeak(truth, f"en-us+{['m1', 'f2', 'm3', 'f4'][i % 4]}", 160)
            dur = len(audio) / 16000
            engines = [("whisper", whisper)] + ([("pocketsphinx", sphinx)] if lang == "en" else [])
            for name, rec in engines:
                kw = {"prompt": q["text"]} if name == "whisper" else {}
                t1 = time.perf_counter()
                heard = rec.transcribe(audio, lang, hint=q["answer_type"], **kw).text
                dt = time.perf_counter() - t1
                if lang == "zh":
                    ref, hyp = list(zh_chars(truth)), list(zh_chars(heard))
                else:
                    ref, hyp = words(truth), words(heard)
                rows.append({"lang": lang, "engine": name, "q": q["question_id"], "truth": truth,
                             "heard": heard, "errors": edit(ref, hyp), "ref_len": len(ref), "audio_s": dur,
                             "decode_s": dt, "agree": outcome(eng, heard) == outcome(eng, truth)})
                print(lang, name, repr(truth), "->", repr(heard), f"{dt / dur:.2f}", flush=True)
    load = os.getloadavg()
    lines = ["# Server-side ASR on synthetic answers", "",
             f"`bench/asr/run.py --zh {args.zh} --en {args.en} --seed-from {args.seed_from}` "
             f"({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, 2 cores, load average at the end "
             f"{load[0]:.1f}; Whisper load + verify {load_s:.1f} s)", "",
             "| language | engine | answers | CER / WER | scoring agrees with true text | RTF mean "
             "| RTF p90 |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for lang in ("zh", "en"):
        for name in ("whisper", "pocketsphinx"):
            rs = [r for r in rows if r["lang"] == lang and r["engine"] == name]
            if not rs:
                continue
            err = sum(r["errors"] for r in rs) / max(1, sum(r["ref_len"] for r in rs))
            rtf = sorted(r["decode_s"] / r["audio_s"] for r in rs)
            agree = sum(r["agree"] for r in rs)
            lines.append(f"| {lang} | {name} | {len(rs)} | {err:.1%} | {agree}/{len(rs)} | "
                         f"{statistics.mean(rtf):.2f} | {rtf[int(0.9 * (len(rtf) - 1))]:.2f} |")
    lines += ["", "Every answer (truth -> heard):", ""]
    lines += [f"- {r['lang']} {r['engine']} `{r['q']}`: {r['truth']!r} -> {r['heard']!r}"
              f"{'' if r['agree'] else ' (scored differently)'}" for r in rows]
    text = "\n".join([*lines, ""])
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
