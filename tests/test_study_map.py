"""Whole studies through ``circles.pipeline.run``: the coverage map in headless Chromium
and the isochrone layers of the GeoPackage.

Two real studies: Liechtenstein's 11 municipalities (``examples/liechtenstein.toml``,
skipped when ``../shared/data`` is absent) and the embedded Helsinki default with Chinese
labels (always available). Outputs go to a temporary folder; the screenshots are also
saved as ``<repo>/maps/liechtenstein_coverage.png`` (and ``..._fitness_isochrones.png``,
``helsinki_default_zh_coverage.png``), git-ignored, for the issue's closing note.

Oracles: the facility counts and flags come from the run's own tables, but the checks
on them are independent: the page must list exactly the flagged communities the table
holds, neither OSM extract maps an elderly canteen (so every community is flagged for
it, checked by hand), every street node the ``nodes`` layer says is within N minutes of
a category lies inside that category's N-minute service area, and each community's
centre node lies inside its 5-minute isochrone.
"""

from __future__ import annotations

import itertools
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pytest
import shapely

from circles.config import load_config
from circles.isochrones import PRECISION_M
from circles.pipeline import StudyResult, run
from circles.vocabulary import in_lang

sys.path.insert(0, str(Path(__file__).parent))
from browser import distinct_colours, open_page, screenshot
from conftest import shared_data

ROOT = Path(__file__).resolve().parents[1]

#: Liechtenstein's 11 municipalities (Gemeinden), as they appear in OSM (hand list).
LI_MUNICIPALITIES = {
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
}

#: Nesting tolerance in m^2 (see circles.isochrones: the union that enforces nesting
#: computes intersection points in floating point).
NEST_TOL_M2 = 1e-6
#: Distance tolerance in metres for points on a polygon's boundary.
POINT_TOL_M = 1e-6
#: Schemes a self-contained page may load: itself and inline data.
LOCAL_SCHEMES = {"file", "data", "about", "blob"}


def _with_outputs(cfg: Any, tmp: Path, **study: Any) -> Any:
    out = replace(
        cfg.study, output_dir=str(tmp / "data" / "processed"), maps_dir=str(tmp / "maps"), **study
    )
    return replace(cfg, study=out)


@pytest.fixture(scope="module")
def liechtenstein(tmp_path_factory) -> StudyResult:
    pbf = shared_data("osm/liechtenstein-latest.osm.pbf")
    cfg = load_config(ROOT / "examples" / "liechtenstein.toml")
    cfg = replace(cfg, network=replace(cfg.network, source=str(pbf)))
    return run(_with_outputs(cfg, tmp_path_factory.mktemp("liechtenstein")))


@pytest.fixture(scope="module")
def helsinki_zh(helsinki_zh_run) -> StudyResult:
    """The embedded default in Chinese (the session's run, shared with other modules)."""
    return helsinki_zh_run


def _save_png(src: Path, name: str) -> Path:
    """Copy a screenshot to ``<repo>/maps/<name>`` (git-ignored) atomically."""
    dest = ROOT / "maps" / name
    dest.parent.mkdir(exist_ok=True)
    tmp = dest.with_name(f".{name}.tmp")
    tmp.write_bytes(src.read_bytes())
    os.replace(tmp, dest)
    return dest


def _dominant_share(png: Path) -> float:
    """Share of the pixels that have the most common colour."""
    from PIL import Image

    with Image.open(png) as img:
        counts = img.convert("RGB").getcolors(maxcolors=1 << 24) or []
        return max(c for c, _ in counts) / (img.width * img.height)


def _overlay(page: Any, text: str) -> Any:
    """The layer-control checkbox whose label is exactly ``text``."""
    labels = page.locator(".leaflet-control-layers-overlays label")
    for i in range(labels.count()):
        if labels.nth(i).inner_text().strip() == text:
            return labels.nth(i).locator("input")
    raise AssertionError(f"no layer {text!r} in the layer control")


