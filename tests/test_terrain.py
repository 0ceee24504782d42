"""Tests of circles.terrain: walking profiles, edge splitting, DEM sampling, Tobler times.

Networks are hand-drawn in UTM zone 35N (EPSG:32635) near Helsinki (lon 24.94, lat 60.17)
and DEMs are synthetic GeoTIFFs written by the tests, so every expected value follows
from a formula worked out in the test.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import write_tif
from pyproj import Transformer
from rasterio.transform import Affine
from scipy.sparse.csgraph import dijkstra

from circles._errors import ConfigError, DataFileError, InputDataError
from circles.network import WalkNetwork, build_network
from circles.terrain import (
    WALK_PROFILES,
    WalkProfile,
    edge_seconds,
    sample_elevation,
    split_long_edges,
    tobler_factor,
)

UTM = "EPSG:32635"
X0, Y0 = 385_000.0, 6_672_000.0  # near Helsinki city centre, in EPSG:32635
TO_LL = Transformer.from_crs(UTM, "EPSG:4326", always_xy=True)


def make_net(
    xy: dict[int, tuple[float, float]],
    edges: list[tuple[int, int]],
    *,
    highway: list[str] | None = None,
    direction: list[int] | None = None,
) -> WalkNetwork:
    """A network from node coordinates in metres relative to (X0, Y0) in EPSG:32635."""
    ids = np.array(list(xy), dtype=np.int64)
    xs = np.array([X0 + xy[i][0] for i in ids])
    ys = np.array([Y0 + xy[i][1] for i in ids])
    lon, lat = TO_LL.transform(xs, ys)
    return build_network(
        ids,
        lon,
        lat,
        np.array([e[0] for e in edges]),
        np.array([e[1] for e in edges]),
        highway=np.array(highway, dtype=object) if highway else None,
        direction=np.array(direction, dtype=np.int8) if direction else None,
        keep_largest=False,
    )


def pos(net: WalkNetwork, node: int) -> int:
    """Position of an OSM node id in the network's arrays."""
    return int(np.flatnonzero(net.node_id == node)[0])


def edge(net: WalkNetwork, a: int, b: int) -> tuple[int, bool]:
    """Index of the edge between node ids a and b and whether it is stored as a->b."""
    pa, pb = pos(net, a), pos(net, b)
    fwd = np.flatnonzero((net.u == pa) & (net.v == pb))
    if fwd.size:
        return int(fwd[0]), True
    return int(np.flatnonzero((net.u == pb) & (net.v == pa))[0]), False


def seconds(net: WalkNetwork, cost: np.ndarray, a: int, b: int) -> float:
    """Seconds to walk the edge from node a to node b."""
    e, fwd = edge(net, a, b)
    return float(cost[e, 0] if fwd else cost[e, 1])


def from_origin(left: float, top: float, xsize: float, ysize: float) -> Affine:
    """North-up transform (rasterio's from_origin warns under affine >= 3.1)."""
    return Affine(xsize, 0.0, left, 0.0, -ysize, top)


def utm_plane_dem(path: Path, gx: float, gy: float, *, cell_m: float = 10.0) -> Path:
    """DEM in EPSG:32635, z = 100 + gx (x - X0) + gy (y - Y0): 60 x 60 cells from X0-100, Y0-100."""
    n = 60
    left, top = X0 - 100.0, Y0 - 100.0 + n * cell_m
    cx = left + (np.arange(n) + 0.5) * cell_m
    cy = top - (np.arange(n) + 0.5) * cell_m
    z = 100.0 + gx * (cx[None, :] - X0) + gy * (cy[:, None] - Y0)
    return write_tif(path, z.astype(np.float64), from_origin(left, top, cell_m, cell_m), UTM)


def plane_at(net: WalkNetwork, gx: float, gy: float) -> np.ndarray:
    return 100.0 + gx * (net.x - X0) + gy * (net.y - Y0)


# an L: 1 -> 2 runs 100 m east, 2 -> 3 runs 100 m north
L_XY = {1: (105.0, 105.0), 2: (205.0, 105.0), 3: (205.0, 205.0)}
L_EDGES = [(1, 2), (2, 3)]


