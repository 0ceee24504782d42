"""Walking rules, network building (lengths, parallel edges, components) and networkx export."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pandas as pd
import pytest
from conftest import (
    LAT0,
    LON0,
    edge_of,
    geod_m,
    make_network,
    offset,
    pos,
    square_points,
    t_points,
)
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from circles._errors import NetworkError
from circles.network import (
    WalkNetwork,
    build_network,
    from_networkx,
    oneway_foot_direction,
    walk_mask,
)

# --------------------------------------------------------------------------- walking rules

RULES = [
    # (tags, walkable)
    ({"highway": "residential"}, True),
    ({"highway": "footway"}, True),
    ({"highway": "primary"}, True),
    ({"highway": "motorway"}, False),
    ({"highway": "motorway", "foot": "yes"}, True),
    ({"highway": "motorway_link", "foot": "designated"}, True),
    ({"highway": "trunk"}, False),
    ({"highway": "trunk", "sidewalk": "both"}, True),
    ({"highway": "trunk", "sidewalk": "no"}, False),
    ({"highway": "cycleway"}, False),
    ({"highway": "cycleway", "foot": "permissive"}, True),
    ({"highway": "service", "access": "private"}, False),
    ({"highway": "service", "access": "private", "foot": "yes"}, True),
    ({"highway": "service", "access": "no", "foot": "designated"}, True),
    ({"highway": "service", "access": "no", "foot": "permissive"}, False),
    ({"highway": "footway", "foot": "no"}, False),
    ({"highway": "construction"}, False),
    ({"highway": "proposed"}, False),
    ({"highway": "pedestrian", "area": "yes"}, False),
    ({"highway": "residential", "oneway": "yes"}, True),
    ({"highway": "Footway; path"}, True),  # case and multi-values normalised
    ({"building": "yes"}, False),
]


def test_walk_mask_rules() -> None:
    ways = pd.DataFrame([t for t, _ in RULES])
    got = walk_mask(ways)
    expected = np.array([w for _, w in RULES])
    wrong = [RULES[i][0] for i in np.flatnonzero(got != expected)]
    assert not wrong, f"walking rules wrong for {wrong}"


def test_walk_mask_without_tag_columns() -> None:
    # only a highway column: the other tags count as absent
    got = walk_mask(pd.DataFrame({"highway": ["path", "motorway", None]}))
    assert got.tolist() == [True, False, False]


def test_oneway_foot_direction() -> None:
    ways = pd.DataFrame(
        {
            "oneway": ["yes", "yes", None, None, None],
            "oneway:foot": [None, "yes", "-1", "no", "true"],
        }
    )
    assert oneway_foot_direction(ways).tolist() == [0, 1, -1, 0, 1]
    assert oneway_foot_direction(pd.DataFrame({"oneway": ["yes"]})).tolist() == [0]


# --------------------------------------------------------------------------- building


def test_lengths_are_geodesic_metres(t_network: WalkNetwork) -> None:
    net = t_network
    assert net.n_nodes == 4
    assert net.n_edges == 3
    assert net.crs == "EPSG:32635"
    ends = zip(net.node_id[net.u].tolist(), net.node_id[net.v].tolist(), strict=True)
    got = {frozenset(pair): length for pair, length in zip(ends, net.length_m, strict=True)}
    assert got[frozenset((1, 2))] == pytest.approx(100.0, abs=1e-6)
    assert got[frozenset((2, 3))] == pytest.approx(100.0, abs=1e-6)
    assert got[frozenset((2, 4))] == pytest.approx(50.0, abs=1e-6)
    # UTM coordinates agree with the geodesic lengths up to the UTM scale factor
    planar = np.hypot(net.x[net.u] - net.x[net.v], net.y[net.u] - net.y[net.v])
    np.testing.assert_allclose(planar, net.length_m, rtol=1e-3)
    # each node stands for half of its incident street length
    w = net.node_weight_m()
    assert w[pos(net, 2)] == pytest.approx(125.0, abs=1e-6)
    assert w[pos(net, 1)] == pytest.approx(50.0, abs=1e-6)
    assert w.sum() == pytest.approx(net.length_m.sum())


def test_edge_seconds_and_arcs(t_network: WalkNetwork) -> None:
    net = t_network
    np.testing.assert_allclose(net.edge_seconds(2.0), net.length_m / 2.0)
    with pytest.raises(ValueError, match="speed_m_s must be positive"):
        net.edge_seconds(0.0)
    tail, _, _ = net.directed_arcs()
    assert tail.size == 6  # all two-way
    two = np.column_stack([net.length_m, 2 * net.length_m])
    _, _, c2 = net.directed_arcs(two)
    np.testing.assert_allclose(np.sort(c2), np.sort(np.r_[net.length_m, 2 * net.length_m]))


def test_parallel_segments_reduced_to_one() -> None:
    pts = square_points()
    # 1-2 drawn three times (both orientations) and 2-3 twice
    net = make_network(pts, [(1, 2), (2, 1), (1, 2), (2, 3), (3, 2), (3, 4), (4, 1)])
    assert net.n_edges == 4
    assert net.report["parallel_segments_merged"] == 3
    e, _ = edge_of(net, 1, 2)
    assert net.length_m[e] == pytest.approx(100.0, abs=1e-6)


def test_one_way_against_the_way_is_stored_forward() -> None:
    pts = square_points()
    # 2 -> 3 drawn as 3 -> 2 against the way (oneway:foot=-1): only 2 -> 3 walkable
    net = make_network(pts, [(1, 2), (3, 2), (3, 4), (4, 1)], direction=[0, -1, 0, 0])
    e, flipped = edge_of(net, 2, 3)
    assert not flipped
    assert net.direction[e] == 1
    assert int(net.node_id[net.u[e]]) == 2
    tail, head, _ = net.directed_arcs()
    pairs = set(zip(net.node_id[tail].tolist(), net.node_id[head].tolist(), strict=True))
    assert (2, 3) in pairs
    assert (3, 2) not in pairs
    assert (1, 2) in pairs
    assert (2, 1) in pairs


def test_clipped_segments_and_zero_length_are_dropped() -> None:
    pts = t_points()
    pts[5] = pts[3]  # same place as node 3: a zero-length segment 3-5
    net = build_network(
        np.array([1, 2, 3, 4, 5]),
        np.array([pts[i][0] for i in range(1, 6)]),
        np.array([pts[i][1] for i in range(1, 6)]),
        np.array([1, 2, 2, 3, 4]),
        np.array([2, 3, 4, 5, 99]),  # 99 is not in the data (clipped extract)
    )
    assert net.report["segments_outside_extract"] == 1
    assert net.report["zero_length_segments"] == 1
    assert net.n_edges == 3
    assert np.all(net.length_m > 0)


def test_no_segments_is_an_error() -> None:
    with pytest.raises(NetworkError, match="no walkable ways"):
        build_network(np.array([1, 2]), np.array([24.9, 24.91]), np.array([60.1, 60.1]),
                      np.array([1]), np.array([7]))  # fmt: skip


def test_largest_component_kept_and_reported() -> None:
    pts = square_points()
    far_a = offset(*pts[2], 90.0, 300.0)
    far_b = offset(*far_a, 90.0, 40.0)
    pts.update({10: far_a, 11: far_b})
    segs = [(1, 2), (2, 3), (3, 4), (4, 1), (10, 11)]
    net = make_network(pts, segs)
    assert net.n_nodes == 4
    assert set(net.node_id.tolist()) == {1, 2, 3, 4}
    rep = net.report
    assert rep["components"] == 2
    assert rep["nodes_in_small_components"] == 2
    assert rep["edges_in_small_components"] == 1
    assert rep["street_length_in_small_components_m"] == pytest.approx(40.0, abs=1e-6)
    np.testing.assert_allclose(net.dropped_segments, [[*far_a, *far_b]])
    whole = make_network(pts, segs, keep_largest=False)
    assert whole.n_nodes == 6
    assert whole.report["nodes_in_small_components"] == 0
    assert len(whole.dropped_segments) == 0


@pytest.mark.slow
def test_porto_largest_component(shared_network) -> None:
    kept = shared_network("osm/porto.osm.pbf")
    whole = shared_network("osm/porto.osm.pbf", keep_largest=False)
    rep = kept.report
    # pyrosm's walking network of Porto falls into ~200 pieces (../shared/DESIGN.md)
    assert rep["components"] > 100
    assert rep["nodes_in_small_components"] > 0
    assert kept.n_nodes + rep["nodes_in_small_components"] == whole.n_nodes
    assert kept.n_edges + rep["edges_in_small_components"] == whole.n_edges
    assert len(kept.dropped_segments) == rep["edges_in_small_components"]
    assert kept.length_m.sum() + rep["street_length_in_small_components_m"] == pytest.approx(
        whole.length_m.sum()
    )
    # what is kept is one connected piece, and the biggest one
    g = coo_matrix((np.ones(kept.n_edges), (kept.u, kept.v)), shape=(kept.n_nodes,) * 2)
    assert connected_components(g, directed=True, connection="weak")[0] == 1
    gw = coo_matrix((np.ones(whole.n_edges), (whole.u, whole.v)), shape=(whole.n_nodes,) * 2)
    n_comp, lab = connected_components(gw, directed=True, connection="weak")
    assert n_comp == rep["components"]
    assert np.bincount(lab).max() == kept.n_nodes


# --------------------------------------------------------------------------- networkx


def test_to_networkx_is_osmnx_compatible() -> None:
    ox = pytest.importorskip("osmnx")
    pts = square_points()
    net = make_network(pts, [(1, 2), (2, 3), (3, 4), (4, 1)], direction=[0, 1, 0, 0])
    g = net.to_networkx()
    assert g.graph["crs"] == "epsg:4326"
    assert g.number_of_nodes() == 4
    assert g.number_of_edges() == 7  # three two-way edges and one one-way
    assert g.has_edge(2, 3)
    assert not g.has_edge(3, 2)
    nodes, edges = ox.graph_to_gdfs(g)
    assert len(nodes) == 4
    assert len(edges) == 7
    assert edges.loc[(1, 2, 0), "length"] == pytest.approx(100.0, abs=1e-6)
    assert edges.loc[(3, 4, 0), "length"] == pytest.approx(geod_m(pts[3], pts[4]), abs=1e-6)
    assert nodes.loc[2, "x"] == pytest.approx(pts[2][0])
    assert nodes.loc[2, "y"] == pytest.approx(pts[2][1])


def test_to_networkx_round_trip(helsinki_net: WalkNetwork) -> None:
    ox = pytest.importorskip("osmnx")
    net = helsinki_net
    g = net.to_networkx()
    nodes, edges = ox.graph_to_gdfs(g)
    assert len(nodes) == net.n_nodes
    assert len(edges) == 2 * int((net.direction == 0).sum()) + int((net.direction != 0).sum())
    # osmnx's own great-circle length of each straight edge agrees with ours
    gc = ox.distance.great_circle(
        edges["geometry"].map(lambda ln: ln.coords[0][1]).to_numpy(),
        edges["geometry"].map(lambda ln: ln.coords[0][0]).to_numpy(),
        edges["geometry"].map(lambda ln: ln.coords[-1][1]).to_numpy(),
        edges["geometry"].map(lambda ln: ln.coords[-1][0]).to_numpy(),
    )
    np.testing.assert_allclose(edges["length"].to_numpy(), gc, rtol=5e-3, atol=1e-3)
    back = from_networkx(g)
    assert back.n_nodes == net.n_nodes
    assert back.n_edges == net.n_edges
    assert back.length_m.sum() == pytest.approx(net.length_m.sum(), rel=1e-9)
    assert (back.direction != 0).sum() == (net.direction != 0).sum()


def test_from_networkx_splits_curved_edges_and_matches_twins() -> None:
    shapely = pytest.importorskip("shapely")
    a, mid, b = (LON0, LAT0), offset(LON0, LAT0, 90.0, 60.0), offset(LON0, LAT0, 45.0, 120.0)
    line = shapely.LineString([a, mid, b])
    length = geod_m(a, mid) + geod_m(mid, b)
    g = nx.MultiDiGraph(crs="epsg:4326")
    g.add_node(1, x=a[0], y=a[1])
    g.add_node(2, x=b[0], y=b[1])
    g.add_edge(1, 2, geometry=line, length=length, highway="footway", osmid=7)
    g.add_edge(2, 1, geometry=shapely.LineString(line.coords[::-1]), length=length)
    net = from_networkx(g)
    assert net.n_nodes == 3  # the bend becomes a node with a negative id
    assert (net.node_id < 0).sum() == 1
    assert net.n_edges == 2
    assert (net.direction == 0).all()  # the twin made it two-way
    assert net.length_m.sum() == pytest.approx(length, abs=1e-6)
    g.graph["crs"] = "epsg:32635"
    with pytest.raises(NetworkError, match="project_graph"):
        from_networkx(g)
