"""The accessibility engine: walking time from every node to facilities.

One multi-source Dijkstra per category (``scipy.sparse.csgraph.dijkstra`` with
``min_only=True``) on a compact CSR matrix of the *reversed* walking graph: searching
outwards from the facilities over reversed arcs gives, for every node, the time of the
resident walking *to* the nearest facility (one-way ``oneway:foot`` ways and
direction-dependent slope costs are respected).

Facilities sit on edges, not nodes (:mod:`circles.facilities` snaps them to the nearest
point of the nearest edge). Each facility becomes a virtual node with arcs to the two
ends of its edge, costing the walk along the edge to the snap point plus the straight
access walk from the edge to the facility, at the same speed. Virtual nodes only add rows
at the end of the CSR arrays, so the base matrix is built once per network and cost.

Pitfall avoided (../shared/DESIGN.md): ``csr_matrix((w, (i, j)))`` sums duplicate
entries; arcs are reduced to the minimum cost per ``(i, j)`` before the matrix is built.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.sparse.csgraph import dijkstra

from circles._errors import InputDataError
from circles.cache import ARRAYS, Cache, Keyed, array_digest
from circles.config import WalkSection
from circles.facilities import STATUS_SNAPPED
from circles.network import WalkNetwork
from circles.result import RunContext, StudyAccess, progress_iter

logger = logging.getLogger(__name__)

#: Bytes of dense distance rows held at once when counting facilities within levels.
COUNT_CHUNK_BYTES = 32 * 1024 * 1024


def _reduce_min(
    rows: np.ndarray, cols: np.ndarray, cost: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Keep the cheapest arc per ``(row, col)``, sorted by row then column."""
    order = np.lexsort((cost, cols, rows))
    rows, cols, cost = rows[order], cols[order], cost[order]
    first = np.ones(rows.size, bool)
    first[1:] = (rows[1:] != rows[:-1]) | (cols[1:] != cols[:-1])
    return rows[first], cols[first], cost[first]


