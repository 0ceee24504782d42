"""Maps of proposals: suggested sites (:mod:`circles.siting`) and what a scenario changes
(:mod:`circles.scenarios`). Presentation only, built on :mod:`circles.maps` (the same
escaping, self-contained saving and layer control)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import folium
import geopandas as gpd
import numpy as np
import shapely

from circles import maps
from circles.maps import _BIND_POPUP, _esc, _feature_collection, _GeoJson, _table

#: Colours of a community whose flag a scenario changes.
CHANGE_COLOURS = {
    "lost_flag": "#1a9850",  # no longer flagged: a gap closed
    "gained_flag": "#d73027",  # newly flagged: a gap opened
    "share_up": "#a6d96a",
    "share_down": "#fdae61",
    "same": "#e0e0e0",
}

_TEXT = {
    "en": {
        "suggested": "Suggested sites",
        "rank": "Rank",
        "community": "Community",
        "new": "Residents newly within {m} min",
        "after": "City share within {m} min after",
        "catchment": "Catchment (nearest, within {m} min)",
        "capacity": "Capacity",
        "over": "over capacity",
        "changes": "Changes: {c}",
        "before": "Share within {m} min before",
        "after_c": "after",
        "flag_before": "Flagged before",
        "flag_after": "Flagged after",
        "lost_flag": "gap closed (flag lost)",
        "gained_flag": "gap opened (flag gained)",
        "share_up": "share up, flag unchanged",
        "share_down": "share down, flag unchanged",
        "same": "no change",
        "yes": "yes",
        "no": "no",
    },
    "zh": {
        "suggested": "建议选址",
        "rank": "序号",
        "community": "社区",
        "new": "新增{m}分钟内居民",
        "after": "建成后全市{m}分钟覆盖率",
        "catchment": "服务人口（最近，{m}分钟内）",
        "capacity": "容量",
        "over": "超出容量",
        "changes": "方案变化：{c}",
        "before": "方案前{m}分钟覆盖率",
        "after_c": "方案后",
        "flag_before": "方案前标记",
        "flag_after": "方案后标记",
        "lost_flag": "缺口补上（取消标记）",
        "gained_flag": "新出现缺口（新增标记）",
        "share_up": "覆盖率上升，标记不变",
        "share_down": "覆盖率下降，标记不变",
        "same": "无变化",
        "yes": "是",
        "no": "否",
    },
}


def _num(v: Any, fmt: str = "{:.0f}") -> str:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return "–"
    return "–" if math.isnan(x) else fmt.format(x)


def suggestion_map(result: Any, suggestion: Any, path: str | Path) -> Path:
    """The category's coverage map with the suggested sites as their own layer.

    Parameters
    ----------
    result : circles.pipeline.StudyResult
        The study as it is (before the suggestions).
    suggestion : circles.siting.Suggestion
        The suggested sites.
    path : path-like
        Where the HTML goes.
    """
    cfg = result.config
    lang = cfg.study.lang
    text = _TEXT[lang]
    cat = suggestion.category
    m = maps.coverage_map(
        result.communities,
        result.facilities,
        categories=[cat],
        labels=result.labels,
        lang=lang,
        simplify_m=float(cfg.map.simplify_m),
        tiles=cfg.map.tiles,
        levels_minutes=cfg.walk.levels_minutes,
    )
    mm = f"{suggestion.minutes:g}"
    sites = suggestion.sites
    props = []
    for _, r in sites.iterrows():
        rows = [
            (_esc(text["rank"]), _esc(int(r["rank"]))),
            (_esc(text["community"]), _esc(r["community"])),
            (_esc(text["new"].format(m=mm)), _esc(_num(r["newly_covered"]))),
            (_esc(text["after"].format(m=mm)), _esc(_num(100 * r["share_after"], "{:.1f}%"))),
            (_esc(text["catchment"].format(m=mm)), _esc(_num(r["catchment"]))),
            (_esc(text["capacity"]), _esc(_num(r["capacity"]))),
        ]
        if r["over_capacity"] is True or r["over_capacity"] is np.True_:
            rows.append((_esc(text["over"]), _esc(text["yes"])))
        props.append(
            {
                "popup": f"<b>{_esc(r['name'])}</b>" + _table(rows),
                "tooltip": f"#{int(r['rank'])} {_esc(r['community'])}",
                "style": {
                    "radius": 9,
                    "color": "#000",
                    "weight": 2,
                    "fillColor": "#7b3294",
                    "fillOpacity": 0.95,
                },
            }
        )
    group = folium.FeatureGroup(name=_esc(text["suggested"]), show=True)
    if len(sites):
        _GeoJson(
            _feature_collection(sites.geometry, props),
            name="suggested_sites",
            control=False,
            on_each_feature=_BIND_POPUP,
            marker=folium.CircleMarker(radius=9, fill=True),
        ).add_to(group)
    group.add_to(m)
    # the layer control (and the fitting to the data) must come after every layer it lists
    for key, child in list(m._children.items()):
        if isinstance(child, maps._LayerControl | folium.map.FitBounds):
            m._children.move_to_end(key)
    return maps.save_map(m, path, self_contained=cfg.map.self_contained)


def change_map(
    table: gpd.GeoDataFrame,
    categories: Sequence[str],
    *,
    labels: Mapping[str, Mapping[str, str]],
    level: str,
    path: str | Path,
    lang: str = "en",
    simplify_m: float = 10.0,
    tiles: bool = True,
    self_contained: bool = True,
) -> Path:
    """A map of what a scenario changes: per category, the communities that gain or lose
    a flag (and whose share rises or falls), with before/after popups.

    Parameters
    ----------
    table : geopandas.GeoDataFrame
        One row per community with ``community_id``, ``name`` and, per category ``c``,
        ``c_share_before``, ``c_share_after``, ``c_flag_before``, ``c_flag_after``,
        ``c_change`` (a key of :data:`CHANGE_COLOURS`).
    categories : sequence of str
        One layer each (the first shown).
    labels : mapping
        Category labels.
    level : str
        The level the shares are taken at (for the popups).
    path : path-like
        Where the HTML goes.
    """
    text = _TEXT[lang]
    comm = maps._simplify(table.to_crs(4326), simplify_m)
    x0, y0, x1, y1 = comm.total_bounds
    m = folium.Map(location=[(y0 + y1) / 2, (x0 + x1) / 2], zoom_start=12, tiles=None)
    if tiles:
        folium.TileLayer(
            tiles="https://tile.openstreetmap.org/{z}/{x}/{y}.png",
            attr="© OpenStreetMap contributors",
            name="OpenStreetMap",
            overlay=True,
            control=True,
            show=False,
        ).add_to(m)
    geo = [shapely.geometry.mapping(g) for g in comm.geometry]
    # the categories whose flags change most first (the first one is shown on opening)
    changes = {
        c: int(np.isin(comm[f"{c}_change"].astype(str), ["lost_flag", "gained_flag"]).sum())
        + int((comm[f"{c}_change"].astype(str) != "same").sum())
        for c in categories
    }
    categories = sorted(categories, key=lambda c: -changes[c])
    for i, cat in enumerate(categories):
        lab = labels.get(cat, {}).get(lang) or cat
        kinds = comm[f"{cat}_change"].astype(str).to_numpy()
        changed = int(np.isin(kinds, ["lost_flag", "gained_flag"]).sum())
        group = folium.FeatureGroup(name=_esc(f"{lab} ({changed})"), show=(i == 0))
        props = []
        for j, (_, r) in enumerate(comm.iterrows()):
            kind = kinds[j]
            yes_no = {True: text["yes"], False: text["no"]}
            pct = "{:.0f}%"
            rows = [
                (text["before"].format(m=level), _num(100 * r[f"{cat}_share_before"], pct)),
                (text["after_c"], _num(100 * r[f"{cat}_share_after"], pct)),
                (text["flag_before"], yes_no[bool(r[f"{cat}_flag_before"])]),
                (text["flag_after"], yes_no[bool(r[f"{cat}_flag_after"])]),
            ]
            rows = [(_esc(k), _esc(v)) for k, v in rows]
            props.append(
                {
                    "popup": f"<b>{_esc(r['name'])}</b> · {_esc(lab)}<br>{_esc(text[kind])}"
                    + _table(rows),
                    "tooltip": f"{_esc(r['name'])}: {_esc(text[kind])}",
                    "style": {
                        "fillColor": CHANGE_COLOURS[kind],
                        "fillOpacity": 0.7,
                        "color": "#555",
                        "weight": 2 if kind in ("lost_flag", "gained_flag") else 1,
                    },
                }
            )
        _GeoJson(
            _feature_collection(geo, props),
            name=f"{cat}_changes",
            control=False,
            on_each_feature=_BIND_POPUP,
        ).add_to(group)
        group.add_to(m)
    legend = "".join(
        f"<div><span style='display:inline-block;width:12px;height:12px;"
        f"background:{c};margin-right:4px'></span>{_esc(text[k])}</div>"
        for k, c in CHANGE_COLOURS.items()
    )
    maps._Panel("circles-change-legend", legend, maps._PANEL_CSS + "left:10px;bottom:30px;").add_to(
        m
    )
    maps._LayerControl(collapsed=False).add_to(m)
    m.fit_bounds([[float(y0), float(x0)], [float(y1), float(x1)]])
    return maps.save_map(m, path, self_contained=self_contained)
