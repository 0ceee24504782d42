"""Walk-time polygons from per-node walking times: the geometry of isochrones.

Inputs are a :class:`~circles.network.WalkNetwork`, the walking time in seconds between
an origin (a community centre, or a facility for a service area) and every node
(``node_seconds``, ``inf`` where not reached), and an ``(n_edges, 2)`` array
``edge_cost`` of columns ``(A, B)`` such that the point at fraction ``f`` (0..1) along edge
``i`` from ``u[i]`` to ``v[i]`` is reached after::

    min(node_seconds[u[i]] + f * A[i], node_seconds[v[i]] + (1 - f) * B[i])   seconds

For an isochrone *from* a point, ``A`` is the cost of walking ``u -> v`` and ``B`` of
``v -> u``; for a service area *to* a facility the columns are swapped
(:func:`directed_edge_cost` builds both). ``inf`` in a column means that direction may not
be walked (``oneway:foot``).

Two polygon methods (:func:`isochrone_polygons`):

``"network"`` (default, accurate; for maps)
    The reached street segments (:func:`reached_segments`: fully reached edges whole,
    partly reached edges cut at the exact point where the time runs out) buffered by
    ``buffer_m`` (default :data:`NETWORK_BUFFER_M` = 25 m). The buffer is how far from a
    reached street into the block interior counts as within reach: 25 m is about half the
    depth of an urban block face, so the buildings fronting a reached street are inside
    while the interior of a large block, a park, a lake or a rail yard that no reached
    street enters stays outside. Such holes are real and are kept: the polygon is never
    hole-filled.
``"concave"`` (fast; for overviews)
    ``shapely.concave_hull`` (``ratio=concave_ratio``, no holes) of the reached nodes and
    the cut points of partly reached edges, buffered by :data:`CONCAVE_BUFFER_M` = 20 m
    (as r5py does) so that every reached node lies strictly inside. It bridges gaps such
    as water or unreachable blocks, so it over-covers.

Guarantees of both methods: every polygon is valid (``shapely.is_valid``); every node
with ``node_seconds <= level`` is covered by that level's polygon; the levels are nested:
the polygon of a level is unioned with the one of the next smaller level, as buffers of
different line sets do not nest exactly where arcs are drawn as chords (~0.1 m) and
concave hulls of nested point sets need not nest at all. Coordinates are rounded to a
1 mm grid (:data:`PRECISION_M`) and the union is computed on that grid; snap-rounding
can still leave slivers under 1 mm wide (measured: up to ~3e-3 m² on Helsinki), so the
levels are nested to within 1 mm: a 1 mm buffer of a level covers the smaller levels.

Community isochrones and service areas (:mod:`circles.isochrones`) are drawn with these
functions. For many origins on one network, :func:`reach_polygons` draws the
``"network"`` polygons from a bounded search's reached nodes only: the street chains
(:class:`StreetChains`) reached whole are drawn by their buffers, drawn once per
network, and each level is built on the one below (nested by construction). It covers
the same ground as :func:`isochrone_polygons`, to within the buffer's chord error
(0.48 m at 25 m with :data:`QUAD_SEGS` = 4): a street drawn as one chain there and as
differently merged pieces here has the chords of its round ends at other angles.

All geometries are in the network's metric CRS (``network.crs``, coordinates
``network.x``/``network.y``). Cut points are placed at the fraction of the straight edge
given by the times, so a cut piece is that fraction of the edge as drawn in the map (in
a UTM zone, within 0.1 % of the geodesic metres of ``network.length_m``).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import numpy as np
import shapely
from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError
from shapely.geometry.base import BaseGeometry

from circles._errors import InputDataError
from circles.network import WalkNetwork

logger = logging.getLogger(__name__)

#: Default buffer width in metres of the ``"network"`` method: how far from a reached
#: street into the block interior counts as within reach.
NETWORK_BUFFER_M = 25.0

#: Buffer in metres around the concave hull of the ``"concave"`` method (r5py uses 20 m),
#: so that reached nodes on the hull lie strictly inside.
CONCAVE_BUFFER_M = 20.0

#: Default ``ratio`` of ``shapely.concave_hull`` (0 = most concave, 1 = convex hull).
CONCAVE_RATIO = 0.3

#: Segments per quarter circle of round buffer caps and joins. 4 keeps the largest gap
#: between the polygon and the true round buffer at 1.9 % of the width (0.48 m at 25 m)
#: and builds polygons about 1.5x faster than GEOS's default of 8 (0.5 %).
QUAD_SEGS = 4

METHODS = ("network", "concave")

#: Precision grid of the polygons in metres (coordinates are rounded to it).
PRECISION_M = 0.001


def empty_polygon() -> BaseGeometry:
    return shapely.from_wkt("POLYGON EMPTY")


def _check_inputs(
    network: WalkNetwork, node_seconds: Any, edge_cost: Any
) -> tuple[np.ndarray, np.ndarray]:
    """Validate and convert ``node_seconds`` and ``edge_cost``."""
    for name in ("x", "y", "u", "v"):
        if not hasattr(network, name):
            raise InputDataError(
                f"network has no {name!r} array; pass a circles.network.WalkNetwork"
            )
    n_nodes = int(np.shape(network.x)[0])
    n_edges = int(np.shape(network.u)[0])
    secs = np.asarray(node_seconds, dtype=float)
    if secs.shape != (n_nodes,):
        raise InputDataError(
            f"node_seconds has shape {secs.shape}; it needs one time per network node "
            f"({n_nodes},), np.inf where not reached"
        )
    if np.isnan(secs).any() or (secs < 0).any():
        raise InputDataError(
            "node_seconds must be >= 0 seconds or np.inf (not reached); found NaN or "
            "negative values"
        )
    cost = np.asarray(edge_cost, dtype=float)
    if cost.shape != (n_edges, 2):
        raise InputDataError(
            f"edge_cost has shape {cost.shape}; it needs ({n_edges}, 2): seconds u->v and "
            "v->u of each edge (np.inf where a direction may not be walked); see "
            "circles.isochrones.directed_edge_cost"
        )
    if np.isnan(cost).any() or (cost < 0).any():
        raise InputDataError(
            "edge_cost must be >= 0 seconds or np.inf (direction not walkable); found NaN "
            "or negative values"
        )
    return secs, cost


def _check_limit(limit_s: Any, name: str = "limit_s") -> float:
    try:
        limit = float(limit_s)
    except (TypeError, ValueError):
        raise InputDataError(f"{name} must be a number of seconds, got {limit_s!r}") from None
    if not (np.isfinite(limit) and limit >= 0):
        raise InputDataError(f"{name} must be a finite number of seconds >= 0, got {limit_s!r}")
    return limit


def _reach_fraction(remaining_s: np.ndarray, cost_s: np.ndarray) -> np.ndarray:
    """Fraction of an edge reached from one end; -1 where the end itself is not reached.

    ``remaining_s`` is the time left at the end (limit - node time), ``cost_s`` the time to
    walk the whole edge away from that end (0 = free, inf = not walkable this way).
    """
    reached = remaining_s >= 0
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(cost_s > 0, remaining_s / cost_s, 1.0)
    frac = np.clip(np.nan_to_num(frac, nan=0.0, posinf=1.0), 0.0, 1.0)
    return np.where(reached, frac, -1.0)


def _pieces(
    network: WalkNetwork, secs: np.ndarray, cost: np.ndarray, limit: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Reached pieces of edges as start/end coordinates.

    Returns
    -------
    start_xy, end_xy : numpy.ndarray
        ``(k, 2)`` metres of each piece's ends, oriented from ``u`` to ``v``.
    cut_xy : numpy.ndarray
        ``(m, 2)`` metres of the cut points inside partly reached edges.
    touched : numpy.ndarray
        Boolean per node: the node is an end of a piece.
    """
    x, y = np.asarray(network.x, float), np.asarray(network.y, float)
    # edges with a reached end, in edge order: those at the reached nodes
    near = StreetChains.of(network).edges_at(np.flatnonzero(secs <= limit))
    u, v = network.u[near], network.v[near]
    f_u = _reach_fraction(limit - secs[u], cost[near, 0])
    f_v = _reach_fraction(limit - secs[v], cost[near, 1])
    whole = (f_u >= 1) | (f_v >= 1) | ((f_u >= 0) & (f_v >= 0) & (f_u + f_v >= 1))
    part_u = ~whole & (f_u > 0)
    part_v = ~whole & (f_v > 0)

    xu, yu, xv, yv = x[u], y[u], x[v], y[v]
    iu, iv = np.flatnonzero(part_u), np.flatnonzero(part_v)
    fu, fv = f_u[iu], f_v[iv]
    # cut points measured from the end they are reached from (exact fraction of the edge)
    cut_u = np.column_stack([xu[iu] + fu * (xv[iu] - xu[iu]), yu[iu] + fu * (yv[iu] - yu[iu])])
    cut_v = np.column_stack([xv[iv] + fv * (xu[iv] - xv[iv]), yv[iv] + fv * (yu[iv] - yv[iv])])
    iw = np.flatnonzero(whole)
    start = np.concatenate(
        [np.column_stack([xu[iw], yu[iw]]), np.column_stack([xu[iu], yu[iu]]), cut_v]
    )
    end = np.concatenate(
        [np.column_stack([xv[iw], yv[iw]]), cut_u, np.column_stack([xv[iv], yv[iv]])]
    )
    touched = np.zeros(x.shape[0], bool)
    touched[u[iw]] = True
    touched[v[iw]] = True
    touched[u[iu]] = True
    touched[v[iv]] = True
    return start, end, np.concatenate([cut_u, cut_v]), touched


