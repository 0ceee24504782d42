"""The CSR engine: hand-checked seconds on drawn networks, networkx as the oracle on real ones."""

from __future__ import annotations

import dataclasses

import networkx as nx
import numpy as np
import pytest
from conftest import at_frac, edge_of, geod_m, make_network, pos, square_points

from circles._errors import InputDataError
from circles.access import AccessGraph, counts_within, nearest_seconds, seconds_from_nodes
from circles.network import WalkNetwork
from circles.settings import DISTANCE_TOLERANCE_M

# --------------------------------------------------------------------------- hand-drawn


def _seconds(net: WalkNetwork, facilities, *, speed_m_s: float = 1.0, limit_s=np.inf):
    """Run the engine on ``[(edge, frac, access_m), ...]``; seconds per node id."""
    graph = AccessGraph.from_network(net, net.edge_seconds(speed_m_s))
    f = np.array(facilities, dtype=float).reshape(-1, 3)
    sec, nearest = nearest_seconds(
        graph, f[:, 0].astype(int), f[:, 1], f[:, 2] / speed_m_s, limit_s=limit_s
    )
    ids = net.node_id.tolist()
    return dict(zip(ids, sec.tolist(), strict=True)), dict(zip(ids, nearest.tolist(), strict=True))


def test_facility_on_an_edge_with_access_walk(t_network: WalkNetwork) -> None:
    # facility 25 m along the 100 m edge 1-2, 10 m away from it, walked at 1 m/s
    net = t_network
    e, f = at_frac(net, 1, 2, 0.25)
    sec, nearest = _seconds(net, [(e, f, 10.0)])
    assert sec[1] == pytest.approx(35.0, abs=1e-6)
    assert sec[2] == pytest.approx(85.0, abs=1e-6)
    assert sec[3] == pytest.approx(185.0, abs=1e-6)
    assert sec[4] == pytest.approx(135.0, abs=1e-6)
    assert set(nearest.values()) == {0}
    # twice the speed halves every time
    sec2, _ = _seconds(net, [(e, f, 10.0)], speed_m_s=2.0)
    assert sec2[3] == pytest.approx(92.5, abs=1e-6)


def test_facility_on_the_node_ends(t_network: WalkNetwork) -> None:
    net = t_network
    e, f = at_frac(net, 2, 3, 0.0)  # exactly at node 2
    sec, _ = _seconds(net, [(e, f, 0.0)])
    assert sec == pytest.approx({1: 100.0, 2: 0.0, 3: 100.0, 4: 50.0}, abs=1e-6)
    e, f = at_frac(net, 2, 3, 1.0)  # exactly at node 3
    sec, _ = _seconds(net, [(e, f, 0.0)])
    assert sec == pytest.approx({1: 200.0, 2: 100.0, 3: 0.0, 4: 150.0}, abs=1e-6)


def test_two_facilities_on_the_same_edge(t_network: WalkNetwork) -> None:
    net = t_network
    e1, f1 = at_frac(net, 1, 2, 0.2)  # 20 m from node 1, 30 m access walk
    e2, f2 = at_frac(net, 1, 2, 0.7)  # 70 m from node 1, on the street
    sec, nearest = _seconds(net, [(e1, f1, 30.0), (e2, f2, 0.0)])
    assert sec[1] == pytest.approx(50.0, abs=1e-6)  # min(20 + 30, 70)
    assert sec[2] == pytest.approx(30.0, abs=1e-6)  # min(80 + 30, 30)
    assert sec[3] == pytest.approx(130.0, abs=1e-6)
    assert nearest[1] == 0
    assert nearest[2] == 1
    # the same facility listed twice changes nothing (no summing of duplicates)
    again, _ = _seconds(net, [(e2, f2, 0.0), (e2, f2, 0.0)])
    assert again[2] == pytest.approx(30.0, abs=1e-6)
    assert again[1] == pytest.approx(70.0, abs=1e-6)


