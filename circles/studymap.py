"""The study's coverage map as a file: the stage that draws ``coverage.html`` from a
run's result (:func:`write_map`), with the display outlines and the map's parts kept in
the cache so that an update redraws only what changed (:mod:`circles.mapparts`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import geopandas as gpd
import numpy as np
import shapely

from circles import styles
from circles.cache import FRAME, Cache, array_digest
from circles.result import utc_now

if TYPE_CHECKING:
    from circles.result import StudyResult


def display_geometry(gdf: gpd.GeoDataFrame, tol_m: float, store: Any) -> gpd.GeoDataFrame:
    """Rows of ``gdf`` with geometry simplified by ``tol_m`` metres as the map draws it
    (:func:`circles.maps._simplify`), cached by the geometries' content."""
    from circles import maps

    if len(gdf) == 0 or gdf.crs is None:
        return gdf
    wkb = shapely.to_wkb(np.asarray(gdf.geometry.array, dtype=object))

    def compute() -> gpd.GeoDataFrame:
        g = gpd.GeoDataFrame(
            {"pos": np.arange(len(gdf), dtype=np.int64)},
            geometry=np.asarray(gdf.geometry.array, dtype=object),
            crs=gdf.crs,
        )
        return maps._simplify(g, tol_m).reset_index(drop=True)

    cache = store if store is not None else Cache(None)
    parts = [array_digest(wkb), gdf.crs.to_string(), tol_m]
    simple = cache.memo("map_geometry", parts, compute, codec=FRAME).value
    out = gdf.iloc[simple["pos"].to_numpy()]
    return out.set_geometry(
        gpd.GeoSeries(np.asarray(simple.geometry.array, dtype=object), index=out.index, crs=4326)
    )


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
    iso = result.isochrones
    if iso is not None and cfg.map.isochrones != "all":
        iso = iso[iso["community_id"] == cfg.map.isochrones]
    comm = result.communities
    tol = float(cfg.map.simplify_m)
    if tol > 0:
        comm = display_geometry(comm, tol, store)
    if iso is not None and store is not None and iso_key is not None and tol > 0:
        iso_in = iso
        iso = mapparts.kept_isochrone_part(
            store, [iso_key, cfg.map.isochrones, tol], lambda: display_geometry(iso_in, tol, store)
        )
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
