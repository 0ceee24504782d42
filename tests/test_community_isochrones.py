"""Community isochrones drawn from street chains, sparse reach, and results equal to the
previous implementation's on Liechtenstein (the frozen reference below).

``reach_polygons`` builds each level on the one below from chain buffers drawn once per
network; the previous implementation (circles at commit cdbe71e, copied here as
``previous_*``) drew every level from all edges and nested the levels by a second union.
Both buffer the same reached streets on the same 1 mm grid; where a street is drawn as
one chain here and as differently merged pieces there, round ends and corners have their
chords at other angles: the outlines then differ by at most the chord error of the buffer
(:data:`CHORD_ERROR_M`), nowhere more.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import shapely
from scipy.sparse.csgraph import dijkstra
from test_isochrones import (
    RECT,
    RECT_SEGMENTS,
    RING,
    RING_SEGMENTS,
    X0,
    Y0,
    assert_nested,
    node_seconds,
    planar_network,
    planar_seconds,
    pos_of,
)

from circles import geometry
from circles.access import AccessGraph, category_access, seconds_from_nodes
from circles.geometry import (
    NETWORK_BUFFER_M,
    PRECISION_M,
    QUAD_SEGS,
    UNION,
    StreetChains,
    directed_edge_cost,
    isochrone_polygons,
    polygonal,
    reach_polygons,
)
from circles.network import WalkNetwork

#: Largest gap between a round buffer drawn with QUAD_SEGS segments per quarter circle and
#: the true circle (the sagitta of one segment), at the default 25 m: 0.48 m.
CHORD_ERROR_M = NETWORK_BUFFER_M * (1 - math.cos(math.pi / (4 * QUAD_SEGS)))

LEVELS_S = [300.0, 600.0, 900.0]


def sparse(secs: np.ndarray, limit: float = np.inf) -> tuple[np.ndarray, np.ndarray]:
    keep = np.flatnonzero(secs <= limit)
    return keep, secs[keep]


# --------------------------------------------------------------------------- the reference


def previous_pieces(
    net: WalkNetwork, secs: np.ndarray, cost: np.ndarray, limit: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """geometry._pieces as it was: every edge scanned for every level."""
    x, y = np.asarray(net.x, float), np.asarray(net.y, float)
    t_u, t_v = secs[net.u], secs[net.v]
    near = np.flatnonzero((t_u <= limit) | (t_v <= limit))
    u, v = net.u[near], net.v[near]
    f_u = geometry._reach_fraction(limit - t_u[near], cost[near, 0])
    f_v = geometry._reach_fraction(limit - t_v[near], cost[near, 1])
    whole = (f_u >= 1) | (f_v >= 1) | ((f_u >= 0) & (f_v >= 0) & (f_u + f_v >= 1))
    part_u = ~whole & (f_u > 0)
    part_v = ~whole & (f_v > 0)
    xu, yu, xv, yv = x[u], y[u], x[v], y[v]
    iu, iv = np.flatnonzero(part_u), np.flatnonzero(part_v)
    fu, fv = f_u[iu], f_v[iv]
    cut_u = np.column_stack([xu[iu] + fu * (xv[iu] - xu[iu]), yu[iu] + fu * (yv[iu] - yu[iu])])
    cut_v = np.column_stack([xv[iv] + fv * (xu[iv] - xv[iv]), yv[iv] + fv * (yu[iv] - yv[iv])])
    iw = np.flatnonzero(whole)
    start = np.concatenate(
        [np.column_stack([xu[iw], yu[iw]]), np.column_stack([xu[iu], yu[iu]]), cut_v]
    )
    end = np.concatenate(
        [np.column_stack([xv[iw], yv[iw]]), cut_u, np.column_stack([xv[iv], yv[iv]])]
    )
    touched = np.zeros(x.shape[0], bool)
    touched[u[iw]] = True
    touched[v[iw]] = True
    touched[u[iu]] = True
    touched[v[iv]] = True
    return start, end, np.concatenate([cut_u, cut_v]), touched


def previous_polygons(
    net: WalkNetwork, secs: np.ndarray, cost: np.ndarray, levels_s: list[float]
) -> list[shapely.Geometry]:
    """Community isochrones as the previous implementation drew them: each level from
    all its reached pieces (merged, buffered, unioned, on the 1 mm grid), then each level
    unioned with the one below."""
    raw = []
    for level in sorted(levels_s):
        start, end, _, touched = previous_pieces(net, secs, cost, level)
        lone = (secs <= level) & ~touched
        parts = []
        if start.shape[0]:
            lines = shapely.multilinestrings(shapely.linestrings(np.stack([start, end], axis=1)))
            merged = shapely.get_parts(shapely.line_merge(lines))
            parts.append(shapely.buffer(merged, NETWORK_BUFFER_M, quad_segs=QUAD_SEGS))
        if lone.any():
            pts = shapely.points(np.column_stack([net.x[lone], net.y[lone]]))
            parts.append(shapely.buffer(pts, NETWORK_BUFFER_M, quad_segs=QUAD_SEGS))
        poly = UNION(np.concatenate(parts)) if parts else shapely.Polygon()
        raw.append(polygonal(shapely.set_precision(polygonal(poly), PRECISION_M)))
    out: list[shapely.Geometry] = []
    for poly in raw:
        if out and not out[-1].is_empty:
            poly = polygonal(shapely.union(poly, out[-1], grid_size=PRECISION_M))
        out.append(poly)
    by_level = dict(zip(sorted(levels_s), out, strict=True))
    return [by_level[lev] for lev in levels_s]


def assert_same_ground(new: shapely.Geometry, old: shapely.Geometry) -> None:
    """``new`` and ``old`` differ by at most the buffer's chord error, nowhere more."""
    assert shapely.is_valid(new)
    assert new.geom_type == old.geom_type or {new.geom_type, old.geom_type} <= {
        "Polygon",
        "MultiPolygon",
    }
    assert shapely.hausdorff_distance(new, old) <= CHORD_ERROR_M + 2 * PRECISION_M
    # the differences are slivers along the outline: thin, a tiny share of the area
    diff = shapely.symmetric_difference(new, old)
    assert diff.area <= 1e-3 * old.area
    assert holes_of(new) == holes_of(old)