def test_tobler_factor_hand_values() -> None:
    # exp(-3.5 |s + 0.05|) / exp(-3.5 * 0.05)
    assert tobler_factor(0.0) == pytest.approx(1.0, rel=1e-15)
    assert tobler_factor(0.05) == pytest.approx(math.exp(-0.175), rel=1e-12)  # 0.83946
    assert tobler_factor(0.05) == pytest.approx(0.8394570207692074, rel=1e-12)
    assert tobler_factor(-0.05) == pytest.approx(1.1912462166123581, rel=1e-12)  # optimum
    assert tobler_factor(-0.1) == pytest.approx(1.0, rel=1e-12)
    assert tobler_factor(0.1) == pytest.approx(math.exp(-0.35), rel=1e-12)
    # 6 km/h * factor(0) * exp(-0.175) is Tobler's 5.04 km/h on the flat
    assert 6.0 * math.exp(-0.175) == pytest.approx(5.036, abs=1e-3)


def test_profiles_documented_and_validated() -> None:
    assert set(WALK_PROFILES) >= {"adult", "elderly", "child", "wheelchair"}
    assert WALK_PROFILES["adult"].speed_m_s == 1.2
    assert WALK_PROFILES["elderly"].speed_m_s == 0.9
    wc = WALK_PROFILES["wheelchair"]
    assert wc.exclude_steps
    assert wc.max_grade == pytest.approx(1 / 12)
    assert all(p.source for p in WALK_PROFILES.values())
    with pytest.raises(ConfigError, match="speed_m_s must be in"):
        WalkProfile(name="bad", speed_m_s=0.0)
    with pytest.raises(ConfigError, match="steps_factor must be >= 1"):
        WalkProfile(name="bad", speed_m_s=1.0, steps_factor=0.5)
    with pytest.raises(ConfigError, match="max_grade must be a positive"):
        WalkProfile(name="bad", speed_m_s=1.0, max_grade=-0.1)


def test_flat_times_steps_and_wheelchair() -> None:
    net = make_net(L_XY, L_EDGES, highway=["footway", "steps"])
    length = {k: net.length_m[edge(net, *k)[0]] for k in L_EDGES}
    assert length[(1, 2)] == pytest.approx(100.0, rel=1e-3)
    adult = edge_seconds(net, "adult")
    assert adult.shape == (2, 2)
    assert seconds(net, adult, 1, 2) == pytest.approx(length[(1, 2)] / 1.2, rel=1e-12)
    assert seconds(net, adult, 2, 1) == pytest.approx(length[(1, 2)] / 1.2, rel=1e-12)
    # steps: 2.0 x the flat time for adults, 2.5 x for the elderly, impossible in a wheelchair
    assert seconds(net, adult, 2, 3) == pytest.approx(2.0 * length[(2, 3)] / 1.2, rel=1e-12)
    eld = edge_seconds(net, WALK_PROFILES["elderly"])
    assert seconds(net, eld, 3, 2) == pytest.approx(2.5 * length[(2, 3)] / 0.9, rel=1e-12)
    wc = edge_seconds(net, "wheelchair")
    assert np.isinf(seconds(net, wc, 2, 3))
    assert np.isinf(seconds(net, wc, 3, 2))
    assert seconds(net, wc, 1, 2) == pytest.approx(length[(1, 2)] / 0.9, rel=1e-12)
    with pytest.raises(ConfigError, match="unknown walk profile"):
        edge_seconds(net, "jogger")


def test_plane_dem_sampling_and_tobler_times(tmp_path: Path) -> None:
    net = make_net(L_XY, L_EDGES)
    dem = utm_plane_dem(tmp_path / "plane.tif", 0.08, 0.0)  # 8 % rise to the east
    z = sample_elevation(net, dem)
    # bilinear interpolation reproduces a plane exactly
    np.testing.assert_allclose(z, plane_at(net, 0.08, 0.0), rtol=0, atol=1e-6)
    assert z[pos(net, 2)] - z[pos(net, 1)] == pytest.approx(8.0, abs=1e-3)

    cost = edge_seconds(net, "adult", elevation_m=z)
    e12, _ = edge(net, 1, 2)
    length = net.length_m[e12]
    s = (z[pos(net, 2)] - z[pos(net, 1)]) / length  # ~0.08 uphill from 1 to 2
    up = length / (1.2 * math.exp(-3.5 * abs(s + 0.05)) / math.exp(-3.5 * 0.05))
    down = length / (1.2 * math.exp(-3.5 * abs(-s + 0.05)) / math.exp(-3.5 * 0.05))
    assert seconds(net, cost, 1, 2) == pytest.approx(up, rel=1e-12)
    assert seconds(net, cost, 2, 1) == pytest.approx(down, rel=1e-12)
    # by hand for s = 0.08: uphill exp(-3.5 * 0.13) / exp(-0.175) = exp(-0.28) = 0.7558;
    # downhill exp(-3.5 * 0.03) / exp(-0.175) = exp(0.07) = 1.0725
    assert seconds(net, cost, 1, 2) == pytest.approx(length / 1.2 / 0.7558, rel=2e-3)
    assert seconds(net, cost, 2, 1) == pytest.approx(length / 1.2 / 1.0725, rel=2e-3)
    # the northward edge is level on this plane: flat time both ways
    e23, _ = edge(net, 2, 3)
    np.testing.assert_allclose(cost[e23], net.length_m[e23] / 1.2, rtol=1e-9)


