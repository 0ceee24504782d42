"""The cycling stage: the 15-minute fitness circle "on foot or by bicycle".

With ``[cycling] enabled`` the run also loads the cycling network of its OSM source,
snaps the facilities of the cycling categories to it and times them by bicycle from
every walking node: each resident walks to the nearest cycling node (within
``max_link_m``) and cycles from there (:func:`cycling_access`). The communities table
gains ``<cat>_bike_share_<level>``, ``<cat>_bike_median_min`` and ``<cat>_bike_p90_min``
columns (:func:`study_cycling`); the walking flags stay as they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd

from circles._errors import ConfigError
from circles.access import AccessGraph, SnappedArrays, nearest_by_group
from circles.cache import ARRAYS, Cache, array_digest
from circles.config import CyclingSection, NetworkSection, WalkSection
from circles.coverage import coverage_table
from circles.facilities import STATUS_SNAPPED, snap_facilities
from circles.network import WalkNetwork
from circles.result import Residents, RunContext, level_key
from circles.settings import WGS84
from circles.sources import local_source, parsed_network


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
    snapped_arrays = SnappedArrays(fac)
    cache = store if store is not None else Cache(None)
    for cat in categories:
        edge, frac, snap_m = snapped_arrays(cat, 1.0)
        edge, frac, acc = _at_one_way_ends(bike_net, edge, frac, snap_m / walk_speed_m_s)

        def compute(
            cat: str = cat, edge: np.ndarray = edge, frac: np.ndarray = frac, acc: np.ndarray = acc
        ) -> dict[str, Any]:
            nonlocal graph
            if graph is None:
                graph = AccessGraph.from_network(bike_net, cost)
            group = np.full(edge.size, cat, dtype=object)
            with np.errstate(invalid="ignore"):  # 0 * inf at one-way heads: see above
                near = nearest_by_group(
                    graph, edge, frac, acc, group, limit_s=60.0 * max_minutes, groups=[cat]
                )
            minutes = near[cat][0] / 60.0
            # a facility at a node: that node is there already (one-way heads, above)
            head = np.where(frac >= 1.0, bike_net.v[edge], bike_net.u[edge])
            at_node = (frac <= 0.0) | (frac >= 1.0)
            np.minimum.at(minutes, head[at_node], acc[at_node] / 60.0)
            return {"minutes": minutes}

        parts = [bike_key, speed_m_s, array_digest(edge, frac, acc), max_minutes]
        got = cache.memo("bike_access", parts, compute, codec=ARRAYS)
        bike_min = np.asarray(got.value["minutes"])
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


def study_cycling(
    section: CyclingSection,
    network_section: NetworkSection,
    walk: WalkSection,
    network: WalkNetwork,
    facilities: gpd.GeoDataFrame,
    communities: gpd.GeoDataFrame,
    table: gpd.GeoDataFrame,
    residents: Residents,
    elderly_categories: Sequence[str],
    ctx: RunContext,
) -> tuple[gpd.GeoDataFrame, dict[str, Any] | None]:
    """The cycling stage: the cycling network (cached), cycling minutes per walking node,
    and the ``<cat>_bike_*`` columns.

    Parameters
    ----------
    section : CyclingSection
        ``[cycling]``.
    network_section : NetworkSection
        ``[network]``: the OSM file the cycling network is read from.
    walk : WalkSection
        ``[walk]`` (the walk to the cycling network, the cut-off).
    network : WalkNetwork
        The walking network (where the residents are).
    facilities, communities, table : geopandas.GeoDataFrame
        The facilities, the communities and their coverage table.
    residents : Residents
    elderly_categories : sequence of str
        Categories weighted by the elderly residents (when known).
    ctx : RunContext

    Returns
    -------
    tuple
        A copy of ``table`` with the ``<cat>_bike_share_<level>``, ``<cat>_bike_median_min``
        and ``<cat>_bike_p90_min`` columns added, and the ``cycling`` section of
        ``summary.json``; without ``[cycling] enabled``, ``table`` itself and None.
    """
    cy = section
    if not cy.enabled:
        return table, None
    ctx.stage("cycling")
    node_community, weight = residents.node_community, residents.weight
    elderly_weight, residents_basis = residents.elderly, residents.basis
    source = local_source(network_section, base_dir=ctx.base_dir)
    keep_largest = network_section.keep_largest
    cats = list(dict.fromkeys(cy.categories))
    bike = parsed_network(source, keep_largest=keep_largest, mode="bike", ctx=ctx)
    bike_net = bike.value
    levels = cy.resolved_levels(walk)
    ctx.say(
        f"cycling network: {bike_net.n_nodes:,} nodes, {bike_net.n_edges:,} edges; timing "
        f"{', '.join(cats)} by bicycle at {cy.speed_m_s} m/s"
    )
    minutes, _, info = cycling_access(
        network,
        bike_net,
        facilities,
        cats,
        speed_m_s=float(cy.speed_m_s),
        walk_speed_m_s=walk.resolved_speed_m_s,
        max_snap_m=walk.max_snap_m,
        max_link_m=float(cy.max_link_m),
        max_minutes=walk.max_minutes,
        store=ctx.store,
        bike_key=bike.key,
    )
    elderly = set(elderly_categories)
    lev_last = level_key(levels[-1])
    out = table.copy()
    rows = []
    for cat in cats:
        w = elderly_weight if (cat in elderly and elderly_weight is not None) else weight
        t = coverage_table(
            communities,
            node_community,
            w,
            {cat: minutes[cat].to_numpy()},
            levels_minutes=levels,
            residents_basis=residents_basis,
        )
        for lev in levels:
            k = level_key(lev)
            out[f"{cat}_bike_share_{k}"] = t[f"{cat}_share_{k}"].to_numpy()
        out[f"{cat}_bike_median_min"] = t[f"{cat}_median_min"].to_numpy()
        out[f"{cat}_bike_p90_min"] = t[f"{cat}_p90_min"].to_numpy()
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
    doc = {
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
    return out, doc
