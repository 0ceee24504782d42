"""Tests of circles.report: Yuxi plan indicators computed from a hand-made table, or "no data"."""

from __future__ import annotations

import html
import re
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from circles._errors import ConfigError, InputDataError
from circles.report import INDICATORS, indicator_table, write_report


def _table(with_attributes: bool = True) -> gpd.GeoDataFrame:
    """Four communities in two counties: unit squares side by side (lon 0-4, lat 0-1)."""
    t = gpd.GeoDataFrame(
        {
            "community_id": ["c1", "c2", "v1", "v2"],
            "name": ["一社区", "二社区", "<b>三村</b>", "四村"],
            "residents": [100.0, 100.0, 50.0, 0.0],
            "residents_basis": "street length (no population data)",
            "elderly_canteen_share_15": [0.9, 0.5, 0.85, np.nan],
            "elderly_day_care_share_15": [0.95, 0.92, 0.1, np.nan],
            "fitness_share_15": [1.0, 0.8, 0.79, np.nan],
            "shelter_share_15": [0.0, 0.0, 0.0, np.nan],
        },
        geometry=[shapely.box(i, 0, i + 1, 1) for i in range(4)],
        crs="EPSG:4326",
    )
    if with_attributes:
        t["county"] = ["红塔区", "红塔区", "江川区", "江川区"]
        t["street"] = ["玉兴街道", "凤凰街道", "大街街道", "大街街道"]
        t["kind"] = ["urban", "urban", "rural", "rural"]
        t["households"] = [1000, 500, 200, np.nan]
        t["population"] = [3000.0, 2000.0, 600.0, 100.0]
        t["service_area_m2"] = [400.0, 100.0, 0.0, np.nan]
        t["activity_area_m2"] = [300.0, 50.0, 0.0, np.nan]
        t["community_workers"] = [6.0, 3.0, 1.0, 1.0]
    return t


def _facilities() -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(
        {
            "category": ["elderly_service_centre", "elderly_service_centre", "fitness"],
            "status": ["snapped", "snapped", "snapped"],
        },
        geometry=[shapely.Point(0.5, 0.5), shapely.Point(2.5, 0.5), shapely.Point(1.5, 0.5)],
        crs="EPSG:4326",
    )


CATS = ["elderly_canteen", "elderly_day_care", "elderly_service_centre", "fitness", "shelter"]


def _rows(df: pd.DataFrame, scope: str) -> pd.DataFrame:
    return df[df["scope"] == scope].set_index("indicator_id")


def test_rows_computed_by_hand() -> None:
    ind = indicator_table(_table(), _facilities(), categories=CATS, lang="en")
    assert len(ind) == 3 * len(INDICATORS)  # two counties + the whole area
    a = _rows(ind, "whole study area")
    # urban: c1 0.9 >= 0.8 yes, c2 0.5 no -> 1/2, target all -> no
    assert a.loc["elderly_canteen_urban", ["measured", "met"]].tolist() == ["1 / 2 (50.0%)", "no"]
    # villages: v1 0.85 -> 1; v2 has no residents: not counted
    r = a.loc["elderly_meal_point_rural"]
    assert (r["measured"], r["met"]) == ("1 / 1 (100.0%)", "reported")
    assert "1 without residents not counted" in r["basis"]
    # day care: c1, c2 yes, v1 no -> 2/3 < 90%
    assert a.loc["day_care_coverage", "value"] == pytest.approx(2 / 3)
    assert a.loc["day_care_coverage", "met"] == "no"
    # 街道 with an elderly service centre inside: 玉兴 (c1) and 大街 (v1) yes, 凤凰 (c2) no
    r = a.loc["elderly_institution_per_subdistrict"]
    assert (r["measured"], r["met"]) == ("2 / 3", "no")
    assert "凤凰街道" in r["basis"]
    # fitness: c1 1.0, c2 0.8 (>= 0.8), v1 0.79 -> 2/3
    assert a.loc["fitness_circle", "measured"] == "2 / 3 (66.7%)"
    assert a.loc["emergency_shelter", "met"] == "reported"
    # service facility coverage from service_area_m2 > 0
    assert a.loc["service_facility_coverage_urban", "measured"] == "2 / 2 (100.0%)"
    assert a.loc["service_facility_coverage_urban", "met"] == "yes"
    assert a.loc["service_facility_coverage_rural", "measured"] == "0 / 1 (0.0%)"
    # area per 100 households: c1 40, c2 20, v1 0 -> 1 of 3 >= 30; overall 500/1700*100
    r = a.loc["service_area_per_100_households"]
    assert r["value"] == pytest.approx(500 / 1700 * 100)
    assert r["measured"].startswith("1 / 3 communities >= 30")
    assert r["met"] == "no"
    # activity share: c1 75%, c2 50% (v1 has no area) -> 1 of 2; overall 350/500
    assert a.loc["activity_area_share", "value"] == pytest.approx(0.7)
    assert a.loc["activity_area_share", "met"] == "no"
    # workers per 10,000 urban residents: 9 / 5000 * 1e4 = 18 -> met
    assert a.loc["workers_per_10000_urban", "value"] == pytest.approx(18.0)
    assert a.loc["workers_per_10000_urban", "met"] == "yes"
    # per county: 红塔区 has no villages -> no data for the rural rows
    h = _rows(ind, "红塔区")
    assert h.loc["elderly_meal_point_rural", "met"] == "no data"
    assert h.loc["workers_per_10000_urban", "value"] == pytest.approx(18.0)
    j = _rows(ind, "江川区")
    assert j.loc["elderly_institution_per_subdistrict", "measured"] == "1 / 1"


