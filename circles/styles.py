"""QGIS styles embedded in the GeoPackage, so that it opens styled.

QGIS keeps a layer's style in a GeoPackage's ``layer_styles`` table (Layer Properties >
Style > Save to datasource writes it there; opening the layer applies the row marked
``useAsDefault``). :func:`write_styles` writes that table the way QGIS itself does
(the same columns, registered in ``gpkg_contents`` as attributes), with QML documents
built here:

- ``communities``: one style per category, the default one the first category that has
  facilities (fitness first): fill by the share of residents within the largest level
  in the classes and colours of the HTML map (:mod:`circles.palette`), communities
  without data grey, flagged communities outlined in thick red dashes, labelled with
  their names;
- ``edges``: one style per category, streets coloured by ``<category>_min`` in the
  walking levels (5/10/15 minutes, beyond in grey);
- ``facilities``: coloured by category (the map's colours), facilities off the network
  grey;
- ``isochrones`` and ``service_areas``: outlines by minutes.

Other styles are chosen in QGIS from the layer's Style menu (Layer Properties > Style >
Load Style > From database). :func:`check_qml` reads a QML document back and checks what
QGIS needs of it (the renderer, its rules and the symbols they name).
"""

from __future__ import annotations

import sqlite3
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from circles._errors import InputDataError
from circles.cache import digest
from circles.facilities import STATUS_SNAPPED

if TYPE_CHECKING:
    from circles.result import StudyResult

from circles.palette import (
    CATEGORY_COLOURS,
    FLAG_COLOUR,
    NO_DATA_COLOUR,
    SHARE_BREAKS,
    SHARE_COLOURS,
    UNREACHABLE_COLOUR,
    level_colours,
)

__all__ = [
    "QGIS_VERSION",
    "Style",
    "check_qml",
    "opening_category",
    "study_styles",
    "styles_content",
    "write_study_styles",
    "write_styles",
]

#: The QGIS version the QML documents are written for (Debian 12's LTR; later QGIS
#: versions read them too).
QGIS_VERSION = "3.22.16-Białowieża"

#: QGIS's own definition of the table (as QGIS 3.22 creates it in a GeoPackage).
LAYER_STYLES_DDL = (
    'CREATE TABLE "layer_styles" ( "id" INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, '
    '"f_table_catalog" TEXT(256), "f_table_schema" TEXT(256), "f_table_name" TEXT(256), '
    '"f_geometry_column" TEXT(256), "styleName" TEXT(30), "styleQML" TEXT, '
    '"styleSLD" TEXT, "useAsDefault" BOOLEAN, "description" TEXT, "owner" TEXT(30), '
    '"ui" TEXT(30), "update_time" DATETIME DEFAULT '
    "(strftime('%Y-%m-%dT%H:%M:%fZ','now')))"
)

_GEOMETRY_TYPE = {"marker": "0", "line": "1", "fill": "2"}


@dataclass(frozen=True)
class Style:
    """One row of ``layer_styles``.

    Attributes
    ----------
    layer : str
        The GeoPackage layer (table) it styles.
    name : str
        Style name shown in QGIS (at most 30 characters).
    qml : str
        The QML document.
    default : bool
        Applied when the layer is opened.
    description : str
    """

    layer: str
    name: str
    qml: str
    default: bool
    description: str = ""


def _rgba(hex_colour: str, alpha: float = 1.0) -> str:
    h = hex_colour.lstrip("#")
    r, g, b = (int(h[i : i + 2], 16) for i in (0, 2, 4))
    return f"{r},{g},{b},{round(255 * alpha)}"


def _props(layer: ET.Element, props: Mapping[str, str]) -> None:
    """Symbol-layer properties in both forms QGIS 3.22 writes (Option map and prop)."""
    opt = ET.SubElement(layer, "Option", type="Map")
    for k, v in props.items():
        ET.SubElement(opt, "Option", type="QString", name=k, value=v)
    for k, v in props.items():
        ET.SubElement(layer, "prop", k=k, v=v)


