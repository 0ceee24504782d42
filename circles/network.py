"""The walking network: pedestrian rules, metric lengths, compact arrays.

The network is held as plain NumPy arrays (:class:`WalkNetwork`): every edge is a
straight segment between two nodes, so snapping, splitting and cutting an edge are exact
and cheap. OSM ways are split at every vertex; osmnx GraphML edges with curved
geometries are split at their vertices too. :meth:`WalkNetwork.to_networkx` gives the
same network back as an osmnx-compatible ``networkx.MultiDiGraph``.

Walking rules (:func:`walk_mask`), applied to every OSM way:

==========================  ==============================================================
rule                        OSM tags
==========================  ==============================================================
walkable highway types      footway, path, pedestrian, steps, living_street, residential,
                            service, track, unclassified, road, corridor, elevator,
                            bridleway and trail, tertiary(_link), secondary(_link),
                            primary(_link)
walkable if foot allowed    cycleway, motorway(_link), trunk(_link): only with
                            ``foot=yes|designated|permissive`` or, for trunk roads, a
                            mapped ``sidewalk=both|left|right|yes``
never walkable              ``highway=construction|proposed|planned|abandoned|razed|
                            platform|raceway|bus_guideway|busway|escalator|no``,
                            ``area=yes`` (pedestrian areas are not ways to walk along),
                            ``foot=no``
closed unless foot allowed  ``access=private|no`` unless ``foot=yes|designated``
one-way                     ``oneway`` is ignored on foot; ``oneway:foot=yes|-1`` is
                            honoured
==========================  ==============================================================

Entering areas (:func:`entrance_mask`, :func:`area_enclosure`; applied by
:mod:`circles.entries` to area facilities such as parks and school grounds):

==========================  ==============================================================
rule                        OSM tags
==========================  ==============================================================
way in (node)               ``entrance=*`` except ``exit|emergency|no``; ``barrier=gate|
                            entrance|kissing_gate|turnstile|swing_gate|lift_gate|stile|...``
                            ; not with ``access=private|no`` (unless ``foot=yes|
                            designated``), ``foot=no|private`` or ``locked=yes``
fenced area                 ``barrier=fence|wall|hedge|city_wall`` on the area (or such
                            ways along most of its outline: :mod:`circles.entries`)
open area                   ``leisure=park|garden|pitch|playground|fitness_station|track|
                            common|recreation_ground|dog_park|nature_reserve``,
                            ``place=square``, ``landuse=recreation_ground|village_green|
                            grass``, ``highway=pedestrian``, ``amenity=marketplace``; not
                            ``building=*``, not fenced, not private
closed area                 anything else (buildings, school and hospital grounds)
==========================  ==============================================================

Cycling rules (:func:`cycle_mask`, :func:`oneway_bicycle_direction`), used by
``circles.io.load_network(..., mode="bike")``:

==========================  ==============================================================
rule                        OSM tags
==========================  ==============================================================
cyclable highway types      cycleway, residential, living_street, service, track,
                            unclassified, road, tertiary(_link), secondary(_link),
                            primary(_link)
cyclable if bicycle allowed path, footway, pedestrian, bridleway, trail: only with
                            ``bicycle=yes|designated|permissive``
cyclable if explicitly      motorway(_link), trunk(_link): only with
allowed                     ``bicycle=yes|designated``
never cyclable              ``highway=steps`` (no dismount rule: pushing a bicycle up
                            steps is not cycling), corridor, elevator, every highway type
                            not listed above (construction, proposed, platform ...),
                            ``area=yes``, ``bicycle=no|use_sidepath|dismount``
closed unless bicycle       ``access=private|no`` unless ``bicycle=yes|designated``
allowed
one-way                     ``oneway=yes|1|true`` only along the way, ``oneway=-1`` only
                            against it; ``junction=roundabout`` implies ``oneway=yes``;
                            ``oneway:bicycle=no`` or ``cycleway=opposite|opposite_lane|
                            opposite_track`` make the way two-way for bicycles;
                            ``oneway:bicycle=yes|-1`` makes it one-way for bicycles
                            whatever ``oneway`` says
==========================  ==============================================================
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from pyproj import CRS, Geod, Transformer
from scipy.sparse.csgraph import connected_components

from circles._errors import NetworkError

if TYPE_CHECKING:
    import networkx as nx  # imported where used: 0.8 s of every CLI call otherwise

logger = logging.getLogger(__name__)

GEOD = Geod(ellps="WGS84")

WALK_HIGHWAYS = frozenset(
    {
        "footway",
        "path",
        "pedestrian",
        "steps",
        "living_street",
        "residential",
        "service",
        "track",
        "unclassified",
        "road",
        "corridor",
        "elevator",
        "bridleway",
        "trail",
        "tertiary",
        "tertiary_link",
        "secondary",
        "secondary_link",
        "primary",
        "primary_link",
    }
)
FOOT_ONLY_HIGHWAYS = frozenset({"cycleway", "motorway", "motorway_link", "trunk", "trunk_link"})
SIDEWALK_HIGHWAYS = frozenset({"trunk", "trunk_link"})
FOOT_ALLOWED = frozenset({"yes", "designated", "permissive"})
FOOT_OVERRIDES_ACCESS = frozenset({"yes", "designated"})
CLOSED_ACCESS = frozenset({"private", "no"})
SIDEWALK_PRESENT = frozenset({"both", "left", "right", "yes"})

#: OSM tag keys that the walking rules read.
WALK_TAG_KEYS = ("highway", "foot", "access", "area", "sidewalk", "oneway:foot")

#: Warn while building a network when the small disconnected pieces dropped hold more
#: than this share (0-1) of its street length.
DROPPED_STREET_WARN_SHARE = 0.20

#: What to check when most of the street length falls in small pieces.
DROPPED_STREET_HINT = (
    "is the study area (the extract, the place or the area boundary) too small, cutting "
    "the streets into pieces? was the network fetched for walking (a GraphML saved with "
    'osmnx network_type="drive" lacks footways)? are main roads tagged foot=no cutting '
    "the town apart? ([network] keep_largest = false keeps every piece)"
)


def dropped_street_share(report: Mapping[str, Any], kept_m: float) -> float:
    """Share (0-1) of the street length that was dropped in small disconnected pieces.

    Parameters
    ----------
    report : dict
        A network's ``report`` (``street_length_in_small_components_m``, metres).
    kept_m : float
        The street length kept (m).
    """
    dropped_m = float(report.get("street_length_in_small_components_m", 0.0))
    total = dropped_m + float(kept_m)
    return dropped_m / total if total > 0 else 0.0


def dropped_street_warning(report: dict[str, Any], kept_m: float) -> str | None:
    """The warning about the street length dropped in small pieces, or None when the
    dropped share is at most :data:`DROPPED_STREET_WARN_SHARE`.

    Parameters
    ----------
    report : dict
        A network's ``report`` (``street_length_in_small_components_m``).
    kept_m : float
        The street length kept (m).
    """
    share = dropped_street_share(report, kept_m)
    if share <= DROPPED_STREET_WARN_SHARE:
        return None
    dropped_m = float(report.get("street_length_in_small_components_m", 0.0))
    total = dropped_m + float(kept_m)
    return (
        f"{100 * share:.0f}% of the street length ({dropped_m / 1000:.2f} of "
        f"{total / 1000:.2f} km) is in small pieces not connected to the largest one and "
        f"was dropped; only {kept_m / 1000:.2f} km are walked: {DROPPED_STREET_HINT}"
    )


def _first_value(series: pd.Series) -> pd.Series:
    """Normalise a tag column: lower-case, first of ``a;b`` multi-values, NaN -> ''."""
    s = series.astype("string").fillna("").str.strip().str.lower()
    return s.str.split(";").str[0].str.strip().astype(object)


def walk_mask(ways: pd.DataFrame) -> np.ndarray:
    """Which ways are walkable under the pedestrian rules of this module.

    Parameters
    ----------
    ways : pandas.DataFrame
        One row per way (or way segment) with tag columns; missing columns count as
        absent tags. Read: ``highway``, ``foot``, ``access``, ``area``, ``sidewalk``.

    Returns
    -------
    numpy.ndarray
        Boolean mask, True where the way may be walked.
    """
    col = {
        k: _first_value(ways[k]) if k in ways else pd.Series("", index=ways.index)
        for k in WALK_TAG_KEYS
    }
    hw, foot, access = col["highway"], col["foot"], col["access"]
    foot_ok = foot.isin(FOOT_ALLOWED)
    ok = hw.isin(WALK_HIGHWAYS) | (hw.isin(FOOT_ONLY_HIGHWAYS) & foot_ok)
    ok |= hw.isin(SIDEWALK_HIGHWAYS) & col["sidewalk"].isin(SIDEWALK_PRESENT)
    ok &= col["area"] != "yes"
    ok &= foot != "no"
    ok &= ~(access.isin(CLOSED_ACCESS) & ~foot.isin(FOOT_OVERRIDES_ACCESS))
    return ok.to_numpy(dtype=bool)


def oneway_foot_direction(ways: pd.DataFrame) -> np.ndarray:
    """Walking direction of each way from ``oneway:foot``.

    Returns
    -------
    numpy.ndarray
        int8: 0 both ways, 1 only along the way, -1 only against it. The plain
        ``oneway`` tag (for vehicles) is ignored.
    """
    if "oneway:foot" not in ways:
        return np.zeros(len(ways), dtype=np.int8)
    s = _first_value(ways["oneway:foot"])
    out = np.zeros(len(ways), dtype=np.int8)
    out[s.isin({"yes", "true", "1"}).to_numpy()] = 1
    out[(s == "-1").to_numpy()] = -1
    return out


# --------------------------------------------------------------------------- entering areas

#: ``barrier=*`` values of a node a walker passes through (a gate in a fence or wall;
#: OSM wiki Tag:barrier=gate, Tag:barrier=entrance, Key:barrier).
ENTRANCE_BARRIERS = frozenset(
    {
        "gate",
        "entrance",
        "kissing_gate",
        "turnstile",
        "full-height_turnstile",
        "swing_gate",
        "lift_gate",
        "stile",
        "wicket_gate",
        "hampshire_gate",
        "bump_gate",
    }
)
#: ``entrance=*`` values that are no way in: an exit-only door, an emergency exit (OSM
#: wiki Key:entrance).
NOT_ENTRANCES = frozenset({"exit", "emergency", "no"})
#: ``barrier=*`` values that close an area to walkers except at its gates, tagged on the
#: area itself or mapped as ways along its outline (OSM wiki Tag:barrier=fence,
#: Tag:barrier=wall, Tag:barrier=hedge, Tag:barrier=city_wall).
FENCE_BARRIERS = frozenset({"fence", "wall", "hedge", "city_wall"})
#: Areas a walker may enter from every side unless fenced or private: ``key -> values``
#: (OSM wiki Tag:leisure=park, Tag:leisure=pitch, Tag:place=square, ...).
OPEN_AREAS: Mapping[str, frozenset[str]] = {
    "leisure": frozenset(
        {
            "park",
            "garden",
            "pitch",
            "playground",
            "fitness_station",
            "track",
            "common",
            "recreation_ground",
            "dog_park",
            "nature_reserve",
        }
    ),
    "place": frozenset({"square"}),
    "landuse": frozenset({"recreation_ground", "village_green", "grass"}),
    "highway": frozenset({"pedestrian"}),
    "amenity": frozenset({"marketplace"}),
}
#: OSM tag keys of nodes that the entrance rules read.
ENTRANCE_TAG_KEYS = ("entrance", "barrier", "access", "foot", "locked")
#: OSM tag keys of areas that the enclosure rules read.
AREA_TAG_KEYS = ("barrier", "access", "foot", "building", *OPEN_AREAS)

#: How an area facility is entered (:func:`area_enclosure`).
ENCLOSURE_OPEN = "open"
ENCLOSURE_FENCED = "fenced"
ENCLOSURE_CLOSED = "closed"


def _closed_to_walkers(col: Mapping[str, pd.Series]) -> pd.Series:
    foot, access = col["foot"], col["access"]
    private = access.isin(CLOSED_ACCESS) & ~foot.isin(FOOT_OVERRIDES_ACCESS)
    return private | foot.isin(CLOSED_ACCESS)


def entrance_mask(nodes: pd.DataFrame) -> np.ndarray:
    """Which OSM nodes are ways into an area for a walker.

    An ``entrance=*`` node (except ``exit``, ``emergency``, ``no``) or a passable barrier
    (:data:`ENTRANCE_BARRIERS`: ``barrier=gate``, ``entrance``, ``kissing_gate``...),
    unless ``access=private|no`` (without ``foot=yes|designated``), ``foot=no|private``
    or ``locked=yes``.

    Parameters
    ----------
    nodes : pandas.DataFrame
        One row per node with tag columns (:data:`ENTRANCE_TAG_KEYS`; missing columns
        count as absent tags).

    Returns
    -------
    numpy.ndarray
        Boolean mask, True where the node is a way in.
    """
    col = _tag_columns(nodes, ENTRANCE_TAG_KEYS)
    door = (col["entrance"] != "") & ~col["entrance"].isin(NOT_ENTRANCES)
    ok = door | col["barrier"].isin(ENTRANCE_BARRIERS)
    ok &= ~_closed_to_walkers(col) & (col["locked"] != "yes")
    return ok.to_numpy(dtype=bool)


def area_enclosure(areas: pd.DataFrame) -> np.ndarray:
    """How a walker enters each area: ``"open"``, ``"fenced"`` or ``"closed"``.

    ``fenced``: tagged ``barrier=fence|wall|hedge|city_wall`` (entered only through its
    gates, when it has any). ``open``: a park, garden, pitch, playground, square,
    pedestrian area... (:data:`OPEN_AREAS`) that is not a building (``building=*``) and
    not private (``access=private|no`` without ``foot=yes|designated``, or
    ``foot=no|private``): entered wherever the walking network meets its outline.
    ``closed``: anything else (buildings, school and hospital grounds, private areas):
    entered at its mapped entrances and where walkable ways cross into it.

    Parameters
    ----------
    areas : pandas.DataFrame
        One row per area with tag columns (:data:`AREA_TAG_KEYS`; missing columns count
        as absent tags).

    Returns
    -------
    numpy.ndarray
        Object array of ``"open"``, ``"fenced"`` or ``"closed"``.
    """
    col = _tag_columns(areas, AREA_TAG_KEYS)
    kind = pd.Series(False, index=areas.index)
    for key, values in OPEN_AREAS.items():
        kind |= col[key].isin(values)
    building = (col["building"] != "") & (col["building"] != "no")
    out = np.full(len(areas), ENCLOSURE_CLOSED, dtype=object)
    out[(kind & ~building & ~_closed_to_walkers(col)).to_numpy()] = ENCLOSURE_OPEN
    out[col["barrier"].isin(FENCE_BARRIERS).to_numpy()] = ENCLOSURE_FENCED
    return out


CYCLE_HIGHWAYS = frozenset(
    {
        "cycleway",
        "residential",
        "living_street",
        "service",
        "track",
        "unclassified",
        "road",
        "tertiary",
        "tertiary_link",
        "secondary",
        "secondary_link",
        "primary",
        "primary_link",
    }
)
BICYCLE_IF_ALLOWED_HIGHWAYS = frozenset({"path", "footway", "pedestrian", "bridleway", "trail"})
BICYCLE_IF_EXPLICIT_HIGHWAYS = frozenset({"motorway", "motorway_link", "trunk", "trunk_link"})
BICYCLE_ALLOWED = frozenset({"yes", "designated", "permissive"})
BICYCLE_EXPLICIT = frozenset({"yes", "designated"})
BICYCLE_FORBIDDEN = frozenset({"no", "use_sidepath", "dismount"})
ONEWAY_YES = frozenset({"yes", "1", "true"})
CYCLEWAY_OPPOSITE = frozenset({"opposite", "opposite_lane", "opposite_track"})

#: OSM tag keys that the cycling rules read.
BIKE_TAG_KEYS = (
    "highway",
    "bicycle",
    "access",
    "area",
    "oneway",
    "oneway:bicycle",
    "junction",
    "cycleway",
)

#: Tag keys read per network mode (``"walk"`` or ``"bike"``).
MODE_TAG_KEYS = {"walk": WALK_TAG_KEYS, "bike": BIKE_TAG_KEYS}


def _tag_columns(ways: pd.DataFrame, keys: tuple[str, ...]) -> dict[str, pd.Series]:
    return {
        k: _first_value(ways[k]) if k in ways else pd.Series("", index=ways.index, dtype=object)
        for k in keys
    }


def cycle_mask(ways: pd.DataFrame) -> np.ndarray:
    """Which ways may be cycled under the cycling rules of this module.

    Parameters
    ----------
    ways : pandas.DataFrame
        One row per way (or way segment) with tag columns; missing columns count as
        absent tags. Read: ``highway``, ``bicycle``, ``access``, ``area``.

    Returns
    -------
    numpy.ndarray
        Boolean mask, True where the way may be cycled.
    """
    col = _tag_columns(ways, BIKE_TAG_KEYS)
    hw, bike, access = col["highway"], col["bicycle"], col["access"]
    ok = hw.isin(CYCLE_HIGHWAYS)
    ok |= hw.isin(BICYCLE_IF_ALLOWED_HIGHWAYS) & bike.isin(BICYCLE_ALLOWED)
    ok |= hw.isin(BICYCLE_IF_EXPLICIT_HIGHWAYS) & bike.isin(BICYCLE_EXPLICIT)
    ok &= col["area"] != "yes"
    ok &= ~bike.isin(BICYCLE_FORBIDDEN)
    ok &= ~(access.isin(CLOSED_ACCESS) & ~bike.isin(BICYCLE_EXPLICIT))
    return ok.to_numpy(dtype=bool)


def oneway_bicycle_direction(ways: pd.DataFrame) -> np.ndarray:
    """Cycling direction of each way from ``oneway``, ``junction`` and their bicycle
    exceptions (see the module docstring).

    Parameters
    ----------
    ways : pandas.DataFrame
        Tag columns ``oneway``, ``oneway:bicycle``, ``junction``, ``cycleway`` (missing
        columns count as absent tags).

    Returns
    -------
    numpy.ndarray
        int8: 0 both ways, 1 only along the way, -1 only against it.
    """
    col = _tag_columns(ways, BIKE_TAG_KEYS)
    oneway, ob = col["oneway"], col["oneway:bicycle"]
    d = np.zeros(len(ways), dtype=np.int8)
    d[oneway.isin(ONEWAY_YES).to_numpy()] = 1
    d[(oneway == "-1").to_numpy()] = -1
    roundabout = (col["junction"] == "roundabout") & ~oneway.isin({"no", "-1"})
    d[roundabout.to_numpy()] = 1
    contraflow = (ob == "no") | col["cycleway"].isin(CYCLEWAY_OPPOSITE)
    d[contraflow.to_numpy()] = 0
    d[ob.isin(ONEWAY_YES).to_numpy()] = 1
    d[(ob == "-1").to_numpy()] = -1
    return d


def utm_crs(lon: np.ndarray, lat: np.ndarray) -> CRS:
    """The UTM zone CRS (metres) that contains the median of the given points."""
    lon0 = float(np.median(lon))
    lat0 = float(np.median(lat))
    zone = int((lon0 + 180.0) // 6.0) % 60 + 1
    epsg = (32600 if lat0 >= 0 else 32700) + zone
    return CRS.from_epsg(epsg)


@dataclass(frozen=True, eq=False)
class WalkNetwork:
    """A walking network as compact arrays.

    Attributes
    ----------
    node_id : numpy.ndarray
        int64 OSM node ids; vertices added when splitting curved edges get negative ids.
    lon, lat : numpy.ndarray
        WGS84 coordinates in degrees.
    x, y : numpy.ndarray
        Coordinates in metres in :attr:`crs` (a UTM zone chosen automatically).
    crs : str
        The metric CRS of ``x``/``y``, e.g. ``"EPSG:32632"``.
    u, v : numpy.ndarray
        int64 positions (into the node arrays) of each straight edge's ends.
    length_m : numpy.ndarray
        Geodesic length of each edge in metres (WGS84 ellipsoid).
    direction : numpy.ndarray
        int8: 0 walkable both ways, 1 only from ``u`` to ``v`` (``oneway:foot``).
    highway : numpy.ndarray
        The ``highway`` tag of each edge (object array of str).
    way_id : numpy.ndarray
        int64 id of the OSM way (or GraphML edge) each edge came from.
    source : str
        Where the network came from (file path or description).
    report : dict
        What was dropped while building it (counts of nodes/edges, reasons).
    dropped_segments : numpy.ndarray
        ``(k, 4)`` lon/lat of the ends of walkable segments left out because they lie
        on small disconnected pieces; facility snapping uses them to report
        facilities that sat on such pieces.
    """

    node_id: np.ndarray
    lon: np.ndarray
    lat: np.ndarray
    x: np.ndarray
    y: np.ndarray
    crs: str
    u: np.ndarray
    v: np.ndarray
    length_m: np.ndarray
    direction: np.ndarray
    highway: np.ndarray
    way_id: np.ndarray
    source: str = ""
    report: Mapping[str, Any] = field(default_factory=dict)
    dropped_segments: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))

    @property
    def n_nodes(self) -> int:
        """Number of nodes."""
        return int(self.node_id.shape[0])

    @property
    def n_edges(self) -> int:
        """Number of (undirected or one-way) straight edges."""
        return int(self.u.shape[0])

    def node_weight_m(self) -> np.ndarray:
        """Street length each node stands for: half the length of its incident edges (m)."""
        w = np.zeros(self.n_nodes)
        np.add.at(w, self.u, self.length_m / 2.0)
        np.add.at(w, self.v, self.length_m / 2.0)
        return w

    def edge_seconds(self, speed_m_s: float) -> np.ndarray:
        """Flat walking time of each edge in seconds at ``speed_m_s`` (m/s)."""
        if not speed_m_s > 0:
            raise ValueError(f"speed_m_s must be positive, got {speed_m_s!r}")
        return self.length_m / float(speed_m_s)

    def directed_arcs(
        self, edge_cost: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Walkable arcs ``(tail, head, cost)``: both directions unless one-way.

        Parameters
        ----------
        edge_cost : numpy.ndarray, optional
            Cost of each edge (default: ``length_m``). A two-column array gives a
            different cost for the forward (u->v) and backward (v->u) direction.
        """
        cost = self.length_m if edge_cost is None else np.asarray(edge_cost, dtype=float)
        fwd_cost, bwd_cost = (cost[:, 0], cost[:, 1]) if cost.ndim == 2 else (cost, cost)
        fwd = self.direction >= 0
        bwd = self.direction <= 0
        tail = np.concatenate([self.u[fwd], self.v[bwd]])
        head = np.concatenate([self.v[fwd], self.u[bwd]])
        c = np.concatenate([fwd_cost[fwd], bwd_cost[bwd]])
        return tail, head, c

    def to_networkx(self) -> nx.MultiDiGraph:
        """The network as an osmnx-compatible ``networkx.MultiDiGraph``.

        Nodes keep their OSM ids and carry ``x`` (lon) and ``y`` (lat); edges carry
        ``length`` (m), ``highway`` and ``osmid``; the graph's ``crs`` is EPSG:4326, so
        osmnx functions (``ox.plot_graph``, ``ox.save_graphml``) accept it.
        """
        import networkx as nx

        g: nx.MultiDiGraph = nx.MultiDiGraph(
            crs="epsg:4326", name=self.source or "circles walk network"
        )
        ids = self.node_id.tolist()
        g.add_nodes_from(
            (n, {"x": float(x), "y": float(y)})
            for n, x, y in zip(ids, self.lon.tolist(), self.lat.tolist(), strict=True)
        )
        tail, head, _ = self.directed_arcs()
        fwd = self.direction >= 0
        bwd = self.direction <= 0
        eidx = np.concatenate([np.flatnonzero(fwd), np.flatnonzero(bwd)])
        g.add_edges_from(
            (
                ids[t],
                ids[h],
                {
                    "length": float(self.length_m[e]),
                    "highway": str(self.highway[e]),
                    "osmid": int(self.way_id[e]),
                    "oneway": bool(self.direction[e] != 0),
                },
            )
            for t, h, e in zip(tail.tolist(), head.tolist(), eidx.tolist(), strict=True)
        )
        return g

    def nodes_frame(self) -> pd.DataFrame:
        """Nodes as a DataFrame (``node_id``, ``lon``, ``lat``, ``x``, ``y``)."""
        return pd.DataFrame(
            {"node_id": self.node_id, "lon": self.lon, "lat": self.lat, "x": self.x, "y": self.y}
        )