def holes_of(geom: shapely.Geometry) -> int:
    return int(shapely.get_num_interior_rings(shapely.get_parts(geom)).sum())


# --------------------------------------------------------------------------- street chains


def test_chains_of_a_hand_drawn_network() -> None:
    #   4 --- 5     nodes 2, 4 and 5 join two edges: chains 1-2-3 and 3-4-5-6; node 3 and
    #   |     |     node 6 are junctions (three edges), so 6-3 and 6-7 are chains of their
    #   3 --- 6     own; 7 is a dead end
    #   |     |
    #   2     7
    #   |
    #   1
    pts = {1: (0, 0), 2: (0, 100), 3: (0, 200), 4: (0, 300), 5: (100, 300), 6: (100, 200)}
    pts[7] = (100, 100)
    segs = [(1, 2), (2, 3), (3, 4), (4, 5), (5, 6), (6, 3), (6, 7)]
    net = planar_network(pts, segs)
    chains = StreetChains.of(net)
    assert StreetChains.of(net) is chains  # built once per network
    ids = {e: (int(net.node_id[net.u[e]]), int(net.node_id[net.v[e]])) for e in range(net.n_edges)}
    label = {frozenset(ids[e]): int(chains.chain[e]) for e in range(net.n_edges)}
    assert label[frozenset((1, 2))] == label[frozenset((2, 3))]
    assert label[frozenset((3, 4))] == label[frozenset((4, 5))] == label[frozenset((5, 6))]
    assert len({label[frozenset(p)] for p in [(1, 2), (3, 4), (6, 3), (6, 7)]}) == 4
    assert sorted(chains.chain_size.tolist()) == [1, 1, 2, 3]
    # a loop edge at the dead end 7 (build_network drops loops; a network built otherwise
    # may have one): 7 then has three edge ends, so 6-7 stays a chain of its own
    looped = replace(
        net,
        u=np.append(net.u, pos_of(net, 7)),
        v=np.append(net.v, pos_of(net, 7)),
        length_m=np.append(net.length_m, 10.0),
        direction=np.append(net.direction, 0),
        highway=np.append(net.highway, "footway"),
        way_id=np.append(net.way_id, 99),
    )
    lc = StreetChains.of(looped)
    assert sorted(lc.chain_size.tolist()) == [1, 1, 1, 2, 3]
    np.testing.assert_array_equal(lc.edges_at(np.array([pos_of(net, 7)])), [6, 7])
    # the edges at some nodes, against a brute-force scan
    for nodes in ([pos_of(net, 3)], [pos_of(net, 7)], [pos_of(net, 1), pos_of(net, 6)], []):
        brute = np.flatnonzero(np.isin(net.u, nodes) | np.isin(net.v, nodes))
        np.testing.assert_array_equal(chains.edges_at(np.asarray(nodes, np.int64)), brute)
    # a chain's buffer is the buffer of its edges merged into one line
    c = label[frozenset((3, 4))]
    (buf,) = chains.buffers(np.array([c]), 10.0)
    line = shapely.LineString([(X0, Y0 + 200), (X0, Y0 + 300), (X0 + 100, Y0 + 300)])
    line = shapely.LineString([*line.coords, (X0 + 100, Y0 + 200)])
    assert shapely.hausdorff_distance(buf, line.buffer(10.0, quad_segs=QUAD_SEGS)) < 1e-6
    assert chains.buffers(np.array([c]), 10.0)[0] is buf  # drawn once


