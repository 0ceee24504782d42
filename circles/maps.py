"""Folium coverage maps: one self-contained HTML page per study.

This module only *draws* what it is given (communities with their coverage numbers,
facilities, optional isochrones); every number shown was computed upstream by
:mod:`circles.coverage` and :mod:`circles.isochrones`.

Two public functions:

- :func:`coverage_map` builds a :class:`folium.Map` with one layer per category
  (communities shaded by their 15-minute coverage share in fixed classes, the
  category's facilities as circle markers, flagged communities outlined in thick red
  dashes), an optional isochrone layer, an optional base-tile layer, a legend and a
  panel listing the flagged communities.
- :func:`save_map` writes it atomically; by default the page is *self-contained*: all
  JavaScript and CSS is inlined from PyPI's XStatic packages, so the page opens with no
  network (the optional tile layer, when drawn, is the only thing fetched at run time).

Safety: every text that comes from data (community and facility names, ids, category
labels) is escaped with :func:`_esc` before it is put into HTML. Folium inserts popup and
tooltip HTML into JavaScript *template literals* (backticks), so escaping ``<>&"'`` is not
enough: ``$``, backticks and backslashes are escaped too, otherwise a name such as
``${alert(1)}`` would run as code.
"""

from __future__ import annotations

import base64
import functools
import html
import logging
import math
import os
import re
from collections.abc import Mapping, Sequence
from importlib import import_module
from pathlib import Path
from typing import Any

import branca.element
import folium
import folium.plugins
import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from circles import fonts, mapparts, mapview
from circles._errors import DataFileError, InputDataError
from circles.cache import Cache, frame_digest
from circles.geometry import map_tasks
from circles.io import atomic_path
from circles.mapview import esc as _esc
from circles.network import utm_crs
from circles.palette import (
    CATEGORY_COLOURS,
    FLAG_COLOUR,
    NO_DATA_COLOUR,
    SHARE_BREAKS,
    SHARE_COLOURS,
    level_colours,
    opening_category,
)
from circles.vocabulary import in_lang

logger = logging.getLogger(__name__)

__all__ = [
    "NO_DATA_COLOUR",
    "SHARE_BREAKS",
    "SHARE_COLOURS",
    "InlineMap",
    "coverage_map",
    "inline",
    "page_html",
    "save_map",
]

#: Outline of flagged communities: thick red dashes.
FLAG_STYLE: Mapping[str, Any] = {"color": FLAG_COLOUR, "weight": 4, "dashArray": "8 6"}

#: Isochrone fill colour by walk time in minutes.
ISOCHRONE_COLOURS: Mapping[int, str] = {5: "#1a9850", 10: "#fee08b", 15: "#d73027"}

#: Largest zoom level of the map (Leaflet.markercluster needs one even without tiles).
MAX_ZOOM = 19

#: Decimal places kept in drawn coordinates (degrees): 6 places is about 0.1 m.
COORD_DECIMALS = 6

#: Element ids that the page carries (tests and stylesheets find the parts by them).
LEGEND_ID = "circles-legend"
FLAGGED_ID = "circles-flagged"
TITLE_ID = "circles-title"

_TEXT = mapview.TEXT

_COMMUNITY_COLUMNS = ("community_id", "name", "residents_basis")
_CATEGORY_SUFFIXES = ("share_5", "share_10", "share_15", "median_min", "p90_min", "flag")
_FACILITY_COLUMNS = ("facility_id", "category", "name", "source", "status", "snap_m")
_ISOCHRONE_COLUMNS = ("community_id", "minutes", "area_km2")


# --------------------------------------------------------------------------- helpers


def _table(rows: Sequence[tuple[str, str]]) -> str:
    """An HTML table of already-escaped (label, value) pairs."""
    cells = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    return f"<table class='circles-popup'>{cells}</table>"


#: Rows from which :func:`_simplify` works on two threads (each geometry alone, so the
#: result is the same).
_SPLIT_ROWS = 200


def _simplify(gdf: gpd.GeoDataFrame, simplify_m: float) -> gpd.GeoDataFrame:
    """Simplify geometries by ``simplify_m`` metres in the estimated UTM zone, back to 4326.

    Coordinates are then rounded to :data:`COORD_DECIMALS` places (about 0.1 m).
    Null and empty geometries are dropped (logged).
    """
    out = gdf[~(gdf.geometry.isna() | gdf.geometry.is_empty)]
    if len(out) < len(gdf):
        logger.warning("dropped %d rows without geometry", len(gdf) - len(out))
    if len(out) == 0:
        return out
    if simplify_m > 0 and not (out.geom_type == "Point").all():
        x0, y0, x1, y1 = out.total_bounds
        # the UTM zone of the data's centre (geopandas' estimate_utm_crs queries the PROJ
        # database and costs ~0.1 s per call)
        utm = utm_crs(np.array([(x0 + x1) / 2]), np.array([(y0 + y1) / 2]))
        geoms = np.asarray(out.geometry.array, dtype=object)

        def simplified(part: np.ndarray) -> np.ndarray:
            g = gpd.GeoSeries(part, crs=out.crs).to_crs(utm)
            back = g.simplify(simplify_m, preserve_topology=True).to_crs(4326)
            return np.asarray(back.array, dtype=object)

        # a county's outlines in two halves, on two cores
        halves = np.array_split(geoms, 2 if len(geoms) >= _SPLIT_ROWS else 1)
        parts = map_tasks(simplified, halves, threads=None, workers=2)
        out = out.set_geometry(gpd.GeoSeries(np.concatenate(parts), index=out.index, crs=4326))
    rounded = shapely.transform(
        np.asarray(out.geometry.array, dtype=object), lambda xy: np.round(xy, COORD_DECIMALS)
    )
    return out.set_geometry(gpd.GeoSeries(rounded, index=out.index, crs=4326))