def _symbol(symbols: ET.Element, name: str, kind: str, layers: Sequence[tuple[str, dict]]) -> None:
    sym = ET.SubElement(
        symbols, "symbol", type=kind, name=name, alpha="1", clip_to_extent="1", force_rhr="0"
    )
    for cls, props in layers:
        attrs = {"class": cls, "enabled": "1", "locked": "0", "pass": "0"}
        lay = ET.SubElement(sym, "layer", attrib=attrs)
        _props(lay, props)


def _fill(colour: str, *, alpha: float = 0.65, outline: str = "#555555", width: float = 0.26):
    return (
        "SimpleFill",
        {
            "color": _rgba(colour, alpha),
            "style": "solid",
            "outline_color": _rgba(outline),
            "outline_style": "solid",
            "outline_width": f"{width:g}",
            "outline_width_unit": "MM",
            "joinstyle": "bevel",
        },
    )


def _line(colour: str, *, width: float, style: str = "solid", dash: str | None = None):
    props = {
        "line_color": _rgba(colour),
        "line_style": style,
        "line_width": f"{width:g}",
        "line_width_unit": "MM",
        "capstyle": "round",
        "joinstyle": "round",
    }
    if dash is not None:
        props.update({"use_custom_dash": "1", "customdash": dash, "customdash_unit": "MM"})
    return ("SimpleLine", props)


def _marker(colour: str, *, size: float = 2.4):
    return (
        "SimpleMarker",
        {
            "name": "circle",
            "color": _rgba(colour),
            "outline_color": "34,34,34,255",
            "outline_style": "solid",
            "outline_width": "0.2",
            "outline_width_unit": "MM",
            "size": f"{size:g}",
            "size_unit": "MM",
        },
    )


def _document(kind: str, *, labels: str | None = None) -> tuple[ET.Element, ET.Element]:
    root = ET.Element(
        "qgis",
        version=QGIS_VERSION,
        styleCategories="Symbology|Labeling",
        labelsEnabled="1" if labels else "0",
    )
    renderer = ET.SubElement(
        root,
        "renderer-v2",
        type="RuleRenderer",
        symbollevels="0",
        enableorderby="0",
        forceraster="0",
        referencescale="-1",
    )
    if labels:
        lab = ET.SubElement(root, "labeling", type="simple")
        settings = ET.SubElement(lab, "settings", calloutType="simple")
        style = ET.SubElement(
            settings,
            "text-style",
            fieldName=labels,
            isExpression="0",
            fontSize="8",
            fontSizeUnit="Point",
            textColor="40,40,40,255",
            fontFamily="Noto Sans CJK SC",
            namedStyle="Regular",
        )
        ET.SubElement(
            style,
            "text-buffer",
            bufferDraw="1",
            bufferSize="0.8",
            bufferSizeUnits="MM",
            bufferColor="255,255,255,200",
        )
        ET.SubElement(settings, "placement", placement="1" if kind == "fill" else "0")
    ET.SubElement(root, "layerGeometryType").text = _GEOMETRY_TYPE[kind]
    return root, renderer


def _rules(
    renderer: ET.Element, kind: str, rules: Sequence[tuple[str, str, tuple[str, dict]]]
) -> None:
    """``(label, filter expression, symbol layer)`` rules; an empty filter is ELSE."""
    parent = ET.SubElement(renderer, "rules", key="{root}")
    symbols = ET.SubElement(renderer, "symbols")
    for i, (label, expr, layer) in enumerate(rules):
        attrs = {"key": f"{{rule-{i}}}", "symbol": str(i), "label": label}
        attrs["filter"] = expr or "ELSE"
        ET.SubElement(parent, "rule", attrib=attrs)
        _symbol(symbols, str(i), kind, [layer])


def _serialise(root: ET.Element) -> str:
    ET.indent(root)
    return (
        "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n"
        + ET.tostring(root, encoding="unicode")
        + "\n"
    )