def test_no_data_when_columns_are_missing() -> None:
    t = _table(with_attributes=False)
    ind = indicator_table(t, None, categories=["fitness"], lang="en")
    a = ind.set_index("indicator_id")
    assert list(ind["scope"].unique()) == ["whole study area"]
    computed = {"fitness_circle"}
    for iid, row in a.iterrows():
        if iid in computed:
            assert row["met"] in {"yes", "no"}
        else:
            assert row["met"] == "no data", iid
            assert row["measured"] == "no data"
            assert np.isnan(row["value"])
    assert "no 'kind' column" in a.loc["elderly_canteen_urban", "basis"]
    # categories not computed (e.g. always-flagged without data) are "no data", not 0%
    assert "not in the profile or not computed" in a.loc["emergency_shelter", "basis"]
    assert (
        "'households'"
        in indicator_table(t.assign(service_area_m2=1.0), None, categories=[], lang="en")
        .set_index("indicator_id")
        .loc["service_area_per_100_households", "basis"]
    )


def test_facility_attributes_are_summed_per_community() -> None:
    t = _table().drop(columns=["service_area_m2", "activity_area_m2"])
    f = gpd.GeoDataFrame(
        {
            "category": ["community_service"] * 3,
            "floor_area_m2": [200.0, 100.0, 150.0],
            "activity_area_m2": [120.0, 60.0, 100.0],
        },
        geometry=[shapely.Point(0.2, 0.5), shapely.Point(0.7, 0.5), shapely.Point(1.5, 0.5)],
        crs="EPSG:4326",
    )
    a = _rows(
        indicator_table(t, f, categories=["community_service"], lang="en"), "whole study area"
    )
    # c1: 300 m2 for 1000 households = 30 -> ok; c2: 150 / 500 = 30 -> ok
    r = a.loc["service_area_per_100_households"]
    assert (r["value"], r["met"]) == (pytest.approx(450 / 1500 * 100), "yes")
    assert "summed per community" in r["basis"]
    assert a.loc["activity_area_share", "value"] == pytest.approx(280 / 450)
    # coverage counted from facilities inside the polygon (no service_area_m2 column)
    assert a.loc["service_facility_coverage_urban", "measured"] == "2 / 2 (100.0%)"
    assert a.loc["service_facility_coverage_rural", "measured"] == "0 / 2 (0.0%)"


def test_write_report_files(tmp_path: Path) -> None:
    t = _table()
    paths = write_report(
        {"communities": t, "facilities": _facilities(), "categories": CATS}, tmp_path / "r"
    )
    assert set(paths) == {
        "indicators_csv",
        "indicators_xlsx",
        "report_html",
        "ledger_csv",
        "summary_csv",
    }
    # Chinese by default: headers and values (the English ids are the XLSX's hidden row)
    csv = pd.read_csv(paths["indicators_csv"], encoding="utf-8-sig")
    assert len(csv) == 3 * len(INDICATORS)
    assert "全市（全部研究范围）" in set(csv["范围"])
    xlsx = pd.read_excel(paths["indicators_xlsx"], sheet_name="指标", header=1)
    assert xlsx["indicator_id"].tolist() == csv["指标编号"].tolist()
    page = paths["report_html"].read_text(encoding="utf-8")
    assert "城市社区15分钟内有老年幸福食堂" in page
    assert "未达标" in page
    # self-contained: no external scripts, styles or images
    assert not re.search(r"<(script|link|img)\b", page)
    assert not list((tmp_path / "r").glob(".*"))  # no temp files left behind