def test_flat_dem_gives_flat_times_and_reversed_slope_swaps(tmp_path: Path) -> None:
    net = make_net(L_XY, L_EDGES)
    flat = sample_elevation(net, utm_plane_dem(tmp_path / "flat.tif", 0.0, 0.0))
    np.testing.assert_allclose(flat, 100.0, atol=1e-9)
    np.testing.assert_allclose(
        edge_seconds(net, "elderly", elevation_m=flat), edge_seconds(net, "elderly"), rtol=1e-12
    )
    z_up = sample_elevation(net, utm_plane_dem(tmp_path / "up.tif", 0.06, 0.03))
    z_down = sample_elevation(net, utm_plane_dem(tmp_path / "down.tif", -0.06, -0.03))
    c_up = edge_seconds(net, "adult", elevation_m=z_up)
    c_down = edge_seconds(net, "adult", elevation_m=z_down)
    np.testing.assert_allclose(c_down, c_up[:, ::-1], rtol=1e-9)
    assert not np.allclose(c_up[:, 0], c_up[:, 1])


def test_wheelchair_excludes_steep_edges_both_ways(tmp_path: Path) -> None:
    net = make_net(L_XY, L_EDGES)
    z = sample_elevation(net, utm_plane_dem(tmp_path / "steep.tif", 0.10, 0.0))
    wc = edge_seconds(net, "wheelchair", elevation_m=z)
    assert np.isinf(seconds(net, wc, 1, 2))  # 10 % > 1:12
    assert np.isinf(seconds(net, wc, 2, 1))
    e23, _ = edge(net, 2, 3)
    np.testing.assert_allclose(wc[e23], net.length_m[e23] / 0.9, rtol=1e-9)
    # 8 % is below 1:12 (8.33 %): usable, but slower uphill
    z8 = sample_elevation(net, utm_plane_dem(tmp_path / "ramp.tif", 0.08, 0.0))
    wc8 = edge_seconds(net, "wheelchair", elevation_m=z8)
    assert np.isfinite(wc8).all()
    assert seconds(net, wc8, 1, 2) > seconds(net, wc8, 2, 1)


def test_geographic_dem_plane_exact(tmp_path: Path) -> None:
    net = make_net(L_XY, L_EDGES)
    cell = 0.0005
    left, top = float(net.lon.min()) - 0.01, float(net.lat.max()) + 0.01
    n = 60
    clon = left + (np.arange(n) + 0.5) * cell
    clat = top - (np.arange(n) + 0.5) * cell
    z = 50.0 + 1000.0 * (clon[None, :] - 24.9) + 2000.0 * (clat[:, None] - 60.1)
    dem = write_tif(tmp_path / "geo.tif", z, from_origin(left, top, cell, cell), "EPSG:4326")
    got = sample_elevation(net, dem)
    want = 50.0 + 1000.0 * (net.lon - 24.9) + 2000.0 * (net.lat - 60.1)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


