"""The extractor on recognised lines built here (no OCR): positions, review marks, rejection."""

from __future__ import annotations

import numpy as np
import pytest
from callvet.forms.extract import NotAForm, extract_fields
from callvet.forms.ocr import TextLine
from callvet.forms.templates import load_templates


def L(text: str, x: float, y: float, score: float = 0.99, h: float = 30) -> TextLine:
    return TextLine(text, score, (x, y, x + 28 * len(text), y + h))


ROWS = [
    ("申请人姓名", "王建国"),
    ("身份证号码", "110105198503123416"),
    ("出生日期", "1985年03月12日"),
    ("手机号码", "13912345678"),
    ("工作单位", "北京华信电子有限公司"),
    ("职务", "工程师"),
    ("月收入(元)", "15000"),
    ("申请卡种", "牡丹白金卡"),
    ("申请额度", "50000元"),
    ("单位所在城市/区", "北京市"),
]


TRUTH_FLAT = {
    "application_id": "CC20260115123456",
    "applicant.name": "王建国",
    "applicant.id_number": "110105198503123416",
    "applicant.birth_date": "1985-03-12",
    "applicant.mobile": "13912345678",
    "employment.employer": "北京华信电子有限公司",
    "employment.job_title": "工程师",
    "employment.monthly_income": 15000,
    "employment.years_employed": 6,
    "employment.work_city": "北京",
    "employment.work_district": "海淀区",
    "home.city": "上海",
    "home.district": "浦东新区",
    "home.housing": "rented",
    "card_product": "牡丹白金卡",
    "requested_limit": 50000,
    "emergency_contact.name": "李秀英",
    "emergency_contact.relation": "spouse",
    "emergency_contact.mobile": "13887654321",
}


def right_of_page(id_number: str = "110105198503123416", score: float = 0.99) -> list[TextLine]:
    lines = [L("个人信用卡申请表", 400, 40), L("申请编号：CC20260115123456", 700, 100)]
    for i, (label, value) in enumerate(ROWS):
        y = 200 + i * 60
        lines.append(L(label, 100, y))
        v = id_number if label == "身份证号码" else value
        lines.append(L(v, 420, y + 2, score if label == "身份证号码" else 0.99))
    lines.append(L("海淀区", 800, 200 + 9 * 60))
    lines.append(L("推荐人姓名：", 100, 900))
    lines.append(L("申请人签名：王建国", 100, 1000))
    return lines


def test_right_of_values_in_a_layout_no_template_claims() -> None:
    ex = extract_fields(right_of_page(), None, load_templates())
    assert ex.template == "generic"
    app = ex.application
    assert app is not None
    assert app["application_id"] == "CC20260115123456"
    assert app["applicant"] == {
        "name": "王建国",
        "id_number": "110105198503123416",
        "birth_date": "1985-03-12",
        "mobile": "13912345678",
    }
    assert app["employment"]["monthly_income"] == 15000
    assert app["employment"]["work_city"] == "北京" and app["employment"]["work_district"] == "海淀区"
    assert app["requested_limit"] == 50000 and app["card_product"] == "牡丹白金卡"
    by = {f.path: f for f in ex.fields}
    assert by["applicant.name"].confidence > 0.9
    assert by["applicant.name"].box is not None
    # fields the page does not have are reported, for a human, never invented
    assert by["emergency_contact.name"].value is None
    assert "emergency_contact.name" in ex.needs_review
    assert "applicant.name" not in ex.needs_review


def test_a_wrong_check_digit_is_marked_not_trusted() -> None:
    ex = extract_fields(right_of_page(id_number="110105198503123417"), None, load_templates())
    f = next(f for f in ex.fields if f.path == "applicant.id_number")
    assert f.confidence < 0.85 and "applicant.id_number" in ex.needs_review
    assert "check digit" in f.note


def test_id_and_birth_date_must_agree() -> None:
    ex = extract_fields(right_of_page(id_number="110105199001011235"), None, load_templates())
    assert {"applicant.id_number", "applicant.birth_date"} <= set(ex.needs_review)


def test_values_below_labels_and_comb_cells() -> None:
    lines = [
        L("信用卡申请表", 400, 40),
        L("申请编号：CC20260115123456", 700, 100),
        L("申请人姓名", 100, 200),
        L("出生日期", 500, 200),
        L("王建国", 100, 240),
        L("1985-03-12", 500, 240),
        L("身份证号码", 100, 320),
        L("手机号码", 800, 320),
    ]
    lines += [
        TextLine(ch, 0.98, (100 + 30 * k, 360, 122 + 30 * k, 390))
        for k, ch in enumerate("110105198503123416")
    ]
    lines += [
        L("13912345678", 800, 360),
        L("工作单位", 100, 440),
        L("北京华信电子有限公司", 100, 480),
        L("申请额度", 800, 440),
        L("50000", 800, 480),
    ]
    ex = extract_fields(lines, None, load_templates())
    app = ex.application
    assert app is not None
    assert app["applicant"]["id_number"] == "110105198503123416"
    assert app["applicant"]["name"] == "王建国" and app["applicant"]["mobile"] == "13912345678"
    assert app["employment"]["employer"] == "北京华信电子有限公司" and app["requested_limit"] == 50000


