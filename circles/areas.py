"""Areas of a multi-area study: boundaries, halos and clipped networks.

A study may list ``[[areas]]`` (all counties of a city, every municipality of a
country), each with its own OSM ``source`` or a ``boundary`` clipping the study's shared
source: a polygon file, or the name of an administrative boundary in the OSM source.

Halo
    Each area is computed on the network clipped to its boundary plus a halo, so a
    resident at the area's edge is served by facilities just across it. The default halo
    (:func:`halo_m`) is the distance walked in the largest level (15 minutes) at the
    fastest walking speed the study uses, times Tobler's largest speed-up (1.19, a 5 %
    descent) when walking times are slope-aware: no walk of at most that many minutes
    from a node inside the area can leave the halo, so shares within every level, counts
    and flags are exactly those of an unclipped network. Minutes above the largest level
    (medians and 90th percentiles beyond 15 minutes) can be larger than on the unclipped
    network near the edge; set ``halo_m`` (e.g. ``max_minutes`` x speed) to make them
    exact too. Communities are those whose representative point lies inside the area.

:mod:`circles.batch` runs the areas in parallel; this module is the area stage of one
run (:func:`circles.pipeline.run` with ``area=``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import shapely

from circles import io
from circles._errors import InputDataError
from circles.cache import NETWORK, Cache, Keyed
from circles.config import AreaSection, StudyConfig
from circles.network import WalkNetwork, build_network
from circles.result import RunContext
from circles.settings import WGS84


def halo_m(cfg: StudyConfig) -> float:
    """Default halo in metres: largest level x fastest speed used (x Tobler's peak with a DEM).

    Parameters
    ----------
    cfg : StudyConfig
        The study (its walking profiles, levels and DEM setting).
    """
    from circles.terrain import TOBLER_OPTIMUM_GRADE, tobler_factor

    names = {cfg.walk.profile} | ({cfg.walk.elderly_profile} if cfg.walk.elderly_profile else set())
    fastest = max(float(cfg.walk.walk_profile(n).speed_m_s) for n in names)
    factor = float(tobler_factor(TOBLER_OPTIMUM_GRADE)) if cfg.walk.dem is not None else 1.0
    return float(cfg.walk.levels_minutes[-1]) * 60.0 * fastest * factor


def area_boundary(cfg: StudyConfig, area: AreaSection, source: str) -> Any:
    """The area's polygon (EPSG:4326), or None for an area that is its whole source."""
    if area.boundary is None:
        return None
    path = cfg.resolve(area.boundary)
    if path is not None and Path(path).is_file():
        try:
            g = (
                gpd.read_file(path, layer=area.boundary_layer)
                if area.boundary_layer
                else (gpd.read_file(path))
            )
        except Exception as exc:
            raise io.DataFileError(f"{path}: cannot read area boundary ({exc})") from exc
        if g.crs is None:
            raise InputDataError(f"{path}: boundary file has no CRS")
        g = g.to_crs(WGS84)
    else:
        b = io.read_osm_boundaries(source, admin_level=None)
        g = b[b["name"] == area.boundary]
        if g.empty:
            names = sorted(set(b["name"].dropna().astype(str)))[:30]
            raise InputDataError(
                f"area {area.name!r}: no boundary file {area.boundary!r} and no "
                f"administrative boundary of that name in {source}; names found: {names}"
            )
    poly = shapely.make_valid(shapely.union_all(g.geometry.to_numpy()))
    if poly.is_empty or poly.area == 0:
        raise InputDataError(f"area {area.name!r}: the boundary has no area")
    return poly


def clip_network(network: WalkNetwork, polygon: Any, *, halo_m: float) -> WalkNetwork:
    """The network's edges with both ends within ``halo_m`` metres of ``polygon`` (4326).

    The clipped network keeps its largest connected piece; edge lengths are recomputed
    exactly as when the network was built (geodesic, so unchanged).
    """
    from pyproj import Transformer

    tr = Transformer.from_crs(WGS84, network.crs, always_xy=True)
    metric = shapely.transform(
        polygon, lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1]))
    )
    zone = shapely.buffer(metric, halo_m) if halo_m > 0 else metric
    shapely.prepare(zone)
    inside = shapely.contains_xy(zone, network.x, network.y)
    keep = inside[network.u] & inside[network.v]
    if not keep.any():
        raise InputDataError("the area (with its halo) contains no walkable street")
    return build_network(
        network.node_id,
        network.lon,
        network.lat,
        network.node_id[network.u[keep]],
        network.node_id[network.v[keep]],
        highway=network.highway[keep],
        way_id=network.way_id[keep],
        direction=network.direction[keep],
        keep_largest=True,
        source=network.source,
        report={**dict(network.report), "clipped_edges_dropped": int((~keep).sum())},
    )


