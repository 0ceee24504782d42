"""The study's coverage map as a file: the stage that draws ``coverage.html`` from a
run's result (:func:`write_map`), with the display outlines and the map's parts kept in
the cache so that an update redraws only what changed (:mod:`circles.mapparts`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import geopandas as gpd
import numpy as np
import shapely

from circles import styles
from circles.cache import FRAME, TEXT, Keyed, array_digest
from circles.geometry import threads_allowed
from circles.result import utc_now

if TYPE_CHECKING:
    from circles.result import StudyResult


def display_geometry(gdf: gpd.GeoDataFrame, tol_m: float, store: Any) -> gpd.GeoDataFrame:
    """Rows of ``gdf`` with geometry simplified by ``tol_m`` metres as the map draws it
    (:func:`circles.maps._simplify`), kept in ``store`` (None: not kept) by the
    geometries' content."""
    from circles import maps

    if len(gdf) == 0 or gdf.crs is None:
        return gdf

    def compute() -> gpd.GeoDataFrame:
        g = gpd.GeoDataFrame(
            {"pos": np.arange(len(gdf), dtype=np.int64)},
            geometry=np.asarray(gdf.geometry.array, dtype=object),
            crs=gdf.crs,
        )
        return maps._simplify(g, tol_m).reset_index(drop=True)

    if store is None:
        simple = compute()
    else:
        wkb = shapely.to_wkb(np.asarray(gdf.geometry.array, dtype=object))
        parts = [array_digest(wkb), gdf.crs.to_string(), tol_m]
        simple = store.memo("map_geometry", parts, compute, codec=FRAME).value
    out = gdf.iloc[simple["pos"].to_numpy()]
    return out.set_geometry(
        gpd.GeoSeries(np.asarray(simple.geometry.array, dtype=object), index=out.index, crs=4326)
    )


#: :data:`circles.mapparts.ISOCHRONE_ENTRY`, named here so that starting the part early
#: does not import the map modules on the run's thread (a test keeps the two equal).
_ISOCHRONE_ENTRY = "map_isochrones"


def _shown_isochrones(cfg: Any, iso: gpd.GeoDataFrame | None) -> gpd.GeoDataFrame | None:
    """The isochrones the map shows (``[map] isochrones``: all, or one community's)."""
    if iso is not None and cfg.map.isochrones != "all":
        return iso[iso["community_id"] == cfg.map.isochrones]
    return iso


def _isochrone_part_job(
    cfg: Any, iso: gpd.GeoDataFrame | None, iso_key: str | None, store: Any
) -> tuple[list[Any], Callable[[], gpd.GeoDataFrame]] | None:
    """The content key and the drawing of the map's encoded isochrones, where they are
    kept in ``store`` (None: not kept; without a store, a key or simplification)."""
    tol = float(cfg.map.simplify_m)
    if iso is None or store is None or iso_key is None or tol <= 0:
        return None
    # the encoded part is what is kept: the simplified outlines are not kept as well
    return [iso_key, cfg.map.isochrones, tol], lambda: display_geometry(iso, tol, None)


def start_isochrone_part(cfg: Any, isochrones: Keyed[gpd.GeoDataFrame] | None, store: Any) -> bool:
    """Begin the map's encoded isochrones in a background thread as soon as the
    isochrones are drawn (a cold run), so that simplifying and encoding them (most of a
    county map's drawing) runs beside the streets and the GeoPackage, not after them.

    :func:`write_map` then waits for them instead of drawing them. Nothing starts where
    the map is off, the part is kept already (an update, a warm run), there is no
    cache folder, or the run keeps to one thread (:func:`circles.geometry.one_thread`).

    Parameters
    ----------
    cfg : circles.config.StudyConfig
    isochrones : Keyed or None
        The isochrones stage's layer and key (:func:`circles.isochrones.study_isochrones`).
    store : circles.cache.Cache

    Returns
    -------
    bool
        Whether the drawing began.
    """
    if not cfg.map.enabled or isochrones is None or not getattr(store, "enabled", False):
        return False
    if not threads_allowed():  # one thread per area (circles batch): drawn by the map
        return False
    job = _isochrone_part_job(cfg, _shown_isochrones(cfg, isochrones.value), isochrones.key, store)
    if job is None:
        return False
    parts, outlines = job

    def encode() -> str:
        from circles import mapparts  # folium is imported here, off the run's thread

        return mapparts.encoded_isochrones(outlines())

    return bool(store.start_memo(_ISOCHRONE_ENTRY, parts, encode, codec=TEXT, suffix=".txt"))


def write_map(
    result: StudyResult,
    path: str | Path | None = None,
    *,
    store: Any = None,
    iso_key: str | None = None,
) -> str:
    """The coverage map (self-contained by default), at ``path`` or
    ``maps/<study>/coverage.html``.

    Community and isochrone outlines are simplified for display here (as
    :func:`circles.maps.coverage_map` would) and, with a ``store``
    (:class:`circles.cache.Cache`), kept in the cache: they do not change when facilities
    do, and simplifying them is a third of the map's cost. The map's parts (each
    category's community values, the encoded isochrones: :mod:`circles.mapparts`) are
    kept there too, so an update draws only the parts of the categories it changed.
    With ``iso_key`` (the isochrones' content key) the encoded isochrones are found by
    it, without reading or hashing their outlines again.
    """
    from circles import mapparts, maps

    cfg = result.config
    iso = _shown_isochrones(cfg, result.isochrones)
    comm = result.communities
    tol = float(cfg.map.simplify_m)
    if tol > 0:
        comm = display_geometry(comm, tol, store)
    kept = _isochrone_part_job(cfg, iso, iso_key, store)
    if kept is not None:
        iso = mapparts.kept_isochrone_part(store, *kept)
    elif iso is not None and tol > 0:
        iso = display_geometry(iso, tol, store)
    m = maps.coverage_map(
        comm,
        result.facilities,
        categories=result.categories,
        labels=result.labels,
        isochrones=iso,
        lang=cfg.study.lang,
        simplify_m=0.0 if tol > 0 else tol,
        tiles=cfg.map.tiles,
        levels_minutes=cfg.walk.levels_minutes,
        edges=result.edges,
        title=cfg.study.name,
        date=utc_now()[:10],
        opening=styles.opening_category(result),
        store=store,
    )
    out = Path(path) if path is not None else cfg.map_dir / "coverage.html"
    return str(maps.save_map(m, out, self_contained=cfg.map.self_contained))