def test_same_cell_and_context_labels() -> None:
    lines = [
        *right_of_page(),
        L("紧急联系人", 100, 1100),
        L("姓名李秀英", 420, 1100),
        L("关系配偶", 700, 1100),
        L("手机13887654321", 900, 1100),
    ]
    ex = extract_fields(lines, None, load_templates())
    assert ex.application is not None
    assert ex.application["emergency_contact"] == {
        "name": "李秀英",
        "relation": "spouse",
        "mobile": "13887654321",
    }
    assert ex.application["applicant"]["name"] == "王建国"


def test_sentences_of_a_letter() -> None:
    text = [
        "推荐信",
        "兹推荐我单位员工王建国同志申请贵行信用卡，申请编号CC20260115123456。",
        "该同志身份证号码110105198503123416，手机号码13912345678，",
        "现在北京华信电子有限公司担任工程师一职，在我单位工作已满6年，",
        "月收入约15000元，申请额度50000元。",
        "推荐单位（盖章）",
    ]
    lines = [L(t, 100, 100 + 60 * i) for i, t in enumerate(text)]
    ex = extract_fields(lines, None, load_templates())
    assert ex.template == "letter"
    app = ex.application
    assert app is not None
    assert app["applicant"]["name"] == "王建国" and app["applicant"]["mobile"] == "13912345678"
    assert app["employment"] == {
        "employer": "北京华信电子有限公司",
        "job_title": "工程师",
        "monthly_income": 15000,
        "years_employed": 6,
    }
    assert app["requested_limit"] == 50000


def test_tick_boxes_read_from_pixels_and_text() -> None:
    from PIL import Image, ImageDraw

    img = Image.new("L", (1200, 400), 255)
    d = ImageDraw.Draw(img)
    d.rectangle((420, 205, 446, 231), outline=0, width=2)  # empty box before 自有
    d.rectangle((620, 205, 646, 231), outline=0, width=2)  # ticked box before 租赁
    d.line((624, 218, 632, 228, 654, 195), fill=0, width=4)
    lines = [*right_of_page()[:8], L("住房状况", 100, 200), L("□自有", 420, 202), L("租赁", 660, 202)]
    lines += [L("工作单位", 100, 300), L("北京华信电子有限公司", 420, 300)]
    ex = extract_fields(lines, np.asarray(img), load_templates())
    f = next(f for f in ex.fields if f.path == "home.housing")
    assert f.value == "rented" and f.confidence > 0.85


def test_another_banks_form_with_personal_data_is_not_a_card_application() -> None:
    lines = [L("个人银行结算账户开户申请表", 300, 40)]
    for i, (label, value) in enumerate(ROWS[:6]):
        lines += [L(label, 100, 200 + 60 * i), L(value, 420, 202 + 60 * i)]
    with pytest.raises(NotAForm) as err:
        extract_fields(lines, None, load_templates())
    assert err.value.code == "not_a_form" and "form words missing" in err.value.message


@pytest.mark.parametrize(
    ("lines", "code"),
    [
        ([], "blank_page"),
        (
            [
                L("停水通知", 400, 40),
                L("各位业主：因管道检修，本周六停水。", 100, 200),
                L("物业服务中心", 100, 300),
                L("联系电话：010-66668888", 100, 400),
            ],
            "not_a_form",
        ),
    ],
)
def test_non_forms_are_rejected_with_a_reason(lines: list[TextLine], code: str) -> None:
    with pytest.raises(NotAForm) as err:
        extract_fields(lines, None, load_templates())
    assert err.value.code == code


def test_a_letter_naming_every_field_in_sentences() -> None:
    text = [
        "推荐信",
        "兹推荐我单位员工王建国同志申请贵行牡丹白金卡，申请额度50000元。",
        "该同志1985年3月12日出生，身份证号码110105198503123416，手机号码13912345678，",
        "现居住在上海市浦东新区，住房为租赁。",
        "现在北京华信电子有限公司担任工程师一职，公司位于北京市海淀区，在我单位工作已满6年，月收入约15000元。",
        "紧急联系人为李秀英（配偶），联系电话13887654321。",
        "特此推荐。",
    ]
    ex = extract_fields([L(t, 100, 100 + 60 * i) for i, t in enumerate(text)], None, load_templates())
    assert ex.template == "letter"
    expected = {k: v for k, v in TRUTH_FLAT.items() if k != "application_id"}
    got = {f.path: f.value for f in ex.fields}
    assert {k: got[k] for k in expected} == expected
    assert ex.needs_review == ["application_id"]  # the letter has no number: for a human, not invented
