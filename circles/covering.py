"""The maximal covering location problem on the walking network, on arrays.

Given demand points (network nodes with residents not yet within a category's walking
threshold) and candidate sites (network nodes, or a planner's list, snapped like any
facility), choose ``p`` sites that bring the most residents within the threshold.

- :func:`cover_sets`: which demand points each candidate covers. One bounded Dijkstra
  per candidate on the reversed walking graph (:class:`circles.access.AccessGraph`), so a
  candidate covers exactly the nodes a facility at its position would bring within the
  threshold in a run (the same snapping arcs, the same ``seconds / 60 <= minutes`` test
  as :func:`circles.coverage.coverage_table`).
- :func:`greedy_cover`: the greedy algorithm with lazy evaluation (CELF: Leskovec et al.
  2007). Coverage is monotone submodular, so the greedy choice is within ``1 - 1/e`` of
  the optimum (Nemhauser, Wolsey & Fisher 1978); lazy evaluation returns exactly the
  plain greedy's choice (ties go to the lowest candidate position) while recomputing only
  a few gains per step.
- :func:`exact_cover`: the same problem solved exactly as a mixed-integer program with
  PySAL's ``spopt`` (``pip install "circles[optimize]"``; PuLP's bundled CBC), for small
  problems. Demand points covered by the same candidates are merged first (an exact
  reduction), which is what makes county-size problems fit.
"""

from __future__ import annotations

import heapq
import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import dijkstra

from circles._errors import ConfigError, InputDataError
from circles.access import AccessGraph

logger = logging.getLogger(__name__)

#: Bytes of dense distance rows held at once while finding cover sets.
COVER_CHUNK_BYTES = 32 * 1024 * 1024

#: Largest dense cost matrix (merged demand rows x candidates) handed to the exact solver.
EXACT_MAX_CELLS = 20_000_000


@dataclass(frozen=True)
class CoverSets:
    """Which demand points each candidate covers (a sparse candidate x demand matrix).

    Attributes
    ----------
    matrix : scipy.sparse.csr_matrix
        ``(n_candidates, n_demand)`` boolean; row ``j`` holds the demand points that
        candidate ``j`` brings within the threshold.
    minutes : float
        The threshold (minutes).
    """

    matrix: sp.csr_matrix
    minutes: float

    @property
    def n_candidates(self) -> int:
        """Number of candidate sites."""
        return int(self.matrix.shape[0])

    @property
    def n_demand(self) -> int:
        """Number of demand points."""
        return int(self.matrix.shape[1])

    def covered_by(self, j: int) -> np.ndarray:
        """Demand positions covered by candidate ``j``."""
        m = self.matrix
        return np.asarray(m.indices[m.indptr[j] : m.indptr[j + 1]], dtype=np.int64)


