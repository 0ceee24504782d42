"""In-place GeoPackage changes: the result reads back as a fresh GDAL write of the data."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from shapely.geometry import MultiPolygon, Point, box

from circles import gpkg_inplace

pyogrio = pytest.importorskip("pyogrio")


def _areas(shift: dict[str, float]) -> gpd.GeoDataFrame:
    """Three categories with two rows each; category c's squares moved by shift[c]."""
    rows, geoms = [], []
    for i, cat in enumerate(["a", "b", "c"]):
        for m in (5.0, 10.0):
            d = shift.get(cat, 0.0)
            rows.append({"kind": "category", "category": cat, "minutes": m, "residents": i * m})
            geoms.append(MultiPolygon([box(i + d, 0, i + d + m / 20, m / 20)]))
    return gpd.GeoDataFrame(rows, geometry=geoms, crs=4326)


def _write(gdf: gpd.GeoDataFrame, path: Path, layer: str = "service_areas") -> None:
    gdf.to_file(path, layer=layer, driver="GPKG", engine="pyogrio")


def _rtree(path: Path, layer: str) -> list[tuple]:
    con = sqlite3.connect(path)
    try:
        return con.execute(f'SELECT * FROM "rtree_{layer}_geom" ORDER BY id').fetchall()
    finally:
        con.close()


def _extent(path: Path, layer: str) -> tuple:
    con = sqlite3.connect(path)
    try:
        return con.execute(
            "SELECT min_x, min_y, max_x, max_y FROM gpkg_contents WHERE table_name = ?", (layer,)
        ).fetchone()
    finally:
        con.close()


def test_replace_rows_equals_a_fresh_write(tmp_path: Path) -> None:
    old, new = _areas({}), _areas({"b": 5.0})  # b moves east: the layer extent grows
    gpkg, fresh, scratch = tmp_path / "a.gpkg", tmp_path / "fresh.gpkg", tmp_path / "s.gpkg"
    _write(old, gpkg)
    _write(new, fresh)
    _write(new[new["category"] == "b"], scratch)
    old_extent = _extent(gpkg, "service_areas")
    con = gpkg_inplace.connect(gpkg)
    try:
        assert gpkg_inplace.replace_rows(con, "service_areas", scratch, "category", ["b"])
    finally:
        con.close()
    got = pyogrio.read_dataframe(gpkg, layer="service_areas")
    want = pyogrio.read_dataframe(fresh, layer="service_areas")
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    # the spatial index and the layer extent follow the new rows
    assert _rtree(gpkg, "service_areas") == _rtree(fresh, "service_areas")
    assert _extent(gpkg, "service_areas") == pytest.approx(_extent(fresh, "service_areas"))
    assert _extent(gpkg, "service_areas")[2] > old_extent[2]


def test_rows_of_new_keys_are_added_at_the_end(tmp_path: Path) -> None:
    full = _areas({"b": 0.5})
    old = _areas({})
    old = old[old["category"] != "c"]  # c gets its first rows in the update
    gpkg, fresh, scratch = tmp_path / "a.gpkg", tmp_path / "fresh.gpkg", tmp_path / "s.gpkg"
    _write(old, gpkg)
    _write(full, fresh)
    _write(full[full["category"].isin(["b", "c"])], scratch)
    con = gpkg_inplace.connect(gpkg)
    try:
        assert gpkg_inplace.replace_rows(
            con, "service_areas", scratch, "category", ["b"], append=["c"]
        )
    finally:
        con.close()
    pd.testing.assert_frame_equal(
        pyogrio.read_dataframe(gpkg, layer="service_areas"),
        pyogrio.read_dataframe(fresh, layer="service_areas"),
        check_exact=True,
    )
    assert _rtree(gpkg, "service_areas") == _rtree(fresh, "service_areas")
    assert pyogrio.read_info(gpkg, layer="service_areas")["features"] == len(full)
    # a key that is already there is not added twice
    con = gpkg_inplace.connect(gpkg)
    try:
        assert not gpkg_inplace.replace_rows(
            con, "service_areas", scratch, "category", [], append=["c"]
        )
    finally:
        con.close()