def area_network(
    network: Keyed[WalkNetwork],
    boundary: Any,
    *,
    area: AreaSection,
    halo_m: float,
    store: Cache,
) -> tuple[Keyed[WalkNetwork], dict[str, Any]]:
    """The area's network (clipped to ``boundary`` with its halo, cached).

    Parameters
    ----------
    network : Keyed
        The whole source's network and its cache key.
    boundary : shapely geometry or None
        The area's polygon (:func:`area_boundary`); None: the whole source.
    area : AreaSection
        The ``[[areas]]`` table (for the summary).
    halo_m : float
        Metres of network kept around the boundary.
    store : Cache
        The study's cache.

    Returns
    -------
    tuple
        The clipped network with its key, and the ``area`` section of ``summary.json``.
    """
    doc: dict[str, Any] = {
        "name": area.name,
        "boundary": area.boundary,
        "boundary_wkb_sha256": None,
        "halo_m": halo_m,
        "halo_source": "set in [[areas]]"
        if area.halo_m is not None
        else "largest level x fastest walking speed",
    }
    if boundary is None:
        return network, doc
    doc["boundary_wkb_sha256"] = hashlib.sha256(shapely.to_wkb(boundary)).hexdigest()
    clipped = store.memo(
        "area_network",
        [network.key, doc["boundary_wkb_sha256"], halo_m],
        lambda: clip_network(network.value, boundary, halo_m=halo_m),
        codec=NETWORK,
    )
    return clipped, doc


#: ``attrs`` key of an area's communities table: communities of the source that overlap
#: the area but whose representative point lies outside it (kept by another area, or by
#: none when it falls in a gap between the areas' boundaries), with the share of each
#: inside this area (see :func:`communities_in_area`).
ACROSS_BORDER = "communities_across_border"


def communities_in_area(communities: gpd.GeoDataFrame, boundary: Any) -> gpd.GeoDataFrame:
    """Communities whose representative point lies inside ``boundary`` or on its edge.

    A point on the border two areas share is covered by both; the city merge
    (:func:`circles.citywide.merge_areas`) keeps the community from the first area
    listed. ``attrs[ACROSS_BORDER]`` lists the communities left out that overlap the
    area (``community_id``, ``name``, ``share_inside``: the share of the community's
    area inside this one), so the merge can say which communities no area kept.

    Parameters
    ----------
    communities : geopandas.GeoDataFrame
        The source's communities (EPSG:4326).
    boundary : shapely geometry or None
        The area's polygon; None keeps all.
    """
    if boundary is None:
        return communities
    geoms = communities.geometry.to_numpy()
    inside = shapely.covers(boundary, shapely.point_on_surface(geoms))
    attrs = dict(communities.attrs)
    out = communities.loc[inside].reset_index(drop=True)
    out.attrs = attrs
    rest = communities.loc[~inside]
    across: list[dict[str, Any]] = []
    if len(rest):
        g = rest.geometry.to_numpy()
        hit = shapely.intersects(boundary, g)
        if hit.any():
            # shares of degrees² are shares of m² within a community's small extent
            with np.errstate(invalid="ignore", divide="ignore"):
                share = shapely.area(shapely.intersection(boundary, g[hit])) / shapely.area(g[hit])
            rows = rest.loc[hit]
            across = [
                {"community_id": str(i), "name": str(n), "share_inside": round(float(f), 4)}
                for i, n, f in zip(rows["community_id"], rows["name"], share, strict=True)
                if np.isfinite(f) and f > 0
            ]
    out.attrs[ACROSS_BORDER] = across
    return out


def nodes_inside(network: WalkNetwork, boundary: Any) -> np.ndarray:
    """Boolean mask of the network's nodes inside ``boundary`` or on its edge; the others
    are in the area's halo.

    Parameters
    ----------
    network : WalkNetwork
        The area's (clipped) network.
    boundary : shapely geometry or None
        The area's polygon (EPSG:4326); None: every node is inside.
    """
    if boundary is None:
        return np.ones(network.n_nodes, dtype=bool)
    poly = gpd.GeoSeries([boundary], crs=WGS84).to_crs(network.crs).iloc[0]
    return np.asarray(shapely.intersects_xy(poly, network.x, network.y), dtype=bool)


@dataclass(frozen=True)
class Area:
    """The selected area of a run.

    Attributes
    ----------
    boundary : shapely geometry or None
        Its polygon (EPSG:4326); None: the whole of its own source.
    doc : dict
        The ``area`` section of ``summary.json`` (name, boundary hash, halo).
    whole : Keyed, optional
        The source's whole walking network, before the area was cut from it: hexagon
        communities are laid over it, so every area of a study shares one grid (the same
        hexagon has the same id in every area, and the city merge keeps it once).
    """

    boundary: Any
    doc: dict[str, Any]
    whole: Keyed[WalkNetwork] | None = None


def study_area(
    cfg: StudyConfig, network: Keyed[WalkNetwork], source: str, ctx: RunContext
) -> tuple[Keyed[WalkNetwork], Area | None]:
    """The area stage: the selected area's network and its :class:`Area`.

    Without a selected area (``cfg.area`` None) the network is returned as it is, with
    no area. ``cfg`` gives the area's table, its boundary file's folder and the walking
    speeds and levels of the default halo (:func:`halo_m`).
    """
    area = cfg.area_section()
    if area is None:
        return network, None
    ctx.stage("area")
    boundary = area_boundary(cfg, area, source)
    halo = halo_m(cfg) if area.halo_m is None else float(area.halo_m)
    net, doc = area_network(network, boundary, area=area, halo_m=halo, store=ctx.store)
    ctx.say(f"area {area.name!r}: boundary plus a {halo:.0f} m halo ({doc['halo_source']})")
    return net, Area(boundary, doc, whole=network)
