"""Slope-aware walking times (the terrain stage).

A :class:`~circles.walking.WalkProfile` (:mod:`circles.walking`) says how fast a group
of residents walks on the flat and on steps. With a digital elevation model (DEM),
:func:`edge_seconds` makes uphill slower than downhill with Tobler's hiking function.

Typical use::

    net = split_long_edges(net, max_length_m=50.0)      # grade over <= 50 m pieces
    z_m = sample_elevation(net, "dem.tif")              # node elevations (m)
    cost_s = edge_seconds(net, WALK_PROFILES["elderly"], elevation_m=z_m)
    tail, head, seconds = net.directed_arcs(cost_s)     # forward / backward differ

Tobler's hiking function
------------------------
``v = 6 * exp(-3.5 * |s + 0.05|)`` km/h, with ``s`` = rise / run (dimensionless) along
the direction of travel (Tobler 1993, *Three presentations on geographical analysis and
modeling*, NCGIA TR 93-1). It gives 5.04 km/h on the flat and is fastest (6 km/h) on a
5 % descent. As in cityseer, it is used as a *factor* on the profile's flat speed::

    speed_m_s = profile.speed_m_s * tobler(s) / tobler(0)

so a flat network gives exactly ``length_m / speed_m_s``, and an elderly profile keeps
its own flat speed. ``s`` is measured over each straight edge (rise between the two end
nodes over the edge's horizontal geodesic length); split long edges first
(:func:`split_long_edges`) so that a long edge over a hill is not read as flat. Time is
horizontal length over speed (Tobler's speeds are horizontal progress).

Known limits: the DEM gives the ground, not a bridge deck or a tunnel floor, so bridges
over valleys and tunnels under hills get false grades; steps are timed with the profile's
``steps_factor`` instead of Tobler (stair speeds already include the climb).
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from pyproj import Transformer

from circles._errors import DataFileError, InputDataError
from circles.cache import NETWORK_EXTRA, Keyed
from circles.config import WalkSection
from circles.network import WalkNetwork
from circles.result import RunContext
from circles.walking import (
    BICYCLE_SPEED_M_S,
    CYCLE_PROFILES,
    STEPS_HIGHWAYS,
    WALK_PROFILES,
    WHEELCHAIR_MAX_GRADE,
    WalkProfile,
    get_profile,
)

__all__ = [
    "BICYCLE_SPEED_M_S",
    "CYCLE_PROFILES",
    "SPLIT_LENGTH_M",
    "STEPS_HIGHWAYS",
    "TOBLER_OPTIMUM_GRADE",
    "WALK_PROFILES",
    "WHEELCHAIR_MAX_GRADE",
    "WalkProfile",
    "edge_seconds",
    "get_profile",
    "prepare_terrain",
    "sample_elevation",
    "split_long_edges",
    "study_terrain",
    "tobler_factor",
]

logger = logging.getLogger(__name__)

#: Largest edge length in metres left unsplit by :func:`split_long_edges` by default.
SPLIT_LENGTH_M = 50.0

#: Tobler's hiking function constants: speed 6 km/h at the optimum, decay 3.5 per unit
#: grade, optimum grade -0.05 (a 5 % descent).
TOBLER_MAX_KM_H = 6.0
TOBLER_DECAY = 3.5
TOBLER_OPTIMUM_GRADE = -0.05


def tobler_factor(grade: np.ndarray | float) -> np.ndarray:
    """Tobler speed relative to the flat: ``exp(-3.5 |s + 0.05|) / exp(-3.5 * 0.05)``.

    Parameters
    ----------
    grade : numpy.ndarray or float
        Rise over run along the direction of travel (0.1 = 10 % uphill).

    Returns
    -------
    numpy.ndarray
        Speed factor (1 on the flat, about 1.19 at the optimum -5 %).
    """
    s = np.asarray(grade, dtype=float)
    return np.exp(-TOBLER_DECAY * (np.abs(s - TOBLER_OPTIMUM_GRADE) - abs(TOBLER_OPTIMUM_GRADE)))


def _check_network(network: Any) -> WalkNetwork:
    if not isinstance(network, WalkNetwork):
        raise InputDataError(
            f"network must be a circles.network.WalkNetwork, got {type(network).__name__}"
        )
    return network


def split_long_edges(network: WalkNetwork, *, max_length_m: float = SPLIT_LENGTH_M) -> WalkNetwork:
    """Split edges longer than ``max_length_m`` into equal straight pieces.

    An edge of length ``L > max_length_m`` becomes ``ceil(L / max_length_m)`` pieces of
    ``L / k`` metres (the last piece takes the rounding remainder, so the total length is
    preserved). New vertices are interpolated linearly in lon/lat and in x/y and get
    negative node ids continuing below ``min(network.node_id.min(), 0)``.

    The original nodes keep their positions ``0 .. n_nodes - 1`` (new vertices are
    appended), so per-node arrays of the original network extend with
    ``np.concatenate([values, fill])``; ``node_id`` is therefore no longer sorted when
    vertices are added. Pieces keep their edge's ``highway``, ``way_id`` and
    ``direction`` (one-way pieces point from ``u`` towards ``v``). The original
    network is not changed.

    Parameters
    ----------
    network : WalkNetwork
        The walk network.
    max_length_m : float, default 50.0
        Longest piece in metres.

    Returns
    -------
    WalkNetwork
        A new network (the same object if no edge is longer than ``max_length_m``).
    """
    net = _check_network(network)
    try:
        max_len = float(max_length_m)
    except (TypeError, ValueError):
        raise InputDataError(f"max_length_m must be a number, got {max_length_m!r}") from None
    if not (math.isfinite(max_len) and max_len > 0):
        raise InputDataError(f"max_length_m must be a positive length in m, got {max_length_m!r}")
    k = np.maximum(np.ceil(net.length_m / max_len), 1).astype(np.int64)
    if not (k > 1).any():
        return net
    n_new = int((k - 1).sum())
    first_new = min(int(net.node_id.min()) if net.n_nodes else 0, 0) - 1
    new_id = first_new - np.arange(n_new, dtype=np.int64)

    # pieces: edge e contributes k[e] pieces with fractions j/k, j = 0..k-1
    edge_of_piece = np.repeat(np.arange(net.n_edges), k)
    start = np.cumsum(k) - k
    j = np.arange(edge_of_piece.size) - start[edge_of_piece]
    kk = k[edge_of_piece]
    # interior vertices: j = 1..k-1 of each split edge, in piece order
    interior = j > 0
    e_in = edge_of_piece[interior]
    t = (j[interior] / kk[interior]).astype(float)
    u_in, v_in = net.u[e_in], net.v[e_in]

    def lerp(a: np.ndarray) -> np.ndarray:
        return a[u_in] + t * (a[v_in] - a[u_in])

    n0 = net.n_nodes
    vert_pos = n0 + np.arange(n_new)  # position of each interior vertex
    # tail of piece j: u for j == 0 else interior vertex (j); head: v for last else next
    tail = np.empty(edge_of_piece.size, dtype=np.int64)
    head = np.empty(edge_of_piece.size, dtype=np.int64)
    tail[~interior] = net.u[edge_of_piece[~interior]]
    tail[interior] = vert_pos
    last = j == kk - 1
    head[last] = net.v[edge_of_piece[last]]
    head[~last] = tail[np.flatnonzero(~last) + 1]

    piece_len = net.length_m[edge_of_piece] / kk
    # last piece takes the remainder so that the pieces sum to the original length
    head_sum = np.bincount(edge_of_piece[~last], weights=piece_len[~last], minlength=net.n_edges)
    piece_len[last] = net.length_m[edge_of_piece[last]] - head_sum[edge_of_piece[last]]

    report = dict(net.report)
    report["edges_split"] = int((k > 1).sum())
    report["split_vertices_added"] = n_new
    report["split_max_length_m"] = max_len
    out = replace(
        net,
        node_id=np.concatenate([net.node_id, new_id]),
        lon=np.concatenate([net.lon, lerp(net.lon)]),
        lat=np.concatenate([net.lat, lerp(net.lat)]),
        x=np.concatenate([net.x, lerp(net.x)]),
        y=np.concatenate([net.y, lerp(net.y)]),
        u=tail,
        v=head,
        length_m=piece_len,
        direction=net.direction[edge_of_piece],
        highway=net.highway[edge_of_piece],
        way_id=net.way_id[edge_of_piece],
        report=report,
    )
    logger.info(
        "split %d edges longer than %g m: %d vertices added",
        report["edges_split"],
        max_len,
        n_new,
    )
    return out


def sample_elevation(
    network: WalkNetwork, dem_path: str | os.PathLike[str], *, band: int = 1
) -> np.ndarray:
    """Node elevations in metres, bilinearly interpolated from a DEM GeoTIFF.

    The DEM may be in any CRS (north-up grid, values in metres). Only the window
    around the network's nodes is read. Values are interpolated between the centres of
    the four surrounding cells, so a plane is reproduced exactly; within half a cell of
    the raster's edge the nearest edge cells are used. Nodes outside the DEM, or next to
    a nodata/NaN cell, get NaN (counted in a logged warning); :func:`edge_seconds`
    treats their edges as flat.

    Parameters
    ----------
    network : WalkNetwork
        The walk network.
    dem_path : str or os.PathLike
        Elevation GeoTIFF (e.g. SRTM, Copernicus GLO-30, ASTER GDEM).
    band : int, default 1
        Band holding the elevations.

    Returns
    -------
    numpy.ndarray
        float64 elevation of each node in metres (NaN where unknown).
    """
    net = _check_network(network)
    p = Path(dem_path)
    if not p.is_file():
        raise DataFileError(f"DEM file not found: {p}; check the path")
    if not isinstance(band, int) or band < 1:
        raise InputDataError(f"band must be a 1-based band number, got {band!r}")
    import rasterio  # imported when a DEM is read (0.5 s of every CLI call otherwise)
    import rasterio.windows
    from rasterio.errors import RasterioIOError

    try:
        src = rasterio.open(p)
    except RasterioIOError as exc:
        raise DataFileError(f"cannot read DEM {p}: {exc}; is it a GeoTIFF?") from exc
    with src:
        if src.crs is None:
            raise InputDataError(f"DEM {p} has no CRS; set one (gdal_edit.py -a_srs ...)")
        tf = src.transform
        if tf.b != 0 or tf.d != 0:
            raise InputDataError(f"DEM {p} is rotated or sheared; warp it north-up first")
        if band > src.count:
            raise InputDataError(f"DEM {p} has {src.count} band(s), not {band}")
        to_dem = Transformer.from_crs("EPSG:4326", src.crs, always_xy=True)
        dx, dy = to_dem.transform(net.lon, net.lat)
        inv = ~tf
        # fractional cell coordinates relative to cell centres
        c = inv.a * np.asarray(dx) + inv.b * np.asarray(dy) + inv.c - 0.5
        r = inv.d * np.asarray(dx) + inv.e * np.asarray(dy) + inv.f - 0.5
        inside = (c >= -0.5) & (c <= src.width - 0.5) & (r >= -0.5) & (r <= src.height - 0.5)
        z = np.full(net.n_nodes, np.nan)
        if inside.any():
            cs, rs = c[inside], r[inside]
            col0 = max(int(np.floor(cs.min())), 0)
            row0 = max(int(np.floor(rs.min())), 0)
            col1 = min(int(np.floor(cs.max())) + 2, src.width)
            row1 = min(int(np.floor(rs.max())) + 2, src.height)
            win = rasterio.windows.Window(col0, row0, col1 - col0, row1 - row0)
            grid = np.ma.filled(src.read(band, window=win, masked=True).astype(np.float64), np.nan)
            z[inside] = _bilinear(grid, cs - col0, rs - row0)
    n_missing = int(np.isnan(z).sum())
    if n_missing:
        logger.warning(
            "%d of %d nodes have no elevation in %s (outside the DEM or nodata); their "
            "edges are treated as flat",
            n_missing,
            net.n_nodes,
            p.name,
        )
    return z


def _bilinear(grid: np.ndarray, c: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Bilinear interpolation at fractional cell-centre coordinates (clamped at edges)."""
    h, w = grid.shape
    c = np.clip(c, 0.0, w - 1.0)
    r = np.clip(r, 0.0, h - 1.0)
    c0 = np.minimum(np.floor(c).astype(np.int64), max(w - 2, 0))
    r0 = np.minimum(np.floor(r).astype(np.int64), max(h - 2, 0))
    c1 = np.minimum(c0 + 1, w - 1)
    r1 = np.minimum(r0 + 1, h - 1)
    fc = c - c0
    fr = r - r0
    out = np.zeros(c.shape)
    nan = np.zeros(c.shape, dtype=bool)
    for rr, cc, wgt in (
        (r0, c0, (1 - fr) * (1 - fc)),
        (r0, c1, (1 - fr) * fc),
        (r1, c0, fr * (1 - fc)),
        (r1, c1, fr * fc),
    ):
        val = grid[rr, cc]
        used = wgt > 0
        nan |= used & np.isnan(val)
        out += np.where(used, np.nan_to_num(val) * wgt, 0.0)
    out[nan] = np.nan
    return out