def reached_segments(
    network: WalkNetwork, node_seconds: Any, edge_cost: Any, limit_s: float
) -> np.ndarray:
    """Street segments reached within ``limit_s`` seconds.

    Parameters
    ----------
    network : WalkNetwork
        The walking network; geometries use its metric coordinates ``x``/``y``.
    node_seconds : array_like
        Walking time in seconds of each node (length ``n_nodes``), ``np.inf`` where not
        reached.
    edge_cost : array_like
        ``(n_edges, 2)`` seconds to walk each edge ``u -> v`` (column A) and ``v -> u``
        (column B) for the travel direction of ``node_seconds`` (module docstring);
        ``np.inf`` where a direction may not be walked.
    limit_s : float
        Time limit in seconds.

    Returns
    -------
    numpy.ndarray
        shapely LineStrings (two points each, oriented ``u -> v``, in ``network.crs``):
        every fully reached edge whole; a partly reached edge cut where the time runs
        out, measured from each reached end, so an edge reached from both ends but not
        in the middle gives two pieces. Zero-length pieces (time running out exactly at a
        node) are left out. Order: whole edges, then pieces from ``u``, then from ``v``.

    Raises
    ------
    InputDataError
        Arrays of the wrong shape, NaN or negative times, or a bad ``limit_s``.
    """
    secs, cost = _check_inputs(network, node_seconds, edge_cost)
    limit = _check_limit(limit_s)
    start, end, _, _ = _pieces(network, secs, cost, limit)
    return shapely.linestrings(np.stack([start, end], axis=1))


