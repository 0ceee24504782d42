"""Community isochrones and service areas (the isochrones stage).

Community isochrones (:func:`community_isochrones`) are walk-time polygons from each
community's centre; service areas (:func:`service_areas`) are where each category's
facilities are reached from within each level. The polygons are drawn by
:mod:`circles.geometry` (see its docstring for the methods and their guarantees).

Community isochrones with the ``"network"`` method come from one bounded search per
centre (sparse rows, :func:`circles.access.seconds_from_nodes`) and
:func:`circles.geometry.reach_polygons`: street chains reached whole are drawn by their
buffers, drawn once per network, and each level is built on the one below. The
communities are drawn on one thread per core (:data:`COMMUNITY_THREADS`; one inside
:func:`one_thread`), while the service areas are drawn in a thread of their own.

Service areas of a category with the ``"network"`` method are drawn per *reach group*
(:func:`reach_groups`: facilities whose walking areas meet on the network) and joined;
each group's levels, and each facility's, are drawn by
:func:`circles.geometry.reach_polygons` from the nodes it reaches (the same street
chains' buffers as the community isochrones, each level on the one below).
Each group's area depends on its own facilities only, so a memo (the study's disk
cache, :class:`GroupMemo`) lets an update redraw just the groups its facilities touch;
the result is the same with or without the memo (tested).

:func:`study_isochrones` is the stage of a run: community isochrones (independent of
facilities: cached once) and service areas per category (:class:`ServiceAreas`, drawn
in a background thread from before the community isochrones, while the run goes on).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Literal

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from shapely.geometry.base import BaseGeometry

from circles._errors import InputDataError
from circles.access import AccessGraph, Entries, SnappedArrays, cached_graph, seconds_from_nodes
from circles.cache import FRAME, Keyed, array_digest, digest, frame_digest
from circles.communities import read_centres
from circles.config import IsochronesSection, WalkSection
from circles.facilities import STATUS_SNAPPED
from circles.geometry import (
    CONCAVE_BUFFER_M,
    CONCAVE_RATIO,
    GEOMETRY_ENGINE,
    METHODS,
    NETWORK_BUFFER_M,
    PRECISION_M,
    QUAD_SEGS,
    UNION,
    StreetChains,
    area_km2,
    directed_edge_cost,
    empty_polygon,
    facility_edge_pieces,
    isochrone_polygons,
    layer_frame,
    map_tasks,
    nested_levels,
    one_thread,
    polygonal,
    reach_polygons,
    reached_segments,
    threads_allowed,
    to_wgs84,
)
from circles.network import WalkNetwork
from circles.result import Progress, RunContext, noop

__all__ = [
    "CONCAVE_BUFFER_M",
    "CONCAVE_RATIO",
    "GEOMETRY_ENGINE",
    "METHODS",
    "NETWORK_BUFFER_M",
    "PRECISION_M",
    "QUAD_SEGS",
    "GroupMemo",
    "ServiceAreas",
    "area_km2",
    "community_centres",
    "community_isochrones",
    "directed_edge_cost",
    "facility_edge_pieces",
    "isochrone_polygons",
    "one_thread",
    "reach_groups",
    "reached_segments",
    "service_areas",
    "study_isochrones",
    "threads_allowed",
    "to_wgs84",
]

logger = logging.getLogger(__name__)


def community_centres(network: WalkNetwork, communities: Any, centres: Any = None) -> np.ndarray:
    """Network node (position) at each community's centre.

    The centre is the configured point (``centres``: GeoSeries of points aligned with
    ``communities``, e.g. the 居委会/村委会 office; missing entries fall back) or else the
    community's centroid; it is then moved to the nearest network node, preferring nodes
    inside the community.
    """
    from scipy.spatial import cKDTree

    comm = communities.to_crs(network.crs)
    pts = comm.geometry.representative_point()
    cen = comm.geometry.centroid
    inside_centroid = cen.within(comm.geometry)
    pts = gpd.GeoSeries(np.where(inside_centroid, cen, pts), crs=network.crs)
    if centres is not None:
        c = gpd.GeoSeries(centres, crs=communities.crs).to_crs(network.crs)
        have = c.notna().to_numpy() & ~c.is_empty.to_numpy()
        pts = gpd.GeoSeries(np.where(have, c.to_numpy(), pts.to_numpy()), crs=network.crs)
    tree = cKDTree(np.column_stack([network.x, network.y]))
    xy = np.column_stack([pts.x, pts.y])
    _, nearest = tree.query(xy)
    out = np.asarray(nearest, dtype=np.int64)
    node_pts = shapely.points(network.x, network.y)
    for i, geom in enumerate(comm.geometry.to_numpy()):
        if not shapely.contains(geom, node_pts[out[i]]):
            cand = tree.query_ball_point(xy[i], r=2000.0)
            if cand:
                cand = np.asarray(cand)
                cand = cand[shapely.contains(geom, node_pts[cand])]
                if cand.size:
                    d = np.hypot(network.x[cand] - xy[i, 0], network.y[cand] - xy[i, 1])
                    out[i] = cand[np.argmin(d)]
    return out


def community_isochrones(
    graph: Any,
    communities: Any,
    node_weight: np.ndarray,
    *,
    levels_minutes: Sequence[float],
    method: Literal["network", "concave"] = "network",
    centres: Any = None,
    buffer_m: float = NETWORK_BUFFER_M,
) -> Any:
    """Walk-time isochrones from every community's centre (the ``isochrones`` layer).

    Parameters
    ----------
    graph : circles.access.AccessGraph
        Network and edge costs (seconds).
    communities : geopandas.GeoDataFrame
        With ``community_id``.
    node_weight : numpy.ndarray
        Residents per node; the ``residents`` column sums it over the reached nodes.
    levels_minutes : sequence of float
        Walk-time levels in minutes.

    Returns
    -------
    geopandas.GeoDataFrame
        EPSG:4326: ``community_id``, ``minutes``, ``area_km2``, ``residents``,
        ``centre_node_id``, ``method``; MultiPolygon geometry.
    """
    net = graph.network
    levels = [float(m) for m in levels_minutes]
    lev_s = [60.0 * m for m in levels]
    origins = community_centres(net, communities, centres)
    reach = seconds_from_nodes(graph, origins, limit_s=max(lev_s))
    if method == "network":
        chains = StreetChains.of(net)

        def draw(i: int) -> list[BaseGeometry]:
            nodes, secs = reach.reached(i)
            return reach_polygons(chains, nodes, secs, graph.edge_cost, lev_s, buffer_m=buffer_m)

    else:

        def draw(i: int) -> list[BaseGeometry]:
            return isochrone_polygons(
                net, reach[i], graph.edge_cost, lev_s, method=method, threads=False
            )

    drawn = _each_community(draw, len(origins))
    rows: list[dict[str, Any]] = []
    geoms: list[BaseGeometry] = []
    for i, cid in enumerate(communities["community_id"].tolist()):
        nodes, secs = reach.reached(i)
        weight = node_weight[nodes]
        for m, lev, poly in zip(levels, lev_s, drawn[i], strict=True):
            rows.append(
                {
                    "community_id": cid,
                    "minutes": m,
                    "residents": float(weight[secs <= lev].sum()),
                    "centre_node_id": int(net.node_id[origins[i]]),
                    "method": method,
                }
            )
            geoms.append(poly)
    return layer_frame(rows, geoms, net.crs)


#: Threads drawing community isochrones at once (GEOS releases the GIL): one per core.
COMMUNITY_THREADS = max(1, min(4, os.cpu_count() or 1))


def _each_community(draw: Callable[[int], list[BaseGeometry]], n: int) -> list[list[BaseGeometry]]:
    """``[draw(i) for i in range(n)]``, on :data:`COMMUNITY_THREADS` threads unless
    :func:`one_thread` says otherwise (the result is the same either way)."""
    workers = min(COMMUNITY_THREADS, n) if threads_allowed() else 1
    if workers <= 1:
        return [draw(i) for i in range(n)]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="circles-iso") as pool:
        return list(pool.map(draw, range(n)))


def service_areas(
    graph: Any,
    facilities: Any,
    node_weight: np.ndarray,
    *,
    levels_minutes: Sequence[float],
    method: Literal["network", "concave"] = "network",
    speed_m_s: float,
    per_facility: bool = True,
    buffer_m: float = NETWORK_BUFFER_M,
    memo: Any = None,
    entries: pd.DataFrame | None = None,
) -> Any:
    """Service areas: where each facility is reached from within N minutes.

    For every snapped facility one row per level (``kind = "facility"``), and for every
    category the union over its facilities (``kind = "category"``: the category's
    N-minute circle), computed from the multi-source times, which equals the union of
    the facility areas.

    With the ``"network"`` method a category's areas are drawn per *reach group*
    (:func:`reach_groups`: facilities whose walking areas touch through the network) and
    then joined, so that a facility update redraws only the groups it touches: ``memo``
    (``get(key) -> list of polygons or None`` and ``put(key, polygons)``, e.g. a disk
    cache) keeps each group's polygons by a content key of the group's facilities (their
    edge, position and access time) and the drawing parameters; the caller makes the
    key unique to the network and walking costs by its own prefix. The result does not
    depend on what ``memo`` holds.

    ``entries`` (:func:`circles.entries.area_entries`) gives area facilities all their
    entries; a facility's area is still one row per level, drawn from all of them.

    Returns
    -------
    geopandas.GeoDataFrame
        EPSG:4326: ``kind``, ``category``, ``facility_id``, ``minutes``, ``area_km2``,
        ``residents``, ``method``.
    """
    from scipy.sparse.csgraph import dijkstra

    net = graph.network
    levels = [float(m) for m in levels_minutes]
    lev_s = [60 * m for m in levels]
    fac = facilities[facilities["status"] == "snapped"]
    to_fac = graph.edge_cost[:, ::-1]
    rows: list[dict[str, Any]] = []
    geoms: list[BaseGeometry] = []
    n = net.n_nodes
    cats = fac["category"].to_numpy(object)
    ids = fac["facility_id"].astype(str).to_numpy()
    if len(fac) == 0:
        return layer_frame(rows, geoms, net.crs)
    ent = SnappedArrays(fac, entries).all_entries(speed_m_s)
    mat = graph.with_entries(ent)

    def add_rows(
        polys: list[BaseGeometry], secs: np.ndarray, kind: str, cat: str, fid: str | None
    ) -> None:
        """One row per level: the polygons and the residents within their times."""
        for m, poly in zip(levels, polys, strict=True):
            rows.append(
                {
                    "kind": kind,
                    "category": cat,
                    "facility_id": fid,
                    "minutes": m,
                    "residents": float(node_weight[secs <= 60 * m].sum()),
                    "method": method,
                }
            )
            geoms.append(poly)

    def draw(sel: np.ndarray, secs: np.ndarray, kind: str, cat: str, fid: str | None) -> None:
        """Polygons of the facilities ``sel`` (times ``secs``), one row per level."""
        e = _edge_entries(ent.select(sel))

        def extra(level: float) -> tuple[np.ndarray, np.ndarray]:
            return facility_edge_pieces(net, graph.edge_cost, e.edge, e.frac, e.access_s, level)

        if method == "network":  # drawn as the categories' areas are
            nodes = np.flatnonzero(secs <= max(lev_s))
            polys = reach_polygons(
                StreetChains.of(net), nodes, secs[nodes], to_fac, lev_s, buffer_m=buffer_m,
                extra_pieces=extra,
            )  # fmt: skip
        else:
            polys = isochrone_polygons(
                net, secs, to_fac, lev_s, method=method, buffer_m=buffer_m, extra_pieces=extra
            )
        add_rows(polys, secs, kind, cat, fid)

    for cat in list(dict.fromkeys(cats.tolist())):
        idx = np.flatnonzero(cats == cat)
        if method == "network":
            d, _, src = dijkstra(
                mat,
                directed=True,
                indices=n + idx,
                min_only=True,
                limit=max(lev_s),
                return_predecessors=True,
            )
            # the source of each node as a position in idx (-1: not reached; scipy marks
            # those with a negative number)
            pos = np.full(n + len(fac), -1, dtype=np.int64)
            pos[n + idx] = np.arange(idx.size)
            src = np.asarray(src[:n], dtype=np.int64)
            source = np.where(src >= 0, pos[np.maximum(src, 0)], -1)
            polys = _grouped_polygons(
                net, graph.edge_cost, d[:n], source, ent.select(idx), lev_s,
                buffer_m=buffer_m, memo=memo,
            )  # fmt: skip
            add_rows(polys, d[:n], "category", cat, None)
        else:
            d = dijkstra(mat, directed=True, indices=n + idx, min_only=True, limit=max(lev_s))[:n]
            draw(idx, d, "category", cat, None)
        if not per_facility:
            continue
        for k in idx.tolist():
            dk = dijkstra(mat, directed=True, indices=n + k, limit=max(lev_s))[:n]
            draw(np.array([k]), dk, "facility", cat, str(ids[k]))
    return layer_frame(rows, geoms, net.crs)


def reach_groups(
    network: WalkNetwork,
    node_seconds: np.ndarray,
    node_source: np.ndarray,
    limit_s: float,
    *,
    facility_edge: np.ndarray | None = None,
    entries: Entries | None = None,
) -> np.ndarray:
    """Group facilities whose walking areas meet on the network.

    Two facilities are in one group when an edge has both ends reached within
    ``limit_s`` from different facilities, or when a node where a facility's walk
    starts (an end of an entry's edge, an entry node) is reached from another facility
    (chains of such links join groups). Then every node a
    facility reaches within ``limit_s`` is nearest to a facility of its own group (along
    the walk, the nearest facility changes only across such links), so a group's area
    drawn from its own facilities depends on those facilities only, and the union of the
    groups' areas is the category's area.

    Parameters
    ----------
    network : WalkNetwork
    node_seconds : numpy.ndarray
        Seconds from each node to the nearest facility (multi-source), inf if not reached.
    node_source : numpy.ndarray
        The nearest facility of each node (0..k-1), -1 if not reached.
    limit_s : float
        The largest level in seconds.
    facility_edge : numpy.ndarray, optional
        The edge each point facility is snapped to (its walk starts at the edge's ends).
    entries : Entries, optional
        Instead of ``facility_edge``: where each facility is entered.

    Returns
    -------
    numpy.ndarray
        A group label (0..g-1) per facility.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if entries is None:
        if facility_edge is None:
            raise InputDataError("reach_groups needs facility_edge or entries")
        fe = np.asarray(facility_edge, np.int64)
        entries = Entries.at_points(fe, np.zeros(fe.size), np.zeros(fe.size))
    src = np.asarray(node_source, np.int64)
    k = entries.n_facilities
    reached = (np.asarray(node_seconds) <= limit_s) & (src >= 0)
    su, sv = src[network.u], src[network.v]
    meet = reached[network.u] & reached[network.v] & (su != sv)
    a, b = [su[meet]], [sv[meet]]
    on_edge = entries.edge >= 0
    e = np.maximum(entries.edge, 0)
    starts = (  # a facility's first steps: (facility, node)
        (entries.facility[on_edge], network.u[e[on_edge]]),
        (entries.facility[on_edge], network.v[e[on_edge]]),
        (entries.facility[~on_edge], entries.node[~on_edge]),
    )
    for fac, end in starts:
        hit = reached[end] & (src[end] != fac)
        a.append(fac[hit])
        b.append(src[end][hit])
    rows, cols = np.concatenate(a), np.concatenate(b)
    links = coo_matrix((np.ones(rows.size, np.int8), (rows, cols)), shape=(k, k))
    _, labels = connected_components(links, directed=False)
    return np.asarray(labels, dtype=np.int64)


def _edge_entries(entries: Entries) -> Entries:
    """The entries on edges (those that need a stretch of their own edge drawn)."""
    on_edge = np.flatnonzero(entries.edge >= 0)
    return Entries(
        entries.n_facilities,
        entries.facility[on_edge],
        entries.edge[on_edge],
        entries.frac[on_edge],
        entries.node[on_edge],
        entries.access_s[on_edge],
    )


def _group_key(entries: Entries, lev_s: Sequence[float], buffer_m: float) -> str:
    """Content key of a reach group: its facilities' entries in a canonical order (the
    group's area depends on where its facilities are entered, not on which facility an
    entry belongs to), the levels."""
    order = np.lexsort((entries.access_s, entries.node, entries.frac, entries.edge))
    point = bool((entries.node < 0).all())
    arrays: tuple[np.ndarray, ...] = (
        entries.edge[order].astype(np.int64),
        entries.frac[order].astype(float),
        entries.access_s[order].astype(float),
    )
    if not point:  # point facilities keep the key they always had
        arrays = (*arrays, entries.node[order].astype(np.int64))
    facilities = array_digest(*arrays)
    levels = [float(x) for x in lev_s]
    return digest(
        "reach_group",
        facilities,
        levels,
        float(buffer_m),
        QUAD_SEGS,
        GEOMETRY_ENGINE,
        SERVICE_AREA_DRAWING,
    )


#: How a reach group's levels are drawn (part of the cache keys of service areas):
#: :func:`circles.geometry.reach_polygons`, each level on the one below from the street
#: chains' buffers (before: every level from all its pieces, nested by a second union).
SERVICE_AREA_DRAWING = "reach_polygons"


def _grouped_polygons(
    network: WalkNetwork,
    edge_cost: np.ndarray,
    secs: np.ndarray,
    source: np.ndarray,
    entries: Entries,
    lev_s: Sequence[float],
    *,
    buffer_m: float,
    memo: Any,
) -> list[BaseGeometry]:
    """A category's ``"network"`` polygons per level, drawn per reach group
    (:func:`circles.geometry.reach_polygons`, the groups on threads) and joined."""
    to_fac = edge_cost[:, ::-1]
    groups = reach_groups(network, secs, source, max(lev_s), entries=entries)
    k = entries.n_facilities
    order = sorted(range(len(lev_s)), key=lambda i: float(lev_s[i]))
    levels = [float(lev_s[i]) for i in order]
    drawn: dict[str, list[BaseGeometry]] = {}
    chains = StreetChains.of(network)
    tasks: list[Callable[[], list[BaseGeometry]]] = []
    keys: list[str] = []
    for g in np.unique(groups).tolist():
        members = np.flatnonzero(groups == g)
        own = entries.select(members)
        key = _group_key(own, levels, buffer_m)
        raw = memo.get(key) if memo is not None else None
        if raw is not None:
            drawn[key] = raw
            continue
        in_group = np.zeros(k + 1, bool)
        in_group[members] = True  # index k (= -1) stays False: not reached
        nodes = np.flatnonzero(in_group[source] & (secs <= levels[-1]))
        e = _edge_entries(own)

        def extra(level: float, e: Entries = e) -> tuple[np.ndarray, np.ndarray]:
            return facility_edge_pieces(network, edge_cost, e.edge, e.frac, e.access_s, level)

        def draw(nodes: np.ndarray = nodes, extra: Any = extra) -> list[BaseGeometry]:
            return reach_polygons(
                chains, nodes, secs[nodes], to_fac, levels, buffer_m=buffer_m, extra_pieces=extra
            )

        tasks.append(draw)
        keys.append(key)
    # the groups to draw, in one pool of threads (each draws its levels one on the other)
    for key, polys in zip(keys, map_tasks(lambda draw: draw(), tasks, threads=None), strict=True):
        drawn[key] = polys
        if memo is not None:
            memo.put(key, polys)
    ordered = sorted(drawn.items())  # a fixed order: the same bits in every run
    joined = []
    for j in range(len(levels)):
        parts = [raw[j] for _, raw in ordered if not raw[j].is_empty]
        if len(parts) == 1:
            joined.append(parts[0])
        else:
            joined.append(polygonal(UNION(np.asarray(parts))) if parts else empty_polygon())
    # one group: nested as drawn (each level on the one below); several: joined, then
    # nested by a union with the level below
    nested = joined if len(ordered) <= 1 else nested_levels(joined, on_grid=False)
    out: list[BaseGeometry] = [empty_polygon()] * len(lev_s)
    for i, poly in zip(order, nested, strict=True):
        out[i] = poly
    return out


# --------------------------------------------------------------------------- the stage


class GroupMemo:
    """Polygons of service-area reach groups (:func:`circles.isochrones.reach_groups`) in
    the cache: one GeoParquet entry per group, keyed by the network and walking costs
    (``prefix``) and the group's content key."""

    def __init__(self, store: Any, prefix: str, crs: str) -> None:
        self._store = store
        self._prefix = prefix
        self._crs = crs

    def _key(self, key: str) -> str:
        return digest("service_area_group", self._prefix, key)

    def get(self, key: str) -> list[Any] | None:
        """The group's polygons per level (None: not cached)."""
        if not self._store.enabled:
            return None
        got = FRAME.load(self._store, "service_area_group", self._key(key))
        if got is None:
            return None
        frame = got.sort_values("level")
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
        FRAME.save(self._store, "service_area_group", self._key(key), frame)


#: Categories of service areas drawn at once (each with its reach groups on threads).
AREA_THREADS = 2


class ServiceAreas:
    """A run's service areas, per category: read from the cache or drawn when asked for.

    :meth:`start` draws the categories missing from the cache in a background thread
    (GEOS work, mostly without the GIL) while the run goes on. :mod:`circles.outputs`
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
        self.key: str | None = digest("service_areas_all", list(keys.values())) if keys else None
        self._snapped = snapped
        self._draw = draw
        self._store = store
        self._say = say
        self._parts: dict[str, gpd.GeoDataFrame] = {}
        self._value: gpd.GeoDataFrame | None = None
        self._done = snapped is None
        self._future: Future[dict[str, gpd.GeoDataFrame]] | None = None

    @classmethod
    def none(cls) -> ServiceAreas:
        """No service areas (``[isochrones] service_areas = false``)."""
        return cls({}, None, None, None, noop)

    def start(self) -> None:
        """Start drawing the categories missing from the cache in a background thread."""
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
        """The categories ``cats`` drawn and cached, two at a time: a category whose
        facilities form one reach group draws its levels one on the other, on one
        thread, so the categories share the cores (the result is the same either way)."""
        snapped, draw = self._snapped, self._draw
        assert snapped is not None
        assert draw is not None

        def one(cat: str) -> tuple[str, gpd.GeoDataFrame]:
            part = draw(snapped[snapped["category"] == cat])
            return cat, FRAME.save(self._store, "service_areas", self.keys[cat], part)

        return dict(map_tasks(one, cats, threads=None, workers=AREA_THREADS))

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
                got = FRAME.load(self._store, "service_areas", self.keys[cat])
                if got is not None:
                    self._parts[cat] = got
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


def study_isochrones(
    network: Keyed[WalkNetwork],
    communities: Keyed[gpd.GeoDataFrame],
    facilities: gpd.GeoDataFrame,
    weight: np.ndarray,
    cost: np.ndarray,
    section: IsochronesSection,
    walk: WalkSection,
    ctx: RunContext,
    entries: pd.DataFrame | None = None,
) -> tuple[Keyed[gpd.GeoDataFrame] | None, ServiceAreas]:
    """The isochrones stage: community isochrones (cached) and the service areas.

    Community isochrones do not depend on facilities, so they are drawn once per
    network, communities, walking costs and residents. Service areas are keyed per
    category (by the category's snapped facilities), so a facility update redraws only
    the categories it touched; they are returned undrawn (:class:`ServiceAreas`).

    Parameters
    ----------
    network, communities : Keyed
        The walking network and the communities, with their keys.
    facilities : geopandas.GeoDataFrame
        All facilities (the snapped ones get service areas).
    weight : numpy.ndarray
        Residents per node.
    cost : numpy.ndarray
        Seconds per edge of the main walking profile, ``(n_edges, 2)``.
    section : IsochronesSection
        ``[isochrones]``: method, buffer, service areas, per facility, centres file.
    walk : WalkSection
        ``[walk]``: levels and the main walking speed (the access walk to a facility).
    ctx : RunContext
    entries : pandas.DataFrame, optional
        Where area facilities are entered (:func:`circles.entries.study_entries`).

    Returns
    -------
    tuple
        The community isochrones with their key (None without ``[isochrones] enabled``)
        and the service areas.
    """
    if not section.enabled:
        return None, ServiceAreas.none()
    ctx.stage("isochrones")
    levels_minutes = walk.levels_minutes
    speed_m_s = walk.resolved_speed_m_s
    method, buffer_m, per_facility = section.method, section.buffer_m, section.per_facility
    with_service_areas = section.service_areas
    centres = ctx.resolve(section.centres)
    levels = list(levels_minutes)
    cost_sha = array_digest(cost)
    weight_sha = array_digest(weight)
    centres_sha = ctx.inputs.sha("centres", centres) if centres else None
    graph: list[AccessGraph] = []
    graph_lock = threading.Lock()

    def get_graph() -> AccessGraph:
        with graph_lock:  # the service areas' thread and the isochrones share one
            if not graph:
                graph.append(cached_graph(network, cost, ctx.store))
            return graph[0]

    areas = ServiceAreas.none()
    if with_service_areas:
        snapped = facilities[facilities["status"] == STATUS_SNAPPED]
        prefix = digest("service_area_groups", network.key, cost_sha)
        memo = GroupMemo(ctx.store, prefix, network.value.crs)

        def draw_areas(fac: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
            return service_areas(
                get_graph(),
                fac,
                weight,
                levels_minutes=levels,
                method=method,  # type: ignore[arg-type]
                speed_m_s=speed_m_s,
                per_facility=per_facility,
                buffer_m=buffer_m,
                memo=memo,
                entries=entries,
            )

        keys: dict[str, str] = {}
        cols = ["facility_id", "category", "status", "edge", "frac", "snap_m"]
        arrays = SnappedArrays(snapped, entries)
        for cat in dict.fromkeys(snapped["category"].tolist()):
            keys[cat] = digest(
                "service_areas",
                network.key,
                cost_sha,
                weight_sha,
                frame_digest(snapped[snapped["category"] == cat], cols),
                array_digest(*arrays.entries(cat, speed_m_s).arrays()),
                levels,
                method,
                speed_m_s,
                per_facility,
                buffer_m,
                GEOMETRY_ENGINE,
                SERVICE_AREA_DRAWING,
            )
        areas = ServiceAreas(keys, snapped, draw_areas, ctx.store, ctx.say)
        # drawn beside the community isochrones and the rest of the run: off the
        # critical path, on the second core
        areas.start()

    def draw_isochrones() -> gpd.GeoDataFrame:
        ctx.say("drawing community isochrones")
        return community_isochrones(
            get_graph(),
            communities.value,
            weight,
            levels_minutes=levels,
            method=method,  # type: ignore[arg-type]
            centres=read_centres(centres, communities.value),
            buffer_m=buffer_m,
        )

    iso = ctx.store.memo(
        "isochrones",
        [
            network.key,
            communities.key,
            cost_sha,
            weight_sha,
            levels,
            method,
            buffer_m,
            centres_sha,
            GEOMETRY_ENGINE,
        ],
        draw_isochrones,
        codec=FRAME,
    )
    return iso, areas