def edge_seconds(
    network: WalkNetwork,
    profile: WalkProfile | str,
    *,
    elevation_m: np.ndarray | None = None,
) -> np.ndarray:
    """Walking seconds of each edge in both directions for a profile.

    - Flat: ``length_m / profile.speed_m_s``.
    - With ``elevation_m``: divided by :func:`tobler_factor` of the grade along the
      direction of travel (``(z[v] - z[u]) / length_m`` forward, its negative
      backward), so uphill is slower than downhill. Edges with a NaN end are flat.
    - Steps (``highway=steps``): flat time x ``profile.steps_factor`` in both
      directions (no Tobler factor), or ``inf`` if ``profile.exclude_steps``.
    - ``profile.max_grade``: edges whose absolute grade exceeds it get ``inf`` in both
      directions (needs ``elevation_m``; without it grades are unknown).

    Parameters
    ----------
    network : WalkNetwork
        The walk network.
    profile : WalkProfile or str
        A profile or a name in :data:`WALK_PROFILES`.
    elevation_m : numpy.ndarray, optional
        Elevation of each node in metres (:func:`sample_elevation`).

    Returns
    -------
    numpy.ndarray
        float64, shape ``(n_edges, 2)``: seconds from ``u`` to ``v`` and from ``v`` to
        ``u``; pass it to :meth:`WalkNetwork.directed_arcs`.
    """
    net = _check_network(network)
    prof = get_profile(profile)
    flat_s = net.length_m / prof.speed_m_s
    out = np.column_stack([flat_s, flat_s]).astype(float)
    steps = np.isin(net.highway, list(STEPS_HIGHWAYS))
    if elevation_m is not None:
        z = np.asarray(elevation_m, dtype=float)
        if z.shape != (net.n_nodes,):
            raise InputDataError(
                f"elevation_m must have one value per node ({net.n_nodes}), got shape {z.shape}"
            )
        grade = (z[net.v] - z[net.u]) / net.length_m
        grade = np.where(np.isfinite(grade), grade, 0.0)
        out[:, 0] = flat_s / tobler_factor(grade)
        out[:, 1] = flat_s / tobler_factor(-grade)
        if prof.max_grade is not None:
            too_steep = np.abs(grade) > prof.max_grade
            out[too_steep & ~steps] = np.inf
            if too_steep.any():
                logger.info(
                    "profile %s: %d edges steeper than %.4g excluded",
                    prof.name,
                    int((too_steep & ~steps).sum()),
                    prof.max_grade,
                )
    out[steps] = np.inf if prof.exclude_steps else (flat_s[steps] * prof.steps_factor)[:, None]
    return out


