"""Beyond the nearest: the N closest facilities and a gravity score with distance decay.

A resident with one canteen 4 minutes away and the next 25 minutes away is worse served
than one with three within 8: the nearest-facility minutes cannot tell them apart. Per
node and category (:func:`choice_measures`):

- ``mean<N>_min``: the mean walking minutes to the ``N`` nearest facilities. A facility
  not reachable within the search cut-off (``[walk] max_minutes``) counts as the
  cut-off, so where fewer than ``N`` are reachable the value is a lower bound.
- ``gravity``: the sum over facilities within the cut-off of a decay of the minutes
  ``t`` to each (:func:`decay`): exponential ``0.5 ** (t / h)`` or Gaussian
  ``0.5 ** ((t / h) ** 2)``, with ``h`` the half-life in minutes; a facility at the door
  counts 1, one ``h`` minutes away 0.5. GOAT, r5py and cityseer offer the same kind of
  measure (cityseer and GOAT as negative exponential and Gaussian decays).

Both come from one bounded Dijkstra per facility on the reversed walking graph, the
same graph and snapping arcs as the nearest-facility minutes (:mod:`circles.access`).
A community's value is the resident-weighted mean of its nodes' values (the elderly
residents for elderly categories where known, as coverage weights them).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import geopandas as gpd
import numpy as np
from scipy.sparse.csgraph import dijkstra

from circles._errors import ConfigError, InputDataError
from circles.access import AccessGraph, Entries, SnappedArrays
from circles.cache import ARRAYS, digest
from circles.config import ChoiceSection, WalkSection
from circles.network import WalkNetwork
from circles.result import Residents, RunContext, StudyAccess, with_columns

logger = logging.getLogger(__name__)

#: Bytes of dense distance rows held at once.
CHOICE_CHUNK_BYTES = 32 * 1024 * 1024

DECAYS = ("exponential", "gaussian")


def decay(minutes: np.ndarray, *, kind: str, half_life_minutes: float) -> np.ndarray:
    """Distance-decay weight of a facility ``minutes`` away: 1 at 0, 0.5 at the half-life.

    ``"exponential"``: ``0.5 ** (t / h)``; ``"gaussian"``: ``0.5 ** ((t / h) ** 2)``.
    ``inf`` minutes weigh 0.
    """
    if kind not in DECAYS:
        raise ConfigError(f"decay must be one of {DECAYS}, got {kind!r}")
    if not (np.isfinite(half_life_minutes) and half_life_minutes > 0):
        raise ConfigError(f"half_life_minutes must be positive, got {half_life_minutes!r}")
    t = np.asarray(minutes, dtype=float) / float(half_life_minutes)
    with np.errstate(over="ignore"):
        return np.power(0.5, t if kind == "exponential" else t * t)


def choice_measures(
    graph: AccessGraph,
    edge: np.ndarray | Entries,
    frac: np.ndarray | None,
    access_s: np.ndarray | None,
    *,
    n_closest: int,
    max_minutes: float,
    decay_kind: str = "exponential",
    half_life_minutes: float = 10.0,
) -> dict[str, np.ndarray]:
    """Mean minutes to the ``n_closest`` nearest facilities and the gravity score, per node.

    Parameters
    ----------
    graph : AccessGraph
    edge, frac, access_s : numpy.ndarray
        Facility snap positions (``access_s`` in seconds); or ``edge`` is the
        :class:`~circles.access.Entries` of facilities entered at many places (area
        facilities), ``frac`` and ``access_s`` None: each facility counts once, at its
        nearest entry.
    n_closest : int
        N.
    max_minutes : float
        Search cut-off; farther facilities count as ``max_minutes`` in the mean and 0 in
        the gravity score.
    decay_kind, half_life_minutes
        See :func:`decay`.

    Returns
    -------
    dict
        ``closest`` ``(n_nodes, n_closest)`` sorted minutes (``inf`` where fewer are
        reachable), ``mean_min`` (censored at ``max_minutes``) and ``gravity``.
    """
    if isinstance(n_closest, bool) or int(n_closest) != n_closest or n_closest < 1:
        raise ConfigError(f"n_closest must be a positive integer, got {n_closest!r}")
    if not (np.isfinite(max_minutes) and max_minutes > 0):
        raise InputDataError(f"max_minutes must be positive, got {max_minutes!r}")
    n = graph.n_nodes
    entries = Entries.of(edge, frac, access_s)
    k = int(entries.n_facilities)
    nk = int(n_closest)
    closest = np.full((n, nk), np.inf)
    gravity = np.zeros(n)
    if k:
        mat = graph.with_entries(entries)
        chunk = max(1, CHOICE_CHUNK_BYTES // (8 * (n + k)))
        limit = 60.0 * float(max_minutes)
        for start in range(0, k, chunk):
            idx = np.arange(n + start, n + min(k, start + chunk))
            mins = dijkstra(mat, directed=True, indices=idx, limit=limit)[:, :n].T / 60.0
            mins[mins > max_minutes] = np.inf
            gravity += decay(mins, kind=decay_kind, half_life_minutes=half_life_minutes).sum(1)
            both = np.concatenate([closest, mins], axis=1)
            if both.shape[1] > nk:
                both = np.partition(both, nk - 1, axis=1)[:, :nk]
            closest = np.sort(both, axis=1)
    mean = np.minimum(closest, float(max_minutes)).mean(axis=1)
    return {"closest": closest, "mean_min": mean, "gravity": gravity}


def community_means(
    values: np.ndarray, weight: np.ndarray, node_community: np.ndarray, n_communities: int
) -> np.ndarray:
    """Weighted mean of a node value per community (NaN for a community without weight)."""
    nc = np.asarray(node_community)
    w = np.asarray(weight, dtype=float)
    v = np.asarray(values, dtype=float)
    ok = (nc >= 0) & np.isfinite(v)
    tot = np.bincount(nc[ok], weights=w[ok], minlength=n_communities)
    s = np.bincount(nc[ok], weights=w[ok] * v[ok], minlength=n_communities)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(tot > 0, s / tot, np.nan)


def column_names(category: str, n_closest: int) -> tuple[str, str]:
    """``(<cat>_mean<N>_min, <cat>_gravity)``: the column names, in the nodes layer and
    the communities table alike."""
    return f"{category}_mean{int(n_closest)}_min", f"{category}_gravity"


def study_choice(
    section: ChoiceSection,
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
) -> tuple[gpd.GeoDataFrame, dict[str, dict[str, np.ndarray]]]:
    """The choice stage: N-closest minutes and gravity per node and community, cached per
    category by its access key and the ``[choice]`` settings.

    Returns the communities table with the two columns per category and the node
    columns per category (for the ``nodes`` layer).
    """
    if not section.enabled:
        return table, {}
    ctx.stage("choice")
    cats = list(section.categories) or list(access.minutes.columns)
    unknown = [c for c in cats if c not in access.minutes.columns]
    if unknown:
        raise ConfigError(
            f"choice.categories: {unknown} are not categories of this run; use some of "
            f"{list(access.minutes.columns)}"
        )
    ctx.say(
        f"mean minutes to the {section.n_closest} closest and {section.decay} gravity "
        f"(half-life {section.half_life_minutes:g} min) for {len(cats)} categories"
    )
    snapped = SnappedArrays(facilities, entries)
    graphs: dict[str, AccessGraph] = {}
    old = set(elderly_categories)
    n = len(table)
    nodes: dict[str, dict[str, np.ndarray]] = {}
    cols: dict[str, np.ndarray] = {}
    for cat in cats:
        pname = access.profiles[cat]
        speed = float(walk.walk_profile(pname).speed_m_s)

        def compute(cat: str = cat, pname: str = pname, speed: float = speed) -> dict[str, Any]:
            if pname not in graphs:
                graphs[pname] = AccessGraph.from_network(network, access.costs[pname])
            got = choice_measures(
                graphs[pname],
                snapped.entries(cat, speed),
                None,
                None,
                n_closest=section.n_closest,
                max_minutes=walk.max_minutes,
                decay_kind=section.decay,
                half_life_minutes=section.half_life_minutes,
            )
            return {"mean_min": got["mean_min"], "gravity": got["gravity"]}

        key = [
            access.keys[cat],
            digest("choice", section.n_closest, section.decay, section.half_life_minutes),
        ]
        got = ctx.store.memo("choice", key, compute, codec=ARRAYS).value
        mean_col, grav_col = column_names(cat, section.n_closest)
        nodes[cat] = {mean_col: np.asarray(got["mean_min"]), grav_col: np.asarray(got["gravity"])}
        w = residents.weights_for(cat, old)
        for col, v in nodes[cat].items():
            cols[col] = community_means(v, w, residents.node_community, n)
    return with_columns(table, cols), nodes