def test_html_escapes_data_text(tmp_path: Path) -> None:
    t = _table()
    t.loc[0, "county"] = "<script>alert(1)</script>区"
    paths = write_report(
        {"communities": t, "facilities": _facilities(), "categories": CATS}, tmp_path
    )
    page = paths["report_html"].read_text(encoding="utf-8")
    assert "<script>" not in page
    assert html.escape("<script>alert(1)</script>区") in page


def test_attributes_join_and_errors(tmp_path: Path) -> None:
    t = _table(with_attributes=False)
    att = pd.DataFrame({"community_id": ["c1", "c2", "v1", "v2"], "kind": ["urban"] * 4})
    paths = write_report(
        {"communities": t, "categories": CATS}, tmp_path, attributes=att, lang="en"
    )
    csv = pd.read_csv(paths["indicators_csv"], encoding="utf-8-sig").set_index("indicator_id")
    assert csv.loc["elderly_canteen_urban", "measured"] == "2 / 3 (66.7%)"
    with pytest.raises(InputDataError, match="needs a StudyResult or a mapping"):
        write_report(t, tmp_path)
    with pytest.raises(InputDataError, match="'community_id' column"):
        write_report({"communities": t}, tmp_path, attributes=att.drop(columns="community_id"))
    with pytest.raises(ConfigError, match="lang must be 'zh' or 'en'"):
        write_report({"communities": t}, tmp_path, lang="fr")


def test_chinese_tables_headers_values_formats(tmp_path: Path) -> None:
    """With zh every sheet, header and value is Chinese; formats, frozen header, widths."""
    from openpyxl import load_workbook

    t = _table()
    paths = write_report(
        {"communities": t, "facilities": _facilities(), "categories": CATS}, tmp_path, lang="zh"
    )
    wb = load_workbook(paths["indicators_xlsx"])
    assert wb.sheetnames == ["指标", "问题台账", "汇总"]
    cjk = re.compile(r"[\u4e00-\u9fff]")
    for ws in wb.worksheets:
        headers = [c.value for c in ws[1]]
        assert all(cjk.search(str(h)) for h in headers), (ws.title, headers)
        assert ws.freeze_panes == "A3"  # the header frozen; the id row hidden under it
        assert ws.row_dimensions[2].hidden
        assert all(ws.column_dimensions[c.column_letter].width >= 6 for c in ws[1])
    ledger = wb["问题台账"]
    headers = [c.value for c in ledger[1]]
    for h in ("区县", "乡镇（街道）", "社区（村）", "城乡类型", "设施类别", "是否未达标"):
        assert h in headers, h
    share = headers.index("15分钟可达居民比例（%）") + 1
    assert ledger.cell(row=3, column=share).number_format == "0.0%"
    minutes = headers.index("步行时间中位数（分钟）") + 1
    assert ledger.cell(row=3, column=minutes).number_format == "0.0"
    summary = wb["汇总"]
    scopes = {r[0].value for r in summary.iter_rows(min_row=3)}
    assert "全市（全部研究范围）" in scopes
    assert len(scopes) >= 3  # the counties and the city
    # values: no English words left from circles' own vocabulary
    ind = pd.read_csv(paths["indicators_csv"], encoding="utf-8-sig")
    for col in ("实测", "是否达标", "计算依据"):
        text = " ".join(ind[col].astype(str))
        for word in ("no data", "communities", "residents", "facilities", "column", " yes", " no "):
            assert word not in text, (col, word)
    page = paths["report_html"].read_text(encoding="utf-8")
    for english in ("scope", "indicator_id", "measured", "basis", "no data", ">no<"):
        assert english not in page, english
    assert "计算依据" in page


