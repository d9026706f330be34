"""Field normalisers and the template loader: pure functions, no OCR."""

from __future__ import annotations

from pathlib import Path

import pytest
from callvet.core.errors import InvalidInput
from callvet.forms import fields as F
from callvet.forms.templates import load_templates


def test_id_number_check_digit_decides_validity() -> None:
    assert F.id_check_digit("11010519850312341") == "6"
    good = F.parse_id_number("1101 0519 8503 1234 16")
    assert (good.value, good.validity) == ("110105198503123416", 1.0)
    bad = F.parse_id_number("110105198503123417")
    assert bad.validity < 0.5 and "check digit" in bad.note
    masked = F.parse_id_number("110105＊＊＊＊＊＊＊＊3417")
    assert masked.value == "110105********3417" and 0.9 < masked.validity < 1.0
    smudged = F.parse_id_number("110105率3417")
    assert smudged.value == "110105********3417" and smudged.validity < 0.85
    assert F.parse_id_number("2099********C0000").validity < 0.85


@pytest.mark.parametrize("text", ["1988-05-03", "1988年05月03日", "1988/05/03", "1988年5月3日"])
def test_dates_in_every_printed_form(text: str) -> None:
    assert F.parse_date(text) == F.Parsed("1988-05-03", 1.0)


def test_amounts_and_years_with_units_and_chinese_numerals() -> None:
    assert F.parse_amount("15000元").value == 15000
    assert F.parse_amount("一万五千元") == F.Parsed(15000, 1.0)
    assert F.parse_amount("1.5万").value == 15000
    assert F.parse_years("6年") == F.Parsed(6, 1.0)
    assert F.parse_years("十二年").value == 12
    assert F.parse_amount("000001").validity < 0.85  # an upside-down or misread print
    assert F.parse_years("99年").validity < 0.5
    assert F.parse_amount("").value is None


def test_mobiles() -> None:
    assert F.parse_mobile("139 1234 5678") == F.Parsed("13912345678", 1.0)
    assert F.parse_mobile("+86 13912345678").value == "13912345678"
    assert F.parse_mobile("1391234567").validity < 0.5


def test_city_and_district_from_one_cell_and_gazetteer() -> None:
    assert F.parse_city("北京市 朝阳区") == F.Parsed("北京", 1.0)
    assert F.parse_district("北京市 朝阳区") == F.Parsed("朝阳区", 1.0)
    assert F.parse_district("上海市浦东新区").value == "浦东新区"
    stamp = F.parse_district("深圳市中业务专用章福田区")
    assert stamp.value == "福田区" and stamp.validity < 1.0
    assert F.parse_city("拉萨市").validity < 0.85  # not in the gazetteer: read, but for a human
    assert F.parse_district("北京市").value is None


def test_choices_and_names() -> None:
    rel = F.choice({"配偶": "spouse", "兄弟姐妹": "sibling", "兄弟": "sibling"})
    assert rel("兄弟姐妹") == F.Parsed("sibling", 1.0)
    assert rel("配隅").validity < 0.85
    assert rel("同事").value is None
    assert F.parse_name("王建国.").value == "王建国"
    assert F.parse_name("王").validity < 0.85


def test_templates_extend_the_generic_base() -> None:
    ts = load_templates()
    names = {t.name for t in ts.templates}
    assert {"table_left", "grid2", "boxes", "letter"} <= names
    assert ts.fallback.name == "generic"
    boxes = ts.get("boxes")
    name = next(f for f in boxes.fields if f.path == "applicant.name")
    assert name.position == "below" and "申请人姓名" in name.labels
    assert ts.choose("牡丹信用卡申请表PEONY CREDIT CARD APPLICATION FORM").name == "boxes"
    assert ts.choose("something else entirely").name == "generic"
    assert "boxes" not in {t.name for t in ts.without("boxes").templates}


def test_an_expert_adds_a_template_as_yaml(tmp_path: Path) -> None:
    (tmp_path / "branch.yaml").write_text(
        "name: branch_x\nextends: generic\ndetect: {any: [某分行专用]}\nposition: below\n"
        "fields:\n  applicant.name: {labels: [客户名称]}\n",
        encoding="utf-8",
    )
    ts = load_templates(tmp_path)
    t = ts.choose("某分行专用 客户名称")
    assert t.name == "branch_x"
    spec = next(f for f in t.fields if f.path == "applicant.name")
    assert spec.labels == ("客户名称",) and spec.type == "name" and spec.position == "below"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("fields:\n  applicant.name: {type: nosuch, labels: [x]}\n", "type"),
        ("fields:\n  applicant.name: {type: name, position: diagonal}\n", "position"),
        ("fields:\n  applicant.name: {type: name, patterns: ['(x)']}\n", "(?P<v>"),
        ("fields:\n  card_product: {type: choice, labels: [卡]}\n", "options"),
        ("extends: nowhere\n", "unknown"),
    ],
)
def test_bad_templates_fail_clearly(tmp_path: Path, body: str, message: str) -> None:
    (tmp_path / "bad.yaml").write_text(f"name: bad{abs(hash(body)) % 1000}\n" + body, encoding="utf-8")
    with pytest.raises(InvalidInput) as err:
        load_templates(tmp_path)
    assert err.value.code == "bad_template"
    assert message in err.value.message
