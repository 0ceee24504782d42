"""Loading OSM extracts (PBF, XML, GraphML), clipped and corrupt files, features, writers."""

from __future__ import annotations

import bz2
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import GEOD, LAT0, LON0, offset, shared_data, shared_files

from circles._errors import DataFileError, InputDataError, NetworkError
from circles.io import (
    load_network,
    osm_format,
    read_osm_boundaries,
    read_osm_features,
    write_atomic_text,
    write_csv_atomic,
    write_gpkg_atomic,
)
from circles.network import WalkNetwork

UTM = re.compile(r"^EPSG:32[67]\d\d$")


def check_network(net: WalkNetwork, *, real: bool = True) -> None:
    """Invariants every loaded network must satisfy (``real``: a real extract)."""
    assert net.n_nodes > 0
    assert net.n_edges > 0
    assert UTM.match(net.crs), net.crs
    assert np.isfinite(net.length_m).all()
    assert (net.length_m > 0).all()
    assert np.isfinite(net.x).all()
    assert np.isfinite(net.y).all()
    assert net.u.min() >= 0
    assert max(net.u.max(), net.v.max()) < net.n_nodes
    assert (net.u != net.v).all()
    assert set(np.unique(net.direction)) <= {0, 1}
    assert np.unique(net.node_id).size == net.n_nodes
    # lengths are geodesic metres between the edge ends ...
    _, _, d = GEOD.inv(net.lon[net.u], net.lat[net.u], net.lon[net.v], net.lat[net.v])
    np.testing.assert_allclose(net.length_m, np.abs(d), rtol=0, atol=1e-6)
    # ... agree with the metric CRS within the UTM scale error ...
    planar = np.hypot(net.x[net.u] - net.x[net.v], net.y[net.u] - net.y[net.v])
    np.testing.assert_allclose(planar, net.length_m, rtol=2e-3)
    if not real:
        return
    # ... and are street segments, not degrees or kilometres
    assert 1.0 < float(np.median(net.length_m)) < 200.0
    assert net.length_m.max() < 20_000.0
    assert 1.0 < net.length_m.sum() / 1000.0 < 5_000.0


# --------------------------------------------------------------------------- real extracts


def test_helsinki(helsinki_net: WalkNetwork) -> None:
    check_network(helsinki_net)
    assert helsinki_net.crs == "EPSG:32635"
    rep = helsinki_net.report
    assert rep["walkable_ways"] <= rep["highway_ways"]
    assert 50 < helsinki_net.length_m.sum() / 1000 < 150  # central Helsinki: ~89 km


@pytest.mark.shared_data
@pytest.mark.parametrize("path", shared_files("osm", (".pbf", ".osm", ".osm.bz2", ".graphml")))
def test_every_osm_extract_loads(path: Path, shared_network) -> None:
    check_network(shared_network(path))


@pytest.mark.shared_data
@pytest.mark.parametrize("path", shared_files("china", (".pbf", ".osm", ".osm.bz2", ".graphml")))
def test_every_china_extract_loads(path: Path, shared_network) -> None:
    net = shared_network(path)
    check_network(net)
    assert net.crs in {"EPSG:32649", "EPSG:32650"}  # Shenzhen and Hefei: UTM 50N


@pytest.mark.shared_data
def test_pbf_and_xml_of_the_same_area_agree(shared_network) -> None:
    a = shared_network("osm/aguascalientes.osm.pbf")
    b = shared_network("osm/aguascalientes.osm.bz2")
    assert a.n_nodes == b.n_nodes
    assert a.n_edges == b.n_edges
    assert a.length_m.sum() == pytest.approx(b.length_m.sum(), rel=1e-9)


@pytest.mark.slow
@pytest.mark.shared_data
def test_shenzhen_graphml(shared_network) -> None:
    ox = pytest.importorskip("osmnx")
    path = shared_data("china/shenzhen_futian_walk.graphml")
    net = shared_network(path)
    g = ox.load_graphml(path)
    # the osmnx nodes are kept (bends of curved edges are added with negative ids)
    assert (net.node_id >= 0).sum() <= g.number_of_nodes()
    assert (net.node_id >= 0).sum() > 0.95 * g.number_of_nodes()
    assert (net.node_id < 0).any()
    # street length: osmnx's edge lengths, one per direction walkable
    directed_m = float(np.where(net.direction == 0, 2.0, 1.0) @ net.length_m)
    ox_m = sum(d["length"] for _, _, d in g.edges(data=True))
    assert directed_m == pytest.approx(ox_m, rel=0.01)
    assert "footway" in set(net.highway)


