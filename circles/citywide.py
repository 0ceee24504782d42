"""One city from many areas: the areas' outputs merged after ``circles batch``.

Each area of a study (a county of a city) is computed on its own network with a halo
(:mod:`circles.batch`) and writes its own outputs. A bureau reports on the whole city,
so :func:`write_city` merges them into ``<output_dir>/<study>/city/``:

- ``circles.gpkg`` with one ``communities`` layer (every community once, from its own
  area, with an ``area`` column), ``facilities`` (each facility once) and
  ``isochrones``, styled for QGIS like an area's GeoPackage;
- ``coverage.csv``: the areas' tables, one row per community and category, with
  ``area``;

and ``<maps_dir>/<study>/city/coverage.html``: the coverage map of the whole city (the
streets layer is left out: the areas' street pieces overlap in their halos, and a city's
streets would make the page too large; each area's map has them).

A community is "from its own area" when the area's run kept it (its representative point
lies inside the area, :func:`circles.areas.communities_in_area`); one that two area
boundaries both claim (its point on their shared border) is kept from the first area
listed, and the summary says how many were dropped that way. A community that no area
kept (its point in a gap between the areas' boundaries, though at least half of it lies
in the areas) would leave a hole in the city's map: :func:`write_city` warns with their
count and names (:func:`missing_communities`). Everything is written in one transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd
import pyogrio

from circles import io, maps
from circles._errors import OutputError
from circles.config import StudyConfig
from circles.palette import opening_category
from circles.result import utc_now
from circles.transaction import Transaction

logger = logging.getLogger(__name__)

__all__ = ["CITY_FOLDER", "merge_areas", "missing_communities", "write_city"]

#: Folder of the merged outputs under the study's output and map folders.
CITY_FOLDER = "city"

#: A community no area kept is missing from the city when at least this share (0-1) of it
#: lies inside the areas (less: a neighbour of the city that merely touches it).
MISSING_MIN_SHARE = 0.5


def _read(path: str | Path, layer: str) -> gpd.GeoDataFrame | None:
    try:
        names = {str(n) for n, _ in pyogrio.list_layers(path)}
    except (OSError, pyogrio.errors.DataSourceError) as exc:
        raise OutputError(f"{path}: cannot read an area's GeoPackage ({exc})") from exc
    if layer not in names:
        return None
    return pyogrio.read_dataframe(path, layer=layer)


def merge_areas(gpkgs: Mapping[str, str | Path]) -> dict[str, Any]:
    """The areas' layers merged: ``communities`` (each once), ``facilities``, ``isochrones``.

    Parameters
    ----------
    gpkgs : mapping
        Area name -> its ``circles.gpkg``, in the study's order.

    Returns
    -------
    dict
        ``communities``, ``facilities``, ``isochrones`` (GeoDataFrames, None when no
        area has the layer) and ``dropped`` (communities claimed by an earlier area).
    """
    out: dict[str, Any] = {"dropped": 0}
    for layer, key in (
        ("communities", ["community_id"]),
        ("facilities", ["category", "facility_id"]),
        ("isochrones", ["community_id", "minutes"]),
    ):
        parts = []
        for area, path in gpkgs.items():
            gdf = _read(path, layer)
            if gdf is not None and len(gdf):
                parts.append(gdf.assign(area=area))
        if not parts:
            out[layer] = None
            continue
        merged = pd.concat(parts, ignore_index=True)
        dup = merged.duplicated(subset=key, keep="first")
        if layer == "communities":
            out["dropped"] = int(dup.sum())
            if dup.any():
                logger.warning(
                    "%d communities are claimed by two areas; kept from the first area listed",
                    int(dup.sum()),
                )
        out[layer] = gpd.GeoDataFrame(merged[~dup].reset_index(drop=True), crs=parts[0].crs)
    if out.get("communities") is not None and out.get("isochrones") is not None:
        keep = out["isochrones"]["community_id"].isin(out["communities"]["community_id"])
        out["isochrones"] = out["isochrones"][keep].reset_index(drop=True)
    return out


def missing_communities(
    kept: Sequence[str], across: Mapping[str, Sequence[Mapping[str, Any]]]
) -> list[dict[str, Any]]:
    """Communities that overlap the areas but that no area kept.

    Parameters
    ----------
    kept : sequence of str
        ``community_id`` of the merged communities layer.
    across : mapping
        Area name -> the communities overlapping it that it left out (its summary's
        ``area.communities_across_border``: ``community_id``, ``name``, ``share_inside``).

    Returns
    -------
    list of dict
        ``community_id``, ``name`` and ``share_inside`` (summed over the areas) of each
        community not in ``kept`` with at least :data:`MISSING_MIN_SHARE` inside the areas.

    Examples
    --------
    >>> across = {"A": [{"community_id": "x", "name": "X", "share_inside": 0.5}],
    ...           "B": [{"community_id": "x", "name": "X", "share_inside": 0.5}]}
    >>> missing_communities([], across)
    [{'community_id': 'x', 'name': 'X', 'share_inside': 1.0}]
    >>> missing_communities(["x"], across)
    []
    """
    have = {str(k) for k in kept}
    found: dict[str, dict[str, Any]] = {}
    for rows in across.values():
        for r in rows:
            cid = str(r["community_id"])
            if cid in have:
                continue
            got = found.setdefault(
                cid, {"community_id": cid, "name": r.get("name"), "share_inside": 0.0}
            )
            got["share_inside"] = round(got["share_inside"] + float(r.get("share_inside", 0.0)), 4)
    return [r for r in found.values() if r["share_inside"] >= MISSING_MIN_SHARE]


def write_city(
    cfg: StudyConfig,
    gpkgs: Mapping[str, str | Path],
    coverage_csvs: Mapping[str, str | Path],
    *,
    categories: list[str],
    labels: dict[str, dict[str, str]],
    across: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
) -> dict[str, str]:
    """Merge the areas' outputs into the city's (see the module docstring).

    Parameters
    ----------
    cfg : StudyConfig
        The study (no area selected).
    gpkgs, coverage_csvs : mapping
        Area name -> its ``circles.gpkg`` and ``coverage.csv``.
    categories : list of str
        The study's categories (the map's layers).
    labels : dict
        Category labels (``{category: {"en": ..., "zh": ...}}``).
    across : mapping, optional
        Area name -> the communities overlapping it that it did not keep (its summary's
        ``area.communities_across_border``); those no area kept are named in a warning.

    Returns
    -------
    dict
        Output name (``city_gpkg``, ``city_coverage_csv``, ``city_map_html``) -> path.
    """
    from circles import styles

    merged = merge_areas(gpkgs)
    comm = merged["communities"]
    if comm is None:
        raise OutputError("no area wrote a communities layer: nothing to merge for the city")
    lost = missing_communities(comm["community_id"].astype(str).tolist(), across or {})
    if lost:
        names = ", ".join(str(r["name"] or r["community_id"]) for r in lost[:20])
        more = f" and {len(lost) - 20} more" if len(lost) > 20 else ""
        logger.warning(
            "%d communities are in no area and missing from the city's layer and map (their "
            "representative point lies outside every area's boundary): %s%s; widen an area's "
            "boundary to take them in",
            len(lost),
            names,
            more,
        )
    tables = [pd.read_csv(p, encoding="utf-8-sig").assign(area=a) for a, p in coverage_csvs.items()]
    cov = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    if len(cov):
        cov = cov[cov["community_id"].astype(str).isin(comm["community_id"].astype(str))]
        cov = cov.drop_duplicates(subset=["community_id", "category"], keep="first")
    data_dir = cfg.study_dir
    map_dir = Path(str(cfg.map_dir))
    roots = {"data": data_dir, "maps": map_dir}
    written: dict[str, str] = {}
    with Transaction(roots) as tx:
        gpkg = tx.path("data", f"{CITY_FOLDER}/circles.gpkg")
        for layer in ("communities", "facilities", "isochrones"):
            gdf = merged[layer]
            if gdf is not None:
                io.write_layer(gdf, gpkg, layer)
        fac = merged["facilities"]
        snapped = (
            fac[fac["status"] == "snapped"]["category"].astype(str).value_counts().to_dict()
            if fac is not None
            else {}
        )
        opening = opening_category(categories, snapped)
        present = [str(n) for n, _ in pyogrio.list_layers(gpkg)]
        styles.write_styles(
            gpkg,
            styles.study_styles(
                categories,
                labels,
                levels_minutes=cfg.walk.levels_minutes,
                lang=cfg.study.lang,
                default_category=opening,
                layers=present,
            ),
        )
        csv = tx.path("data", f"{CITY_FOLDER}/coverage.csv")
        io.write_csv(cov, csv)
        written["city_gpkg"] = str(tx.final("data", f"{CITY_FOLDER}/circles.gpkg"))
        written["city_coverage_csv"] = str(tx.final("data", f"{CITY_FOLDER}/coverage.csv"))
        if cfg.map.enabled:
            m = maps.coverage_map(
                comm,
                fac if fac is not None else comm.iloc[:0],
                categories=categories,
                labels=labels,
                isochrones=merged["isochrones"],
                lang=cfg.study.lang,
                simplify_m=float(cfg.map.simplify_m),
                tiles=cfg.map.tiles,
                levels_minutes=cfg.walk.levels_minutes,
                title=cfg.study.name,
                date=utc_now()[:10],
                opening=opening,
            )
            page = tx.path("maps", f"{CITY_FOLDER}/coverage.html")
            maps.save_map(m, page, self_contained=cfg.map.self_contained)
            written["city_map_html"] = str(tx.final("maps", f"{CITY_FOLDER}/coverage.html"))
        tx.commit()
    logger.info(
        "city: %d communities from %d areas (%d claimed twice)",
        len(comm),
        len(gpkgs),
        merged["dropped"],
    )
    return written