def build_network(
    node_id: np.ndarray,
    lon: np.ndarray,
    lat: np.ndarray,
    seg_u: np.ndarray,
    seg_v: np.ndarray,
    *,
    highway: np.ndarray | None = None,
    way_id: np.ndarray | None = None,
    direction: np.ndarray | None = None,
    keep_largest: bool = True,
    source: str = "",
    report: Mapping[str, Any] | None = None,
) -> WalkNetwork:
    """Build a :class:`WalkNetwork` from node coordinates and straight segments.

    Segments whose end nodes are missing from ``node_id`` (clipped extracts) are trimmed,
    zero-length segments and self-loops dropped, parallel segments between the same two
    nodes reduced to the shortest, and, with ``keep_largest``, only the largest
    (weakly) connected component kept. What was dropped is recorded in ``report``.

    Parameters
    ----------
    node_id : numpy.ndarray
        int64 node ids.
    lon, lat : numpy.ndarray
        WGS84 degrees of each node.
    seg_u, seg_v : numpy.ndarray
        Node *ids* at the ends of each segment.
    highway, way_id, direction : numpy.ndarray, optional
        Per-segment ``highway`` tag, source way id, and walking direction (see
        :func:`oneway_foot_direction`).
    keep_largest : bool, default True
        Keep only the largest connected component.
    source : str
        Description of the data source, kept on the result.
    report : mapping, optional
        Counts from earlier stages, merged into the result's report.

    Returns
    -------
    WalkNetwork
    """
    rep: dict[str, Any] = dict(report or {})
    node_id = np.asarray(node_id, dtype=np.int64)
    lon = np.asarray(lon, dtype=float)
    lat = np.asarray(lat, dtype=float)
    seg_u = np.asarray(seg_u, dtype=np.int64)
    seg_v = np.asarray(seg_v, dtype=np.int64)
    n_seg = seg_u.shape[0]
    highway = np.asarray(highway, dtype=object) if highway is not None else np.full(n_seg, "")
    way_id = np.asarray(way_id, dtype=np.int64) if way_id is not None else np.zeros(n_seg, np.int64)
    direction = (
        np.asarray(direction, dtype=np.int8) if direction is not None else np.zeros(n_seg, np.int8)
    )

    finite = np.isfinite(lon) & np.isfinite(lat)
    node_id, lon, lat = node_id[finite], lon[finite], lat[finite]
    order = np.argsort(node_id, kind="stable")
    node_id, lon, lat = node_id[order], lon[order], lat[order]
    uniq = np.concatenate([[True], node_id[1:] != node_id[:-1]]) if node_id.size else node_id
    node_id, lon, lat = node_id[uniq], lon[uniq], lat[uniq]

    def locate(ids: np.ndarray) -> np.ndarray:
        pos = np.searchsorted(node_id, ids)
        pos = np.clip(pos, 0, max(node_id.size - 1, 0))
        found = node_id.size > 0
        ok = (node_id[pos] == ids) if found else np.zeros(ids.shape, bool)
        return np.where(ok, pos, -1)

    iu, iv = locate(seg_u), locate(seg_v)
    present = (iu >= 0) & (iv >= 0)
    rep["segments_outside_extract"] = int((~present).sum())
    keep = present & (iu != iv)
    iu, iv = iu[keep], iv[keep]
    highway, way_id, direction = highway[keep], way_id[keep], direction[keep]
    if iu.size == 0:
        raise NetworkError(
            f"no walkable ways with both ends inside the data ({source or 'network'}); "
            "check the file covers a built-up area and is not empty"
        )
    _, _, length = GEOD.inv(lon[iu], lat[iu], lon[iv], lat[iv])
    length = np.abs(np.asarray(length, dtype=float))
    nonzero = length > 0
    rep["zero_length_segments"] = int((~nonzero).sum())
    if not nonzero.all():
        # merge the two ends of a zero-length segment (same coordinates): point v to u
        alias = np.arange(node_id.size)
        zu, zv = iu[~nonzero], iv[~nonzero]
        g0 = sp.coo_matrix((np.ones(zu.size), (zu, zv)), shape=(node_id.size,) * 2)
        _, lab = connected_components(g0, directed=False)
        first = np.full(lab.max() + 1, -1)
        for i in range(node_id.size - 1, -1, -1):  # smallest index per label
            first[lab[i]] = i
        alias = first[lab]
        iu, iv = alias[iu[nonzero]], alias[iv[nonzero]]
        highway, way_id = highway[nonzero], way_id[nonzero]
        direction, length = direction[nonzero], length[nonzero]
        keep = iu != iv
        iu, iv, highway, way_id, direction, length = (
            a[keep] for a in (iu, iv, highway, way_id, direction, length)
        )

    # canonical orientation, then reduce parallel segments to the shortest
    flip = (iu > iv) & (direction == 0)
    a = np.where(flip, iv, iu)
    b = np.where(flip, iu, iv)
    rev = direction == -1
    a = np.where(rev, iv, a)
    b = np.where(rev, iu, b)
    direction = np.where(rev, 1, direction).astype(np.int8)
    df = pd.DataFrame({"a": a, "b": b, "d": direction, "len": length, "i": np.arange(a.size)})
    df = df.sort_values(["a", "b", "d", "len"], kind="stable")
    dup = df.duplicated(["a", "b", "d"], keep="first")
    rep["parallel_segments_merged"] = int(dup.sum())
    sel = df.loc[~dup, "i"].to_numpy()
    a, b, direction, length = a[sel], b[sel], direction[sel], length[sel]
    highway, way_id = highway[sel], way_id[sel]

    # drop isolated nodes (not on any walkable segment) and small components
    used = np.zeros(node_id.size, bool)
    used[a] = True
    used[b] = True
    n_all = int(used.sum())
    keep_nodes = used.copy()
    if keep_largest:
        g = sp.coo_matrix((np.ones(a.size), (a, b)), shape=(node_id.size,) * 2)
        n_comp, lab = connected_components(g, directed=True, connection="weak")
        sizes = np.bincount(lab[used], minlength=n_comp)
        big = int(np.argmax(sizes))
        keep_nodes &= lab == big
        rep["components"] = int((sizes > 0).sum())
    rep["nodes_in_small_components"] = int(n_all - keep_nodes.sum())
    new_pos = np.cumsum(keep_nodes) - 1
    emask = keep_nodes[a] & keep_nodes[b]
    rep["edges_in_small_components"] = int((~emask).sum())
    da, db = a[~emask], b[~emask]
    dropped = np.column_stack([lon[da], lat[da], lon[db], lat[db]])
    rep["street_length_in_small_components_m"] = float(length[~emask].sum())
    a, b = new_pos[a[emask]], new_pos[b[emask]]
    direction, length = direction[emask], length[emask]
    highway, way_id = highway[emask], way_id[emask]
    node_id, lon, lat = node_id[keep_nodes], lon[keep_nodes], lat[keep_nodes]

    kept_m = float(length.sum())
    rep["street_share_in_small_components"] = round(dropped_street_share(rep, kept_m), 4)
    text = dropped_street_warning(rep, kept_m)
    if text is not None:
        rep["small_components_warning"] = text
        logger.warning("walk network %s: %s", source, text)
    crs = utm_crs(lon, lat)
    x, y = Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(lon, lat)
    net = WalkNetwork(
        node_id=node_id,
        lon=lon,
        lat=lat,
        x=np.asarray(x, float),
        y=np.asarray(y, float),
        crs=crs.to_string(),
        u=a.astype(np.int64),
        v=b.astype(np.int64),
        length_m=length,
        direction=direction,
        highway=highway,
        way_id=way_id,
        source=source,
        report=rep,
        dropped_segments=dropped,
    )
    logger.info(
        "walk network %s: %d nodes, %d edges (%d nodes in small components dropped)",
        source,
        net.n_nodes,
        net.n_edges,
        rep["nodes_in_small_components"],
    )
    return net


