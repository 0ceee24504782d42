"""Cycling: bicycle rules and one-way streets, the cycling loader, cycling minutes and
the ``[cycling]`` pipeline stage (bike columns next to the walking ones)."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from conftest import LAT0, LON0, make_network, offset

from circles._errors import ConfigError, InputDataError
from circles.config import HELSINKI, config_from_dict
from circles.io import load_network
from circles.network import WalkNetwork, cycle_mask, oneway_bicycle_direction, walk_mask
from circles.pipeline import cycling_access, link_to_network, run
from circles.settings import WGS84
from circles.terrain import CYCLE_PROFILES, WALK_PROFILES, edge_seconds, get_profile

# --------------------------------------------------------------------------- rules


def osm_xml(
    nodes: dict[int, tuple[float, float]], ways: list[tuple[int, list[int], dict[str, str]]]
) -> str:
    out = ['<?xml version="1.0" encoding="UTF-8"?>', '<osm version="0.6" generator="test">']
    for i, (lon, lat) in nodes.items():
        out.append(f'  <node id="{i}" lat="{lat:.9f}" lon="{lon:.9f}"/>')
    for wid, refs, tags in ways:
        out.append(f'  <way id="{wid}">')
        out.extend(f'    <nd ref="{r}"/>' for r in refs)
        out.extend(f'    <tag k="{k}" v="{v}"/>' for k, v in tags.items())
        out.append("  </way>")
    out.append("</osm>")
    return "\n".join(out) + "\n"


#: (way id, tags, walkable, cyclable, bicycle direction along the way's node order)
WAYS: list[tuple[int, dict[str, str], bool, bool, int]] = [
    (101, {"highway": "residential"}, True, True, 0),
    (102, {"highway": "cycleway"}, False, True, 0),
    (103, {"highway": "footway"}, True, False, 0),
    (104, {"highway": "steps"}, True, False, 0),
    (105, {"highway": "residential", "oneway": "yes"}, True, True, 1),
    (106, {"highway": "residential", "oneway": "yes", "oneway:bicycle": "no"}, True, True, 0),
    (107, {"highway": "footway", "bicycle": "yes"}, True, True, 0),
    (108, {"highway": "residential", "oneway": "-1"}, True, True, -1),
    (109, {"highway": "primary", "junction": "roundabout"}, True, True, 1),
    (110, {"highway": "cycleway", "access": "private"}, False, False, 0),
    (111, {"highway": "path", "bicycle": "designated"}, True, True, 0),
    (112, {"highway": "residential", "bicycle": "no"}, True, False, 0),
    (113, {"highway": "trunk", "bicycle": "yes"}, False, True, 0),
    (114, {"highway": "residential", "oneway": "yes", "cycleway": "opposite_lane"}, True, True, 0),
    (115, {"highway": "service", "access": "private", "bicycle": "yes"}, False, True, 0),
    (116, {"highway": "construction"}, False, False, 0),
    (117, {"highway": "pedestrian", "area": "yes", "bicycle": "yes"}, False, False, 0),
    (118, {"highway": "tertiary", "oneway": "1"}, True, True, 1),
    (119, {"highway": "secondary", "bicycle": "use_sidepath"}, True, False, 0),
    (120, {"highway": "motorway"}, False, False, 0),
]


def rules_file(tmp_path: Path) -> tuple[Path, dict[int, tuple[int, int]]]:
    """One 100 m way per rule, each on its own two nodes (way id -> (first, last) node)."""
    nodes: dict[int, tuple[float, float]] = {}
    ways = []
    ends = {}
    for k, (wid, tags, *_rest) in enumerate(WAYS):
        a = (offset(LON0, LAT0, 0.0, 50.0 * k)[0], offset(LON0, LAT0, 0.0, 50.0 * k)[1])
        b = offset(*a, 90.0, 100.0)
        na, nb = 2 * k + 1, 2 * k + 2
        nodes[na], nodes[nb] = a, b
        ways.append((wid, [na, nb], tags))
        ends[wid] = (na, nb)
    path = tmp_path / "rules.osm"
    path.write_text(osm_xml(nodes, ways), encoding="utf-8")
    return path, ends


def test_rule_functions_on_a_table() -> None:
    ways = pd.DataFrame([tags for _, tags, *_ in WAYS])
    np.testing.assert_array_equal(walk_mask(ways), [w[2] for w in WAYS])
    np.testing.assert_array_equal(cycle_mask(ways), [w[3] for w in WAYS])
    np.testing.assert_array_equal(oneway_bicycle_direction(ways), [w[4] for w in WAYS])
    # missing tag columns are absent tags
    assert cycle_mask(pd.DataFrame({"highway": ["cycleway", "footway"]})).tolist() == [
        True,
        False,
    ]
    assert oneway_bicycle_direction(pd.DataFrame({"highway": ["primary"]})).tolist() == [0]
    # oneway:bicycle alone makes a two-way street one-way for bicycles; ";" lists and
    # upper case are read like the walking rules read them
    t = pd.DataFrame(
        {
            "oneway": [None, "no", "YES;no", None],
            "oneway:bicycle": ["yes", "-1", None, None],
            "junction": [None, None, None, "roundabout"],
        }
    )
    assert oneway_bicycle_direction(t).tolist() == [1, -1, 1, 1]


def way_edges(net: WalkNetwork, wid: int) -> np.ndarray:
    return np.flatnonzero(net.way_id == wid)


def test_walk_and_bike_networks_of_hand_made_xml(tmp_path: Path) -> None:
    path, ends = rules_file(tmp_path)
    walk = load_network(path, keep_largest=False)
    bike = load_network(path, keep_largest=False, mode="bike")
    assert set(walk.way_id.tolist()) == {w for w, _, ok, _, _ in WAYS if ok}
    assert set(bike.way_id.tolist()) == {w for w, _, _, ok, _ in WAYS if ok}
    assert bike.report["cyclable_ways"] == sum(w[3] for w in WAYS)
    assert bike.report["highway_ways"] == len(WAYS)
    # cycleway without a foot tag: cycling only; footway without a bicycle tag: walking
    # only; steps: never cycled
    assert way_edges(walk, 102).size == 0
    assert way_edges(bike, 102).size == 1
    assert way_edges(walk, 103).size == 1
    assert way_edges(bike, 103).size == 0
    assert way_edges(walk, 104).size == 1
    assert way_edges(bike, 104).size == 0
    assert "steps" not in set(bike.highway.tolist())
    # walking ignores oneway entirely
    assert (walk.direction == 0).all()
    for wid, _, _, cyclable, along in WAYS:
        if not cyclable:
            continue
        (e,) = way_edges(bike, wid)
        first, last = ends[wid]
        tail, head = bike.node_id[bike.u[e]], bike.node_id[bike.v[e]]
        if along == 0:
            assert bike.direction[e] == 0, wid
        else:
            # one-way edges are stored in their direction of travel
            assert bike.direction[e] == 1, wid
            assert (tail, head) == ((first, last) if along == 1 else (last, first)), wid
        np.testing.assert_allclose(bike.length_m[e], 100.0, atol=1e-3)  # 9 decimals in XML


def test_bike_minutes_honour_one_way_streets_on_xml(tmp_path: Path) -> None:
    """A -> B one-way street, B - C two-way: C is reached from A, A never from C."""
    a = (LON0, LAT0)
    b = offset(*a, 90.0, 300.0)
    c = offset(*b, 90.0, 300.0)
    ways = [
        (1, [1, 2], {"highway": "residential", "oneway": "yes"}),
        (2, [2, 3], {"highway": "residential"}),
    ]
    path = tmp_path / "oneway.osm"
    path.write_text(osm_xml({1: a, 2: b, 3: c}, ways), encoding="utf-8")
    walk = load_network(path)
    bike = load_network(path, mode="bike")
    assert walk.direction.tolist() == [0, 0]
    assert sorted(bike.direction.tolist()) == [0, 1]
    fac = gpd.GeoDataFrame(
        {"facility_id": ["at_c", "at_a"], "category": ["to_c", "to_a"]},
        geometry=[shapely.Point(c), shapely.Point(a)],
        crs=WGS84,
    )
    minutes, snapped, info = cycling_access(
        walk,
        bike,
        fac,
        ["to_c", "to_a"],
        speed_m_s=4.0,
        walk_speed_m_s=1.0,
        max_snap_m=50.0,
        max_link_m=10.0,
        max_minutes=45.0,
    )
    assert (snapped["status"] == "snapped").all()
    assert info["walking_nodes_unlinked"] == 0
    i_a = int(np.flatnonzero(walk.node_id == 1)[0])
    i_b = int(np.flatnonzero(walk.node_id == 2)[0])
    i_c = int(np.flatnonzero(walk.node_id == 3)[0])
    # 600 m at 4 m/s = 150 s = 2.5 min from A; 300 m = 1.25 min from B
    # (to 1e-5 min: the XML stores 9 decimals of a degree, the facility is ~0.04 mm off)
    np.testing.assert_allclose(
        minutes["to_c"].to_numpy()[[i_a, i_b, i_c]], [2.5, 1.25, 0.0], rtol=0, atol=1e-5
    )
    # against the one-way street: A cannot be reached by bicycle from B or C
    to_a = minutes["to_a"].to_numpy()
    assert to_a[i_a] < 1e-5
    assert np.isinf(to_a[i_b])
    assert np.isinf(to_a[i_c])


# --------------------------------------------------------------------------- links


def test_cycling_minutes_add_the_walk_to_the_cycling_network() -> None:
    """Residents walk (straight line) to the nearest cycling node, then cycle."""
    p1 = (LON0, LAT0)
    p2 = offset(*p1, 90.0, 400.0)
    bike = make_network({1: p1, 2: p2}, [(1, 2)], direction=[1])
    w1 = offset(*p1, 0.0, 30.0)  # 30 m north of 1
    w2 = offset(*p2, 0.0, 30.0)  # 30 m north of 2
    w3 = offset(*p2, 0.0, 500.0)  # too far from any cycling node
    walk = make_network({11: w1, 12: w2, 13: w3}, [(11, 12), (12, 13)])
    pos, dist = link_to_network(walk, bike, max_link_m=100.0)
    order = {int(n): k for k, n in enumerate(walk.node_id)}
    assert pos[order[11]] == int(np.flatnonzero(bike.node_id == 1)[0])
    assert pos[order[13]] == -1
    assert np.isinf(dist[order[13]])
    np.testing.assert_allclose(dist[order[11]], 30.0, atol=0.05)  # UTM scale: < 1 mm/m
    fac = gpd.GeoDataFrame(
        {"facility_id": ["f"], "category": ["fitness"]},
        geometry=[shapely.Point(offset(*p2, 180.0, 20.0))],  # 20 m south of node 2
        crs=WGS84,
    )
    minutes, snapped, _ = cycling_access(
        walk,
        bike,
        fac,
        ["fitness"],
        speed_m_s=4.0,
        walk_speed_m_s=1.0,
        max_snap_m=50.0,
        max_link_m=100.0,
        max_minutes=45.0,
    )
    np.testing.assert_allclose(snapped["snap_m"], 20.0, atol=0.01)  # planar, UTM scale
    m = minutes["fitness"].to_numpy()
    # walk 30 m (30 s) + cycle 400 m at 4 m/s (100 s) + walk the last 20 m (20 s)
    np.testing.assert_allclose(m[order[11]], (30.0 + 100.0 + 20.0) / 60.0, atol=1e-3)
    np.testing.assert_allclose(m[order[12]], (30.0 + 20.0) / 60.0, atol=1e-3)
    assert np.isinf(m[order[13]])
    # the facility sits at the head of the one-way edge: reachable from node 2 itself
    fac_at_head = fac.set_geometry([shapely.Point(offset(*p2, 0.0, 0.0))], crs=WGS84)
    m2 = cycling_access(
        walk,
        bike,
        fac_at_head,
        ["fitness"],
        speed_m_s=4.0,
        walk_speed_m_s=1.0,
        max_snap_m=50.0,
        max_link_m=100.0,
        max_minutes=45.0,
    )[0]["fitness"].to_numpy()
    np.testing.assert_allclose(m2[order[12]], 30.0 / 60.0, atol=1e-3)


def test_bicycle_profile() -> None:
    bike = CYCLE_PROFILES["bicycle"]
    assert bike.speed_m_s == 4.2  # 15 km/h
    assert bike.exclude_steps
    assert bike.source
    assert get_profile("bicycle") is bike
    assert "bicycle" not in WALK_PROFILES  # [walk] profile cannot name it
    net = make_network({1: (LON0, LAT0), 2: offset(LON0, LAT0, 90.0, 420.0)}, [(1, 2)])
    np.testing.assert_allclose(edge_seconds(net, "bicycle"), [[100.0, 100.0]])


# --------------------------------------------------------------------------- config


def test_cycling_config() -> None:
    base = {"network": {"source": HELSINKI}}
    cfg = config_from_dict(base)
    assert cfg.cycling.enabled is False
    assert cfg.cycling.categories == ("fitness",)
    assert cfg.cycling.speed_m_s == 4.2
    assert cfg.cycling.resolved_levels(cfg.walk) == (5, 10, 15)
    cfg = config_from_dict({**base, "cycling": {"enabled": True, "levels_minutes": [15]}})
    assert cfg.cycling.resolved_levels(cfg.walk) == (15,)
    with pytest.raises(ConfigError, match="not a cycling speed"):
        config_from_dict({**base, "cycling": {"enabled": True, "speed_m_s": 40}})
    with pytest.raises(ConfigError, match="largest cycling level"):
        config_from_dict({**base, "cycling": {"enabled": True, "levels_minutes": [60]}})
    with pytest.raises(ConfigError, match=r"unknown key cycling\.speed"):
        config_from_dict({**base, "cycling": {"speed": 4.2}})
    with pytest.raises(ConfigError, match=r"cycling\.categories must be"):
        config_from_dict({**base, "cycling": {"categories": "fitness"}})


def test_graphml_source_cannot_cycle(tmp_path: Path) -> None:
    g = tmp_path / "walk.graphml"
    g.write_text("<graphml></graphml>\n", encoding="utf-8")
    with pytest.raises(InputDataError, match="GraphML network cannot give a cycling network"):
        load_network(g, mode="bike")
    with pytest.raises(ConfigError, match="mode must be 'walk' or 'bike'"):
        load_network(g, mode="car")
    cfg = config_from_dict(
        {
            "study": {"name": "gml", "output_dir": str(tmp_path / "out")},
            "network": {"source": str(g)},
            "communities": {"source": "hexagons"},
            "cycling": {"enabled": True},
        }
    )
    with pytest.raises(InputDataError, match=r"\[cycling\] enabled = true needs an OSM file"):
        run(cfg, write=False)


# --------------------------------------------------------------------------- pipeline


def test_pipeline_writes_bike_columns_on_helsinki(tmp_path: Path) -> None:
    cfg = config_from_dict({**cfg_dict(tmp_path, "hel_bike"), "cycling": {"enabled": True}})
    res = run(cfg)
    layer = gpd.read_file(res.outputs["gpkg"], layer="communities")
    bike_cols = [c for c in layer.columns if "_bike_" in c]
    assert bike_cols == [
        "fitness_bike_share_5",
        "fitness_bike_share_10",
        "fitness_bike_share_15",
        "fitness_bike_median_min",
        "fitness_bike_p90_min",
    ]
    assert "fitness_bike_flag" not in layer  # the walking flags stay as they are
    # the walking columns are what a run without cycling writes
    plain = run(config_from_dict(cfg_dict(tmp_path, "hel_walk")), write=False, cache=False)
    walk_cols = [c for c in plain.communities.columns if c != "geometry"]
    pd.testing.assert_frame_equal(
        pd.DataFrame(res.communities[walk_cols]), pd.DataFrame(plain.communities[walk_cols])
    )
    summary = json.loads(Path(res.outputs["summary_json"]).read_text(encoding="utf-8"))
    cyc = summary["cycling"]
    assert cyc["speed_m_s"] == 4.2
    assert cyc["network"]["nodes"] > 1000
    assert cyc["network"]["length_km"] < summary["network"]["length_km"]
    assert cyc["network"]["one_way_edges"] > 0
    assert cyc["walking_nodes_unlinked"] + cyc["walking_nodes_linked"] == res.network.n_nodes
    assert cyc["categories"][0]["facilities"] > 0

    t = res.communities
    walk5 = t["fitness_share_5"].to_numpy(float)
    bike5 = t["fitness_bike_share_5"].to_numpy(float)
    ok = np.isfinite(walk5) & np.isfinite(bike5)
    assert ok.sum() >= 10
    # cycling is 3.5 times faster than walking: at 5 minutes most communities reach a
    # fitness place at least as often by bicycle (measured: 12 of 17). Not all: the
    # cycling network is smaller (footways without bicycle=yes are left out, and
    # one-way streets trap some nodes), so a few communities do worse.
    assert (bike5[ok] >= walk5[ok] - 1e-12).sum() > ok.sum() / 2
    res_w = t["residents"].to_numpy(float)[ok]
    assert (bike5[ok] * res_w).sum() > (walk5[ok] * res_w).sum()
    # and the typical trip is shorter: median minutes by bicycle below walking in most
    med_w = t["fitness_median_min"].to_numpy(float)
    med_b = t["fitness_bike_median_min"].to_numpy(float)
    fin = np.isfinite(med_w) & np.isfinite(med_b)
    assert (med_b[fin] < med_w[fin]).sum() > fin.sum() / 2
    for lev in (5, 10, 15):
        s = t[f"fitness_bike_share_{lev}"].to_numpy(float)
        assert ((s[np.isfinite(s)] >= 0) & (s[np.isfinite(s)] <= 1)).all()
    # levels are cumulative
    assert (t["fitness_bike_share_15"] >= t["fitness_bike_share_5"]).all()

    # a second run reuses the cached cycling network and minutes and changes nothing
    again = run(cfg)
    assert again.manifest["nothing_changed"] is True
    assert "bike_network" in again.manifest["cache"]["reused"]


def cfg_dict(tmp_path: Path, name: str) -> dict:
    """The Helsinki fitness-circle study (no cycling section)."""
    return {
        "study": {
            "name": name,
            "output_dir": str(tmp_path / "out"),
            "maps_dir": str(tmp_path / "maps"),
        },
        "network": {"source": HELSINKI},
        "communities": {"source": "hexagons"},
        "facilities": {"profile": "fitness_circle"},
        "coverage": {"always_flag": ["fitness"]},
        "isochrones": {"enabled": False},
        "map": {"enabled": False},
    }