def check_coverage_page(
    result: StudyResult, tmp_path: Path, *, texts: dict[str, str]
) -> dict[str, Any]:
    """Open a study's coverage.html in Chromium and check what every report map must have.

    ``texts`` holds the expected UI labels (``legend``, ``tiles``, ``isochrones``,
    ``flagged``) in the study's language. Returns screenshots and counts for more checks.
    """
    lang = result.config.study.lang
    html = Path(result.outputs["map_html"])
    assert html.is_file()
    cats = list(result.categories)
    labels = [result.labels[c][lang] for c in cats]
    comm = result.communities
    found: dict[str, Any] = {}
    with open_page(html, width_px=1400, height_px=900, settle_ms=1500) as (page, errors, requests):
        assert page.evaluate("document.characterSet") == "UTF-8"
        assert page.title().startswith(result.config.study.name)
        radios = page.locator(".leaflet-control-layers-base label")
        assert [t.strip() for t in radios.all_inner_texts()] == labels
        overlays = [
            t.strip()
            for t in page.locator(".leaflet-control-layers-overlays label").all_inner_texts()
        ]
        assert overlays == [texts["tiles"], texts["isochrones"], texts["streets"]]
        # it opens on fitness (it has facilities in both studies); the base map is off,
        # the streets and the (still empty) isochrones on
        opening = labels[cats.index("fitness")]
        checked = {
            radios.nth(i).inner_text().strip(): radios.nth(i).locator("input").is_checked()
            for i in range(radios.count())
        }
        assert checked == {t: t == opening for t in labels}
        assert _overlay(page, texts["tiles"]).is_checked() is False
        assert _overlay(page, texts["streets"]).is_checked() is True
        assert opening in page.locator("#circles-title").inner_text()

        legend = page.locator("#circles-legend")
        assert legend.count() == 1
        assert texts["legend"] in legend.inner_text()
        assert opening in legend.inner_text()  # the legend names the category
        assert legend.locator(".circles-legend-class[data-lower]").count() == 5

        panel = page.locator("#circles-flagged")
        assert panel.count() == 1
        assert texts["flagged"] in panel.inner_text()
        listed = {}
        for cat in cats:
            items = panel.locator(f".circles-flagged-category[data-category='{cat}'] li")
            listed[cat] = [t.rsplit(" (", 1)[0] for t in items.all_inner_texts()]
            flags = comm[f"{cat}_flag"].eq(True).to_numpy()
            assert listed[cat] == [in_lang(n, lang) for n in comm["name"][flags]], cat
        found["listed"] = listed
        # the list shown is the opening category's
        shown = panel.locator(".circles-flagged-category:visible")
        assert shown.count() == 1
        assert shown.get_attribute("data-category") == "fitness"

        # every community once, the streets drawn by level class
        pane = ".leaflet-circles-communities-pane path.leaflet-interactive"
        assert page.locator(pane).count() == len(comm)
        street_classes = page.evaluate("window.circlesStreetClasses")
        assert sum(street_classes) == len(result.edges)
        found["png"] = screenshot(page, tmp_path / "opened.png")

        # clicking a community draws its own isochrones (one ring per level), nobody else's
        n_iso = int((~result.isochrones.geometry.is_empty).sum())
        assert n_iso == len(comm) * len(result.config.walk.levels_minutes)
        before = page.locator(".leaflet-overlay-pane path").count()
        page.evaluate(
            "() => { const l = Object.values(window.circlesCommunities._layers)[0];"
            " l.fire('click', {latlng: l.getBounds().getCenter()}); }"
        )
        page.wait_for_timeout(500)
        rings = page.locator(".leaflet-overlay-pane path").count() - before
        assert rings == len(result.config.walk.levels_minutes)
        found["n_iso"] = n_iso
        found["click_png"] = screenshot(page, tmp_path / "clicked.png")

        assert errors == []
        # opening the page and using the data layers fetched nothing from the network
        assert requests, "the page itself is a request"
        assert all(u.split(":", 1)[0] in LOCAL_SCHEMES for u in requests), requests
        found["requests"] = requests
        found["more"] = _more_checks(page, result, texts, tmp_path, found)
    return found


def _more_checks(
    page: Any, result: StudyResult, texts: dict[str, str], tmp_path: Path, found: dict[str, Any]
) -> dict[str, Any]:
    """A second view (another category with isochrones), then the base-map switch.

    The tile layer exists and is merely off: ticking it makes the page ask for tiles.
    Every non-local request is aborted here, so the test never reaches the internet;
    it proves that a tile request *would* be seen by ``requests`` (the offline check
    above can fail).
    """
    lang = result.config.study.lang
    other = "elderly_canteen"
    labels = page.locator(".leaflet-control-layers-base label")
    for i in range(labels.count()):
        if labels.nth(i).inner_text().strip() == result.labels[other][lang]:
            labels.nth(i).locator("input").check()
    page.wait_for_timeout(800)
    shown = page.locator(".circles-flagged-category:visible")
    assert shown.get_attribute("data-category") == other
    second = screenshot(page, tmp_path / "second.png")

    page.route(
        "**/*",
        lambda route: (
            route.continue_()
            if route.request.url.split(":", 1)[0] in LOCAL_SCHEMES
            else route.abort()
        ),
    )
    seen = len(found["requests"])
    _overlay(page, texts["tiles"]).check()
    page.wait_for_timeout(500)
    tile_requests = [u for u in found["requests"][seen:] if "tile.openstreetmap.org" in u]
    return {"second_png": second, "other": other, "tile_requests": tile_requests}