def test_one_way_uses_the_reversed_search() -> None:
    # square 1-2-3-4; the side 2->3 may be walked only from 2 towards 3 (oneway:foot)
    pts = square_points()
    net = make_network(pts, [(1, 2), (2, 3), (3, 4), (4, 1)], direction=[0, 1, 0, 0])
    d34 = geod_m(pts[3], pts[4])
    e, f = at_frac(net, 2, 3, 0.5)  # facility in the middle of the one-way side
    sec, _ = _seconds(net, [(e, f, 0.0)])
    assert sec[2] == pytest.approx(50.0, abs=1e-6)  # 2 -> midpoint, with the way
    # from 3 the resident may not walk back along the one-way side: 3-4-1-2-midpoint
    assert sec[3] == pytest.approx(d34 + 100.0 + 100.0 + 50.0, abs=1e-6)
    assert sec[1] == pytest.approx(150.0, abs=1e-6)
    assert sec[4] == pytest.approx(250.0, abs=1e-6)

    # the same side drawn as 3->2 with oneway:foot=-1 is the same rule
    net_r = make_network(pts, [(1, 2), (3, 2), (3, 4), (4, 1)], direction=[0, -1, 0, 0])
    e, f = at_frac(net_r, 2, 3, 0.5)
    sec_r, _ = _seconds(net_r, [(e, f, 0.0)])
    assert sec_r == pytest.approx(sec, abs=1e-6)

    # the opposite one-way: now node 3 is 50 s away and node 2 goes round
    net_o = make_network(pts, [(1, 2), (3, 2), (3, 4), (4, 1)], direction=[0, 1, 0, 0])
    e, f = at_frac(net_o, 2, 3, 0.5)
    sec_o, _ = _seconds(net_o, [(e, f, 0.0)])
    assert sec_o[3] == pytest.approx(50.0, abs=1e-6)
    assert sec_o[2] == pytest.approx(100.0 + 100.0 + d34 + 50.0, abs=1e-6)

    # walking outwards from node 3 respects the one-way side too
    graph = AccessGraph.from_network(net, net.length_m)
    out = seconds_from_nodes(graph, np.array([pos(net, 3)]))[0]
    assert out[pos(net, 2)] == pytest.approx(d34 + 200.0, abs=1e-6)
    out2 = seconds_from_nodes(graph, pos(net, 2))[0]
    assert out2[pos(net, 3)] == pytest.approx(100.0, abs=1e-6)


def test_parallel_arcs_reduced_to_the_minimum() -> None:
    # two arcs between the same nodes: a CSR matrix built naively would add them up
    pts = square_points()
    net = make_network(pts, [(1, 2), (2, 3)])
    e12, _ = edge_of(net, 1, 2)
    dup = dataclasses.replace(
        net,
        u=np.r_[net.u, net.u[e12], net.v[e12]],
        v=np.r_[net.v, net.v[e12], net.u[e12]],
        length_m=np.r_[net.length_m, 100.0, 100.0],
        direction=np.r_[net.direction, 0, 0].astype(np.int8),
        highway=np.concatenate([net.highway, np.array(["", ""], dtype=object)]),
        way_id=np.r_[net.way_id, 8, 9],
    )
    cost = np.r_[net.length_m, 100.0, 100.0]
    cost[e12] = 40.0  # the original 1-2 edge is a 40 s shortcut, its twins 100 s
    graph = AccessGraph.from_network(dup, cost)
    assert graph.reversed_matrix().nnz == 4  # 1<->2 and 2<->3 once each
    e23, f = at_frac(dup, 2, 3, 0.0)  # facility at node 2
    sec, _ = nearest_seconds(graph, np.array([e23]), np.array([f]), np.array([0.0]))
    assert sec[pos(dup, 1)] == pytest.approx(40.0, abs=1e-9)  # the minimum, not 240
    # a second facility on the same node end: still the minimum
    sec, _ = nearest_seconds(graph, np.array([e23, e23]), np.array([f, f]), np.array([5.0, 0.0]))
    assert sec[pos(dup, 2)] == 0.0


def test_parallel_segments_from_build_network() -> None:
    pts = square_points()
    net = make_network(pts, [(1, 2), (2, 1), (1, 2), (2, 3)])
    e, f = at_frac(net, 2, 3, 1.0)
    sec, _ = _seconds(net, [(e, f, 0.0)])
    assert sec[1] == pytest.approx(200.0, abs=1e-6)


def test_limit_gives_inf_beyond(t_network: WalkNetwork) -> None:
    net = t_network
    e, f = at_frac(net, 1, 2, 0.25)
    sec, nearest = _seconds(net, [(e, f, 10.0)], limit_s=100.0)
    assert sec[1] == pytest.approx(35.0)
    assert sec[2] == pytest.approx(85.0)
    assert sec[3] == np.inf
    assert sec[4] == np.inf
    assert nearest[3] == -1
    assert nearest[1] == 0


def test_no_facilities(t_network: WalkNetwork) -> None:
    graph = AccessGraph.from_network(t_network, t_network.length_m)
    empty = np.array([], dtype=np.int64)
    sec, nearest = nearest_seconds(graph, empty, empty.astype(float), empty.astype(float))
    assert np.isinf(sec).all()
    assert (nearest == -1).all()
    counts = counts_within(graph, empty, empty.astype(float), empty.astype(float), levels_s=(60,))
    assert counts.shape == (4, 1)
    assert (counts == 0).all()


