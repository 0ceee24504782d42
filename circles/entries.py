"""Where area facilities are entered: entrances, gates, outlines and the nodes inside.

A park, a campus or a sports ground is a place, not a point. :func:`area_entries` gives
every snapped area facility the places where a walker enters it (its *entries*) and the
network nodes inside its footprint, which are at the facility (0 minutes). The engine
(:class:`circles.access.Entries`) keeps the facility one virtual node with an arc to
each entry, so it is counted once and has one service area, however many entries it has.

Rules (OSM tags: :func:`circles.network.entrance_mask`, :func:`circles.network.area_enclosure`):

=====================  ==============================================================
entry                  where
=====================  ==============================================================
``entrance``, ``gate`` a mapped way in on the footprint's outline (within
                       :data:`ON_OUTLINE_M`): ``entrance=*`` (OSM wiki Key:entrance) or
                       ``barrier=gate|entrance|...`` (Tag:barrier=gate,
                       Tag:barrier=entrance), not private, locked, exit-only or an
                       emergency exit. On the network it is that node; off it, it is
                       snapped to the nearest walkable edge like a point facility
``crossing``           where a walkable way crosses into the footprint (a footway
                       through the outline), for every area that is not fenced
``outline``            for an *open* area (a park, square, pitch... without fence or
                       wall, ``access`` not private), with or without mapped gates:
                       every other place where the walking network meets its outline
                       (a street along a park; see below)
``inside``             every network node inside the footprint: at the facility
``nearest``            none of the above: the nearest point of the network, with the
                       straight access walk (how every area was joined before)
=====================  ==============================================================

A *fenced* area (``barrier=fence|wall|hedge|city_wall`` on it, or such ways along at
least :data:`FENCED_SHARE` of its outline, within :data:`FENCE_NEAR_M`) with mapped gates
is entered only through its gates (OSM wiki Tag:barrier=fence, Tag:barrier=wall); without
gates it is entered where ways cross into it. An *open* area with mapped gates is entered
at them and also wherever the network meets its outline (a deliberate choice: no fence or
wall is mapped, so its gates are its main ways in, not the only ones; the README's "What
the numbers mean" says why). An area way cut by the extract's edge
(``outline = "cut"``, :func:`circles.io.read_osm_features`) has no known interior: it is
entered at gates on its known outline, or, if open, where the network meets that line.

Every entry's access walk is the straight distance from the entry to the footprint (0
on or inside it), so no node's time ever beats the straight line to the footprint at
the walking speed (tested on real extracts).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj import Transformer

from circles import io
from circles._errors import DataFileError
from circles.cache import FRAMES, Keyed, digest, frame_digest
from circles.facilities import STATUS_SNAPPED, edge_index, snap
from circles.network import (
    ENCLOSURE_CLOSED,
    ENCLOSURE_FENCED,
    ENCLOSURE_OPEN,
    WalkNetwork,
    entrance_mask,
)
from circles.result import Facilities, RunContext
from circles.settings import MAX_SNAP_M, WGS84

logger = logging.getLogger(__name__)

#: A mapped entrance or gate within this many metres of a footprint's outline is on it
#: (gates are often mapped on a fence a little inside the area's outline).
ON_OUTLINE_M = 3.0
#: A network node within this many metres of an outline is on it (coordinate rounding:
#: a node shared by a footway and the outline way has the same coordinates).
NODE_ON_OUTLINE_M = 0.01
#: A fence or wall way within this many metres of an outline runs along it.
FENCE_NEAR_M = 3.0
#: An area with fences or walls along at least this share of its outline is fenced.
FENCED_SHARE = 0.5

#: Kinds of entries (see the module docstring).
ENTRY_KINDS = ("entrance", "gate", "crossing", "outline", "inside", "nearest")

#: How each area facility was joined (``entry_rule``).
RULE_GATES = "gates"  # fenced, entered only through its gates
RULE_ENTRIES = "entries"  # mapped entrances and ways crossing into it
RULE_OPEN = "open"  # every place the network meets its outline
RULE_NEAREST = "nearest"  # no entry found: the nearest point of the network

#: Columns of the entries table (besides geometry, the entry point in EPSG:4326).
ENTRY_COLUMNS = ("facility_id", "kind", "edge", "frac", "node", "node_id", "access_m")
#: Columns :func:`study_entries` adds to the facilities table.
SUMMARY_COLUMNS = ("entries", "inside_nodes", "entry_rule", "enclosure")

#: Version of the rules (part of the cache key: change it when the rules change).
RULES_VERSION = 1


def empty_entries() -> gpd.GeoDataFrame:
    """An entries table without rows."""
    cols: dict[str, Any] = {
        "facility_id": np.zeros(0, dtype=object),
        "kind": np.zeros(0, dtype=object),
        "edge": np.zeros(0, np.int64),
        "frac": np.zeros(0),
        "node": np.zeros(0, np.int64),
        "node_id": np.zeros(0, np.int64),
        "access_m": np.zeros(0),
    }
    return gpd.GeoDataFrame(cols, geometry=gpd.GeoSeries([], crs=WGS84), crs=WGS84)


def _areas(facilities: pd.DataFrame) -> pd.DataFrame:
    """One row per snapped area facility (by ``facility_id``, the first of its rows)."""
    if "footprint_wkb" not in facilities or len(facilities) == 0:
        return facilities.iloc[0:0]
    snapped = (facilities["status"] == STATUS_SNAPPED).to_numpy()
    has = facilities["footprint_wkb"].notna().to_numpy()
    rows = facilities.loc[snapped & has]
    dup = rows["facility_id"].astype(str).duplicated(keep="first")
    if dup.any():
        first = rows.loc[~dup].set_index(rows.loc[~dup, "facility_id"].astype(str))
        other = rows.loc[dup]
        differs = [
            fid
            for fid, wkb in zip(
                other["facility_id"].astype(str), other["footprint_wkb"], strict=True
            )
            if first.at[fid, "footprint_wkb"] != wkb
        ]
        if differs:
            logger.warning(
                "%d facility ids have two different footprints (the first is used for "
                "all their rows): %s",
                len(set(differs)),
                sorted(set(differs))[:10],
            )
    return rows.loc[~dup]


def _fence_shares(outlines: np.ndarray, fences: np.ndarray) -> np.ndarray:
    """Share of each outline's length that runs within :data:`FENCE_NEAR_M` of a fence."""
    share = np.zeros(outlines.size)
    if fences.size == 0 or outlines.size == 0:
        return share
    tree = shapely.STRtree(fences)
    oi, fi = tree.query(outlines, predicate="dwithin", distance=FENCE_NEAR_M)
    for a in np.unique(oi).tolist():
        near = shapely.union_all(shapely.buffer(fences[fi[oi == a]], FENCE_NEAR_M))
        length = shapely.length(outlines[a])
        if length > 0:
            share[a] = float(shapely.length(shapely.intersection(outlines[a], near)) / length)
    return share