def test_cone_downhill_faster_than_uphill(tmp_path: Path) -> None:
    # cone of 10 % slope with its apex on a cell centre at node 1
    cell = 5.0
    apex_x, apex_y = X0 + 102.5, Y0 + 102.5
    n = 120
    left, top = X0 - 100.0, Y0 - 100.0 + n * cell
    cx = left + (np.arange(n) + 0.5) * cell
    cy = top - (np.arange(n) + 0.5) * cell
    r = np.hypot(cx[None, :] - apex_x, cy[:, None] - apex_y)
    dem = write_tif(tmp_path / "cone.tif", 200.0 - 0.1 * r, from_origin(left, top, cell, cell), UTM)
    net = make_net({1: (102.5, 102.5), 2: (202.5, 102.5), 3: (302.5, 102.5)}, [(1, 2), (2, 3)])
    z = sample_elevation(net, dem)
    want = 200.0 - 0.1 * np.hypot(net.x - apex_x, net.y - apex_y)
    np.testing.assert_allclose(z, want, atol=0.02)
    cost = edge_seconds(net, "adult", elevation_m=z)
    for a, b in [(1, 2), (2, 3)]:
        e, _ = edge(net, a, b)
        flat = net.length_m[e] / 1.2
        # outward is a ~10 % descent: Tobler factor exp(-3.5*0.05)/exp(-0.175) = 1
        assert seconds(net, cost, a, b) == pytest.approx(flat, rel=5e-3)
        # inward is a ~10 % climb: factor exp(-0.35)
        assert seconds(net, cost, b, a) == pytest.approx(flat / math.exp(-0.35), rel=5e-3)


def test_dijkstra_on_directed_arcs_uphill_slower(tmp_path: Path) -> None:
    # straight line 1 - 2 - 3 going east, climbing 5 % to the east
    net = make_net({1: (105.0, 105.0), 2: (155.0, 105.0), 3: (255.0, 105.0)}, [(1, 2), (2, 3)])
    z = sample_elevation(net, utm_plane_dem(tmp_path / "hill.tif", 0.05, 0.0))
    cost = edge_seconds(net, "adult", elevation_m=z)
    tail, head, c = net.directed_arcs(cost)
    graph = sp.csr_matrix((c, (tail, head)), shape=(net.n_nodes, net.n_nodes))
    d = dijkstra(graph, directed=True)
    a, b = pos(net, 1), pos(net, 3)
    up = sum(seconds(net, cost, p, q) for p, q in [(1, 2), (2, 3)])
    down = sum(seconds(net, cost, p, q) for p, q in [(3, 2), (2, 1)])
    assert d[a, b] == pytest.approx(up, rel=1e-12)
    assert d[b, a] == pytest.approx(down, rel=1e-12)
    assert d[a, b] > d[b, a]
    # s = 0.05: uphill factor exp(-0.175), downhill exp(-3.5*0)/exp(-0.175) = exp(0.175)
    total = net.length_m.sum()
    assert d[a, b] == pytest.approx(total / 1.2 / math.exp(-0.175), rel=2e-3)
    assert d[b, a] == pytest.approx(total / 1.2 / math.exp(0.175), rel=2e-3)