def directed_edge_cost(
    network: WalkNetwork, edge_seconds: Any, *, to_origin: bool = False
) -> np.ndarray:
    """The ``(n_edges, 2)`` cost array for a one-cost-per-edge network.

    Parameters
    ----------
    network : WalkNetwork
        Its ``direction`` (1 = walkable only ``u -> v``) sets the ``inf`` entries.
    edge_seconds : array_like
        Seconds to walk each edge (length ``n_edges``), e.g.
        ``network.edge_seconds(speed_m_s)``.
    to_origin : bool, default False
        False: columns for an isochrone *from* the origin (A = ``u -> v``,
        B = ``v -> u``). True: swapped, for a service area *to* a facility, whose
        ``node_seconds`` come from the reversed graph.

    Returns
    -------
    numpy.ndarray
        ``(n_edges, 2)`` float seconds, ``np.inf`` for the forbidden direction of a
        one-way edge.
    """
    sec = np.asarray(edge_seconds, dtype=float)
    if sec.shape != (network.n_edges,):
        raise InputDataError(
            f"edge_seconds has shape {sec.shape}; it needs one time per edge ({network.n_edges},)"
        )
    fwd = np.where(network.direction >= 0, sec, np.inf)
    bwd = np.where(network.direction <= 0, sec, np.inf)
    return np.column_stack([bwd, fwd] if to_origin else [fwd, bwd])


