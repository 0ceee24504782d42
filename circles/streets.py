"""The streets stage: walking minutes along every street segment (the ``edges`` layer).

Node minutes (:mod:`circles.access`) say how far each *junction* is from a category's
nearest facility; a planner's most common map colours the *streets* by minutes. This
module gives every point of every street segment its exact minutes and cuts the
segments where those minutes cross a level, so that a street coloured by the levels
shows exactly where the 5-, 10- and 15-minute walks end.

The minutes at a point
----------------------
A point at fraction ``f`` of edge ``u -> v`` (0 at ``u``, 1 at ``v``) reaches a facility
by leaving the edge through ``u`` or ``v`` or by walking along the edge to a facility
snapped onto it, so its seconds are exactly::

    t(f) = min( f * c_vu + T_u,               # back to u, then u's nearest facility
                (1 - f) * c_uv + T_v,         # on to v, then v's
                |g - f| * c + a  for every facility at fraction g of this edge,
                                              # (c = c_uv ahead, c_vu behind; a = its
                                              #  access walk)
              )

with ``T_u``, ``T_v`` the nodes' seconds and ``c_uv``, ``c_vu`` the edge's walking
seconds in each direction (slope-aware with a DEM; ``inf`` against ``oneway:foot``).
At ``f = 0`` this is the node's own value, so the layer agrees with the ``nodes``
layer at every junction. Between consecutive facility positions ``t`` is a "tent":
rising from the left, falling to the right, peaking where the two meet.

The layer
---------
One row per *piece*: a street segment cut wherever any category's minutes cross a
level of ``[walk] levels_minutes`` or the search cut-off ``[walk] max_minutes``. Inside
a piece no category changes level, so ``<cat>_min`` (the piece's mean minutes, exact
integral of ``t``) classes the whole piece: colouring by ``<cat>_min`` with breaks at
the levels draws exactly where each level ends. ``<cat>_min`` is missing (NaN) on pieces
beyond the search cut-off. Other columns: ``edge`` (position in the network's edge
arrays), ``u_node``/``v_node`` (OSM node ids of the segment's ends), ``from_frac``/
``to_frac`` (the piece's position along its segment), ``length_m``, ``highway``,
``way_id``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from circles._errors import InputDataError
from circles.access import SnappedArrays
from circles.cache import Cache, Keyed, digest
from circles.config import WalkSection
from circles.network import WalkNetwork
from circles.result import Facilities, RunContext, StudyAccess, level_key
from circles.settings import WGS84

logger = logging.getLogger(__name__)

__all__ = ["EdgeMinutes", "edge_minutes", "level_classes", "street_pieces", "study_streets"]

#: Seconds standing in for "unreachable" in the arithmetic (finite so that integrals of
#: partly unreachable edges do not turn into inf - inf = NaN); values at or above
#: :data:`_BIG` / 2 are treated as unreachable.
_BIG = 1e12


class EdgeMinutes:
    """The exact walking seconds along every edge for one category.

    Built by :func:`edge_minutes`. The seconds along the edges form *atoms*: intervals
    ``[f0, f1]`` of one edge on which ``t`` is linear, from ``t0`` to ``t1``; each edge's
    atoms are contiguous, sorted and cover ``[0, 1]``.

    Attributes
    ----------
    edge : numpy.ndarray
        int64 edge of each atom.
    f0, f1 : numpy.ndarray
        Start and end fractions of each atom along its edge.
    t0, t1 : numpy.ndarray
        Seconds at the atom's start and end (``>= _BIG / 2``: unreachable).
    """

    def __init__(
        self, edge: np.ndarray, f0: np.ndarray, f1: np.ndarray, t0: np.ndarray, t1: np.ndarray
    ) -> None:
        order = np.lexsort((f0, edge))
        self.edge, self.f0, self.f1 = edge[order], f0[order], f1[order]
        self.t0, self.t1 = t0[order], t1[order]
        self._key = self.edge * 2.0 + self.f0
        area = 0.5 * (self.t0 + self.t1) * (self.f1 - self.f0)
        self._cum = np.concatenate([[0.0], np.cumsum(area)])
        self._edge_start = np.searchsorted(self.edge, np.arange(int(self.edge.max()) + 2))

    def _atom(self, edge: np.ndarray, frac: np.ndarray) -> np.ndarray:
        k = np.searchsorted(self._key, np.asarray(edge) * 2.0 + np.asarray(frac), side="right") - 1
        return np.clip(k, 0, self.edge.size - 1)

    def seconds(self, edge: Any, frac: Any) -> np.ndarray:
        """Seconds from the points at ``frac`` of ``edge`` to the nearest facility
        (``inf``: none within reach)."""
        edge = np.asarray(edge, dtype=np.int64)
        frac = np.clip(np.asarray(frac, dtype=float), 0.0, 1.0)
        k = self._atom(edge, frac)
        out = self._value(k, frac)
        return np.where(out >= _BIG / 2, np.inf, out)

    def _value(self, k: np.ndarray, frac: np.ndarray) -> np.ndarray:
        span = self.f1[k] - self.f0[k]
        w = np.where(span > 0, (frac - self.f0[k]) / np.where(span > 0, span, 1.0), 0.0)
        return self.t0[k] + np.clip(w, 0.0, 1.0) * (self.t1[k] - self.t0[k])

    def integral(self, edge: np.ndarray, frac: np.ndarray) -> np.ndarray:
        """Integral of the seconds over ``[0, frac]`` of ``edge`` (fraction units,
        relative to the edge's first atom)."""
        k = self._atom(edge, frac)
        part = 0.5 * (self.t0[k] + self._value(k, frac)) * (frac - self.f0[k])
        base = self._cum[self._edge_start[np.asarray(edge)]]
        return self._cum[k] - base + part

    def mean_seconds(self, edge: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Mean seconds over ``[a, b]`` of each ``edge`` (``inf`` where any point is
        unreachable)."""
        edge = np.asarray(edge, dtype=np.int64)
        span = b - a
        mean = (self.integral(edge, b) - self.integral(edge, a)) / np.where(span > 0, span, 1.0)
        mean = np.where(span > 0, mean, self._value(self._atom(edge, a), a))
        return np.where(mean >= _BIG / 2, np.inf, mean)


def edge_minutes(
    network: WalkNetwork,
    node_seconds: np.ndarray,
    edge_cost: np.ndarray,
    *,
    facility_edge: Any = (),
    facility_frac: Any = (),
    facility_access_s: Any = (),
) -> EdgeMinutes:
    """The exact seconds to the nearest facility along every edge of ``network``.

    Parameters
    ----------
    network : WalkNetwork
    node_seconds : numpy.ndarray
        Seconds from each node to the nearest facility (``inf``: none in reach), e.g.
        60 x a category's node minutes.
    edge_cost : numpy.ndarray
        ``(n_edges, 2)`` seconds to walk each edge ``u -> v`` and ``v -> u`` (the cost
        the node seconds were computed with); ``(n_edges,)`` for the same both ways.
    facility_edge, facility_frac, facility_access_s : array-like, optional
        The category's snapped facilities: edge, fraction from ``u``, access walk in
        seconds.

    Returns
    -------
    EdgeMinutes
    """
    n_e = network.n_edges
    cost = np.asarray(edge_cost, dtype=float)
    if cost.ndim == 1:
        cost = np.column_stack([cost, cost])
    if cost.shape != (n_e, 2):
        raise InputDataError(f"edge_cost has shape {cost.shape}; expected ({n_e}, 2)")
    sec = np.asarray(node_seconds, dtype=float)
    if sec.shape != (network.n_nodes,):
        raise InputDataError(f"node_seconds has {sec.shape} values; expected {network.n_nodes}")
    c_uv = np.minimum(cost[:, 0], _BIG)
    c_vu = np.where(network.direction == 1, _BIG, np.minimum(cost[:, 1], _BIG))
    t_u = np.minimum(sec[network.u], _BIG)
    t_v = np.minimum(sec[network.v], _BIG)

    # sub-intervals between facility positions: (edge, p, q, A, B) with the rising line
    # A + f * c_vu and the falling line B + (1 - f) * c_uv
    fe = np.asarray(facility_edge, dtype=np.int64)
    fg = np.clip(np.asarray(facility_frac, dtype=float), 0.0, 1.0)
    fa = np.asarray(facility_access_s, dtype=float)
    has = np.zeros(n_e, bool)
    has[fe] = True
    plain = np.flatnonzero(~has)
    parts: list[tuple[np.ndarray, ...]] = [
        (plain, np.zeros(plain.size), np.ones(plain.size), t_u[plain], t_v[plain])
    ]
    if fe.size:
        parts.append(_facility_intervals(fe, fg, fa, c_uv, c_vu, t_u, t_v))
    e, p, q, a, b = (np.concatenate(x) for x in zip(*parts, strict=True))
    cu, cv = c_uv[e], c_vu[e]
    # the tent's peak: A + f cv = B + (1 - f) cu
    with np.errstate(invalid="ignore", divide="ignore"):
        k = (b + cu - a) / (cv + cu)
    k = np.clip(np.nan_to_num(k, nan=0.0), p, q)

    def t(f: np.ndarray) -> np.ndarray:
        return np.minimum(np.minimum(a + f * cv, b + (1.0 - f) * cu), _BIG)

    edge = np.concatenate([e, e])
    f0 = np.concatenate([p, k])
    f1 = np.concatenate([k, q])
    t0 = np.concatenate([t(p), t(k)])
    t1 = np.concatenate([t(k), t(q)])
    keep = f1 > f0  # every edge keeps at least one atom: its intervals cover [0, 1]
    return EdgeMinutes(edge[keep], f0[keep], f1[keep], t0[keep], t1[keep])


def _facility_intervals(
    fe: np.ndarray,
    fg: np.ndarray,
    fa: np.ndarray,
    c_uv: np.ndarray,
    c_vu: np.ndarray,
    t_u: np.ndarray,
    t_v: np.ndarray,
) -> tuple[np.ndarray, ...]:
    """Sub-intervals of the edges that hold facilities (between their positions).

    A facility at ``g`` with access ``s`` is a rising line ``s - g c_vu + f c_vu`` for
    points after it and a falling one ``s - (1 - g) c_uv + (1 - f) c_uv`` for points
    before it, so each sub-interval's lines are the cumulative minima from the left
    (with ``T_u``) and from the right (with ``T_v``).
    """
    order = np.lexsort((fg, fe))
    fe, fg, fa = fe[order], fg[order], fa[order]
    rise = np.minimum(fa - fg * c_vu[fe], _BIG)
    fall = np.minimum(fa - (1.0 - fg) * c_uv[fe], _BIG)
    df = pd.DataFrame({"e": fe, "g": fg, "rise": rise, "fall": fall})
    cum_rise = df.groupby("e", sort=False)["rise"].cummin().to_numpy()
    cum_fall = df.iloc[::-1].groupby("e", sort=False)["fall"].cummin().to_numpy()[::-1]
    first = np.ones(fe.size, bool)
    first[1:] = fe[1:] != fe[:-1]
    last = np.ones(fe.size, bool)
    last[:-1] = fe[1:] != fe[:-1]
    # interval before each facility: from the previous position (or 0) to g
    prev_g = np.where(first, 0.0, np.concatenate([[0.0], fg[:-1]]))
    prev_rise = np.where(first, np.inf, np.concatenate([[np.inf], cum_rise[:-1]]))
    e1 = fe
    p1 = prev_g
    q1 = fg
    a1 = np.minimum(t_u[fe], prev_rise)
    b1 = np.minimum(t_v[fe], cum_fall)
    # the interval after the last facility of each edge: g to 1
    e2 = fe[last]
    p2 = fg[last]
    q2 = np.ones(e2.size)
    a2 = np.minimum(t_u[e2], cum_rise[last])
    b2 = t_v[e2]
    return (
        np.concatenate([e1, e2]),
        np.concatenate([p1, p2]),
        np.concatenate([q1, q2]),
        np.concatenate([a1, a2]),
        np.concatenate([b1, b2]),
    )


def _crossings(em: EdgeMinutes, levels_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(edge, frac)`` of every point where an atom's seconds cross one of ``levels_s``."""
    lo = np.minimum(em.t0, em.t1)
    hi = np.maximum(em.t0, em.t1)
    edges, fracs = [], []
    for lev in levels_s:
        hit = (lo < lev) & (hi > lev)
        if not hit.any():
            continue
        w = (lev - em.t0[hit]) / (em.t1[hit] - em.t0[hit])
        edges.append(em.edge[hit])
        fracs.append(em.f0[hit] + w * (em.f1[hit] - em.f0[hit]))
    if not edges:
        return np.zeros(0, np.int64), np.zeros(0)
    return np.concatenate(edges), np.concatenate(fracs)


def street_pieces(
    network: WalkNetwork,
    minutes: Mapping[str, EdgeMinutes],
    *,
    levels_minutes: Sequence[float],
    max_minutes: float,
) -> gpd.GeoDataFrame:
    """The ``edges`` layer: every segment cut where any category crosses a level.

    Parameters
    ----------
    network : WalkNetwork
    minutes : mapping
        Category -> :class:`EdgeMinutes` (from :func:`edge_minutes`).
    levels_minutes : sequence of float
        Levels to cut at (minutes); the search cut-off ``max_minutes`` is cut at too.
    max_minutes : float
        Search cut-off (minutes): pieces beyond it get NaN.

    Returns
    -------
    geopandas.GeoDataFrame
        EPSG:4326 lines; columns described in the module docstring.
    """
    n_e = network.n_edges
    levels_s = 60.0 * np.asarray(sorted({*map(float, levels_minutes), float(max_minutes)}))
    cut_e = [np.arange(n_e), np.arange(n_e)]
    cut_f = [np.zeros(n_e), np.ones(n_e)]
    for em in minutes.values():
        ce, cf = _crossings(em, levels_s)
        inner = (cf > 1e-9) & (cf < 1.0 - 1e-9)
        ce, cf = ce[inner], cf[inner]
        cut_e.append(ce)
        cut_f.append(cf)
    e = np.concatenate(cut_e)
    f = np.concatenate(cut_f)
    order = np.lexsort((f, e))
    e, f = e[order], f[order]
    # drop repeated cuts (two categories crossing at the same point; cuts at the ends)
    keep = np.ones(e.size, bool)
    keep[1:] = (e[1:] != e[:-1]) | (f[1:] - f[:-1] > 1e-9)
    e, f = e[keep], f[keep]
    nxt = np.flatnonzero(e[1:] == e[:-1])
    edge, a, b = e[nxt], f[nxt], f[nxt + 1]
    u, v = network.u[edge], network.v[edge]
    lon0 = network.lon[u] + a * (network.lon[v] - network.lon[u])
    lat0 = network.lat[u] + a * (network.lat[v] - network.lat[u])
    lon1 = network.lon[u] + b * (network.lon[v] - network.lon[u])
    lat1 = network.lat[u] + b * (network.lat[v] - network.lat[u])
    coords = np.stack([np.column_stack([lon0, lat0]), np.column_stack([lon1, lat1])], axis=1)
    geometry = shapely.linestrings(coords)
    cols: dict[str, Any] = {
        "edge": edge.astype(np.int64),
        "u_node": network.node_id[u],
        "v_node": network.node_id[v],
        "from_frac": a,
        "to_frac": b,
        "length_m": network.length_m[edge] * (b - a),
        "highway": np.asarray(network.highway, dtype=object)[edge],
        "way_id": network.way_id[edge],
    }
    for cat, em in minutes.items():
        mean = em.mean_seconds(edge, a, b) / 60.0
        cols[f"{cat}_min"] = np.where(mean > float(max_minutes) + 1e-9, np.nan, mean)
    return gpd.GeoDataFrame(cols, geometry=geometry, crs=WGS84)


def level_classes(minutes: Any, levels_minutes: Sequence[float]) -> np.ndarray:
    """Level class of each value: 0 within the first level, 1 within the second ...,
    ``len(levels)`` beyond the last (and for NaN, beyond the search cut-off)."""
    m = np.asarray(minutes, dtype=float)
    levels = np.asarray([float(x) for x in levels_minutes])
    cls = np.searchsorted(levels, m, side="left")
    return np.where(np.isnan(m), levels.size, cls).astype(np.int8)


def study_streets(
    network: Keyed[WalkNetwork],
    facilities: Facilities,
    access: StudyAccess,
    walk: WalkSection,
    ctx: RunContext,
) -> Keyed[gpd.GeoDataFrame]:
    """The streets stage: the ``edges`` layer (:func:`street_pieces`), cached.

    Parameters
    ----------
    network : Keyed
        The walking network and its key.
    facilities : Facilities
        The facilities and the entries of area facilities (each entry on an edge is a
        place along that edge where the facility is reached; entries at nodes are in the
        node minutes already).
    access : StudyAccess
        Node minutes, the walking profile and edge costs of each category, and their
        cache keys.
    walk : WalkSection
        ``[walk]``: levels, cut-off and walking profiles.
    ctx : RunContext
    """
    ctx.stage("streets")
    net = network.value
    categories = list(access.minutes.columns)

    def compute() -> gpd.GeoDataFrame:
        ctx.say("minutes along every street segment")
        snapped = SnappedArrays(facilities.table, facilities.entries)
        per_cat = {}
        for cat in categories:
            pname = access.profiles[cat]
            ent = snapped.entries(cat, float(walk.walk_profile(pname).speed_m_s))
            on_edge = ent.edge >= 0
            per_cat[cat] = edge_minutes(
                net,
                60.0 * access.minutes[cat].to_numpy(dtype=float),
                access.costs[pname],
                facility_edge=ent.edge[on_edge],
                facility_frac=ent.frac[on_edge],
                facility_access_s=ent.access_s[on_edge],
            )
        return street_pieces(
            net, per_cat, levels_minutes=walk.levels_minutes, max_minutes=walk.max_minutes
        )

    got = ctx.store.memo(
        "streets",
        [
            network.key,
            {c: access.keys[c] for c in categories},
            {c: access.profiles[c] for c in categories},
            [level_key(x) for x in walk.levels_minutes],
            walk.max_minutes,
        ],
        compute,
        codec=PIECES,
    )
    return Keyed(got.value, digest("edges", got.key), got.cached)


class _Pieces:
    """The ``edges`` layer as plain arrays in one ``.npz`` entry: each column, and the
    pieces' two end points (the lines are rebuilt from them exactly).

    Written as GeoParquet it cost 0.28 s per update on a county network (60,989 pieces),
    more than computing it; as arrays 0.04 s. Text columns are stored as fixed-width
    text; a column holding anything else than text is not an array and the entry is not
    kept (the stage computes it again next time).
    """

    def load(self, store: Cache, kind: str, key: str) -> gpd.GeoDataFrame | None:
        got = store.load_arrays(kind, key)
        if got is None:
            return None
        arrays, info = got
        names = list(info.get("columns", []))
        text = set(info.get("text", []))
        if "__ends__" not in arrays or any(n not in arrays for n in names):
            return None
        cols = {n: arrays[n].astype(object) if n in text else arrays[n] for n in names}
        geometry = shapely.linestrings(arrays["__ends__"]) if len(arrays["__ends__"]) else []
        return gpd.GeoDataFrame(cols, geometry=geometry, crs=info.get("crs", WGS84))

    def save(self, store: Cache, kind: str, key: str, value: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
        geoms = np.asarray(value.geometry.array, dtype=object)
        if len(geoms) and not (shapely.get_num_coordinates(geoms) == 2).all():
            return value
        arrays: dict[str, np.ndarray] = {
            "__ends__": shapely.get_coordinates(geoms).reshape(-1, 2, 2)
        }
        names, text = [], []
        for name in value.columns:
            if name == value.geometry.name:
                continue
            col = value[name].to_numpy()
            if col.dtype == object:
                if not all(isinstance(v, str) for v in col):
                    return value  # not kept: None or mixed values
                col = col.astype(str)
                text.append(str(name))
            names.append(str(name))
            arrays[str(name)] = col
        crs = value.crs.to_string() if value.crs is not None else WGS84
        store.save_arrays(kind, key, arrays, {"columns": names, "text": text, "crs": crs})
        return value


#: The ``edges`` layer's cache codec (:class:`_Pieces`).
PIECES = _Pieces()
