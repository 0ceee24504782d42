"""Tests of circles.streets: minutes along street segments, cut at the levels.

Hand-drawn segments with answers worked out by hand, and Helsinki's real network
against networkx (every sample point and facility inserted as a node of the graph).
"""

from __future__ import annotations

import itertools

import networkx as nx
import numpy as np
import pytest
from conftest import LAT0, LON0, make_network, offset

from circles._errors import InputDataError
from circles.access import AccessGraph, nearest_seconds
from circles.streets import edge_minutes, level_classes, street_pieces


def line(length_m: float, *, direction=None):
    """Two nodes ``length_m`` apart (one edge u -> v)."""
    p1 = (LON0, LAT0)
    return make_network({1: p1, 2: offset(*p1, 90.0, length_m)}, [(1, 2)], direction=direction)


def test_facility_at_a_node_hand_computed():
    # 600 m at 1 m/s, a facility at node 1: t(f) = 600 f seconds
    net = line(600.0)
    cost = np.full(1, 600.0)
    u_first = net.node_id[net.u[0]] == 1
    sec = np.array([0.0, 600.0]) if net.node_id[0] == 1 else np.array([600.0, 0.0])
    em = edge_minutes(net, sec, cost)
    f = np.array([0.0, 0.25, 0.5, 1.0])
    want = 600.0 * (f if u_first else 1.0 - f)
    np.testing.assert_allclose(em.seconds(np.zeros(4, int), f), want, atol=1e-9)
    pieces = street_pieces(net, {"c": em}, levels_minutes=[5], max_minutes=45)
    # 5 minutes = 300 s: the segment is cut in the middle; means 2.5 and 7.5 minutes
    assert len(pieces) == 2
    np.testing.assert_allclose(pieces["from_frac"], [0.0, 0.5])
    np.testing.assert_allclose(pieces["to_frac"], [0.5, 1.0])
    np.testing.assert_allclose(sorted(pieces["c_min"]), [2.5, 7.5], atol=1e-9)
    np.testing.assert_allclose(pieces["length_m"], [300.0, 300.0], atol=1e-6)


def test_facility_on_the_segment_hand_computed():
    # a facility at a quarter of a 600 m segment, 30 s off it: t(f) = |f - 0.25| 600 + 30
    net = line(600.0)
    em = edge_minutes(
        net,
        np.array([180.0, 480.0])[np.argsort([net.u[0], net.v[0]])],
        np.full(1, 600.0),
        facility_edge=[0],
        facility_frac=[0.25],
        facility_access_s=[30.0],
    )
    f = np.linspace(0, 1, 41)
    np.testing.assert_allclose(em.seconds(np.zeros(f.size, int), f), np.abs(f - 0.25) * 600 + 30)
    # mean over the segment: 30 + 600 (0.25^2 + 0.75^2) / 2 = 217.5 s
    mean = em.mean_seconds(np.array([0]), np.array([0.0]), np.array([1.0]))
    np.testing.assert_allclose(mean, [217.5])
    pieces = street_pieces(net, {"c": em}, levels_minutes=[5, 10], max_minutes=45)
    # 300 s at f = 0.7: cut there; 600 s is never reached (480 s at v)
    np.testing.assert_allclose(pieces["to_frac"], [0.7, 1.0])


def test_one_way_segment_walks_only_forward():
    # oneway:foot u -> v: a point can only walk on to v (300 s from v)
    net = line(600.0, direction=[1])
    sec = np.zeros(2)
    sec[net.v[0]] = 300.0
    sec[net.u[0]] = 900.0
    em = edge_minutes(net, sec, np.full(1, 600.0))
    f = np.array([0.0, 0.5, 0.9, 1.0])
    np.testing.assert_allclose(em.seconds(np.zeros(4, int), f), (1 - f) * 600 + 300)


