"""The coverage map's parts: each category's community values and the encoded
isochrones, computed apart so that a drawing can keep them in the cache.

:func:`circles.maps.coverage_map` assembles the page from these parts. Each is keyed by
its content (:func:`circles.cache.frame_digest` of the columns it reads), so a later
drawing in which one category changed (``circles update``) computes that category's part
only and reads the others and the isochrones' rings from the cache.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from typing import Any

import geopandas as gpd
import numpy as np
import shapely

from circles.cache import TEXT, Cache, frame_digest
from circles.mapview import RawJSON, encode_rings_of, safe_json
from circles.mapview import esc as _esc
from circles.palette import NO_DATA_COLOUR, SHARE_BREAKS, SHARE_COLOURS


def fmt_share(value: Any) -> str:
    """Format a 0-1 share as a percentage ('–' when missing)."""
    v = float(value)
    return "–" if math.isnan(v) else f"{100.0 * v:.0f}%"


def fmt_minutes(value: Any, text: Mapping[str, str]) -> str:
    """Format minutes with one decimal, 'beyond cut-off' for inf, '–' for NaN."""
    v = float(value)
    if math.isnan(v):
        return "–"
    if math.isinf(v):
        return text["beyond"]
    return f"{v:.1f} {text['min']}"


def share_class(share: np.ndarray) -> np.ndarray:
    """Class index 0-4 of each share by :data:`SHARE_BREAKS`; -1 for NaN."""
    cls = np.digitize(np.clip(share, 0.0, 1.0), SHARE_BREAKS[1:-1], right=False)
    return np.where(np.isnan(share), -1, cls)


def kept_category_part(
    store: Cache | None,
    comm: gpd.GeoDataFrame,
    cat: str,
    cat_label: str,
    names: np.ndarray,
    ids: np.ndarray,
    lev_keys: list[str],
    suffixes: tuple[str, ...],
    text: Mapping[str, str],
    *,
    rows_key: str | None = None,
) -> dict[str, Any]:
    """:func:`category_part`, read from ``store`` when it holds it, else computed and kept
    there (computed only, without a store).

    ``rows_key`` is the content key of the communities' ids and names (the same for
    every category of a drawing: computed once by the caller); the category's own
    columns and the page's words key the rest.
    """

    def compute() -> dict[str, Any]:
        return category_part(comm, cat, cat_label, names, ids, lev_keys, suffixes, text)

    if store is None:
        return compute()
    top = lev_keys[-1]
    band = ("robust", "flip_m_s", f"share_{top}_slow", f"share_{top}_fast")
    cols = [f"{cat}_{c}" for c in (*suffixes, *band) if f"{cat}_{c}" in comm.columns]
    parts = [cat, cat_label, text, lev_keys, rows_key, frame_digest(comm, cols)]
    kept = store.memo("map_category", parts, lambda: safe_json(compute()), codec=TEXT)
    return dict(json.loads(kept.value))


def kept_isochrone_part(
    store: Cache, parts: list[Any], isochrones: Callable[[], gpd.GeoDataFrame]
) -> RawJSON:
    """:func:`isochrone_part` as page JSON, read from ``store`` under the content key
    ``parts``, else drawn from ``isochrones()`` (called only then) and kept there."""
    kept = store.memo(ISOCHRONE_ENTRY, parts, lambda: encoded_isochrones(isochrones()), codec=TEXT)
    return RawJSON(kept.value)


#: Cache kind of the encoded isochrones (:func:`kept_isochrone_part`; begun early by
#: :func:`circles.studymap.start_isochrone_part`, which names it without importing this
#: module and folium with it).
ISOCHRONE_ENTRY = "map_isochrones"


def encoded_isochrones(iso: gpd.GeoDataFrame) -> str:
    """:func:`isochrone_part` of the display outlines ``iso``, as page JSON."""
    return safe_json(isochrone_part(iso))


def category_part(
    comm: gpd.GeoDataFrame,
    cat: str,
    cat_label: str,
    names: np.ndarray,
    ids: np.ndarray,
    lev_keys: list[str],
    suffixes: tuple[str, ...],
    text: Mapping[str, str],
) -> dict[str, Any]:
    """One category's community values on the map.

    Parameters
    ----------
    comm : geopandas.GeoDataFrame
        The communities with the category's columns ``<cat>_share_<level>`` (0-1),
        ``<cat>_median_min`` and ``<cat>_p90_min`` (minutes), ``<cat>_flag`` and, where
        the run has them, the walking-speed band's columns.
    cat, cat_label : str
        The category's id and its label (escaped HTML).
    names, ids : numpy.ndarray
        The communities' names and ids, escaped for HTML, in the rows' order.
    lev_keys : list of str
        The levels as written in column names (``["5", "10", "15"]``), last the largest.
    suffixes : tuple of str
        The category's column suffixes the popup shows.
    text : mapping
        The page's words in its language (:data:`circles.mapview.TEXT`).

    Returns
    -------
    dict
        ``rows`` (the popup's row labels, once), ``fills`` (colours), ``flags``,
        ``popups`` (values per community), ``tips`` (tooltips) and ``flagged`` (the
        flagged list's HTML for the category), all JSON values.
    """
    top = lev_keys[-1]
    share15 = comm[f"{cat}_share_{top}"].to_numpy(dtype=float)
    flags = comm[f"{cat}_flag"].eq(True).to_numpy(dtype=bool)  # NaN -> not flagged
    cls = share_class(share15)
    fills = np.where(cls < 0, NO_DATA_COLOUR, np.asarray(SHARE_COLOURS)[np.clip(cls, 0, 4)])
    cols = {s: comm[f"{cat}_{s}"].to_numpy() for s in suffixes}
    popups, tips, labels_row = [], [], []
    for j in range(len(comm)):
        rows = [
            *[
                (_esc(text["share"].format(m=mm)), fmt_share(cols[f"share_{mm}"][j]))
                for mm in lev_keys
            ],
            (_esc(text["median"]), _esc(fmt_minutes(cols["median_min"][j], text))),
            (_esc(text["p90"]), _esc(fmt_minutes(cols["p90_min"][j], text))),
            (_esc(text["flag"]), _esc(text["yes"] if flags[j] else text["no"])),
            *robustness_rows(comm, cat, top, j, text),
        ]
        if j == 0:  # the same labels for every community: sent once per category
            labels_row = [k for k, _ in rows]
        popups.append([v for _, v in rows])
        tips.append(f"{names[j]}: {fmt_share(share15[j])}")
    items = "".join(f"<li>{names[j]} <small>({ids[j]})</small></li>" for j in np.flatnonzero(flags))
    flagged = (
        f"<div class='circles-flagged-category' data-category='{_esc(cat)}'>"
        f"<b>{cat_label}</b>{_esc(text['colon'])}"
        + (f"<ul style='margin:0;padding-left:16px'>{items}</ul>" if items else _esc(text["none"]))
        + "</div>"
    )
    return {
        "rows": labels_row,
        "fills": fills.tolist(),
        "flags": flags.tolist(),
        "popups": popups,
        "tips": tips,
        "flagged": flagged,
    }


def isochrone_part(iso: gpd.GeoDataFrame) -> dict[str, list[dict[str, Any]]]:
    """Each community's isochrones as the page draws them.

    Parameters
    ----------
    iso : geopandas.GeoDataFrame
        EPSG:4326 isochrones with ``community_id`` and ``minutes``.

    Returns
    -------
    dict
        Escaped community id -> ``[{"m": minutes, "p": rings}, ...]``, largest level
        first, rings as :func:`circles.mapview.encode_rings_of` (integer offsets of
        1e-5 degree).
    """
    out: dict[str, list[dict[str, Any]]] = {}
    minutes = iso["minutes"].to_numpy(dtype=float)
    iso = iso.iloc[np.argsort(-minutes, kind="stable")]  # largest below, 5 min on top
    geoms = np.asarray(iso.geometry.array, dtype=object)
    shown = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms))
    encoded = iter(encode_rings_of(geoms[shown]))
    for cid, mins, has in zip(
        iso["community_id"].map(_esc), iso["minutes"].astype(float), shown.tolist(), strict=True
    ):
        if not has:
            continue
        out.setdefault(cid, []).append(
            {"m": int(mins) if float(mins).is_integer() else mins, "p": next(encoded)}
        )
    return out


def robustness_rows(
    comm: gpd.GeoDataFrame, cat: str, top: str, j: int, text: Mapping[str, str]
) -> list[tuple[str, str]]:
    """Popup rows of the walking-speed band (``[robustness]``, :mod:`circles.robustness`)
    when the table has them."""
    if f"{cat}_robust" not in comm.columns:
        return []
    robust = bool(comm[f"{cat}_robust"].iloc[j])
    flip = float(comm[f"{cat}_flip_m_s"].iloc[j])
    verdict = text["robust"] if robust else text["fragile"].format(v=f"{flip:.2f}")
    rows = [(_esc(text["speed_flag"]), _esc(verdict))]
    slow, fast = f"{cat}_share_{top}_slow", f"{cat}_share_{top}_fast"
    if slow in comm.columns and fast in comm.columns:
        both = f"{fmt_share(comm[slow].iloc[j])} / {fmt_share(comm[fast].iloc[j])}"
        rows.append((_esc(text["speed_share"]), both))
    return rows
