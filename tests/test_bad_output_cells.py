"""Bad input never reaches a spreadsheet or a strict JSON reader as it came (issue 12).

Names and attributes that a spreadsheet would read as formulas (``=HYPERLINK(...)``,
``=cmd|...``, ``@SUM(...)``, ``+1``, ``-2+3``, a leading tab or carriage return) are
neutralised with a leading single quote in every CSV and XLSX output, and XLSX cells
are written as text, never as formulas (OWASP, CSV injection); the GeoPackage keeps
the true names. Every JSON output is strict: NaN and infinities are written as null.

The study is hand-drawn: a ladder of streets (one rung per payload, 100 m apart), one
community per rung named after its payload, one facility per rung named after its
payload and one per payload far away (rejected as outside the study area), and a
community without streets.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from conftest import LAT0, LON0, offset

from circles import io
from circles.config import config_from_dict
from circles.pipeline import StudyResult, run
from circles.report import ReportRequest, write_xlsx_atomic
from circles.result import to_json
from circles.settings import WGS84

#: Text that spreadsheets read as formulas, and a harmless Chinese name.
PAYLOADS = [
    '=HYPERLINK("http://evil.example","红塔区")',
    "=cmd|' /C calc'!A0",
    "@SUM(1+1)",
    "+1",
    "-2+3",
    "\t=1",
    "\r=1",
    "红塔区",
]
HARMLESS = {"红塔区"}
DANGER = ("=", "+", "-", "@", "\t", "\r")


def expected(payload: str) -> str:
    """The payload as a spreadsheet output must hold it."""
    return payload if payload in HARMLESS else "'" + payload


def in_xlsx(text: str) -> str:
    """``text`` as read back from an XLSX file (XML turns a carriage return into \\n)."""
    return text.replace("\r", "\n")


def xy(x: float, y: float) -> tuple[float, float]:
    """(lon, lat) ``x`` m east and ``y`` m north of the origin."""
    return offset(*offset(LON0, LAT0, 90.0, x), 0.0, y)


# --------------------------------------------------------------------------- units


@pytest.mark.parametrize("payload", PAYLOADS)
def test_neutralise_text(payload: str) -> None:
    assert io.neutralise_text(payload) == expected(payload)
    assert not io.neutralise_text(payload).startswith(DANGER)


@pytest.mark.parametrize("value", [-3, -2.5, 0, 1.5, np.int64(-7), np.float64(-0.5), None, True])
def test_neutralise_text_keeps_other_values(value: Any) -> None:
    assert io.neutralise_text(value) is value


@pytest.mark.parametrize("payload", PAYLOADS)
def test_neutralise_formulas_text_only(payload: str) -> None:
    df = pd.DataFrame(
        {
            "name": [payload, "ok", None],
            "as_text": ["-3", "4", np.nan],
            "count": [-3, 4, 5],
            "share": [-0.5, np.nan, 1.0],
            "flag": [True, False, True],
            "kind": pd.Categorical([payload, "b", "b"]),
            "mixed": [-1, payload, 2.5],
            "text": pd.array([payload, None, "x"], dtype="string"),
        }
    )
    out = io.neutralise_formulas(df)
    assert out["name"].tolist()[:2] == [expected(payload), "ok"]
    assert pd.isna(out["name"].iloc[2])
    assert out["as_text"].iloc[0] == "'-3"  # text that looks like a number is text
    for col in ("count", "share", "flag"):  # numbers stay numbers
        assert out[col].dtype == df[col].dtype
        pd.testing.assert_series_equal(out[col], df[col])
    assert out["kind"].iloc[0] == expected(payload)
    assert out["mixed"].tolist() == [-1, expected(payload), 2.5]
    assert out["text"].iloc[0] == expected(payload)
    assert df["name"].iloc[0] == payload  # the input is not changed
    headers = io.neutralise_formulas(pd.DataFrame({payload: [1]})).columns.tolist()
    assert headers == [expected(payload)]


def test_neutralise_formulas_returns_a_clean_table_itself() -> None:
    df = pd.DataFrame({"name": ["红塔区", "a-b"], "n": [-1, 2]})
    assert io.neutralise_formulas(df) is df


@pytest.mark.parametrize("payload", PAYLOADS)
def test_xlsx_cells_are_text_never_formulas(payload: str, tmp_path: Path) -> None:
    from openpyxl import load_workbook

    df = pd.DataFrame({"name": [payload], "n": [-3], "x": [-2.5], payload: ["-3"]})
    path = write_xlsx_atomic({"s": df}, tmp_path / "t.xlsx")
    ws = load_workbook(path)["s"]
    cells = {c.coordinate: c for row in ws.iter_rows() for c in row}
    assert all(c.data_type != "f" for c in cells.values())
    assert cells["A2"].value == in_xlsx(expected(payload))
    assert cells["A2"].data_type == "s"
    assert (cells["B2"].value, cells["B2"].data_type) == (-3, "n")
    assert (cells["C2"].value, cells["C2"].data_type) == (-2.5, "n")
    assert cells["D1"].value == in_xlsx(expected(payload))
    assert cells["D2"].value == "'-3"


def test_json_text_is_strict() -> None:
    doc = {
        "nan": math.nan,
        "inf": np.float64(np.inf),
        "list": [-math.inf, 1.5, np.int64(2), (np.nan, "x")],
        "array": np.array([np.nan, 1.0]),
        "ok": True,
    }
    text = io.json_text(doc)
    assert json.loads(text, parse_constant=_no_constant) == {
        "nan": None,
        "inf": None,
        "list": [None, 1.5, 2, [None, "x"]],
        "array": [None, 1.0],
        "ok": True,
    }
    assert json.loads(to_json(doc), parse_constant=_no_constant)["nan"] is None
    # allow_nan=False: a non-finite number that escapes (through ``default``) raises
    with pytest.raises(ValueError, match="not JSON compliant"):
        io.json_text({"x": object()}, default=lambda o: math.nan)


def _no_constant(name: str) -> Any:
    raise AssertionError(f"not strict JSON: {name}")


# --------------------------------------------------------------------------- a study


def write_study(tmp: Path) -> dict[str, Any]:
    """The hand-drawn study's files under ``tmp``; its configuration as a dict."""
    n = len(PAYLOADS)
    nodes = {2 * i + j + 1: xy(100.0 * i, 100.0 * j) for i in range(n) for j in range(2)}
    ways = [[2 * i + 1, 2 * i + 2] for i in range(n)]
    ways += [[2 * i + 1 for i in range(n)], [2 * i + 2 for i in range(n)]]
    lines = ['<?xml version="1.0" encoding="UTF-8"?>', '<osm version="0.6">']
    lines += [
        f'<node id="{k}" lat="{lat:.10f}" lon="{lon:.10f}"/>' for k, (lon, lat) in nodes.items()
    ]
    for w, refs in enumerate(ways, start=101):
        lines += [f'<way id="{w}">', *(f'<nd ref="{r}"/>' for r in refs)]
        lines += ['<tag k="highway" v="residential"/>', "</way>"]
    (tmp / "ladder.osm").write_text("\n".join([*lines, "</osm>"]) + "\n", encoding="utf-8")
    rungs = [
        shapely.Polygon(
            [
                xy(100 * i - 50, -50),
                xy(100 * i + 50, -50),
                xy(100 * i + 50, 150),
                xy(100 * i - 50, 150),
            ]
        )
        for i in range(n)
    ]
    empty = shapely.Polygon([xy(0, 400), xy(100, 400), xy(100, 500), xy(0, 500)])
    gpd.GeoDataFrame(
        {
            "id": [f"c{i}" for i in range(n + 1)],
            "name": [*PAYLOADS, "无街道社区"],
            "county": [*PAYLOADS, "红塔区"],
        },
        geometry=[*rungs, empty],
        crs=WGS84,
    ).to_file(tmp / "communities.geojson", driver="GeoJSON")
    gpd.GeoDataFrame(
        {"id": [f"f{i}" for i in range(2 * n)], "name": PAYLOADS * 2, "category": "fitness"},
        geometry=[shapely.Point(xy(100 * i, 50)) for i in range(n)]
        + [shapely.Point(xy(100 * i, 20_000)) for i in range(n)],  # outside: rejected
        crs=WGS84,
    ).to_file(tmp / "facilities.geojson", driver="GeoJSON")
    return {
        "study": {"name": "cells", "output_dir": str(tmp / "out"), "maps_dir": str(tmp / "maps")},
        "network": {"source": "ladder.osm"},
        "communities": {"source": "communities.geojson", "attribute_columns": ["county"]},
        "facilities": {
            "osm": False,
            "categories": ["fitness", "elderly_canteen"],  # no canteen at all: NaN minutes
            "files": [{"path": "facilities.geojson"}],
        },
        "isochrones": {"enabled": False},
        "map": {"enabled": False},
    }