def _feature_collection(
    geometry: gpd.GeoSeries | Sequence[Mapping[str, Any]],
    properties: Sequence[Mapping[str, Any]],
) -> dict[str, Any]:
    """A GeoJSON FeatureCollection of geometries (or their GeoJSON mappings, computed once
    for layers that share them) with the given (already safe) properties."""
    geoms = (
        [shapely.geometry.mapping(g) for g in geometry]
        if isinstance(geometry, gpd.GeoSeries)
        else list(geometry)
    )
    return {
        "type": "FeatureCollection",
        "features": [
            {"type": "Feature", "geometry": g, "properties": dict(p)}
            for g, p in zip(geoms, properties, strict=True)
        ],
    }


#: Binds each feature's pre-escaped popup and tooltip HTML (see :func:`_esc`).
_BIND_POPUP = folium.JsCode(
    "function(feature, layer) {"
    " layer.bindPopup(feature.properties.popup, {maxWidth: 320});"
    " layer.bindTooltip(feature.properties.tooltip, {sticky: true}); }"
)


def _check_frame(
    gdf: Any, name: str, columns: Sequence[str], *, geom_types: Sequence[str]
) -> gpd.GeoDataFrame:
    """Validate a GeoDataFrame input and return it in EPSG:4326."""
    if not isinstance(gdf, gpd.GeoDataFrame):
        raise InputDataError(f"{name} must be a GeoDataFrame, got {type(gdf).__name__}")
    if gdf.crs is None:
        raise InputDataError(f"{name} has no CRS; set it (EPSG:4326) with .set_crs(4326)")
    missing = [c for c in columns if c not in gdf.columns]
    if missing:
        raise InputDataError(f"{name} lacks column(s) {missing}; add them before mapping")
    present = gdf.geometry[~(gdf.geometry.isna() | gdf.geometry.is_empty)]
    bad = sorted(set(present.geom_type) - set(geom_types))
    if bad:
        raise InputDataError(f"{name} geometries must be {list(geom_types)}, found {bad}")
    return gdf if gdf.crs.equals("EPSG:4326") else gdf.to_crs(4326)


# --------------------------------------------------------------------------- HTML parts