@pytest.mark.slow
@pytest.mark.shared_data
def test_liechtenstein_boundaries() -> None:
    b = read_osm_boundaries(shared_data("osm/liechtenstein-latest.osm.pbf"), admin_level=8)
    names = set(b["name"])
    assert {"Vaduz", "Schaan", "Balzers", "Planken", "Triesenberg"} <= names
    assert b.crs.to_string() == "EPSG:4326"
    assert b.geometry.geom_type.isin(["Polygon", "MultiPolygon"]).all()
    assert b.geometry.is_valid.all()


# --------------------------------------------------------------------------- hand-made XML


def _osm_xml(nodes: dict[int, tuple[float, float]], ways: list[tuple[int, list[int], dict]]) -> str:
    out = ['<?xml version="1.0" encoding="UTF-8"?>', '<osm version="0.6" generator="test">']
    for i, (lon, lat) in nodes.items():
        out.append(f'  <node id="{i}" lat="{lat:.9f}" lon="{lon:.9f}"/>')
    for wid, refs, tags in ways:
        out.append(f'  <way id="{wid}">')
        out.extend(f'    <nd ref="{r}"/>' for r in refs)
        out.extend(f'    <tag k="{k}" v="{v}"/>' for k, v in tags.items())
        out.append("  </way>")
    out.append("</osm>")
    return "\n".join(out) + "\n"


WAY_RULES = [
    # (tags, walkable, direction tail is the first node?)
    ({"highway": "residential"}, True),
    ({"highway": "motorway"}, False),
    ({"highway": "motorway", "foot": "yes"}, True),
    ({"highway": "trunk", "sidewalk": "both"}, True),
    ({"highway": "trunk"}, False),
    ({"highway": "service", "access": "private"}, False),
    ({"highway": "service", "access": "private", "foot": "yes"}, True),
    ({"highway": "service", "access": "private", "foot": "designated"}, True),
    ({"highway": "footway", "foot": "no"}, False),
    ({"highway": "construction"}, False),
    ({"highway": "proposed"}, False),
    ({"highway": "pedestrian", "area": "yes"}, False),
    ({"highway": "residential", "oneway": "yes"}, True),
    ({"highway": "footway", "oneway:foot": "yes"}, True),
    ({"highway": "footway", "oneway:foot": "-1"}, True),
    ({"building": "yes"}, False),
]


def test_walking_rules_on_hand_made_xml(tmp_path: Path) -> None:
    nodes: dict[int, tuple[float, float]] = {}
    ways = []
    for k, (tags, _) in enumerate(WAY_RULES):
        a = offset(LON0, LAT0, 0.0, 30.0 * k)  # one short way per rule, 30 m apart
        nodes[2 * k + 1] = a
        nodes[2 * k + 2] = offset(*a, 90.0, 80.0)
        ways.append((100 + k, [2 * k + 1, 2 * k + 2], tags))
    path = tmp_path / "rules.osm"
    path.write_text(_osm_xml(nodes, ways), encoding="utf-8")
    net = load_network(path, keep_largest=False)
    got = set(net.way_id.tolist())
    for k, (tags, walkable) in enumerate(WAY_RULES):
        assert ((100 + k) in got) == walkable, tags
    assert net.report["highway_ways"] == len(WAY_RULES) - 1
    assert net.report["walkable_ways"] == sum(w for _, w in WAY_RULES)

    def edge(wid: int) -> int:
        return int(np.flatnonzero(net.way_id == wid)[0])

    k_oneway = next(k for k, (t, _) in enumerate(WAY_RULES) if t.get("oneway") == "yes")
    assert net.direction[edge(100 + k_oneway)] == 0  # oneway=yes is for vehicles
    k_fwd = next(k for k, (t, _) in enumerate(WAY_RULES) if t.get("oneway:foot") == "yes")
    e = edge(100 + k_fwd)
    assert net.direction[e] == 1
    assert net.node_id[net.u[e]] == 2 * k_fwd + 1  # walkable along the way only
    k_rev = next(k for k, (t, _) in enumerate(WAY_RULES) if t.get("oneway:foot") == "-1")
    e = edge(100 + k_rev)
    assert net.direction[e] == 1
    assert net.node_id[net.u[e]] == 2 * k_rev + 2  # walkable against the way only
    # coordinates in the file have 9 decimals (0.1 mm)
    np.testing.assert_allclose(net.length_m, 80.0, atol=1e-3)