def test_counts_within_on_the_hand_graph(t_network: WalkNetwork) -> None:
    net = t_network
    graph = AccessGraph.from_network(net, net.edge_seconds(1.0))
    e1, f1 = at_frac(net, 1, 2, 0.25)  # node 1: 35 s, node 2: 85, node 3: 185, node 4: 135
    e2, f2 = at_frac(net, 2, 3, 1.0)  # at node 3: node 1: 200, 2: 100, 3: 0, 4: 150
    counts = counts_within(
        graph,
        np.array([e1, e2]),
        np.array([f1, f2]),
        np.array([10.0, 0.0]),
        levels_s=(160.0, 90.0),  # given unsorted: columns come out sorted (90, 160)
    )
    got = {int(i): c.tolist() for i, c in zip(net.node_id, counts, strict=True)}
    assert got == {1: [1, 1], 2: [1, 2], 3: [1, 1], 4: [0, 2]}


def test_input_validation(t_network: WalkNetwork) -> None:
    net = t_network
    with pytest.raises(InputDataError, match="edge_cost has shape"):
        AccessGraph.from_network(net, np.ones(5))
    with pytest.raises(InputDataError, match="non-negative"):
        AccessGraph.from_network(net, -net.length_m)
    graph = AccessGraph.from_network(net, net.length_m)
    with pytest.raises(InputDataError, match="out of range"):
        nearest_seconds(graph, np.array([7]), np.array([0.5]), np.array([0.0]))
    with pytest.raises(InputDataError, match="within"):
        nearest_seconds(graph, np.array([0]), np.array([1.5]), np.array([0.0]))


def test_direction_dependent_costs(t_network: WalkNetwork) -> None:
    # uphill 1 -> 2 costs twice the downhill way: a resident at 1 walks "uphill" to node 2
    net = t_network
    e, flipped = edge_of(net, 1, 2)
    cost = np.column_stack([net.length_m, net.length_m])
    cost[e, 1 if flipped else 0] *= 2.0  # direction from 1 to 2 doubled
    graph = AccessGraph.from_network(net, cost)
    e23, f = at_frac(net, 2, 3, 0.0)  # facility at node 2
    sec, _ = nearest_seconds(graph, np.array([e23]), np.array([f]), np.array([0.0]))
    assert sec[pos(net, 1)] == pytest.approx(200.0, abs=1e-6)
    out = seconds_from_nodes(graph, pos(net, 2))[0]
    assert out[pos(net, 1)] == pytest.approx(100.0, abs=1e-6)  # downhill from 2 to 1


# --------------------------------------------------------------------------- networkx oracle


def _oracle_graph(net: WalkNetwork) -> nx.DiGraph:
    """The walking graph in metres, built from the network arrays (not the engine's CSR).

    Arc ``a -> b`` costs walking from a to b; parallel arcs keep the shorter.
    """
    g = nx.DiGraph()
    g.add_nodes_from(range(net.n_nodes))
    for u, v, length, d in zip(
        net.u.tolist(), net.v.tolist(), net.length_m.tolist(), net.direction.tolist(), strict=True
    ):
        arcs = [(u, v)] if d == 1 else [(u, v), (v, u)]
        for a, b in arcs:
            if not g.has_edge(a, b) or g[a][b]["w"] > length:
                g.add_edge(a, b, w=length)
    return g


def _add_facilities(
    g: nx.DiGraph, net: WalkNetwork, edge: np.ndarray, frac: np.ndarray, access_m: np.ndarray
) -> list[tuple[str, int]]:
    """Virtual facility nodes with arcs from the two edge ends (walking to the facility)."""
    names = []
    for k, (e, f, a) in enumerate(
        zip(edge.tolist(), frac.tolist(), access_m.tolist(), strict=True)
    ):
        name = ("fac", k)
        u, v, length = int(net.u[e]), int(net.v[e]), float(net.length_m[e])
        g.add_edge(u, name, w=f * length + a)
        if net.direction[e] == 0:
            g.add_edge(v, name, w=(1.0 - f) * length + a)
        names.append(name)
    return names


