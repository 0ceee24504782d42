"""Tests of circles.population with synthetic rasters, communities and buildings.

The network is hand-drawn in UTM zone 35N (EPSG:32635) near Helsinki; rasters are written
by the tests with 100 m cells aligned on (X0, Y0), so which cell holds which node, and
which node is nearest to an empty cell, can be worked out by hand (see ``LAYOUT``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from conftest import write_tif
from pyproj import Transformer
from rasterio.transform import Affine

from circles._errors import DataFileError, InputDataError
from circles.network import WalkNetwork, build_network
from circles.population import (
    PERSONS_PER_M2,
    apply_share,
    building_population,
    community_node_population,
    raster_node_population,
)

UTM = "EPSG:32635"
X0, Y0 = 385_000.0, 6_672_000.0
TO_LL = Transformer.from_crs(UTM, "EPSG:4326", always_xy=True)

# LAYOUT (metres from X0, Y0; 100 m cells, row 0 at the top y = Y0 + 1000):
#   A (150, 850), B (180, 820): both in cell row 1, col 1
#   C (450, 850): row 1, col 4          D (450, 550): row 4, col 4
#   edges A-B, B-C, C-D
XY = {1: (150.0, 850.0), 2: (180.0, 820.0), 3: (450.0, 850.0), 4: (450.0, 550.0)}
EDGES = [(1, 2), (2, 3), (3, 4)]


def make_net() -> WalkNetwork:
    ids = np.array(list(XY), dtype=np.int64)
    lon, lat = TO_LL.transform([X0 + XY[i][0] for i in ids], [Y0 + XY[i][1] for i in ids])
    return build_network(
        ids,
        lon,
        lat,
        np.array([e[0] for e in EDGES]),
        np.array([e[1] for e in EDGES]),
        keep_largest=False,
    )


def pos(net: WalkNetwork, node: int) -> int:
    return int(np.flatnonzero(net.node_id == node)[0])


def layout_raster(path: Path) -> Path:
    """10 x 10 cells of 100 m from (X0, Y0 + 1000) with known people."""
    a = np.zeros((10, 10), dtype=np.float32)
    a[1, 1] = 100.0  # nodes A and B: split by street length
    a[1, 4] = 50.0  # node C
    a[4, 4] = 30.0  # node D
    a[2, 6] = 20.0  # no node; centre (650, 750): C at 223.6 m, D at 282.8 m -> C
    a[6, 0] = 7.0  # no node; centre (50, 350): nearest D at 447 m -> unplaced
    a[5, 5] = -9999.0  # nodata
    a[6, 6] = -3.0  # negative: nodata
    a[7, 1] = np.nan  # NaN: nodata
    a[9, 9] = 1000.0  # centre (950, 50): outside the network bounds + 250 m
    return write_tif(path, a, Affine(100.0, 0, X0, 0, -100.0, Y0 + 1000.0), UTM, nodata=-9999.0)


def test_raster_placement_by_hand(tmp_path: Path) -> None:
    net = make_net()
    res = raster_node_population(net, layout_raster(tmp_path / "pop.tif"))
    w = net.node_weight_m()
    a, b, c, d = (pos(net, i) for i in (1, 2, 3, 4))
    expected = np.zeros(4)
    expected[a] = 100.0 * w[a] / (w[a] + w[b])
    expected[b] = 100.0 * w[b] / (w[a] + w[b])
    expected[c] = 50.0 + 20.0
    expected[d] = 30.0
    np.testing.assert_allclose(res.node_population, expected, rtol=1e-9)
    assert res.raster_total == pytest.approx(207.0)
    assert res.placed == pytest.approx(200.0)
    assert res.unplaced == pytest.approx(7.0)
    assert res.unplaced_cells == 1
    assert res.placed + res.unplaced == pytest.approx(res.raster_total, rel=1e-6)
    # bounds X0-100..X0+700, Y0+300..Y0+1100 clipped to the raster: 7 columns x 7 rows,
    # plus at most one row/column from rounding the window outwards
    assert res.window_shape[0] in (7, 8)
    assert res.window_shape[1] in (7, 8)
    assert "street length" in res.method


def test_smaller_snap_distance_leaves_more_unplaced(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    net = make_net()
    with caplog.at_level(logging.WARNING, logger="circles.population"):
        res = raster_node_population(net, layout_raster(tmp_path / "pop.tif"), max_snap_m=200.0)
    # bounds shrink to X0-50..X0+650, Y0+350..Y0+1050: the cell (6, 0) centre (50, 350)
    # lies on the edge and still counts; (2, 6) at 223.6 m from C is now unplaced
    assert res.unplaced == pytest.approx(27.0)
    assert res.unplaced_cells == 2
    assert res.placed == pytest.approx(180.0)
    assert res.placed + res.unplaced == pytest.approx(res.raster_total, rel=1e-6)
    assert "not placed" in caplog.text


def test_area_polygon_counts_cells_by_centre(tmp_path: Path) -> None:
    net = make_net()
    # area covering x in [X0, X0 + 300], y in [Y0 + 700, Y0 + 1000]: centres of cells
    # in rows 0-2 and columns 0-2 -> only the 100 people of cell (1, 1)
    box = shapely.box(X0, Y0 + 700.0, X0 + 300.0, Y0 + 1000.0)
    area = shapely.transform(box, lambda xy: np.column_stack(TO_LL.transform(xy[:, 0], xy[:, 1])))
    res = raster_node_population(net, layout_raster(tmp_path / "pop.tif"), area=area)
    assert res.raster_total == pytest.approx(100.0)
    assert res.placed == pytest.approx(100.0)
    assert res.node_population[pos(net, 3)] == 0.0
    assert "polygon" in res.method


def test_windowed_read_of_a_large_raster(tmp_path: Path) -> None:
    # 2000 x 2000 cells of 100 m (200 km square) with 1 person per cell; the network
    # sits near the middle. Only the window around the network may be read.
    n = 2000
    left, top = X0 - 100_000.0, Y0 + 100_000.0
    path = write_tif(
        tmp_path / "big.tif",
        np.ones((n, n), dtype=np.float32),
        Affine(100.0, 0, left, 0, -100.0, top),
        UTM,
    )
    net = make_net()
    res = raster_node_population(net, path)
    # 8 x 8 cells (plus at most one from outward rounding) of the 2000 x 2000 were read
    assert 8 <= res.window_shape[0] <= 9
    assert 8 <= res.window_shape[1] <= 9
    # bounds X0-100..X0+700 x Y0+300..Y0+1100: 8 x 8 cell centres inside -> 64 people
    assert res.raster_total == pytest.approx(64.0)
    assert res.placed + res.unplaced == pytest.approx(64.0, rel=1e-6)


def test_geographic_raster_worldpop_style(tmp_path: Path) -> None:
    # EPSG:4326 grid of 0.001 degree cells (about 55 x 111 m here), 1 person per cell
    net = make_net()
    cell = 0.001
    left = float(np.floor(net.lon.min() / cell) * cell) - 0.02
    top = float(np.ceil(net.lat.max() / cell) * cell) + 0.02
    data = np.full((40, 60), 2.0, dtype=np.float32)
    data[0, 0] = -99.0
    path = write_tif(
        tmp_path / "wp.tif", data, Affine(cell, 0, left, 0, -cell, top), "EPSG:4326", nodata=-99.0
    )
    res = raster_node_population(net, path, max_snap_m=100.0)
    assert res.raster_total > 0
    assert res.placed + res.unplaced == pytest.approx(res.raster_total, rel=1e-6)
    # every node's own cell holds 2 people, so every node gets some
    assert (res.node_population > 0).all()
    assert res.unplaced > 0  # corners of the buffered box lie > 100 m from every node


def test_raster_errors(tmp_path: Path) -> None:
    net = make_net()
    with pytest.raises(DataFileError, match="raster file not found"):
        raster_node_population(net, tmp_path / "missing.tif")
    nocrs = tmp_path / "nocrs.tif"
    with rasterio.open(
        nocrs,
        "w",
        driver="GTiff",
        height=2,
        width=2,
        count=1,
        dtype="float32",
        transform=Affine(100.0, 0, X0, 0, -100.0, Y0),
    ) as dst:
        dst.write(np.ones((2, 2), np.float32), 1)
    with pytest.raises(InputDataError, match="has no CRS"):
        raster_node_population(net, nocrs)
    far = write_tif(
        tmp_path / "far.tif",
        np.ones((5, 5), np.float32),
        Affine(100.0, 0, X0 + 50_000, 0, -100.0, Y0),
        UTM,
    )
    with pytest.raises(InputDataError, match="does not cover the study area"):
        raster_node_population(net, far)
    with pytest.raises(InputDataError, match="max_snap_m must be a finite distance"):
        raster_node_population(net, far, max_snap_m=-1.0)


def test_community_population_by_street_length(caplog: pytest.LogCaptureFixture) -> None:
    net = make_net()
    w = net.node_weight_m()
    a, b, c, d = (pos(net, i) for i in (1, 2, 3, 4))
    comm = np.full(4, -1)
    comm[[a, b]] = 0
    comm[c] = 1
    pop = np.array([300.0, np.nan, 40.0])  # community 2 has people but no node
    with caplog.at_level(logging.WARNING, logger="circles.population"):
        out = community_node_population(net, comm, pop)
    assert out[a] == pytest.approx(300.0 * w[a] / (w[a] + w[b]))
    assert out[b] == pytest.approx(300.0 * w[b] / (w[a] + w[b]))
    assert np.isnan(out[c])
    assert out[d] == 0.0
    assert "1 communities with population have no network nodes" in caplog.text
    two = community_node_population(net, comm, np.array([[300.0, 100.0], [5.0, 2.0], [0, 0]]))
    assert two.shape == (4, 2)
    assert two[:, 1].sum() == pytest.approx(102.0)
    with pytest.raises(InputDataError, match="node_community values must be -1"):
        community_node_population(net, np.array([0, 0, 0, 5]), pop)
    with pytest.raises(InputDataError, match="int array of length 4"):
        community_node_population(net, np.zeros(3, int), pop)


def test_building_population(caplog: pytest.LogCaptureFixture) -> None:
    net = make_net()

    def square(x: float, y: float, side: float) -> shapely.Polygon:
        return shapely.box(X0 + x, Y0 + y, X0 + x + side, Y0 + y + side)

    gdf = gpd.GeoDataFrame(
        {
            "building": ["apartments", "house", "commercial", "residential", "yes", "house"],
            "building:levels": ["3", None, "10", "abc", None, "2"],
        },
        geometry=[
            square(150.0, 860.0, 10.0),  # 100 m² x 3 levels, next to A
            square(450.0, 560.0, 20.0),  # 400 m² x 2 (default for house), next to D
            square(440.0, 840.0, 10.0),  # commercial: not counted
            square(460.0, 860.0, 10.0),  # 100 m² x 6 (bad levels -> default), next to C
            square(460.0, 860.0, 10.0),  # building=yes: not counted
            square(2000.0, 2000.0, 10.0),  # 100 m² x 2, far away: unplaced
        ],
        crs=UTM,
    ).to_crs("EPSG:4326")
    with caplog.at_level(logging.WARNING, logger="circles.population"):
        res = building_population(gdf, net)
    ppm2 = PERSONS_PER_M2
    a, c, d = pos(net, 1), pos(net, 3), pos(net, 4)
    assert res.node_population[a] == pytest.approx(300.0 * ppm2, rel=1e-4)
    assert res.node_population[d] == pytest.approx(800.0 * ppm2, rel=1e-4)
    assert res.node_population[c] == pytest.approx(600.0 * ppm2, rel=1e-4)
    assert res.unplaced == pytest.approx(200.0 * ppm2, rel=1e-4)
    assert res.placed + res.unplaced == pytest.approx(res.total, rel=1e-9)
    assert res.buildings_residential == 4
    assert res.buildings_unplaced == 1
    assert res.levels_defaulted == 2
    assert "not placed" in caplog.text
    flat = building_population(gdf, net, default_levels=1.0, persons_per_m2=0.02)
    assert flat.node_population[d] == pytest.approx(400.0 * 0.02, rel=1e-4)
    with pytest.raises(InputDataError, match="has no CRS"):
        building_population(gdf.set_crs(None, allow_override=True), net)


def test_apply_share() -> None:
    np.testing.assert_allclose(apply_share(np.array([10.0, 20.0]), 0.25), [2.5, 5.0])
    np.testing.assert_allclose(
        apply_share(np.array([10.0, 20.0]), np.array([0.1, 0.5])), [1.0, 10.0]
    )
    with pytest.raises(InputDataError, match="between 0 and 1"):
        apply_share(np.array([10.0]), 25.0)