def from_networkx(
    graph: nx.MultiDiGraph | nx.Graph, *, keep_largest: bool = True, source: str = ""
) -> WalkNetwork:
    """Build a :class:`WalkNetwork` from an osmnx graph (unprojected, EPSG:4326).

    Curved edges (osmnx ``geometry`` attribute) are split at their vertices; reverse
    twins (``u->v`` and ``v->u`` of a two-way street) collapse into one two-way edge,
    and an edge without a twin is one-way (as osmnx only writes one direction for
    one-way ways; walking graphs from osmnx have both).

    Parameters
    ----------
    graph : networkx.MultiDiGraph
        Nodes with ``x``/``y`` in degrees; edges optionally with ``geometry``
        (shapely LineString or WKT), ``highway`` and ``osmid``.
    keep_largest : bool, default True
        Keep only the largest connected component.
    source : str
        Description kept on the result.
    """
    crs = str(graph.graph.get("crs", "epsg:4326")).lower()
    if crs not in {"epsg:4326", "wgs84", "+init=epsg:4326"} and "4326" not in crs:
        raise NetworkError(
            f"graph CRS is {crs!r}; circles needs an unprojected osmnx graph (EPSG:4326). "
            "Use ox.project_graph(G, to_latlong=True) first"
        )
    from shapely import wkt
    from shapely.geometry.base import BaseGeometry

    ids = np.fromiter((int(n) for n in graph.nodes), dtype=np.int64, count=len(graph))
    xs = np.fromiter((float(d["x"]) for _, d in graph.nodes(data=True)), float, len(graph))
    ys = np.fromiter((float(d["y"]) for _, d in graph.nodes(data=True)), float, len(graph))
    next_id = -1
    ex_lon: list[float] = []
    ex_lat: list[float] = []
    ex_id: list[int] = []
    seg_u: list[int] = []
    seg_v: list[int] = []
    seg_hw: list[str] = []
    seg_way: list[int] = []
    seg_dir: list[int] = []
    # (min id, max id, length) -> (first segment, number of segments, tail id) of an edge
    # not yet matched with its reverse twin
    pending: dict[tuple[int, int, float], tuple[int, int, int]] = {}
    directed = graph.is_directed()
    for k, (u, v, d) in enumerate(graph.edges(data=True)):
        u, v = int(u), int(v)
        geom = d.get("geometry")
        if isinstance(geom, str):
            geom = wkt.loads(geom)
        coords = list(geom.coords) if isinstance(geom, BaseGeometry) else []
        key = (min(u, v), max(u, v), round(float(d.get("length", 0.0)), 2))
        twin = pending.get(key)
        if directed and twin is not None and twin[2] == v and u != v:
            first, count, _ = twin
            del pending[key]
            for j in range(first, first + count):
                seg_dir[j] = 0
            continue
        hw = d.get("highway", "")
        hw = str(hw[0] if isinstance(hw, list) else hw)
        osmid = d.get("osmid", k)
        osmid = int(osmid[0] if isinstance(osmid, list) else osmid)
        chain = [u]
        if len(coords) > 2:
            for cx, cy in coords[1:-1]:
                ex_id.append(next_id)
                ex_lon.append(cx)
                ex_lat.append(cy)
                chain.append(next_id)
                next_id -= 1
        chain.append(v)
        pending[key] = (len(seg_u), len(chain) - 1, u)
        for p, q in itertools.pairwise(chain):
            seg_u.append(p)
            seg_v.append(q)
            seg_hw.append(hw)
            seg_way.append(osmid)
            seg_dir.append(1 if directed else 0)
    return build_network(
        np.concatenate([ids, np.asarray(ex_id, np.int64)]),
        np.concatenate([xs, np.asarray(ex_lon, float)]),
        np.concatenate([ys, np.asarray(ex_lat, float)]),
        np.asarray(seg_u, np.int64),
        np.asarray(seg_v, np.int64),
        highway=np.asarray(seg_hw, dtype=object),
        way_id=np.asarray(seg_way, np.int64),
        direction=np.asarray(seg_dir, np.int8),
        keep_largest=keep_largest,
        source=source,
    )