def test_clipped_extract_is_trimmed(tmp_path: Path) -> None:
    pts = {i: offset(LON0, LAT0, 90.0, 50.0 * (i - 1)) for i in (1, 2, 3, 4)}
    pts[5] = offset(*pts[2], 0.0, 60.0)
    ways = [
        (10, [1, 2, 3, 4, 77, 78], {"highway": "residential"}),  # runs off the extract
        (11, [99, 5, 2], {"highway": "footway"}),  # starts outside
        (12, [98, 97], {"highway": "path"}),  # entirely outside
    ]
    path = tmp_path / "clipped.osm.bz2"
    path.write_bytes(bz2.compress(_osm_xml(pts, ways).encode()))
    net = load_network(path)
    check_network(net, real=False)
    assert net.report["segments_outside_extract"] == 4  # 4-77, 77-78, 99-5, 98-97
    assert net.n_nodes == 5
    assert net.n_edges == 4
    assert net.length_m.sum() == pytest.approx(150.0 + 60.0, abs=1e-3)


def test_no_walkable_ways(tmp_path: Path) -> None:
    pts = {1: (LON0, LAT0), 2: offset(LON0, LAT0, 90.0, 50.0)}
    path = tmp_path / "motorway.osm"
    path.write_text(_osm_xml(pts, [(1, [1, 2], {"highway": "motorway"})]), encoding="utf-8")
    with pytest.raises(NetworkError, match="no walkable ways"):
        load_network(path)


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("junk.osm.pbf", b"\x00\x01this is not a protobuf" * 40, "cannot read as OSM PBF"),
        ("cut.osm", b'<osm version="0.6"><node id="1" lat="60.1"', "cannot read as OSM XML"),
        ("notbz2.osm.bz2", b"plain text, not bzip2", "cannot read as OSM XML"),
        ("badnum.osm", b'<osm><node id="x" lat="a" lon="b"/></osm>', "cannot read as OSM XML"),
        ("broken.graphml", b"<graphml><graph", "cannot read as osmnx GraphML"),
        ("empty.osm.pbf", b"", "file is empty"),
    ],
)
def test_corrupt_files(tmp_path: Path, name: str, content: bytes, match: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataFileError, match=match):
        load_network(path)


def test_missing_and_unknown_files(tmp_path: Path) -> None:
    with pytest.raises(DataFileError, match="file not found"):
        load_network(tmp_path / "nowhere.osm.pbf")
    with pytest.raises(DataFileError, match="not a file"):
        load_network(tmp_path)
    (tmp_path / "roads.shp").write_bytes(b"x")
    with pytest.raises(DataFileError, match="unknown OSM file type"):
        load_network(tmp_path / "roads.shp")
    assert osm_format("a.OSM.PBF") == "pbf"
    assert osm_format("a.osm.bz2") == "xml"
    assert osm_format("a.graphml") == "graphml"


# --------------------------------------------------------------------------- features


def test_xml_features(tmp_path: Path) -> None:
    pts = {i: offset(LON0, LAT0, 90.0, 20.0 * i) for i in range(1, 6)}
    nodes_xml = _osm_xml(pts, [])
    extra = (
        '  <node id="50" lat="60.17" lon="24.94"><tag k="amenity" v="clinic"/>'
        '<tag k="name" v="Klinikka"/></node>\n'
        '  <way id="60"><nd ref="1"/><nd ref="2"/><nd ref="3"/><nd ref="4"/><nd ref="1"/>'
        '<tag k="leisure" v="park"/></way>\n'
        '  <way id="61"><nd ref="4"/><nd ref="404"/><tag k="shop" v="bakery"/></way>\n'
        '  <way id="62"><nd ref="4"/><nd ref="5"/><tag k="highway" v="footway"/></way>\n'
    )
    path = tmp_path / "features.osm"
    path.write_text(nodes_xml.replace("</osm>", extra + "</osm>"), encoding="utf-8")
    f = read_osm_features(path)
    assert f.crs.to_string() == "EPSG:4326"
    got = {(r.osm_type, r.osm_id): r for r in f.itertuples()}
    assert set(got) == {("node", 50), ("way", 60), ("way", 61)}
    assert got[("node", 50)].amenity == "clinic"
    assert got[("node", 50)].name == "Klinikka"
    assert got[("way", 61)].geometry.geom_type == "Point"  # clipped: one node left
    assert got[("way", 60)].tags == {"leisure": "park"}
    with pytest.raises(DataFileError, match="file not found"):
        read_osm_features(tmp_path / "missing.osm")


