"""Who is left out: coverage of all residents against the elderly, the Gini coefficient of
walking minutes, urban communities against rural villages, and supply per resident
within the walking threshold (two-step floating catchment areas).

- :func:`weighted_gini`: the Gini coefficient of a resident-weighted distribution,
  ``sum_ij w_i w_j |x_i - x_j| / (2 W^2 mean)``, computed in one sort. Minutes beyond
  the search cut-off count as the cut-off (``[walk] max_minutes``), so a place with no
  facility at all is as far as the search goes, not infinitely far.
- :func:`two_step_fca`: Luo & Wang's (2003) two-step floating catchment area through
  PySAL's ``access`` package: each facility's capacity divided by the residents within
  the threshold of it (step 1), summed over the facilities within the threshold of
  each node (step 2). The long-form cost table is the walking minutes from every node
  to every facility within the threshold (:func:`facility_pairs`).
- :func:`study_equity`: the stage (``[equity] enabled = true``).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
from scipy.sparse.csgraph import dijkstra

from circles._errors import InputDataError
from circles.access import AccessGraph, Entries, SnappedArrays
from circles.config import EquitySection, WalkSection
from circles.facilities import STATUS_SNAPPED
from circles.network import WalkNetwork
from circles.result import Residents, RunContext, StudyAccess, level_key, with_columns

logger = logging.getLogger(__name__)

#: Bytes of dense distance rows held at once.
PAIRS_CHUNK_BYTES = 32 * 1024 * 1024


def weighted_gini(
    values: np.ndarray,
    weights: np.ndarray | None = None,
    *,
    censored_at: float | None = None,
) -> float:
    """The Gini coefficient of ``values`` weighted by ``weights`` (0: all equal; towards
    1: concentrated). NaN when there is no weight or the weighted mean is 0, and when
    every value is censored (at or beyond ``censored_at``): nobody is within reach, so
    how unequal the walks are is unknown, not "perfectly equal".

    Parameters
    ----------
    values : numpy.ndarray
        Non-negative finite values (e.g. minutes, censored at the cut-off).
    weights : numpy.ndarray, optional
        Residents per value (default: 1 each).
    censored_at : float, optional
        The censoring value (e.g. the search cut-off, minutes): values at or beyond it
        stand for "unknown, at least this".
    """
    x = np.asarray(values, dtype=float)
    w = np.ones_like(x) if weights is None else np.asarray(weights, dtype=float)
    if x.shape != w.shape:
        raise InputDataError(f"values {x.shape} and weights {w.shape} differ in shape")
    ok = w > 0
    x, w = x[ok], w[ok]
    if x.size == 0:
        return float("nan")
    if not np.isfinite(x).all() or (x < 0).any():
        raise InputDataError("Gini needs finite values >= 0 (censor minutes at the cut-off)")
    if censored_at is not None and (x >= censored_at).all():
        return float("nan")  # nobody within reach: no measure of inequality
    order = np.argsort(x, kind="stable")
    x, w = x[order], w[order]
    if x[0] == x[-1]:
        return 0.0 if x[0] > 0 else float("nan")
    total_w = w.sum()
    sw = (w * x).sum()
    if sw <= 0:
        return float("nan")
    cum = np.cumsum(w)
    # sum_ij w_i w_j |x_i - x_j| = 2 sum_i w_i x_i (2 C_i - w_i - W), C_i the cumulative weight
    return float((w * x * (2 * cum - w - total_w)).sum() / (total_w * sw))


def gini_by_group(
    values: np.ndarray,
    weights: np.ndarray,
    groups: np.ndarray,
    n_groups: int,
    *,
    censored_at: float | None = None,
) -> np.ndarray:
    """:func:`weighted_gini` per group (``groups`` -1: in none; NaN for a group without
    weight or with every value censored at ``censored_at``)."""
    g = np.asarray(groups)
    out = np.full(n_groups, np.nan)
    for k in np.unique(g[g >= 0]):
        m = g == k
        out[int(k)] = weighted_gini(
            np.asarray(values)[m], np.asarray(weights)[m], censored_at=censored_at
        )
    return out


def facility_pairs(
    graph: AccessGraph,
    edge: np.ndarray | Entries,
    frac: np.ndarray | None,
    access_s: np.ndarray | None,
    *,
    minutes: float,
) -> pd.DataFrame:
    """Walking minutes from every node to every facility within ``minutes``.

    ``edge``, ``frac``, ``access_s`` are the facilities' snap positions (``access_s`` in
    seconds), or ``edge`` is their :class:`~circles.access.Entries` (area facilities
    entered at many places; ``frac`` and ``access_s`` None).

    Returns
    -------
    pandas.DataFrame
        ``node`` (position), ``facility`` (position in ``edge``), ``minutes``: the
        long-form cost table of the floating catchment areas.
    """
    n = graph.n_nodes
    entries = Entries.of(edge, frac, access_s)
    k = int(entries.n_facilities)
    parts = []
    if k:
        mat = graph.with_entries(entries)
        chunk = max(1, PAIRS_CHUNK_BYTES // (8 * (n + k)))
        limit = 60.0 * float(minutes) * (1 + 1e-9) + 1e-6
        for start in range(0, k, chunk):
            idx = np.arange(n + start, n + min(k, start + chunk))
            mins = dijkstra(mat, directed=True, indices=idx, limit=limit)[:, :n] / 60.0
            f, v = np.nonzero(mins <= minutes)
            parts.append(pd.DataFrame({"node": v, "facility": f + start, "minutes": mins[f, v]}))
    if not parts:
        return pd.DataFrame({"node": [], "facility": [], "minutes": []})
    return pd.concat(parts, ignore_index=True)


def two_step_fca(
    pairs: pd.DataFrame,
    demand: np.ndarray,
    capacity: np.ndarray,
    *,
    minutes: float,
) -> np.ndarray:
    """Two-step floating catchment area ratio per node, with PySAL ``access``.

    Parameters
    ----------
    pairs : pandas.DataFrame
        ``node``, ``facility``, ``minutes`` (:func:`facility_pairs`).
    demand : numpy.ndarray
        Residents per node.
    capacity : numpy.ndarray
        Capacity per facility (seats, places).
    minutes : float
        The catchment: walking minutes.

    Returns
    -------
    numpy.ndarray
        Capacity per resident available within the catchment of each node (0 where no
        facility is within it).
    """
    import access as pysal_access

    d = np.asarray(demand, dtype=float)
    c = np.asarray(capacity, dtype=float)
    if not np.isfinite(c).all() or (c < 0).any():
        raise InputDataError("capacities must be finite numbers >= 0")
    out = np.zeros(d.size)
    if len(pairs) == 0 or c.size == 0:
        return out
    used = np.unique(pairs["node"].to_numpy(np.int64))
    dem = pd.DataFrame({"node": used, "residents": d[used]})
    sup = pd.DataFrame({"facility": np.arange(c.size), "capacity": c})
    cost = pairs.astype({"node": np.int64, "facility": np.int64})
    with warnings.catch_warnings():
        # access uses pandas idioms that newer pandas deprecate (set_index(inplace=True))
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        acc = pysal_access.Access(
            demand_df=dem,
            demand_index="node",
            demand_value="residents",
            supply_df=sup,
            supply_index="facility",
            supply_value="capacity",
            cost_df=cost,
            cost_origin="node",
            cost_dest="facility",
            cost_name="minutes",
        )
        got = acc.two_stage_fca(name="fca", max_cost=float(minutes))
    col = got.columns[-1]
    s = got[col].fillna(0.0)
    out[s.index.to_numpy(np.int64)] = s.to_numpy(float)
    return out


def _shares(nc: np.ndarray, w: np.ndarray, m: np.ndarray, level: float, n: int) -> np.ndarray:
    inside = nc >= 0
    tot = np.bincount(nc[inside], weights=w[inside], minlength=n)
    hit = np.bincount(nc[inside], weights=w[inside] * (m[inside] <= level), minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(tot > 0, hit / tot, np.nan)


def _summary_row(
    sel: np.ndarray,
    weight: np.ndarray,
    elderly: np.ndarray | None,
    minutes: np.ndarray,
    level: float,
    fca: np.ndarray | None,
    censored_at: float,
) -> dict[str, Any]:
    w = weight[sel]
    m = minutes[sel]
    tot = float(w.sum())
    gini = weighted_gini(m, w, censored_at=censored_at) if tot > 0 else float("nan")
    row: dict[str, Any] = {
        "residents": tot,
        "share_all": float(w[m <= level].sum() / tot) if tot > 0 else None,
        "gini_minutes": gini if np.isfinite(gini) else None,
        "mean_minutes": float((w * m).sum() / tot) if tot > 0 else None,
    }
    if elderly is not None:
        e = elderly[sel]
        te = float(e.sum())
        row["elderly"] = te
        row["share_elderly"] = float(e[m <= level].sum() / te) if te > 0 else None
    if fca is not None:
        row["fca"] = float((w * fca[sel]).sum() / tot) if tot > 0 else None
    return row


def study_equity(
    section: EquitySection,
    network: WalkNetwork,
    facilities: Any,
    access: StudyAccess,
    residents: Residents,
    elderly_categories: Sequence[str],
    table: gpd.GeoDataFrame,
    walk: WalkSection,
    ctx: RunContext,
    *,
    entries: Any = None,
) -> tuple[gpd.GeoDataFrame, dict[str, Any] | None]:
    """The equity stage: per community columns and the ``equity`` section of
    ``summary.json`` (None when ``[equity]`` is not enabled).

    Columns per category ``c`` (``L`` the last level): ``c_share_<L>_all`` (all
    residents), ``c_share_<L>_elderly`` (where elderly weights exist), ``c_gini_min``
    (Gini of minutes across the community's residents; NaN where nobody is within the
    search cut-off) and, when the category's
    facilities have a ``capacity``, ``c_fca`` (capacity per resident within ``L``
    minutes, 2SFCA).
    """
    if not section.enabled:
        return table, None
    ctx.stage("equity")
    level = float(walk.levels_minutes[-1])
    lk = level_key(level)
    nc = residents.node_community
    n = len(table)
    old = set(elderly_categories)
    cap_col = section.capacity_column
    fac = facilities[facilities["status"] == STATUS_SNAPPED]
    cols: dict[str, np.ndarray] = {}
    doc: dict[str, Any] = {
        "level_minutes": level,
        "minutes_censored_at": walk.max_minutes,
        "elderly_weights": residents.elderly is not None,
        "rows": [],
    }
    scopes: list[tuple[str, str, np.ndarray]] = [("city", "", nc >= 0)]
    for scope, column in (("group", section.group_column), ("kind", section.kind_column)):
        if column in table.columns:
            vals = table[column].astype("string").fillna("").to_numpy(dtype=object)
            node_val = np.where(nc >= 0, vals[np.maximum(nc, 0)], None)
            for v in sorted({str(x) for x in vals if x}):
                scopes.append((f"{scope}:{column}", v, np.asarray(node_val == v, dtype=bool)))
    graphs: dict[str, AccessGraph] = {}
    for cat in access.minutes.columns:
        m = np.minimum(access.minutes[cat].to_numpy(float), walk.max_minutes)
        e = residents.elderly
        w = residents.weights_for(cat, old)
        cols[f"{cat}_share_{lk}_all"] = _shares(nc, residents.weight, m, level, n)
        if e is not None:
            cols[f"{cat}_share_{lk}_elderly"] = _shares(nc, e, m, level, n)
        cols[f"{cat}_gini_min"] = gini_by_group(m, w, nc, n, censored_at=walk.max_minutes)
        fca = None
        mine = fac[fac["category"] == cat]
        if cap_col in mine.columns and mine[cap_col].notna().any():
            have = mine[mine[cap_col].notna()]
            if len(have) < len(mine):
                logger.warning(
                    "%s: %d of %d facilities have no %s and are left out of the 2SFCA",
                    cat,
                    len(mine) - len(have),
                    len(mine),
                    cap_col,
                )
            pname = access.profiles[cat]
            speed = float(walk.walk_profile(pname).speed_m_s)
            if pname not in graphs:
                graphs[pname] = AccessGraph.from_network(network, access.costs[pname])
            pairs = facility_pairs(
                graphs[pname],
                SnappedArrays(have, entries).all_entries(speed),
                None,
                None,
                minutes=level,
            )
            fca = two_step_fca(pairs, w, have[cap_col].to_numpy(float), minutes=level)
            sel = nc >= 0
            tot = np.bincount(nc[sel], weights=w[sel], minlength=n)
            s = np.bincount(nc[sel], weights=(w * fca)[sel], minlength=n)
            with np.errstate(invalid="ignore", divide="ignore"):
                cols[f"{cat}_fca"] = np.where(tot > 0, s / tot, np.nan)
        for scope, value, sel in scopes:
            row = _summary_row(sel & (nc >= 0), w, e, m, level, fca, walk.max_minutes)
            doc["rows"].append({"scope": scope, "group": value, "category": cat, **row})
    return with_columns(table, cols), doc
