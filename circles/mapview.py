"""What makes the coverage map explain itself: the page's behaviour and shared data.

:func:`circles.maps.coverage_map` draws the layers; this module adds, as one element
(:class:`MapView`) with one JSON data block and one script:

- **one community layer for every category**: each community's outline is in the page
  once, with its fill, flag, popup and tooltip per category; switching the category
  (the radio buttons of the layer control) restyles it;
- a **map title** (study, category, date) and a **legend** that name the category shown;
- the **flagged list** of the category shown only;
- **isochrones on click**: clicking a community draws its own 5/10/15-minute walking
  isochrones (and nobody else's);
- **streets by walking minutes** to the category's nearest facility (the ``edges``
  layer, drawn on a canvas from one shared vertex table and one class string per
  category);
- a **north arrow** and a **metric-only scale bar**.

All text reaching the page is escaped by the caller (:func:`circles.maps._esc`) and the
JSON is made safe for a ``<script>`` element (``</`` cannot close it).
"""

from __future__ import annotations

import html
import json
import math
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import branca.element
import folium.plugins
import geopandas as gpd
import numpy as np
import shapely

from circles._errors import InputDataError
from circles.palette import FLAG_COLOUR, NO_DATA_COLOUR, SHARE_BREAKS, SHARE_COLOURS, level_colours
from circles.streets import level_classes

__all__ = [
    "LEAN_MARKERS_ABOVE",
    "TEXT",
    "MapView",
    "StreetData",
    "esc",
    "lean_markers",
    "legend_html",
    "street_data",
    "street_layer",
]