def test_replace_rows_declines_other_row_counts(tmp_path: Path) -> None:
    old = _areas({})
    gpkg, scratch = tmp_path / "a.gpkg", tmp_path / "s.gpkg"
    _write(old, gpkg)
    before = gpkg.read_bytes()
    _write(old[old["category"] == "b"].iloc[:1], scratch)  # one row instead of two
    con = gpkg_inplace.connect(gpkg)
    try:
        assert not gpkg_inplace.replace_rows(con, "service_areas", scratch, "category", ["b"])
    finally:
        con.close()
    assert gpkg.read_bytes() == before


def test_replace_rows_declines_other_columns(tmp_path: Path) -> None:
    old = _areas({})
    gpkg, scratch = tmp_path / "a.gpkg", tmp_path / "s.gpkg"
    _write(old, gpkg)
    _write(old[old["category"] == "b"].assign(extra=1.0), scratch)
    con = gpkg_inplace.connect(gpkg)
    try:
        assert not gpkg_inplace.replace_rows(con, "service_areas", scratch, "category", ["b"])
    finally:
        con.close()


def test_update_columns_in_chunks_equals_a_fresh_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    n = 250
    rng = np.random.default_rng(1)
    nodes = gpd.GeoDataFrame(
        {"node_id": np.arange(n), "x_min": rng.random(n), "x_n5": rng.integers(0, 4, n)},
        geometry=[Point(float(i), 0.0) for i in range(n)],
        crs=4326,
    )
    gpkg, fresh = tmp_path / "a.gpkg", tmp_path / "fresh.gpkg"
    _write(nodes, gpkg, "nodes")
    changed = nodes.copy()
    at = np.flatnonzero(rng.random(n) < 0.5)
    minutes = rng.random(at.size) * 10
    minutes[::7] = np.inf  # beyond the cut-off: stored as NULL, read back as NaN
    changed.loc[at, "x_min"] = minutes
    changed.loc[at, "x_n5"] = 9
    changed["x_min"] = changed["x_min"].where(np.isfinite(changed["x_min"]), np.nan)
    _write(changed, fresh, "nodes")
    monkeypatch.setattr(gpkg_inplace, "ROWS_PER_STATEMENT", 17)  # several statements
    con = gpkg_inplace.connect(gpkg)
    try:
        gpkg_inplace.update_columns(
            con,
            "nodes",
            at + 1,
            {"x_min": minutes, "x_n5": np.full(at.size, 9, dtype=np.int64)},
        )
        con.commit()
    finally:
        con.close()
    pd.testing.assert_frame_equal(
        pyogrio.read_dataframe(gpkg, layer="nodes"),
        pyogrio.read_dataframe(fresh, layer="nodes"),
        check_exact=True,
    )


def test_envelope_from_header_and_from_wkb(tmp_path: Path) -> None:
    gpkg = tmp_path / "a.gpkg"
    _write(_areas({}), gpkg)
    con = sqlite3.connect(gpkg)
    try:
        blob = con.execute("SELECT geom FROM service_areas WHERE fid = 3").fetchone()[0]
    finally:
        con.close()
    assert gpkg_inplace.envelope(blob) == (1.0, 1.25, 0.0, 0.25)
    # the same geometry without an envelope in the header: computed from the WKB
    b = bytearray(blob[:8]) + shapely.to_wkb(shapely.box(1, 0, 1.25, 0.25))
    b[3] = 0x01  # little endian, no envelope
    assert gpkg_inplace.envelope(bytes(b)) == (1.0, 1.25, 0.0, 0.25)
    b[3] = 0x11  # the empty flag
    assert gpkg_inplace.envelope(bytes(b)) is None
    assert gpkg_inplace.is_empty(bytes(b)) == 1
    assert gpkg_inplace.envelope(None) is None
    with pytest.raises(ValueError, match="GeoPackage"):
        gpkg_inplace.envelope(b"XX\x00\x01\x00\x00\x00\x00")


def test_failed_change_leaves_the_file_for_a_rewrite(tmp_path: Path) -> None:
    """A GeoPackage copy whose layer lacks the expected table raises sqlite3.Error."""
    gpkg = tmp_path / "a.gpkg"
    _write(_areas({}), gpkg)
    copy = tmp_path / "copy.gpkg"
    shutil.copyfile(gpkg, copy)
    con = gpkg_inplace.connect(copy)
    try:
        with pytest.raises(sqlite3.Error):
            gpkg_inplace.update_columns(con, "no_such_layer", np.array([1]), {"x": np.ones(1)})
    finally:
        con.close()