def test_reach_polygons_on_the_ring_keep_the_block_as_a_hole() -> None:
    net = planar_network(RING, RING_SEGMENTS)
    cost = directed_edge_cost(net, planar_seconds(net))
    secs = node_seconds(net, cost, pos_of(net, 1))
    chains = StreetChains.of(net)
    assert chains.chain_size.tolist() == [8]  # the ring is one chain
    (whole,) = reach_polygons(chains, *sparse(secs), cost, [2000.0])
    (ref,) = isochrone_polygons(net, secs, cost, [2000.0])
    assert len(whole.interiors) == 1
    assert not whole.covers(shapely.Point(X0 + 200, Y0 + 200))
    assert_same_ground(whole, ref)
    # partly reached (the chain is cut): 100 s from the corner
    (part,) = reach_polygons(chains, *sparse(secs, 150.0), cost, [100.0], buffer_m=10.0)
    (ref,) = isochrone_polygons(net, secs, cost, [100.0], buffer_m=10.0)
    assert shapely.get_num_interior_rings(part) == 0
    assert shapely.hausdorff_distance(part, ref) <= 10.0 * (1 - math.cos(math.pi / 16)) + 0.002
    assert part.area == pytest.approx(ref.area, rel=1e-3)


def test_reach_polygons_nested_covering_and_like_the_dense_drawing() -> None:
    net = planar_network(RECT, RECT_SEGMENTS)
    cost = directed_edge_cost(net, planar_seconds(net))
    secs = node_seconds(net, cost, pos_of(net, 5))
    chains = StreetChains.of(net)
    levels = [180.0, 30.0, 110.0, 0.0, 110.0]
    polys = reach_polygons(chains, *sparse(secs), cost, levels)
    refs = isochrone_polygons(net, secs, cost, levels)
    order = np.argsort(levels, kind="stable")
    for k, i in enumerate(order):
        assert_same_ground(polys[i], refs[i])
        pts = shapely.points(net.x[secs <= levels[i]], net.y[secs <= levels[i]])
        assert shapely.covers(polys[i], pts).all()
        if k:
            assert_nested(polys[order[k - 1]], polys[i])
    assert shapely.to_wkb(polys[2]) == shapely.to_wkb(polys[4])  # a repeated level
    # nothing reached within a level: empty; no node at all: empty everywhere
    (none,) = reach_polygons(chains, np.zeros(0, np.int64), np.zeros(0), cost, [600.0])
    assert none.is_empty
    # the nodes may come in any order
    nodes, s = sparse(secs)
    back = reach_polygons(chains, nodes[::-1], s[::-1], cost, levels)
    assert [shapely.to_wkb(p) for p in back] == [shapely.to_wkb(p) for p in polys]


def test_node_seconds_are_sparse_rows_of_the_dense_matrix() -> None:
    net = planar_network(RECT, RECT_SEGMENTS)
    graph = AccessGraph.from_network(net, planar_seconds(net))
    origins = np.array([pos_of(net, 5), pos_of(net, 1), pos_of(net, 6)])
    dense = dijkstra(graph.forward_matrix(), directed=True, indices=origins, limit=120.0)
    for chunk_bytes in (1, 1 << 20):  # one origin per chunk, all in one
        got = seconds_from_nodes(graph, origins, limit_s=120.0, chunk_bytes=chunk_bytes)
        assert got.shape == dense.shape
        np.testing.assert_array_equal(got.toarray(), dense)
        for i in range(len(origins)):
            nodes, secs = got.reached(i)
            np.testing.assert_array_equal(nodes, np.flatnonzero(np.isfinite(dense[i])))
            np.testing.assert_array_equal(secs, dense[i][nodes])
    # the dense row of origin 5: a and b at 50 s, f at 100 s, c and d beyond 120 s
    row = seconds_from_nodes(graph, origins[:1], limit_s=120.0)[0]
    assert row[pos_of(net, 1)] == pytest.approx(50.0)
    assert row[pos_of(net, 6)] == pytest.approx(100.0)
    assert np.isinf(row[pos_of(net, 3)])
    assert len(seconds_from_nodes(graph, np.zeros(0, np.int64))) == 0