def test_helsinki_features(helsinki_path: Path) -> None:
    f = read_osm_features(helsinki_path)
    assert len(f) > 100
    assert f.crs.to_string() == "EPSG:4326"
    assert f["tags"].map(lambda t: isinstance(t, dict)).all()
    assert (f["tags"].map(lambda t: "amenity" in t) == f["amenity"].notna()).all()


def test_graphml_holds_no_features_or_boundaries(tmp_path: Path) -> None:
    path = tmp_path / "net.graphml"
    path.write_text("<graphml/>", encoding="utf-8")
    with pytest.raises(InputDataError, match="holds no facilities"):
        read_osm_features(path)
    with pytest.raises(InputDataError, match="no administrative boundaries"):
        read_osm_boundaries(path)


# --------------------------------------------------------------------------- writers


def test_atomic_writers(tmp_path: Path) -> None:
    import geopandas as gpd
    import pyogrio
    import shapely

    out = tmp_path / "sub" / "a.txt"
    write_atomic_text(out, "héllo 你好")
    assert out.read_text(encoding="utf-8") == "héllo 你好"
    write_atomic_text(out, "again")
    assert out.read_text(encoding="utf-8") == "again"
    csv = write_csv_atomic(pd.DataFrame({"name": ["瓦杜兹"], "n": [1]}), tmp_path / "t.csv")
    assert csv.read_bytes().startswith(b"\xef\xbb\xbf")  # BOM for Excel
    assert pd.read_csv(csv, encoding="utf-8-sig")["name"].tolist() == ["瓦杜兹"]
    layers = {
        "a": gpd.GeoDataFrame({"k": [1]}, geometry=[shapely.Point(24.9, 60.1)], crs=4326),
        "b": gpd.GeoDataFrame({"k": [2]}, geometry=[shapely.Point(24.8, 60.2)], crs=4326),
    }
    gpkg = write_gpkg_atomic(layers, tmp_path / "o.gpkg")
    assert sorted(pyogrio.list_layers(gpkg)[:, 0]) == ["a", "b"]
    # nothing but the outputs is left in the folder (no temp files)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.gpkg", "sub", "t.csv"]
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["a.txt"]


def test_write_layer_through_arrow_equals_row_by_row(tmp_path) -> None:
    """The Arrow path writes the same columns, types, nulls and geometries as GDAL's
    row-by-row path; mixed Python types in one column fall back to row by row."""
    import geopandas as gpd
    import pyogrio
    from shapely.geometry import LineString, Point

    from circles.io import write_layer

    frame = gpd.GeoDataFrame(
        {
            "id": ["a", "b", None],
            "n": np.array([1, 2, 3], dtype=np.int64),
            "x": [0.5, np.nan, 2.0],
            "flag": [True, False, True],
            "label": ["公园", "park", None],
        },
        geometry=[LineString([(0, 0), (1, 1)]), LineString([(1, 1), (2, 0)]), None],
        crs=4326,
    )
    arrow, rows = tmp_path / "arrow.gpkg", tmp_path / "rows.gpkg"
    write_layer(frame, arrow, "edges")
    frame.to_file(rows, layer="edges", driver="GPKG", engine="pyogrio")
    a = pyogrio.read_dataframe(arrow, layer="edges", fid_as_index=True)
    b = pyogrio.read_dataframe(rows, layer="edges", fid_as_index=True)
    assert a.dtypes.equals(b.dtypes)
    assert a.drop(columns="geometry").equals(b.drop(columns="geometry"))
    assert a.geometry.isna().tolist() == b.geometry.isna().tolist() == [False, False, True]
    assert a.geometry[:2].geom_equals_exact(b.geometry[:2], 0).all()
    info = pyogrio.read_info(arrow, layer="edges")
    assert info["geometry_type"] == pyogrio.read_info(rows, layer="edges")["geometry_type"]
    mixed = gpd.GeoDataFrame({"v": [1, "two"]}, geometry=[Point(0, 0), Point(1, 1)], crs=4326)
    write_layer(mixed, tmp_path / "mixed.gpkg", "points")  # row by row
    back = pyogrio.read_dataframe(tmp_path / "mixed.gpkg", layer="points")
    assert back["v"].astype(str).tolist() == ["1", "two"]
    empty = frame.iloc[:0]
    write_layer(empty, tmp_path / "empty.gpkg", "edges")
    assert len(pyogrio.read_dataframe(tmp_path / "empty.gpkg", layer="edges")) == 0