_LEVEL_THREADS: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "circles_level_threads", default=True
)


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Draw geometry in the calling thread only, inside this block.

    Isochrone levels are then drawn one after another, and a run draws its service areas
    in its own thread (:func:`circles.pipeline.run`). :func:`circles.batch.run_area`
    uses it: there the dask worker processes already share out the cores.
    """
    token = _LEVEL_THREADS.set(False)
    try:
        yield
    finally:
        _LEVEL_THREADS.reset(token)


def threads_allowed() -> bool:
    """False inside :func:`one_thread`."""
    return _LEVEL_THREADS.get()


def polygonal(geom: BaseGeometry) -> BaseGeometry:
    """``geom`` made valid, keeping only its polygonal parts.

    A valid collection keeps its polygons too: snapping to the 1 mm grid can collapse a
    sliver of a polygon into a line (seen on Porto), which has no area and is dropped.
    """
    kind = shapely.get_type_id(geom)
    if kind in (3, 6) and shapely.is_valid(geom):  # Polygon, MultiPolygon
        return geom
    fixed = shapely.make_valid(geom) if not shapely.is_valid(geom) else geom
    parts = shapely.get_parts(fixed)
    polys = parts[np.isin(shapely.get_type_id(parts), (3, 6))]  # Polygon, MultiPolygon
    return shapely.union_all(polys) if polys.size else empty_polygon()


def _network_polygon(
    start: np.ndarray, end: np.ndarray, lone_xy: np.ndarray, buffer_m: float
) -> BaseGeometry:
    """Union of the buffered reached pieces (and of lone reached nodes).

    Chains of pieces are first merged into longer lines (``line_merge``), then each line
    is buffered and the buffers are unioned in one cascaded union. Measured on the
    Liechtenstein network (15-min isochrones, benchmarks/bench_isochrones.py): 2-3x
    faster than buffering every segment, >10x faster than one buffer of the whole
    multi-line or than buffering the union of the lines. The union is GEOS's disjoint
    subset union where available (shapely >= 2.1 with GEOS >= 3.12), which unions the
    groups of overlapping buffers separately: 1.6x faster for a category of a few
    facilities in separate towns (Liechtenstein's elderly canteens), as fast for a
    dense one.
    """
    parts = []
    if start.shape[0]:
        lines = shapely.multilinestrings(shapely.linestrings(np.stack([start, end], axis=1)))
        merged = shapely.get_parts(shapely.line_merge(lines))
        parts.append(shapely.buffer(merged, buffer_m, quad_segs=QUAD_SEGS))
    if lone_xy.shape[0]:
        parts.append(shapely.buffer(shapely.points(lone_xy), buffer_m, quad_segs=QUAD_SEGS))
    if not parts:
        return empty_polygon()
    return UNION(np.concatenate(parts))


#: The union of the buffered pieces (:func:`_network_polygon`).
UNION: Callable[[np.ndarray], BaseGeometry] = getattr(
    shapely, "disjoint_subset_union_all", shapely.union_all
)

#: Which GEOS draws the polygons: part of the cache keys of drawn geometry (another GEOS
#: or union algorithm may round the last bits differently).
GEOMETRY_ENGINE = f"GEOS {shapely.geos_version_string}; {getattr(UNION, '__name__', '')}"


def _concave_polygon(points_xy: np.ndarray, ratio: float) -> BaseGeometry:
    """Buffered concave hull of the reached points."""
    if not points_xy.shape[0]:
        return empty_polygon()
    hull = shapely.concave_hull(shapely.multipoints(points_xy), ratio=ratio)
    return shapely.buffer(hull, CONCAVE_BUFFER_M, quad_segs=QUAD_SEGS)


def isochrone_polygons(
    network: WalkNetwork,
    node_seconds: Any,
    edge_cost: Any,
    levels_s: Sequence[float] | np.ndarray | float,
    *,
    method: Literal["network", "concave"] = "network",
    buffer_m: float = NETWORK_BUFFER_M,
    concave_ratio: float = CONCAVE_RATIO,
    extra_pieces: Callable[[float], tuple[np.ndarray, np.ndarray]] | None = None,
    threads: bool | None = None,
) -> list[BaseGeometry]:
    """Isochrone polygons, one per walk-time level.

    Parameters
    ----------
    network : WalkNetwork
        The walking network (geometries in its metric CRS ``network.crs``).
    node_seconds : array_like
        Walking time in seconds of each node, ``np.inf`` where not reached.
    edge_cost : array_like
        ``(n_edges, 2)`` seconds per edge, columns A (``u -> v``) and B (``v -> u``) as
        in :func:`reached_segments`.
    levels_s : sequence of float
        Time limits in seconds, in any order (e.g. ``[300, 600, 900]``).
    method : {"network", "concave"}, default "network"
        ``"network"``: union of the reached street segments buffered by ``buffer_m``;
        faithful, keeps real holes (module docstring). ``"concave"``: concave hull of the
        reached nodes and cut points, buffered by :data:`CONCAVE_BUFFER_M`; fast,
        over-covers.
    buffer_m : float, default 25.0
        ``"network"`` only: metres from a reached street into the block interior that
        count as within reach. Must be > 0.
    concave_ratio : float, default 0.3
        ``"concave"`` only: ``ratio`` of ``shapely.concave_hull`` in [0, 1] (0 = most
        concave, 1 = convex hull).
    extra_pieces : callable, optional
        ``level_s -> (start_xy, end_xy)``: further reached pieces (metric CRS) added at
        each level, such as the stretch of a facility's own edge around its snap point
        (:func:`facility_edge_pieces`), which no node time describes.
    threads : bool, optional
        Draw the levels in parallel threads (the result is the same either way). Default:
        yes, except inside :func:`one_thread` (e.g. on a dask worker, whose process
        already has its share of the cores).

    Returns
    -------
    list of shapely geometry
        One valid Polygon or MultiPolygon per level, in the order of ``levels_s``, in
        ``network.crs``; an empty Polygon where nothing is reached. The polygon of a
        level covers the polygons of all smaller levels (to within 1 mm) and
        every node with ``node_seconds <= level``.

    Raises
    ------
    InputDataError
        Bad shapes or values of the inputs, unknown ``method``, ``buffer_m <= 0``,
        ``concave_ratio`` outside [0, 1], or an empty / negative / non-finite level.
    """
    secs, cost = _check_inputs(network, node_seconds, edge_cost)
    if method not in METHODS:
        raise InputDataError(f"method must be one of {METHODS}, got {method!r}")
    try:
        levels = np.atleast_1d(np.asarray(levels_s, dtype=float))
    except (TypeError, ValueError):
        raise InputDataError(f"levels_s must be a list of seconds, got {levels_s!r}") from None
    if levels.ndim != 1 or levels.size == 0:
        raise InputDataError(f"levels_s must be a non-empty list of seconds, got {levels_s!r}")
    for lev in levels:
        _check_limit(lev, "every level in levels_s")
    buffer_m = float(buffer_m)
    if not (np.isfinite(buffer_m) and buffer_m > 0):
        raise InputDataError(f"buffer_m must be a positive number of metres, got {buffer_m!r}")
    concave_ratio = float(concave_ratio)
    if not 0.0 <= concave_ratio <= 1.0:
        raise InputDataError(f"concave_ratio must be in [0, 1], got {concave_ratio!r}")

    uniq = np.unique(levels)
    draw = level_polygon_fn(
        network,
        secs,
        cost,
        method=method,
        buffer_m=buffer_m,
        concave_ratio=concave_ratio,
        extra_pieces=extra_pieces,
    )
    raw = map_tasks(draw, uniq.tolist(), threads=threads)
    by_level = dict(zip(uniq.tolist(), nested_levels(raw), strict=True))
    logger.debug("isochrones (%s): %d levels", method, uniq.size)
    return [by_level[lev] for lev in levels.tolist()]


#: What a task of :func:`map_tasks` returns.
R = TypeVar("R")


def map_tasks(
    fn: Callable[[Any], R], items: Sequence[Any], *, threads: bool | None, workers: int = 4
) -> list[R]:
    """``[fn(x) for x in items]``, on up to ``workers`` threads unless :func:`one_thread`
    says otherwise (GEOS and PROJ release the GIL; drawing the largest level alone is
    about half of the work). The result is the same either way, in the order of
    ``items``."""
    if threads is None:
        threads = threads_allowed()
    if len(items) > 1 and threads and workers > 1:
        with ThreadPoolExecutor(max_workers=min(len(items), workers)) as pool:
            return list(pool.map(fn, items))
    return [fn(x) for x in items]


def level_polygon_fn(
    network: WalkNetwork,
    secs: np.ndarray,
    cost: np.ndarray,
    *,
    method: str,
    buffer_m: float,
    concave_ratio: float = CONCAVE_RATIO,
    extra_pieces: Callable[[float], tuple[np.ndarray, np.ndarray]] | None = None,
) -> Callable[[float], BaseGeometry]:
    """``level_s -> polygon`` of the nodes within ``level_s`` (not nested; 1 mm grid)."""
    x, y = np.asarray(network.x, float), np.asarray(network.y, float)

    def level_polygon(level: float) -> BaseGeometry:
        start, end, cut_xy, touched = _pieces(network, secs, cost, level)
        if extra_pieces is not None:
            es, ee = extra_pieces(level)
            start = np.concatenate([start, np.asarray(es, float).reshape(-1, 2)])
            end = np.concatenate([end, np.asarray(ee, float).reshape(-1, 2)])
            cut_xy = np.concatenate(
                [cut_xy, np.asarray(es, float).reshape(-1, 2), np.asarray(ee, float).reshape(-1, 2)]
            )
        reached = secs <= level
        if method == "network":
            # nodes reached but on no piece of positive length (time running out exactly
            # at the node) still get their buffer
            lone = reached & ~touched
            lone_xy = np.column_stack([x[lone], y[lone]])
            poly = _network_polygon(start, end, lone_xy, buffer_m)
        else:
            pts = np.concatenate([np.column_stack([x[reached], y[reached]]), cut_xy])
            poly = _concave_polygon(pts, concave_ratio)
        # a fixed 1 mm precision grid keeps the overlay of consecutive levels robust
        return polygonal(shapely.set_precision(polygonal(poly), PRECISION_M))

    return level_polygon


def nested_levels(raw: list[BaseGeometry], *, on_grid: bool = True) -> list[BaseGeometry]:
    """Polygons of ascending levels made nested: each level unioned with the one below.

    The union on the 1 mm grid covers the smaller level to within that grid. With
    ``on_grid=False`` (parts joined off the grid), a level without a smaller non-empty
    one below is put on the grid too.
    """
    out: list[BaseGeometry] = []
    previous: BaseGeometry | None = None
    for poly in raw:
        if previous is not None and not previous.is_empty:
            poly = polygonal(shapely.union(poly, previous, grid_size=PRECISION_M))
        elif not on_grid:
            poly = polygonal(shapely.set_precision(poly, PRECISION_M))
        out.append(poly)
        previous = poly
    return out


def to_wgs84(geoms: Any, crs: Any) -> np.ndarray:
    """Geometries reprojected from ``crs`` to WGS84 longitude/latitude (EPSG:4326).

    Parameters
    ----------
    geoms : shapely geometry or array_like of them
        E.g. the output of :func:`isochrone_polygons`.
    crs : str or pyproj.CRS
        Their CRS, e.g. ``network.crs``.

    Returns
    -------
    numpy.ndarray
        Object array of shapely geometries (x = longitude, y = latitude in degrees).
    """
    try:
        src = CRS.from_user_input(crs)
    except CRSError as exc:
        raise InputDataError(f"crs {crs!r} is not a valid CRS (e.g. network.crs): {exc}") from exc
    arr = np.asarray(geoms, dtype=object)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    transformer = Transformer.from_crs(src, "EPSG:4326", always_xy=True)

    def _tr(xy: np.ndarray) -> np.ndarray:
        lon, lat = transformer.transform(xy[:, 0], xy[:, 1])
        return np.column_stack([lon, lat])

    return np.asarray(shapely.transform(arr, _tr), dtype=object)


def area_km2(geoms: Any, *, crs: Any = None) -> np.ndarray:
    """Area of each geometry in square kilometres.

    Parameters
    ----------
    geoms : shapely geometry or array_like of them
        Geometries in a metric CRS (metres), e.g. the output of
        :func:`isochrone_polygons`; empty geometries give 0.
    crs : str or pyproj.CRS, optional
        Their CRS; when given it is checked to be projected in metres.

    Returns
    -------
    numpy.ndarray
        float km² per geometry.
    """
    if crs is not None:
        try:
            c = CRS.from_user_input(crs)
        except CRSError as exc:
            raise InputDataError(f"crs {crs!r} is not a valid CRS: {exc}") from exc
        unit = c.axis_info[0].unit_name if c.axis_info else ""
        if not c.is_projected or unit not in {"metre", "meter"}:
            raise InputDataError(
                f"area_km2 needs geometries in a projected CRS in metres, got {c.name!r}; "
                "compute areas before to_wgs84 (e.g. in network.crs)"
            )
    arr = np.asarray(geoms, dtype=object)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    return np.asarray(shapely.area(arr), dtype=float) / 1e6


def facility_edge_pieces(
    network: WalkNetwork,
    edge_cost: np.ndarray,
    edge: np.ndarray,
    frac: np.ndarray,
    access_s: np.ndarray,
    level_s: float,
) -> tuple[np.ndarray, np.ndarray]:
    """The stretch of each facility's own edge from which it is reached within ``level_s``.

    A resident at fraction ``g < frac`` of the edge walks towards ``v`` (cost ``A``) to the
    snap point, one at ``g > frac`` towards ``u`` (cost ``B``); both then walk the access
    distance. ``edge_cost`` holds ``(A, B)`` = (u->v, v->u) seconds per edge.

    Returns
    -------
    tuple of numpy.ndarray
        ``(start_xy, end_xy)`` of one piece per facility that reaches anything.
    """
    edge = np.asarray(edge, np.int64)
    frac = np.asarray(frac, float)
    rem = float(level_s) - np.asarray(access_s, float)
    ok = rem >= 0
    edge, frac, rem = edge[ok], frac[ok], rem[ok]
    a = edge_cost[edge, 0]
    b = edge_cost[edge, 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        g0 = np.where(np.isfinite(a) & (a > 0), np.maximum(0.0, frac - rem / a), frac)
        g1 = np.where(np.isfinite(b) & (b > 0), np.minimum(1.0, frac + rem / b), frac)
    g0 = np.where(a == 0, 0.0, g0)
    g1 = np.where(b == 0, 1.0, g1)
    u, v = network.u[edge], network.v[edge]
    ux, uy, vx, vy = network.x[u], network.y[u], network.x[v], network.y[v]
    start = np.column_stack([ux + g0 * (vx - ux), uy + g0 * (vy - uy)])
    end = np.column_stack([ux + g1 * (vx - ux), uy + g1 * (vy - uy)])
    keep = g1 > g0
    return start[keep], end[keep]


def layer_frame(rows: list[dict[str, Any]], geoms: list[BaseGeometry], crs: Any) -> Any:
    import geopandas as gpd

    g = np.asarray(geoms, dtype=object) if geoms else np.asarray([], dtype=object)
    area = area_km2(g, crs=crs) if len(g) else np.zeros(0)
    multi = np.asarray(
        [
            shapely.multipolygons(shapely.get_parts(x))
            if not x.is_empty
            else shapely.MultiPolygon()
            for x in g
        ],
        dtype=object,
    )
    df = (
        gpd.GeoDataFrame(rows, geometry=gpd.GeoSeries(multi, crs=crs), crs=crs)
        if rows
        else gpd.GeoDataFrame({"minutes": []}, geometry=gpd.GeoSeries([], crs=crs))
    )
    df["area_km2"] = area
    return df.to_crs("EPSG:4326")


# --------------------------------------------------------------------------- street chains


@dataclass(frozen=True, eq=False)
class StreetChains:
    """The network's edges grouped into street chains, and the chains' buffers.

    A chain is a maximal run of edges joined at nodes where exactly two edges meet: one
    street between two junctions or dead ends, split at its OSM vertices (Liechtenstein's
    54,633 edges form 6,509 chains). Where a search reaches every edge of a chain, its
    polygon is the chain's buffer, the same for every origin: :meth:`buffers` draws each
    chain once per network and buffer width and keeps it (:func:`reach_polygons`).

    Build with :meth:`of` (one per network, kept while the network lives).

    Attributes
    ----------
    network : WalkNetwork
    edge_ptr, edges : numpy.ndarray
        CSR of the edges at each node: node ``i``'s edges are
        ``edges[edge_ptr[i]:edge_ptr[i + 1]]`` (ascending).
    chain : numpy.ndarray
        int64 chain of each edge.
    chain_size : numpy.ndarray
        int64 number of edges of each chain.
    chain_ptr, chain_edges : numpy.ndarray
        CSR of the edges of each chain (ascending).
    """

    network: WalkNetwork
    edge_ptr: np.ndarray
    edges: np.ndarray
    chain: np.ndarray
    chain_size: np.ndarray
    chain_ptr: np.ndarray
    chain_edges: np.ndarray
    _buffers: dict[float, np.ndarray] = field(default_factory=dict, repr=False)
    _lock: Any = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def of(cls, network: WalkNetwork) -> StreetChains:
        """The chains of ``network`` (built on first use, then kept with it)."""
        got = _CHAINS.get(network)
        if got is None:
            got = _CHAINS[network] = cls._build(network)
        return got

    @classmethod
    def _build(cls, network: WalkNetwork) -> StreetChains:
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components

        n, m = network.n_nodes, network.n_edges
        u, v = np.asarray(network.u, np.int64), np.asarray(network.v, np.int64)
        ends = np.concatenate([u, v])
        eid = np.concatenate([np.arange(m), np.arange(m)])
        order = np.lexsort((eid, ends))
        ends, eid = ends[order], eid[order]
        # a loop edge (u == v) is listed twice at its node: once is enough
        keep = np.ones(ends.size, bool)
        keep[1:] = (ends[1:] != ends[:-1]) | (eid[1:] != eid[:-1])
        degree = np.bincount(ends, minlength=n)  # a loop counts twice
        two = degree[ends] == 2
        pair_e = eid[two]  # the two edge ends at each node of degree 2, side by side
        links = coo_matrix(
            (np.ones(pair_e.size // 2, np.int8), (pair_e[0::2], pair_e[1::2])), shape=(m, m)
        )
        _, chain = connected_components(links, directed=False)
        chain = np.asarray(chain, dtype=np.int64)
        ends, eid = ends[keep], eid[keep]
        edge_ptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(np.bincount(ends, minlength=n), out=edge_ptr[1:])
        size = np.bincount(chain, minlength=int(chain.max()) + 1 if m else 0).astype(np.int64)
        chain_ptr = np.zeros(size.size + 1, dtype=np.int64)
        np.cumsum(size, out=chain_ptr[1:])
        return cls(
            network,
            edge_ptr,
            eid,
            chain,
            size,
            chain_ptr,
            np.argsort(chain, kind="stable").astype(np.int64),
        )

    def edges_at(self, nodes: np.ndarray) -> np.ndarray:
        """The edges with an end among ``nodes``, ascending, each once."""
        return np.unique(_gather(self.edge_ptr, self.edges, np.asarray(nodes, np.int64)))

    def buffers(self, chains: np.ndarray, buffer_m: float) -> np.ndarray:
        """Buffer polygons (``buffer_m`` metres, :data:`QUAD_SEGS`) of ``chains``,
        each drawn once: the buffer of the chain's edges merged into one line."""
        chains = np.asarray(chains, np.int64)
        with self._lock:
            store = self._buffers.get(float(buffer_m))
            if store is None:
                store = self._buffers[float(buffer_m)] = np.full(
                    self.chain_size.size, None, dtype=object
                )
        todo = np.unique(chains[shapely.is_missing(store[chains])])
        if todo.size:
            store[todo] = _chain_buffers(self, todo, float(buffer_m))
        return store[chains]


#: Street chains per network, kept while the network is alive.
_CHAINS: weakref.WeakKeyDictionary[WalkNetwork, StreetChains] = weakref.WeakKeyDictionary()


def _gather(ptr: np.ndarray, values: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``values[ptr[r]:ptr[r + 1]]`` of every row ``r`` of ``rows``, concatenated."""
    a = ptr[rows]
    count = ptr[rows + 1] - a
    total = int(count.sum())
    if total == 0:
        return np.zeros(0, values.dtype)
    offset = np.repeat(a - np.concatenate([[0], np.cumsum(count)[:-1]]), count)
    return values[offset + np.arange(total)]


def _chain_buffers(chains: StreetChains, which: np.ndarray, buffer_m: float) -> np.ndarray:
    """Buffers of the chains ``which`` (ascending): their edges merged into lines."""
    net = chains.network
    edge = _gather(chains.chain_ptr, chains.chain_edges, which)
    label = chains.chain[edge]
    xy = np.stack(
        [
            np.column_stack([net.x[net.u[edge]], net.y[net.u[edge]]]),
            np.column_stack([net.x[net.v[edge]], net.y[net.v[edge]]]),
        ],
        axis=1,
    )
    _, index = np.unique(label, return_inverse=True)
    lines = shapely.multilinestrings(shapely.linestrings(xy), indices=index)
    return shapely.buffer(shapely.line_merge(lines), buffer_m, quad_segs=QUAD_SEGS)


def _as_polygonal(geom: BaseGeometry) -> BaseGeometry:
    """``geom`` if it is a (Multi)Polygon, else :func:`polygonal` of it."""
    if shapely.get_type_id(geom) in (3, 6):
        return geom
    return polygonal(geom)


def _lookup(keys: np.ndarray, values: np.ndarray, query: np.ndarray) -> np.ndarray:
    """``values`` of ``query`` in the ascending ``keys``; ``inf`` where absent."""
    if keys.size == 0:
        return np.full(query.shape, np.inf)
    pos = np.minimum(np.searchsorted(keys, query), keys.size - 1)
    return np.where(keys[pos] == query, values[pos], np.inf)


def reach_polygons(
    chains: StreetChains,
    nodes: Any,
    seconds: Any,
    edge_cost: Any,
    levels_s: Sequence[float],
    *,
    buffer_m: float = NETWORK_BUFFER_M,
    extra_pieces: Callable[[float], tuple[np.ndarray, np.ndarray]] | None = None,
) -> list[BaseGeometry]:
    """Nested ``"network"`` polygons of one origin, from the nodes it reaches only.

    What :func:`isochrone_polygons` draws with ``method="network"``, for a bounded
    search: the reached streets (whole edges, partly reached edges cut exactly) buffered
    by ``buffer_m``. Two things make it several times cheaper:

    - a street chain reached whole (:class:`StreetChains`) is drawn by its buffer,
      drawn once for every origin and level; only the chains the time runs out on are
      cut, merged and buffered here;
    - the levels are built one on the other, smallest first: each level is the union of
      the level below and what is newly reached, so the levels nest by construction
      (to within the 1 mm grid) and no second union nests them.

    The polygons cover the same ground as :func:`isochrone_polygons`' (the same reached
    streets, buffer and 1 mm grid); where a street is drawn as one chain here and as
    pieces merged differently there, the round ends and corners are drawn with their
    chords at other angles, so the outlines differ by at most the buffer's chord error
    (0.48 m at 25 m with :data:`QUAD_SEGS` = 4; tests/test_isochrones.py measures it).

    Parameters
    ----------
    chains : StreetChains
        The network's chains (:meth:`StreetChains.of`).
    nodes : array_like
        int positions of the nodes reached (within ``max(levels_s)`` or farther).
    seconds : array_like
        Their walking times in seconds (same length).
    edge_cost : array_like
        ``(n_edges, 2)`` seconds per edge, as in :func:`reached_segments`.
    levels_s : sequence of float
        Time limits in seconds, in any order.
    buffer_m : float, default 25.0
        Metres from a reached street that count as within reach.
    extra_pieces : callable, optional
        ``level_s -> (start_xy, end_xy)``: further reached pieces at each level, as in
        :func:`isochrone_polygons` (a facility's own edge around its snap point, for a
        service area; the origin then is the facilities, ``edge_cost`` towards them).

    Returns
    -------
    list of shapely geometry
        One valid Polygon or MultiPolygon per level, in the order of ``levels_s``, in
        the network's metric CRS, on the 1 mm grid; an empty Polygon where nothing is
        reached.
    """
    net = chains.network
    nodes = np.asarray(nodes, np.int64)
    secs = np.asarray(seconds, float)
    order = np.argsort(nodes, kind="stable")
    nodes, secs = nodes[order], secs[order]
    cost = np.asarray(edge_cost, float)
    x, y = np.asarray(net.x, float), np.asarray(net.y, float)
    edges = chains.edges_at(nodes)
    u, v = net.u[edges], net.v[edges]
    t_u, t_v = _lookup(nodes, secs, u), _lookup(nodes, secs, v)
    cost_u, cost_v = cost[edges, 0], cost[edges, 1]
    chain_ids, chain_of = np.unique(chains.chain[edges], return_inverse=True)
    chain_size = chains.chain_size[chain_ids]
    full_before = np.zeros(chain_ids.size, bool)
    prev: BaseGeometry | None = None
    by_level: dict[float, BaseGeometry] = {}
    for level in sorted({float(lev) for lev in levels_s}):
        f_u = _reach_fraction(level - t_u, cost_u)
        f_v = _reach_fraction(level - t_v, cost_v)
        whole = (f_u >= 1) | (f_v >= 1) | ((f_u >= 0) & (f_v >= 0) & (f_u + f_v >= 1))
        part_u = ~whole & (f_u > 0)
        part_v = ~whole & (f_v > 0)
        full = np.bincount(chain_of[whole], minlength=chain_ids.size) == chain_size
        new_full = full & ~full_before
        full_before = full
        cut = ~full[chain_of]  # edges of the chains the time runs out on
        iw = np.flatnonzero(whole & cut)
        iu = np.flatnonzero(part_u & cut)
        iv = np.flatnonzero(part_v & cut)
        fu, fv = f_u[iu], f_v[iv]
        xu, yu, xv, yv = x[u], y[u], x[v], y[v]
        cut_u = np.column_stack([xu[iu] + fu * (xv[iu] - xu[iu]), yu[iu] + fu * (yv[iu] - yu[iu])])
        cut_v = np.column_stack([xv[iv] + fv * (xu[iv] - xv[iv]), yv[iv] + fv * (yu[iv] - yv[iv])])
        start = np.concatenate(
            [np.column_stack([xu[iw], yu[iw]]), np.column_stack([xu[iu], yu[iu]]), cut_v]
        )
        end = np.concatenate(
            [np.column_stack([xv[iw], yv[iw]]), cut_u, np.column_stack([xv[iv], yv[iv]])]
        )
        if extra_pieces is not None:
            es, ee = extra_pieces(level)
            start = np.concatenate([start, np.asarray(es, float).reshape(-1, 2)])
            end = np.concatenate([end, np.asarray(ee, float).reshape(-1, 2)])
        # reached nodes on no piece of positive length still get their buffer
        touched = np.concatenate([u[whole], v[whole], u[part_u], v[part_v]])
        lone = nodes[(secs <= level) & ~np.isin(nodes, touched)]
        parts = [chains.buffers(chain_ids[new_full], buffer_m)]
        if start.shape[0]:
            lines = shapely.multilinestrings(shapely.linestrings(np.stack([start, end], axis=1)))
            merged = shapely.get_parts(shapely.line_merge(lines))
            parts.append(shapely.buffer(merged, buffer_m, quad_segs=QUAD_SEGS))
        if lone.size:
            lone_pts = shapely.points(np.column_stack([x[lone], y[lone]]))
            parts.append(shapely.buffer(lone_pts, buffer_m, quad_segs=QUAD_SEGS))
        new = np.concatenate(parts)
        if new.size == 0:
            poly = prev if prev is not None else empty_polygon()
        else:
            poly = UNION(new)
            if prev is not None and not prev.is_empty:
                poly = shapely.union(prev, poly)
            # GEOS's overlay and set_precision return valid geometry: only their type is
            # checked (validity checks were 6 % of the drawing)
            poly = _as_polygonal(shapely.set_precision(_as_polygonal(poly), PRECISION_M))
        by_level[level] = poly
        prev = poly
    return [by_level[float(lev)] for lev in levels_s]


def morton_order(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Order of points along a Morton (Z-order) curve: neighbours come together."""
    if x.size == 0:
        return np.zeros(0, dtype=np.int64)
    span = max(float(np.ptp(x)), float(np.ptp(y)), 1e-9)
    ix = ((x - x.min()) / span * 65535).astype(np.uint64)
    iy = ((y - y.min()) / span * 65535).astype(np.uint64)
    code = np.zeros(x.size, dtype=np.uint64)
    for b in range(16):
        bit = np.uint64(1 << b)
        code |= ((ix & bit) << np.uint64(b)) | ((iy & bit) << np.uint64(b + 1))
    return np.argsort(code, kind="stable")