def test_unreachable_ends_and_cut_off():
    net = line(600.0)
    sec = np.full(2, np.inf)
    sec[net.u[0]] = 40 * 60.0  # 40 min at u, nothing from v; cut-off 45 minutes
    em = edge_minutes(net, sec, np.full(1, 600.0))
    # v is beyond the cut-off (inf) but reached through u: 40 min + 600 s
    assert em.seconds([0], [1.0])[0] == pytest.approx(3000.0)
    sec[net.u[0]] = np.inf
    assert edge_minutes(net, sec, np.full(1, 600.0)).seconds([0], [0.5])[0] == np.inf
    sec[net.u[0]] = 40 * 60.0
    np.testing.assert_allclose(em.seconds([0], [0.25]), [40 * 60.0 + 150.0])
    pieces = street_pieces(net, {"c": em}, levels_minutes=[5, 10, 15], max_minutes=45)
    # cut where 45 minutes are reached (f = 0.5); beyond that no minutes (NaN)
    np.testing.assert_allclose(pieces["to_frac"], [0.5, 1.0])
    assert pieces["c_min"].iloc[0] == pytest.approx(42.5)
    assert np.isnan(pieces["c_min"].iloc[1])
    np.testing.assert_array_equal(level_classes(pieces["c_min"], [5, 10, 15]), [3, 3])


def test_level_classes():
    got = level_classes([0.0, 5.0, 5.01, 10.0, 14.99, 15.0, 15.5, np.nan], [5, 10, 15])
    np.testing.assert_array_equal(got, [0, 0, 1, 1, 2, 2, 3, 3])


def test_bad_shapes_are_refused():
    net = line(100.0)
    with pytest.raises(InputDataError, match="node_seconds has"):
        edge_minutes(net, np.zeros(3), np.ones(1))
    with pytest.raises(InputDataError, match="edge_cost has shape"):
        edge_minutes(net, np.zeros(2), np.ones((2, 2)))


def _networkx_seconds(net, cost, fac_edge, fac_frac, fac_acc, pts_edge, pts_frac):
    """Seconds from each sample point to the nearest facility, by networkx on the
    network with every sample point and facility snap point inserted as a node."""
    g = nx.DiGraph()
    stops: dict[int, list[tuple[float, object]]] = {}
    for e in range(net.n_edges):
        stops[e] = [(0.0, ("n", int(net.u[e]))), (1.0, ("n", int(net.v[e])))]
    for i, (e, f) in enumerate(zip(pts_edge, pts_frac, strict=True)):
        stops[int(e)].append((float(f), ("p", i)))
    for k, (e, f) in enumerate(zip(fac_edge, fac_frac, strict=True)):
        stops[int(e)].append((float(f), ("s", k)))
        g.add_edge(("s", k), ("F", k), weight=float(fac_acc[k]))
    for e, st in stops.items():
        st.sort(key=lambda x: x[0])
        for (fa, a), (fb, b) in itertools.pairwise(st):
            d = fb - fa
            arcs = [(a, b, cost[e, 0])]
            if net.direction[e] != 1:  # oneway:foot u -> v: no walk back
                arcs.append((b, a, cost[e, 1]))
            for x, y, c in arcs:
                if x == y or not np.isfinite(c):
                    continue
                w = d * float(c)
                if not g.has_edge(x, y) or g[x][y]["weight"] > w:
                    g.add_edge(x, y, weight=w)
    dist = nx.multi_source_dijkstra_path_length(
        g.reverse(copy=True), [("F", k) for k in range(len(fac_edge))]
    )
    return np.array([dist.get(("p", i), np.inf) for i in range(len(pts_edge))])


