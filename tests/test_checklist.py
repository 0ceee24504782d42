"""Tests of circles.checklist on a hand-drawn graph with hand-checked answers.

The graph is a straight street of 11 nodes (ids 0..10) 59.9 m apart, walked at 1 m/s, so
node ``i`` is ``0.9983 * |i - k|`` minutes from a facility on node ``k``. Communities:
A = nodes 0-3, B = nodes 4-6, C = nodes 7-10, every node weighing one resident.
Facilities: a kindergarten on node 0, a health station on node 10, a health centre on
node 0, a primary school on node 3.
"""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from conftest import LAT0, LON0, at_frac, make_network, offset

from circles._errors import ConfigError, InputDataError
from circles.access import AccessGraph, nearest_by_group
from circles.categories import load_profile
from circles.checklist import (
    BASIS_EXACT,
    BASIS_LOWER_BOUND,
    BASIS_NO_DATA,
    evaluate_checklist,
    item_coverage,
)
from circles.coverage import assign_nodes, coverage_table
from circles.network import WalkNetwork

SPACING_M = 59.9
PROFILE = """
[profile]
name = "tiny_circle"

[[levels]]
minutes = 5
distance_m = 300
label_en = "5-minute circle"
label_zh = "五分钟生活圈"
source = "test"
status = "unverified"

[[levels]]
minutes = 10
distance_m = 500
label_en = "10-minute circle"
label_zh = "十分钟生活圈"
source = "test"
status = "verified"

[[levels]]
minutes = 15
distance_m = [800, 1000]
label_en = "15-minute circle"
label_zh = "十五分钟生活圈"
source = "test"
status = "unverified"

[[checklist]]
id = "kg"
level = 5
categories = ["kindergarten"]
label_en = "Kindergarten"
label_zh = "幼儿园"
source = "test"
status = "unverified"

[[checklist]]
id = "health"
level = 5
categories = ["health_station", "health_centre"]
label_en = "Health station"
label_zh = "社区卫生服务站"
source = "test"
status = "unverified"

[[checklist]]
id = "school"
level = 10
categories = ["primary_school"]
label_en = "Primary school"
label_zh = "小学"
source = "test"
status = "unverified"

[[checklist]]
id = "refuge"
level = 15
categories = ["shelter"]
label_en = "Emergency shelter"
label_zh = "应急避难场所"
source = "test"
status = "unverified"

[categories.kindergarten]
label_en = "Kindergarten"
label_zh = "幼儿园"
[[categories.kindergarten.rules]]
match = { amenity = "kindergarten" }

[categories.health_station]
label_en = "Health station"
label_zh = "卫生站"
[[categories.health_station.rules]]
match = { amenity = "clinic" }

[categories.health_centre]
label_en = "Health centre"
label_zh = "卫生服务中心"
[[categories.health_centre.rules]]
match = { amenity = "hospital" }

[categories.primary_school]
label_en = "Primary school"
label_zh = "小学"
[[categories.primary_school.rules]]
match = { amenity = "school" }

[categories.shelter]
label_en = "Shelter"
label_zh = "避难场所"
[[categories.shelter.rules]]
match = { emergency = "assembly_point" }
"""

GROUPS = {"A": range(0, 4), "B": range(4, 7), "C": range(7, 11)}
FACILITIES = {"kindergarten": 0, "health_station": 10, "health_centre": 0, "primary_school": 3}


@pytest.fixture(scope="module")
def street() -> WalkNetwork:
    pts = {i: offset(LON0, LAT0, 90.0, SPACING_M * i) for i in range(11)}
    return make_network(pts, [(i, i + 1) for i in range(10)])


@pytest.fixture(scope="module")
def profile(tmp_path_factory: pytest.TempPathFactory):
    path = Path(tmp_path_factory.mktemp("profile")) / "tiny.toml"
    path.write_text(PROFILE, encoding="utf-8")
    return load_profile(path)


def _communities(net: WalkNetwork) -> gpd.GeoDataFrame:
    polys = []
    for nodes in GROUPS.values():
        idx = [int(np.flatnonzero(net.node_id == i)[0]) for i in nodes]
        line = shapely.multipoints(np.column_stack([net.x[idx], net.y[idx]]))
        polys.append(shapely.buffer(shapely.convex_hull(line), 20.0))
    return gpd.GeoDataFrame(
        {"community_id": list(GROUPS), "name": [f"社区{k}" for k in GROUPS]},
        geometry=polys,
        crs=net.crs,
    ).to_crs("EPSG:4326")


@pytest.fixture(scope="module")
def inputs(street: WalkNetwork):
    """(communities, node_community, weights, node minutes per category)."""
    graph = AccessGraph.from_network(street, street.edge_seconds(1.0))
    edges, fracs, groups = [], [], []
    for cat, node in FACILITIES.items():
        # on node `node` = the end of the edge towards its neighbour
        nb = node + 1 if node < 10 else node - 1
        e, f = at_frac(street, node, nb, 0.0)
        edges.append(e)
        fracs.append(f)
        groups.append(cat)
    near = nearest_by_group(
        graph,
        np.array(edges),
        np.array(fracs),
        np.zeros(len(edges)),
        np.array(groups, dtype=object),
        groups=list(FACILITIES),
    )
    minutes = {c: near[c][0] / 60.0 for c in FACILITIES}
    comm = _communities(street)
    node_comm = assign_nodes(street, comm)
    return comm, node_comm, np.ones(street.n_nodes), minutes


