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

An area facility (a park, a school ground) is entered at many places
(:mod:`circles.entries`): :class:`Entries` gives each facility any number of entries,
points on edges (arcs to both ends, as above) or network nodes (one arc; a node inside
the footprint is at the facility, 0 s). It is still one virtual node, so the nearest
minutes, the nearest facility, the counts within levels (each facility once) and the
per-facility service areas treat it as one facility. Point facilities are
:meth:`Entries.at_points`: one entry each, exactly the arcs above.

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
from circles.geometry import morton_order
from circles.network import WalkNetwork
from circles.result import RunContext, StudyAccess, progress_iter

logger = logging.getLogger(__name__)

#: Bytes of dense distance rows held at once when counting facilities within levels.
COUNT_CHUNK_BYTES = 32 * 1024 * 1024
#: Facilities searched together by :func:`counts_within` (neighbours, one sub-network).
COUNT_CHUNK_FACILITIES = 32
#: Above this share of the network's nodes a chunk's sub-network is not worth cutting.
COUNT_LOCAL_MAX_SHARE = 0.25
#: Below this many (node, facility) pairs a whole-network search per facility is as fast
#: (measured on Liechtenstein, 53k nodes, and Porto).
COUNT_LOCAL_MIN_PAIRS = 20_000_000


def _reduce_min(
    rows: np.ndarray, cols: np.ndarray, cost: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Keep the cheapest arc per ``(row, col)``, sorted by row then column."""
    order = np.lexsort((cost, cols, rows))
    rows, cols, cost = rows[order], cols[order], cost[order]
    first = np.ones(rows.size, bool)
    first[1:] = (rows[1:] != rows[:-1]) | (cols[1:] != cols[:-1])
    return rows[first], cols[first], cost[first]


@dataclass(frozen=True)
class Entries:
    """Where each of ``n_facilities`` facilities is entered from the network.

    An entry is a point on an edge (``edge`` >= 0, ``frac`` along it from ``u``) or a
    network node (``node`` >= 0), plus the straight access walk from there to the
    facility (``access_s``). Build point facilities with :meth:`at_points`.

    Attributes
    ----------
    n_facilities : int
        Number of facilities (each becomes one virtual node).
    facility : numpy.ndarray
        int64 position (0 .. n_facilities - 1) of the facility of each entry.
    edge : numpy.ndarray
        int64 edge of each entry, -1 for an entry at a node.
    frac : numpy.ndarray
        Position along the edge from ``u`` (0) to ``v`` (1); ignored at a node.
    node : numpy.ndarray
        int64 node of each entry, -1 for an entry on an edge.
    access_s : numpy.ndarray
        Seconds of the straight walk from the entry to the facility (0 inside it).
    """

    n_facilities: int
    facility: np.ndarray
    edge: np.ndarray
    frac: np.ndarray
    node: np.ndarray
    access_s: np.ndarray

    @classmethod
    def at_points(cls, edge: np.ndarray, frac: np.ndarray, access_s: np.ndarray) -> Entries:
        """One entry per facility, on its edge (point facilities)."""
        edge = np.asarray(edge, dtype=np.int64).reshape(-1)
        k = edge.size
        return cls(
            k,
            np.arange(k, dtype=np.int64),
            edge,
            np.asarray(frac, dtype=float).reshape(-1),
            np.full(k, -1, dtype=np.int64),
            np.asarray(access_s, dtype=float).reshape(-1),
        )

    @classmethod
    def of(
        cls,
        edge: np.ndarray | Entries,
        frac: np.ndarray | None = None,
        access_s: np.ndarray | None = None,
    ) -> Entries:
        """``edge`` itself when it is :class:`Entries`, else :meth:`at_points`."""
        if isinstance(edge, Entries):
            return edge
        if frac is None or access_s is None:
            raise InputDataError(
                "point facilities need edge, frac and access_s; or pass circles.access.Entries"
            )
        return cls.at_points(edge, frac, access_s)

    def select(self, facilities: np.ndarray) -> Entries:
        """The entries of some facilities (positions), renumbered in that order."""
        facilities = np.asarray(facilities, dtype=np.int64).reshape(-1)
        new = np.full(self.n_facilities, -1, dtype=np.int64)
        new[facilities] = np.arange(facilities.size)
        keep = new[self.facility] >= 0
        return Entries(
            int(facilities.size),
            new[self.facility[keep]],
            self.edge[keep],
            self.frac[keep],
            self.node[keep],
            self.access_s[keep],
        )

    def arrays(self) -> tuple[np.ndarray, ...]:
        """The entry arrays, for content keys (``circles.cache.array_digest``)."""
        return (
            np.asarray([self.n_facilities], dtype=np.int64),
            self.facility,
            self.edge,
            self.frac,
            self.node,
            self.access_s,
        )


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

    def seconds_per_metre(self) -> float:
        """Least seconds per metre of straight line over the arcs (projected CRS): no
        walk of ``t`` s ends farther than ``t / seconds_per_metre()`` m from its start.
        0.0 where an arc costs nothing between two distinct points (no bound)."""
        if "per_m" not in self._cache:
            net = self.network
            heads = np.repeat(np.arange(self.n_nodes), np.diff(self.indptr))
            tails = self.indices
            d = np.hypot(net.x[heads] - net.x[tails], net.y[heads] - net.y[tails])
            apart = d > 0
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = self.data[apart] / d[apart]
            self._cache["per_m"] = float(ratio.min()) if ratio.size else 0.0
        return float(self._cache["per_m"])

    def node_tree(self) -> Any:
        """A ``scipy.spatial.cKDTree`` of the node coordinates (built once)."""
        if "tree" not in self._cache:
            from scipy.spatial import cKDTree

            self._cache["tree"] = cKDTree(np.column_stack([self.network.x, self.network.y]))
        return self._cache["tree"]

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

    def entry_arcs(self, entries: Entries) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Arcs from the virtual facility nodes into the network, for every entry.

        An entry on an edge gives arcs to both ends of the edge
        (:meth:`facility_arcs`), an entry at a node one arc to that node costing its
        access walk.

        Returns
        -------
        tuple of numpy.ndarray
            ``(facility, node, seconds)``: a resident at ``node`` reaches ``facility`` in
            ``seconds``.
        """
        at_node = entries.node >= 0
        if at_node.any() and (entries.node[at_node].max() >= self.n_nodes):
            raise InputDataError("facility entry node out of range for this network")
        if (entries.edge[~at_node] < 0).any():
            raise InputDataError("a facility entry needs an edge (>= 0) or a node (>= 0)")
        on_edge = np.flatnonzero(~at_node)
        k, node, sec = self.facility_arcs(
            entries.edge[on_edge], entries.frac[on_edge], entries.access_s[on_edge]
        )
        fac = np.concatenate([entries.facility[on_edge][k], entries.facility[at_node]])
        node = np.concatenate([node, entries.node[at_node]])
        sec = np.concatenate([sec, entries.access_s[at_node]])
        ok = np.isfinite(sec)
        return fac[ok], node[ok], sec[ok]

    def with_entries(self, entries: Entries) -> sp.csr_matrix:
        """Reversed matrix with one virtual node per facility appended (rows n..n+k),
        with arcs to all of its entries (the cheapest per node)."""
        fac, node, sec = self.entry_arcs(entries)
        k = int(entries.n_facilities)
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

    def with_facilities(
        self, edge: np.ndarray, frac: np.ndarray, access_s: np.ndarray
    ) -> sp.csr_matrix:
        """Reversed matrix with one virtual node per facility appended (rows n..n+k)."""
        return self.with_entries(Entries.at_points(edge, frac, access_s))


def nearest_seconds(
    graph: AccessGraph,
    edge: np.ndarray | Entries,
    frac: np.ndarray | None = None,
    access_s: np.ndarray | None = None,
    *,
    limit_s: float = np.inf,
) -> tuple[np.ndarray, np.ndarray]:
    """Seconds from every node to the nearest of a set of facilities.

    Parameters
    ----------
    graph : AccessGraph
    edge, frac, access_s : numpy.ndarray
        Point facilities' snap positions (see :meth:`AccessGraph.facility_arcs`); or
        ``edge`` is the :class:`Entries` of facilities entered at many places.
    limit_s : float, optional
        Search cut-off in seconds; nodes farther than this get ``inf``.

    Returns
    -------
    seconds : numpy.ndarray
        float64 per node; ``inf`` where no facility is reachable within ``limit_s``.
    nearest : numpy.ndarray
        int64 position (in ``edge``) of the nearest facility per node, -1 where none.
    """
    entries = Entries.of(edge, frac, access_s)
    n = graph.n_nodes
    k = entries.n_facilities
    if k == 0:
        return np.full(n, np.inf), np.full(n, -1, dtype=np.int64)
    mat = graph.with_entries(entries)
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
    edge: np.ndarray | Entries,
    frac: np.ndarray | None,
    access_s: np.ndarray | None,
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
    edge, frac, access_s : numpy.ndarray
        As for :func:`nearest_seconds` (``edge`` may be :class:`Entries`, with ``frac``
        and ``access_s`` None).
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
    entries = Entries.of(edge, frac, access_s)
    group = np.asarray(group)
    labels = list(dict.fromkeys(group.tolist())) if groups is None else list(groups)
    n = graph.n_nodes
    out: dict[Any, tuple[np.ndarray, np.ndarray]] = {}
    mat = graph.with_entries(entries) if entries.n_facilities else None
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
    edge: np.ndarray | Entries,
    frac: np.ndarray | None = None,
    access_s: np.ndarray | None = None,
    *,
    levels_s: tuple[float, ...] | np.ndarray,
    chunk: int = COUNT_CHUNK_FACILITIES,
) -> np.ndarray:
    """Number of facilities within each level of every node.

    Takes per-facility arcs: the facilities' :class:`Entries` (or point facilities'
    ``edge``, ``frac``, ``access_s``), one virtual node per facility, so a facility with
    many entries is counted once.

    Each search is bounded in time (``limit`` = the largest level) and in space: no
    walk of ``L`` seconds ends farther than ``L /`` :meth:`AccessGraph.seconds_per_metre`
    metres from its start as the crow flies. A ``chunk`` of neighbouring facilities
    (Morton order) searches only the sub-network within that radius of its entries,
    with exactly the counts of a whole-network search. Where no bound
    exists (an arc of zero seconds between distinct points), where the network and
    the facilities are small (fewer than :data:`COUNT_LOCAL_MIN_PAIRS` node-facility
    pairs) or where a chunk's sub-network would hold more than
    :data:`COUNT_LOCAL_MAX_SHARE` of the nodes, the search covers the whole network.

    Parameters
    ----------
    graph : AccessGraph
    edge, frac, access_s : numpy.ndarray or Entries
        The facilities' entries (see :meth:`Entries.of`).
    levels_s : sequence of float
        Levels in seconds.
    chunk : int, optional
        Facilities searched together.

    Returns
    -------
    numpy.ndarray
        int32 array ``(n_nodes, len(levels_s))``.
    """
    entries = Entries.of(edge, frac, access_s)
    levels = np.sort(np.asarray(levels_s, dtype=float))
    n = graph.n_nodes
    k = entries.n_facilities
    out = np.zeros((n, levels.size), dtype=np.int32)
    if k == 0:
        return out
    mat = graph.with_entries(entries)
    limit = float(levels[-1])
    per_m = graph.seconds_per_metre()
    if per_m <= 0.0 or not np.isfinite(limit) or n * k < COUNT_LOCAL_MIN_PAIRS:
        _count_whole(mat, np.arange(k), n, levels, out)
        return out
    radius = limit / per_m * (1.0 + 1e-9) + 1e-6
    net = graph.network
    # each facility's disc: centred on its entries' mean, wide enough for every entry
    seeds_ptr = mat.indptr[n : n + k + 1]
    seeds = mat.indices[seeds_ptr[0] : seeds_ptr[-1]]
    owner = np.repeat(np.arange(k), np.diff(seeds_ptr))
    sx, sy = net.x[seeds], net.y[seeds]
    cnt = np.maximum(np.bincount(owner, minlength=k), 1)
    cx = np.bincount(owner, weights=sx, minlength=k) / cnt
    cy = np.bincount(owner, weights=sy, minlength=k) / cnt
    spread = np.zeros(k)
    np.maximum.at(spread, owner, np.hypot(sx - cx[owner], sy - cy[owner]))
    reach = radius + spread
    tree = graph.node_tree()
    order = morton_order(cx, cy)
    whole_share = COUNT_LOCAL_MAX_SHARE * n
    mark = np.zeros(n, dtype=bool)
    for start in range(0, k, max(1, int(chunk))):
        facs = order[start : start + chunk]
        near = tree.query_ball_point(
            np.column_stack([cx[facs], cy[facs]]), reach[facs], return_sorted=False
        )
        mark[np.concatenate([np.asarray(a, dtype=np.int64) for a in near])] = True
        nodes = np.flatnonzero(mark)
        mark[nodes] = False
        if nodes.size > whole_share:
            _count_whole(mat, facs, n, levels, out)
            continue
        idx = np.concatenate([nodes, n + facs])
        sub = mat[idx][:, idx]
        dist = dijkstra(sub, directed=True, indices=np.arange(nodes.size, idx.size), limit=limit)[
            :, : nodes.size
        ]
        for j, lev in enumerate(levels):
            out[nodes, j] += (dist <= lev).sum(axis=0, dtype=np.int32)
    return out