@pytest.mark.parametrize("asymmetric", [False, True])
def test_helsinki_points_agree_with_networkx(helsinki_net, asymmetric):
    net = helsinki_net
    rng = np.random.default_rng(14)
    cost = np.column_stack([net.length_m / 1.2, net.length_m / 1.2 * (1.3 if asymmetric else 1)])
    k = 25
    fac_edge = rng.integers(0, net.n_edges, k)
    fac_frac = rng.random(k)
    fac_frac[:3] = [0.0, 1.0, 0.5]
    fac_edge[2] = fac_edge[3]  # two facilities on one segment
    fac_acc = rng.uniform(0, 60, k)
    graph = AccessGraph.from_network(net, cost)
    sec, _ = nearest_seconds(graph, fac_edge, fac_frac, fac_acc)
    em = edge_minutes(
        net,
        sec,
        cost,
        facility_edge=fac_edge,
        facility_frac=fac_frac,
        facility_access_s=fac_acc,
    )
    n = 300
    pts_edge = np.concatenate([rng.integers(0, net.n_edges, n - 20), fac_edge[:20]])
    pts_frac = np.concatenate([rng.random(n - 20), np.clip(fac_frac[:20] + 0.01, 0, 1)])
    want = _networkx_seconds(net, cost, fac_edge, fac_frac, fac_acc, pts_edge, pts_frac)
    got = em.seconds(pts_edge, pts_frac)
    assert np.isfinite(want).sum() > n * 0.9
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-6)
    # at the segment ends the layer is the nodes' own value
    np.testing.assert_allclose(em.seconds(np.arange(net.n_edges), 0.0), sec[net.u], atol=1e-6)
    np.testing.assert_allclose(em.seconds(np.arange(net.n_edges), 1.0), sec[net.v], atol=1e-6)


def test_helsinki_pieces_lie_between_their_ends_and_keep_one_level(helsinki_net):
    net = helsinki_net
    rng = np.random.default_rng(7)
    cost = np.column_stack([net.length_m / 1.2] * 2)
    fac_edge = rng.integers(0, net.n_edges, 12)
    fac_frac = rng.random(12)
    fac_acc = np.zeros(12)
    sec, _ = nearest_seconds(AccessGraph.from_network(net, cost), fac_edge, fac_frac, fac_acc)
    em = edge_minutes(
        net, sec, cost, facility_edge=fac_edge, facility_frac=fac_frac, facility_access_s=fac_acc
    )
    levels = [5, 10, 15]
    pieces = street_pieces(net, {"c": em}, levels_minutes=levels, max_minutes=45)
    # the pieces cover every segment exactly once
    total = pieces.groupby("edge")["length_m"].sum()
    np.testing.assert_allclose(total.to_numpy(), net.length_m[total.index.to_numpy()], rtol=1e-9)
    assert len(total) == net.n_edges
    e = pieces["edge"].to_numpy()
    a, b = pieces["from_frac"].to_numpy(), pieces["to_frac"].to_numpy()
    t_a, t_b = em.seconds(e, a) / 60, em.seconds(e, b) / 60
    # a piece's minutes lie between its ends' smaller value (the minutes rise from one
    # end and fall to the other unless a facility sits inside) and the walk along the
    # segment from either end
    along = np.minimum(t_a + (b - a) * cost[e, 1] / 60, t_b + (b - a) * cost[e, 0] / 60)
    mean = pieces["c_min"].to_numpy()
    ok = np.isfinite(mean)
    assert ok.mean() > 0.5
    holds = np.zeros(len(pieces), bool)
    for fe, ff in zip(fac_edge, fac_frac, strict=True):
        holds |= (e == fe) & (a < ff) & (ff < b)
    low = ok & ~holds
    assert holds.sum() >= 1
    assert np.all(mean[low] >= np.minimum(t_a, t_b)[low] - 1e-9)
    assert np.all(mean[ok] <= along[ok] + 1e-9)
    # no level changes inside a piece: sample each piece and class the samples
    w = rng.random((len(pieces), 5)) * 0.98 + 0.01
    inside = em.seconds(np.repeat(e, 5), (a[:, None] + w * (b - a)[:, None]).ravel()) / 60
    cls = level_classes(np.where(np.isfinite(inside), inside, np.nan), levels)
    cls = np.where(inside > 45, len(levels), cls).reshape(-1, 5)
    want = level_classes(mean, levels)
    assert np.all(cls == want[:, None])
    # more pieces than segments: levels are crossed inside segments
    assert len(pieces) > net.n_edges


