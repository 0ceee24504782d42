"""Area facilities entered where a walker can enter them (circles.entries).

Hand-drawn places with minutes worked out by hand; networkx as the oracle with the
entries included; real extracts: nodes inside parks at the park, never faster than the
straight line to the footprint, the same answer from the PBF and the XML reader.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import geopandas as gpd
import networkx as nx
import numpy as np
import pandas as pd
import pytest
import shapely
from conftest import LAT0, LON0, make_network, offset, pos, shared_data

from circles import categories as cat_mod
from circles import io
from circles.access import AccessGraph, Entries, compute_access, counts_within, nearest_seconds
from circles.entries import (
    FENCED_SHARE,
    NODE_ON_OUTLINE_M,
    area_entries,
    entry_layer,
    footprint_layer,
)
from circles.facilities import load_facilities, snap_at_points
from circles.network import WalkNetwork, area_enclosure, entrance_mask
from circles.settings import WGS84

#: Metres per second in the hand-drawn tests: seconds are metres.
SPEED = 1.0
#: Geodesic offsets east then north differ from a plane by well under a centimetre here.
TOL_S = 0.05


def xy(x: float, y: float) -> tuple[float, float]:
    """The point ``x`` metres east and ``y`` metres north of the origin (lon, lat)."""
    p = offset(LON0, LAT0, 90.0 if x >= 0 else 270.0, abs(x))
    return offset(*p, 0.0 if y >= 0 else 180.0, abs(y))


def square(x0: float, y0: float, x1: float, y1: float) -> shapely.Polygon:
    """A rectangle with a vertex at the middle of each side too (where gates and
    footways cross it, as an OSM outline shares its nodes with them)."""
    xm, ym = (x0 + x1) / 2, (y0 + y1) / 2
    corners = [(x0, y0), (xm, y0), (x1, y0), (x1, ym), (x1, y1), (xm, y1), (x0, y1), (x0, ym)]
    return shapely.Polygon([xy(*c) for c in corners])


#: The street loop 30 m around a 100 m x 100 m place at (0, 0)-(100, 100): corners
#: 1-4 (SW, SE, NE, NW) and the middles of its sides: 5 south, 6 east, 7 north, 8 west.
LOOP = {
    1: (-30, -30),
    2: (130, -30),
    3: (130, 130),
    4: (-30, 130),
    5: (50, -30),
    6: (130, 50),
    7: (50, 130),
    8: (-30, 50),
}
LOOP_EDGES = [(1, 5), (5, 2), (2, 6), (6, 3), (3, 7), (7, 4), (4, 8), (8, 1)]


def network(extra: dict[int, tuple[float, float]], edges: list[tuple[int, int]]) -> WalkNetwork:
    pts = {k: xy(*v) for k, v in {**LOOP, **extra}.items()}
    return make_network(pts, LOOP_EDGES + edges)


def facilities(
    net: WalkNetwork, places: list[tuple[str, str, shapely.Geometry, str | None]]
) -> gpd.GeoDataFrame:
    """Snapped facilities of ``(id, category, geometry, enclosure)``."""
    fac = gpd.GeoDataFrame(
        {
            "facility_id": [p[0] for p in places],
            "category": [p[1] for p in places],
            "name": [p[0] for p in places],
            "source": "hand",
            "enclosure": [p[3] for p in places],
            "outline": ["complete"] * len(places),
        },
        geometry=[p[2] for p in places],
        crs=WGS84,
    )
    return snap_at_points(net, fac)


def gates(points: dict[int, tuple[float, float]], **tags: str) -> gpd.GeoDataFrame:
    """Gate nodes (OSM id -> metres) for :func:`area_entries`."""
    return gpd.GeoDataFrame(
        {"osm_type": "node", "osm_id": list(points), "barrier": "gate", **tags},
        geometry=[shapely.Point(xy(*p)) for p in points.values()],
        crs=WGS84,
    )


def seconds(
    net: WalkNetwork, fac: gpd.GeoDataFrame, entries: pd.DataFrame | None, cat: str
) -> dict[int, float]:
    m, _ = compute_access(
        net,
        fac,
        [cat],
        speed_m_s=SPEED,
        max_minutes=60.0,
        levels_minutes=(5.0, 10.0, 15.0),
        entries=entries,
    )
    return dict(zip(net.node_id.tolist(), (60.0 * m[cat].to_numpy()).tolist(), strict=True))


# --------------------------------------------------------------------------- hand-drawn


def park_with_three_gates() -> tuple[WalkNetwork, gpd.GeoDataFrame, gpd.GeoDataFrame]:
    """A park (0,0)-(100,100); gates 11 (south) and 12 (east) on footways to the inside
    node 10 at its centre; gate 13 (north) mapped on the outline but on no way: 30 m of
    grass from the street node 7."""
    net = network(
        {10: (50, 50), 11: (50, 0), 12: (100, 50)},
        [(5, 11), (11, 10), (6, 12), (12, 10)],
    )
    fac = facilities(net, [("park", "park", square(0, 0, 100, 100), "open")])
    return net, fac, gates({11: (50, 0), 12: (100, 50), 13: (50, 100)})


def test_park_with_three_gates() -> None:
    net, fac, gate_nodes = park_with_three_gates()
    ent, per = area_entries(net, fac, gate_nodes)
    assert per.loc["park", "inside_nodes"] == 1
    assert per.loc["park", "entry_rule"] == "open"
    kinds = ent.groupby("kind").size().to_dict()
    assert kinds == {"gate": 3, "inside": 1}  # the two footways meet the outline at gates
    off = ent[(ent["kind"] == "gate") & (ent["node"] < 0)]
    assert len(off) == 1
    assert off["access_m"].iloc[0] == pytest.approx(30.0, abs=TOL_S)  # grass to gate 13

    sec = seconds(net, fac, ent, "park")
    expected = {10: 0.0, 11: 0.0, 12: 0.0, 5: 30.0, 6: 30.0, 7: 30.0}
    # corners: 80 m along the street to a middle, then 30 m in
    expected.update({1: 110.0, 2: 110.0, 3: 110.0, 4: 110.0})
    expected[8] = 190.0  # the west side has no way in: 80 m to a corner, 110 m more
    assert sec == pytest.approx(expected, abs=TOL_S)

    # before: the park joined the network at one point of its outline
    old = seconds(net, fac, None, "park")
    assert old[7] > 100.0  # the north gate was not a way in
    assert max(old[n] for n in (11, 12)) > 0.0  # nor both footway gates


def test_three_gates_count_once() -> None:
    net, fac, gate_nodes = park_with_three_gates()
    ent, _ = area_entries(net, fac, gate_nodes)
    graph = AccessGraph.from_network(net, net.edge_seconds(SPEED))
    arcs = Entries(
        1,
        np.zeros(len(ent), np.int64),
        ent["edge"].to_numpy(np.int64),
        ent["frac"].fillna(0.0).to_numpy(float),
        ent["node"].to_numpy(np.int64),
        ent["access_m"].to_numpy(float) / SPEED,
    )
    counts = counts_within(graph, arcs, levels_s=(30.5, 110.5, 300.0))
    assert counts.max() == 1  # one park, however many entries
    assert counts[pos(net, 7)].tolist() == [1, 1, 1]
    assert counts[pos(net, 1)].tolist() == [0, 1, 1]
    assert counts[pos(net, 8)].tolist() == [0, 0, 1]
    # the same park listed as three facilities, one at each gate, counts three
    gate_rows = np.flatnonzero(ent["kind"].to_numpy() == "gate")
    three = Entries(
        3,
        np.arange(3, dtype=np.int64),
        arcs.edge[gate_rows],
        arcs.frac[gate_rows],
        arcs.node[gate_rows],
        arcs.access_s[gate_rows],
    )
    assert counts_within(graph, three, levels_s=(300.0,))[pos(net, 10), 0] == 3
    sec, nearest = nearest_seconds(graph, arcs, limit_s=1000.0)
    assert set(nearest.tolist()) == {0}
    assert sec[pos(net, 3)] == pytest.approx(110.0, abs=TOL_S)


def park_with_two_gates_and_a_street(
    enclosure: str,
) -> tuple[WalkNetwork, gpd.GeoDataFrame, gpd.GeoDataFrame]:
    """A park (0,0)-(100,100) with gates 11 (south) and 12 (east) on footways to the
    inside node 10, and a street spur from the street node 8 that ends on its west
    outline at 21 (0, 50), where no gate is mapped."""
    net = network(
        {10: (50, 50), 11: (50, 0), 12: (100, 50), 21: (0, 50)},
        [(5, 11), (11, 10), (6, 12), (12, 10), (8, 21)],
    )
    fac = facilities(net, [("park", "park", square(0, 0, 100, 100), enclosure)])
    return net, fac, gates({11: (50, 0), 12: (100, 50)})


def test_an_open_park_with_gates_is_also_entered_where_a_street_meets_it() -> None:
    """The rule for open areas with mapped gates: the gates, the ways crossing in, the
    nodes inside and every place the network meets the outline (no fence is mapped, so
    the street at 21 steps onto the grass); a fenced one only through its gates."""
    net, fac, gate_nodes = park_with_two_gates_and_a_street("open")
    ent, per = area_entries(net, fac, gate_nodes)
    assert per.loc["park", "entry_rule"] == "open"
    assert ent.groupby("kind").size().to_dict() == {"gate": 2, "inside": 1, "outline": 1}
    assert ent.loc[ent["kind"] == "outline", "node_id"].tolist() == [21]
    sec = seconds(net, fac, ent, "park")
    # 8 is 30 m from the outline at 21 (with the gates only, 190 m: round to gate 11)
    expected = {10: 0.0, 11: 0.0, 12: 0.0, 21: 0.0, 5: 30.0, 6: 30.0, 8: 30.0}
    expected.update({1: 110.0, 2: 110.0, 3: 110.0, 4: 110.0})  # 80 m to a middle, 30 m
    expected[7] = 190.0  # the north side has no way in: 80 m to a corner, 110 m more
    assert sec == pytest.approx(expected, abs=TOL_S)

    # the same park with a fence: the street at 21 ends at the fence
    f_net, f_fac, f_gates = park_with_two_gates_and_a_street("fenced")
    f_ent, f_per = area_entries(f_net, f_fac, f_gates)
    assert f_per.loc["park", "entry_rule"] == "gates"
    assert sorted(f_ent["kind"]) == ["gate", "gate", "inside"]
    f_sec = seconds(f_net, f_fac, f_ent, "park")
    assert f_sec[8] == pytest.approx(80.0 + 80.0 + 30.0, abs=TOL_S)  # round to gate 11
    assert f_sec[21] == pytest.approx(30.0 + 190.0, abs=TOL_S)


def test_service_area_of_the_three_gate_park_reaches_beyond_each_gate() -> None:
    """One facility, several entries: its service area at 36 s (0.6 min) holds the
    streets beyond the south and east gates (30 m of footway from gates 11 and 12 to
    the street nodes 5 and 6) and beyond the north gate (30 m of grass from gate 13 to
    the street node 7), and not the west street node 8 (190 m round a corner); with
    the old single point it reached no street at all."""
    from circles.isochrones import service_areas

    net, fac, gate_nodes = park_with_three_gates()
    ent, _ = area_entries(net, fac, gate_nodes)
    graph = AccessGraph.from_network(net, net.edge_seconds(SPEED))

    def area(entries: pd.DataFrame | None) -> gpd.GeoDataFrame:
        return service_areas(
            graph, fac, np.ones(net.n_nodes), levels_minutes=[0.6], speed_m_s=SPEED,
            entries=entries,
        )  # fmt: skip

    got = area(ent)
    rows = got[got["kind"] == "facility"]
    assert rows["facility_id"].tolist() == ["park"]  # one row, however many entries
    poly = rows.geometry.iloc[0]
    street = {k: shapely.Point(net.lon[pos(net, k)], net.lat[pos(net, k)]) for k in LOOP}
    assert {k for k, p in street.items() if poly.covers(p)} == {5, 6, 7}
    # the nodes within 36 s: the inside node, the two gates on the network, 5, 6 and 7
    assert rows["residents"].iloc[0] == 6.0
    category = got[got["kind"] == "category"].geometry.iloc[0]
    assert category.equals(poly)
    old = area(None)
    old_poly = old[old["kind"] == "facility"].geometry.iloc[0]
    assert not any(old_poly.covers(p) for p in street.values())


def fenced_ground(enclosure: str | None) -> tuple[WalkNetwork, gpd.GeoDataFrame]:
    """A ground (0,0)-(100,100) with one gate 11 (south) on a footway to the inside node
    10, and a footway 8-7 that cuts across its north-west corner (in at (0, 80), out at
    (20, 100)) with no node inside."""
    net = network({10: (50, 50), 11: (50, 0)}, [(5, 11), (11, 10), (8, 7)])
    fac = facilities(net, [("ground", "fitness", square(0, 0, 100, 100), enclosure)])
    return net, fac


def test_fenced_ground_with_one_gate() -> None:
    net, fac = fenced_ground("fenced")
    ent, per = area_entries(net, fac, gates({11: (50, 0)}))
    assert per.loc["ground", "entry_rule"] == "gates"
    assert sorted(ent["kind"]) == ["gate", "inside"]
    sec = seconds(net, fac, ent, "fitness")
    diag = math.hypot(80.0, 80.0)  # the footway 8-7
    expected = {10: 0.0, 11: 0.0, 5: 30.0, 1: 110.0, 2: 110.0}
    expected[8] = 190.0  # round the corner to the gate: the fence is not crossed
    expected[6] = 190.0
    expected[7] = diag + 190.0  # across to 8, then round
    assert {k: sec[k] for k in expected} == pytest.approx(expected, abs=TOL_S)

    # the same ground unfenced (a pitch): the corner footway is a way in
    open_net, open_fac = fenced_ground("open")
    ent2, per2 = area_entries(open_net, open_fac, gates({11: (50, 0)}))
    assert per2.loc["ground", "entry_rule"] == "open"
    assert (ent2["kind"] == "crossing").sum() == 2  # in at (0, 80), out at (20, 100)
    sec2 = seconds(open_net, open_fac, ent2, "fitness")
    assert sec2[8] == pytest.approx(0.375 * diag, abs=TOL_S)  # 30 m east, 30 m north
    assert sec2[7] == pytest.approx(0.375 * diag, abs=TOL_S)


def test_fence_along_the_outline_makes_a_ground_fenced() -> None:
    net, fac = fenced_ground("open")
    wall = gpd.GeoDataFrame(
        {"osm_type": ["way"], "osm_id": [99], "barrier": ["wall"]},
        geometry=[shapely.LineString([xy(0, 1), xy(100, 1), xy(100, 100), xy(0, 100)])],
        crs=WGS84,
    )
    both = pd.concat([gates({11: (50, 0)}), wall], ignore_index=True)
    _, per = area_entries(net, fac, gpd.GeoDataFrame(both, geometry="geometry", crs=WGS84))
    # three of the four sides, and the ends of the wall's buffer round two corners
    assert 0.74 < per.loc["ground", "fence_share"] < 0.78
    assert per.loc["ground", "fence_share"] >= FENCED_SHARE
    assert per.loc["ground", "enclosure"] == "fenced"
    assert per.loc["ground", "entry_rule"] == "gates"


def open_square() -> tuple[WalkNetwork, gpd.GeoDataFrame]:
    """A square (0,0)-(100,100) crossed by two footways 8-10-6 and 5-10-7 that meet at
    its centre 10, and a spur from the street corner 3 to its corner (100, 100)."""
    net = network(
        {10: (50, 50), 20: (100, 100)},
        [(8, 10), (10, 6), (5, 10), (10, 7), (3, 20)],
    )
    fac = facilities(net, [("square", "fitness", square(0, 0, 100, 100), "open")])
    return net, fac


def test_open_square_crossed_by_two_footways() -> None:
    net, fac = open_square()
    ent, _ = area_entries(net, fac, None)
    kinds = ent.groupby("kind").size().to_dict()
    assert kinds == {"crossing": 4, "inside": 1, "outline": 1}
    sec = seconds(net, fac, ent, "fitness")
    spur = math.hypot(30.0, 30.0)
    expected = {10: 0.0, 20: 0.0, 5: 30.0, 6: 30.0, 7: 30.0, 8: 30.0, 3: 0.0 + spur}
    expected.update({1: 110.0, 2: 110.0, 4: 110.0})
    assert sec == pytest.approx(expected, abs=TOL_S)
    # a closed area (say a school ground) is not entered where a way only touches it
    closed = facilities(net, [("square", "fitness", square(0, 0, 100, 100), "closed")])
    ent_c, per_c = area_entries(net, closed, None)
    assert per_c.loc["square", "entry_rule"] == "entries"
    assert "outline" not in set(ent_c["kind"])
    assert seconds(net, closed, ent_c, "fitness")[3] == pytest.approx(80.0 + 30.0, abs=TOL_S)


def test_an_area_no_way_reaches_keeps_its_nearest_point() -> None:
    net = network({}, [])
    fac = facilities(net, [("pitch", "fitness", square(0, 0, 100, 100), "open")])
    ent, per = area_entries(net, fac, None)
    assert per.loc["pitch", "entry_rule"] == "nearest"
    assert ent["kind"].tolist() == ["nearest"]
    assert ent["access_m"].iloc[0] == pytest.approx(30.0, abs=TOL_S)
    # exactly the old single-point snapping
    new = seconds(net, fac, ent, "fitness")
    old = seconds(net, fac, None, "fitness")
    assert new == pytest.approx(old, abs=1e-9)


def test_point_facilities_are_unchanged() -> None:
    net, _, gate_nodes = park_with_three_gates()
    both = snap_at_points(
        net,
        gpd.GeoDataFrame(
            {
                "facility_id": ["park", "p1", "p2"],
                "category": ["park", "clinic", "clinic"],
                "name": None,
                "source": "hand",
                "enclosure": ["open", None, None],
            },
            geometry=[
                square(0, 0, 100, 100),
                shapely.Point(xy(60, -20)),
                shapely.Point(xy(-40, 90)),
            ],
            crs=WGS84,
        ),
    )
    ent, _ = area_entries(net, both, gate_nodes)
    assert set(ent["facility_id"]) == {"park"}
    with_entries = seconds(net, both, ent, "clinic")
    without = seconds(net, both, None, "clinic")
    assert with_entries == without  # bit for bit


def test_entrance_and_enclosure_rules() -> None:
    nodes = pd.DataFrame(
        {
            "entrance": [None, "main", "exit", "emergency", None, None, None, "yes"],
            "barrier": ["gate", None, None, None, "gate", "bollard", "kissing_gate", None],
            "access": [None, None, None, None, "private", None, None, None],
            "locked": [None, None, None, None, None, None, None, "yes"],
        }
    )
    assert entrance_mask(nodes).tolist() == [True, True, False, False, False, False, True, False]
    areas = pd.DataFrame(
        {
            "leisure": ["park", "pitch", "pitch", "park", None, None, "sports_centre"],
            "barrier": [None, None, "fence", None, None, None, None],
            "access": [None, None, None, "private", None, None, None],
            "amenity": [None, None, None, None, "school", None, None],
            "place": [None, None, None, None, None, "square", None],
            "building": [None, None, None, None, None, None, "yes"],
        }
    )
    assert area_enclosure(areas).tolist() == [
        "open",
        "open",
        "fenced",
        "closed",
        "closed",
        "open",
        "closed",
    ]


def test_output_layers_of_the_entries() -> None:
    net, fac, gate_nodes = park_with_three_gates()
    ent, per = area_entries(net, fac, gate_nodes)
    fac = fac.assign(**{c: per[c].reindex(fac["facility_id"]).to_numpy() for c in per})
    fp = footprint_layer(fac)
    assert fp["facility_id"].tolist() == ["park"]
    assert fp.geometry.iloc[0].geom_type == "MultiPolygon"
    assert fp["area_m2"].iloc[0] == pytest.approx(10_000.0, rel=1e-3)
    assert fp["entries"].iloc[0] == 3
    layer = entry_layer(ent)
    assert len(layer) == len(ent)
    assert set(layer.columns) >= {"facility_id", "kind", "node_id", "access_m", "geometry"}


# --------------------------------------------------------------------------- networkx


def networkx_seconds(
    net: WalkNetwork, ent: Entries, *, speed_m_s: float, steps_factor: float
) -> np.ndarray:
    """Seconds from every node to the nearest facility, by networkx on the network's own
    export (lengths and highway tags; steps ``steps_factor`` times slower), every edge
    entry split into its edge."""
    factor = {True: steps_factor, False: 1.0}
    g = nx.DiGraph()
    for t, h, d in net.to_networkx().edges(data=True):
        w = d["length"] / speed_m_s * factor[d["highway"] == "steps"]
        if not g.has_edge(t, h) or g[t][h]["weight"] > w:
            g.add_edge(t, h, weight=w)
    ids = net.node_id
    for i in range(ent.facility.size):
        fnode = ("facility", int(ent.facility[i]))
        if ent.node[i] >= 0:
            a = ids[ent.node[i]]
        else:
            e = int(ent.edge[i])
            a = ("entry", i)
            u, v = ids[net.u[e]], ids[net.v[e]]
            f = float(ent.frac[i])
            s_e = float(net.length_m[e]) / speed_m_s * factor[net.highway[e] == "steps"]
            if net.direction[e] >= 0:
                g.add_edge(u, a, weight=f * s_e)
            if net.direction[e] <= 0:
                g.add_edge(v, a, weight=(1.0 - f) * s_e)
        w = float(ent.access_s[i])
        if not g.has_edge(a, fnode) or g[a][fnode]["weight"] > w:
            g.add_edge(a, fnode, weight=w)
    sources = [n for n in g.nodes if isinstance(n, tuple) and n[0] == "facility"]
    dist = nx.multi_source_dijkstra_path_length(g.reverse(copy=False), sources)
    return np.array([dist.get(int(n), np.inf) for n in ids])


@pytest.fixture(scope="module")
def porto_parks(
    shared_network: Callable[..., WalkNetwork],
) -> tuple[WalkNetwork, gpd.GeoDataFrame, gpd.GeoDataFrame]:
    return _real("osm/porto.osm.pbf", shared_network)


@pytest.fixture(scope="module")
def liechtenstein_parks(
    shared_network: Callable[..., WalkNetwork],
) -> tuple[WalkNetwork, gpd.GeoDataFrame, gpd.GeoDataFrame]:
    return _real("osm/liechtenstein-latest.osm.pbf", shared_network)


def _real(
    rel: str, shared_network: Callable[..., WalkNetwork]
) -> tuple[WalkNetwork, gpd.GeoDataFrame, gpd.GeoDataFrame]:
    path = shared_data(rel)
    net = shared_network(rel)
    profile = cat_mod.load_profile("default")
    fac, _, _ = load_facilities(
        net,
        features=str(path),
        files=[],
        categories=["park", "fitness"],
        profile=profile,
    )
    ent, _ = area_entries(net, fac, io.read_osm_entrances(path))
    return net, fac, ent


@pytest.mark.parametrize("extract", ["porto_parks", "liechtenstein_parks"])
def test_engine_equals_networkx_with_entries(extract: str, request: pytest.FixtureRequest) -> None:
    from circles.access import SnappedArrays
    from circles.terrain import edge_seconds
    from circles.walking import WALK_PROFILES

    net, fac, ent = request.getfixturevalue(extract)
    adult = WALK_PROFILES["adult"]
    arrays = SnappedArrays(fac, ent)
    graph = AccessGraph.from_network(net, edge_seconds(net, adult))
    for cat in ("park", "fitness"):
        e = arrays.entries(cat, adult.speed_m_s)
        assert (e.node >= 0).any()  # the test covers node entries and edge entries
        assert (e.edge >= 0).any()
        sec, _ = nearest_seconds(graph, e)
        want = networkx_seconds(net, e, speed_m_s=adult.speed_m_s, steps_factor=adult.steps_factor)
        np.testing.assert_allclose(sec, want, rtol=1e-12, atol=1e-6)
    assert (net.highway == "steps").sum() > 0  # steps are part of the cost compared


#: A node this close to a footprint is in it ("inside (or within 1 m of) a park footprint").
INSIDE_MARGIN_M = 1.0


def _inside_nodes(net: WalkNetwork, fac: gpd.GeoDataFrame, cat: str) -> np.ndarray:
    """Positions of the nodes inside or within :data:`INSIDE_MARGIN_M` of a polygonal
    footprint of ``cat`` (buffered in the network's metric CRS)."""
    rows = fac[(fac["category"] == cat) & fac["footprint_wkb"].notna()]
    fp = gpd.GeoSeries(shapely.from_wkb(rows["footprint_wkb"].to_numpy()), crs=WGS84)
    fp = fp.to_crs(net.crs).to_numpy()
    near = shapely.buffer(fp[np.isin(shapely.get_type_id(fp), [3, 6])], INSIDE_MARGIN_M)
    tree = shapely.STRtree(shapely.points(net.x, net.y))
    _, nodes = tree.query(near, predicate="intersects")
    return np.unique(nodes)


@pytest.mark.parametrize("extract", ["porto_parks", "liechtenstein_parks"])
def test_nodes_inside_parks_are_at_the_park(extract: str, request: pytest.FixtureRequest) -> None:
    net, fac, ent = request.getfixturevalue(extract)
    inside = _inside_nodes(net, fac, "park")
    assert inside.size >= 50
    speed = 1.2
    new, _ = compute_access(
        net, fac, ["park"], speed_m_s=speed, max_minutes=45.0, levels_minutes=(15.0,), entries=ent
    )
    old, _ = compute_access(
        net, fac, ["park"], speed_m_s=speed, max_minutes=45.0, levels_minutes=(15.0,)
    )
    within = (new["park"].to_numpy()[inside] <= 1.0).mean()
    assert within >= 0.99
    assert (old["park"].to_numpy()[inside] <= 1.0).mean() < within  # what was wrong


@pytest.mark.parametrize("extract", ["porto_parks", "liechtenstein_parks"])
def test_minutes_never_beat_the_straight_line(extract: str, request: pytest.FixtureRequest) -> None:
    net, fac, ent = request.getfixturevalue(extract)
    speed = 1.2
    got, _ = compute_access(
        net,
        fac,
        ["park", "fitness"],
        speed_m_s=speed,
        max_minutes=45.0,
        levels_minutes=(15.0,),
        entries=ent,
    )
    pts = shapely.points(net.x, net.y)
    for cat in ("park", "fitness"):
        rows = fac[(fac["category"] == cat) & (fac["status"] == "snapped")]
        wkb = rows["footprint_wkb"].to_numpy()
        geom = np.array(
            [
                shapely.from_wkb(w) if w is not None else g
                for w, g in zip(wkb, rows.geometry, strict=True)
            ],
            dtype=object,
        )
        g = gpd.GeoSeries(geom, crs=WGS84).to_crs(net.crs).to_numpy()
        _, dist = shapely.STRtree(g).query_nearest(pts, return_distance=True, all_matches=False)
        walked_m = got[cat].to_numpy() * 60.0 * speed
        # UTM distances are within 0.1% of geodesic ones; nodes within a centimetre of
        # an outline are on it
        assert (walked_m * 1.001 + NODE_ON_OUTLINE_M >= dist).all(), cat


# --------------------------------------------------------------------------- readers


def test_pbf_and_xml_readers_agree_on_aguascalientes() -> None:
    pbf = shared_data("osm/aguascalientes.osm.pbf")
    xml = shared_data("osm/aguascalientes.osm.bz2")
    keys = ["leisure", "amenity", "place", "access"]
    a = io.read_osm_features(pbf, keys=keys).sort_values(["osm_type", "osm_id"])
    b = io.read_osm_features(xml, keys=keys).sort_values(["osm_type", "osm_id"])
    assert a["osm_id"].tolist() == b["osm_id"].tolist()
    assert a["outline"].tolist() == b["outline"].tolist()
    assert shapely.equals_exact(a.geometry.to_numpy(), b.geometry.to_numpy(), 1e-7).all()
    ea = io.read_osm_entrances(pbf).sort_values(["osm_type", "osm_id"])
    eb = io.read_osm_entrances(xml).sort_values(["osm_type", "osm_id"])
    assert ea["osm_id"].tolist() == eb["osm_id"].tolist()
    assert len(ea) > 0
    profile = cat_mod.load_profile("default")
    got = []
    for path in (pbf, xml):
        net = io.load_network(path)
        fac, _, _ = load_facilities(
            net, features=str(path), files=[], categories=["park", "fitness"], profile=profile
        )
        ent, per = area_entries(net, fac, io.read_osm_entrances(path))
        m, _ = compute_access(
            net, fac, ["park"], speed_m_s=1.2, max_minutes=45.0, levels_minutes=(15,), entries=ent
        )
        got.append((per, m["park"].to_numpy()))
    pd.testing.assert_frame_equal(got[0][0], got[1][0])
    np.testing.assert_array_equal(got[0][1], got[1][1])


def write_osm_pair(tmp: Path) -> tuple[Path, Path]:
    """The same small extract as OSM PBF (pyrosm's writer) and OSM XML: a park whose
    way leaves the file (node 99 is not in it), a complete pitch with a gate, streets."""
    from pyrosm.pbf_export import write_pbf_from_records

    pts = {
        1: xy(0, 0),
        2: xy(100, 0),
        3: xy(100, 100),
        4: xy(0, 100),
        5: xy(200, 0),
        6: xy(300, 0),
        7: xy(300, 100),
        8: xy(200, 100),
        9: xy(150, -20),
        10: xy(150, 120),
    }
    node_tags = {2: {"barrier": "gate"}}
    ways = [
        (20, [1, 2, 3, 4, 1], {"leisure": "pitch", "name": "Pitch"}),
        (21, [5, 6, 7, 99, 8, 5], {"leisure": "park", "name": "Cut park"}),
        (22, [9, 2, 5, 6], {"highway": "footway"}),
        (23, [9, 10], {"highway": "residential"}),
        (24, [10, 8, 3], {"highway": "footway"}),
    ]
    ids = np.array(list(pts))
    lon = np.array([pts[i][0] for i in ids])
    lat = np.array([pts[i][1] for i in ids])
    tags = np.array([node_tags.get(int(i), {}) for i in ids], dtype=object)
    pbf = tmp / "pair.osm.pbf"
    write_pbf_from_records(
        {"id": ids, "lat": lat, "lon": lon, "tags": tags},
        [{"id": w, "refs": r, "tags": t} for w, r, t in ways],
        [],
        str(pbf),
        (float(lon.min()), float(lat.min()), float(lon.max()), float(lat.max())),
    )
    lines = ['<?xml version="1.0" encoding="UTF-8"?>', '<osm version="0.6">']
    for i in ids:
        t = "".join(f'<tag k="{k}" v="{v}"/>' for k, v in node_tags.get(int(i), {}).items())
        lines.append(f'<node id="{i}" lat="{pts[i][1]!r}" lon="{pts[i][0]!r}">{t}</node>')
    for w, refs, t in ways:
        nd = "".join(f'<nd ref="{r}"/>' for r in refs)
        tg = "".join(f'<tag k="{k}" v="{v}"/>' for k, v in t.items())
        lines.append(f'<way id="{w}">{nd}{tg}</way>')
    lines.append("</osm>")
    xml = tmp / "pair.osm"
    xml.write_text("\n".join(lines), encoding="utf-8")
    return pbf, xml


def test_area_cut_by_the_extract_edge_is_the_same_in_both_readers(tmp_path: Path) -> None:
    pytest.importorskip("pyrosm")
    pbf, xml = write_osm_pair(tmp_path)
    a = io.read_osm_features(pbf, keys=["leisure"]).set_index("osm_id")
    b = io.read_osm_features(xml, keys=["leisure"]).set_index("osm_id")
    for f in (a, b):
        assert f.loc[21, "outline"] == "cut"
        assert f.loc[21].geometry.geom_type == "LineString"  # not a polygon of 4 nodes
        assert f.loc[20, "outline"] == "complete"
        assert f.loc[20].geometry.geom_type == "Polygon"
    assert shapely.equals_exact(
        a.geometry.to_numpy(), b.geometry.loc[a.index].to_numpy(), 1e-7
    ).all()
    profile = cat_mod.load_profile("default")
    got = []
    for path in (pbf, xml):
        net = io.load_network(path)
        fac, _, _ = load_facilities(
            net, features=str(path), files=[], categories=["park", "fitness"], profile=profile
        )
        ent, per = area_entries(net, fac, io.read_osm_entrances(path))
        got.append((ent.drop(columns="geometry"), per))
    pd.testing.assert_frame_equal(got[0][0], got[1][0])
    pd.testing.assert_frame_equal(got[0][1], got[1][1])
    per = got[0][1]
    assert per.loc["w21", "inside_nodes"] == 0  # a cut outline has no known inside
    assert per.loc["w21", "entries"] >= 1
    assert per.loc["w20", "entries"] >= 1


# --------------------------------------------------------------------------- updates


def test_an_area_facility_from_an_update_file_is_entered_like_in_a_full_run(
    tmp_path: Path,
) -> None:
    """A planner's park polygon added by `circles update` gets the same entries, minutes
    and layers as the same file in a full run."""
    from circles.config import config_from_dict
    from circles.pipeline import run
    from circles.update import update

    src = shared_data("osm/aguascalientes.osm.pbf")
    net = io.load_network(src)
    i = int(np.argmin((net.x - np.median(net.x)) ** 2 + (net.y - np.median(net.y)) ** 2))
    lon, lat = float(net.lon[i]), float(net.lat[i])
    d = 0.0006  # about 60 m
    park = tmp_path / "new_park.geojson"
    gpd.GeoDataFrame(
        {"id": ["p1"], "name": ["Parque nuevo"], "category": ["park"]},
        geometry=[shapely.box(lon - d, lat - d, lon + d, lat + d)],
        crs=WGS84,
    ).to_file(park, driver="GeoJSON")

    def cfg(name: str, files: list[dict[str, str]]) -> object:
        return config_from_dict(
            {
                "study": {
                    "name": "s",
                    "output_dir": str(tmp_path / name / "out"),
                    "maps_dir": str(tmp_path / name / "maps"),
                },
                "network": {"source": str(src)},
                "communities": {"source": "hexagons"},
                "facilities": {"categories": ["park", "fitness"], "files": files},
                "isochrones": {"enabled": False},
                "map": {"enabled": False},
            },
            base_dir=tmp_path,
        )

    full = run(cfg("full", [{"path": str(park)}]))
    run(cfg("upd", []))
    got = update(cfg("upd", []), str(park))
    for res in (full, got):
        areas = res.summary["facilities"]["areas"]
        p1 = res.facilities[res.facilities["facility_id"] == "p1"].iloc[0]
        assert p1["entry_rule"] == "entries"  # a planner polygon: tags unknown, closed
        assert p1["inside_nodes"] >= 1
        assert p1["entries"] >= 1
        assert "p1" in set(res.entries["facility_id"])
        assert areas["facilities"] >= 2
    pd.testing.assert_frame_equal(full.node_minutes, got.node_minutes, check_exact=True)
    for layer in ("facility_footprints", "facility_entries", "nodes"):
        a = gpd.read_file(full.outputs["gpkg"], layer=layer)
        b = gpd.read_file(got.outputs["gpkg"], layer=layer)
        if layer == "facility_footprints":  # the source column names the file or update
            a, b = a.drop(columns="source"), b.drop(columns="source")
        pd.testing.assert_frame_equal(a, b, check_exact=True, obj=layer)
