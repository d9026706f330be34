"""Forms bench: field accuracy and pages per second per core, RapidOCR (served) vs Tesseract (peer).

Each page is decoded and normalised once (rotation, skew, stamp, lighting; shared by both engines),
then recognised by each engine on one thread and run through the same template extractor. Reported:
field accuracy (the corpus README's scorer: ``str(pred) == str(truth)`` without whitespace) per field
path, per damage kind and per template, with every template present and with the page's own template
left out (the generic label matching alone); wrong fields that were not marked for review; pages per
second per core; distractor pages (a blank page and another document, rendered here) rejected.
Each page's normalised image and both engines' lines (with their timings) are cached in ``--cache``,
so an interrupted run resumes and a rerun re-scores the current extractor without re-recognising.

    nice -n 10 .venv/bin/python bench/forms/run.py --corpus ../shared/corpus/forms-dev
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
from callvet.forms import RapidOcrEngine, TesseractEngine, normalise_page
from callvet.forms.extract import REVIEW_BELOW, NotAForm, extract_fields
from callvet.forms.ocr import TextLine
from callvet.forms.service import FormReader
from callvet.forms.templates import load_templates
from PIL import Image, ImageDraw, ImageFont


def leaves(d: dict[str, Any], pre: str = "") -> list[tuple[str, Any]]:
    out = []
    for k, v in d.items():
        if isinstance(v, dict):
            out += leaves(v, pre + k + ".")
        else:
            out.append((pre + k, v))
    return out


def same(pred: object, truth: object) -> bool:
    return pred is not None and "".join(str(pred).split()) == "".join(str(truth).split())


def distractors() -> list[tuple[str, np.ndarray]]:
    blank = np.full((1754, 1240, 3), 238, np.uint8)
    img = Image.new("RGB", (1240, 1754), "white")
    d = ImageDraw.Draw(img)
    font = ImageFont.truetype("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc", 32)
    lines = [
        "关于开展春季消防安全检查的通知",
        "各部门：",
        "为切实做好春季消防安全工作，公司定于三月十五日",
        "开展消防安全检查，请各部门负责人于三月十日前完成自查，",
        "并将自查表报送行政部。联系人：张明，电话：010-66668888。",
        "附件：消防安全自查表",
        "行政部",
        "2026年3月1日",
    ]
    for i, t in enumerate(lines):
        d.text((100, 150 + i * 70), t, font=font, fill="black")
    return [("blank", blank), ("notice", np.asarray(img.rotate(90, expand=True)))]


def damage_kinds(row: dict[str, str]) -> list[str]:
    kinds = []
    deg = row["degradation"].split(";")
    kinds.append("stamp" if "stamp" in deg else "no stamp")
    kinds.append("grey scan" if "gray" in deg else "colour scan")
    blur = next((float(x[4:]) for x in deg if x.startswith("blur")), 0.0)
    kinds.append("blur >= 0.6 px" if blur >= 0.6 else "blur < 0.6 px")
    q = next((int(x[4:]) for x in deg if x.startswith("jpeg")), None)
    kinds.append("PNG" if q is None else ("JPEG q < 65" if q < 65 else "JPEG q >= 65"))
    if any(x.startswith("shadow") for x in deg):
        kinds.append("edge shadow")
    kinds.append("handwriting (ukai)" if row["value_font"] == "ukai" else "typed values")
    kinds.append(f"rotation {row['rotation']}")
    kinds.append("skew > 2 deg" if abs(float(row["skew"])) > 2 else "skew <= 2 deg")
    return kinds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, default=Path("../shared/corpus/forms-dev"))
    ap.add_argument("--cache", type=Path, default=Path("var/bench-forms"))
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("RESULTS.md"))
    ap.add_argument("--limit", type=int, default=0)
    args = ap.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    rapid = RapidOcrEngine(threads=1)
    tess = TesseractEngine()
    templates = load_templates()
    reader = FormReader(engine=rapid, templates=templates)
    rows = list(csv.DictReader((args.corpus / "manifest.csv").open(encoding="utf-8")))
    if args.limit:
        rows = rows[: args.limit]
    results: list[dict[str, Any]] = []
    for n, row in enumerate(rows, 1):
        stem = Path(row["file"]).stem
        cached = args.cache / f"{stem}.ocr.json"
        truth = json.loads((args.corpus / "truth" / f"{stem}.json").read_text("utf-8"))
        if cached.is_file():
            ocr = json.loads(cached.read_text("utf-8"))
            image = np.asarray(Image.open(args.cache / f"{stem}.png"))
        else:
            rgb = np.asarray(Image.open(args.corpus / row["file"]).convert("RGB"))
            t0 = time.perf_counter()
            page = normalise_page(rgb, rapid)
            ocr = {"normalise_s": time.perf_counter() - t0, "rotation": page.rotation, "engines": {}}
            image = page.image
            for eng in (rapid, tess):
                t1 = time.perf_counter()
                lines = eng.read(image)
                ocr["engines"][eng.name] = {
                    "recognise_s": time.perf_counter() - t1,
                    "lines": [[ln.text, ln.score, ln.box] for ln in lines],
                }
            Image.fromarray(image).save(args.cache / f"{stem}.png")
            cached.write_text(json.dumps(ocr, ensure_ascii=False), encoding="utf-8")
            print(
                f"[{n}/{len(rows)}] {stem} norm {ocr['normalise_s']:.1f}s",
                *(f"{k} {v['recognise_s']:.1f}s" for k, v in ocr["engines"].items()),
                flush=True,
            )
        rec: dict[str, Any] = {
            "file": row["file"],
            "template": row["template"],
            "kinds": damage_kinds(row),
            "truth_paths": [p for p, _ in leaves(truth)],
            "distractor": truth.get("distractor", False),
            "normalise_s": ocr["normalise_s"],
            "rotation_ok": ocr["rotation"] == int(row["rotation"]),
            "engines": {},
        }
        for eng in (rapid, tess):
            o = ocr["engines"][eng.name]
            lines = [TextLine(t, sc, tuple(b)) for t, sc, b in o["lines"]]
            per: dict[str, Any] = {"recognise_s": o["recognise_s"]}
            for mode, ts in (("all", templates), ("leave_out", templates.without(row["template"]))):
                t2 = time.perf_counter()
                try:
                    if eng is rapid:
                        ex = reader.extract(lines, image, templates=ts)
                    else:
                        ex = extract_fields(lines, image, ts)
                except NotAForm as exc:
                    per[mode] = {"rejected": exc.code}
                    continue
                by = {f.path: f for f in ex.fields}
                per[mode] = {
                    "template": ex.template,
                    "extract_s": time.perf_counter() - t2,
                    "fields": {
                        p: {
                            "pred": by[p].value if p in by else None,
                            "conf": by[p].confidence if p in by else 0.0,
                            "truth": v,
                        }
                        for p, v in leaves(truth)
                    },
                }
            rec["engines"][eng.name] = per
        results.append(rec)
    dis_path = args.cache / "distractors.json"
    if dis_path.is_file():
        dis = json.loads(dis_path.read_text("utf-8"))
    else:
        dis = {}
        for name, rgb in distractors():
            page = normalise_page(rgb, rapid)
            for eng in (rapid, tess):
                try:
                    extract_fields(eng.read(page.image), page.image, templates)
                    dis[f"{name}/{eng.name}"] = "turned into an application"
                except NotAForm as exc:
                    dis[f"{name}/{eng.name}"] = f"rejected ({exc.code})"
        dis_path.write_text(json.dumps(dis, ensure_ascii=False), encoding="utf-8")
    report(results, dis, args.out)


def report(results: list[dict[str, Any]], dis: dict[str, str], out: Path) -> None:
    engines = ("rapidocr", "tesseract")
    lines = [
        "# Forms bench (bench/forms/run.py)",
        "",
        f"{len(results)} pages of forms-dev; {platform.machine()}, {os.cpu_count()} cores shared with other "
        "jobs (absolute times pessimistic), one OCR thread, `nice -n 10`. Normalisation (RapidOCR detector "
        "and orientation classifier) is shared; each engine then recognises the upright page and runs the "
        "same extractor (RapidOCR's pipeline adds the second look at invalid fields).",
        "",
    ]

    def acc(mode: str, eng: str, pick: Any = lambda r: True) -> tuple[int, int, int, int]:
        ok = tot = wrong_hi = flagged = 0
        for r in results:
            if not pick(r):
                continue
            m = r["engines"][eng].get(mode, {})
            for f in m.get("fields", {}).values():
                tot += 1
                good = same(f["pred"], f["truth"])
                ok += good
                flagged += f["conf"] < REVIEW_BELOW
                wrong_hi += (not good) and f["conf"] >= REVIEW_BELOW
            if "rejected" in m:
                tot += len(r["truth_paths"])
        return ok, tot, wrong_hi, flagged

    def pct(ok: int, tot: int) -> str:
        return f"{100 * ok / tot:.1f} %" if tot else "-"

    lines += [
        "## Summary",
        "",
        "| engine | fields right (all templates) | template left out | wrong and not "
        "flagged | flagged for review | pages/s per core | s/page (norm + rec + extract) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for eng in engines:
        ok, tot, hi, fl = acc("all", eng)
        ok2, tot2, hi2, _ = acc("leave_out", eng)
        secs = [
            r["normalise_s"] + r["engines"][eng]["recognise_s"] + r["engines"][eng]["all"].get("extract_s", 0)
            for r in results
        ]
        mean = statistics.mean(secs)
        lines.append(
            f"| {eng} | {pct(ok, tot)} ({ok}/{tot}) | {pct(ok2, tot2)} ({ok2}/{tot2}) | {hi} / {hi2} "
            f"(all / left out) | {fl} | {1 / mean:.3f} | {mean:.1f} |"
        )
    rot = sum(r["rotation_ok"] for r in results)
    lines += [
        "",
        f"Rotation right on {rot}/{len(results)} pages. Distractors: "
        + ", ".join(f"{k}: {v}" for k, v in sorted(dis.items()))
        + ".",
        "",
    ]
    paths = list(results[0]["engines"]["rapidocr"]["all"]["fields"]) if results else []
    lines += [
        "## Per field",
        "",
        "| field | rapidocr | rapidocr, template left out | tesseract |",
        "|---|---:|---:|---:|",
    ]
    for p in paths:
        cells = []
        for eng, mode in (("rapidocr", "all"), ("rapidocr", "leave_out"), ("tesseract", "all")):
            vals = [
                same(
                    r["engines"][eng][mode]["fields"][p]["pred"],
                    r["engines"][eng][mode]["fields"][p]["truth"],
                )
                for r in results
                if "fields" in r["engines"][eng].get(mode, {})
            ]
            cells.append(pct(sum(vals), len(vals)))
        lines.append(f"| `{p}` | " + " | ".join(cells) + " |")
    kinds = sorted({k for r in results for k in r["kinds"]})
    lines += [
        "",
        "## Per damage kind",
        "",
        "| damage | pages | rapidocr | tesseract |",
        "|---|---:|---:|---:|",
    ]
    for k in kinds:
        pages = [r for r in results if k in r["kinds"]]
        a = acc("all", "rapidocr", lambda r, k=k: k in r["kinds"])
        b = acc("all", "tesseract", lambda r, k=k: k in r["kinds"])
        lines.append(f"| {k} | {len(pages)} | {pct(a[0], a[1])} | {pct(b[0], b[1])} |")
    lines += [
        "",
        "## Per template (held out = its own YAML removed, generic label matching only)",
        "",
        "| template | pages | rapidocr | rapidocr held out | tesseract | tesseract held out |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for t in sorted({r["template"] for r in results}):
        cells = []
        for eng in engines:
            for mode in ("all", "leave_out"):
                a = acc(mode, eng, lambda r, t=t: r["template"] == t)
                cells.append(pct(a[0], a[1]))
        n = sum(r["template"] == t for r in results)
        lines.append(f"| {t} | {n} | {cells[0]} | {cells[1]} | {cells[2]} | {cells[3]} |")
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