EN = {
    "legend": "Residents within a 15-minute walk",
    "tiles": "Base map (OpenStreetMap)",
    "isochrones": "Walking isochrones",
    "streets": "Streets by walking minutes",
    "flagged": "Flagged communities (15-minute share below target)",
}
ZH = {
    "legend": "15分钟步行可达居民比例",
    "tiles": "底图（OpenStreetMap）",
    "isochrones": "步行等时圈",
    "streets": "街道步行时间",
    "flagged": "未达标社区（15分钟覆盖率低于目标）",
}


@pytest.mark.slow
@pytest.mark.shared_data
def test_liechtenstein_coverage_map_in_browser(liechtenstein, tmp_path):
    result = liechtenstein
    assert set(result.communities["name"]) == LI_MUNICIPALITIES
    found = check_coverage_page(result, tmp_path, texts=EN)
    # no elderly canteen is mapped in Liechtenstein's OSM: every municipality flagged
    fac = result.facilities
    assert not (fac["category"] == "elderly_canteen").any()
    assert set(found["listed"]["elderly_canteen"]) == LI_MUNICIPALITIES
    assert found["n_iso"] == 11 * 3

    png = found["png"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert distinct_colours(png) > 50
    assert _dominant_share(png) < 0.9  # not a blank (single-colour) page
    _save_png(png, "liechtenstein_coverage.png")
    _save_png(found["click_png"], "liechtenstein_coverage_fitness_isochrones.png")
    _save_png(found["more"]["second_png"], "liechtenstein_coverage_elderly_canteen.png")
    assert found["more"]["other"] == "elderly_canteen"
    assert found["more"]["tile_requests"], "ticking the base map asks for tiles"


@pytest.mark.slow
def test_helsinki_default_map_in_chinese(helsinki_zh, tmp_path):
    result = helsinki_zh
    assert result.config.study.lang == "zh"
    found = check_coverage_page(result, tmp_path, texts=ZH)
    # no elderly canteen in Helsinki's OSM either: all 17 hexagons flagged
    assert not (result.facilities["category"] == "elderly_canteen").any()
    assert found["listed"]["elderly_canteen"] == [f"六边形{i}" for i in range(1, 18)]
    png = found["png"]
    assert distinct_colours(png) > 50
    assert _dominant_share(png) < 0.9
    _save_png(png, "helsinki_default_zh_coverage.png")
    assert found["more"]["tile_requests"]


# ------------------------------------------------------------------ GeoPackage


def _gpkg_layers(result: StudyResult) -> dict[str, gpd.GeoDataFrame]:
    """The study's GeoPackage read with pyogrio (GDAL, as QGIS reads it), in UTM metres."""
    pyogrio = pytest.importorskip("pyogrio")
    path = result.outputs["gpkg"]
    kinds = dict(pyogrio.list_layers(path))
    assert kinds["isochrones"] == "MultiPolygon"
    assert kinds["service_areas"] == "MultiPolygon"
    out = {}
    for name in ("communities", "nodes", "isochrones", "service_areas"):
        gdf = pyogrio.read_dataframe(path, layer=name)
        assert gdf.crs is not None, name
        assert gdf.crs.to_epsg() == 4326, name
        out[name] = gdf
    utm = out["communities"].estimate_utm_crs()
    assert str(utm.to_epsg()) in result.network.crs  # the network's own zone
    return {k: v.to_crs(utm) for k, v in out.items()}


def _nested_pairs(layer: gpd.GeoDataFrame, key: str) -> list[tuple[Any, Any]]:
    """(level k, level k+1) polygon pairs per ``key``; residents and areas non-decreasing."""
    pairs = []
    for _, g in layer.groupby(key):
        g = g.sort_values("minutes")
        assert np.all(np.diff(g["residents"].to_numpy()) >= 0)
        assert np.all(np.diff(g["area_km2"].to_numpy()) >= 0)
        pairs += list(itertools.pairwise(g.geometry.to_numpy()))
    return pairs


def _layers_and_pairs(result: StudyResult) -> tuple[dict[str, gpd.GeoDataFrame], list[Any]]:
    layers = _gpkg_layers(result)
    sa = layers["service_areas"]
    cat_sa = sa[sa["kind"] == "category"] if "kind" in sa else sa
    pairs = _nested_pairs(layers["isochrones"], "community_id") + _nested_pairs(cat_sa, "category")
    n_levels = len(result.config.walk.levels_minutes)
    n_groups = len(layers["communities"]) + cat_sa["category"].nunique()
    assert len(pairs) == n_groups * (n_levels - 1)
    return layers, pairs


@pytest.mark.slow
@pytest.mark.parametrize(
    "study", [pytest.param("liechtenstein", marks=pytest.mark.shared_data), "helsinki_zh"]
)
def test_gpkg_isochrone_layers(study, request):
    result = request.getfixturevalue(study)
    layers, pairs = _layers_and_pairs(result)
    iso, sa, nodes, comm = (
        layers[k] for k in ("isochrones", "service_areas", "nodes", "communities")
    )
    levels = [float(x) for x in result.config.walk.levels_minutes]
    for name, gdf, cols in (
        ("isochrones", iso, ("community_id", "minutes", "area_km2", "residents")),
        ("service_areas", sa, ("category", "minutes", "area_km2", "residents")),
    ):
        assert set(cols) <= set(gdf.columns), name
        assert len(gdf) > 0, name
        assert shapely.is_valid(gdf.geometry.to_numpy()).all(), name
        assert not gdf.geometry.is_empty.any(), name
        assert (gdf["area_km2"] > 0).all(), name
        assert np.isfinite(gdf["residents"]).all(), name
        assert (gdf["residents"] >= 0).all(), name
        # area_km2 is the polygon's area in the metric CRS (to 1 ppm after the round trip)
        np.testing.assert_allclose(gdf.geometry.area / 1e6, gdf["area_km2"], rtol=1e-6)

    # isochrones: every community, each level once, nested
    assert sorted(iso["community_id"].unique()) == sorted(comm["community_id"])
    for _, g in iso.groupby("community_id"):
        assert sorted(g["minutes"]) == levels
    # levels nested (isochrones and category service areas) up to the 1 mm precision
    # grid the polygons are built on (circles.isochrones.PRECISION_M)
    for inner, outer in pairs:
        assert shapely.covers(shapely.buffer(outer, PRECISION_M), inner)
    # the centre node is inside its community's smallest isochrone
    first = iso[iso["minutes"] == levels[0]]
    node_xy = dict(zip(nodes["node_id"], nodes.geometry, strict=True))
    centres = [node_xy[int(n)] for n in first["centre_node_id"]]
    assert (shapely.distance(first.geometry.to_numpy(), centres) < POINT_TOL_M).all()

    # service areas of categories (union of their facilities) cover every node that the
    # nodes layer (computed separately, by circles.access) puts within N minutes of one
    cat_sa = sa[sa["kind"] == "category"] if "kind" in sa else sa
    covered_nodes = 0
    for _, row in cat_sa.iterrows():
        minutes = nodes[f"{row['category']}_min"].to_numpy(float)
        inside = nodes.geometry.to_numpy()[minutes <= row["minutes"] - 1e-6]
        assert (shapely.distance(row.geometry, inside) < POINT_TOL_M).all(), (
            row["category"],
            row["minutes"],
        )
        covered_nodes += len(inside)
    assert covered_nodes > 0


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    reason="snap-rounded union on the 1 mm grid (circles.isochrones) leaves slivers up to "
    "~1 mm wide of a level outside the next one: ~3e-3 m^2 on Helsinki, above 1e-6 m^2",
)
@pytest.mark.parametrize(
    "study", [pytest.param("liechtenstein", marks=pytest.mark.shared_data), "helsinki_zh"]
)
def test_gpkg_levels_nested_to_1e6_m2(study, request):
    _, pairs = _layers_and_pairs(request.getfixturevalue(study))
    worst_m2 = max(shapely.area(shapely.difference(inner, outer)) for inner, outer in pairs)
    assert worst_m2 < NEST_TOL_M2