def _q(field: str) -> str:
    return '"' + field.replace('"', '""') + '"'


def communities_qml(
    category: str, *, top_level: str, lang: str = "en", label: str | None = None
) -> str:
    """Communities by ``<category>_share_<top_level>`` and flagged outlines."""
    share, flag = _q(f"{category}_share_{top_level}"), _q(f"{category}_flag")
    root, renderer = _document("fill", labels="name")
    rules = []
    for j, (lo, hi, colour) in enumerate(
        zip(SHARE_BREAKS[:-1], SHARE_BREAKS[1:], SHARE_COLOURS, strict=True)
    ):
        upper = f"{share} <= {hi}" if j == len(SHARE_COLOURS) - 1 else f"{share} < {hi}"
        cond = f"{share} >= {lo} AND {upper}"
        rules.append((f"{100 * lo:.0f}–{100 * hi:.0f}%", cond, _fill(colour)))
    no_data = "无数据" if lang == "zh" else "no data"
    rules.append((no_data, f"{share} IS NULL", _fill(NO_DATA_COLOUR)))
    flagged = "未达标" if lang == "zh" else "flagged"
    rules.append(
        (
            flagged,
            f"{flag} = 1",
            (
                "SimpleFill",
                {
                    "color": "0,0,0,0",
                    "style": "no",
                    "outline_color": _rgba(FLAG_COLOUR),
                    "outline_style": "dash",
                    "outline_width": "0.9",
                    "outline_width_unit": "MM",
                    "joinstyle": "bevel",
                },
            ),
        )
    )
    _rules(renderer, "fill", rules)
    return _serialise(root)


def edges_qml(category: str, *, levels_minutes: Sequence[float], lang: str = "en") -> str:
    """Streets by ``<category>_min`` in the walking levels."""
    field = _q(f"{category}_min")
    colours = level_colours(len(levels_minutes))
    unit = "分钟" if lang == "zh" else "min"
    root, renderer = _document("line")
    rules = []
    lo = 0.0
    for lev, colour in zip(levels_minutes, colours, strict=False):
        cond = f"{field} <= {float(lev):g}" + (f" AND {field} > {lo:g}" if lo > 0 else "")
        rules.append((f"{lo:g}–{float(lev):g} {unit}", cond, _line(colour, width=0.5)))
        lo = float(lev)
    beyond = f"> {lo:g} {unit}" + ("或不可达" if lang == "zh" else " or out of reach")
    rules.append((beyond, "", _line(colours[-1], width=0.3)))
    _rules(renderer, "line", rules)
    return _serialise(root)


def facilities_qml(categories: Sequence[str], labels: Mapping[str, str]) -> str:
    """Facilities by category; those not on the network grey."""
    root, renderer = _document("marker")
    rules = [
        ("not on the network", "\"status\" <> 'snapped'", _marker(UNREACHABLE_COLOUR, size=2.0))
    ]
    for i, cat in enumerate(categories):
        quoted = cat.replace("'", "''")
        rules.append(
            (
                labels.get(cat, cat),
                f"\"category\" = '{quoted}' AND \"status\" = 'snapped'",
                _marker(CATEGORY_COLOURS[i % len(CATEGORY_COLOURS)]),
            )
        )
    _rules(renderer, "marker", rules)
    return _serialise(root)


def rings_qml(levels_minutes: Sequence[float]) -> str:
    """Isochrones or service areas: outlines by ``minutes``, the smallest on top."""
    root, renderer = _document("fill")
    colours = level_colours(len(levels_minutes))
    rules = [
        (
            f"{float(lev):g} min",
            f'"minutes" = {float(lev):g}',
            _fill(colour, alpha=0.12, outline=colour, width=0.5),
        )
        for lev, colour in zip(levels_minutes, colours, strict=False)
    ]
    _rules(renderer, "fill", rules)
    return _serialise(root)