def test_hand_graph_minutes_are_as_drawn(street: WalkNetwork, inputs) -> None:
    _, node_comm, _, minutes = inputs
    order = np.argsort(street.node_id)
    np.testing.assert_allclose(
        minutes["kindergarten"][order], np.arange(11) * SPACING_M / 60.0, atol=1e-9
    )
    np.testing.assert_array_equal(node_comm[order], [0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 2])


def test_checklist_exact_union(profile, inputs) -> None:
    comm, node_comm, w, minutes = inputs
    table = coverage_table(comm, node_comm, w, minutes, flag_threshold=0.8)
    exact = item_coverage(comm, node_comm, w, minutes, profile)
    # B (nodes 4-6): health minutes = min(i, 10 - i) * 0.998 -> 3.99, 4.99, 3.99: all <= 5
    assert exact["chk_health_share_5"].tolist() == pytest.approx([1.0, 1.0, 1.0])
    # per category, B has only 2 of 3 nodes within 5 minutes of each
    assert table["health_centre_share_5"].iloc[1] == pytest.approx(2 / 3)
    res = evaluate_checklist(pd.concat([table, exact], axis=1), profile, threshold=0.8)
    c = res.communities.set_index("community_id")
    assert c.loc["A", "items_met"] == 3
    assert c.loc["B", "items_met"] == 2
    assert c.loc["C", "items_met"] == 2
    # 4 items, the shelter has no data anywhere
    assert c["items_total"].tolist() == [4, 4, 4]
    assert c["items_no_data"].tolist() == [1, 1, 1]
    assert c["completeness"].tolist() == pytest.approx([3 / 4, 2 / 4, 2 / 4])
    assert c["completeness_5"].tolist() == pytest.approx([1.0, 0.5, 0.5])
    assert c["completeness_10"].tolist() == pytest.approx([1.0, 2 / 3, 2 / 3])
    # smallest level at which each item is met
    assert c["kg_met_level"].tolist() == [5, 10, 10]
    assert c["school_met_level"].tolist() == [5, 5, 10]  # C: nodes 7, 8 within 5 of 3
    assert np.isnan(c["refuge_met_level"]).all()
    assert c.loc["B", "missing_en"] == (
        "Kindergarten (needed within 5 min; reached within 10 min); "
        "Emergency shelter (within 15 min; no facility data)"
    )
    assert c.loc["B", "missing_zh"] == (
        "幼儿园（应在5分钟内，10分钟内可达）；应急避难场所（15分钟内；无设施数据）"
    )
    assert c.loc["A", "missing_zh"] == "应急避难场所（15分钟内；无设施数据）"
    items = res.items.set_index(["community_id", "item"])
    assert items.loc[("B", "health"), "share_basis"] == BASIS_EXACT
    assert items.loc[("B", "refuge"), "share_basis"] == BASIS_NO_DATA
    assert items.loc[("C", "school"), "share_5"] == pytest.approx(0.5)
    assert items.loc[("C", "school"), "met_5"] is False
    assert items.loc[("C", "school"), "met_at_level"] is True
    assert len(res.items) == 3 * 4


def test_checklist_lower_bound_without_node_minutes(profile, inputs) -> None:
    comm, node_comm, w, minutes = inputs
    table = coverage_table(comm, node_comm, w, minutes)
    res = evaluate_checklist(table, profile, threshold=0.8)
    items = res.items.set_index(["community_id", "item"])
    assert items.loc[("B", "health"), "share_basis"] == BASIS_LOWER_BOUND
    assert items.loc[("B", "health"), "share_5"] == pytest.approx(2 / 3)
    assert items.loc[("B", "health"), "met_at_level"] is False
    # a lower threshold turns it into met
    res2 = evaluate_checklist(table, profile, threshold=0.6)
    assert res2.communities.set_index("community_id").loc["B", "items_met"] == 3


def test_cumulative_levels(profile) -> None:
    assert [i.id for i in profile.items_up_to(5)] == ["kg", "health"]
    assert [i.id for i in profile.items_up_to(10)] == ["kg", "health", "school"]
    assert len(profile.items_up_to(15)) == 4


def test_community_without_residents_is_not_evaluated(profile, inputs) -> None:
    comm, node_comm, w, minutes = inputs
    w = w.copy()
    w[node_comm == 2] = 0.0
    table = coverage_table(comm, node_comm, w, minutes)
    c = evaluate_checklist(table, profile).communities.set_index("community_id")
    assert np.isnan(c.loc["C", "completeness"])
    assert c.loc["C", "missing_en"] == "(no residents: not evaluated)"


def test_bad_inputs(profile, inputs) -> None:
    comm, node_comm, w, minutes = inputs
    table = coverage_table(comm, node_comm, w, minutes, levels_minutes=(5, 15))
    with pytest.raises(InputDataError, match="levels_minutes to include them"):
        evaluate_checklist(table, profile)
    with pytest.raises(ConfigError, match="no \\[\\[checklist\\]\\] items"):
        evaluate_checklist(table, load_profile("default"))
    with pytest.raises(ConfigError, match="threshold must be a share"):
        evaluate_checklist(table, profile, threshold=1.5)
    with pytest.raises(InputDataError, match="no 'community_id' column"):
        evaluate_checklist(table.drop(columns="community_id"), profile)