class _Text(branca.element.Element):
    """Text added to the page exactly as it is (no template processing)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self._text = str(text)

    def render(self, **kwargs: Any) -> str:
        """The text itself."""
        return self._text


class _Verbatim(branca.element.MacroElement):
    """A MacroElement whose rendered ``header``, ``html`` and ``script`` are added as is.

    branca's ``MacroElement.render`` wraps each rendered macro in ``Element(text)``, which
    compiles the text as a Jinja template a second time and renders it again. For a
    layer that carries data this is wrong and slow: a name containing ``{{ 7*7 }}`` is
    evaluated (it shows ``49``), one containing ``{%`` stops the whole map with a
    template syntax error, and megabytes of GeoJSON are tokenised by Jinja (about half
    of a map's render time). Mixed in *after* a folium class (``class
    X(folium.GeoJson, _Verbatim)``), it takes the place of ``MacroElement.render`` in the
    method order, so folium's own ``render`` steps (style maps, includes, add-to-parent)
    still run first.
    """

    def render(self, **kwargs: Any) -> str:
        """Add the rendered macros to the figure verbatim, then render the children.

        Returns an empty string: the element's output lives in the figure's parts.
        """
        figure = self.get_root()
        if not isinstance(figure, branca.element.Figure):
            raise InputDataError("a map element can only be rendered inside a folium map")
        macros = self._template.module.__dict__
        for part, target in (
            ("header", figure.header),
            ("html", figure.html),
            ("script", figure.script),
        ):
            macro = macros.get(part)
            if macro is not None:
                target.add_child(_Text(macro(self, kwargs)), name=self.get_name())
        for element in self._children.values():
            element.render(**kwargs)
        return ""


class _GeoJson(folium.GeoJson, _Verbatim):
    """``folium.GeoJson`` whose data never goes through Jinja (see :class:`_Verbatim`)."""


class _LayerControl(folium.LayerControl, _Verbatim):
    """``folium.LayerControl`` whose layer names never go through Jinja."""


class _Panel(_Verbatim):
    """A fixed HTML box (legend or flagged list) drawn over the map.

    ``inner_html`` must already be escaped; the element gets ``id`` and class
    ``circles-panel``.
    """

    _template = branca.element.Template(
        """
        {% macro html(this, kwargs) %}
        <div id="{{ this.element_id }}" class="circles-panel" style="{{ this.css }}">
        {{ this.inner_html }}
        </div>
        {% endmacro %}
        """
    )

    def __init__(self, element_id: str, inner_html: str, css: str) -> None:
        super().__init__()
        self._name = "CirclesPanel"
        self.element_id = element_id
        self.inner_html = inner_html
        self.css = css


_PANEL_CSS = (
    "position:fixed;z-index:1000;background:rgba(255,255,255,0.92);padding:6px 8px;"
    "border:1px solid #888;border-radius:4px;font-size:12px;line-height:1.4;"
    "max-height:35vh;overflow:auto;max-width:320px;"
)


# --------------------------------------------------------------------------- public API


def coverage_map(
    communities: gpd.GeoDataFrame,
    facilities: gpd.GeoDataFrame,
    *,
    categories: Sequence[str],
    labels: Mapping[str, Mapping[str, str]] | None = None,
    isochrones: gpd.GeoDataFrame | mapview.RawJSON | None = None,
    lang: str = "en",
    simplify_m: float = 10.0,
    cluster_threshold: int = 50,
    tiles: bool = True,
    tiles_shown: bool = False,
    levels_minutes: Sequence[float] = (5, 10, 15),
    edges: gpd.GeoDataFrame | None = None,
    title: str | None = None,
    date: str | None = None,
    opening: str | None = None,
    streets_shown: bool = True,
    store: Cache | None = None,
) -> folium.Map:
    """Draw community coverage, facilities and isochrones on one folium map.

    Parameters
    ----------
    communities : geopandas.GeoDataFrame
        Community polygons (any CRS, drawn in EPSG:4326) with ``community_id``, ``name``,
        ``residents_basis`` and, for each category ``C``: ``C_share_5``, ``C_share_10``,
        ``C_share_15`` (0-1, NaN allowed), ``C_median_min``, ``C_p90_min`` (minutes, inf
        means beyond the search cut-off) and ``C_flag`` (bool).
    facilities : geopandas.GeoDataFrame
        Facility points with ``facility_id``, ``category``, ``name`` (may be NaN),
        ``source``, ``status`` (``"snapped"`` draws filled in the category's colour;
        anything else, e.g. ``"unreachable"``, grey) and ``snap_m`` (metres). Rows whose
        category is not in ``categories`` are not drawn.
    categories : sequence of str
        Category ids to draw, one layer each (radio buttons of the layer control: one
        category is shown at a time; the map title, legend, flagged list and streets
        follow it).
    labels : mapping, optional
        ``{category: {"en": ..., "zh": ...}}``; missing entries fall back to the id.
    isochrones : geopandas.GeoDataFrame or circles.mapview.RawJSON, optional
        ``community_id``, ``minutes`` (5, 10, 15), ``area_km2`` and (Multi)Polygons;
        clicking a community draws its own isochrones (nobody else's). Or the part
        :func:`circles.mapparts.isochrone_part` already encoded as JSON (kept in a
        cache by the caller, who knows the isochrones' content key).
    lang : {"en", "zh"}
        Language of the labels.
    simplify_m : float
        Display simplification tolerance in metres (Douglas-Peucker in the estimated UTM
        zone, topology preserved). 10 m is invisible at street zoom and keeps a
        county-size map well under 20 MB; 0 disables it.
    cluster_threshold : int
        A category with more facilities than this gets its markers clustered
        (Leaflet.markercluster); otherwise plain circle markers.
    tiles : bool
        Add OpenStreetMap tiles as an optional overlay. ``False`` adds no tile layer at
        all; the map is always fitted to the data so it is useful without tiles.
    tiles_shown : bool, default False
        Whether the tile layer is switched on when the page opens. Off by default, so a
        report map opened on an intranet machine makes no request until the reader
        ticks "Base map" in the layer control.
    levels_minutes : sequence of float, default (5, 10, 15)
        The study's walk-time levels: communities carry ``C_share_<level>`` for each,
        and are shaded by the share within the last (largest) level.
    edges : geopandas.GeoDataFrame, optional
        The ``edges`` layer (:mod:`circles.streets`, ``C_min`` per category): a
        "streets by walking minutes" layer coloured by the levels, for the category shown.
    title : str, optional
        The study's name, shown in the map title and the page title.
    date : str, optional
        Date shown in the titles (e.g. the run's date, ``YYYY-MM-DD``).
    opening : str, optional
        The category shown on opening (default: fitness if it has facilities, else the
        first category with facilities, :func:`circles.palette.opening_category`).
    streets_shown : bool, default True
        Whether the streets layer is switched on when the page opens.
    store : circles.cache.Cache, optional
        Keep the map's parts in this cache, keyed by their content: each category's
        community values (fills, flags, popups, tooltips, flagged list) and the encoded
        isochrones. A later drawing in which one category changed (an update) computes
        that category's part only and reads the others.

    Returns
    -------
    folium.Map
        Save it with :func:`save_map`.

    Raises
    ------
    InputDataError
        Missing columns or CRS, wrong geometry types, bad arguments, nothing to draw.
    """
    if lang not in _TEXT:
        raise InputDataError(f"lang must be one of {sorted(_TEXT)}, got {lang!r}")
    if isinstance(categories, str) or not categories:
        raise InputDataError("categories must be a non-empty list of category ids")
    cats = [str(c) for c in categories]
    if len(set(cats)) != len(cats):
        raise InputDataError(f"categories contains duplicates: {cats}")
    if not (math.isfinite(simplify_m) and simplify_m >= 0):
        raise InputDataError(f"simplify_m must be a finite number >= 0 metres, got {simplify_m}")
    if isinstance(cluster_threshold, bool) or not isinstance(cluster_threshold, int):
        raise InputDataError(f"cluster_threshold must be an int, got {cluster_threshold!r}")
    if cluster_threshold < 0:
        raise InputDataError(f"cluster_threshold must be >= 0, got {cluster_threshold}")
    levels = [float(x) for x in levels_minutes]
    if not levels:
        raise InputDataError("levels_minutes must not be empty")
    lev_keys = [str(int(x)) if x.is_integer() else str(x) for x in levels]
    top = lev_keys[-1]
    suffixes = (*[f"share_{k}" for k in lev_keys], "median_min", "p90_min", "flag")
    cat_columns = [f"{c}_{s}" for c in cats for s in suffixes]
    comm = _check_frame(
        communities,
        "communities",
        [*_COMMUNITY_COLUMNS, *cat_columns],
        geom_types=("Polygon", "MultiPolygon", "Point"),
    )
    fac = _check_frame(facilities, "facilities", _FACILITY_COLUMNS, geom_types=("Point",))
    iso = None
    if isochrones is not None and not isinstance(isochrones, mapview.RawJSON):
        iso = _check_frame(
            isochrones, "isochrones", _ISOCHRONE_COLUMNS, geom_types=("Polygon", "MultiPolygon")
        )
    text = _TEXT[lang]
    labels = labels or {}

    def label(cat: str) -> str:
        return _esc(labels.get(cat, {}).get(lang) or cat)

    comm = _simplify(comm, simplify_m)
    fac = _simplify(fac[fac["category"].astype(str).isin(cats)], simplify_m)
    if iso is not None:
        iso = _simplify(iso, simplify_m)
    frames = [f for f in (comm, fac, iso) if f is not None and len(f)]
    if not frames:
        raise InputDataError("nothing to draw: communities and facilities are both empty")
    bounds = np.array([f.total_bounds for f in frames])
    west, south = bounds[:, 0].min(), bounds[:, 1].min()
    east, north = bounds[:, 2].max(), bounds[:, 3].max()

    if opening is None:
        snapped = fac[fac["status"].astype(str) == "snapped"]["category"].astype(str)
        opening = opening_category(cats, snapped.value_counts().to_dict())
    if opening not in cats:
        raise InputDataError(f"opening must be one of the categories {cats}, got {opening!r}")
    if len(comm):  # the study's extent: its communities (facilities may lie beyond)
        west, south, east, north = (float(v) for v in comm.total_bounds)

    m = folium.Map(
        location=[(south + north) / 2, (west + east) / 2],
        zoom_start=13,
        tiles=None,
        control_scale=False,  # a metric-only scale is added by the view
        zoom_snap=0.25,
    )
    m.options["max_zoom"] = MAX_ZOOM  # folium passes max_zoom to its own tiles only
    day = _esc(date or "")
    study_name = _esc(title or "")
    root = m.get_root()
    if isinstance(root, branca.element.Figure):  # the page's <title> (escaped text)
        root.title = (
            text["page_title"].format(study=study_name, date=day).replace(" ()", "")
        ).replace("（）", "")
    if tiles:
        folium.TileLayer(
            tiles="https://tile.openstreetmap.org/{z}/{x}/{y}.png",
            attr="© OpenStreetMap contributors",
            name=_esc(text["tiles"]),
            overlay=True,
            control=True,
            show=tiles_shown,
            max_zoom=MAX_ZOOM,
        ).add_to(m)

    lang_of = functools.partial(in_lang, lang=lang)
    names = comm["name"].map(lambda v: _esc(lang_of(v))).to_numpy()
    ids = comm["community_id"].map(_esc).to_numpy()
    basis = comm["residents_basis"].map(lambda v: _esc(lang_of(v))).to_numpy()
    text = {
        **text,
        "legend": text["legend"].format(m=top),
        "flagged": text["flagged"].format(m=top),
    }
    fills_all, flags_all, popups_all, tips_all, popup_rows = [], [], [], [], []
    flagged_html = []
    groups: dict[str, str] = {}
    if store is not None and store.root is None:  # a cache that keeps nothing
        store = None
    rows_key = frame_digest(comm, ["community_id", "name"]) if store is not None else None
    for cat in cats:
        group = folium.FeatureGroup(name=label(cat), overlay=False, show=(cat == opening))
        groups[group.get_name()] = cat
        doc = mapparts.kept_category_part(
            store, comm, cat, label(cat), names, ids, lev_keys, suffixes, text, rows_key=rows_key
        )
        popup_rows.append(doc["rows"])
        fills_all.append(doc["fills"])
        flags_all.append(doc["flags"])
        popups_all.append(doc["popups"])
        tips_all.append(doc["tips"])
        flagged_html.append(doc["flagged"])
        _add_facilities(
            group,
            fac[fac["category"].astype(str) == cat],
            cat,
            cats.index(cat),
            text,
            label,
            cluster_threshold,
        )
        group.add_to(m)
    # one outline per community, shared by every category (restyled by the view)
    comm_features = [
        {
            "type": "Feature",
            "geometry": shapely.geometry.mapping(g),
            "properties": {
                "id": ids[j],
                "name": names[j],
                "basis": basis[j],
                "fill": [f[j] for f in fills_all],
                "flag": [f[j] for f in flags_all],
                "popup": [p[j] for p in popups_all],
                "tooltip": [t[j] for t in tips_all],
            },
        }
        for j, g in enumerate(comm.geometry)
    ]
    iso_json: mapview.RawJSON | dict[str, list[dict[str, Any]]] = {}
    if isinstance(isochrones, mapview.RawJSON):  # already encoded (a kept part)
        iso_json = isochrones
    elif iso is not None and len(iso) and store is not None:
        key = frame_digest(iso, ["community_id", "minutes", iso.geometry.name])
        iso_json = mapparts.kept_isochrone_part(store, [key], lambda: iso)
    elif iso is not None and len(iso):
        iso_json = mapparts.isochrone_part(iso)
    street_doc = mapview.street_layer(edges, cats, levels) if edges is not None else None
    level_txt = "/".join(lev_keys)
    bounds_ll = [[float(south), float(west)], [float(north), float(east)]]
    _Panel(
        TITLE_ID,
        f"<b>{study_name}</b>{' · ' if study_name else ''}"
        f"<span class='circles-category-label'>{label(opening)}</span> · "
        f"{_esc(text['title'].format(m=top))}{' · ' + day if day else ''}",
        _PANEL_CSS + "left:50%;transform:translateX(-50%);top:10px;font-size:14px;max-width:70vw;",
    ).add_to(m)
    _Panel(
        LEGEND_ID,
        mapview.legend_html(text, label(opening), levels, street_doc is not None, level_txt),
        _PANEL_CSS + "left:10px;bottom:44px;max-height:60vh;",
    ).add_to(m)
    _Panel(
        FLAGGED_ID,
        f"<details open><summary><b>{_esc(text['flagged'])}</b></summary>"
        + "".join(flagged_html)
        + "</details>",
        _PANEL_CSS + "right:10px;bottom:36px;",
    ).add_to(m)
    control = _LayerControl(collapsed=False).add_to(m)
    mapview.MapView(
        mapview.view_data(
            categories=cats,
            opening=opening,
            labels={c: label(c) for c in cats},
            groups=groups,
            control=control.get_name(),
            communities={"type": "FeatureCollection", "features": comm_features},
            isochrones=iso_json,
            iso_colours=ISOCHRONE_COLOURS,
            streets=street_doc,
            street_colours=level_colours(len(levels)),
            streets_shown=streets_shown,
            flag_style=FLAG_STYLE,
            texts={
                "isochrones": _esc(text["isochrones"]),
                "streets": _esc(text["streets"]),
                "isoHint": _esc(text["iso_hint"].format(levels=level_txt)),
                "isoOf": _esc(text["iso_of"].format(name="{name}", levels=level_txt)),
                "isoNone": _esc(text["iso_none"]),
                "popupCommon": [_esc(text["id"]), _esc(text["basis"])],
                "popupRows": popup_rows,
                "units": [_esc(text["m"]), _esc(text["km"])],
            },
            north_html=mapview.NORTH_HTML.format(n=_esc(text["north"])),
            bounds=bounds_ll,
        ),
        css=mapview.VIEW_CSS,
    ).add_to(m)
    return m


def _add_facilities(
    group: folium.FeatureGroup,
    fac: gpd.GeoDataFrame,
    cat: str,
    index: int,
    text: Mapping[str, str],
    label: Any,
    cluster_threshold: int,
) -> None:
    """Add one category's facilities to its layer (clustered above the threshold); area
    facilities (parks, school grounds) also as their footprints."""
    if len(fac) == 0:
        return
    colour = CATEGORY_COLOURS[index % len(CATEGORY_COLOURS)]
    _add_footprints(group, fac, cat, colour, text, label)
    if len(fac) > mapview.LEAN_MARKERS_ABOVE:  # lean rows, popups with the name only
        sub = f"{label(cat)} · {_esc(text['lean'])}"
        mapview.lean_markers(fac, colour=colour, subtitle=sub, name=f"{cat}_cluster").add_to(group)
        return
    props = []
    for fid, name, source, status, snap in zip(
        fac["facility_id"], fac["name"], fac["source"], fac["status"], fac["snap_m"], strict=True
    ):
        snap_m = float(snap) if pd.notna(snap) else math.nan
        title = _esc(name) or _esc(fid)
        rows = [
            (_esc(text["category"]), label(cat)),
            (_esc(text["id"]), _esc(fid)),
            (_esc(text["source"]), _esc(in_lang(source, text["lang"]))),
            (_esc(text["status"]), _esc(in_lang(status, text["lang"]))),
            (_esc(text["snap"]), "–" if math.isnan(snap_m) else f"{snap_m:.0f} {text['m']}"),
        ]
        fill = colour if str(status) == "snapped" else "#9e9e9e"
        props.append(
            {
                "popup": f"<b>{title}</b>" + _table(rows),
                "tooltip": title,
                "style": {
                    "radius": 5,
                    "color": "#222",
                    "weight": 1,
                    "fillColor": fill,
                    "fillOpacity": 0.9,
                },
            }
        )
    layer = _GeoJson(
        _feature_collection(fac.geometry, props),
        name=f"{cat}_facilities",
        control=False,
        on_each_feature=_BIND_POPUP,
        marker=folium.CircleMarker(radius=5, fill=True),
    )
    if len(fac) > cluster_threshold:
        cluster = folium.plugins.MarkerCluster(name=f"{cat}_cluster", control=False)
        layer.add_to(cluster)
        cluster.add_to(group)
    else:
        layer.add_to(group)


def _add_footprints(
    group: folium.FeatureGroup,
    fac: gpd.GeoDataFrame,
    cat: str,
    colour: str,
    text: Mapping[str, str],
    label: Any,
) -> None:
    """The polygons of a category's area facilities (``footprint_wkb``), under its dots."""
    if "footprint_wkb" not in fac:
        return
    rows = fac[fac["footprint_wkb"].notna()]
    if len(rows) == 0:
        return
    geom = gpd.GeoSeries(shapely.from_wkb(rows["footprint_wkb"].to_numpy()), crs=4326)
    poly = geom.geom_type.isin(["Polygon", "MultiPolygon"]).to_numpy()
    rows, geom = rows.loc[poly], geom[poly]
    if len(rows) == 0:
        return
    shapes = _simplify(
        gpd.GeoDataFrame({"i": np.arange(len(rows))}, geometry=geom.to_numpy(), crs=4326), 0.0
    )
    props = []
    for j in shapes["i"].tolist():
        r = rows.iloc[j]
        title = _esc(r["name"]) or _esc(r["facility_id"])
        n_in = r.get("inside_nodes", 0)
        n_in = int(n_in) if pd.notna(n_in) else 0
        n_e = r.get("entries", math.nan)
        cells = [
            (_esc(text["category"]), label(cat)),
            (_esc(text["id"]), _esc(r["facility_id"])),
            (_esc(text["entries"]), "–" if pd.isna(n_e) else f"{int(n_e)} ({n_in})"),
        ]
        props.append(
            {
                "popup": f"<b>{title}</b>" + _table(cells),
                "tooltip": title,
                "style": {"color": colour, "weight": 1.5, "fillColor": colour, "fillOpacity": 0.3},
            }
        )
    _GeoJson(
        _feature_collection(shapes.geometry, props),
        name=f"{cat}_footprints",
        control=False,
        on_each_feature=_BIND_POPUP,
    ).add_to(group)


# --------------------------------------------------------------------------- saving

#: folium's CDN references that a registry package replaces: (URL pattern with the
#: referenced version as group ``v``, xstatic module under ``xstatic.pkg``, file under its
#: ``BASE_DIR``, required). A missing optional package drops the reference (logged).
_ASSETS: tuple[tuple[re.Pattern[str], str, str, bool], ...] = (
    (re.compile(r"/leaflet@(?P<v>[\d.]+)/dist/leaflet\.js$"), "leaflet", "leaflet.js", True),
    (re.compile(r"/leaflet@(?P<v>[\d.]+)/dist/leaflet\.css$"), "leaflet", "leaflet.css", True),
    (re.compile(r"/jquery-(?P<v>[\d.]+)\.min\.js$"), "jquery", "jquery.min.js", True),
    (
        re.compile(r"/leaflet\.markercluster/(?P<v>[\d.]+)/leaflet\.markercluster\.js$"),
        "leaflet_markercluster",
        "leaflet.markercluster.js",
        True,
    ),
    (
        re.compile(r"/leaflet\.markercluster/(?P<v>[\d.]+)/MarkerCluster(?P<f>\.Default)?\.css$"),
        "leaflet_markercluster",
        "MarkerCluster{f}.css",
        True,
    ),
    (
        re.compile(r"/fontawesome-free@(?P<v>[\d.]+)/css/all\.min\.css$"),
        "font_awesome",
        "css/all.min.css",
        False,
    ),
    (
        re.compile(r"/bootstrap@(?P<v>[\d.]+)/dist/css/bootstrap\.min\.css$"),
        "bootstrap",
        "css/bootstrap.min.css",
        False,
    ),
    (
        re.compile(r"/bootstrap@(?P<v>[\d.]+)/dist/js/bootstrap\.bundle\.min\.js$"),
        "bootstrap",
        "js/bootstrap.bundle.min.js",
        False,
    ),
)

#: References that no registry package provides; dropped (their features are not used:
#: circle markers replace awesome-markers icons).
_DROPPED = re.compile(r"awesome-markers|bootstrap-glyphicons|leaflet\.awesome\.rotate")

_TAG = re.compile(
    r"""<script\b[^>]*\bsrc=["'](?P<js>(?:https?:)?//[^"']+)["'][^>]*>\s*</script>"""
    r"""|<link\b[^>]*\bhref=["'](?P<css>(?:https?:)?//[^"']+)["'][^>]*>"""
)
_CSS_URL = re.compile(r"""url\(\s*(?P<q>['"]?)(?P<u>[^'")]+)(?P=q)\s*\)""")
_REMOTE = re.compile(
    r"""(?:\b(?:src|href)\s*=\s*\\?["']?|url\(\s*["']?|@import\s+["']?)\s*(?:https?:)?//""",
    re.IGNORECASE,
)
_MIME = {".png": "image/png", ".gif": "image/gif", ".svg": "image/svg+xml", ".woff2": "font/woff2"}


def _data_uri(match: re.Match[str], folder: Path) -> str:
    """A CSS ``url()`` as a data: URI of the packaged file, or an empty data: URI."""
    ref = match["u"].strip()
    if ref.startswith("data:"):
        return match[0]
    target = (folder / ref.split("?")[0].split("#")[0]).resolve()
    mime = _MIME.get(target.suffix.lower())
    if mime is None or not target.is_file():
        return "url(data:,)"  # e.g. .ttf fallbacks after woff2: never fetched
    return f"url(data:{mime};base64,{base64.b64encode(target.read_bytes()).decode('ascii')})"


def _inline_asset(match: re.Match[str], warned: set[str]) -> str:
    """Replace one folium CDN ``<script src>``/``<link href>`` tag by inline content.

    ``warned`` collects the packages whose version mismatch was already logged.
    """
    url = match["js"] or match["css"]
    for pattern, module, filename, required in _ASSETS:
        hit = pattern.search(url)
        if hit is None:
            continue
        try:
            pkg = import_module(f"xstatic.pkg.{module}")
        except ImportError as exc:
            if required:
                raise DataFileError(
                    f"cannot inline {url}: install xstatic-{module.replace('_', '-')} "
                    "or save with self_contained=False"
                ) from exc
            logger.info("dropped %s: xstatic.pkg.%s is not installed", url, module)
            return ""
        if hit["v"] != pkg.VERSION and module not in warned:
            warned.add(module)
            # another major version may break the page: say so; a newer release of the
            # same major version is what the registry has, nothing a user could change
            same_major = hit["v"].split(".")[0] == str(pkg.VERSION).split(".")[0]
            logger.log(
                logging.INFO if same_major else logging.WARNING,
                "folium references %s %s, inlining xstatic %s",
                module,
                hit["v"],
                pkg.VERSION,
            )
        path = Path(pkg.BASE_DIR) / filename.format(f=hit.groupdict().get("f") or "")
        content = path.read_text(encoding="utf-8")
        if match["js"]:
            return "<script>" + re.sub(r"</(script)", r"<\\/\1", content, flags=re.I) + "</script>"
        content = _CSS_URL.sub(functools.partial(_data_uri, folder=path.parent), content)
        return "<style>" + re.sub(r"</(style)", r"<\\/\1", content, flags=re.I) + "</style>"
    if _DROPPED.search(url):
        logger.info("dropped %s: no registry package provides it", url)
        return ""
    return match[0]  # unknown: left in place, so the final check below names it


def save_map(
    m: folium.Map,
    path: str | os.PathLike[str],
    *,
    self_contained: bool = True,
    embed_font: bool = True,
) -> Path:
    """Write a folium map to an HTML file atomically.

    Parameters
    ----------
    m : folium.Map
        The map, e.g. from :func:`coverage_map`.
    path : str or path-like
        Output file; missing parent folders are created.
    self_contained : bool
        True (the default for report maps): every ``<script src>`` and
        ``<link rel=stylesheet href>`` that folium emits is replaced by the file's content
        from the matching PyPI XStatic package (``xstatic-leaflet``, ``xstatic-jquery``,
        ``xstatic-leaflet-markercluster``, ``xstatic-font-awesome``; Bootstrap only if
        ``xstatic-bootstrap`` is installed), CSS ``url()`` images and woff2 fonts become
        data: URIs and other CSS urls are emptied; references no package provides
        (awesome-markers, glyphicons) are dropped. A version differing from folium's
        reference is logged as a warning. The page then loads nothing from the network
        except the tile-layer URL template, if the map has tiles. False writes folium's
        page as is (CDN links).
    embed_font : bool
        True (default): a page with Chinese text carries a subset of a CJK font holding
        just the characters it uses (:func:`circles.fonts.web_font_css`), so its labels
        render on machines without CJK fonts; a warning says so when no CJK font is
        installed here to take the subset from.

    Returns
    -------
    pathlib.Path
        The written file.

    Raises
    ------
    InputDataError
        ``m`` is not a folium map, or a remote reference would remain in the page.
    DataFileError
        A required XStatic package is missing.
    """
    if not isinstance(m, folium.Map):
        raise InputDataError(f"save_map needs a folium.Map, got {type(m).__name__}")
    out = Path(path)
    page = page_html(m, self_contained=self_contained, embed_font=embed_font)
    tmp, out = atomic_path(out)
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(page)
        os.chmod(tmp, 0o644)  # a report page is meant to be shared
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    logger.info("wrote %s (%.1f MB)", out, out.stat().st_size / 1e6)
    return out


def page_html(m: folium.Map, *, self_contained: bool = True, embed_font: bool = True) -> str:
    """The map's HTML page as :func:`save_map` writes it (see there for the options)."""
    if not isinstance(m, folium.Map):
        raise InputDataError(f"page_html needs a folium.Map, got {type(m).__name__}")
    page = m.get_root().render()
    if not re.search(r"<meta[^>]+charset=[\"']?utf-8", page, flags=re.I):
        page = re.sub(r"<head>", '<head>\n<meta charset="utf-8" />', page, count=1)
    if self_contained:
        # Check the page without the vendored library code (whose only URLs are
        # hyperlinks such as Leaflet's attribution), then inline.
        remote = _remote_references(_TAG.sub(lambda t: "" if _tag_known(t) else t[0], page))
        if remote:
            raise InputDataError(
                f"the page still references the network ({len(remote)} src/href/url, e.g. "
                f"{remote[0]!r}); remove the element or save with self_contained=False"
            )
        page = _TAG.sub(functools.partial(_inline_asset, warned=set()), page)
    if embed_font:
        page = fonts.embed_in_page(page)
    return page


class InlineMap:
    """A self-contained map page shown inside a notebook (an ``<iframe srcdoc>``).

    folium's own notebook display loads Leaflet from a CDN and stays blank offline; this
    one carries the whole page (Leaflet inlined, see :func:`save_map`).

    Attributes
    ----------
    page : str
        The HTML page.
    height_px : int
        Height of the frame in the notebook.
    """

    def __init__(self, page: str, height_px: int = 600) -> None:
        self.page = page
        self.height_px = int(height_px)

    def _repr_html_(self) -> str:
        doc = html.escape(self.page, quote=True)
        return (
            f'<iframe srcdoc="{doc}" style="width:100%;height:{self.height_px}px;border:0" '
            'sandbox="allow-scripts allow-popups"></iframe>'
        )


def inline(map_or_page: folium.Map | str | os.PathLike[str], *, height_px: int = 600) -> InlineMap:
    """A map to show in a notebook that works offline.

    Parameters
    ----------
    map_or_page : folium.Map or path-like
        A map (e.g. from :func:`coverage_map`), made self-contained here, or a page
        written by :func:`save_map` or a run (``result.outputs["map_html"]``).
    height_px : int, default 600
        Height of the frame in the notebook.
    """
    if isinstance(map_or_page, folium.Map):
        return InlineMap(page_html(map_or_page), height_px)
    path = Path(map_or_page)
    if not path.is_file():
        raise InputDataError(f"{path}: no such map page; pass a folium.Map or a saved page")
    return InlineMap(path.read_text(encoding="utf-8"), height_px)


_REMOTE_BEFORE = re.compile(
    r"""(?:\b(?:src|href)\s*=\s*\\?["']?|url\(\s*["']?|@import\s+["']?)\s*(?:https?:)?\Z""",
    re.IGNORECASE,
)


def _remote_references(page: str) -> list[str]:
    """What :data:`_REMOTE` finds, found fast: look only at the text before each ``//``.

    Scanning a multi-megabyte page with :data:`_REMOTE` tries the pattern at every
    position; ``//`` is rare outside URLs, so checking the 40 characters before each one
    finds the same references in a fraction of the time.
    """
    found = []
    start = page.find("//")
    while start != -1:
        head = page[max(0, start - 40) : start]
        hit = _REMOTE_BEFORE.search(head)
        if hit is not None:
            found.append(hit[0] + "//")
        start = page.find("//", start + 2)
    return found


def _tag_known(match: re.Match[str]) -> bool:
    """Whether a CDN tag is one that :func:`_inline_asset` inlines or drops."""
    url = match["js"] or match["css"]
    return bool(_DROPPED.search(url)) or any(p.search(url) for p, *_ in _ASSETS)