def cover_sets(
    graph: AccessGraph,
    edge: np.ndarray,
    frac: np.ndarray,
    access_s: np.ndarray,
    demand_nodes: np.ndarray,
    *,
    minutes: float,
) -> CoverSets:
    """Demand nodes each candidate site brings within ``minutes``.

    Parameters
    ----------
    graph : AccessGraph
        The walking graph with the category's walking cost.
    edge, frac, access_s : numpy.ndarray
        Snap positions of the candidates (as for
        :meth:`circles.access.AccessGraph.facility_arcs`; ``access_s`` in seconds).
    demand_nodes : numpy.ndarray
        Network node positions of the demand points.
    minutes : float
        Walking threshold in minutes: node ``i`` is covered by candidate ``j`` when
        ``seconds(i -> j) / 60 <= minutes``, the test coverage uses.

    Returns
    -------
    CoverSets
    """
    if not (np.isfinite(minutes) and minutes > 0):
        raise InputDataError(f"minutes must be a positive number, got {minutes!r}")
    demand_nodes = np.asarray(demand_nodes, dtype=np.int64)
    n = graph.n_nodes
    k = int(np.asarray(edge).size)
    if k == 0 or demand_nodes.size == 0:
        return CoverSets(sp.csr_matrix((k, demand_nodes.size), dtype=bool), float(minutes))
    mat = graph.with_facilities(edge, frac, access_s)
    # search a hair beyond the threshold; the test itself is on minutes, as in coverage
    limit = 60.0 * float(minutes) * (1.0 + 1e-9) + 1e-6
    chunk = max(1, COVER_CHUNK_BYTES // (8 * (n + k)))
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    for start in range(0, k, chunk):
        stop = min(k, start + chunk)
        dist = dijkstra(mat, directed=True, indices=np.arange(n + start, n + stop), limit=limit)
        hit = (dist[:, demand_nodes] / 60.0) <= minutes
        r, c = np.nonzero(hit)
        rows.append(r + start)
        cols.append(c)
    r_all = np.concatenate(rows)
    c_all = np.concatenate(cols)
    m = sp.csr_matrix(
        (np.ones(r_all.size, dtype=bool), (r_all, c_all)), shape=(k, demand_nodes.size)
    )
    m.sort_indices()
    return CoverSets(m, float(minutes))


@dataclass(frozen=True)
class CoverChoice:
    """Sites chosen for a covering problem.

    Attributes
    ----------
    chosen : numpy.ndarray
        Candidate positions, in the order chosen (greedy) or by position (exact).
    gains : numpy.ndarray
        Weight newly covered by each chosen site, given the ones before it.
    covered : float
        Total weight covered by all chosen sites.
    method : str
        ``"greedy"`` or ``"exact"``.
    evaluations : int
        Gains computed (greedy) or 0.
    seconds : float
        Time spent choosing (not finding the cover sets).
    """

    chosen: np.ndarray
    gains: np.ndarray
    covered: float
    method: str
    evaluations: int
    seconds: float


def _check(sets: CoverSets, weight: np.ndarray, p: int) -> np.ndarray:
    w = np.asarray(weight, dtype=float)
    if w.shape != (sets.n_demand,):
        raise InputDataError(
            f"weight has shape {w.shape}; expected ({sets.n_demand},), one per demand point"
        )
    if not np.isfinite(w).all() or (w < 0).any():
        raise InputDataError("demand weights must be finite and >= 0")
    if isinstance(p, bool) or not isinstance(p, int | np.integer) or p < 1:
        raise ConfigError(f"the number of sites must be a positive integer, got {p!r}")
    return w


def marginal_gains(sets: CoverSets, weight: np.ndarray, chosen: list[int]) -> np.ndarray:
    """Weight each of ``chosen`` newly covers, in order (given the ones before it)."""
    w = np.asarray(weight, dtype=float)
    done = np.zeros(sets.n_demand, bool)
    out = []
    for j in chosen:
        idx = sets.covered_by(int(j))
        new = idx[~done[idx]]
        out.append(float(w[new].sum()))
        done[new] = True
    return np.asarray(out, dtype=float)


def greedy_cover(sets: CoverSets, weight: np.ndarray, p: int) -> CoverChoice:
    """Choose up to ``p`` sites greedily, with lazy evaluation of the gains (CELF).

    Each step takes the candidate that newly covers the most weight (the lowest position
    among equal gains). A candidate's gain can only shrink as sites are added
    (submodularity), so its last computed gain is an upper bound: a candidate whose gain
    was computed in this step and is still the largest bound is the plain greedy's
    choice. Stops early when no candidate covers anything new.

    Parameters
    ----------
    sets : CoverSets
    weight : numpy.ndarray
        Residents per demand point (people, elderly people or metres of street).
    p : int
        Number of sites wanted.

    Returns
    -------
    CoverChoice
    """
    w = _check(sets, weight, p)
    t0 = time.perf_counter()
    m = sets.matrix
    gain0 = np.asarray(m @ w, dtype=float) if sets.n_candidates else np.zeros(0)
    heap = [(-float(g), j, 0) for j, g in enumerate(gain0) if g > 0]
    heapq.heapify(heap)
    done = np.zeros(sets.n_demand, bool)
    chosen: list[int] = []
    gains: list[float] = []
    evaluations = sets.n_candidates
    step = 0
    while heap and len(chosen) < p:
        neg, j, when = heapq.heappop(heap)
        if when == step:
            chosen.append(j)
            gains.append(-neg)
            done[sets.covered_by(j)] = True
            step += 1
            continue
        idx = sets.covered_by(j)
        g = float(w[idx[~done[idx]]].sum())
        evaluations += 1
        if g > 0:
            heapq.heappush(heap, (-g, j, step))
    return CoverChoice(
        np.asarray(chosen, dtype=np.int64),
        np.asarray(gains, dtype=float),
        float(np.sum(gains)),
        "greedy",
        evaluations,
        time.perf_counter() - t0,
    )


def merge_demand(sets: CoverSets, weight: np.ndarray) -> tuple[sp.csr_matrix, np.ndarray]:
    """Demand points covered by exactly the same candidates merged into one (weights
    summed); points no candidate covers dropped. An exact reduction of the problem.

    Returns
    -------
    matrix : scipy.sparse.csr_matrix
        ``(n_groups, n_candidates)`` boolean: which candidates cover each group.
    weight : numpy.ndarray
        Weight of each group.
    """
    w = np.asarray(weight, dtype=float)
    by_demand = sets.matrix.T.tocsr()
    by_demand.sort_indices()
    keys: dict[bytes, int] = {}
    group = np.full(sets.n_demand, -1, dtype=np.int64)
    for i in range(sets.n_demand):
        a, b = by_demand.indptr[i], by_demand.indptr[i + 1]
        if a == b:
            continue
        key = by_demand.indices[a:b].tobytes()
        group[i] = keys.setdefault(key, len(keys))
    ok = group >= 0
    gw = np.bincount(group[ok], weights=w[ok], minlength=len(keys))
    first = np.full(len(keys), -1, dtype=np.int64)
    order = np.flatnonzero(ok)
    first[group[order[::-1]]] = order[::-1]
    return by_demand[first], gw


def exact_cover(
    sets: CoverSets, weight: np.ndarray, p: int, *, time_limit_s: float | None = None
) -> CoverChoice:
    """The optimal ``p`` sites, from spopt's maximal covering model solved with CBC.

    Parameters
    ----------
    sets : CoverSets
    weight : numpy.ndarray
        Residents per demand point.
    p : int
        Number of sites.
    time_limit_s : float, optional
        Seconds the solver may take; a solve that does not prove optimality in time
        is an error (use the greedy choice).

    Raises
    ------
    ConfigError
        spopt (or PuLP) is not installed: ``pip install "circles[optimize]"``.
    InputDataError
        The problem is too large for a dense cost matrix (:data:`EXACT_MAX_CELLS`).
    RuntimeError
        The solver did not find a proven optimum (time limit).
    """
    w = _check(sets, weight, p)
    try:
        import pulp
        from spopt.locate import MCLP
    except ImportError as exc:
        raise ConfigError(
            'the exact solver needs spopt and PuLP: pip install "circles[optimize]" '
            "(or use the default greedy method)"
        ) from exc
    t0 = time.perf_counter()
    groups, gw = merge_demand(sets, w)
    k = sets.n_candidates
    if groups.shape[0] * k > EXACT_MAX_CELLS:
        raise InputDataError(
            f"{groups.shape[0]} distinct demand groups x {k} candidates is too large for the "
            "exact solver; use the greedy method or fewer candidates (a larger spacing or a "
            "candidate file)"
        )
    if groups.shape[0] == 0 or k == 0:
        return CoverChoice(np.zeros(0, np.int64), np.zeros(0), 0.0, "exact", 0, 0.0)
    # spopt takes a cost matrix and a radius: 0 where a candidate covers, 1 elsewhere
    cost = np.where(groups.toarray(), 0.0, 1.0)
    model = MCLP.from_cost_matrix(cost, gw, service_radius=0.5, p_facilities=min(p, k))
    kw: dict[str, Any] = {"msg": False}
    if time_limit_s is not None:
        kw["timeLimit"] = float(time_limit_s)
    try:
        model.solve(pulp.PULP_CBC_CMD(**kw), results=False)
    except RuntimeError as exc:
        raise RuntimeError(f"the exact solver found no proven optimum: {exc}") from exc
    if pulp.LpStatus[model.problem.status] != "Optimal":
        raise RuntimeError(f"the exact solver stopped with status {model.problem.status}")
    x = np.array([(v.value() or 0.0) > 0.5 for v in model.fac_vars])
    picked = np.flatnonzero(x)
    # sites that cover nothing new are not suggestions
    gains = marginal_gains(sets, w, picked.tolist())
    keep = gains > 0
    return CoverChoice(
        picked[keep].astype(np.int64),
        gains[keep],
        float(gains[keep].sum()),
        "exact",
        0,
        time.perf_counter() - t0,
    )