def test_english_tables_keep_their_ids(tmp_path: Path) -> None:
    t = _table()
    paths = write_report(
        {"communities": t, "facilities": _facilities(), "categories": CATS}, tmp_path, lang="en"
    )
    csv = pd.read_csv(paths["indicators_csv"], encoding="utf-8-sig")
    assert {"scope", "indicator_id", "measured", "basis"} <= set(csv.columns)
    xlsx = pd.read_excel(paths["indicators_xlsx"], sheet_name="indicators")
    assert "indicator id" in xlsx.columns  # readable headers; ids in the hidden row


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_report_has_the_robustness_flags(tmp_path: Path, lang: str) -> None:
    """Per category how many flags are robust or fragile over the walking-speed band, and
    the fragile communities with the speed at which they flip (issue 15)."""
    t = _table()
    t["elderly_canteen_flag"] = [False, True, False, True]
    t["elderly_canteen_robust"] = [True, False, False, True]
    t["elderly_canteen_flip_m_s"] = [np.nan, 1.05, 0.95, np.nan]
    t["fitness_flag"] = [False, False, True, True]
    t["fitness_robust"] = [True, True, True, True]
    t["fitness_flip_m_s"] = np.nan
    paths = write_report(
        {"communities": t, "facilities": _facilities(), "categories": CATS},
        tmp_path / lang,
        lang=lang,
    )
    counts = pd.read_csv(paths["robustness_csv"], encoding="utf-8-sig")
    fragile = pd.read_csv(paths["fragile_csv"], encoding="utf-8-sig")
    page = paths["report_html"].read_text(encoding="utf-8")
    xlsx = pd.read_excel(paths["indicators_xlsx"], sheet_name=None, header=1)
    if lang == "zh":
        assert list(counts.columns) == [
            "设施类别",
            "社区数",
            "稳健未达标社区数",
            "稳健达标社区数",
            "不稳健判定数（随步速翻转）",
        ]
        assert list(fragile.columns) == [
            "社区编号",
            "社区（村）",
            "设施类别",
            "是否未达标",
            "判定翻转步速（米/秒）",
        ]
        counts.columns = ["category", "communities", "rf", "rnf", "fragile"]
        fragile.columns = ["community_id", "name", "category", "flag", "flip_m_s"]
        assert "步行速度稳健性" in page
        assert "不稳健的判定" in page
        assert "1.05" in page  # the flip speed, two decimals
        assert {"步速稳健性", "不稳健判定"} <= set(xlsx)
    else:
        counts.columns = ["category", "communities", "rf", "rnf", "fragile"]
        assert "Walking-speed robustness" in page
        assert "Fragile flags" in page
        assert {"robustness", "fragile flags"} <= set(xlsx)
    assert counts[["rf", "rnf", "fragile"]].to_numpy().tolist() == [[1, 1, 2], [2, 2, 0]]
    # the fragile communities, slowest flip first
    assert fragile["community_id"].tolist() == ["v1", "c2"]
    assert fragile["flip_m_s"].tolist() == [0.95, 1.05]
    # no robustness columns: no robustness tables
    plain = write_report(
        {"communities": _table(), "facilities": _facilities(), "categories": CATS},
        tmp_path / "plain",
        lang=lang,
    )
    assert "robustness_csv" not in plain


#: English words circles writes as values; none may be left in a Chinese report.
_ENGLISH_VALUES = {
    "required",
    "recommended",
    "verified",
    "unverified",
    "conflicting",
    "exact",
    "no data",
    "yes",
    "no",
    "true",
    "false",
    "urban",
    "rural",
}


def _english_cell(value: object) -> bool:
    if not isinstance(value, str):
        return False
    text = value.strip().lower()
    return text in _ENGLISH_VALUES or "no data" in text or "lower bound" in text


