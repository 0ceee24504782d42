"""Community coverage: residents within 5/10/15 minutes of each category, and flags.

Residents are represented by network nodes inside each community, weighted either by a
population per node (from a raster, buildings or community totals; see
:mod:`circles.population`) or, where no population data exist, by the street length each
node stands for (half the length of its incident edges). The stand-in is named in the
``residents_basis`` column of every output.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from circles._errors import InputDataError
from circles.config import CoverageSection
from circles.network import WalkNetwork
from circles.result import Residents
from circles.settings import HEX_WIDTH_M, WGS84

logger = logging.getLogger(__name__)

BASIS_STREET_LENGTH = "street length (no population data)"


def assign_nodes(network: WalkNetwork, communities: gpd.GeoDataFrame) -> np.ndarray:
    """Position of the community containing each node (-1 outside all communities).

    Every node belongs to at most one community. Where polygons overlap (a neighbourhood
    drawn inside its district, two boundaries that disagree), the **smallest** polygon
    containing the node wins, so a community inside another still gets its own nodes
    and residents; ties (equal areas, a node on a shared border) go to the first
    community in table order. :func:`circles.communities.community_overlaps` lists the
    overlapping pairs.
    """
    if communities.crs is None:
        raise InputDataError("communities have no CRS")
    polys = np.asarray(communities.to_crs(network.crs).geometry.to_numpy())
    pts = shapely.points(network.x, network.y)
    return smallest_containing(pts, polys, shapely.area(polys))


def smallest_containing(points: np.ndarray, polys: np.ndarray, area: np.ndarray) -> np.ndarray:
    """Position of the smallest polygon that each point lies in or on (-1: none).

    Parameters
    ----------
    points, polys : numpy.ndarray
        shapely points and polygons, in one CRS.
    area : numpy.ndarray
        Each polygon's area (any unit: only their order counts), e.g. in a metric CRS
        when ``polys`` are in degrees.

    Returns
    -------
    numpy.ndarray
        int64 per point; ties (equal areas, a point on a shared border) go to the first
        polygon in order (:func:`assign_nodes`' rule).
    """
    pt_i, poly_i = shapely.STRtree(polys).query(points, predicate="intersects")
    out = np.full(len(points), -1, dtype=np.int64)
    order = np.lexsort((poly_i, area[poly_i], pt_i))
    pt_i, poly_i = pt_i[order], poly_i[order]
    first = np.ones(pt_i.size, bool)
    first[1:] = pt_i[1:] != pt_i[:-1]
    out[pt_i[first]] = poly_i[first]
    return out


def weighted_quantile(
    values: np.ndarray, weights: np.ndarray, groups: np.ndarray, n_groups: int, q: float
) -> np.ndarray:
    """Weighted ``q``-quantile of ``values`` per group (lower weighted quantile).

    The result for a group is the smallest value whose cumulative weight reaches
    ``q`` of the group's total weight (``inf`` values sort last; NaN for an empty group).
    """
    return weighted_quantiles(values, weights, groups, n_groups, (q,))[0]


def weighted_quantiles(
    values: np.ndarray,
    weights: np.ndarray,
    groups: np.ndarray,
    n_groups: int,
    qs: tuple[float, ...],
) -> np.ndarray:
    """:func:`weighted_quantile` for several ``qs`` at once (one sort): ``(len(qs), n)``."""
    out = np.full((len(qs), n_groups), np.nan)
    ok = (groups >= 0) & (weights > 0)
    v, w, g = values[ok], weights[ok], groups[ok]
    if v.size == 0:
        return out
    order = np.lexsort((v, g))
    v, w, g = v[order], w[order], g[order]
    cw = np.cumsum(w)
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    ends = np.r_[starts[1:], g.size]
    base = np.r_[0.0, cw[:-1]][starts]
    total = cw[ends - 1] - base
    for k, q in enumerate(qs):
        target = base + q * total
        # per group: first index i in [start, end) with cw[i] >= target (minus rounding)
        idx = np.searchsorted(cw, target - 1e-9 * np.maximum(total, 1.0), side="left")
        idx = np.clip(idx, starts, ends - 1)
        out[k, g[starts]] = v[idx]
    return out


def coverage_table(
    communities: gpd.GeoDataFrame,
    node_community: np.ndarray,
    node_weight: np.ndarray,
    minutes: Mapping[str, np.ndarray],
    *,
    levels_minutes: Sequence[float] = (5, 10, 15),
    flag_threshold: float = 0.8,
    always_flag: Sequence[str] = (),
    residents_basis: str = BASIS_STREET_LENGTH,
) -> gpd.GeoDataFrame:
    """Per community and category: shares within each level, median and p90 minutes, flag.

    Parameters
    ----------
    communities : geopandas.GeoDataFrame
        With ``community_id`` and ``name``.
    node_community : numpy.ndarray
        Community position per node (-1: none), from :func:`assign_nodes`.
    node_weight : numpy.ndarray
        Residents per node (people, or metres of street as a stand-in).
    minutes : mapping
        Category -> walking minutes per node to its nearest facility (``inf`` = none
        within the cut-off).
    levels_minutes : sequence of float
        Walk-time levels; the last is the one flags use (15 minutes by default).
    flag_threshold : float
        A community is flagged for a category when its share within the last level is
        below this (0-1). Communities with no residents are not flagged (share NaN).
    always_flag : sequence of str
        Categories whose ``<c>_flag`` column is written even when absent from
        ``minutes`` (no facility data): every community is then flagged.
    residents_basis : str
        What the weights are, written to the ``residents_basis`` column.

    Returns
    -------
    geopandas.GeoDataFrame
        The communities with, per category ``c``: ``c_share_<level>`` (0-1),
        ``c_median_min``, ``c_p90_min`` (minutes; inf beyond the search cut-off),
        ``c_flag`` (bool); plus ``residents`` (sum of weights), ``n_nodes`` and
        ``residents_basis``.
    """
    if not 0 <= flag_threshold <= 1:
        raise InputDataError(f"flag_threshold must be within [0, 1], got {flag_threshold}")
    n = len(communities)
    nc = np.asarray(node_community)
    w = np.asarray(node_weight, dtype=float)
    inside = nc >= 0
    total = np.bincount(nc[inside], weights=w[inside], minlength=n)
    out = communities.copy()
    out["residents"] = total
    out["n_nodes"] = np.bincount(nc[inside], minlength=n)
    out["residents_basis"] = residents_basis
    cats = list(minutes) + [c for c in always_flag if c not in minutes]
    last = levels_minutes[-1]
    cols: dict[str, np.ndarray] = {}
    for cat in cats:
        m = np.asarray(minutes[cat], dtype=float) if cat in minutes else np.full(nc.size, np.inf)
        for lev in levels_minutes:
            within = np.bincount(nc[inside], weights=w[inside] * (m[inside] <= lev), minlength=n)
            with np.errstate(invalid="ignore", divide="ignore"):
                cols[f"{cat}_share_{_lev(lev)}"] = np.where(total > 0, within / total, np.nan)
        med, p90 = weighted_quantiles(m, w, nc, n, (0.5, 0.9))
        cols[f"{cat}_median_min"] = med
        cols[f"{cat}_p90_min"] = p90
        share = cols[f"{cat}_share_{_lev(last)}"]
        cols[f"{cat}_flag"] = np.where(np.isnan(share), False, share < flag_threshold)
    return gpd.GeoDataFrame(
        pd.concat([out, pd.DataFrame(cols, index=out.index)], axis=1),
        geometry="geometry",
        crs=communities.crs,
    )


def _lev(level: float) -> str:
    return str(int(level)) if float(level).is_integer() else str(level)


def hexagon_communities(network: WalkNetwork, *, width_m: float = HEX_WIDTH_M) -> gpd.GeoDataFrame:
    """Regular hexagons covering the network, clipped to its extent, as stand-in communities.

    Hexagons (flat-to-flat ``width_m`` metres, pointy-top) are laid over the network's
    bounding box in its metric CRS, clipped to the convex hull of the network's nodes
    buffered by half a hexagon width, and kept when they contain at least one node.

    Returns
    -------
    geopandas.GeoDataFrame
        EPSG:4326 with ``community_id`` (``hex_<row>_<col>``), ``name`` and
        ``derived = "hexagon grid"``.
    """
    if not width_m > 0:
        raise InputDataError(f"hexagon width must be positive, got {width_m}")
    r = width_m / np.sqrt(3.0)  # circumradius
    x0, x1 = network.x.min(), network.x.max()
    y0, y1 = network.y.min(), network.y.max()
    dy = 1.5 * r
    rows = int(np.ceil((y1 - y0) / dy)) + 2
    cols = int(np.ceil((x1 - x0) / width_m)) + 2
    rr, cc = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    cx = x0 + cc * width_m + (rr % 2) * width_m / 2.0 - width_m / 2.0
    cy = y0 + rr * dy - dy / 2.0
    ang = np.deg2rad(np.arange(6) * 60.0 + 30.0)
    ring = np.stack(
        [cx.ravel()[:, None] + r * np.cos(ang), cy.ravel()[:, None] + r * np.sin(ang)], axis=-1
    )
    hexes = shapely.polygons(ring)
    hull = shapely.buffer(
        shapely.convex_hull(shapely.multipoints(np.column_stack([network.x, network.y]))),
        width_m / 2.0,
    )
    clipped = shapely.intersection(hexes, hull)
    pts = shapely.points(network.x, network.y)
    has = np.zeros(hexes.size, bool)
    hit = shapely.STRtree(clipped).query(pts, predicate="intersects")[1]
    has[np.unique(hit)] = True
    keep = has & ~shapely.is_empty(clipped)
    ids = [f"hex_{a:02d}_{b:02d}" for a, b in zip(rr.ravel()[keep], cc.ravel()[keep], strict=True)]
    gdf = gpd.GeoDataFrame(
        {
            "community_id": ids,
            "name": [f"Hexagon {i + 1}" for i in range(len(ids))],
            "derived": "hexagon grid",
        },
        geometry=clipped[keep],
        crs=network.crs,
    )
    return gdf.to_crs(WGS84)


def computed_only(section: CoverageSection, categories: Sequence[str]) -> CoverageSection:
    """``[coverage]`` with ``always_flag`` cut to the run's ``categories``.

    ``always_flag`` reports a category flagged everywhere when the run finds no facility
    of it; a category the run does not compute at all (left out of ``[facilities]
    categories``, or not in the profile) is reported nowhere: not in the flags, the
    summary, the checklist, the report tables or the map.
    """
    keep = tuple(c for c in section.always_flag if c in set(categories))
    gone = [c for c in section.always_flag if c not in set(categories)]
    if gone:
        logger.info("not reported (not among the run's categories %s): %s", list(categories), gone)
    return replace(section, always_flag=keep)


def study_coverage(
    communities: gpd.GeoDataFrame,
    node_minutes: pd.DataFrame,
    residents: Residents,
    elderly_categories: Sequence[str],
    levels_minutes: Sequence[float],
    section: CoverageSection,
) -> gpd.GeoDataFrame:
    """The coverage stage: :func:`coverage_table` of every category, elderly categories
    weighted by the elderly residents where they are known.

    Parameters
    ----------
    communities : geopandas.GeoDataFrame
    node_minutes : pandas.DataFrame
        Minutes per node (rows) to each category's nearest facility (columns).
    residents : Residents
        Nodes' communities, residents and elderly residents.
    elderly_categories : sequence of str
        Categories weighted by the elderly residents (when known).
    levels_minutes : sequence of float
    section : CoverageSection
        ``[coverage]``: flag threshold and always-flagged categories.
    """
    categories = list(node_minutes.columns)
    table = coverage_table(
        communities,
        residents.node_community,
        residents.weight,
        {c: node_minutes[c].to_numpy() for c in categories},
        levels_minutes=levels_minutes,
        flag_threshold=section.flag_threshold,
        always_flag=section.always_flag,
        residents_basis=residents.basis,
    )
    old = [c for c in categories if c in set(elderly_categories)]
    if residents.elderly is not None and old:
        old_t = coverage_table(
            communities,
            residents.node_community,
            residents.elderly,
            {c: node_minutes[c].to_numpy() for c in old},
            levels_minutes=levels_minutes,
            flag_threshold=section.flag_threshold,
        )
        for col in old_t.columns:
            if any(col.startswith(c + "_") for c in old):
                table[col] = old_t[col].to_numpy()
        table["elderly_residents"] = old_t["residents"].to_numpy()
    return table
