"""Residents per network node: from population rasters, community tables or buildings.

Coverage indicators ("share of residents within 15 minutes") need to know where people
live. This module turns three kinds of data into a ``node_population`` array (people per
node of a :class:`~circles.network.WalkNetwork`):

- :func:`raster_node_population`: a gridded population raster (WorldPop, GHSL-POP, a
  national census grid) in any CRS. Only the window covering the study area is read, so
  a national raster need not fit in memory.
- :func:`community_node_population`: a population (or household) figure per community,
  spread over the community's nodes in proportion to street length.
- :func:`building_population`: OSM residential buildings (footprint x levels x persons
  per square metre of floor area).

Within a cell or a community, people are split over nodes in proportion to
:meth:`WalkNetwork.node_weight_m` (half the length of each node's incident edges): a node
on a long street stands for more frontage, hence more doors, than one on a short link.

Elderly residents
-----------------
Indicators for the elderly (elderly canteens, day care) are best weighted by people aged
60+. Two ways:

- a second raster of people aged 60+ (WorldPop publishes age/sex rasters in 5-year bands,
  e.g. ``chn_f_60_2020.tif`` ... ``chn_m_80_2020.tif``; add the 60+ bands first):
  call :func:`raster_node_population` on that path; the same placement rules apply;
- a share of the total (e.g. the 2020 census share of people 60+ of a county or
  sub-district): :func:`apply_share` multiplies the node population by it.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj import Transformer

if TYPE_CHECKING:
    import rasterio.windows

from circles import io
from circles._errors import DataFileError, InputDataError
from circles.cache import ARRAYS, Keyed
from circles.config import CommunitiesSection, PopulationSection, resolve_path
from circles.coverage import BASIS_STREET_LENGTH, assign_nodes
from circles.network import WalkNetwork
from circles.result import Residents, RunContext
from circles.settings import WGS84

logger = logging.getLogger(__name__)

#: Default largest distance in metres from a populated cell's centre (or a building's
#: centroid) to the nearest node; people farther away are reported as unplaced.
MAX_SNAP_M = 250.0

#: OSM ``building=*`` values counted as homes.
RESIDENTIAL_BUILDINGS = frozenset(
    {
        "residential",
        "apartments",
        "house",
        "detached",
        "terrace",
        "dormitory",
        "semidetached_house",
    }
)

#: Gross floor area per resident in m². Assumption, close to China's per-capita housing
#: floor area: the 2020 census gives 41.8 m² per person in family households overall and
#: about 36.5 m² in cities [from memory of the 第七次全国人口普查 housing tables; check
#: before quoting]. Footprint x levels is gross floor area, like the census figure.
FLOOR_AREA_M2_PER_PERSON = 35.0

#: Default persons per m² of gross floor area (1 / :data:`FLOOR_AREA_M2_PER_PERSON`).
PERSONS_PER_M2 = 1.0 / FLOOR_AREA_M2_PER_PERSON

#: Storeys assumed when ``building:levels`` is missing or unusable. Assumption: Chinese
#: urban housing of the 1980s-2000s is mostly six-storey walk-ups (多层住宅), while
#: houses, terraces and villas have about two storeys.
DEFAULT_LEVELS: Mapping[str, float] = {
    "residential": 6.0,
    "apartments": 6.0,
    "dormitory": 6.0,
    "house": 2.0,
    "detached": 2.0,
    "terrace": 2.0,
    "semidetached_house": 2.0,
}


@dataclass(frozen=True, eq=False)
class PopulationPlacement:
    """People placed on network nodes from a population raster.

    Attributes
    ----------
    node_population : numpy.ndarray
        People per node (float, length ``network.n_nodes``).
    placed : float
        People placed on nodes (``node_population.sum()``).
    unplaced : float
        People in populated cells farther than ``max_snap_m`` from every node.
    raster_total : float
        People in the raster inside the study area; ``placed + unplaced`` equals it.
    unplaced_cells : int
        Number of populated cells left unplaced.
    method : str
        How the placement was made (for reports).
    window_shape : tuple of int
        ``(rows, cols)`` of the raster window actually read.
    """

    node_population: np.ndarray
    placed: float
    unplaced: float
    raster_total: float
    unplaced_cells: int
    method: str
    window_shape: tuple[int, int] = (0, 0)


@dataclass(frozen=True, eq=False)
class BuildingPopulation:
    """People placed on network nodes from residential buildings.

    Attributes
    ----------
    node_population : numpy.ndarray
        People per node (float, length ``network.n_nodes``).
    placed : float
        People placed on nodes.
    unplaced : float
        People in buildings farther than ``max_snap_m`` from every node.
    total : float
        People estimated in all residential buildings (``placed + unplaced``).
    buildings_residential : int
        Residential buildings used.
    buildings_unplaced : int
        Residential buildings farther than ``max_snap_m`` from every node.
    levels_defaulted : int
        Residential buildings without a usable ``building:levels``.
    buildings_without_area : int
        Residential buildings mapped as points or lines (no footprint, no people).
    method : str
        How the estimate was made (for reports).
    """

    node_population: np.ndarray
    placed: float
    unplaced: float
    total: float
    buildings_residential: int
    buildings_unplaced: int
    levels_defaulted: int
    buildings_without_area: int
    method: str


def _check_network(network: Any) -> WalkNetwork:
    if not isinstance(network, WalkNetwork):
        raise InputDataError(
            f"network must be a circles.network.WalkNetwork, got {type(network).__name__}; "
            "build one with circles.network.build_network or circles.io"
        )
    if network.n_nodes == 0:
        raise InputDataError("the walk network has no nodes")
    return network


def _check_distance(value: float, name: str) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise InputDataError(f"{name} must be a number of metres, got {value!r}") from None
    if not (math.isfinite(out) and out >= 0):
        raise InputDataError(f"{name} must be a finite distance >= 0 m, got {value!r}")
    return out


def _open_raster(path: str | os.PathLike[str]) -> Any:
    p = Path(path)
    if not p.is_file():
        raise DataFileError(f"raster file not found: {p}; check the path")
    import rasterio  # imported when a raster is read (0.5 s of every CLI call otherwise)
    from rasterio.errors import RasterioIOError

    try:
        src = rasterio.open(p)
    except RasterioIOError as exc:
        raise DataFileError(f"cannot read raster {p}: {exc}; is it a GeoTIFF?") from exc
    if src.crs is None:
        src.close()
        raise InputDataError(
            f"raster {p} has no CRS; set one (e.g. gdal_edit.py -a_srs EPSG:4326 {p.name})"
        )
    t = src.transform
    if t.b != 0 or t.d != 0:
        src.close()
        raise InputDataError(
            f"raster {p} is rotated or sheared; warp it to a north-up grid first (gdalwarp)"
        )
    return src


def _window_for_bounds(
    src: Any, bounds: tuple[float, float, float, float]
) -> rasterio.windows.Window | None:
    """Whole-cell window covering ``bounds`` (raster CRS), clipped to the raster."""
    import rasterio.windows
    from rasterio.errors import WindowError

    try:
        w = rasterio.windows.from_bounds(*bounds, transform=src.transform)
    except WindowError as exc:
        raise InputDataError(
            f"cannot find the study area in the raster grid ({exc}); warp the raster to a "
            "north-up grid (gdalwarp)"
        ) from exc
    col0 = max(math.floor(w.col_off), 0)
    row0 = max(math.floor(w.row_off), 0)
    col1 = min(math.ceil(w.col_off + w.width), src.width)
    row1 = min(math.ceil(w.row_off + w.height), src.height)
    if col1 <= col0 or row1 <= row0:
        return None
    return rasterio.windows.Window(col0, row0, col1 - col0, row1 - row0)


def _read_people(src: Any, window: rasterio.windows.Window, band: int) -> np.ndarray:
    """Band values in ``window`` as float64 with nodata, NaN and negatives set to 0."""
    data = src.read(band, window=window, masked=True)
    values = np.ma.filled(data.astype(np.float64), np.nan)
    bad = ~np.isfinite(values) | (values < 0)
    n_neg = int((np.isfinite(values) & (values < 0)).sum())
    if n_neg:
        logger.info("%d raster cells with negative values treated as nodata", n_neg)
    values[bad] = 0.0
    return values


def raster_node_population(
    network: WalkNetwork,
    raster_path: str | os.PathLike[str],
    *,
    max_snap_m: float = MAX_SNAP_M,
    area: shapely.Geometry | None = None,
    band: int = 1,
) -> PopulationPlacement:
    """Place the people of a population raster on the network's nodes.

    Rules:

    1. Study area: ``area`` (a shapely polygon in EPSG:4326) if given, else the network's
       bounding box in its metric CRS enlarged by ``max_snap_m`` on every side. Only the
       raster window covering it is read.
    2. A cell belongs to the study area when its *centre* lies inside it (inside the
       polygon, or inside the bounding box expressed in the raster CRS), so a cell is
       counted whole or not at all, never in part.
    3. Nodata, NaN and negative cells hold no people.
    4. A cell's people go to the nodes inside the cell, in proportion to
       :meth:`WalkNetwork.node_weight_m`. A populated cell without nodes gives its people
       to the node nearest its centre if that is within ``max_snap_m`` (metres, in the
       network's CRS); otherwise they are *unplaced*: counted, logged and reported,
       never silently dropped. Hence ``placed + unplaced == raster_total``.

    Parameters
    ----------
    network : WalkNetwork
        The walk network.
    raster_path : str or os.PathLike
        Population GeoTIFF (people per cell) in any CRS with a north-up grid. For people
        aged 60+, pass a raster of that age group.
    max_snap_m : float, default 250.0
        Largest distance in metres from a cell centre to a node.
    area : shapely.Geometry, optional
        Study area polygon in EPSG:4326 (WGS84 lon/lat).
    band : int, default 1
        Raster band holding the population.

    Returns
    -------
    PopulationPlacement

    Raises
    ------
    DataFileError
        The raster is missing or unreadable.
    InputDataError
        Bad arguments, raster without CRS, or raster not covering the study area.
    """
    import rasterio.warp
    from rasterio.transform import Affine

    net = _check_network(network)
    snap_m = _check_distance(max_snap_m, "max_snap_m")
    if area is not None:
        if not isinstance(area, shapely.Geometry) or area.is_empty:
            raise InputDataError("area must be a non-empty shapely polygon in EPSG:4326")
        if area.geom_type not in {"Polygon", "MultiPolygon"}:
            raise InputDataError(f"area must be a (Multi)Polygon, got a {area.geom_type}")
    if not isinstance(band, int) or band < 1:
        raise InputDataError(f"band must be a 1-based band number, got {band!r}")

    with _open_raster(raster_path) as src:
        if band > src.count:
            raise InputDataError(f"raster {raster_path} has {src.count} band(s), not {band}")
        rcrs = src.crs
        if area is None:
            box_net = (
                float(net.x.min()) - snap_m,
                float(net.y.min()) - snap_m,
                float(net.x.max()) + snap_m,
                float(net.y.max()) + snap_m,
            )
            bounds = rasterio.warp.transform_bounds(net.crs, rcrs, *box_net, densify_pts=21)
        else:
            bounds = rasterio.warp.transform_bounds("EPSG:4326", rcrs, *area.bounds, densify_pts=21)
        window = _window_for_bounds(src, bounds)
        if window is None:
            raise InputDataError(
                f"raster {raster_path} does not cover the study area "
                f"(bounds {tuple(round(b, 6) for b in bounds)} in {rcrs}); "
                "check that the raster is for this region"
            )
        people = _read_people(src, window, band)
        t = src.transform
        # window transform, without Affine '*' (deprecated in affine 3.1)
        wt = Affine(t.a, 0.0, t.c + window.col_off * t.a, 0.0, t.e, t.f + window.row_off * t.e)

    h, w = people.shape
    # centres of populated cells, in the raster CRS
    rows, cols = np.nonzero(people > 0)
    cx = wt.c + (cols + 0.5) * wt.a
    cy = wt.f + (rows + 0.5) * wt.e
    if area is None:
        inside = (cx >= bounds[0]) & (cx <= bounds[2]) & (cy >= bounds[1]) & (cy <= bounds[3])
    else:
        to_ll = Transformer.from_crs(rcrs, "EPSG:4326", always_xy=True)
        lon_c, lat_c = to_ll.transform(cx, cy)
        inside = shapely.contains_xy(area, np.asarray(lon_c), np.asarray(lat_c))
    rows, cols, cx, cy = rows[inside], cols[inside], cx[inside], cy[inside]
    cell = rows * w + cols
    cell_people = people[rows, cols]
    raster_total = float(cell_people.sum())

    # nodes -> cells of the window
    to_r = Transformer.from_crs("EPSG:4326", rcrs, always_xy=True)
    nx_r, ny_r = to_r.transform(net.lon, net.lat)
    inv = ~wt
    ncol = np.floor(inv.a * np.asarray(nx_r) + inv.b * np.asarray(ny_r) + inv.c)
    nrow = np.floor(inv.d * np.asarray(nx_r) + inv.e * np.asarray(ny_r) + inv.f)
    in_win = (ncol >= 0) & (ncol < w) & (nrow >= 0) & (nrow < h)
    node_idx = np.flatnonzero(in_win)
    node_cell = (nrow[in_win] * w + ncol[in_win]).astype(np.int64)
    weight = net.node_weight_m()
    cell_weight = np.bincount(node_cell, weights=weight[node_idx], minlength=h * w)

    node_pop = np.zeros(net.n_nodes)
    # people per unit weight in each populated cell that holds nodes
    per_weight = np.zeros(h * w)
    has_node = cell_weight[cell] > 0
    per_weight[cell[has_node]] = cell_people[has_node] / cell_weight[cell[has_node]]
    node_pop[node_idx] = per_weight[node_cell] * weight[node_idx]

    # populated cells without nodes: nearest node within snap_m
    orphan = ~has_node
    unplaced = 0.0
    unplaced_cells = 0
    if orphan.any():
        to_net = Transformer.from_crs(rcrs, net.crs, always_xy=True)
        ox, oy = to_net.transform(cx[orphan], cy[orphan])
        from scipy.spatial import cKDTree

        tree = cKDTree(np.column_stack([net.x, net.y]))
        dist, nearest = tree.query(
            np.column_stack([np.asarray(ox), np.asarray(oy)]), distance_upper_bound=snap_m
        )
        ok = np.isfinite(dist)
        opeople = cell_people[orphan]
        node_pop += np.bincount(nearest[ok], weights=opeople[ok], minlength=net.n_nodes)
        unplaced = float(opeople[~ok].sum())
        unplaced_cells = int((~ok).sum())
    placed = float(node_pop.sum())
    if unplaced_cells:
        logger.warning(
            "%.1f people in %d raster cells are farther than %.0f m from the walk network "
            "and were not placed (%.2f%% of %.1f)",
            unplaced,
            unplaced_cells,
            snap_m,
            100 * unplaced / raster_total,
            raster_total,
        )
    method = (
        f"raster {Path(raster_path).name} (band {band}): each cell's people split over the "
        f"nodes in the cell by street length; cells without nodes to the nearest node "
        f"within {snap_m:g} m; cells counted when their centre is inside the "
        + ("study-area polygon" if area is not None else f"network bounds + {snap_m:g} m")
    )
    logger.info(
        "population raster %s: window %dx%d cells, %.1f people, %.1f placed, %.1f unplaced",
        raster_path,
        h,
        w,
        raster_total,
        placed,
        unplaced,
    )
    return PopulationPlacement(
        node_population=node_pop,
        placed=placed,
        unplaced=unplaced,
        raster_total=raster_total,
        unplaced_cells=unplaced_cells,
        method=method,
        window_shape=(int(h), int(w)),
    )


def community_node_population(
    network: WalkNetwork,
    node_community: np.ndarray,
    community_population: np.ndarray,
) -> np.ndarray:
    """Spread a population (or household) figure per community over its nodes.

    Each community's figure is split over the nodes assigned to it in proportion to
    :meth:`WalkNetwork.node_weight_m` (street length). Communities with people but no
    node get none placed; their number and total are logged as a warning.

    Parameters
    ----------
    network : WalkNetwork
        The walk network.
    node_community : numpy.ndarray
        int, length ``network.n_nodes``: position of each node's community in
        ``community_population``, -1 for nodes in no community (they get 0).
    community_population : numpy.ndarray
        float per community, shape ``(n_communities,)`` or ``(n_communities, k)`` for
        several columns (e.g. population and households). NaN means no data: the
        community's nodes get NaN.

    Returns
    -------
    numpy.ndarray
        People (or households) per node, shape ``(n_nodes,)`` or ``(n_nodes, k)``.
    """
    net = _check_network(network)
    comm = np.asarray(node_community)
    if comm.shape != (net.n_nodes,) or not np.issubdtype(comm.dtype, np.integer):
        raise InputDataError(
            f"node_community must be an int array of length {net.n_nodes} (one per node), "
            f"got dtype {comm.dtype} and shape {comm.shape}"
        )
    pop = np.asarray(community_population, dtype=float)
    if pop.ndim not in (1, 2):
        raise InputDataError(
            f"community_population must be 1-D or 2-D (communities x columns), got {pop.ndim}-D"
        )
    n_comm = pop.shape[0]
    if comm.size and (comm.min() < -1 or comm.max() >= n_comm):
        raise InputDataError(
            f"node_community values must be -1 or 0..{n_comm - 1} (positions in "
            f"community_population), got {comm.min()}..{comm.max()}"
        )
    if np.any(np.isfinite(pop) & (pop < 0)):
        raise InputDataError("community_population has negative values; fix the table")

    weight = net.node_weight_m()
    member = comm >= 0
    c = comm[member]
    wsum = np.bincount(c, weights=weight[member], minlength=n_comm)
    nsum = np.bincount(c, minlength=n_comm)
    # share of its community's figure for each member node (equal split if no length)
    share = np.where(
        wsum[c] > 0, weight[member] / np.where(wsum[c] > 0, wsum[c], 1.0), 1.0 / nsum[c]
    )
    out_shape = (net.n_nodes, *pop.shape[1:])
    out = np.zeros(out_shape)
    out[member] = pop[c] * (share if pop.ndim == 1 else share[:, None])

    has_people = np.isfinite(pop) & (pop > 0)
    if pop.ndim == 2:
        has_people = has_people.any(axis=1)
    lost = has_people & (nsum == 0)
    if lost.any():
        lost_total = np.nansum(pop[lost] if pop.ndim == 1 else pop[lost, 0])
        logger.warning(
            "%d communities with population have no network nodes and place nobody "
            "(%.1f people in the first column; positions %s)",
            int(lost.sum()),
            lost_total,
            np.flatnonzero(lost)[:10].tolist(),
        )
    return out


def building_population(
    buildings_gdf: Any,
    network: WalkNetwork,
    *,
    persons_per_m2: float = PERSONS_PER_M2,
    default_levels: float | Mapping[str, float] = DEFAULT_LEVELS,
    max_snap_m: float = MAX_SNAP_M,
) -> BuildingPopulation:
    """Estimate residents from OSM residential buildings and place them on nodes.

    People per building = footprint area (m², in the network's metric CRS) x levels x
    ``persons_per_m2``. Only ``building`` values in :data:`RESIDENTIAL_BUILDINGS` count.
    Levels come from ``building:levels`` where it is a positive number, else from
    ``default_levels`` (assumption, see :data:`DEFAULT_LEVELS`). Each building goes to
    the node nearest its centroid within ``max_snap_m``; farther ones are unplaced
    (counted and logged).

    Parameters
    ----------
    buildings_gdf : geopandas.GeoDataFrame
        Buildings with a CRS, a ``building`` column and optionally ``building:levels``.
    network : WalkNetwork
        The walk network.
    persons_per_m2 : float, default 1/35
        Residents per m² of gross floor area (see :data:`FLOOR_AREA_M2_PER_PERSON`).
    default_levels : float or mapping, default :data:`DEFAULT_LEVELS`
        Storeys when ``building:levels`` is missing: one number, or one per
        ``building`` value.
    max_snap_m : float, default 250.0
        Largest distance in metres from a building centroid to its node.

    Returns
    -------
    BuildingPopulation
    """
    net = _check_network(network)
    if not isinstance(buildings_gdf, gpd.GeoDataFrame):
        raise InputDataError(
            f"buildings_gdf must be a geopandas.GeoDataFrame, got {type(buildings_gdf).__name__}"
        )
    if buildings_gdf.crs is None:
        raise InputDataError("buildings_gdf has no CRS; set it (OSM data: EPSG:4326)")
    if "building" not in buildings_gdf.columns:
        raise InputDataError("buildings_gdf needs a 'building' column (the OSM building tag)")
    ppm2 = float(persons_per_m2)
    if not (math.isfinite(ppm2) and ppm2 > 0):
        raise InputDataError(f"persons_per_m2 must be positive, got {persons_per_m2!r}")
    snap_m = _check_distance(max_snap_m, "max_snap_m")
    if isinstance(default_levels, Mapping):
        lv = {str(k): float(x) for k, x in default_levels.items()}
        missing = RESIDENTIAL_BUILDINGS - lv.keys()
        if missing:
            raise InputDataError(f"default_levels lacks building types {sorted(missing)}")
    else:
        lv = dict.fromkeys(RESIDENTIAL_BUILDINGS, float(default_levels))
    if not all(math.isfinite(x) and x > 0 for x in lv.values()):
        raise InputDataError("default_levels must be positive numbers of storeys")

    tag = buildings_gdf["building"].astype("string").fillna("").str.strip().str.lower()
    res = tag.isin(RESIDENTIAL_BUILDINGS).to_numpy(dtype=bool)
    gdf = buildings_gdf.loc[res]
    tag_res = tag[res].to_numpy(dtype=object)
    geom = gdf.geometry.to_crs(net.crs).to_numpy()
    area_m2 = np.asarray(shapely.area(geom), dtype=float)
    area_m2 = np.where(np.isfinite(area_m2), area_m2, 0.0)
    if "building:levels" in gdf.columns:
        levels = pd.to_numeric(gdf["building:levels"], errors="coerce").to_numpy(dtype=float)
    else:
        levels = np.full(len(gdf), np.nan)
    bad_levels = ~(np.isfinite(levels) & (levels > 0))
    levels = np.where(bad_levels, [lv[t] for t in tag_res], levels)
    people = area_m2 * levels * ppm2
    no_area = int((area_m2 <= 0).sum())

    centroids = shapely.centroid(geom)
    tree = shapely.STRtree(shapely.points(net.x, net.y))
    idx, _dist = tree.query_nearest(
        centroids, max_distance=snap_m, return_distance=True, all_matches=False
    )
    b_idx, n_idx = idx[0], idx[1]
    node_pop = np.bincount(n_idx, weights=people[b_idx], minlength=net.n_nodes).astype(float)
    matched = np.zeros(len(people), bool)
    matched[b_idx] = True
    unplaced_mask = ~matched & (people > 0)
    total = float(people.sum())
    unplaced = float(people[unplaced_mask].sum())
    if unplaced_mask.any():
        logger.warning(
            "%d residential buildings (%.1f people) are farther than %.0f m from the walk "
            "network and were not placed",
            int(unplaced_mask.sum()),
            unplaced,
            snap_m,
        )
    method = (
        f"OSM residential buildings: footprint m² x levels (default per type where "
        f"building:levels is missing) x {ppm2:.4g} persons/m², to the nearest node within "
        f"{snap_m:g} m"
    )
    return BuildingPopulation(
        node_population=node_pop,
        placed=float(node_pop.sum()),
        unplaced=unplaced,
        total=total,
        buildings_residential=len(people),
        buildings_unplaced=int(unplaced_mask.sum()),
        levels_defaulted=int(bad_levels.sum()),
        buildings_without_area=no_area,
        method=method,
    )


def apply_share(node_population: np.ndarray, share: float | np.ndarray) -> np.ndarray:
    """People of a subgroup per node: ``node_population * share``.

    Parameters
    ----------
    node_population : numpy.ndarray
        People per node.
    share : float or numpy.ndarray
        Share of the subgroup (0-1), one number or one per node (e.g. the 60+ share of
        each node's community).

    Returns
    -------
    numpy.ndarray
        A new array.
    """
    pop = np.asarray(node_population, dtype=float)
    s = np.asarray(share, dtype=float)
    if s.ndim and s.shape != pop.shape:
        raise InputDataError(
            f"share must be one number or one per node ({pop.shape}), got shape {s.shape}"
        )
    finite = s[np.isfinite(s)]
    if finite.size and (finite.min() < 0 or finite.max() > 1):
        raise InputDataError("share must lie between 0 and 1 (a fraction, not a percent)")
    return pop * s


__all__ = [
    "DEFAULT_LEVELS",
    "FLOOR_AREA_M2_PER_PERSON",
    "MAX_SNAP_M",
    "PERSONS_PER_M2",
    "RESIDENTIAL_BUILDINGS",
    "BuildingPopulation",
    "PopulationPlacement",
    "apply_share",
    "building_population",
    "community_node_population",
    "raster_node_population",
]


# --------------------------------------------------------------------------- the stage


def node_weights(
    pop: PopulationSection,
    network: WalkNetwork,
    communities: Any,
    node_comm: np.ndarray,
    *,
    source: str,
    base_dir: str = ".",
    population_column: str | None = None,
    elderly_share_column: str | None = None,
) -> tuple[np.ndarray, np.ndarray | None, str, dict[str, Any]]:
    """Residents per node (and elderly residents per node, if known) and what they rest on.

    Parameters
    ----------
    pop : PopulationSection
        ``[population]``: rasters or OSM buildings.
    network : WalkNetwork
    communities : geopandas.GeoDataFrame
        The communities (their population and elderly-share columns, if any).
    node_comm : numpy.ndarray
        Community position of each node (-1: none).
    source : str
        The OSM file (buildings are read from it).
    base_dir : str
        Folder that relative raster paths are resolved against.
    population_column, elderly_share_column : str, optional
        Community columns of people and of the share aged 60+ (0-1).

    Returns
    -------
    tuple
        People per node, elderly people per node (None: not known), what the people
        rest on (``residents_basis``), and placement counts for the summary.
    """
    info: dict[str, Any] = {}
    area = shapely.union_all(communities.geometry.to_numpy()) if len(communities) else None
    elderly = None
    if pop.raster is not None:
        placed = raster_node_population(
            network, resolve_path(pop.raster, base_dir) or "", max_snap_m=pop.max_snap_m, area=area
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
        feats = read_buildings(source)
        b = building_population(feats, network, max_snap_m=pop.max_snap_m)
        weight = b.node_population
        basis = "OSM residential buildings (floor area x levels)"
        info["buildings"] = {
            "placed": b.placed,
            "unplaced": b.unplaced,
            "residential_buildings": b.buildings_residential,
            "levels_defaulted": b.levels_defaulted,
        }
    elif population_column and population_column in communities:
        col = population_column
        weight = community_node_population(network, node_comm, communities[col].to_numpy(float))
        weight = np.nan_to_num(weight, nan=0.0)
        basis = f"community population ({col}) spread over street length"
    else:
        weight = network.node_weight_m()
        basis = BASIS_STREET_LENGTH
    if pop.elderly_raster is not None:
        placed = raster_node_population(
            network,
            resolve_path(pop.elderly_raster, base_dir) or "",
            max_snap_m=pop.max_snap_m,
            area=area,
        )
        elderly = placed.node_population
        info["elderly_raster"] = {
            "placed": placed.placed,
            "unplaced": placed.unplaced,
            "raster_total": placed.raster_total,
        }
    elif (share_col := elderly_share_column) is not None and (share_col in communities):
        col = share_col
        share = communities[col].to_numpy(float)
        bad = ~np.isfinite(share) | (share < 0) | (share > 1)
        if bad.any():
            raise InputDataError(
                f"communities.{col}: elderly shares must be numbers between 0 and 1; "
                f"{int(bad.sum())} communities have other values"
            )
        elderly = apply_share(weight, np.where(node_comm >= 0, share[node_comm], 0.0))
        info["elderly_share_column"] = col
    return weight, elderly, basis, info


def read_buildings(source: str) -> gpd.GeoDataFrame:
    """The buildings of an OSM file (with ``building`` and ``building:levels``)."""
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


def study_residents(
    network: Keyed[WalkNetwork],
    communities: Keyed[Any],
    pop: PopulationSection,
    columns: CommunitiesSection,
    source: str,
    ctx: RunContext,
) -> Residents:
    """The residents stage: nodes assigned to communities and weighted (cached).

    Parameters
    ----------
    network, communities : Keyed
        The walking network and the communities, with their cache keys.
    pop : PopulationSection
        ``[population]``.
    columns : CommunitiesSection
        ``[communities]`` (its population and elderly-share columns).
    source : str
        The OSM file (buildings are read from it).
    ctx : RunContext
    """
    ctx.stage("residents")
    base_dir = ctx.base_dir
    population_column = columns.population_column
    elderly_share_column = columns.elderly_share_column
    files = {
        k: ctx.inputs.sha(k, resolve_path(v, base_dir) or v)
        for k, v in (("population_raster", pop.raster), ("elderly_raster", pop.elderly_raster))
        if v is not None
    }
    src_sha = ctx.inputs.sha("network_source", source) if pop.buildings else None

    def compute() -> dict[str, Any]:
        node_comm = assign_nodes(network.value, communities.value)
        weight, elderly, basis, info = node_weights(
            pop,
            network.value,
            communities.value,
            node_comm,
            source=source,
            base_dir=base_dir,
            population_column=population_column,
            elderly_share_column=elderly_share_column,
        )
        return {
            "node_comm": node_comm,
            "weight": weight,
            "elderly": elderly if elderly is not None else np.zeros(0),
            "basis": basis,
            "pop_info": info,
            "has_elderly": elderly is not None,
        }

    got = ctx.store.memo(
        "residents",
        [network.key, communities.key, asdict(pop), files, src_sha],
        compute,
        codec=ARRAYS,
    )
    v = got.value
    return Residents(
        node_community=v["node_comm"],
        weight=v["weight"],
        elderly=v["elderly"] if v["has_elderly"] else None,
        basis=str(v["basis"]),
        info=dict(v["pop_info"]),
        key=got.key,
    )