# --------------------------------------------------------------------------- Liechtenstein


@pytest.fixture(scope="module")
def liechtenstein(shared_network):
    return shared_network("osm/liechtenstein-latest.osm.pbf")


@pytest.mark.slow
def test_community_isochrones_equal_the_previous_implementation(liechtenstein) -> None:
    """Liechtenstein, 24 community centres in towns and on the hill villages: every level
    covers the ground of the previous implementation's to within the chord error, with
    the same holes, the same residents and nested levels."""
    import geopandas as gpd

    from circles.coverage import hexagon_communities
    from circles.isochrones import community_centres, community_isochrones

    net = liechtenstein
    graph = AccessGraph.from_network(net, net.edge_seconds(1.2))
    comm = hexagon_communities(net, width_m=2500.0)
    comm = comm.iloc[np.linspace(0, len(comm) - 1, 24).astype(int)].reset_index(drop=True)
    weight = net.node_weight_m()
    iso = community_isochrones(graph, comm, weight, levels_minutes=[5, 10, 15])
    metric = iso.to_crs(net.crs)
    origins = community_centres(net, comm)
    dense = dijkstra(graph.forward_matrix(), directed=True, indices=origins, limit=900.0)
    holes = 0
    for i, cid in enumerate(comm["community_id"]):
        rows = metric[metric["community_id"] == cid].sort_values("minutes")
        ref = previous_polygons(net, dense[i], graph.edge_cost, LEVELS_S)
        for k, (row, old) in enumerate(zip(rows.itertuples(), ref, strict=True)):
            new = row.geometry
            # the layer stores MultiPolygons in EPSG:4326: compare in metres again
            assert_same_ground(new, shapely.multipolygons(shapely.get_parts(old)))
            assert row.residents == float(weight[dense[i] <= LEVELS_S[k]].sum())
            assert row.area_km2 == pytest.approx(old.area / 1e6, rel=1e-4)
            holes += holes_of(new)
        for a, b in zip(rows.geometry.iloc[:-1], rows.geometry.iloc[1:], strict=True):
            assert shapely.area(shapely.difference(a, b.buffer(PRECISION_M))) < 1e-6
    assert holes > 50  # real holes: blocks no reached street enters
    assert isinstance(iso, gpd.GeoDataFrame)


@pytest.mark.slow
def test_minutes_counts_and_service_areas_equal_the_previous_implementation(
    liechtenstein, monkeypatch
) -> None:
    """Minutes and counts against a dense search from every facility (what
    counts_within did), to the last bit; service areas against the previous drawing
    (every level from all its pieces, every edge scanned), to within the chord error."""
    import geopandas as gpd

    from circles.isochrones import service_areas

    net = liechtenstein
    speed = 1.2
    graph = AccessGraph.from_network(net, net.edge_seconds(speed))
    rng = np.random.default_rng(13)
    k = 14
    edge = rng.choice(net.n_edges, k, replace=False).astype(np.int64)
    frac = rng.uniform(0, 1, k)
    frac[:2] = [0.0, 1.0]  # at an end node
    snap_m = rng.uniform(0, 60, k)
    acc = snap_m / speed
    minutes, counts = category_access(
        graph, edge, frac, acc, "clinic", max_minutes=45.0, levels_minutes=(5.0, 10.0, 15.0)
    )
    mat = graph.with_facilities(edge, frac, acc)
    n = net.n_nodes
    each = dijkstra(mat, directed=True, indices=n + np.arange(k), limit=45 * 60.0)[:, :n]
    np.testing.assert_array_equal(minutes, each.min(axis=0) / 60.0)
    expected = np.stack([(each <= 60.0 * m).sum(axis=0) for m in (5, 10, 15)], axis=1)
    np.testing.assert_array_equal(counts, expected)

    fac = gpd.GeoDataFrame(
        {
            "facility_id": [f"f{i}" for i in range(k)],
            "category": ["clinic"] * 9 + ["school"] * (k - 9),
            "status": "snapped",
            "edge": edge,
            "frac": frac,
            "snap_m": snap_m,
        },
        geometry=gpd.points_from_xy(net.lon[net.u[edge]], net.lat[net.u[edge]]),
        crs=4326,
    )

    from circles.access import SnappedArrays
    from circles.geometry import facility_edge_pieces
    from circles.isochrones import _edge_entries

    now = service_areas(
        graph, fac, net.node_weight_m(), levels_minutes=[5, 10], speed_m_s=speed,
        per_facility=False,
    )  # fmt: skip
    assert len(now) == 4
    metric = now.to_crs(net.crs)
    # the previous drawing of a category's area: every level from all its pieces (every
    # edge scanned), the facilities' own edges added, nested by a second union
    monkeypatch.setattr(geometry, "_pieces", previous_pieces)
    ent = SnappedArrays(fac, None).all_entries(speed)
    to_fac = graph.edge_cost[:, ::-1]
    for cat in ("clinic", "school"):
        idx = np.flatnonzero(fac["category"].to_numpy() == cat)
        secs = dijkstra(
            graph.with_entries(ent), directed=True, indices=n + idx, min_only=True, limit=600.0
        )[:n]
        e = _edge_entries(ent.select(idx))

        def extra(level: float, e=e) -> tuple[np.ndarray, np.ndarray]:
            return facility_edge_pieces(net, graph.edge_cost, e.edge, e.frac, e.access_s, level)

        ref = isochrone_polygons(net, secs, to_fac, [300.0, 600.0], extra_pieces=extra)
        rows = metric[metric["category"] == cat].sort_values("minutes")
        assert rows["minutes"].tolist() == [5.0, 10.0]
        for row, old, lev in zip(rows.itertuples(), ref, (300.0, 600.0), strict=True):
            assert_same_ground(row.geometry, shapely.multipolygons(shapely.get_parts(old)))
            assert row.residents == float(net.node_weight_m()[secs <= lev].sum())
            assert row.area_km2 == pytest.approx(old.area / 1e6, rel=1e-3)
        small, large = rows.geometry.tolist()
        assert shapely.area(shapely.difference(small, large.buffer(PRECISION_M))) < 1e-6


