"""Planner facility files (good rows, rejects with reasons) and snapping to the network."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from conftest import LAT0, LON0, edge_of, make_network, offset, square_points, t_points
from pyproj import Transformer

from circles._errors import ConfigError, DataFileError, InputDataError
from circles.facilities import (
    FacilityFile,
    edge_lines,
    read_facility_file,
    read_facility_files,
    snap,
    snap_facilities,
)
from circles.network import WalkNetwork

CATS = ("clinic", "market")
AREA = shapely.box(24.8, 60.1, 25.1, 60.3)  # around central Helsinki, EPSG:4326

# --------------------------------------------------------------------------- tables

TABLE_ROWS = [
    # id, category, name, lon, lat, expected reason ("" = a facility)
    ("a1", "clinic", "Good one", "24.94", "60.17", ""),
    ("a2", "clinic", "No lon", "", "60.17", "missing coordinates"),
    ("a3", "clinic", "Bad lon", "abc", "60.17", "non-numeric coordinates"),
    ("a4", "spaceport", "Unknown", "24.94", "60.17", "unknown category 'spaceport'"),
    ("a5", "clinic", "Far away", "30.0", "60.17", "outside study area"),
    ("a1", "market", "Dup id", "24.95", "60.17", "duplicate id 'a1'"),
    ("a6", "market", "Good two", "24.95", "60.18", ""),
    ("a7", "", "No category", "24.95", "60.18", "missing category"),
    ("", "market", "No id", "24.95", "60.18", "missing id"),
    ("a8", "clinic", "Off the globe", "200", "60", "coordinates out of range"),
]


def _table() -> pd.DataFrame:
    return pd.DataFrame(
        [r[:5] for r in TABLE_ROWS], columns=["id", "category", "name", "lon", "lat"]
    )


def _check_split(fac: gpd.GeoDataFrame, rej: pd.DataFrame, rows: list[tuple]) -> None:
    """Every row is either a facility or a reject with the expected reason."""
    assert len(fac) + len(rej) == len(rows)  # nothing silently dropped
    good = [r for r in rows if r[-1] == ""]
    assert fac["facility_id"].tolist() == [r[0] for r in good]
    assert fac["category"].tolist() == [r[1] for r in good]
    assert fac["name"].tolist() == [r[2] for r in good]
    assert fac.crs.to_string() == "EPSG:4326"
    want = {i + 1: r[-1] for i, r in enumerate(rows) if r[-1]}
    got = dict(zip(rej["row"].tolist(), rej["reason"].tolist(), strict=True))
    assert got == want
    assert {"source", "row", "facility_id", "reason", "name"} <= set(rej.columns)


def test_csv(tmp_path: Path) -> None:
    path = tmp_path / "list.csv"
    _table().to_csv(path, index=False)
    fac, rej = read_facility_file(FacilityFile(str(path)), categories=CATS, area=AREA)
    _check_split(fac, rej, TABLE_ROWS)
    assert (rej["source"] == str(path)).all()
    np.testing.assert_allclose(fac.geometry.x, [24.94, 24.95])
    np.testing.assert_allclose(fac.geometry.y, [60.17, 60.18])


def test_csv_chinese_headers_gb18030(tmp_path: Path) -> None:
    path = tmp_path / "canteens.csv"
    df = pd.DataFrame({"名称": ["长者食堂"], "经度": ["24.94"], "纬度": ["60.17"]})
    df.to_csv(path, index=False, encoding="gb18030")
    spec = FacilityFile(str(path), category="clinic", name_column="名称")
    fac, rej = read_facility_file(spec, categories=CATS)
    assert rej.empty
    assert fac["name"].tolist() == ["长者食堂"]
    assert fac["facility_id"].tolist() == ["canteens:1"]  # no id column: file:row


def test_xlsx(tmp_path: Path) -> None:
    pytest.importorskip("openpyxl")
    df = _table()
    for col in ("lon", "lat"):  # real numbers in the sheet where they are numbers
        num = pd.to_numeric(df[col], errors="coerce")
        df[col] = [n if np.isfinite(n) else (s or None) for n, s in zip(num, df[col], strict=True)]
    df = df.replace({"": None})
    path = tmp_path / "list.xlsx"
    df.to_excel(path, index=False, sheet_name="canteens")
    fac, rej = read_facility_file(
        FacilityFile(str(path), sheet="canteens"), categories=CATS, area=AREA
    )
    _check_split(fac, rej, TABLE_ROWS)


SPATIAL_ROWS = [
    ("b1", "clinic", "Point", "point", ""),
    ("b2", "clinic", "Nothing", None, "missing geometry"),
    ("b3", "spaceport", "Unknown", "point", "unknown category 'spaceport'"),
    ("b4", "clinic", "Far away", "far", "outside study area"),
    ("b1", "market", "Dup id", "point", "duplicate id 'b1'"),
    ("b5", "market", "Second", "point2", ""),
]


def _spatial(rows: list[tuple], crs: str) -> gpd.GeoDataFrame:
    shapes = {
        "point": shapely.Point(24.94, 60.17),
        "point2": shapely.Point(24.95, 60.18),
        "far": shapely.Point(30.0, 60.17),
        None: None,
    }
    gdf = gpd.GeoDataFrame(
        {
            "id": [r[0] for r in rows],
            "category": [r[1] for r in rows],
            "name": [r[2] for r in rows],
        },
        geometry=[shapes[r[3]] for r in rows],
        crs="EPSG:4326",
    )
    return gdf.to_crs(crs)


@pytest.mark.parametrize(
    ("suffix", "crs"),
    [(".geojson", "EPSG:4326"), (".gpkg", "EPSG:3067"), (".shp", "EPSG:32635")],
)
def test_spatial_files(tmp_path: Path, suffix: str, crs: str) -> None:
    path = tmp_path / f"list{suffix}"
    _spatial(SPATIAL_ROWS, crs).to_file(path, engine="pyogrio")
    fac, rej = read_facility_file(FacilityFile(str(path)), categories=CATS, area=AREA)
    _check_split(fac, rej, SPATIAL_ROWS)
    np.testing.assert_allclose(fac.geometry.x, [24.94, 24.95], atol=1e-9)
    np.testing.assert_allclose(fac.geometry.y, [60.17, 60.18], atol=1e-9)


def test_polygon_facilities_keep_their_shape(tmp_path: Path) -> None:
    path = tmp_path / "parks.geojson"
    park = shapely.box(24.94, 60.17, 24.941, 60.171)
    gpd.GeoDataFrame({"id": ["p1"]}, geometry=[park], crs=4326).to_file(path)
    fac, rej = read_facility_file(FacilityFile(str(path), category="market"), categories=CATS)
    assert rej.empty
    assert fac.geometry.iloc[0].equals_exact(park, tolerance=1e-9)


def test_projected_xy_columns(tmp_path: Path) -> None:
    to_utm = Transformer.from_crs("EPSG:4326", "EPSG:32635", always_xy=True)
    x, y = to_utm.transform([24.94, 24.95], [60.17, 60.18])
    path = tmp_path / "xy.csv"
    pd.DataFrame({"id": ["u1", "u2"], "E": x, "N": y}).to_csv(path, index=False)
    spec = FacilityFile(str(path), category="clinic", x_column="E", y_column="N", crs="EPSG:32635")
    fac, rej = read_facility_file(spec, categories=CATS, area=AREA)
    assert rej.empty
    np.testing.assert_allclose(fac.geometry.x, [24.94, 24.95], atol=1e-9)
    np.testing.assert_allclose(fac.geometry.y, [60.17, 60.18], atol=1e-9)


def test_duplicate_ids_across_files(tmp_path: Path) -> None:
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    pd.DataFrame({"id": ["x1", "x2"], "lon": [24.94, 24.95], "lat": [60.17, 60.18]}).to_csv(
        a, index=False
    )
    pd.DataFrame({"id": ["x2", "x3"], "lon": [24.94, 24.95], "lat": [60.17, 60.18]}).to_csv(
        b, index=False
    )
    fac, rej = read_facility_files(
        [FacilityFile(str(a), category="clinic"), FacilityFile(str(b), category="market")],
        categories=CATS,
    )
    assert fac["facility_id"].tolist() == ["x1", "x2", "x3"]
    assert rej["facility_id"].tolist() == ["x2"]
    assert rej["reason"].iloc[0] == "duplicate id 'x2' across files"
    assert rej["source"].iloc[0] == str(b)


def test_unreadable_files(tmp_path: Path) -> None:
    bad_xlsx = tmp_path / "broken.xlsx"
    bad_xlsx.write_bytes(b"PK\x03\x04 this is no spreadsheet")
    with pytest.raises(DataFileError, match=r"broken\.xlsx: cannot read facility file"):
        read_facility_file(FacilityFile(str(bad_xlsx)), categories=CATS)
    bad_json = tmp_path / "broken.geojson"
    bad_json.write_text('{"type": "FeatureCollection", "features": [', encoding="utf-8")
    with pytest.raises(DataFileError, match=r"broken\.geojson: cannot read facility file"):
        read_facility_file(FacilityFile(str(bad_json)), categories=CATS)
    doc = tmp_path / "list.docx"
    doc.write_bytes(b"x")
    with pytest.raises(DataFileError, match=r"unsupported facility file type '\.docx'"):
        read_facility_file(FacilityFile(str(doc)), categories=CATS)
    with pytest.raises(DataFileError, match=r"nowhere\.csv: facility file not found"):
        read_facility_file(FacilityFile(str(tmp_path / "nowhere.csv")), categories=CATS)


def test_unusable_tables(tmp_path: Path) -> None:
    path = tmp_path / "addresses.csv"
    pd.DataFrame({"id": ["1"], "category": ["clinic"], "address": ["Mannerheimintie 1"]}).to_csv(
        path, index=False
    )
    with pytest.raises(InputDataError, match="no coordinate columns found"):
        read_facility_file(FacilityFile(str(path)), categories=CATS)
    with pytest.raises(InputDataError, match="no column 'E' for x"):
        read_facility_file(FacilityFile(str(path), x_column="E", y_column="N"), categories=CATS)
    coords = tmp_path / "coords.csv"
    pd.DataFrame({"lon": [24.94], "lat": [60.17]}).to_csv(coords, index=False)
    with pytest.raises(InputDataError, match="no 'category' column"):
        read_facility_file(FacilityFile(str(coords)), categories=CATS)
    with pytest.raises(ConfigError, match="category 'canteen' is not in the profile"):
        read_facility_file(FacilityFile(str(coords), category="canteen"), categories=CATS)


# --------------------------------------------------------------------------- snapping


def _points(*lonlat: tuple[float, float]) -> gpd.GeoSeries:
    return gpd.GeoSeries([shapely.Point(p) for p in lonlat], crs="EPSG:4326")


def test_snap_distance_and_position(t_network: WalkNetwork) -> None:
    net = t_network
    pts = t_points()
    on_edge = offset(*pts[1], 90.0, 25.0)  # 25 % of the way from node 1 to node 2
    near = offset(*on_edge, 180.0, 50.0)  # 50 m south of the street
    far = offset(*on_edge, 180.0, 500.0)  # 500 m south: nothing to walk to
    s = snap(net, _points(near, far))
    e, flipped = edge_of(net, 1, 2)
    assert s["status"].tolist() == ["snapped", "unreachable"]
    assert s["edge"].tolist() == [e, -1]
    assert s["snap_m"].iloc[0] == pytest.approx(50.0, abs=0.5)
    frac = s["frac"].iloc[0]
    assert (1 - frac if flipped else frac) == pytest.approx(0.25, abs=1e-3)
    assert np.isnan(s["snap_m"].iloc[1])
    assert np.isnan(s["frac"].iloc[1])
    assert not s["near_island"].any()
    # a larger limit reaches the far one
    s2 = snap(net, _points(far), max_snap_m=600.0)
    assert s2["status"].iloc[0] == "snapped"
    assert s2["snap_m"].iloc[0] == pytest.approx(500.0, abs=0.5)


def test_snap_beyond_the_end_of_a_street(t_network: WalkNetwork) -> None:
    pts = t_points()
    beyond = offset(*pts[3], 90.0, 30.0)  # 30 m past the east end (node 3)
    s = snap(t_network, _points(beyond))
    e, flipped = edge_of(t_network, 2, 3)
    assert s["edge"].iloc[0] == e
    assert s["frac"].iloc[0] == pytest.approx(0.0 if flipped else 1.0, abs=1e-9)
    assert s["snap_m"].iloc[0] == pytest.approx(30.0, abs=0.5)


def test_polygon_intersecting_an_edge_has_no_access_walk(t_network: WalkNetwork) -> None:
    pts = t_points()
    mid = offset(*pts[2], 90.0, 50.0)  # middle of edge 2-3
    to_utm = Transformer.from_crs("EPSG:4326", t_network.crs, always_xy=True)
    to_wgs = Transformer.from_crs(t_network.crs, "EPSG:4326", always_xy=True)
    cx, cy = to_utm.transform(*mid)
    square = shapely.box(cx - 10, cy - 10, cx + 10, cy + 10)  # a 20 m square park
    poly = shapely.transform(square, lambda xy: np.column_stack(to_wgs.transform(*xy.T)))
    s = snap(t_network, gpd.GeoSeries([poly], crs="EPSG:4326"))
    e, _ = edge_of(t_network, 2, 3)
    assert s["status"].iloc[0] == "snapped"
    assert s["edge"].iloc[0] == e
    assert s["snap_m"].iloc[0] == 0.0


def test_missing_geometry_and_empty_input(t_network: WalkNetwork) -> None:
    s = snap(t_network, gpd.GeoSeries([None, shapely.Point()], crs="EPSG:4326"))
    assert s["status"].tolist() == ["unreachable", "unreachable"]
    assert len(snap(t_network, gpd.GeoSeries([], crs="EPSG:4326"))) == 0
    with pytest.raises(InputDataError, match="no CRS"):
        snap(t_network, gpd.GeoSeries([shapely.Point(LON0, LAT0)]))
    with pytest.raises(ConfigError, match="max_snap_m must be >= 0"):
        snap(t_network, _points((LON0, LAT0)), max_snap_m=-1.0)


def test_facility_on_a_dropped_piece_is_reported() -> None:
    pts = square_points()
    far_a = offset(*pts[2], 90.0, 300.0)  # a 40 m piece 300 m east of the square
    far_b = offset(*far_a, 90.0, 40.0)
    pts.update({10: far_a, 11: far_b})
    net = make_network(pts, [(1, 2), (2, 3), (3, 4), (4, 1), (10, 11)])
    assert net.report["nodes_in_small_components"] == 2
    on_island = offset(*offset(*far_a, 90.0, 20.0), 180.0, 20.0)  # 20 m from the piece
    between = offset(*pts[2], 90.0, 170.0)  # 170 m from the square, 130 m from the piece
    at_home = offset(*pts[1], 225.0, 10.0)  # next to the square only
    gdf = gpd.GeoDataFrame(
        {"facility_id": ["i", "b", "h"]},
        geometry=[shapely.Point(p) for p in (on_island, between, at_home)],
        crs="EPSG:4326",
    )
    out = snap_facilities(net, gdf)
    assert "status" not in gdf  # the input is not changed
    assert out["status"].tolist() == ["island", "snapped", "snapped"]
    assert out["near_island"].tolist() == [False, True, False]
    assert out["edge"].iloc[0] == -1
    assert out["snap_m"].iloc[0] == pytest.approx(20.0, abs=0.5)
    assert out["snap_m"].iloc[1] == pytest.approx(170.0, abs=0.5)
    assert out["snap_m"].iloc[2] == pytest.approx(10.0, abs=0.5)


def test_snap_against_brute_force_on_helsinki(helsinki_net: WalkNetwork) -> None:
    net = helsinki_net
    rng = np.random.default_rng(11)
    x = rng.uniform(net.x.min(), net.x.max(), 300)
    y = rng.uniform(net.y.min(), net.y.max(), 300)
    pts = gpd.GeoSeries(shapely.points(x, y), crs=net.crs).to_crs("EPSG:4326")
    s = snap(net, pts, max_snap_m=150.0)
    lines = edge_lines(net)
    p_utm = shapely.points(x, y)
    brute = shapely.distance(p_utm[:, None], lines[None, :]).min(axis=1)
    snapped = (s["status"] == "snapped").to_numpy()
    assert snapped.sum() > 100
    np.testing.assert_array_equal(snapped, brute <= 150.0)
    np.testing.assert_allclose(s["snap_m"].to_numpy()[snapped], brute[snapped], atol=1e-6)
    # the snap point at frac along the edge is snap_m away from the facility
    e = s["edge"].to_numpy()[snapped]
    f = s["frac"].to_numpy()[snapped]
    px = net.x[net.u[e]] + f * (net.x[net.v[e]] - net.x[net.u[e]])
    py = net.y[net.u[e]] + f * (net.y[net.v[e]] - net.y[net.u[e]])
    np.testing.assert_allclose(
        np.hypot(px - x[snapped], py - y[snapped]), brute[snapped], atol=1e-4
    )


def test_local_snap_index_gives_the_same_result_as_the_whole_network(helsinki_path):
    """A few facilities snap against an index of the nearby edges only (fast updates);
    the result must equal snapping against the whole network's index."""
    import circles.facilities as fmod
    from circles.io import load_network

    net = load_network(helsinki_path)  # a fresh network: no cached index yet
    rng = np.random.default_rng(7)
    lon = rng.uniform(net.lon.min() - 0.002, net.lon.max() + 0.002, 30)
    lat = rng.uniform(net.lat.min() - 0.001, net.lat.max() + 0.001, 30)
    pts = list(gpd.points_from_xy(lon, lat))
    # an area crossed by several streets (ties at distance 0)
    pts.append(shapely.box(24.940, 60.168, 24.944, 60.170))
    geoms = gpd.GeoSeries(pts, crs="EPSG:4326")
    assert len(geoms) <= fmod.LOCAL_SNAP_MAX
    assert net not in fmod._TREES
    local = fmod.snap(net, geoms, max_snap_m=100.0)
    assert net not in fmod._TREES  # the local path built no whole-network index
    fmod._trees(net)
    whole = fmod.snap(net, geoms, max_snap_m=100.0)
    pd.testing.assert_frame_equal(local, whole)
    assert (local["status"] == "snapped").sum() >= 10
    assert (local["status"] == "unreachable").sum() >= 1
