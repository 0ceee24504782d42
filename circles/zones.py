"""Communities derived as network service zones from centre points.

No village boundary polygons are public in China; what exists are centre points (the
village committee, the township seat). :func:`service_zones` turns such points into
communities: every network node is assigned to the centre it can reach soonest on foot
(one multi-source Dijkstra from all centres, :func:`circles.access.nearest_seconds`, whose
``sources`` say which centre won), and a zone's polygon is the union of the Voronoi cells
of its nodes, clipped to a boundary (the county) or, without one, to the network's convex
hull buffered by :data:`HULL_BUFFER_M`.

Every output row says ``derived = "service zone from centre points"`` (and
``derived_zh``): these are not official boundaries.

Direction: "the centre a resident can reach soonest" is the walk *from* the node *to* the
centre, which is exactly what the engine computes on the reversed graph (one-way
``oneway:foot`` ways are respected). A centre joins the network at the nearest point of
the nearest edge (:func:`circles.facilities.snap`), like a facility.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Final

import geopandas as gpd
import numpy as np
import shapely

from circles._errors import InputDataError
from circles.access import AccessGraph, nearest_seconds
from circles.facilities import STATUS_SNAPPED, snap
from circles.network import WalkNetwork
from circles.settings import MAX_SNAP_M, WALK_SPEEDS_M_S, WGS84

__all__ = [
    "DERIVED_LABEL",
    "DERIVED_LABEL_ZH",
    "HULL_BUFFER_M",
    "ServiceZones",
    "grid_centres",
    "service_zones",
]

logger = logging.getLogger(__name__)

#: Value of the ``derived`` column of every derived zone.
DERIVED_LABEL: Final = "service zone from centre points"
#: Chinese label of the same (``derived_zh`` column).
DERIVED_LABEL_ZH: Final = "由中心点推算的服务区（非官方边界）"
#: Buffer in metres around the network's convex hull that clips zones without a boundary.
HULL_BUFFER_M: Final = 100.0


@dataclass(frozen=True)
class ServiceZones:
    """Derived communities and the node assignment behind them.

    Attributes
    ----------
    zones : geopandas.GeoDataFrame
        EPSG:4326, one row per centre: ``community_id``, ``name``, ``derived``,
        ``derived_zh``, ``centre_lon``, ``centre_lat`` (WGS84), ``centre_snap_m``,
        ``centre_status`` (``snapped`` or why not), ``n_nodes`` and the polygon (empty
        for a centre that reaches no node).
    node_zone : numpy.ndarray
        int64 per network node: position (row) of its zone in ``zones``, -1 for a node
        that reaches no centre (only possible with ``max_minutes`` or one-way ways).
    node_seconds : numpy.ndarray
        Seconds from each node to its zone's centre (``inf`` where unassigned).
    """

    zones: gpd.GeoDataFrame
    node_zone: np.ndarray
    node_seconds: np.ndarray


def grid_centres(
    network: WalkNetwork, *, spacing_m: float, max_distance_m: float | None = None
) -> gpd.GeoDataFrame:
    """A regular grid of centre points over the network, kept where a node is near.

    Points are laid every ``spacing_m`` metres over the network's bounding box (in its
    metric CRS) and kept when a network node lies within ``max_distance_m`` (default
    ``min(spacing_m / 2, MAX_SNAP_M)``, so that every kept point snaps to the network):
    a stand-in for community centres where none are known.

    Returns
    -------
    geopandas.GeoDataFrame
        EPSG:4326 points with ``centre_id`` (``g<row>_<col>``).
    """
    if not isinstance(network, WalkNetwork):
        raise InputDataError(f"grid_centres() needs a WalkNetwork; got {type(network).__name__}")
    if isinstance(spacing_m, bool) or not isinstance(spacing_m, (int, float)) or spacing_m <= 0:
        raise InputDataError(f"spacing_m must be a positive number of metres; got {spacing_m!r}")
    near_m = min(spacing_m / 2.0, MAX_SNAP_M) if max_distance_m is None else max_distance_m
    xs = np.arange(network.x.min() + spacing_m / 2, network.x.max() + spacing_m / 2, spacing_m)
    ys = np.arange(network.y.min() + spacing_m / 2, network.y.max() + spacing_m / 2, spacing_m)
    gx, gy = np.meshgrid(xs, ys)
    rr, cc = np.meshgrid(np.arange(ys.size), np.arange(xs.size), indexing="ij")
    pts = shapely.points(gx.ravel(), gy.ravel())
    tree = shapely.STRtree(shapely.points(network.x, network.y))
    hit = tree.query(pts, predicate="dwithin", distance=near_m)[0]
    keep = np.zeros(pts.size, bool)
    keep[np.unique(hit)] = True
    ids = [f"g{r:02d}_{c:02d}" for r, c in zip(rr.ravel()[keep], cc.ravel()[keep], strict=True)]
    return gpd.GeoDataFrame({"centre_id": ids}, geometry=pts[keep], crs=network.crs).to_crs(WGS84)


def _voronoi_cells(x: np.ndarray, y: np.ndarray, extent: Any) -> np.ndarray:
    """Voronoi cell (clipped to ``extent``) of every point; duplicates share a cell."""
    xy = np.column_stack([x, y])
    uniq, inverse = np.unique(xy, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    pts = shapely.points(uniq)
    if uniq.shape[0] == 1:
        return np.full(x.size, extent, dtype=object)
    cells = np.asarray(
        shapely.get_parts(shapely.voronoi_polygons(shapely.multipoints(pts), extend_to=extent))
    )
    # match cells to their generating point (each point lies inside exactly one cell)
    pi, ci = shapely.STRtree(cells).query(pts, predicate="intersects")
    order = np.lexsort((ci, pi))
    pi, ci = pi[order], ci[order]
    first = np.ones(pi.size, bool)
    first[1:] = pi[1:] != pi[:-1]
    cell_of = np.full(uniq.shape[0], -1, dtype=np.int64)
    cell_of[pi[first]] = ci[first]
    if (cell_of < 0).any():  # pragma: no cover - a point always lies in its cell
        raise InputDataError("Voronoi cells could not be matched to network nodes")
    return cells[cell_of][inverse]


def service_zones(
    network: WalkNetwork,
    centres: gpd.GeoDataFrame,
    *,
    id_column: str = "centre_id",
    name_column: str | None = None,
    boundary: Any = None,
    speed_m_s: float = WALK_SPEEDS_M_S["adult"],
    max_snap_m: float = MAX_SNAP_M,
    max_minutes: float | None = None,
) -> ServiceZones:
    """Derive communities as network service zones of centre points.

    Parameters
    ----------
    network : WalkNetwork
    centres : geopandas.GeoDataFrame
        Community centre points (any CRS; GCJ-02 data must be converted first with
        :func:`circles.coords.geometry_to_wgs84`) with a unique ``id_column``.
    id_column : str, default "centre_id"
        Column of ``centres`` that becomes ``community_id``.
    name_column : str, optional
        Column that becomes ``name`` (default: the id).
    boundary : shapely geometry or geopandas.GeoDataFrame/GeoSeries, optional
        Zones are clipped to it (e.g. the county polygon). A bare shapely geometry is
        taken as EPSG:4326. Default: the network's convex hull buffered by
        :data:`HULL_BUFFER_M` metres.
    speed_m_s : float, default 1.2
        Walking speed; only matters with ``max_minutes`` or for ``node_seconds`` (the
        assignment itself depends on distances alone at a uniform speed).
    max_snap_m : float, default 200
        A centre farther than this from every walkable edge is not snapped
        (``centre_status``) and gets no nodes.
    max_minutes : float, optional
        Nodes farther than this from every centre stay unassigned (``-1``); default: no
        limit, so on a connected two-way network every node is assigned.

    Returns
    -------
    ServiceZones

    Raises
    ------
    InputDataError
        No centres, missing or duplicate ids, no CRS, or no centre on the network.
    """
    if not isinstance(network, WalkNetwork):
        raise InputDataError(f"service_zones() needs a WalkNetwork; got {type(network).__name__}")
    if not isinstance(centres, gpd.GeoDataFrame) or centres.crs is None:
        raise InputDataError("centres must be a GeoDataFrame of points with a CRS")
    if len(centres) == 0:
        raise InputDataError("no centres given; a service zone needs at least one centre")
    for col in (id_column, name_column):
        if col is not None and col not in centres:
            raise InputDataError(
                f"centres have no column {col!r}; columns are {list(centres.columns)}"
            )
    ids = centres[id_column].astype(str)
    if ids.duplicated().any():
        raise InputDataError(f"duplicate centre ids: {sorted(set(ids[ids.duplicated()]))[:5]}")
    if not speed_m_s > 0:
        raise InputDataError(f"speed_m_s must be positive; got {speed_m_s!r}")
    geom = centres.geometry
    if not bool(np.all(geom.geom_type.to_numpy() == "Point")):
        geom = geom.representative_point()
    snapped = snap(network, geom, max_snap_m=max_snap_m)
    ok = (snapped["status"] == STATUS_SNAPPED).to_numpy()
    if not ok.any():
        raise InputDataError(
            f"no centre lies within {max_snap_m} m of the walking network; check the "
            "centres' coordinates and coordinate system (GCJ-02 must be converted)"
        )
    if (~ok).any():
        logger.warning(
            "%d of %d centres are not on the network (%s) and get no zone",
            int((~ok).sum()),
            ok.size,
            ", ".join(ids[~ok].tolist()[:10]),
        )
    graph = AccessGraph.from_network(network, network.edge_seconds(speed_m_s))
    pos = np.flatnonzero(ok)
    limit = np.inf if max_minutes is None else 60.0 * float(max_minutes)
    seconds, nearest = nearest_seconds(
        graph,
        snapped["edge"].to_numpy(np.int64)[pos],
        snapped["frac"].to_numpy(float)[pos],
        snapped["snap_m"].to_numpy(float)[pos] / speed_m_s,
        limit_s=limit,
    )
    node_zone = np.where(nearest >= 0, pos[np.maximum(nearest, 0)], -1).astype(np.int64)
    n_unassigned = int((node_zone < 0).sum())
    if n_unassigned:
        logger.warning("%d network nodes reach no centre and belong to no zone", n_unassigned)

    # polygons: Voronoi cells of the nodes, dissolved per zone, clipped to the boundary
    if boundary is None:
        hull = shapely.convex_hull(shapely.multipoints(np.column_stack([network.x, network.y])))
        clip = shapely.buffer(hull, HULL_BUFFER_M)
    else:
        clip = _boundary_in(boundary, network.crs)
    extent = shapely.envelope(
        shapely.union(clip, shapely.multipoints(np.column_stack([network.x, network.y])))
    )
    cells = _voronoi_cells(network.x, network.y, shapely.buffer(extent, 1.0))
    assigned = node_zone >= 0
    frame = gpd.GeoDataFrame(
        {"zone": node_zone[assigned]}, geometry=cells[assigned], crs=network.crs
    )
    dissolved = frame.dissolve(by="zone")
    polys = np.full(len(centres), shapely.Polygon(), dtype=object)
    zone_idx = dissolved.index.to_numpy(np.int64)
    polys[zone_idx] = shapely.intersection(dissolved.geometry.to_numpy(), clip)
    polys = shapely.make_valid(polys)
    n_nodes = np.bincount(node_zone[assigned], minlength=len(centres))
    wgs = geom.to_crs(WGS84)
    zones = gpd.GeoDataFrame(
        {
            "community_id": ids.to_numpy(),
            "name": (
                centres[name_column].astype(str).to_numpy()
                if name_column is not None
                else ids.to_numpy()
            ),
            "derived": DERIVED_LABEL,
            "derived_zh": DERIVED_LABEL_ZH,
            "centre_lon": wgs.x.to_numpy(),
            "centre_lat": wgs.y.to_numpy(),
            "centre_snap_m": snapped["snap_m"].to_numpy(float),
            "centre_status": snapped["status"].to_numpy(object),
            "n_nodes": n_nodes,
        },
        geometry=polys,
        crs=network.crs,
    ).to_crs(WGS84)
    extra = [
        c
        for c in centres.columns
        if c not in zones.columns and c not in (centres.geometry.name, id_column)
    ]
    for c in extra:
        zones[c] = centres[c].to_numpy()
    logger.info(
        "%d service zones from %d centres; %d of %d nodes assigned",
        int((n_nodes > 0).sum()),
        len(centres),
        int(assigned.sum()),
        network.n_nodes,
    )
    return ServiceZones(
        zones=zones,
        node_zone=node_zone,
        node_seconds=np.where(assigned, seconds, np.inf),
    )


def _boundary_in(boundary: Any, crs: Any) -> Any:
    """The boundary as one shapely geometry in ``crs``."""
    if isinstance(boundary, (gpd.GeoDataFrame, gpd.GeoSeries)):
        if boundary.crs is None:
            raise InputDataError("boundary has no CRS")
        geoms = boundary.to_crs(crs).geometry.to_numpy()
    elif isinstance(boundary, shapely.Geometry):
        geoms = gpd.GeoSeries([boundary], crs=WGS84).to_crs(crs).to_numpy()
    else:
        raise InputDataError(
            "boundary must be a shapely geometry (EPSG:4326) or a GeoDataFrame/GeoSeries; "
            f"got {type(boundary).__name__}"
        )
    out = shapely.union_all(shapely.make_valid(np.asarray(geoms)))
    if shapely.is_empty(out):
        raise InputDataError("boundary is empty")
    return out