@pytest.mark.slow
def test_written_edges_layer_agrees_with_the_nodes_layer(helsinki_zh_run):
    """The GeoPackage read back: every piece's ends are nodes of the ``nodes`` layer, the
    pieces of a segment tile it from 0 to 1, and a piece's mean minutes lie within the
    walk along the segment of either end's minutes (|mean - T_u| <= mid * c and
    |mean - T_v| <= (1 - mid) * c below, one of them above, c the segment's walk)."""
    pyogrio = pytest.importorskip("pyogrio")
    res = helsinki_zh_run
    gpkg = res.outputs["gpkg"]
    edges = pyogrio.read_dataframe(gpkg, layer="edges", read_geometry=False)
    nodes = pyogrio.read_dataframe(gpkg, layer="nodes", read_geometry=False)
    assert not res.summary["slope_aware"]  # flat walking: a segment's walk is length / speed
    assert len(edges) >= res.network.n_edges
    by_id = nodes.set_index("node_id")
    assert edges["u_node"].isin(by_id.index).all()
    assert edges["v_node"].isin(by_id.index).all()
    # pieces tile their segment
    e = edges.sort_values(["edge", "from_frac"])
    first = e.groupby("edge")["from_frac"].first()
    last = e.groupby("edge")["to_frac"].last()
    assert np.allclose(first, 0.0)
    assert np.allclose(last, 1.0)
    nxt = e.groupby("edge")["from_frac"].shift(-1)
    gap = (nxt - e["to_frac"]).dropna()
    assert np.allclose(gap, 0.0, atol=1e-9)
    span = (e["to_frac"] - e["from_frac"]).to_numpy()
    ok = span > 1e-9
    full_m = np.where(ok, e["length_m"].to_numpy() / np.where(ok, span, 1.0), np.nan)
    mid = 0.5 * (e["from_frac"] + e["to_frac"]).to_numpy()
    checked = 0
    for cat in res.categories:
        prof = res.summary["walking_profiles"][cat]
        c_min = full_m * float(prof["steps_factor"]) / float(prof["speed_m_s"]) / 60.0
        mean = e[f"{cat}_min"].to_numpy(float)
        tu = by_id.loc[e["u_node"], f"{cat}_min"].to_numpy(float)
        tv = by_id.loc[e["v_node"], f"{cat}_min"].to_numpy(float)
        sel = ok & np.isfinite(mean) & np.isfinite(tu) & np.isfinite(tv)
        if not sel.any():
            continue
        m, u, v, c, f = mean[sel], tu[sel], tv[sel], c_min[sel], mid[sel]
        tol = 1e-4
        assert (m >= u - f * c - tol).all(), cat  # u reaches a facility through the piece
        assert (m >= v - (1 - f) * c - tol).all(), cat
        assert (m <= np.maximum(u + f * c, v + (1 - f) * c) + tol).all(), cat  # and back
        checked += int(sel.sum())
    assert checked > 1000


def test_pieces_cache_entry_gives_back_the_same_layer(helsinki_net, tmp_path):
    """The ``edges`` layer kept in the cache as arrays reads back equal to the computed
    one (columns, types, text, exact end points); a frame with a column that is not text
    is not kept."""
    import geopandas.testing

    from circles.cache import Cache, digest
    from circles.streets import PIECES

    net = helsinki_net
    cost = np.column_stack([net.length_m / 1.2] * 2)
    fac_edge, fac_frac, fac_acc = np.array([3, 40]), np.array([0.5, 0.25]), np.zeros(2)
    sec, _ = nearest_seconds(AccessGraph.from_network(net, cost), fac_edge, fac_frac, fac_acc)
    em = edge_minutes(
        net, sec, cost, facility_edge=fac_edge, facility_frac=fac_frac, facility_access_s=fac_acc
    )
    pieces = street_pieces(net, {"c": em}, levels_minutes=[5, 10, 15], max_minutes=45)
    store = Cache(tmp_path / "cache")
    got = store.memo("streets", ["k"], lambda: pieces, codec=PIECES)
    assert not got.cached
    again = store.memo("streets", ["k"], lambda: pytest.fail("recomputed"), codec=PIECES)
    assert again.cached
    geopandas.testing.assert_geodataframe_equal(again.value, pieces, check_less_precise=False)
    mixed = pieces.head(3).copy()
    mixed["highway"] = [None, "footway", "path"]
    store.memo("streets", ["mixed"], lambda: mixed, codec=PIECES)
    assert not store.has("streets", digest("streets", "mixed"))
