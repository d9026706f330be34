"""Scanned application forms rendered here with Pillow and Debian CJK fonts (tests never read the corpus).

``render_form`` draws a card application in one of two layouts of its own (a label-left table, and
label-above boxes with a comb-cell ID number), ``render_letter`` a recommendation letter in prose, and
``render_notice`` a page of another kind (a distractor). ``scan`` rotates, skews and stamps it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

LABEL_FONT = Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc")
VALUE_FONT = Path("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc")
HAND_FONT = Path("/usr/share/fonts/truetype/arphic/ukai.ttc")
FONTS_PRESENT = LABEL_FONT.is_file() and VALUE_FONT.is_file()

TRUTH: dict[str, Any] = {
    "application_id": "CC20260115123456",
    "applicant": {
        "name": "王建国",
        "id_number": "110105198503123416",
        "birth_date": "1985-03-12",
        "mobile": "13912345678",
    },
    "employment": {
        "employer": "北京华信电子有限公司",
        "job_title": "工程师",
        "monthly_income": 15000,
        "years_employed": 6,
        "work_city": "北京",
        "work_district": "海淀区",
    },
    "home": {"city": "上海", "district": "浦东新区", "housing": "rented"},
    "card_product": "牡丹白金卡",
    "requested_limit": 50000,
    "emergency_contact": {"name": "李秀英", "relation": "spouse", "mobile": "13887654321"},
}


def _font(path: Path, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(path), size)


def _tick_box(d: ImageDraw.ImageDraw, x: int, y: int, ticked: bool, s: int = 26) -> None:
    d.rectangle((x, y, x + s, y + s), outline="black", width=2)
    if ticked:
        d.line((x + 4, y + s // 2, x + s // 2 - 2, y + s - 3, x + s + 8, y - 10), fill=(20, 30, 90), width=4)


def render_form(
    layout: str = "table", values: dict[str, Any] | None = None, *, hand: bool = False
) -> Image.Image:
    v = values or TRUTH
    a, e, h, c = v["applicant"], v["employment"], v["home"], v["emergency_contact"]
    img = Image.new("RGB", (1240, 1754), "white")
    d = ImageDraw.Draw(img)
    lab, val = _font(LABEL_FONT, 26), _font(HAND_FONT if hand else VALUE_FONT, 30)
    d.text((400, 70), "个人信用卡申请表", font=_font(LABEL_FONT, 48), fill="black")
    d.text((840, 150), f"申请编号：{v['application_id']}", font=lab, fill="black")
    rel = {"spouse": "配偶", "parent": "父母", "child": "子女", "sibling": "兄弟姐妹", "friend": "朋友"}
    rows = [
        ("申请人姓名", a["name"]),
        ("身份证号码", a["id_number"]),
        ("出生日期", a["birth_date"].replace("-", "年", 1).replace("-", "月") + "日"),
        ("手机号码", a["mobile"]),
        ("工作单位", e["employer"]),
        ("职务", e["job_title"]),
        ("月收入(元)", f"{e['monthly_income']}元"),
        ("现单位工作年限", f"{e['years_employed']}年"),
        ("单位所在城市/区", f"{e['work_city']}市 {e['work_district']}"),
        ("住宅地址城市/区", f"{h['city']}市 {h['district']}"),
        ("住房状况", None),
        ("申请卡种", v["card_product"]),
        ("申请额度", str(v["requested_limit"])),
        ("紧急联系人姓名", c["name"]),
        ("与申请人关系", rel[c["relation"]]),
        ("紧急联系人手机", c["mobile"]),
    ]
    if layout == "table":
        for i, (label, value) in enumerate(rows):
            y = 230 + i * 72
            d.rectangle((90, y - 14, 1150, y + 58), outline="black", width=2)
            d.line((400, y - 14, 400, y + 58), fill="black", width=2)
            d.text((110, y + 6), label, font=lab, fill="black")
            if value is None:
                for j, (word, code) in enumerate((("自有", "owned"), ("租赁", "rented"))):
                    x = 430 + j * 200
                    _tick_box(d, x, y + 8, h["housing"] == code)
                    d.text((x + 40, y + 4), word, font=val, fill="black")
            else:
                d.text((430, y + 2), value, font=val, fill=(20, 30, 90))
    else:
        for i, (label, value) in enumerate(rows):
            col, row = i % 2, i // 2
            x, y = 90 + col * 540, 230 + row * 150
            d.rectangle((x, y, x + 520, y + 130), outline="black", width=2)
            d.text((x + 14, y + 10), label, font=lab, fill="black")
            if value is None:
                for j, (word, code) in enumerate((("自有", "owned"), ("租赁", "rented"))):
                    bx = x + 20 + j * 200
                    _tick_box(d, bx, y + 72, h["housing"] == code)
                    d.text((bx + 40, y + 68), word, font=val, fill="black")
            elif label == "身份证号码":
                for k, ch in enumerate(value):
                    cx = x + 14 + k * 27
                    d.rectangle((cx, y + 60, cx + 25, y + 104), outline=(120, 120, 120), width=1)
                    d.text((cx + 5, y + 66), ch, font=_font(VALUE_FONT, 28), fill=(20, 30, 90))
            else:
                d.text((x + 20, y + 62), value, font=val, fill=(20, 30, 90))
    y = 1500
    d.text((90, y), "本人声明：以上所填资料真实有效，授权贵行查询本人信用报告。", font=lab, fill="black")
    d.text((90, y + 80), f"申请人签名：{a['name']}", font=lab, fill="black")
    d.text((800, y + 80), "填表日期：2026-01-15", font=lab, fill="black")
    return img


def render_letter(values: dict[str, Any] | None = None) -> Image.Image:
    v = values or TRUTH
    a, e = v["applicant"], v["employment"]
    img = Image.new("RGB", (1240, 1754), "white")
    d = ImageDraw.Draw(img)
    d.text((520, 100), "推荐信", font=_font(LABEL_FONT, 52), fill="black")
    body = [
        "中国工商银行信用卡中心：",
        f"兹推荐我单位员工{a['name']}同志申请贵行信用卡，申请编号{v['application_id']}。",
        f"该同志身份证号码{a['id_number']}，手机号码{a['mobile']}，",
        f"现在{e['employer']}担任{e['job_title']}一职，在我单位工作已满{e['years_employed']}年，",
        f"月收入约{e['monthly_income']}元，申请额度{v['requested_limit']}元。",
        "该同志工作认真，信用良好，特此推荐。",
    ]
    font = _font(VALUE_FONT, 32)
    for i, line in enumerate(body):
        d.text((100, 260 + i * 70), line, font=font, fill="black")
    d.text((760, 800), "推荐单位（盖章）", font=font, fill="black")
    d.text((760, 870), "2026年1月15日", font=font, fill="black")
    return img


def render_notice() -> Image.Image:
    img = Image.new("RGB", (1240, 1754), "white")
    d = ImageDraw.Draw(img)
    d.text((420, 100), "停水通知", font=_font(LABEL_FONT, 52), fill="black")
    font = _font(VALUE_FONT, 32)
    for i, line in enumerate(
        [
            "各位业主：",
            "因供水管道检修，本小区将于本周六上午八点至下午五点停水。",
            "请各位业主提前做好储水准备，给您带来的不便敬请谅解。",
            "物业服务中心",
            "二〇二六年一月十日",
        ]
    ):
        d.text((100, 260 + i * 70), line, font=font, fill="black")
    return img


def scan(img: Image.Image, *, rotation: int = 0, skew: float = 0.0, stamp: bool = False) -> Image.Image:
    if stamp:
        layer = Image.new("RGB", img.size, "white")
        ImageDraw.Draw(layer).ellipse((700, 280, 980, 560), outline=(220, 30, 30), width=12)
        img = Image.fromarray(
            (np.asarray(img, np.float32) * np.asarray(layer, np.float32) / 255).astype(np.uint8)
        )
    if skew:
        img = img.rotate(skew, expand=True, fillcolor="white")
    return img.rotate(rotation, expand=True) if rotation else img