def esc(value: Any) -> str:
    """Escape a data value for HTML that folium may place inside a JS template literal.

    ``html.escape`` handles ``& < > " '``; backticks, ``$`` and backslashes are replaced
    by character references too, so the text can neither close folium's backtick strings
    nor start a ``${...}`` substitution. NaN/None become an empty string.
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    text = html.escape(str(value), quote=True)
    return text.replace("\\", "&#92;").replace("`", "&#96;").replace("$", "&#36;")


#: The map's words in English and Chinese.
TEXT: Mapping[str, Mapping[str, str]] = {
    "en": {
        "legend": "Residents within a {m}-minute walk",
        "no_data": "no data",
        "flagged": "Flagged communities ({m}-minute share below target)",
        "none": "none",
        "id": "id",
        "basis": "residents basis",
        "share": "share within {m} min",
        "median": "median walk",
        "p90": "90th percentile walk",
        "flag": "flagged",
        "yes": "yes",
        "no": "no",
        "min": "min",
        "beyond": "beyond cut-off",
        "isochrones": "Walking isochrones",
        "minutes": "minutes",
        "area": "area",
        "tiles": "Base map (OpenStreetMap)",
        "facility": "facility",
        "category": "category",
        "source": "source",
        "status": "status",
        "snap": "snap distance",
        "lean": "many facilities: details in circles.gpkg, layer facilities",
        "entries": "entries (inside nodes)",
        "community": "community",
        "lang": "en",
        "page_title": "{study}: walking access to community services ({date})",
        "title": "{m}-minute walk",
        "legend_cat": "Residents within a {m}-minute walk",
        "streets": "Streets by walking minutes",
        "streets_legend": "Streets: walking minutes to the nearest {label}",
        "colon": ": ",
        "within": "≤ {hi} min",
        "between": "{lo}–{hi} min",
        "beyond_level": "> {lo} min or out of reach",
        "iso_hint": "Click a community to see its own {levels}-minute walks",
        "iso_of": "Walking isochrones of {name} ({levels} min)",
        "iso_none": "No walking isochrones for this community",
        "clear": "clear",
        "north": "N",
        "m": "m",
        "km": "km",
        "speed_flag": "flag over the walking-speed band",
        "robust": "robust",
        "fragile": "fragile: not flagged from {v} m/s",
        "speed_share": "share at the slowest / fastest speed",
    },
    "zh": {
        "legend": "{m}分钟步行可达居民比例",
        "no_data": "无数据",
        "flagged": "未达标社区（{m}分钟覆盖率低于目标）",
        "none": "无",
        "id": "编号",
        "basis": "居民计算依据",
        "share": "{m}分钟可达比例",
        "median": "步行时间中位数",
        "p90": "步行时间90分位",
        "flag": "未达标",
        "yes": "是",
        "no": "否",
        "min": "分钟",
        "beyond": "超出计算范围",
        "isochrones": "步行等时圈",
        "minutes": "分钟",
        "area": "面积",
        "tiles": "底图（OpenStreetMap）",
        "facility": "设施",
        "category": "类别",
        "source": "来源",
        "status": "状态",
        "snap": "吸附距离",
        "lean": "设施较多：详情见 circles.gpkg 的 facilities 图层",
        "entries": "入口（内部节点）",
        "community": "社区",
        "lang": "zh",
        "page_title": "{study}：社区生活圈步行可达性（{date}）",
        "title": "{m}分钟步行",
        "legend_cat": "{m}分钟步行可达居民比例",
        "streets": "街道步行时间",
        "streets_legend": "街道：步行至最近{label}的时间",
        "colon": "：",
        "within": "≤ {hi} 分钟",
        "between": "{lo}–{hi} 分钟",
        "beyond_level": "> {lo} 分钟或不可达",
        "iso_hint": "点击社区查看其{levels}分钟步行等时圈",
        "iso_of": "{name}的步行等时圈（{levels}分钟）",
        "iso_none": "该社区无步行等时圈",
        "clear": "清除",
        "north": "北",
        "m": "米",
        "km": "千米",
        "speed_flag": "步速区间内的标记",
        "robust": "稳定",
        "fragile": "不稳定：步速 {v} m/s 起不再标记",
        "speed_share": "最慢 / 最快步速时的比例",
    },
}

#: Element ids of the parts the page carries.
TITLE_ID = "circles-title"
NORTH_ID = "circles-north"

#: Coordinates of the streets are sent as integers of this many degrees.
_STREET_UNIT_DEG = 1e-6


class _Raw(branca.element.Element):
    """Text added to the page exactly as it is (no template processing)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self._text = text

    def render(self, **kwargs: Any) -> str:
        """The text itself."""
        return self._text


class RawJSON(str):
    """JSON text made by :func:`safe_json`, placed in the page's data as it is (a map
    part kept in the cache: :func:`circles.maps.coverage_map`)."""