@dataclass(frozen=True, eq=False)
class AccessGraph:
    """The reversed walking graph of one network and one edge cost, as CSR arrays.

    Build with :meth:`from_network`. Row ``h`` holds the arcs ``h -> t`` for every
    walkable arc ``t -> h`` of the network, with its cost.

    Attributes
    ----------
    network : WalkNetwork
    edge_cost : numpy.ndarray
        ``(n_edges, 2)`` cost of walking each edge from ``u`` to ``v`` and from ``v``
        to ``u`` (seconds; ``inf`` where not walkable in that direction).
    indptr, indices, data : numpy.ndarray
        CSR arrays of the reversed graph over the network's nodes.
    """

    network: WalkNetwork
    edge_cost: np.ndarray
    indptr: np.ndarray
    indices: np.ndarray
    data: np.ndarray
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_network(cls, network: WalkNetwork, edge_cost: np.ndarray) -> AccessGraph:
        """Build the reversed CSR graph.

        Parameters
        ----------
        network : WalkNetwork
        edge_cost : numpy.ndarray
            Seconds per edge, shape ``(n_edges,)`` (same both ways) or ``(n_edges, 2)``
            (forward u->v, backward v->u). ``inf`` marks a direction that cannot be
            walked (e.g. steps for a wheelchair).
        """
        cost = np.asarray(edge_cost, dtype=float)
        if cost.ndim == 1:
            cost = np.column_stack([cost, cost])
        if cost.shape != (network.n_edges, 2):
            raise InputDataError(
                f"edge_cost has shape {cost.shape}; expected ({network.n_edges},) or "
                f"({network.n_edges}, 2) for this network"
            )
        if np.isnan(cost).any() or (cost < 0).any():
            raise InputDataError("edge_cost must be non-negative numbers (inf allowed)")
        cost = cost.copy()
        cost[network.direction == 1, 1] = np.inf
        tail, head, c = network.directed_arcs(cost)
        ok = np.isfinite(c)
        rows, cols, data = head[ok], tail[ok], c[ok]
        n = network.n_nodes
        # fast path: no duplicate (i, j) arcs, so scipy's COO->CSR (which would *sum*
        # duplicates) is exact; otherwise reduce duplicates to their minimum first
        mat = sp.coo_matrix((data, (rows, cols)), shape=(n, n)).tocsr()
        if mat.nnz != data.size:
            rows, cols, data = _reduce_min(rows, cols, data)
            mat = sp.coo_matrix((data, (rows, cols)), shape=(n, n)).tocsr()
        mat.sort_indices()
        indptr = mat.indptr.astype(np.int64)
        cols = mat.indices
        data = mat.data
        cost.setflags(write=False)
        return cls(network, cost, indptr, cols.astype(np.int32, copy=False), data)

    @property
    def n_nodes(self) -> int:
        """Number of network nodes (virtual facility nodes not included)."""
        return self.network.n_nodes

    def reversed_matrix(self) -> sp.csr_matrix:
        """The reversed graph as a ``scipy.sparse.csr_matrix`` (no facilities)."""
        n = self.n_nodes
        return sp.csr_matrix((self.data, self.indices, self.indptr), shape=(n, n))

    def forward_matrix(self) -> sp.csr_matrix:
        """The walking graph itself (arc ``t -> h`` costs walking from t to h)."""
        if "forward" not in self._cache:
            self._cache["forward"] = self.reversed_matrix().transpose().tocsr()
        return self._cache["forward"]

    def facility_arcs(
        self, edge: np.ndarray, frac: np.ndarray, access_s: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Arcs from virtual facility nodes to the ends of their edges.

        Parameters
        ----------
        edge : numpy.ndarray
            int index of each facility's edge.
        frac : numpy.ndarray
            Position of the snap point along the edge from ``u`` (0) to ``v`` (1).
        access_s : numpy.ndarray
            Seconds of the straight walk between the edge and the facility.

        Returns
        -------
        tuple of numpy.ndarray
            ``(facility, node, seconds)``: a resident at ``node`` reaches
            ``facility`` in ``seconds`` along this edge.
        """
        edge = np.asarray(edge, dtype=np.int64)
        frac = np.asarray(frac, dtype=float)
        access_s = np.asarray(access_s, dtype=float)
        if edge.size and (edge.min() < 0 or edge.max() >= self.network.n_edges):
            raise InputDataError("facility edge index out of range for this network")
        if ((frac < 0) | (frac > 1)).any():
            raise InputDataError("facility position along its edge must be within [0, 1]")
        k = np.arange(edge.size)
        u, v = self.network.u[edge], self.network.v[edge]
        # walk u -> snap point and v -> snap point; a facility exactly at an end node
        # costs nothing along the edge, even when the edge cannot be walked that way
        # (0 * inf would be NaN and drop the arc)
        with np.errstate(invalid="ignore"):
            from_u = np.where(frac <= 0.0, 0.0, frac * self.edge_cost[edge, 0]) + access_s
            from_v = np.where(frac >= 1.0, 0.0, (1.0 - frac) * self.edge_cost[edge, 1]) + access_s
        fac = np.concatenate([k, k])
        node = np.concatenate([u, v])
        sec = np.concatenate([from_u, from_v])
        ok = np.isfinite(sec)
        return fac[ok], node[ok], sec[ok]

    def with_facilities(
        self, edge: np.ndarray, frac: np.ndarray, access_s: np.ndarray
    ) -> sp.csr_matrix:
        """Reversed matrix with one virtual node per facility appended (rows n..n+k)."""
        fac, node, sec = self.facility_arcs(edge, frac, access_s)
        k = int(np.asarray(edge).size)
        n = self.n_nodes
        order = np.lexsort((sec, node, fac))
        fac, node, sec = fac[order], node[order], sec[order]
        keep = np.ones(fac.size, bool)
        keep[1:] = (fac[1:] != fac[:-1]) | (node[1:] != node[:-1])
        fac, node, sec = fac[keep], node[keep], sec[keep]
        extra = np.zeros(k + 1, dtype=np.int64)
        np.cumsum(np.bincount(fac, minlength=k), out=extra[1:])
        indptr = np.concatenate([self.indptr, self.indptr[-1] + extra[1:]])
        indices = np.concatenate([self.indices, node.astype(np.int32)])
        data = np.concatenate([self.data, sec])
        return sp.csr_matrix((data, indices, indptr), shape=(n + k, n + k))


def nearest_seconds(
    graph: AccessGraph,
    edge: np.ndarray,
    frac: np.ndarray,
    access_s: np.ndarray,
    *,
    limit_s: float = np.inf,
) -> tuple[np.ndarray, np.ndarray]:
    """Seconds from every node to the nearest of a set of facilities.

    Parameters
    ----------
    graph : AccessGraph
    edge, frac, access_s : numpy.ndarray
        Facility snap positions (see :meth:`AccessGraph.facility_arcs`).
    limit_s : float, optional
        Search cut-off in seconds; nodes farther than this get ``inf``.

    Returns
    -------
    seconds : numpy.ndarray
        float64 per node; ``inf`` where no facility is reachable within ``limit_s``.
    nearest : numpy.ndarray
        int64 position (in ``edge``) of the nearest facility per node, -1 where none.
    """
    n = graph.n_nodes
    k = int(np.asarray(edge).size)
    if k == 0:
        return np.full(n, np.inf), np.full(n, -1, dtype=np.int64)
    mat = graph.with_facilities(edge, frac, access_s)
    dist, _, sources = dijkstra(
        mat,
        directed=True,
        indices=np.arange(n, n + k),
        min_only=True,
        limit=limit_s,
        return_predecessors=True,
    )
    nearest = np.where(sources[:n] >= 0, sources[:n] - n, -1).astype(np.int64)
    return dist[:n], nearest


def nearest_by_group(
    graph: AccessGraph,
    edge: np.ndarray,
    frac: np.ndarray,
    access_s: np.ndarray,
    group: np.ndarray,
    *,
    limit_s: float = np.inf,
    groups: list[Any] | None = None,
    with_nearest: bool = False,
) -> dict[Any, tuple[np.ndarray, np.ndarray]]:
    """:func:`nearest_seconds` for several categories at once, on one matrix.

    All facilities become virtual nodes of a single matrix; a virtual node has no
    incoming arcs, so the search of one category never passes through another
    category's facilities. One Dijkstra per category then runs on that matrix.

    Parameters
    ----------
    group : numpy.ndarray
        Category label of each facility.
    groups : list, optional
        Labels to compute (default: those present in ``group``); a label with no
        facility gets ``inf`` seconds everywhere.
    with_nearest : bool, default False
        Also find which facility is nearest to each node (Dijkstra with predecessors,
        about 10-20% slower); otherwise ``nearest`` is all -1.

    Returns
    -------
    dict
        label -> ``(seconds, nearest)`` as in :func:`nearest_seconds` (``nearest`` indexes
        the full facility arrays).
    """
    group = np.asarray(group)
    labels = list(dict.fromkeys(group.tolist())) if groups is None else list(groups)
    n = graph.n_nodes
    out: dict[Any, tuple[np.ndarray, np.ndarray]] = {}
    mat = graph.with_facilities(edge, frac, access_s) if np.asarray(edge).size else None
    # one shared read-only "no nearest facility" array (allocating one per category costs
    # as much as a small Dijkstra)
    none = np.full(n, -1, dtype=np.int64)
    none.setflags(write=False)
    for lab in labels:
        idx = np.flatnonzero(group == lab)
        if mat is None or idx.size == 0:
            out[lab] = (np.full(n, np.inf), none)
            continue
        if not with_nearest:
            dist = dijkstra(mat, directed=True, indices=n + idx, min_only=True, limit=limit_s)
            out[lab] = (dist[:n], none)
            continue
        dist, _, sources = dijkstra(
            mat,
            directed=True,
            indices=n + idx,
            min_only=True,
            limit=limit_s,
            return_predecessors=True,
        )
        out[lab] = (dist[:n], np.where(sources[:n] >= 0, sources[:n] - n, -1).astype(np.int64))
    return out


def counts_within(
    graph: AccessGraph,
    edge: np.ndarray,
    frac: np.ndarray,
    access_s: np.ndarray,
    *,
    levels_s: tuple[float, ...] | np.ndarray,
) -> np.ndarray:
    """Number of facilities within each level of every node.

    Runs one bounded Dijkstra per facility (``limit`` = the largest level), in chunks
    that hold at most :data:`COUNT_CHUNK_BYTES` of distances at once.

    Returns
    -------
    numpy.ndarray
        int32 array ``(n_nodes, len(levels_s))``.
    """
    levels = np.sort(np.asarray(levels_s, dtype=float))
    n = graph.n_nodes
    k = int(np.asarray(edge).size)
    out = np.zeros((n, levels.size), dtype=np.int32)
    if k == 0:
        return out
    mat = graph.with_facilities(edge, frac, access_s)
    chunk = max(1, COUNT_CHUNK_BYTES // (8 * (n + k)))
    for start in range(0, k, chunk):
        idx = np.arange(n + start, n + min(k, start + chunk))
        dist = dijkstra(mat, directed=True, indices=idx, limit=levels[-1])[:, :n]
        for j, lev in enumerate(levels):
            out[:, j] += (dist <= lev).sum(axis=0, dtype=np.int32)
    return out


@dataclass(frozen=True)
class NodeSeconds:
    """Walking seconds from each of several origins to the nodes it reaches (sparse rows).

    Row ``i`` holds the nodes origin ``i`` reaches within the search limit, in ascending
    node order, and their seconds: ``nodes[indptr[i]:indptr[i + 1]]`` and
    ``seconds[indptr[i]:indptr[i + 1]]``. A bounded search reaches a few thousand of a
    network's nodes, so 711 origins on 53,000 nodes take a few megabytes instead of the
    300 MB of a dense float64 matrix.

    Attributes
    ----------
    n_nodes : int
        Nodes of the network (the length of a dense row).
    indptr : numpy.ndarray
        int64, ``len(origins) + 1`` row offsets.
    nodes : numpy.ndarray
        int64 node positions reached, row after row.
    seconds : numpy.ndarray
        float64 seconds to each of them.
    """

    n_nodes: int
    indptr: np.ndarray
    nodes: np.ndarray
    seconds: np.ndarray

    def __len__(self) -> int:
        return int(self.indptr.size - 1)

    @property
    def shape(self) -> tuple[int, int]:
        """``(origins, nodes)``, the shape of the dense matrix."""
        return len(self), self.n_nodes

    def reached(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Nodes reached from origin ``i`` (ascending) and their seconds."""
        a, b = int(self.indptr[i]), int(self.indptr[i + 1])
        return self.nodes[a:b], self.seconds[a:b]

    def __getitem__(self, i: int) -> np.ndarray:
        """Origin ``i``'s seconds to every node, ``inf`` where not reached (dense)."""
        row = np.full(self.n_nodes, np.inf)
        nodes, secs = self.reached(i)
        row[nodes] = secs
        return row

    def toarray(self) -> np.ndarray:
        """The dense ``(origins, nodes)`` matrix (for a few origins only)."""
        return np.vstack([self[i] for i in range(len(self))]) if len(self) else np.zeros(self.shape)


def seconds_from_nodes(
    graph: AccessGraph,
    origins: np.ndarray,
    *,
    limit_s: float = np.inf,
    chunk_bytes: int = COUNT_CHUNK_BYTES,
) -> NodeSeconds:
    """Seconds to walk from each origin node outwards to every node it reaches.

    The searches run a chunk of origins at a time (at most ``chunk_bytes`` of dense
    distances at once); each chunk is kept as sparse rows.

    Parameters
    ----------
    graph : AccessGraph
    origins : numpy.ndarray
        Node positions to walk from.
    limit_s : float, optional
        Search cut-off in seconds; farther nodes are not reached.
    chunk_bytes : int, optional
        Bytes of dense distances held at once.

    Returns
    -------
    NodeSeconds
        Per origin, the nodes within ``limit_s`` and their seconds (``result[i]`` is
        the dense row, ``inf`` beyond ``limit_s``).
    """
    origins = np.atleast_1d(np.asarray(origins, dtype=np.int64))
    n = graph.n_nodes
    fwd = graph.forward_matrix()
    chunk = max(1, int(chunk_bytes) // (8 * max(n, 1)))
    counts: list[np.ndarray] = []
    nodes: list[np.ndarray] = []
    secs: list[np.ndarray] = []
    for start in range(0, origins.size, chunk):
        dist = np.atleast_2d(
            dijkstra(fwd, directed=True, indices=origins[start : start + chunk], limit=limit_s)
        )
        rows, cols = np.nonzero(np.isfinite(dist))
        counts.append(np.bincount(rows, minlength=dist.shape[0]))
        nodes.append(cols.astype(np.int64))
        secs.append(dist[rows, cols])
    indptr = np.zeros(origins.size + 1, dtype=np.int64)
    if counts:
        np.cumsum(np.concatenate(counts), out=indptr[1:])
    return NodeSeconds(
        n,
        indptr,
        np.concatenate(nodes) if nodes else np.zeros(0, np.int64),
        np.concatenate(secs) if secs else np.zeros(0),
    )


# --------------------------------------------------------------------------- the stage


class SnappedArrays:
    """Edge, fraction and access walk of the snapped facilities, by category.

    Parameters
    ----------
    facilities : geopandas.GeoDataFrame
        With ``status``, ``category``, ``edge``, ``frac`` and ``snap_m`` columns.
    """

    def __init__(self, facilities: Any) -> None:
        snapped = (facilities["status"] == STATUS_SNAPPED).to_numpy()
        self._cat = facilities["category"].to_numpy(dtype=object)[snapped]
        self._edge = facilities["edge"].to_numpy()[snapped]
        self._frac = facilities["frac"].to_numpy()[snapped]
        self._snap_m = facilities["snap_m"].to_numpy()[snapped]

    def __call__(
        self, category: str, speed_m_s: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``edge`` (int), ``frac`` (0-1) and access walk in seconds at ``speed_m_s``."""
        sel = self._cat == category
        return (
            self._edge[sel].astype(np.int64),
            self._frac[sel].astype(float),
            self._snap_m[sel].astype(float) / speed_m_s,
        )


def category_access(
    graph: AccessGraph,
    edge: np.ndarray,
    frac: np.ndarray,
    acc: np.ndarray,
    category: str,
    *,
    max_minutes: float,
    levels_minutes: tuple[float, ...],
) -> tuple[np.ndarray, np.ndarray]:
    """Minutes per node to a category's nearest facility, and counts within the levels.

    Each category is searched on a matrix holding only its own facilities, so the result
    does not depend on which other categories are computed in the same run.
    """
    group = np.full(edge.size, category, dtype=object)
    near = nearest_by_group(
        graph, edge, frac, acc, group, limit_s=60.0 * max_minutes, groups=[category]
    )
    levels_s = tuple(60.0 * float(x) for x in levels_minutes)
    return near[category][0] / 60.0, counts_within(graph, edge, frac, acc, levels_s=levels_s)


def compute_access(
    network: WalkNetwork,
    facilities: Any,
    categories: list[str],
    *,
    speed_m_s: float,
    max_minutes: float,
    levels_minutes: tuple[float, ...],
    edge_seconds: np.ndarray | None = None,
) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Minutes from every node to each category's nearest facility, and counts within levels.

    Parameters
    ----------
    network : WalkNetwork
    facilities : geopandas.GeoDataFrame
        Snapped facilities (:func:`circles.facilities.snap_facilities`).
    categories : list of str
    speed_m_s : float
        Walking speed of the access walk, m/s.
    max_minutes : float
        Search cut-off (``inf`` beyond).
    levels_minutes : tuple of float
        Levels the counts are taken at.
    edge_seconds : numpy.ndarray, optional
        Seconds per edge (default: the flat walk at ``speed_m_s``).
    """
    cost = network.edge_seconds(speed_m_s) if edge_seconds is None else edge_seconds
    graph = AccessGraph.from_network(network, cost)
    levels_s = tuple(60.0 * float(x) for x in levels_minutes)
    sel = facilities[facilities["status"] == STATUS_SNAPPED]
    edge = sel["edge"].to_numpy(np.int64)
    frac = sel["frac"].to_numpy(float)
    acc = sel["snap_m"].to_numpy(float) / speed_m_s
    group = sel["category"].to_numpy(object)
    near = nearest_by_group(
        graph, edge, frac, acc, group, limit_s=60.0 * max_minutes, groups=list(categories)
    )
    minutes = {cat: near[cat][0] / 60.0 for cat in categories}
    counts: dict[str, np.ndarray] = {}
    for cat in categories:
        m = group == cat
        counts[cat] = counts_within(graph, edge[m], frac[m], acc[m], levels_s=levels_s)
    return pd.DataFrame(minutes), counts


def category_profiles(walk: WalkSection, profile: Any, categories: list[str]) -> dict[str, str]:
    """Walking profile name per category: ``elderly_profile`` for elderly categories.

    Parameters
    ----------
    walk : WalkSection
        ``[walk]`` (``profile`` and ``elderly_profile``).
    profile : circles.categories.Profile
        The category profile (which categories are ``elderly``).
    categories : list of str
    """
    elderly = {c.id for c in profile.categories if getattr(c, "elderly", False)}
    main = walk.profile
    old = walk.elderly_profile or main
    return {c: (old if c in elderly else main) for c in categories}


def access_by_profile(
    walk: WalkSection,
    network: WalkNetwork,
    facilities: Any,
    cat_profile: dict[str, str],
    elevation_m: np.ndarray | None,
) -> tuple[pd.DataFrame, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Minutes and counts per category, each category walked with its own profile.

    Returns the minutes table, the counts, and the edge costs (seconds, ``(n_edges, 2)``)
    per profile name.
    """
    from circles import terrain

    minutes: dict[str, np.ndarray] = {}
    counts: dict[str, np.ndarray] = {}
    costs: dict[str, np.ndarray] = {}
    for pname in dict.fromkeys(cat_profile.values()):
        prof = walk.walk_profile(pname)
        cost = terrain.edge_seconds(network, prof, elevation_m=elevation_m)
        costs[pname] = cost
        cats = [c for c, p in cat_profile.items() if p == pname]
        m, cnt = compute_access(
            network,
            facilities,
            cats,
            speed_m_s=float(prof.speed_m_s),
            max_minutes=walk.max_minutes,
            levels_minutes=walk.levels_minutes,
            edge_seconds=cost,
        )
        minutes.update({c: m[c].to_numpy() for c in cats})
        counts.update(cnt)
    order = list(cat_profile)
    return pd.DataFrame({c: minutes[c] for c in order}), {c: counts[c] for c in order}, costs


def cached_graph(network: Keyed[WalkNetwork], cost: np.ndarray, store: Cache) -> AccessGraph:
    """:meth:`AccessGraph.from_network`, its CSR arrays kept in the cache."""

    def compute() -> dict[str, Any]:
        g = AccessGraph.from_network(network.value, cost)
        return {"edge_cost": g.edge_cost, "indptr": g.indptr, "indices": g.indices, "data": g.data}

    a = store.memo("graph", [network.key, array_digest(cost)], compute, codec=ARRAYS).value
    edge_cost = np.asarray(a["edge_cost"])
    edge_cost.setflags(write=False)
    return AccessGraph(network.value, edge_cost, a["indptr"], a["indices"], a["data"])


def study_access(
    network: Keyed[WalkNetwork],
    facilities: Any,
    profiles: dict[str, str],
    walk: WalkSection,
    elevation_m: np.ndarray | None,
    ctx: RunContext,
) -> StudyAccess:
    """The access stage: minutes and counts per category, each cached on its own.

    Parameters
    ----------
    network : Keyed
        The walking network and its key.
    facilities : geopandas.GeoDataFrame
        Snapped facilities of all categories.
    profiles : dict
        Category -> walking profile name (:func:`category_profiles`), in category order.
    walk : WalkSection
        ``[walk]``: profiles, cut-off and levels.
    elevation_m : numpy.ndarray, optional
        Node elevations (slope-aware walking).
    ctx : RunContext

    Returns
    -------
    StudyAccess
        Its ``costs`` hold every profile used and the main profile (``walk.profile``).
    """
    from circles import terrain

    ctx.stage("access")
    categories = list(profiles)
    ctx.say(
        f"computing walking minutes for {len(categories)} categories "
        f"(profiles: {', '.join(dict.fromkeys(profiles.values()))}"
        f"{', slope-aware' if elevation_m is not None else ''})"
    )
    costs: dict[str, np.ndarray] = {}
    cost_sha: dict[str, str] = {}
    for pname in dict.fromkeys([*profiles.values(), walk.profile]):
        prof = walk.walk_profile(pname)
        costs[pname] = terrain.edge_seconds(network.value, prof, elevation_m=elevation_m)
        cost_sha[pname] = array_digest(costs[pname])
    graphs: dict[str, AccessGraph] = {}
    minutes: dict[str, np.ndarray] = {}
    counts: dict[str, np.ndarray] = {}
    keys: dict[str, str] = {}
    recomputed: list[str] = []
    snapped = SnappedArrays(facilities)
    for cat in progress_iter(categories, "categories", "category"):
        pname = profiles[cat]
        edge, frac, acc = snapped(cat, float(walk.walk_profile(pname).speed_m_s))

        def compute(
            pname: str = pname, edge: Any = edge, frac: Any = frac, acc: Any = acc, cat: str = cat
        ) -> Any:
            if pname not in graphs:
                graphs[pname] = cached_graph(network, costs[pname], ctx.store)
            m, c = category_access(
                graphs[pname],
                edge,
                frac,
                acc,
                cat,
                max_minutes=walk.max_minutes,
                levels_minutes=walk.levels_minutes,
            )
            return {"minutes": m, "counts": c}

        got = ctx.store.memo(
            "access",
            [
                network.key,
                cost_sha[pname],
                array_digest(edge, frac, acc),
                walk.max_minutes,
                list(walk.levels_minutes),
            ],
            compute,
            codec=ARRAYS,
        )
        minutes[cat], counts[cat] = got.value["minutes"], got.value["counts"]
        keys[cat] = got.key
        if not got.cached:
            recomputed.append(cat)
    if recomputed:
        ctx.say(f"recomputed {len(recomputed)} categories: {', '.join(recomputed)}")
    return StudyAccess(
        minutes=pd.DataFrame({c: minutes[c] for c in categories}),
        counts={c: counts[c] for c in categories},
        keys=keys,
        recomputed=recomputed,
        profiles=profiles,
        costs=costs,
    )