def study_styles(
    categories: Sequence[str],
    labels: Mapping[str, Mapping[str, str]],
    *,
    levels_minutes: Sequence[float],
    lang: str,
    default_category: str,
    layers: Sequence[str],
) -> list[Style]:
    """The styles of a study's GeoPackage.

    Parameters
    ----------
    categories : sequence of str
    labels : mapping
        ``{category: {"en": ..., "zh": ...}}``.
    levels_minutes : sequence of float
    lang : {"en", "zh"}
        Language of the style names and legend labels.
    default_category : str
        The category whose styles are applied on opening.
    layers : sequence of str
        The layers the GeoPackage holds (styles only for those).
    """
    if default_category not in categories:
        raise InputDataError(f"default_category {default_category!r} is not among {categories}")
    top = f"{float(levels_minutes[-1]):g}"
    lab = {c: labels.get(c, {}).get(lang) or c for c in categories}
    out: list[Style] = []
    for cat in categories:
        name = lab[cat][:30]
        if "communities" in layers:
            out.append(
                Style(
                    "communities",
                    name,
                    communities_qml(cat, top_level=top, lang=lang, label=lab[cat]),
                    cat == default_category,
                    f"{lab[cat]}: residents within {top} min",
                )
            )
        if "edges" in layers:
            out.append(
                Style(
                    "edges",
                    name,
                    edges_qml(cat, levels_minutes=levels_minutes, lang=lang),
                    cat == default_category,
                    f"{lab[cat]}: walking minutes along the streets",
                )
            )
    if "facilities" in layers:
        out.append(Style("facilities", "category", facilities_qml(categories, lab), True))
    for layer in ("isochrones", "service_areas"):
        if layer in layers:
            out.append(Style(layer, "minutes", rings_qml(levels_minutes), True))
    return out


def write_styles(
    path: str | Path, styles: Sequence[Style], *, geometry_column: str = "geom"
) -> None:
    """Write ``styles`` into the GeoPackage's ``layer_styles`` table (replacing it).

    The table has QGIS's own columns and is registered in ``gpkg_contents`` as an
    attributes table, as QGIS registers it. A table that already holds exactly these
    styles (an update's in-place copy of the GeoPackage) is left as it is.
    """
    rows = [
        (s.layer, geometry_column, s.name, s.qml, 1 if s.default else 0, s.description)
        for s in styles
    ]
    con = sqlite3.connect(str(path))
    try:
        if _holds_styles(con, rows):
            return
        with con:
            con.execute('DROP TABLE IF EXISTS "layer_styles"')
            con.execute("DELETE FROM gpkg_contents WHERE table_name = 'layer_styles'")
            con.execute(LAYER_STYLES_DDL)
            con.execute(
                "INSERT INTO gpkg_contents (table_name, data_type, identifier, description, "
                "last_change) VALUES ('layer_styles', 'attributes', 'layer_styles', '', "
                "strftime('%Y-%m-%dT%H:%M:%fZ','now'))"
            )
            con.executemany(
                'INSERT INTO "layer_styles" (f_table_catalog, f_table_schema, f_table_name, '
                "f_geometry_column, styleName, styleQML, styleSLD, useAsDefault, description, "
                "owner, ui) VALUES ('', '', ?, ?, ?, ?, '', ?, ?, 'circles', NULL)",
                rows,
            )
    finally:
        con.close()