__all__ = [
    "BICYCLE_SPEED_M_S",
    "CYCLE_PROFILES",
    "SPLIT_LENGTH_M",
    "STEPS_HIGHWAYS",
    "WALK_PROFILES",
    "WHEELCHAIR_MAX_GRADE",
    "WalkProfile",
    "edge_seconds",
    "get_profile",
    "sample_elevation",
    "split_long_edges",
    "tobler_factor",
]


def prepare_terrain(
    network: WalkNetwork, *, dem: str, split_length_m: float = SPLIT_LENGTH_M
) -> tuple[WalkNetwork, np.ndarray]:
    """The network with long edges split, and node elevations in metres from ``dem``.

    Parameters
    ----------
    network : WalkNetwork
    dem : str
        GeoTIFF of ground height in metres (SRTM, Copernicus GLO-30...).
    split_length_m : float
        Longest edge left unsplit, metres.
    """
    net = split_long_edges(network, max_length_m=split_length_m)
    return net, sample_elevation(net, dem)


def study_terrain(
    network: Keyed[WalkNetwork], walk: WalkSection, ctx: RunContext
) -> tuple[Keyed[WalkNetwork], np.ndarray | None]:
    """The terrain stage: with ``[walk] dem``, the split network and its node elevations
    (cached).

    Without a DEM the network is returned unchanged, with no elevations.
    """
    dem = ctx.resolve(walk.dem)
    split_length_m = walk.split_length_m
    if dem is None:
        return network, None
    ctx.stage("terrain")
    dem_sha = ctx.inputs.sha("dem", dem)

    def compute() -> tuple[WalkNetwork, dict[str, np.ndarray]]:
        net, z = prepare_terrain(network.value, dem=dem, split_length_m=split_length_m)
        return net, {"elevation_m": z}

    got = ctx.store.memo(
        "terrain", [network.key, dem_sha, split_length_m], compute, codec=NETWORK_EXTRA
    )
    net, extra = got.value
    return Keyed(net, got.key, got.cached), np.asarray(extra["elevation_m"])
