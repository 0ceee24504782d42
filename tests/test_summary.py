"""What drops out is said loudly: small pieces of the network and nodes outside every
community, per community (circles.communities.network_report, circles.summary)."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import shapely
from conftest import LAT0, LON0, geod_m, make_network, offset

from circles.communities import network_report
from circles.coverage import assign_nodes
from circles.settings import WGS84
from circles.summary import COMMUNITY_DROPPED_WARN_SHARE, drop_warnings


def xy(x: float, y: float) -> tuple[float, float]:
    p = offset(LON0, LAT0, 90.0, x)
    return offset(*p, 0.0, y)


def town() -> tuple[object, gpd.GeoDataFrame]:
    """A main street 0-400 m east (nodes 1-5) crossing communities A (x < 200) and B
    (200..400), a 100 m piece in B cut off from it (nodes 10-11), and a stretch beyond
    both communities (node 6, 500 m)."""
    pts = {i + 1: xy(100.0 * i, 0.0) for i in range(5)}
    pts[6] = xy(500.0, 0.0)
    pts[10], pts[11] = xy(250.0, 50.0), xy(350.0, 50.0)
    net = make_network(pts, [(1, 2), (2, 3), (3, 4), (4, 5), (5, 6), (10, 11)])
    comm = gpd.GeoDataFrame(
        {"community_id": ["a", "b"], "name": ["A", "B"]},
        geometry=[
            shapely.Polygon([xy(-10, -20), xy(199, -20), xy(199, 80), xy(-10, 80)]),
            shapely.Polygon([xy(199, -20), xy(410, -20), xy(410, 80), xy(199, 80)]),
        ],
        crs=WGS84,
    )
    return net, comm


def test_network_report_per_community() -> None:
    net, comm = town()
    assert net.report["nodes_in_small_components"] == 2
    report = network_report(net, comm, assign_nodes(net, comm))
    a, b, out = report
    assert (a["name"], b["name"], out["community_id"]) == ("A", "B", None)
    assert (a["nodes"], b["nodes"], out["nodes"]) == (2, 3, 1)  # 1-2 | 3-5 | 6
    piece_km = geod_m(xy(250.0, 50.0), xy(350.0, 50.0)) / 1000
    assert a["dropped_street_km"] == 0.0
    assert b["dropped_street_km"] == pytest.approx(piece_km, abs=1e-3)
    # a node stands for half of each of its edges: B's nodes 3, 4, 5 100 m each, A's 1
    # and 2 50 m and 100 m
    assert b["street_km"] == pytest.approx(0.3, abs=1e-3)
    assert a["street_km"] == pytest.approx(0.15, abs=1e-3)
    assert b["dropped_share"] == pytest.approx(piece_km / (piece_km + 0.3), abs=1e-3)
    assert out["street_km"] == pytest.approx(0.05, abs=1e-3)


def test_drop_warnings_name_the_communities() -> None:
    net, comm = town()
    report = network_report(net, comm, assign_nodes(net, comm))
    outside = {
        "nodes": report[-1]["nodes"],
        "share_of_nodes": report[-1]["nodes"] / net.n_nodes,
        "communities_left_out": [{"osm_id": 7, "name": "C", "reason": "incomplete"}],
    }
    warnings = drop_warnings(net, report[:-1], outside)
    assert len(warnings) == 2
    assert report[1]["dropped_share"] >= COMMUNITY_DROPPED_WARN_SHARE
    assert "small pieces" in warnings[0]
    assert "B 25% (0.1 km)" in warnings[0]  # 100 m dropped of 400 m
    assert "A " not in warnings[0]
    assert "1 network nodes (16.7%) are outside every community" in warnings[1]
    assert "C (incomplete)" in warnings[1]
    # nothing to say about a network in one piece inside its communities
    quiet = {**outside, "nodes": 0, "share_of_nodes": 0.0}
    whole = make_network({1: xy(0, 0), 2: xy(100, 0)}, [(1, 2)])
    detail = network_report(whole, comm, assign_nodes(whole, comm))
    assert drop_warnings(whole, detail[:-1], quiet) == []
    assert np.isclose(sum(d["street_km"] for d in detail), 0.1, atol=1e-3)


def test_an_areas_halo_is_not_counted_outside_its_communities() -> None:
    """An area run: node 6 (500 m) lies in the halo beyond the area's boundary; it is
    outside every community by design and no warning names it."""
    from circles.summary import nodes_outside

    net, comm = town()
    node_comm = assign_nodes(net, comm)
    assert nodes_outside(net, node_comm, None) == (1, net.n_nodes, None)
    boundary = shapely.Polygon([xy(-10, -20), xy(410, -20), xy(410, 80), xy(-10, 80)])
    out, of, halo = nodes_outside(net, node_comm, boundary)
    assert (out, of, halo) == (0, net.n_nodes - 1, 1)
    report = network_report(net, comm, node_comm)
    outside = {"nodes": out, "share_of_nodes": out / of, "communities_left_out": []}
    assert not [w for w in drop_warnings(net, report[:-1], outside) if "outside every" in w]
    # a node inside the boundary but in no community still counts
    wider = shapely.Polygon([xy(-10, -20), xy(600, -20), xy(600, 80), xy(-10, 80)])
    assert nodes_outside(net, node_comm, wider) == (1, net.n_nodes, 0)