def safe_json(doc: Any) -> str:
    """JSON that can sit inside a ``<script>`` element.

    Values of a top-level mapping that are :class:`RawJSON` are inserted as they are.
    """
    raws: dict[str, str] = {}
    if isinstance(doc, Mapping) and any(isinstance(v, RawJSON) for v in doc.values()):
        nonce = uuid.uuid4().hex
        items = {}
        for k, v in doc.items():
            if isinstance(v, RawJSON):
                token = f"circles-raw-{len(raws)}-{nonce}"
                raws[json.dumps(token)] = str(v)
                v = token
            items[k] = v
        doc = items
    text = json.dumps(doc, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    text = text.replace("</", "<\\/").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    for token, raw in raws.items():
        text = text.replace(token, raw, 1)
    return text


class StreetData:
    """Street pieces for the page: a vertex table, piece ends and a class per category.

    Attributes
    ----------
    origin : tuple of int
        ``(lon, lat)`` of the vertex table's origin in millionths of a degree.
    vertices : list of int
        Flat ``[dx, dy, ...]`` offsets from the origin (millionths of a degree).
    pieces : list of int
        Flat ``[a, b, ...]`` vertex positions of each piece's ends.
    classes : dict
        Category -> one digit per piece: its level class (0: within the first level ...
        ``len(levels)``: beyond the last or out of reach).
    """

    def __init__(
        self,
        origin: tuple[int, int],
        vertices: list[int],
        pieces: list[int],
        classes: dict[str, str],
    ) -> None:
        self.origin, self.vertices, self.pieces, self.classes = origin, vertices, pieces, classes

    def doc(self) -> dict[str, Any]:
        """The JSON document of the page's street data."""
        return {
            "origin": list(self.origin),
            "vertices": self.vertices,
            "pieces": self.pieces,
            "classes": self.classes,
        }


def street_data(
    coords: np.ndarray, classes: Mapping[str, np.ndarray], *, n_levels: int
) -> StreetData:
    """:class:`StreetData` of pieces with ends ``coords`` (``(n, 2, 2)`` lon/lat).

    Parameters
    ----------
    coords : numpy.ndarray
        ``(n_pieces, 2, 2)``: each piece's start and end ``(lon, lat)`` in degrees.
    classes : mapping
        Category -> ``(n_pieces,)`` level class (:func:`circles.streets.level_classes`).
    n_levels : int
        Number of levels (classes run from 0 to ``n_levels``).
    """
    pts = np.round(np.asarray(coords, dtype=float).reshape(-1, 2) / _STREET_UNIT_DEG)
    pts = pts.astype(np.int64)
    if pts.size == 0:
        return StreetData((0, 0), [], [], {c: "" for c in classes})
    origin = pts.min(axis=0)
    uniq, inverse = np.unique(pts - origin, axis=0, return_inverse=True)
    if n_levels > 9:
        raise InputDataError("the map draws streets for at most 9 levels")
    out = {}
    for cat, cls in classes.items():
        arr = np.asarray(cls, dtype=np.int64)
        if arr.shape != (pts.shape[0] // 2,):
            raise InputDataError(f"street classes of {cat!r} do not match the pieces")
        out[cat] = "".join(map(str, np.clip(arr, 0, n_levels).tolist()))
    return StreetData(
        (int(origin[0]), int(origin[1])),
        uniq.ravel().tolist(),
        inverse.ravel().tolist(),
        out,
    )


class MapView(branca.element.MacroElement):
    """The page's title, legend, flagged list, isochrones on click, streets and controls.

    Parameters
    ----------
    data : dict
        Everything the script needs (see :func:`circles.maps.coverage_map`): categories,
        opening category, the category layers' JavaScript names, the communities'
        GeoJSON with per-category styles and popups, isochrones per community, street
        data, colours and texts (already escaped).
    css : str
        Extra CSS for the page.
    """

    def __init__(self, data: Mapping[str, Any], css: str = "") -> None:
        super().__init__()
        self._name = "CirclesView"
        self.data = dict(data)
        self.css = css

    def render(self, **kwargs: Any) -> str:
        """Add the data, the CSS and the script to the figure (verbatim)."""
        figure = self.get_root()
        if not isinstance(figure, branca.element.Figure):
            raise InputDataError("a map element can only be rendered inside a folium map")
        parent = self._parent
        if parent is None:
            raise InputDataError("add the MapView to a map before rendering it")
        figure.header.add_child(_Raw(f"<style>{self.css}</style>"), name=self.get_name() + "_css")
        # folium declares layers with `var` and the layer control with `let`: refer to
        # them by name in the same script (names are folium's identifiers)
        links = "".join(
            f"byLayer[L.stamp({var})] = {json.dumps(cat)};\n"
            for var, cat in self.data["groups"].items()
        )
        control = self.data.get("control")
        script = (
            f"(function() {{\nconst D = {safe_json(self.data)};\n"
            f"const map = {parent.get_name()};\n"
            f"const control = {control if control else 'null'};\n"
            f"const byLayer = {{}};\n{links}{_SCRIPT}\n}})();"
        )
        figure.script.add_child(_Raw(script), name=self.get_name())
        return ""


_SCRIPT = r"""
const index = {};
D.categories.forEach((c, i) => { index[c] = i; });
let current = D.opening;

map.createPane('circles-communities').style.zIndex = 350;
const streetPane = map.createPane('circles-streets');
streetPane.style.zIndex = 380;
streetPane.style.pointerEvents = 'none';
const canvas = L.canvas({pane: 'circles-streets', padding: 0.2});

function popupOf(p) {  // mirrors popup_html() in circles/mapview.py; texts pre-escaped
  const i = index[current];
  const labs = [...D.text.popupCommon, ...D.text.popupRows[i]];
  const vals = [p.id, p.basis, ...p.popup[i]];
  const rows = labs.map((k, n) => `<tr><th>${k}</th><td>${vals[n]}</td></tr>`).join('');
  const title = D.labels[D.categories[i]];
  return `<b>${p.name}</b> · ${title}<table class='circles-popup'>${rows}</table>`;
}
function styleOf(feature) {
  const i = index[current];
  const p = feature.properties;
  const s = {fillColor: p.fill[i], fillOpacity: 0.6, color: '#555', weight: 1, dashArray: null};
  if (p.flag[i]) Object.assign(s, D.flagStyle);
  return s;
}
const communities = L.geoJSON(D.communities, {
  pane: 'circles-communities',
  style: styleOf,
  pointToLayer: (f, latlng) => L.circleMarker(latlng, {radius: 6, pane: 'circles-communities'}),
  onEachFeature: (f, layer) => {
    layer.bindPopup(() => popupOf(f.properties), {maxWidth: 320});
    layer.bindTooltip(() => f.properties.tooltip[index[current]], {sticky: true});
    layer.on('click', () => showIsochrones(f.properties.id, f.properties.name));
  },
}).addTo(map);
window.circlesCommunities = communities;

// isochrones of the community clicked
const isoLayer = L.layerGroup().addTo(map);
function isoFeature(f) {  // decodes encode_rings() in circles/mapview.py
  const u = D.isoUnit;
  const polys = f.p.map(poly => poly.map(r => {
    const out = [];
    let x = 0, y = 0;
    for (let k = 0; k < r.length; k += 2) { x += r[k]; y += r[k + 1]; out.push([x * u, y * u]); }
    return out;
  }));
  return {type: 'Feature', geometry: {type: 'MultiPolygon', coordinates: polys},
          properties: {m: f.m}};
}
if (control) control.addOverlay(isoLayer, D.text.isochrones);
function showIsochrones(id, name) {
  isoLayer.clearLayers();
  const rings = D.isochrones[id];
  const note = document.getElementById('circles-iso-note');
  if (!rings || !rings.length) {
    if (note) note.innerHTML = D.text.isoNone;
    return;
  }
  L.geoJSON({type: 'FeatureCollection', features: rings.map(isoFeature)}, {
    interactive: false,
    style: f => ({color: D.isoColours[f.properties.m] || '#888', weight: 2,
                  fillColor: D.isoColours[f.properties.m] || '#888', fillOpacity: 0.12}),
  }).addTo(isoLayer);
  if (!map.hasLayer(isoLayer)) map.addLayer(isoLayer);
  if (note) note.innerHTML = D.text.isoOf.replace('{name}', name);
  window.circlesIsochronesShown = id;
}
document.addEventListener('click', e => {
  if (e.target && e.target.id === 'circles-iso-clear') {
    e.preventDefault();
    isoLayer.clearLayers();
    const note = document.getElementById('circles-iso-note');
    if (note) note.innerHTML = D.text.isoHint;
    window.circlesIsochronesShown = null;
  }
});

// streets coloured by walking minutes to the category shown
const streets = L.layerGroup();
let streetParts = null;
function decodeStreets() {
  const S = D.streets, v = S.vertices, o = S.origin, u = D.streetUnit;
  const lat = new Float64Array(v.length / 2), lon = new Float64Array(v.length / 2);
  for (let i = 0; i < lat.length; i++) {
    lon[i] = (o[0] + v[2 * i]) * u;
    lat[i] = (o[1] + v[2 * i + 1]) * u;
  }
  return {lat: lat, lon: lon};
}
function drawStreets() {
  streets.clearLayers();
  if (!D.streets || !map.hasLayer(streets)) return;
  if (!streetParts) streetParts = decodeStreets();
  const cls = D.streets.classes[current] || '';
  const groups = D.streetColours.map(() => []);
  const p = D.streets.pieces, lat = streetParts.lat, lon = streetParts.lon;
  for (let k = 0; k < cls.length; k++) {
    const a = p[2 * k], b = p[2 * k + 1];
    groups[+cls[k]].push([[lat[a], lon[a]], [lat[b], lon[b]]]);
  }
  for (let c = groups.length - 1; c >= 0; c--) {
    if (!groups[c].length) continue;
    L.polyline(groups[c], {renderer: canvas, pane: 'circles-streets', interactive: false,
      color: D.streetColours[c], weight: c < groups.length - 1 ? 2.2 : 1.2, opacity: 0.9,
    }).addTo(streets);
  }
  window.circlesStreetClasses = groups.map(g => g.length);
}
if (D.streets) {
  if (control) control.addOverlay(streets, D.text.streets);
  streets.on('add', drawStreets);
  if (D.streetsShown) streets.addTo(map);
}

function select(cat) {
  if (!(cat in index)) return;
  current = cat;
  communities.setStyle(styleOf);
  map.closePopup();
  document.querySelectorAll('.circles-category-label').forEach(el => {
    el.innerHTML = D.labels[cat];
  });
  document.querySelectorAll('.circles-flagged-category').forEach(el => {
    el.style.display = el.dataset.category === cat ? '' : 'none';
  });
  if (map.hasLayer(streets)) drawStreets();
  window.circlesCategory = cat;
}
map.on('baselayerchange', e => select(byLayer[L.stamp(e.layer)]));
select(current);

// north arrow and a metric-only scale
const North = L.Control.extend({
  options: {position: 'topleft'},
  onAdd: () => {
    const el = L.DomUtil.create('div', 'circles-panel circles-north');
    el.id = D.northId;
    el.innerHTML = D.north;
    return el;
  },
});
new North().addTo(map);
// Leaflet writes 'm' and 'km' itself: the scale in the page's words (metres, kilometres)
const Scale = L.Control.Scale.extend({
  _updateMetric(maxMeters) {
    const m = this._getRoundNum(maxMeters), u = D.text.units || ['m', 'km'];
    this._updateScale(this._mScale, m < 1000 ? `${m} ${u[0]}` : `${m / 1000} ${u[1]}`,
      m / maxMeters);
  },
});
new Scale({metric: true, imperial: false, position: 'bottomleft'}).addTo(map);
// the data's credit, with or without the base map (Leaflet shows one text once)
if (map.attributionControl) map.attributionControl.addAttribution('© OpenStreetMap contributors');
if (D.bounds) map.fitBounds(D.bounds, {padding: [12, 12], animate: false});
"""


def popup_html(data: Mapping[str, Any], feature: Mapping[str, Any], index: int) -> str:
    """A community's popup for category ``index``, as the page's ``popupOf`` builds it.

    The page sends each label once per category (``text.popupRows``) and each
    community's values (``properties.popup``), all escaped in Python, and joins them in
    the browser; this is the same join, for tests and notebooks.
    """
    p = feature["properties"]
    labs = [*data["text"]["popupCommon"], *data["text"]["popupRows"][index]]
    vals = [p["id"], p["basis"], *p["popup"][index]]
    rows = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in zip(labs, vals, strict=True))
    title = data["labels"][data["categories"][index]]
    return f"<b>{p['name']}</b> · {title}<table class='circles-popup'>{rows}</table>"


#: Isochrone vertices on the page: whole multiples of this many degrees (about 1 m; the
#: GeoPackage keeps them exact).
ISO_UNIT_DEG = 1e-5


def encode_rings(geom: Any, *, unit_deg: float = ISO_UNIT_DEG) -> list[list[list[int]]]:
    """A (Multi)Polygon in EPSG:4326 as compact integer rings for the page.

    Parameters
    ----------
    geom : shapely.Polygon or shapely.MultiPolygon
        Lon/lat degrees.
    unit_deg : float, optional
        Degrees per integer step (default :data:`ISO_UNIT_DEG`, about 1 m).

    Returns
    -------
    list
        Per polygon, per ring (exterior first), the flat list ``[x0, y0, dx1, dy1, ...]``:
        the first vertex in whole units, then each vertex's offset from the one before.
        Repeated vertices after rounding are dropped, and so are rings left with fewer
        than four (a polygon whose outline goes, with its holes).
    """
    return encode_rings_of(np.array([geom], dtype=object), unit_deg=unit_deg)[0]


def encode_rings_of(geoms: Any, *, unit_deg: float = ISO_UNIT_DEG) -> list[list[list[list[int]]]]:
    """:func:`encode_rings` of each of ``geoms`` (an array of (Multi)Polygons, None or
    empty for none), all rings at once: a county's 2,133 isochrones in a tenth of the
    time of one ring at a time."""
    geoms = np.asarray(geoms, dtype=object)
    polys, owner = shapely.get_parts(geoms, return_index=True)
    rings, ring_poly = shapely.get_rings(polys, return_index=True)  # exterior first
    xy, ring_of = shapely.get_coordinates(rings, return_index=True)
    c = np.round(xy / unit_deg).astype(np.int64)
    # drop vertices repeated after rounding (never a ring's first)
    keep = np.ones(len(c), dtype=bool)
    keep[1:] = np.any(c[1:] != c[:-1], axis=1) | (ring_of[1:] != ring_of[:-1])
    c, ring_of = c[keep], ring_of[keep]
    n_rings = len(rings)
    count = np.bincount(ring_of, minlength=n_rings)
    first = np.zeros(n_rings + 1, dtype=np.int64)
    np.cumsum(count, out=first[1:])
    d = c.copy()
    d[1:] -= c[:-1]
    d[first[:-1][count > 0]] = c[first[:-1][count > 0]]  # each ring starts in whole units
    flat = d.ravel().tolist()
    # a ring counts with four vertices or more; a polygon whose exterior does not, goes
    ok = count >= 4
    is_exterior = np.ones(n_rings, dtype=bool)
    is_exterior[1:] = ring_poly[1:] != ring_poly[:-1]
    poly_ok = np.zeros(len(polys), dtype=bool)
    poly_ok[ring_poly[is_exterior & ok]] = True
    out: list[list[list[list[int]]]] = [[] for _ in range(len(geoms))]
    per_poly: list[list[list[int]]] = [[] for _ in range(len(polys))]
    for r in np.flatnonzero(ok & poly_ok[ring_poly]).tolist():
        per_poly[ring_poly[r]].append(flat[2 * first[r] : 2 * first[r + 1]])
    for p in np.flatnonzero(poly_ok).tolist():
        out[owner[p]].append(per_poly[p])
    return out


def view_data(
    *,
    categories: Sequence[str],
    opening: str,
    labels: Mapping[str, str],
    groups: Mapping[str, str],
    control: str | None,
    communities: dict[str, Any],
    isochrones: Mapping[str, list[dict[str, Any]]] | RawJSON,
    iso_colours: Mapping[int, str],
    streets: StreetData | None,
    street_colours: Sequence[str],
    streets_shown: bool,
    flag_style: Mapping[str, Any],
    texts: Mapping[str, Any],
    north_html: str,
    bounds: list[list[float]] | None,
) -> dict[str, Any]:
    """The data document of :class:`MapView` (every text already escaped)."""
    if opening not in categories:
        raise InputDataError(f"the opening category {opening!r} is not among {categories}")
    return {
        "categories": list(categories),
        "opening": opening,
        "labels": dict(labels),
        "groups": dict(groups),
        "control": control,
        "communities": communities,
        "isochrones": isochrones if isinstance(isochrones, RawJSON) else dict(isochrones),
        "isoColours": {str(k): v for k, v in iso_colours.items()},
        "streets": streets.doc() if streets is not None else None,
        "streetUnit": _STREET_UNIT_DEG,
        "isoUnit": ISO_UNIT_DEG,
        "streetColours": list(street_colours),
        "streetsShown": bool(streets_shown),
        "flagStyle": dict(flag_style),
        "text": dict(texts),
        "north": north_html,
        "northId": NORTH_ID,
        "bounds": bounds,
    }


def legend_html(
    text: Mapping[str, str],
    category: str,
    levels: Sequence[float],
    streets: bool,
    level_txt: str,
) -> str:
    """The legend: the category and share classes, streets by minutes, flags, isochrones.

    ``category`` is escaped already; the view updates ``.circles-category-label`` when
    another category is shown.
    """
    swatch = "display:inline-block;width:14px;height:10px;border:1px solid #555;margin-right:4px"
    rows = [
        f"<div class='circles-legend-head'><b class='circles-category-label'>{category}</b>"
        f"<br><b>{esc(text['legend'])}</b></div>"
    ]
    for lo, hi, colour in zip(SHARE_BREAKS[:-1], SHARE_BREAKS[1:], SHARE_COLOURS, strict=True):
        label = f"{lo:.1f}–{hi:.1f} ({100 * lo:.0f}–{100 * hi:.0f}%)"
        rows.append(
            f"<div class='circles-legend-class' data-lower='{lo}' data-upper='{hi}'>"
            f"<span style='{swatch};background:{colour}'></span>{label}</div>"
        )
    rows.append(
        f"<div class='circles-legend-class'><span style='{swatch};background:{NO_DATA_COLOUR}'>"
        f"</span>{esc(text['no_data'])}</div>"
        f"<div><span style='display:inline-block;width:14px;height:0;"
        f"border-top:3px dashed {FLAG_COLOUR};margin-right:4px'></span>"
        f"{esc(text['flag'])}</div>"
    )
    if streets:
        colours = level_colours(len(levels))
        rows.append(
            "<div class='circles-legend-section' id='circles-legend-streets'>"
            "<b>"
            + esc(text["streets_legend"]).replace(
                "{label}", f"<span class='circles-category-label'>{category}</span>"
            )
            + "</b></div>"
        )
        bounds = [0.0, *levels]
        for k, colour in enumerate(colours):
            if k == 0:
                what = text["within"].format(hi=f"{bounds[1]:g}")
            elif k < len(levels):
                what = text["between"].format(lo=f"{bounds[k]:g}", hi=f"{bounds[k + 1]:g}")
            else:
                what = text["beyond_level"].format(lo=f"{bounds[-1]:g}")
            rows.append(
                f"<div class='circles-legend-street'><span style='display:inline-block;"
                f"width:16px;height:0;border-top:3px solid {colour};margin-right:4px;"
                f"vertical-align:middle'></span>{esc(what)}</div>"
            )
    rows.append(
        f"<div class='circles-legend-section'><span id='circles-iso-note'>"
        f"{esc(text['iso_hint'].format(levels=level_txt))}</span> "
        f"<a href='#' id='circles-iso-clear'>{esc(text['clear'])}</a></div>"
    )
    return "".join(rows)


def street_layer(
    edges: gpd.GeoDataFrame, cats: Sequence[str], levels: Sequence[float]
) -> StreetData:
    """The map's street data from the ``edges`` layer (:mod:`circles.streets`)."""
    lines = edges if edges.crs is None or edges.crs.equals("EPSG:4326") else edges.to_crs(4326)
    missing = [f"{c}_min" for c in cats if f"{c}_min" not in lines]
    if missing:
        raise InputDataError(f"edges lacks column(s) {missing}; pass the study's edges layer")
    geoms = np.asarray(lines.geometry.array, dtype=object)
    n_coords = shapely.get_num_coordinates(geoms)
    if len(geoms) and not (n_coords == 2).all():
        raise InputDataError("edges must be straight two-point pieces (the streets stage's layer)")
    coords = shapely.get_coordinates(geoms).reshape(-1, 2, 2)
    classes = {c: level_classes(lines[f"{c}_min"], levels) for c in cats}
    return street_data(coords, classes, n_levels=len(levels))


NORTH_HTML = (
    "<svg width='22' height='34' viewBox='0 0 22 34' aria-hidden='true'>"
    "<polygon points='11,2 19,24 11,19 3,24' fill='#222'/></svg>"
    "<div style='text-align:center;font-weight:bold;line-height:1'>{n}</div>"
)

VIEW_CSS = (
    ".circles-north{padding:2px 4px;text-align:center;position:static!important}"
    ".circles-popup th{text-align:left;padding-right:6px}"
    "#circles-title{white-space:nowrap;max-width:70vw;overflow:hidden;text-overflow:ellipsis}"
    ".circles-legend-section{margin-top:4px}"
)


#: A category with more facilities than this is drawn as lean clustered markers
#: (:func:`lean_markers`): one short row per facility and a popup with its name only, so
#: 100,000 facilities make a page of about 7 MB instead of over 100 MB.
LEAN_MARKERS_ABOVE = 2000


def lean_markers(facilities: gpd.GeoDataFrame, *, colour: str, subtitle: str, name: str) -> Any:
    """Many facilities as clustered circle markers built in the browser.

    A ``folium.plugins.FastMarkerCluster`` (Leaflet.markercluster, inlined with the
    page like every other asset): each facility is one row ``[lat, lon, title, s]``
    (coordinates to 1e-6 degrees; the title its escaped name, or its id; ``s`` 1 when
    on the network, 0 drawn grey), and its popup shows the title and ``subtitle`` (e.g.
    the category), with no table and no tooltip.

    Parameters
    ----------
    facilities : geopandas.GeoDataFrame
        Points in EPSG:4326 with ``facility_id``, ``name`` and ``status``.
    colour : str
        The category's colour (``#rrggbb``) of the facilities on the network.
    subtitle : str
        Escaped HTML (:func:`esc`) under every title.
    name : str
        The layer's name.

    Returns
    -------
    folium.plugins.FastMarkerCluster
    """
    fac = facilities
    titles = [esc(n) or esc(i) for n, i in zip(fac["name"], fac["facility_id"], strict=True)]
    snapped = (fac["status"].astype(str) == "snapped").to_numpy()
    xy = shapely.get_coordinates(fac.geometry.to_numpy())
    lon, lat = xy[:, 0], xy[:, 1]
    rows = [
        [round(float(y), 6), round(float(x), 6), str(t), int(bool(s))]
        for y, x, t, s in zip(lat, lon, titles, snapped, strict=True)
    ]
    callback = (
        "function (row) {"
        " var m = L.circleMarker(new L.LatLng(row[0], row[1]), {radius: 5, color: '#222',"
        f" weight: 1, fillOpacity: 0.9, fillColor: row[3] ? {safe_json(colour)} : '#9e9e9e'}});"
        f" m.bindPopup('<b>' + row[2] + '</b><br>' + {safe_json(subtitle)});"
        " return m; }"
    )
    return folium.plugins.FastMarkerCluster(rows, callback=callback, name=name, control=False)