def test_chinese_report_with_a_checklist_is_chinese_throughout(tmp_path: Path) -> None:
    """The Yuxi case: a checklist profile; every header of every sheet and CSV is Chinese
    and no cell holds one of circles' English value words."""
    from openpyxl import load_workbook

    from circles.categories import load_profile

    paths = write_report(
        {"communities": _table(), "facilities": _facilities(), "categories": CATS},
        tmp_path,
        lang="zh",
        profile=load_profile("china_life_circle"),
    )
    cjk = re.compile(r"[\u4e00-\u9fff]")
    wb = load_workbook(paths["indicators_xlsx"])
    assert {"生活圈清单", "清单项目"} <= set(wb.sheetnames)
    for ws in wb.worksheets:
        headers = [c.value for c in ws[1]]
        english = [h for h in headers if not cjk.search(str(h))]
        assert not english, (ws.title, english)
        cells = [v for row in ws.iter_rows(min_row=3, values_only=True) for v in row]
        left = sorted({str(v) for v in cells if _english_cell(v)})
        assert not left, (ws.title, left)
    items = wb["清单项目"]
    headers = [c.value for c in items[1]]
    assert "配建要求" in headers
    assert "5分钟可达居民比例（%）" in headers
    col = headers.index("配建要求") + 1
    assert {items.cell(row=r, column=col).value for r in range(3, 10)} <= {"应配建", "宜配建"}
    chk = [c.value for c in wb["生活圈清单"][1]]
    assert "幼儿园、托儿所：满足的最小层级（分钟）" in chk  # named by the item's label
    for key in ("indicators_csv", "ledger_csv", "summary_csv", "checklist_csv"):
        csv = pd.read_csv(paths[key], encoding="utf-8-sig")
        english = [h for h in csv.columns if not cjk.search(str(h))]
        assert not english, (key, english)
    csv = pd.read_csv(paths["checklist_items_csv"], encoding="utf-8-sig", dtype=str)
    assert all(cjk.search(h) for h in csv.columns), list(csv.columns)
    left = sorted({v for v in csv.to_numpy().ravel() if _english_cell(v)})
    assert not left, left


def test_chinese_csvs_hold_percentages_and_rounded_minutes(tmp_path: Path) -> None:
    """A "（%）" CSV column holds 0-100 with one decimal, minutes one decimal (as the XLSX
    shows them); the English CSVs keep the raw fractions for scripts."""
    t = _table()
    t["fitness_median_min"] = [5.206404230494017, 7.26, 12.0, np.nan]
    tabs = {"communities": t, "facilities": _facilities(), "categories": CATS}
    zh = write_report(tabs, tmp_path / "zh", lang="zh")
    ledger = pd.read_csv(zh["ledger_csv"], encoding="utf-8-sig")
    fit = ledger[ledger["设施类别"] == "fitness"].reset_index(drop=True)
    assert fit["15分钟可达居民比例（%）"].tolist()[:3] == [100.0, 80.0, 79.0]
    assert fit["步行时间中位数（分钟）"].tolist()[:3] == [5.2, 7.3, 12.0]
    summary = pd.read_csv(zh["summary_csv"], encoding="utf-8-sig")
    reached = summary["达标社区比例（%）"].dropna()
    assert reached.between(0, 100).all()
    assert reached.max() > 1  # percentages, not fractions
    assert (reached.round(1) == reached).all()
    assert summary["15分钟可达居民比例（%）"].max() > 1
    en = write_report(tabs, tmp_path / "en", lang="en")
    raw = pd.read_csv(en["ledger_csv"], encoding="utf-8-sig")
    assert raw.loc[raw["category"] == "fitness", "share_15"].max() == pytest.approx(1.0)


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_report_html_has_the_problem_ledger(tmp_path: Path, lang: str) -> None:
    """report.html holds the 问题台账 with the XLSX sheet's columns (Chinese under zh)."""
    from openpyxl import load_workbook

    paths = write_report(
        {"communities": _table(), "facilities": _facilities(), "categories": CATS},
        tmp_path,
        lang=lang,
    )
    page = paths["report_html"].read_text(encoding="utf-8")
    heading = "问题台账" if lang == "zh" else "Problem ledger"
    assert f"<h2>{heading}</h2>" in page
    ledger_html = page.split(f"<h2>{heading}</h2>", 1)[1].split("</table>", 1)[0]
    sheet = load_workbook(paths["indicators_xlsx"])[
        "问题台账" if lang == "zh" else "problem ledger"
    ]
    headers = [str(c.value) for c in sheet[1]]
    assert re.findall(r"<th>(.*?)</th>", ledger_html) == [html.escape(h) for h in headers]
    shown = [c for c in CATS if f"{c}_share_15" in _table()]  # categories with coverage
    assert ledger_html.count("<tr>") == 1 + 4 * len(shown)  # header + communities x categories
    if lang == "zh":
        assert "15分钟可达居民比例（%）" in headers
        assert "<td>是</td>" in ledger_html  # flagged, in Chinese
        assert "<td>90.0%</td>" in ledger_html  # c1's canteen share, formatted