def _count_whole(
    mat: sp.csr_matrix, facs: np.ndarray, n: int, levels: np.ndarray, out: np.ndarray
) -> None:
    """Add the counts of facilities ``facs`` searched over the whole network to ``out``."""
    step = max(1, COUNT_CHUNK_BYTES // (8 * mat.shape[0]))
    for start in range(0, facs.size, step):
        dist = dijkstra(mat, indices=n + facs[start : start + step], limit=levels[-1])[:, :n]
        for j, lev in enumerate(levels):
            out[:, j] += (dist <= lev).sum(axis=0, dtype=np.int32)


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
    """Where the snapped facilities are entered, by category.

    Parameters
    ----------
    facilities : geopandas.GeoDataFrame
        With ``status``, ``category``, ``facility_id``, ``edge``, ``frac`` and
        ``snap_m`` columns.
    entries : pandas.DataFrame, optional
        The entries of area facilities (:func:`circles.entries.area_entries`:
        ``facility_id``, ``edge``, ``frac``, ``node``, ``access_m``); a facility without
        entries there is entered at its snap point.
    """

    def __init__(self, facilities: Any, entries: pd.DataFrame | None = None) -> None:
        snapped = (facilities["status"] == STATUS_SNAPPED).to_numpy()
        self._cat = facilities["category"].to_numpy(dtype=object)[snapped]
        self._edge = facilities["edge"].to_numpy()[snapped]
        self._frac = facilities["frac"].to_numpy()[snapped]
        self._snap_m = facilities["snap_m"].to_numpy()[snapped]
        ids = facilities.get("facility_id", facilities.index)
        self._ids = pd.Series(ids).astype(str).to_numpy(dtype=object)[snapped]
        self._places: pd.Index | None = None
        if entries is not None and len(entries):
            e = entries.sort_values("facility_id", kind="stable")
            ids = e["facility_id"].astype(str).to_numpy(dtype=object)
            self._places = pd.Index(pd.unique(ids))
            self._start = np.searchsorted(ids, self._places.to_numpy(), side="left")
            self._count = np.searchsorted(ids, self._places.to_numpy(), side="right") - self._start
            self._e_edge = e["edge"].to_numpy(np.int64)
            self._e_frac = e["frac"].to_numpy(float)
            self._e_node = e["node"].to_numpy(np.int64)
            self._e_access_m = e["access_m"].to_numpy(float)

    def __call__(
        self, category: str, speed_m_s: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``edge`` (int), ``frac`` (0-1) and access walk in seconds at ``speed_m_s`` of
        each facility's snap point (its nearest point on the network)."""
        sel = self._cat == category
        return (
            self._edge[sel].astype(np.int64),
            self._frac[sel].astype(float),
            self._snap_m[sel].astype(float) / speed_m_s,
        )

    def entries(self, category: str, speed_m_s: float) -> Entries:
        """The :class:`Entries` of a category's facilities (access walks at ``speed_m_s``):
        an area facility's entries, a point facility's snap point."""
        return self._entries(self._cat == category, speed_m_s)

    def all_entries(self, speed_m_s: float) -> Entries:
        """The :class:`Entries` of every snapped facility, in the table's order."""
        return self._entries(np.ones(self._cat.size, bool), speed_m_s)

    def _entries(self, sel: np.ndarray, speed_m_s: float) -> Entries:
        edge = self._edge[sel].astype(np.int64)
        frac = self._frac[sel].astype(float)
        acc = self._snap_m[sel].astype(float) / speed_m_s
        if self._places is None:
            return Entries.at_points(edge, frac, acc)
        place = self._places.get_indexer(self._ids[sel])
        area = place >= 0
        k = edge.size
        count = np.where(area, self._count[np.maximum(place, 0)], 1)
        facility = np.repeat(np.arange(k, dtype=np.int64), count)
        # row of each entry in the entries table (-1: the facility's own snap point)
        first = np.where(area, self._start[np.maximum(place, 0)], -1)
        offset = np.arange(facility.size) - np.repeat(np.cumsum(count) - count, count)
        row = np.where(np.repeat(area, count), np.repeat(first, count) + offset, -1)
        own = row < 0
        r = np.maximum(row, 0)
        return Entries(
            k,
            facility,
            np.where(own, edge[facility], self._e_edge[r]),
            np.where(own, frac[facility], self._e_frac[r]),
            np.where(own, -1, self._e_node[r]),
            np.where(own, acc[facility], self._e_access_m[r] / speed_m_s),
        )


def category_access(
    graph: AccessGraph,
    edge: np.ndarray | Entries,
    frac: np.ndarray | None,
    acc: np.ndarray | None,
    category: str,
    *,
    max_minutes: float,
    levels_minutes: tuple[float, ...],
) -> tuple[np.ndarray, np.ndarray]:
    """Minutes per node to a category's nearest facility, and counts within the levels.

    Each category is searched on a matrix holding only its own facilities, so the result
    does not depend on which other categories are computed in the same run. ``edge`` may
    be the category's :class:`Entries` (``frac`` and ``acc`` None).
    """
    entries = Entries.of(edge, frac, acc)
    group = np.full(entries.n_facilities, category, dtype=object)
    near = nearest_by_group(
        graph, entries, None, None, group, limit_s=60.0 * max_minutes, groups=[category]
    )
    levels_s = tuple(60.0 * float(x) for x in levels_minutes)
    return near[category][0] / 60.0, counts_within(graph, entries, levels_s=levels_s)


def compute_access(
    network: WalkNetwork,
    facilities: Any,
    categories: list[str],
    *,
    speed_m_s: float,
    max_minutes: float,
    levels_minutes: tuple[float, ...],
    edge_seconds: np.ndarray | None = None,
    entries: pd.DataFrame | None = None,
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
    entries : pandas.DataFrame, optional
        Entries of area facilities (:func:`circles.entries.area_entries`); without
        them every facility is entered at its snap point.
    """
    cost = network.edge_seconds(speed_m_s) if edge_seconds is None else edge_seconds
    graph = AccessGraph.from_network(network, cost)
    levels_s = tuple(60.0 * float(x) for x in levels_minutes)
    snapped = SnappedArrays(facilities, entries)
    minutes: dict[str, np.ndarray] = {}
    counts: dict[str, np.ndarray] = {}
    for cat in categories:
        ent = snapped.entries(cat, speed_m_s)
        group = np.full(ent.n_facilities, cat, dtype=object)
        near = nearest_by_group(
            graph, ent, None, None, group, limit_s=60.0 * max_minutes, groups=[cat]
        )
        minutes[cat] = near[cat][0] / 60.0
        counts[cat] = counts_within(graph, ent, levels_s=levels_s)
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
    *,
    entries: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Minutes and counts per category, each category walked with its own profile.

    Returns the minutes table, the counts, and the edge costs (seconds, ``(n_edges, 2)``)
    per profile name. ``entries``: as for :func:`compute_access`.
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
            entries=entries,
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
    entries: pd.DataFrame | None = None,
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
    entries : pandas.DataFrame, optional
        Entries of the area facilities (:func:`circles.entries.study_entries`).

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
    snapped = SnappedArrays(facilities, entries)
    for cat in progress_iter(categories, "categories", "category"):
        pname = profiles[cat]
        ent = snapped.entries(cat, float(walk.walk_profile(pname).speed_m_s))

        def compute(pname: str = pname, ent: Entries = ent, cat: str = cat) -> Any:
            if pname not in graphs:
                graphs[pname] = cached_graph(network, costs[pname], ctx.store)
            m, c = category_access(
                graphs[pname],
                ent,
                None,
                None,
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
                array_digest(*ent.arrays()),
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