def _edge_crossings(
    lines: np.ndarray, ei: np.ndarray, outlines: np.ndarray, ai: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Fraction along each edge ``ei`` (from ``u``) of its first and its last meeting
    point with the outline ``ai``."""
    inter = shapely.intersection(lines[ei], outlines[ai])
    xy, idx = shapely.get_coordinates(inter, return_index=True)
    f = shapely.line_locate_point(lines[ei[idx]], shapely.points(xy), normalized=True)
    lo = np.full(ei.size, np.inf)
    hi = np.full(ei.size, -np.inf)
    np.minimum.at(lo, idx, f)
    np.maximum.at(hi, idx, f)
    return np.clip(lo, 0.0, 1.0), np.clip(hi, 0.0, 1.0)


def area_entries(
    network: WalkNetwork,
    facilities: pd.DataFrame,
    entrances: gpd.GeoDataFrame | None = None,
    *,
    max_snap_m: float = MAX_SNAP_M,
) -> tuple[gpd.GeoDataFrame, pd.DataFrame]:
    """The entries of every snapped area facility (see the module docstring).

    Parameters
    ----------
    network : WalkNetwork
    facilities : pandas.DataFrame
        Snapped facilities (:func:`circles.facilities.snap_at_points`: ``status``,
        ``footprint_wkb``, ``enclosure``, ``outline``, ``edge``, ``frac``, ``snap_m``).
        Rows of the same ``facility_id`` (one per category) share their entries.
    entrances : geopandas.GeoDataFrame, optional
        Entrance and gate nodes and fence ways (:func:`circles.io.read_osm_entrances`).
    max_snap_m : float
        Metres within which a gate off the network joins the nearest walkable edge.

    Returns
    -------
    entries : geopandas.GeoDataFrame
        One row per entry: ``facility_id``, ``kind`` (:data:`ENTRY_KINDS`), ``edge``
        and ``frac`` (-1 and NaN for an entry at a node), ``node`` (position; -1 on an
        edge), ``node_id`` (OSM id; -1 on an edge), ``access_m`` (straight walk from
        the entry to the footprint, m) and the entry point (EPSG:4326).
    per_facility : pandas.DataFrame
        Indexed by ``facility_id``: ``entries`` (entries other than inside nodes),
        ``inside_nodes``, ``entry_rule`` (``gates``, ``entries``, ``open`` or
        ``nearest``), ``enclosure`` (``open``, ``fenced`` or ``closed``, fences along
        the outline included) and ``fence_share``.
    """
    areas = _areas(facilities)
    k = len(areas)
    if k == 0:
        return empty_entries(), pd.DataFrame(
            columns=["entries", "inside_nodes", "entry_rule", "enclosure", "fence_share"],
            index=pd.Index([], name="facility_id", dtype=object),
        )
    ids = areas["facility_id"].astype(str).to_numpy(dtype=object)
    geom = np.asarray(
        gpd.GeoSeries(shapely.from_wkb(areas["footprint_wkb"].to_numpy()), crs=WGS84)
        .to_crs(network.crs)
        .to_numpy(),
        dtype=object,
    )
    cut = (areas["outline"].astype(object) == io.OUTLINE_CUT).to_numpy(dtype=bool)
    polygonal = np.isin(shapely.get_type_id(geom), [3, 6]) & ~cut  # Polygon, MultiPolygon
    outline = np.where(polygonal, shapely.boundary(geom), geom)
    enclosure = (
        areas["enclosure"].astype(object).where(areas["enclosure"].notna(), ENCLOSURE_CLOSED)
        if "enclosure" in areas
        else pd.Series(ENCLOSURE_CLOSED, index=areas.index, dtype=object)
    ).to_numpy(dtype=object)

    ent = entrances
    gates_xy = np.zeros((0, 2))
    gate_kind = np.zeros(0, dtype=object)
    gate_osm = np.zeros(0, np.int64)
    fences = np.zeros(0, dtype=object)
    if ent is not None and len(ent):
        ent_m = ent.to_crs(network.crs)
        is_node = (ent_m["osm_type"].astype(str) == "node").to_numpy()
        usable = is_node & entrance_mask(pd.DataFrame(ent_m.drop(columns="geometry")))
        g = ent_m.geometry.to_numpy()
        gates_xy = shapely.get_coordinates(g[usable])
        door = ent_m["entrance"] if "entrance" in ent_m else pd.Series(None, index=ent_m.index)
        has_door = door.notna() & (door.astype(str) != "")
        gate_kind = np.where(has_door.to_numpy()[usable], "entrance", "gate").astype(object)
        gate_osm = ent_m["osm_id"].to_numpy(np.int64)[usable]
        fences = np.asarray(g[~is_node], dtype=object)
    share = _fence_shares(outline, fences)
    enclosure = np.where(share >= FENCED_SHARE, ENCLOSURE_FENCED, enclosure).astype(object)
    is_open = enclosure == ENCLOSURE_OPEN

    parts: list[dict[str, np.ndarray]] = []

    def add(kind: Any, area: Any, edge: Any, frac: Any, node: Any, access: Any) -> None:
        area = np.asarray(area, np.int64)
        n = area.size
        parts.append(
            {
                "area": area,
                "kind": np.broadcast_to(np.asarray(kind, dtype=object), (n,)).copy(),
                "edge": np.broadcast_to(np.asarray(edge, np.int64), (n,)).copy(),
                "frac": np.broadcast_to(np.asarray(frac, float), (n,)).copy(),
                "node": np.broadcast_to(np.asarray(node, np.int64), (n,)).copy(),
                "access": np.broadcast_to(np.asarray(access, float), (n,)).copy(),
            }
        )

    # gates on the outline
    gate_area = np.zeros(0, np.int64)
    if gates_xy.size:
        gate_pts = shapely.points(gates_xy)
        ga, gi = shapely.STRtree(gate_pts).query(
            outline, predicate="dwithin", distance=ON_OUTLINE_M
        )
        access = shapely.distance(gate_pts[gi], np.where(polygonal, geom, outline)[ga])
        node = pd.Index(network.node_id).get_indexer(gate_osm[gi])
        on_net = node >= 0
        add(gate_kind[gi[on_net]], ga[on_net], -1, np.nan, node[on_net], access[on_net])
        gate_area = ga[on_net]
        off = np.flatnonzero(~on_net)
        if off.size:
            s = snap(
                network,
                gpd.GeoSeries(gate_pts[gi[off]], crs=network.crs),
                max_snap_m=max_snap_m,
            )
            ok = (s["status"] == STATUS_SNAPPED).to_numpy()
            if (~ok).any():
                logger.info("%d gates of area facilities are off the network", int((~ok).sum()))
            o = off[ok]
            add(
                gate_kind[gi[o]],
                ga[o],
                s["edge"].to_numpy()[ok],
                s["frac"].to_numpy()[ok],
                -1,
                s["snap_m"].to_numpy()[ok] + access[o],
            )
            gate_area = np.concatenate([gate_area, ga[o]])
    gated = np.zeros(k, bool)  # has a gate that is a way in
    gated[gate_area] = True
    gates_only = (enclosure == ENCLOSURE_FENCED) & gated

    # nodes inside the footprints and on their outlines
    node_pts = shapely.points(network.x, network.y)
    node_tree = shapely.STRtree(node_pts)
    poly_idx = np.flatnonzero(polygonal)
    ia, inode = node_tree.query(geom[poly_idx], predicate="contains")
    ia = poly_idx[ia]
    add("inside", ia, -1, np.nan, inode, 0.0)
    oa, onode = node_tree.query(outline, predicate="dwithin", distance=NODE_ON_OUTLINE_M)
    n_nodes = network.n_nodes
    covered = np.union1d(ia * n_nodes + inode, oa * n_nodes + onode)

    # edges meeting the outlines
    lines, tree = edge_index(network)
    pa, pe = tree.query(outline, predicate="intersects")
    keep = ~gates_only[pa]
    pa, pe = pa[keep], pe[keep]
    lo, hi = _edge_crossings(lines, pe, outline, pa)
    into = np.zeros(pa.size, bool)
    pp = polygonal[pa]
    if pp.any():
        into[pp] = shapely.relate_pattern(lines[pe[pp]], geom[pa[pp]], "T********")
    u, v = network.u[pe], network.v[pe]
    u_cov = np.isin(pa * n_nodes + u, covered)
    v_cov = np.isin(pa * n_nodes + v, covered)
    entering = into | is_open[pa]  # a closed area only where a way goes into it
    kind = np.where(into, "crossing", "outline").astype(object)
    # the meeting point seen from an end outside; none when it is the other end itself
    # (a node on the outline: entered there, below)
    length = shapely.length(lines[pe])
    m = entering & ~u_cov & ~(v_cov & ((1.0 - lo) * length <= NODE_ON_OUTLINE_M))
    add(kind[m], pa[m], pe[m], lo[m], -1, 0.0)
    m = entering & ~v_cov & ~(u_cov & (hi * length <= NODE_ON_OUTLINE_M))
    add(kind[m], pa[m], pe[m], hi[m], -1, 0.0)
    # outline nodes: of an open area always; of another area where a way goes in there
    on_u = into & u_cov & ~np.isin(pa * n_nodes + u, ia * n_nodes + inode)
    on_v = into & v_cov & ~np.isin(pa * n_nodes + v, ia * n_nodes + inode)
    add("crossing", pa[on_u], -1, np.nan, u[on_u], 0.0)
    add("crossing", pa[on_v], -1, np.nan, v[on_v], 0.0)
    inside_pairs = ia * n_nodes + inode
    o_open = is_open[oa] & ~gates_only[oa] & ~np.isin(oa * n_nodes + onode, inside_pairs)
    add("outline", oa[o_open], -1, np.nan, onode[o_open], 0.0)

    table = _dedupe(pd.DataFrame({c: np.concatenate([p[c] for p in parts]) for c in parts[0]}))
    # the nearest point of the network for an area with no entry at all
    found = np.zeros(k, bool)
    found[table["area"].to_numpy()] = True
    none = np.flatnonzero(~found)
    if none.size:
        parts = []
        add(
            "nearest",
            none,
            areas["edge"].to_numpy(np.int64)[none],
            areas["frac"].to_numpy(float)[none],
            -1,
            areas["snap_m"].to_numpy(float)[none],
        )
        table = _dedupe(pd.concat([table, pd.DataFrame(parts[0])], ignore_index=True))
    a = table["area"].to_numpy(np.int64)
    edge = table["edge"].to_numpy(np.int64)
    frac = table["frac"].to_numpy(float)
    node = table["node"].to_numpy(np.int64)
    on_edge = edge >= 0
    x = np.where(on_edge, 0.0, network.x[np.maximum(node, 0)])
    y = np.where(on_edge, 0.0, network.y[np.maximum(node, 0)])
    if on_edge.any():
        ex = network.x[network.u[edge[on_edge]]] + frac[on_edge] * (
            network.x[network.v[edge[on_edge]]] - network.x[network.u[edge[on_edge]]]
        )
        ey = network.y[network.u[edge[on_edge]]] + frac[on_edge] * (
            network.y[network.v[edge[on_edge]]] - network.y[network.u[edge[on_edge]]]
        )
        x[on_edge], y[on_edge] = ex, ey
    lon, lat = Transformer.from_crs(network.crs, WGS84, always_xy=True).transform(x, y)
    kinds = table["kind"].to_numpy(dtype=object)
    out = gpd.GeoDataFrame(
        {
            "facility_id": ids[a],
            "kind": kinds,
            "edge": edge,
            "frac": np.where(on_edge, frac, np.nan),
            "node": np.where(on_edge, -1, node),
            "node_id": np.where(on_edge, -1, network.node_id[np.maximum(node, 0)]),
            "access_m": table["access"].to_numpy(float),
        },
        geometry=gpd.points_from_xy(lon, lat),
        crs=WGS84,
    )
    inside = np.bincount(a[kinds == "inside"], minlength=k)
    entries = np.bincount(a[kinds != "inside"], minlength=k)
    rule = np.where(gates_only, RULE_GATES, np.where(is_open, RULE_OPEN, RULE_ENTRIES)).astype(
        object
    )
    rule[none] = RULE_NEAREST
    per = pd.DataFrame(
        {
            "entries": entries.astype(np.int64),
            "inside_nodes": inside.astype(np.int64),
            "entry_rule": rule,
            "enclosure": enclosure,
            "fence_share": share,
        },
        index=pd.Index(ids, name="facility_id"),
    )
    return out, per


def _dedupe(table: pd.DataFrame) -> pd.DataFrame:
    """One entry per place: the same node or edge point found twice is kept once, with
    the cheapest access walk and the first kind of :data:`ENTRY_KINDS` (a mapped gate
    before a crossing), ordered by area, kind and place."""
    rank = table["kind"].map({kd: i for i, kd in enumerate(ENTRY_KINDS)}).to_numpy()
    t = table.assign(rank=rank, f=table["frac"].round(12).fillna(-1.0))
    place = ["area", "node", "edge", "f"]
    best = t.groupby(place, sort=False).agg(access=("access", "min"), rank=("rank", "min"))
    t = t.drop_duplicates(place, keep="first").drop(columns=["access", "rank"])
    t = t.join(best, on=place)
    t["kind"] = np.asarray(ENTRY_KINDS, dtype=object)[t["rank"].to_numpy()]
    t = t.sort_values(["area", "rank", "node", "edge", "f"], kind="stable")
    return t.drop(columns=["rank", "f"]).reset_index(drop=True)


def entrance_source(source: str, features: str | None) -> str | None:
    """The OSM file entrances are read from: the network's, else the features' (None:
    neither is an OSM file)."""
    for path in (source, features):
        if not path or not Path(path).is_file():
            continue
        try:
            kind = io.osm_format(path)
        except DataFileError:
            continue
        if kind in ("pbf", "xml"):
            return path
    return None


def study_entries(
    facilities: Facilities,
    network: Keyed[WalkNetwork],
    source: str,
    features: str | None,
    max_snap_m: float,
    ctx: RunContext,
) -> Facilities:
    """The entries stage: :func:`area_entries` for the facilities after every update.

    Parameters
    ----------
    facilities : Facilities
        The facilities stage's result (updates applied).
    network : Keyed
        The walking network and its key.
    source, features : str
        The network's file and the file OSM facilities came from; entrances, gates and
        fences are read from the first that is an OSM file.
    max_snap_m : float
        ``[walk] max_snap_m``: gates off the network join it within this distance.
    ctx : RunContext

    Returns
    -------
    Facilities
        With ``entries`` (the entries table) and the facilities table's columns
        ``entries``, ``inside_nodes``, ``entry_rule`` and ``enclosure`` (point facilities:
        1 entry, 0 inside nodes, rule ``point``).
    """
    ctx.stage("entries")
    table = facilities.table
    areas = _areas(table)
    src = entrance_source(source, features) if len(areas) else None
    src_sha = ctx.inputs.sha("entrances", src) if src is not None else None
    cols = [
        "facility_id",
        "status",
        "footprint_wkb",
        "enclosure",
        "outline",
        "edge",
        "frac",
        "snap_m",
    ]

    def compute() -> dict[str, Any]:
        ents = io.read_osm_entrances(src) if src is not None else None
        got, per = area_entries(network.value, table, ents, max_snap_m=max_snap_m)
        return {"entries": got, "entry_summary": per.reset_index()}

    key_parts = [
        network.key,
        src_sha,
        frame_digest(areas, [c for c in cols if c in areas]) if len(areas) else None,
        max_snap_m,
        RULES_VERSION,
    ]
    got = ctx.store.memo("entries", key_parts, compute, codec=FRAMES).value
    entries, per = got["entries"], got["entry_summary"].set_index("facility_id")
    new = table.copy()
    ids = new["facility_id"].astype(str)
    area = ids.isin(per.index).to_numpy() & (new["status"] == STATUS_SNAPPED).to_numpy()
    new["entries"] = np.where(
        area,
        per["entries"].reindex(ids).to_numpy(),
        np.where(new["status"] == STATUS_SNAPPED, 1, 0),
    ).astype(np.int64)
    new["inside_nodes"] = np.where(area, per["inside_nodes"].reindex(ids).to_numpy(), 0).astype(
        np.int64
    )
    new["entry_rule"] = np.where(
        area, per["entry_rule"].reindex(ids).to_numpy(dtype=object), "point"
    ).astype(object)
    if "enclosure" in new:
        new["enclosure"] = np.where(
            area, per["enclosure"].reindex(ids).to_numpy(dtype=object), new["enclosure"]
        ).astype(object)
    if len(areas):
        n_in = int(per["inside_nodes"].sum())
        ctx.say(
            f"area facilities: {len(per)} entered at {int(per['entries'].sum())} places, "
            f"{n_in} network nodes inside them"
        )
    return replace(facilities, table=new, entries=entries)


def digest_entries(entries: pd.DataFrame | None) -> str:
    """Content key of an entries table."""
    if entries is None or len(entries) == 0:
        return digest("entries", None)
    return frame_digest(entries, ["facility_id", "edge", "frac", "node", "access_m"])


def digest_footprints(facilities: pd.DataFrame) -> str:
    """Content key of what :func:`footprint_layer` draws from ``facilities``."""
    if "footprint_wkb" not in facilities:
        return digest("footprints", None)
    rows = facilities[facilities["footprint_wkb"].notna()]
    cols = ["facility_id", "name", "category", "source", "footprint_wkb", *SUMMARY_COLUMNS]
    return frame_digest(rows, [c for c in cols if c in rows])


# --------------------------------------------------------------------------- output layers


def footprint_layer(facilities: pd.DataFrame) -> gpd.GeoDataFrame:
    """The ``facility_footprints`` layer: one polygon per area facility (EPSG:4326).

    Columns ``facility_id``, ``name``, ``categories`` (``park;fitness``), ``source``,
    ``area_m2`` (in the UTM zone of the footprint), ``entries``, ``inside_nodes``,
    ``entry_rule`` and ``enclosure``. Outlines cut by the extract's edge (lines) are
    not polygons and are left to the ``facilities`` and ``facility_entries`` layers.
    """
    cols = ["facility_id", "name", "categories", "source", "area_m2", *SUMMARY_COLUMNS]
    empty = gpd.GeoDataFrame(
        {c: [] for c in cols}, geometry=gpd.GeoSeries([], crs=WGS84), crs=WGS84
    )
    if "footprint_wkb" not in facilities or len(facilities) == 0:
        return empty
    rows = facilities[facilities["footprint_wkb"].notna()]
    if len(rows) == 0:
        return empty
    geom = shapely.from_wkb(rows["footprint_wkb"].to_numpy())
    poly = np.isin(shapely.get_type_id(geom), [3, 6])
    rows, geom = rows.loc[poly], geom[poly]
    if len(rows) == 0:
        return empty
    cats = rows.groupby(rows["facility_id"].astype(str), sort=False)["category"].agg(
        lambda c: ";".join(dict.fromkeys(c.astype(str)))
    )
    first = ~rows["facility_id"].astype(str).duplicated(keep="first").to_numpy()
    rows, geom = rows.loc[first], geom[first]
    ids = rows["facility_id"].astype(str)
    g = gpd.GeoSeries(geom, crs=WGS84)
    area = g.to_crs(g.estimate_utm_crs()).area.to_numpy()
    out = gpd.GeoDataFrame(
        {
            "facility_id": ids.to_numpy(dtype=object),
            "name": rows["name"].astype(object).where(rows["name"].notna(), None).to_numpy(),
            "categories": cats.reindex(ids).to_numpy(dtype=object),
            "source": rows["source"].astype(str).to_numpy(dtype=object),
            "area_m2": area,
            **{c: rows[c].to_numpy() for c in SUMMARY_COLUMNS if c in rows},
        },
        geometry=[shapely.MultiPolygon([p]) if p.geom_type == "Polygon" else p for p in geom],
        crs=WGS84,
    )
    return out.reset_index(drop=True)


def entry_layer(entries: pd.DataFrame | None) -> gpd.GeoDataFrame:
    """The ``facility_entries`` layer: one point per entry (EPSG:4326): ``facility_id``,
    ``kind``, ``node_id`` (-1 on an edge) and ``access_m``."""
    e = empty_entries() if entries is None or len(entries) == 0 else entries
    return gpd.GeoDataFrame(
        {
            "facility_id": e["facility_id"].to_numpy(dtype=object),
            "kind": e["kind"].to_numpy(dtype=object),
            "node_id": e["node_id"].to_numpy(np.int64),
            "access_m": e["access_m"].to_numpy(float),
        },
        geometry=e.geometry.to_numpy(),
        crs=WGS84,
    )