def _holds_styles(con: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> bool:
    """Whether ``layer_styles`` holds exactly ``rows`` (in order), written by circles and
    registered in ``gpkg_contents``."""
    try:
        registered = con.execute(
            "SELECT count(*) FROM gpkg_contents WHERE table_name = 'layer_styles'"
        ).fetchone()[0]
        have = con.execute(
            "SELECT f_table_name, f_geometry_column, styleName, styleQML, useAsDefault, "
            'description, owner FROM "layer_styles" ORDER BY id'
        ).fetchall()
    except sqlite3.Error:  # no table yet
        return False
    return registered == 1 and have == [(*r, "circles") for r in rows]


def check_qml(qml: str, *, fields: Sequence[str] | None = None) -> dict[str, Any]:
    """Read a QML document back and check what QGIS needs of it.

    Checks the root element and version, the renderer, that every rule names a symbol
    that exists, that colours are ``r,g,b,a`` in 0-255, that every field a rule's filter
    names (``"field"``) is in ``fields`` (when given), and the geometry type.

    Returns
    -------
    dict
        ``renderer``, ``rules`` (label, filter), ``geometry_type``.

    Raises
    ------
    InputDataError
        The document is not a QGIS style QGIS could apply (says what is wrong).
    """
    import re

    try:
        root = ET.fromstring(qml.split("\n", 1)[1] if qml.startswith("<!DOCTYPE") else qml)
    except ET.ParseError as exc:
        raise InputDataError(f"QML is not well-formed XML: {exc}") from exc
    if root.tag != "qgis" or not root.get("version", "").startswith("3."):
        raise InputDataError("QML root must be <qgis version='3.x'>")
    renderer = root.find("renderer-v2")
    if renderer is None or renderer.get("type") != "RuleRenderer":
        raise InputDataError("QML has no rule-based <renderer-v2>")
    symbols = {s.get("name"): s for s in renderer.findall("symbols/symbol")}
    rules = []
    for rule in renderer.iter("rule"):
        sym = rule.get("symbol")
        if sym not in symbols:
            raise InputDataError(f"rule {rule.get('label')!r} names a missing symbol {sym!r}")
        expr = rule.get("filter", "")
        if fields is not None:
            named = set(re.findall(r'"((?:[^"]|"")+)"', expr))
            unknown = sorted(n for n in named if n.replace('""', '"') not in fields)
            if unknown:
                raise InputDataError(f"rule {rule.get('label')!r} names unknown fields {unknown}")
        rules.append((rule.get("label"), expr))
    if not rules:
        raise InputDataError("QML renderer has no rules")
    for opt in root.iter("Option"):
        if opt.get("name", "").endswith("color"):
            parts = opt.get("value", "").split(",")
            if len(parts) != 4 or not all(p.isdigit() and 0 <= int(p) <= 255 for p in parts):
                raise InputDataError(f"QML colour {opt.get('value')!r} is not r,g,b,a")
    kinds = {s.get("type") for s in symbols.values()}
    geometry = root.findtext("layerGeometryType")
    if len(kinds) != 1 or _GEOMETRY_TYPE.get(kinds.pop() or "") != geometry:
        raise InputDataError("QML symbols do not match its layerGeometryType")
    return {"renderer": renderer.get("type"), "rules": rules, "geometry_type": geometry}


# --------------------------------------------------------------------------- a study


def opening_category(result: StudyResult) -> str:
    """The category maps, figures and QGIS styles of a run open on
    (:func:`circles.palette.opening_category`)."""
    from circles.palette import opening_category as choose

    fac = result.facilities
    snapped = fac[fac["status"] == STATUS_SNAPPED]["category"].astype(str).value_counts()
    return choose(list(result.categories), snapped.to_dict())


def styles_content(result: StudyResult) -> str:
    cfg = result.config
    return digest(
        "styles",
        list(result.categories),
        result.labels,
        opening_category(result) if result.categories else None,
        list(cfg.walk.levels_minutes),
        cfg.study.lang,
    )


def write_study_styles(result: StudyResult, path: Path) -> None:
    """QGIS styles in the GeoPackage's ``layer_styles`` table (:mod:`circles.styles`)."""
    if not result.categories:
        return
    cfg = result.config
    import pyogrio

    present = [str(name) for name, _ in pyogrio.list_layers(path)]
    write_styles(
        path,
        study_styles(
            list(result.categories),
            result.labels,
            levels_minutes=cfg.walk.levels_minutes,
            lang=cfg.study.lang,
            default_category=opening_category(result),
            layers=present,
        ),
    )