@pytest.fixture(scope="module", params=["zh", "en"])
def study(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> StudyResult:
    tmp = tmp_path_factory.mktemp(f"cells_{request.param}")
    cfg = config_from_dict(write_study(tmp), base_dir=tmp)
    return run(cfg, write=True, report=ReportRequest(lang=request.param))


def read_csv_cells(path: Path) -> list[list[str]]:
    with open(path, encoding="utf-8-sig", newline="") as f:
        return list(csv.reader(f))


def csv_outputs(res: StudyResult) -> list[Path]:
    paths = sorted(Path(p) for p in res.outputs.values() if str(p).endswith(".csv"))
    names = {p.name for p in paths}
    assert {"coverage.csv", "facility_rejects.csv", "indicators.csv"} <= names
    assert {"problem_ledger.csv", "summary_by_area.csv"} <= names
    return paths


def test_no_csv_cell_starts_like_a_formula(study: StudyResult) -> None:
    for path in csv_outputs(study):
        for row in read_csv_cells(path):
            bad = [c for c in row if c.startswith(DANGER)]
            assert not bad, (path.name, bad)


def test_no_xlsx_cell_is_a_formula(study: StudyResult) -> None:
    from openpyxl import load_workbook

    wb = load_workbook(study.outputs["report:indicators_xlsx"])
    numbers = 0
    for ws in wb.worksheets:
        for row in ws.iter_rows():
            for c in row:
                assert c.data_type != "f", (ws.title, c.coordinate, c.value)
                if isinstance(c.value, str):
                    assert not c.value.startswith(DANGER), (ws.title, c.coordinate, c.value)
                elif isinstance(c.value, int | float) and not isinstance(c.value, bool):
                    assert c.data_type == "n"
                    numbers += 1
    assert numbers > 0  # shares and minutes stay numbers


@pytest.mark.parametrize("i", range(len(PAYLOADS)), ids=[repr(p) for p in PAYLOADS])
def test_each_payload_is_neutralised_in_every_table(study: StudyResult, i: int) -> None:
    from openpyxl import load_workbook

    payload = PAYLOADS[i]
    out = Path(study.outputs["coverage_csv"]).parent
    cov = pd.read_csv(out / "coverage.csv", encoding="utf-8-sig", dtype={"name": str})
    mine = cov[cov["community_id"] == f"c{i}"]
    assert set(mine["name"]) == {expected(payload)}
    for col in ("residents", "share_15_min", "median_min"):  # numbers stay numeric
        assert pd.api.types.is_float_dtype(cov[col]), col
    rejects = pd.read_csv(out / "facility_rejects.csv", encoding="utf-8-sig", dtype=str)
    # a name with a leading tab or carriage return may be trimmed when read; what is
    # written is the name as read, neutralised
    names = set(rejects.loc[rejects["facility_id"] == f"f{len(PAYLOADS) + i}", "name"])
    assert names in ({expected(payload)}, {expected(payload.strip())})
    ledger = read_csv_cells(out / "report" / "problem_ledger.csv")
    assert any(expected(payload) in row for row in ledger[1:])
    wb = load_workbook(study.outputs["report:indicators_xlsx"])
    texts = {c.value for ws in wb.worksheets for row in ws.iter_rows() for c in row}
    assert in_xlsx(expected(payload)) in texts
    # the GeoPackage is no spreadsheet: planners see the true names in QGIS
    comm = gpd.read_file(study.outputs["gpkg"], layer="communities")
    assert comm.loc[comm["community_id"] == f"c{i}", "name"].tolist() == [payload]


# --------------------------------------------------------------------------- strict JSON


def test_summary_and_manifest_are_strict_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """NaN and infinities (a study's own, and injected ones) are written as null."""
    from circles import summary

    real = summary.study_summary

    def with_non_finite(*args: Any, **kwargs: Any) -> dict[str, Any]:
        doc = real(*args, **kwargs)
        return {**doc, "probe": {"nan": math.nan, "inf": np.float64(-np.inf), "v": [np.nan]}}

    monkeypatch.setattr(summary, "study_summary", with_non_finite)
    cfg = config_from_dict(write_study(tmp_path), base_dir=tmp_path)
    cfg = replace(cfg, isochrones=replace(cfg.isochrones, buffer_m=math.inf))  # not used
    res = run(cfg, write=True, report=ReportRequest(lang="en"))
    docs = {}
    for key in ("summary_json", "manifest_json"):
        text = Path(res.outputs[key]).read_text(encoding="utf-8")
        docs[key] = json.loads(text, parse_constant=_no_constant)
    assert docs["summary_json"]["probe"] == {"nan": None, "inf": None, "v": [None]}
    assert docs["manifest_json"]["parameters"]["isochrones"]["buffer_m"] is None
