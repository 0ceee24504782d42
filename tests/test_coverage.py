"""Coverage: weighted quantiles, shares per community, flags, hexagon stand-in communities."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import shapely
from conftest import LAT0, LON0, geod_m, make_network, offset

from circles._errors import InputDataError
from circles.access import AccessGraph, nearest_seconds
from circles.coverage import (
    BASIS_STREET_LENGTH,
    assign_nodes,
    coverage_table,
    hexagon_communities,
    weighted_quantile,
)
from circles.network import WalkNetwork


def test_weighted_quantile_by_hand() -> None:
    values = np.array([4.0, 1.0, 3.0, 2.0, 10.0, 20.0, 5.0, np.inf])
    weights = np.array([1.0, 1.0, 1.0, 1.0, 3.0, 1.0, 0.0, 2.0])
    groups = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    # group 0: 1,2,3,4 each weight 1 -> median: first value with cum. weight >= 2 -> 2
    # group 1: 10 (w3), 20 (w1), inf (w2); 5 has no weight -> median: 3 >= 3 -> 10;
    #          p90: 5.4 -> inf (beyond the cut-off sorts last); group 2 is empty
    med = weighted_quantile(values, weights, groups, 3, 0.5)
    p90 = weighted_quantile(values, weights, groups, 3, 0.9)
    np.testing.assert_array_equal(med, [2.0, 10.0, np.nan])
    np.testing.assert_array_equal(p90, [4.0, np.inf, np.nan])
    low = weighted_quantile(values, weights, groups, 3, 0.0)
    np.testing.assert_array_equal(low, [1.0, 10.0, np.nan])
    # nodes outside every group (-1) are ignored
    np.testing.assert_array_equal(
        weighted_quantile(np.array([1.0, 9.0]), np.ones(2), np.array([-1, 0]), 1, 0.5), [9.0]
    )


def test_weighted_quantile_unequal_weights() -> None:
    # 70 % of the weight at 1 minute: the median is 1, the 0.75 quantile is 7
    v = np.array([7.0, 1.0, 3.0])
    w = np.array([0.2, 0.7, 0.1])
    g = np.zeros(3, dtype=np.int64)
    assert weighted_quantile(v, w, g, 1, 0.5)[0] == 1.0
    assert weighted_quantile(v, w, g, 1, 0.7)[0] == 1.0
    assert weighted_quantile(v, w, g, 1, 0.75)[0] == 3.0
    assert weighted_quantile(v, w, g, 1, 0.85)[0] == 7.0


def _chain() -> tuple[WalkNetwork, dict[int, tuple[float, float]]]:
    """Nodes 1..5 every 100 m eastwards on one geodesic."""
    pts = {i: offset(LON0, LAT0, 90.0, 100.0 * (i - 1)) for i in range(1, 6)}
    return make_network(pts, [(1, 2), (2, 3), (3, 4), (4, 5)]), pts


def _box(a: tuple[float, float], b: tuple[float, float]) -> shapely.Polygon:
    """A lon/lat box spanning from ``a`` to ``b`` with 20 m margins north and south."""
    return shapely.box(a[0], LAT0 - 0.0002, b[0], LAT0 + 0.0002)


def test_coverage_table_on_a_hand_graph() -> None:
    net, pts = _chain()
    mid12 = offset(*pts[1], 90.0, 150.0)  # between nodes 2 and 3
    west = _box(offset(*pts[1], 270.0, 20.0), mid12)
    east = _box(mid12, offset(*pts[5], 90.0, 20.0))
    nowhere = shapely.box(LON0 + 1.0, LAT0, LON0 + 1.01, LAT0 + 0.01)
    communities = gpd.GeoDataFrame(
        {"community_id": ["w", "e", "x"], "name": ["West", "East", "Empty"]},
        geometry=[west, east, nowhere],
        crs="EPSG:4326",
    )
    node_comm = assign_nodes(net, communities)
    assert node_comm.tolist() == [0, 0, 1, 1, 1]  # nodes 1..5 (sorted by id)
    weight = net.node_weight_m()  # 50, 100, 100, 100, 50 metres of street
    np.testing.assert_allclose(weight, [50, 100, 100, 100, 50], atol=1e-6)

    # one clinic at node 1, walked at 1 m/s: 0, 100, 200, 300, 400 s
    graph = AccessGraph.from_network(net, net.edge_seconds(1.0))
    sec, _ = nearest_seconds(graph, np.array([0]), np.array([0.0]), np.array([0.0]))
    minutes = sec / 60.0
    length = [geod_m(pts[1], pts[i]) for i in range(1, 6)]
    np.testing.assert_allclose(minutes, np.array(length) / 60.0, atol=1e-9)

    t = coverage_table(
        communities,
        node_comm,
        weight,
        {"clinic": minutes},
        levels_minutes=(2, 4, 6),
        flag_threshold=0.9,
        always_flag=("shelter", "clinic"),
    )
    w, e, x = 0, 1, 2
    assert t["residents"].tolist() == pytest.approx([150.0, 250.0, 0.0], abs=1e-5)
    assert t["n_nodes"].tolist() == [2, 3, 0]
    assert (t["residents_basis"] == BASIS_STREET_LENGTH).all()
    # West: 0 and 1.67 min -> everything within 2 minutes
    assert t.loc[w, ["clinic_share_2", "clinic_share_4", "clinic_share_6"]].tolist() == [1, 1, 1]
    # East: 3.33 (w 100), 5 (w 100), 6.67 (w 50) minutes
    assert t.loc[e, "clinic_share_2"] == 0.0
    assert t.loc[e, "clinic_share_4"] == pytest.approx(100 / 250, abs=1e-6)
    assert t.loc[e, "clinic_share_6"] == pytest.approx(200 / 250, abs=1e-6)
    assert t.loc[w, "clinic_median_min"] == pytest.approx(100 / 60, abs=1e-6)
    assert t.loc[w, "clinic_p90_min"] == pytest.approx(100 / 60, abs=1e-6)
    assert t.loc[e, "clinic_median_min"] == pytest.approx(300 / 60, abs=1e-6)
    assert t.loc[e, "clinic_p90_min"] == pytest.approx(400 / 60, abs=1e-6)
    # flag: 6-minute share below 0.9 -> East only; nobody lives in Empty: not flagged
    assert t["clinic_flag"].tolist() == [False, True, False]
    assert np.isnan(t.loc[x, "clinic_share_6"])
    assert np.isnan(t.loc[x, "clinic_median_min"])
    # a category always reported but without any facility data: flagged wherever people live
    assert t["shelter_flag"].tolist() == [True, True, False]
    assert t.loc[w, "shelter_share_6"] == 0.0
    assert t.loc[w, "shelter_median_min"] == np.inf
    assert "clinic_share_2" in t  # listed once, not twice
    assert list(t.columns).count("clinic_flag") == 1
    assert t.crs.to_string() == "EPSG:4326"
    assert t["name"].tolist() == ["West", "East", "Empty"]


def test_coverage_table_validation() -> None:
    net, _ = _chain()
    comm = gpd.GeoDataFrame({"community_id": ["a"]}, geometry=[shapely.box(0, 0, 1, 1)])
    with pytest.raises(InputDataError, match="communities have no CRS"):
        assign_nodes(net, comm)
    with pytest.raises(InputDataError, match="flag_threshold must be within"):
        coverage_table(comm.set_crs(4326), np.zeros(5, int), np.ones(5), {}, flag_threshold=80.0)
    with pytest.raises(InputDataError, match="hexagon width must be positive"):
        hexagon_communities(net, width_m=0.0)


def test_overlapping_communities_go_to_the_first() -> None:
    net, pts = _chain()
    big = _box(offset(*pts[1], 270.0, 20.0), offset(*pts[5], 90.0, 20.0))
    small = _box(offset(*pts[2], 270.0, 20.0), offset(*pts[3], 90.0, 20.0))
    comm = gpd.GeoDataFrame({"community_id": ["s", "b"]}, geometry=[small, big], crs=4326)
    assert assign_nodes(net, comm).tolist() == [1, 0, 0, 1, 1]


def _check_hexagons(net: WalkNetwork, width_m: float) -> gpd.GeoDataFrame:
    hexes = hexagon_communities(net, width_m=width_m)
    assert hexes.crs.to_string() == "EPSG:4326"
    assert hexes["community_id"].is_unique
    assert (hexes["derived"] == "hexagon grid").all()
    assert hexes.geometry.is_valid.all()
    node_comm = assign_nodes(net, hexes)
    assert (node_comm >= 0).all(), "every node lies in a hexagon"
    # every hexagon holds a node
    assert set(np.unique(node_comm)) == set(range(len(hexes)))
    # no hexagon is bigger than a full hexagon of that width (sqrt(3)/2 * w^2)
    area = hexes.to_crs(net.crs).area
    assert area.max() <= np.sqrt(3) / 2 * width_m**2 * (1 + 1e-9)
    # hexagons do not overlap: their areas add up to the area of their union
    assert area.sum() == pytest.approx(
        shapely.union_all(hexes.to_crs(net.crs).geometry.to_numpy()).area, rel=1e-6
    )
    return hexes


def test_hexagons_on_a_hand_graph() -> None:
    net, _ = _chain()
    hexes = _check_hexagons(net, 150.0)
    assert len(hexes) >= 3  # a 400 m street crosses at least three 150 m hexagons


def test_hexagons_on_helsinki(helsinki_net: WalkNetwork) -> None:
    hexes = _check_hexagons(helsinki_net, 450.0)
    assert len(hexes) > 5