def test_threads_change_only_the_speed(helsinki_net) -> None:
    """Communities drawn on several threads equal those drawn one after another, to the
    last bit, and inside one_thread() no pool is used."""
    from circles import isochrones
    from circles.coverage import hexagon_communities
    from circles.isochrones import community_isochrones

    net = helsinki_net
    graph = AccessGraph.from_network(net, net.edge_seconds(1.2))
    comm = hexagon_communities(net, width_m=600.0).iloc[:8]
    args = (graph, comm, net.node_weight_m())
    threaded = community_isochrones(*args, levels_minutes=[5, 10])
    with isochrones.one_thread():
        serial = community_isochrones(*args, levels_minutes=[5, 10])
    assert len(comm) == 8
    assert len(threaded) == 16
    assert threaded.drop(columns="geometry").equals(serial.drop(columns="geometry"))
    assert shapely.to_wkb(threaded.geometry.to_numpy()).tolist() == (
        shapely.to_wkb(serial.geometry.to_numpy()).tolist()
    )


def test_polygonal_drops_what_the_grid_collapsed_to_lines() -> None:
    """Snapping to the 1 mm grid can leave a valid collection of a polygon and a line
    (Porto, below): only the polygon is kept, never the collection."""
    square = shapely.box(0, 0, 10, 10)
    mixed = shapely.GeometryCollection([square, shapely.LineString([(20, 0), (30, 0)])])
    assert shapely.is_valid(mixed)
    assert shapely.equals(polygonal(mixed), square)
    assert polygonal(shapely.GeometryCollection()).geom_type == "Polygon"
    assert polygonal(square) is square


@pytest.mark.slow
def test_porto_centre_whose_level_collapsed_a_sliver(shared_network) -> None:
    """The 10-minute level of this Porto centre came out of the 1 mm grid as a collection
    with a line; its polygons are (Multi)Polygons that cover the previous ground."""
    from circles.coverage import hexagon_communities
    from circles.isochrones import community_centres

    net = shared_network("osm/porto.osm.pbf")
    graph = AccessGraph.from_network(net, net.edge_seconds(1.2))
    comm = hexagon_communities(net, width_m=150.0).iloc[[395]]
    reach = seconds_from_nodes(graph, community_centres(net, comm), limit_s=900.0)
    polys = reach_polygons(StreetChains.of(net), *reach.reached(0), graph.edge_cost, LEVELS_S)
    old = previous_polygons(net, reach[0], graph.edge_cost, LEVELS_S)
    for new, ref in zip(polys, old, strict=True):
        assert new.geom_type in ("Polygon", "MultiPolygon")
        assert_same_ground(new, ref)