def test_nodata_and_outside_dem_are_nan_and_flat(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    net = make_net({1: (105.0, 105.0), 2: (205.0, 105.0), 3: (2000.0, 105.0)}, [(1, 2), (2, 3)])
    # 10 m cells from (X0-100, Y0-100); node 2 at (205, 105) lies in the cell centred
    # (205, 105) = column 30, row 60 - 21 = 39 of the 60 x 60 grid
    n, cell = 60, 10.0
    left, top = X0 - 100.0, Y0 - 100.0 + n * cell
    z = np.full((n, n), 100.0)
    z[39, 30] = -9999.0
    dem = write_tif(tmp_path / "nd.tif", z, from_origin(left, top, cell, cell), UTM, nodata=-9999.0)
    with caplog.at_level(logging.WARNING, logger="circles.terrain"):
        got = sample_elevation(net, dem)
    assert got[pos(net, 1)] == pytest.approx(100.0)
    assert np.isnan(got[pos(net, 2)])  # nodata cell
    assert np.isnan(got[pos(net, 3)])  # outside the DEM
    assert "2 of 3 nodes have no elevation" in caplog.text
    np.testing.assert_allclose(
        edge_seconds(net, "adult", elevation_m=got), edge_seconds(net, "adult"), rtol=1e-12
    )


def test_split_long_edges_preserves_lengths_and_times(tmp_path: Path) -> None:
    net = make_net(
        {10: (0.0, 0.0), 20: (120.0, 0.0), 30: (120.0, 30.0), 40: (120.0, 140.0)},
        [(10, 20), (20, 30), (30, 40)],
        direction=[0, 0, 1],
    )
    before = {k: v.copy() for k, v in (("u", net.u), ("length_m", net.length_m))}
    out = split_long_edges(net, max_length_m=50.0)
    # 120 m -> 3 pieces, 30 m kept, 110 m -> 3 pieces: 3 + 1 + 3 edges, 2 + 2 new vertices
    assert out.n_edges == 7
    assert out.n_nodes == net.n_nodes + 4
    assert out.report["split_vertices_added"] == 4
    np.testing.assert_array_equal(out.node_id[: net.n_nodes], net.node_id)
    assert sorted(out.node_id[net.n_nodes :].tolist()) == [-4, -3, -2, -1]
    assert out.length_m.sum() == pytest.approx(net.length_m.sum(), rel=1e-14)
    assert out.length_m.max() <= 50.0
    # new vertices on the straight line: x at 40 and 80 m along the first edge
    new_x = np.sort(out.x[net.n_nodes :] - X0)
    np.testing.assert_allclose(new_x[:2], [40.0, 80.0], atol=1e-3)
    # one-way pieces keep direction and orientation from 30 towards 40
    oneway = np.flatnonzero(out.direction == 1)
    assert oneway.size == 3
    tail, head, cost = out.directed_arcs()
    d = dijkstra(sp.csr_matrix((cost, (tail, head)), shape=(out.n_nodes,) * 2), directed=True)
    p30, p40 = pos(net, 30), pos(net, 40)  # original positions are kept
    assert d[p30, p40] == pytest.approx(net.length_m[edge(net, 30, 40)[0]], rel=1e-12)
    assert np.isinf(d[p40, p30])
    # network distances between original nodes unchanged
    p10 = pos(net, 10)
    assert d[p10, p40] == pytest.approx(net.length_m.sum(), rel=1e-12)
    # the input is untouched
    np.testing.assert_array_equal(net.u, before["u"])
    np.testing.assert_array_equal(net.length_m, before["length_m"])
    # nothing to split: same object back
    assert split_long_edges(out, max_length_m=50.0) is out


def test_split_ids_continue_below_negative_ids() -> None:
    net = make_net({-7: (0.0, 0.0), 5: (100.0, 0.0)}, [(-7, 5)])
    out = split_long_edges(net, max_length_m=60.0)
    assert out.node_id.tolist()[2:] == [-8]
    with pytest.raises(InputDataError, match="max_length_m must be a positive"):
        split_long_edges(net, max_length_m=0.0)


def test_split_then_slope_reads_a_hill_over_a_long_edge(tmp_path: Path) -> None:
    # a 200 m edge over a ridge: both ends at the same height, so unsplit it looks flat
    cell = 10.0
    n = 60
    left, top = X0 - 100.0, Y0 - 100.0 + n * cell
    cx = left + (np.arange(n) + 0.5) * cell
    z = 100.0 + 0.1 * (100.0 - np.abs(cx - (X0 + 105.0)))  # ridge at x = X0 + 105
    grid = np.repeat(z[None, :], n, axis=0)
    dem = write_tif(tmp_path / "ridge.tif", grid, from_origin(left, top, cell, cell), UTM)
    net = make_net({1: (5.0, 105.0), 2: (205.0, 105.0)}, [(1, 2)])
    flat = edge_seconds(net, "adult", elevation_m=sample_elevation(net, dem))
    np.testing.assert_allclose(flat, edge_seconds(net, "adult"), rtol=1e-6)
    split = split_long_edges(net, max_length_m=50.0)
    hill = edge_seconds(split, "adult", elevation_m=sample_elevation(split, dem))
    assert hill.sum() > flat.sum() * 1.05


def test_input_errors(tmp_path: Path) -> None:
    net = make_net(L_XY, L_EDGES)
    with pytest.raises(DataFileError, match="DEM file not found"):
        sample_elevation(net, tmp_path / "missing.tif")
    with pytest.raises(InputDataError, match="one value per node"):
        edge_seconds(net, "adult", elevation_m=np.zeros(2))
    bad = tmp_path / "bad.tif"
    bad.write_text("not a tiff")
    with pytest.raises(DataFileError, match="cannot read DEM"):
        sample_elevation(net, bad)
    with pytest.raises(InputDataError, match="WalkNetwork"):
        split_long_edges("net")  # type: ignore[arg-type]