def _random_facilities(net: WalkNetwork, n: int, rng: np.random.Generator):
    edge = rng.integers(0, net.n_edges, n)
    frac = rng.random(n)
    frac[: max(1, n // 10)] = rng.choice([0.0, 1.0], max(1, n // 10))  # some on node ends
    access_m = rng.uniform(0.0, 80.0, n)
    return edge, frac, access_m


def _check_against_networkx(net: WalkNetwork, *, seed: int, speed_m_s: float = 1.2) -> None:
    rng = np.random.default_rng(seed)
    graph = AccessGraph.from_network(net, net.edge_seconds(speed_m_s))
    base = _oracle_graph(net)
    limit_m = 1080.0  # 15 min at 1.2 m/s
    for n_fac in (3, 25, 120):  # three categories' worth of facilities
        edge, frac, access_m = _random_facilities(net, n_fac, rng)
        sec, nearest = nearest_seconds(
            graph, edge, frac, access_m / speed_m_s, limit_s=limit_m / speed_m_s
        )
        got_m = sec * speed_m_s
        g = base.copy()
        fac_nodes = _add_facilities(g, net, edge, frac, access_m)
        want = nx.multi_source_dijkstra_path_length(
            g.reverse(copy=False), fac_nodes, cutoff=limit_m + 1.0, weight="w"
        )
        want_m = np.full(net.n_nodes, np.inf)
        for node, d in want.items():
            if isinstance(node, int):
                want_m[node] = d
        want_m[want_m > limit_m] = np.inf
        clear = np.abs(np.where(np.isfinite(want_m), want_m, 0) - limit_m) > 1e-3
        fin = np.isfinite(want_m)
        assert fin.sum() > 0
        np.testing.assert_array_equal(np.isfinite(got_m)[clear], fin[clear])
        np.testing.assert_allclose(
            got_m[fin & clear], want_m[fin & clear], rtol=0, atol=DISTANCE_TOLERANCE_M
        )
        # the reported nearest facility really is at that distance
        reached = np.flatnonzero(np.isfinite(got_m))
        sample = rng.choice(reached, min(20, reached.size), replace=False)
        rev = g.reverse(copy=False)
        for node in sample.tolist():
            d = nx.dijkstra_path_length(rev, ("fac", int(nearest[node])), node, weight="w")
            assert d == pytest.approx(got_m[node], abs=DISTANCE_TOLERANCE_M)

    # counts within levels against one networkx search per facility
    edge, frac, access_m = _random_facilities(net, 12, rng)
    levels_m = np.array([360.0, 720.0, 1080.0])
    counts = counts_within(
        graph, edge, frac, access_m / speed_m_s, levels_s=tuple(levels_m / speed_m_s)
    )
    g = base.copy()
    fac_nodes = _add_facilities(g, net, edge, frac, access_m)
    rev = g.reverse(copy=False)
    want_c = np.zeros((net.n_nodes, 3), dtype=np.int64)
    near_level = np.zeros(net.n_nodes, bool)
    for f in fac_nodes:
        d = nx.single_source_dijkstra_path_length(rev, f, cutoff=levels_m[-1] + 1.0, weight="w")
        for node, dist in d.items():
            if isinstance(node, int):
                want_c[node] += dist <= levels_m
                near_level[node] |= bool((np.abs(dist - levels_m) < 1e-3).any())
    assert want_c.sum() > 0
    np.testing.assert_array_equal(counts[~near_level], want_c[~near_level])


def test_engine_equals_networkx_on_helsinki(helsinki_net: WalkNetwork) -> None:
    _check_against_networkx(helsinki_net, seed=1)


@pytest.mark.slow
@pytest.mark.shared_data
def test_engine_equals_networkx_on_liechtenstein(shared_network) -> None:
    _check_against_networkx(shared_network("osm/liechtenstein-latest.osm.pbf"), seed=2)


@pytest.mark.slow
@pytest.mark.shared_data
def test_engine_equals_networkx_on_porto(shared_network) -> None:
    _check_against_networkx(shared_network("osm/porto.osm.pbf"), seed=3)


def test_engine_equals_networkx_with_one_way_edges(helsinki_net: WalkNetwork) -> None:
    # make a tenth of Helsinki's edges one-way, at random, to exercise the reversed search
    rng = np.random.default_rng(7)
    d = helsinki_net.direction.copy()
    d[rng.random(d.size) < 0.1] = 1
    _check_against_networkx(dataclasses.replace(helsinki_net, direction=d), seed=4)


def test_facility_at_the_head_of_a_one_way_edge_is_reached_from_that_node():
    """frac = 1 on a one-way edge: the node at the edge's end *is* the facility's place
    (0 s along the edge), although the edge cannot be walked backwards (0 * inf)."""
    from circles.access import AccessGraph, nearest_seconds
    from circles.network import build_network

    lon = np.array([24.94, 24.941, 24.942])
    lat = np.array([60.17, 60.17, 60.17])
    net = build_network(
        np.array([1, 2, 3]),
        lon,
        lat,
        np.array([1, 2]),
        np.array([2, 3]),
        direction=np.array([1, 0], dtype=np.int8),
    )
    g = AccessGraph.from_network(net, net.edge_seconds(1.0))
    e = int(np.flatnonzero((net.node_id[net.u] == 1) & (net.node_id[net.v] == 2))[0])
    sec, _ = nearest_seconds(g, np.array([e]), np.array([1.0]), np.array([5.0]))
    node2 = int(np.flatnonzero(net.node_id == 2)[0])
    assert sec[node2] == pytest.approx(5.0)


# --------------------------------------------------------------------------- local counts


def _many_entries(net: WalkNetwork, rng: np.random.Generator, n_fac: int):
    """Point facilities and area-like facilities with 2-6 entries spread up to 1 km."""
    from circles.access import Entries

    fac, edge, frac, acc = [], [], [], []
    for f in range(n_fac):
        e0 = int(rng.integers(0, net.n_edges))
        k = 1 if f % 3 else int(rng.integers(2, 7))
        x0, y0 = net.x[net.u[e0]], net.y[net.u[e0]]
        near = np.flatnonzero(np.hypot(net.x[net.u] - x0, net.y[net.u] - y0) < 1000.0)
        for e in [e0, *rng.choice(near, k - 1).tolist()]:
            fac.append(f)
            edge.append(e)
            frac.append(float(rng.random()))
            acc.append(float(rng.uniform(0.0, 60.0)))
    n = len(fac)
    return Entries(
        n_fac,
        np.asarray(fac, np.int64),
        np.asarray(edge, np.int64),
        np.asarray(frac),
        np.full(n, -1, np.int64),
        np.asarray(acc),
    )


@pytest.mark.parametrize("chunk", [1, 7, 32, 10_000])
def test_local_counts_equal_the_whole_network_search(
    helsinki_net: WalkNetwork, chunk, monkeypatch
) -> None:
    """Each chunk searches only the sub-network its walks can reach: the counts are
    exactly those of one search per facility over the whole network."""
    from circles import access

    monkeypatch.setattr(access, "COUNT_LOCAL_MIN_PAIRS", 0)
    monkeypatch.setattr(access, "COUNT_LOCAL_MAX_SHARE", 1.0)

    net = helsinki_net
    graph = AccessGraph.from_network(net, net.edge_seconds(1.2))
    entries = _many_entries(net, np.random.default_rng(5), 90)
    levels = np.array([300.0, 600.0, 900.0])
    whole = np.zeros((net.n_nodes, 3), dtype=np.int32)
    access._count_whole(
        graph.with_entries(entries), np.arange(entries.n_facilities), net.n_nodes, levels, whole
    )
    got = counts_within(graph, entries, levels_s=levels, chunk=chunk)
    assert whole[:, 2].sum() > 10 * net.n_nodes // 100  # the facilities reach many nodes
    np.testing.assert_array_equal(got, whole)


@pytest.mark.shared_data
def test_local_counts_search_less_than_the_network(shared_network, monkeypatch) -> None:
    """On a real network with a 5-minute level the chunks never fall back to the whole
    network (the bound is in use), and the radius follows the walking speed."""
    from circles import access

    net = shared_network("osm/liechtenstein-latest.osm.pbf")
    monkeypatch.setattr(access, "COUNT_LOCAL_MIN_PAIRS", 0)
    graph = AccessGraph.from_network(net, net.edge_seconds(1.2))
    assert graph.seconds_per_metre() == pytest.approx(1 / 1.2, rel=1e-2)

    def refuse(*a, **k):
        raise AssertionError("searched the whole network")

    monkeypatch.setattr(access, "_count_whole", refuse)
    entries = _many_entries(net, np.random.default_rng(2), 20)
    assert counts_within(graph, entries, levels_s=(300.0,), chunk=4).sum() > 0


def test_local_counts_without_a_bound_search_the_whole_network(t_network) -> None:
    """An arc that costs nothing between two distinct points (no seconds-per-metre bound)
    makes every chunk search the whole network, with the same counts."""
    net = t_network
    cost = net.edge_seconds(1.0).copy()
    cost[0] = 0.0
    graph = AccessGraph.from_network(net, cost)
    assert graph.seconds_per_metre() == 0.0
    e, f = at_frac(net, 2, 3, 0.5)
    counts = counts_within(graph, np.array([e]), np.array([f]), np.array([0.0]), levels_s=(60.0,))
    sec, _ = nearest_seconds(graph, np.array([e]), np.array([f]), np.array([0.0]))
    np.testing.assert_array_equal(counts[:, 0], (sec <= 60.0).astype(np.int32))
