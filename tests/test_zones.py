"""Tests of circles.zones: communities derived as network service zones of centre points."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import shapely
from conftest import LAT0, LON0, make_network, offset, pos

from circles._errors import InputDataError
from circles.coverage import assign_nodes
from circles.network import WalkNetwork
from circles.zones import DERIVED_LABEL, grid_centres, service_zones

SPACING_M = 59.9


@pytest.fixture(scope="module")
def street() -> WalkNetwork:
    """11 nodes (ids 0..10) on a straight street, 59.9 m apart, plus a side branch 11-12."""
    pts = {i: offset(LON0, LAT0, 90.0, SPACING_M * i) for i in range(11)}
    pts[11] = offset(*pts[5], 0.0, 50.0)
    pts[12] = offset(*pts[11], 0.0, 50.0)
    return make_network(pts, [(i, i + 1) for i in range(10)] + [(5, 11), (11, 12)])


def _centres(net: WalkNetwork, nodes: dict[str, int]) -> gpd.GeoDataFrame:
    idx = [pos(net, n) for n in nodes.values()]
    return gpd.GeoDataFrame(
        {"centre_id": list(nodes), "label": [f"村{k}" for k in nodes]},
        geometry=gpd.points_from_xy(net.lon[idx], net.lat[idx]),
        crs="EPSG:4326",
    )


def _zone_of(net: WalkNetwork, z, node_id: int) -> str:
    return str(z.zones["community_id"].iloc[z.node_zone[pos(net, node_id)]])


def test_nodes_go_to_the_centre_they_reach_soonest(street: WalkNetwork) -> None:
    z = service_zones(street, _centres(street, {"west": 1, "east": 8}), name_column="label")
    # node 4: 3 steps to node 1, 4 to node 8; node 5: 4 vs 3; the branch hangs off node 5
    expected = {i: "west" for i in range(5)} | {i: "east" for i in (5, 6, 7, 8, 9, 10, 11, 12)}
    assert {i: _zone_of(street, z, i) for i in expected} == expected
    assert z.zones["n_nodes"].tolist() == [5, 8]
    assert z.zones["name"].tolist() == ["村west", "村east"]
    assert (z.zones["derived"] == DERIVED_LABEL).all()
    # seconds to the own centre at the default 1.2 m/s: node 12 is 3 steps + 100 m from 8
    assert z.node_seconds[pos(street, 12)] == pytest.approx((3 * SPACING_M + 100.0) / 1.2, abs=1e-6)


def test_zones_partition_the_network(street: WalkNetwork) -> None:
    z = service_zones(street, _centres(street, {"a": 0, "b": 4, "c": 10, "d": 12}))
    # every node in exactly one zone ...
    assert (z.node_zone >= 0).all()
    assert z.zones["n_nodes"].sum() == street.n_nodes
    # ... and the polygons say the same: no overlap, each node inside its own zone only
    polys = z.zones.to_crs(street.crs).geometry.to_numpy()
    pts = shapely.points(street.x, street.y)
    inside = shapely.contains(polys[:, None], pts[None, :])
    assert inside.sum(axis=0).tolist() == [1] * street.n_nodes
    np.testing.assert_array_equal(np.argmax(inside, axis=0), z.node_zone)
    np.testing.assert_array_equal(assign_nodes(street, z.zones), z.node_zone)
    assert shapely.area(shapely.intersection(polys[0], polys[1])) == pytest.approx(0.0, abs=1e-6)


def test_cut_off_leaves_far_nodes_unassigned(street: WalkNetwork) -> None:
    z = service_zones(
        street, _centres(street, {"a": 0}), speed_m_s=1.0, max_minutes=3 * SPACING_M / 60.0 + 1e-6
    )
    assigned = sorted(int(street.node_id[i]) for i in np.flatnonzero(z.node_zone >= 0))
    assert assigned == [0, 1, 2, 3]


def test_boundary_clips_polygons(street: WalkNetwork) -> None:
    box = shapely.box(LON0 - 0.01, LAT0 - 0.01, float(street.lon[pos(street, 6)]), LAT0 + 0.01)
    z = service_zones(street, _centres(street, {"west": 1, "east": 8}), boundary=box)
    box_m = gpd.GeoSeries([box], crs="EPSG:4326").to_crs(street.crs).iloc[0]
    polys_m = z.zones.to_crs(street.crs).geometry.to_numpy()
    assert shapely.covers(shapely.buffer(box_m, 1e-3), polys_m).all()
    # the east zone lost what lies east of node 6, the west zone kept all of its cells
    assert shapely.area(polys_m[1]) < shapely.area(polys_m[0])


def test_centre_off_the_network_gets_no_zone(street: WalkNetwork) -> None:
    c = _centres(street, {"a": 0, "b": 10})
    far = offset(LON0, LAT0, 180.0, 1000.0)
    c = gpd.GeoDataFrame(
        {"centre_id": ["a", "far"], "label": ["x", "y"]},
        geometry=[c.geometry.iloc[0], shapely.Point(far)],
        crs="EPSG:4326",
    )
    z = service_zones(street, c)
    assert z.zones["centre_status"].tolist() == ["snapped", "unreachable"]
    assert z.zones["n_nodes"].tolist() == [street.n_nodes, 0]
    assert z.zones.geometry.iloc[1].is_empty


def test_bad_inputs(street: WalkNetwork) -> None:
    c = _centres(street, {"a": 0, "b": 3})
    with pytest.raises(InputDataError, match="duplicate centre ids"):
        service_zones(street, c.assign(centre_id="x"))
    with pytest.raises(InputDataError, match="no column 'code'"):
        service_zones(street, c, id_column="code")
    with pytest.raises(InputDataError, match="no centres given"):
        service_zones(street, c.iloc[:0])
    far = c.copy()
    far.geometry = gpd.points_from_xy([0.0, 0.1], [0.0, 0.1])
    with pytest.raises(InputDataError, match="no centre lies within"):
        service_zones(street, far)


def test_futian_grid_zones_partition_the_real_network(shared_network) -> None:
    net = shared_network("china/shenzhen_futian_walk.graphml")
    centres = grid_centres(net, spacing_m=800)
    assert len(centres) > 10
    z = service_zones(net, centres)
    assert (z.node_zone >= 0).all()
    counts = np.bincount(z.node_zone, minlength=len(z.zones))
    np.testing.assert_array_equal(counts, z.zones["n_nodes"].to_numpy())
    np.testing.assert_array_equal(assign_nodes(net, z.zones), z.node_zone)
