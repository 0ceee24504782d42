"""Facilities: OSM features by category, planner facility files, snapping to the network.

Planner files (CSV, XLSX, GeoJSON, GeoPackage, Shapefile) are how a civil-affairs
bureau's list of elderly canteens enters, since OSM rarely maps them. Every row either
becomes a facility or lands in the rejects table with its reason; nothing is dropped
silently. A file that cannot be read at all is a :class:`~circles._errors.DataFileError`
naming the file and the problem.

Snapping (:func:`snap`): a facility joins the network at the nearest point of the nearest
edge (not merely the nearest node); the straight access walk from the facility to that
point is walked at the same speed. A facility farther than ``max_snap_m`` from every
walkable edge is ``unreachable`` rather than snapped across a river or a motorway.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from circles import categories as cat_mod
from circles import datum, io
from circles._errors import ConfigError, InputDataError
from circles.cache import ARRAYS, FRAMES, Cache, Keyed, digest
from circles.config import FacilitiesSection, FacilityFile, WalkSection
from circles.facility_files import FileRead as FileRead
from circles.facility_files import read_facility_file as read_facility_file
from circles.facility_files import read_planner_file
from circles.facility_files import read_table as read_table
from circles.network import AREA_TAG_KEYS, WalkNetwork, area_enclosure
from circles.result import RunContext, normalise_rejects
from circles.settings import MAX_SNAP_M, WGS84

logger = logging.getLogger(__name__)

#: Column names recognised as longitude / latitude in a communities' centres table
#: (planner facility files: :data:`circles.facility_files.HEADERS`).
LON_NAMES = ("lon", "lng", "long", "longitude", "x_wgs84", "经度", "东经")
LAT_NAMES = ("lat", "latitude", "y_wgs84", "纬度", "北纬")

#: Columns of the facilities table (besides geometry).
FACILITY_COLUMNS = (
    "facility_id",
    "category",
    "name",
    "source",
    "status",
    "snap_m",
    "edge",
    "frac",
    "near_island",
)

#: Columns an area facility adds: its footprint (WKB, EPSG:4326; None for a point), how
#: it is entered (:func:`circles.network.area_enclosure`; None for planner-file rows,
#: whose tags are unknown) and whether its outline was cut by the extract's edge.
AREA_COLUMNS = ("footprint_wkb", "enclosure", "outline")


#: Status of a facility after snapping.
STATUS_SNAPPED = "snapped"
STATUS_UNREACHABLE = "unreachable"
STATUS_ISLAND = "island"

_TREES: weakref.WeakKeyDictionary[WalkNetwork, Any] = weakref.WeakKeyDictionary()


# --------------------------------------------------------------------------- reading


def osm_facilities(
    features: gpd.GeoDataFrame, matches: pd.DataFrame, *, source: str
) -> gpd.GeoDataFrame:
    """Facilities from classified OSM features (one row per feature and category).

    Parameters
    ----------
    features : geopandas.GeoDataFrame
        From :func:`circles.io.read_osm_features`.
    matches : pandas.DataFrame
        From :func:`circles.categories.classify` (``feature_index``, ``category``).
    source : str
        Recorded in the ``source`` column.

    Returns
    -------
    geopandas.GeoDataFrame
        ``facility_id``, ``category``, ``name``, ``source``, ``enclosure`` (how an area
        is entered: :func:`circles.network.area_enclosure`) and ``outline``
        (``"cut"`` when the extract's edge cut the feature's way), with the features'
        geometry.
    """
    if matches.empty:
        return empty_facilities()
    f = features.loc[matches["feature_index"].to_numpy()]
    osm_type = f["osm_type"].astype(str) if "osm_type" in f else pd.Series("n", index=f.index)
    ids = osm_type.str[0].to_numpy().astype(object) + f["osm_id"].astype(str).to_numpy()
    names = f["name"].to_numpy() if "name" in f else None
    outline = f["outline"].astype(object).to_numpy() if "outline" in f else None
    return gpd.GeoDataFrame(
        {
            "facility_id": ids.astype(str),
            "category": matches["category"].to_numpy(),
            "name": names,
            "source": source,
            "enclosure": area_enclosure(_area_tags(f)),
            "outline": outline,
        },
        geometry=f.geometry.to_numpy(),
        crs=WGS84,
    ).reset_index(drop=True)


def _area_tags(features: pd.DataFrame) -> pd.DataFrame:
    """The tags the enclosure rules read, from the features' columns or ``tags`` dicts."""
    tags = features["tags"] if "tags" in features else pd.Series([{}] * len(features))
    cols = {}
    for key in AREA_TAG_KEYS:
        from_dict = [t.get(key) if isinstance(t, dict) else None for t in tags]
        if key in features:
            own = features[key].astype(object).to_numpy()
            cols[key] = [
                o if isinstance(o, str) else d for o, d in zip(own, from_dict, strict=True)
            ]
        else:
            cols[key] = from_dict
    return pd.DataFrame(cols, index=features.index)


def empty_facilities() -> gpd.GeoDataFrame:
    """An empty facilities table with the standard columns."""
    return gpd.GeoDataFrame(
        {"facility_id": [], "category": [], "name": [], "source": []},
        geometry=gpd.GeoSeries([], crs=WGS84),
        crs=WGS84,
    )


# --------------------------------------------------------------------------- snapping


def edge_lines(network: WalkNetwork) -> np.ndarray:
    """Straight edges as shapely LineStrings in the network's metric CRS."""
    xy = np.stack(
        [
            np.column_stack([network.x[network.u], network.y[network.u]]),
            np.column_stack([network.x[network.v], network.y[network.v]]),
        ],
        axis=1,
    )
    return shapely.linestrings(xy)


def _dropped_lines(network: WalkNetwork) -> np.ndarray:
    """Segments of the small pieces left out of the network, in its metric CRS."""
    from pyproj import Transformer

    tr = Transformer.from_crs(WGS84, network.crs, always_xy=True)
    d = network.dropped_segments
    x0, y0 = tr.transform(d[:, 0], d[:, 1])
    x1, y1 = tr.transform(d[:, 2], d[:, 3])
    return shapely.linestrings(
        np.stack([np.column_stack([x0, y0]), np.column_stack([x1, y1])], axis=1)
    )


def _trees(network: WalkNetwork) -> tuple[np.ndarray, shapely.STRtree, shapely.STRtree | None]:
    got = _TREES.get(network)
    if got is None:
        lines = edge_lines(network)
        dropped = None
        if len(network.dropped_segments):
            dropped = shapely.STRtree(_dropped_lines(network))
        got = (lines, shapely.STRtree(lines), dropped)
        _TREES[network] = got
    return got


def edge_index(network: WalkNetwork) -> tuple[np.ndarray, shapely.STRtree]:
    """The network's straight edges (metric CRS) and a spatial index of them (built once
    per network and kept while the network lives)."""
    lines, tree, _ = _trees(network)
    return lines, tree


#: Up to this many facilities, snapping indexes only the edges near them instead of
#: building (and caching) an index of the whole network: an update that adds a few
#: facilities in a fresh process then costs milliseconds, not a full index build.
LOCAL_SNAP_MAX = 64


def _edge_index(
    network: WalkNetwork, g: np.ndarray, max_snap_m: float
) -> tuple[np.ndarray, shapely.STRtree, np.ndarray | None, shapely.STRtree | None]:
    """(lines, tree, global edge ids or None, dropped tree) for snapping ``g``.

    Edges whose bounding box cannot come within ``max_snap_m`` of the facilities'
    bounding box are left out; they could never be the nearest within ``max_snap_m``,
    so the result is the same as with the whole network.
    """
    if network in _TREES or g.size > LOCAL_SNAP_MAX:
        lines, tree, dropped = _trees(network)
        return lines, tree, None, dropped
    x0, y0, x1, y1 = shapely.total_bounds(g)
    pad = max_snap_m + 1.0
    xu, xv, yu, yv = (
        network.x[network.u],
        network.x[network.v],
        network.y[network.u],
        network.y[network.v],
    )
    near = (
        (np.minimum(xu, xv) <= x1 + pad)
        & (np.maximum(xu, xv) >= x0 - pad)
        & (np.minimum(yu, yv) <= y1 + pad)
        & (np.maximum(yu, yv) >= y0 - pad)
    )
    ids = np.flatnonzero(near)
    lines = shapely.linestrings(
        np.stack([np.column_stack([xu[ids], yu[ids]]), np.column_stack([xv[ids], yv[ids]])], axis=1)
    )
    dropped = None
    if len(network.dropped_segments):
        dl = _dropped_lines(network)
        b = shapely.bounds(dl)
        keep = (
            (b[:, 0] <= x1 + pad)
            & (b[:, 2] >= x0 - pad)
            & (b[:, 1] <= y1 + pad)
            & (b[:, 3] >= y0 - pad)
        )
        if keep.any():
            dropped = shapely.STRtree(dl[keep])
    return lines, shapely.STRtree(lines), ids, dropped


def snap(
    network: WalkNetwork,
    geometry: gpd.GeoSeries,
    *,
    max_snap_m: float = MAX_SNAP_M,
) -> pd.DataFrame:
    """Snap facilities to the nearest point of the nearest walkable edge.

    Parameters
    ----------
    network : WalkNetwork
    geometry : geopandas.GeoSeries
        Facility geometries (points or areas) with a CRS.
    max_snap_m : float
        Largest straight access distance in metres.

    Returns
    -------
    pandas.DataFrame
        Aligned with ``geometry``: ``edge`` (int, -1 when not snapped), ``frac`` (0-1
        along the edge from ``u``), ``snap_m`` (access distance, m), ``status``
        (``snapped``, ``unreachable`` when farther than ``max_snap_m`` from any walkable
        way, ``island`` when its nearest way lies on a small disconnected piece of the
        network and the main network is beyond ``max_snap_m``), ``near_island``
        (snapped to the main network although a disconnected piece was nearer).
    """
    if geometry.crs is None:
        raise InputDataError("facility geometries have no CRS")
    if not max_snap_m >= 0:
        raise ConfigError(f"max_snap_m must be >= 0, got {max_snap_m!r}")
    n = len(geometry)
    edge = np.full(n, -1, np.int64)
    frac_a = np.full(n, np.nan)
    snap_m = np.full(n, np.nan)
    status = np.full(n, STATUS_UNREACHABLE, dtype=object)
    near_island = np.zeros(n, bool)
    g = np.asarray(geometry.to_crs(network.crs).to_numpy()) if n else np.zeros(0, object)
    gi = np.flatnonzero(~(shapely.is_missing(g) | shapely.is_empty(g)))
    if gi.size:
        lines, tree, ids, dropped = _edge_index(network, g[gi], max_snap_m)
        (qi, li), dist = tree.query_nearest(
            g[gi], max_distance=max_snap_m, return_distance=True, all_matches=True
        )
        ei = li if ids is None else ids[li]
        # ties (an area crossed by several streets is at distance 0 from all of them):
        # take the tied edge nearest the area's representative point, then the lowest
        # edge index, so the choice does not depend on the tree's internal order
        tie = shapely.distance(shapely.point_on_surface(g[gi][qi]), lines[li])
        order = np.lexsort((ei, tie, qi))
        qi, ei, li, dist = qi[order], ei[order], li[order], dist[order]
        _, first = np.unique(qi, return_index=True)
        qi, ei, li, dist = qi[first], ei[first], li[first], dist[first]
        rows = gi[qi]
        on_edge = shapely.get_point(shapely.shortest_line(g[rows], lines[li]), 1)
        frac = shapely.line_locate_point(lines[li], on_edge, normalized=True)
        edge[rows] = ei
        frac_a[rows] = np.clip(frac, 0.0, 1.0)
        snap_m[rows] = dist
        status[rows] = STATUS_SNAPPED
        if dropped is not None:
            lim = np.full(n, max_snap_m)
            lim[rows] = dist
            (dq, _), ddist = dropped.query_nearest(
                g[gi], max_distance=max_snap_m, return_distance=True, all_matches=False
            )
            _, f2 = np.unique(dq, return_index=True)
            drows, ddist = gi[dq[f2]], ddist[f2]
            closer = ddist < lim[drows]
            snapped = status[drows] == STATUS_SNAPPED
            near_island[drows[closer & snapped]] = True
            isl = closer & ~snapped
            status[drows[isl]] = STATUS_ISLAND
            snap_m[drows[isl]] = ddist[isl]
    out = pd.DataFrame(
        {
            "edge": edge,
            "frac": frac_a,
            "snap_m": snap_m,
            "status": status,
            "near_island": near_island,
        },
        index=geometry.index,
    )
    return out


def snap_facilities(
    network: WalkNetwork, facilities: gpd.GeoDataFrame, *, max_snap_m: float = MAX_SNAP_M
) -> gpd.GeoDataFrame:
    """Facilities with snapping columns added (a new frame; the input is unchanged)."""
    s = snap(network, facilities.geometry, max_snap_m=max_snap_m)
    out = facilities.copy()
    for c in s.columns:
        out[c] = s[c].to_numpy()
    return out


def read_planner_files(
    specs: Sequence[FacilityFile],
    *,
    categories: Iterable[str],
    area: shapely.Geometry | None = None,
) -> tuple[gpd.GeoDataFrame, pd.DataFrame, list[dict[str, Any]]]:
    """Read several planner files; ids must be unique across files too.

    Returns
    -------
    tuple
        Facilities, rejects (a repeated id across files with the row it is on) and
        :attr:`FileRead.record` of each file.
    """
    cats = list(categories)
    facs, rejs, rows, records = [], [], [], []
    for spec in specs:
        got = read_planner_file(spec, categories=cats, area=area)
        facs.append(got.facilities)
        rejs.append(got.rejects)
        rows.append(got.rows)
        records.append(got.record)
    fac = pd.concat(facs, ignore_index=True) if facs else empty_facilities()
    fac = gpd.GeoDataFrame(fac, geometry="geometry", crs=WGS84)
    row = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    rej = (
        pd.concat(rejs, ignore_index=True)
        if rejs
        else pd.DataFrame(columns=["source", "row", "facility_id", "reason"])
    )
    dup = fac["facility_id"].duplicated(keep="first")
    if dup.any():
        extra = pd.DataFrame(
            {
                "source": fac.loc[dup, "source"],
                "row": row[dup.to_numpy()],
                "facility_id": fac.loc[dup, "facility_id"],
                "reason": "duplicate id " + fac.loc[dup, "facility_id"].map(repr) + " across files",
            }
        )
        if "name" in fac:
            extra["name"] = fac.loc[dup, "name"]
        rej = pd.concat([rej, extra], ignore_index=True)
        fac = fac.loc[~dup].reset_index(drop=True)
        for rec in records:
            n = int((extra["source"] == rec["source"]).sum())
            if n:
                rec["facilities"] -= n
                rec["rejected"] += n
    return fac, rej, records


def read_facility_files(
    specs: Sequence[FacilityFile],
    *,
    categories: Iterable[str],
    area: shapely.Geometry | None = None,
) -> tuple[gpd.GeoDataFrame, pd.DataFrame]:
    """Read several planner files; ids must be unique across files too
    (:func:`read_planner_files` without the records)."""
    fac, rej, _ = read_planner_files(specs, categories=categories, area=area)
    return fac, rej


def snap_at_points(
    network: WalkNetwork, facilities: gpd.GeoDataFrame, *, max_snap_m: float = MAX_SNAP_M
) -> gpd.GeoDataFrame:
    """Facilities snapped (:func:`snap_facilities`), then kept at one point each.

    Outputs and maps hold one point per facility: areas (a park, a school ground) are
    kept at a point on their surface (``footprint`` says which geometry type the facility
    had, ``footprint_wkb`` keeps the area itself, as WKB in EPSG:4326); snapping used the
    whole area, and :mod:`circles.entries` finds where the area is entered.
    """
    fac = snap_facilities(network, facilities, max_snap_m=max_snap_m)
    fac["footprint"] = fac.geometry.geom_type.to_numpy()
    area = (fac["footprint"] != "Point").to_numpy()
    wkb = np.full(len(fac), None, dtype=object)
    if area.any():
        wkb[area] = shapely.to_wkb(np.asarray(fac.geometry.to_numpy())[area])
    fac["footprint_wkb"] = wkb
    for col in ("enclosure", "outline"):
        if col not in fac:
            fac[col] = None
    fac["geometry"] = fac.geometry.representative_point()
    return fac


# --------------------------------------------------------------------------- the stage


def street_distance(network: WalkNetwork) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """A function giving WGS84 points' distance (m) to the nearest walkable street.

    The distance is to the nearest straight edge of ``network`` (its metric CRS), capped
    at :data:`circles.datum.SEARCH_M`; it is what :func:`circles.datum.datum_fit`
    compares between the readings of a file.
    """
    from pyproj import Transformer

    tr = Transformer.from_crs(WGS84, network.crs, always_xy=True)
    _, tree = edge_index(network)

    def distance(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        x, y = tr.transform(np.asarray(lon, float), np.asarray(lat, float))
        pts = shapely.points(np.asarray(x), np.asarray(y))
        out = np.full(len(pts), datum.SEARCH_M)
        (qi, _), d = tree.query_nearest(
            pts, max_distance=datum.SEARCH_M, return_distance=True, all_matches=False
        )
        out[qi] = d
        return out

    return distance


def datum_fits(
    network: WalkNetwork, facilities: gpd.GeoDataFrame, files: Sequence[FacilityFile]
) -> list[dict[str, Any]]:
    """The datum check's measurements (:func:`circles.datum.datum_fit`) of planner files.

    Parameters
    ----------
    network : WalkNetwork
    facilities : geopandas.GeoDataFrame
        The facilities read (EPSG:4326, one point each), with ``source``.
    files : sequence of FacilityFile
        The planner files, paths as in ``source``.

    Returns
    -------
    list of dict
        :meth:`circles.datum.DatumFit.doc` of each file with enough points in China.
    """
    fits: list[dict[str, Any]] = []
    if not len(files) or not len(facilities):
        return fits
    src = facilities["source"].astype(str).to_numpy()
    lon, lat = facilities.geometry.x.to_numpy(), facilities.geometry.y.to_numpy()
    dist = None
    for spec in files:
        rows = src == str(spec.path)
        if rows.sum() < datum.MIN_POINTS:
            continue
        if dist is None:
            dist = street_distance(network)
        fit = datum.datum_fit(
            lon[rows], lat[rows], spec.coord_system.lower(), dist, source=str(spec.path)
        )
        if fit is not None:
            fits.append(fit.doc())
    return fits


def report_datum(fits: Sequence[dict[str, Any]], *, mode: str) -> None:
    """Warn (or, ``mode="strict"``, stop) for each fit whose file fits another datum better.

    Raises
    ------
    InputDataError
        ``mode="strict"`` and a file's points fit another datum clearly better.
    """
    datum.check_mode(mode)
    for doc in fits:
        datum.report(datum.DatumFit.from_doc(doc), mode=mode)


def reject_reasons(rej: pd.DataFrame, *, most: int = 5) -> str:
    """``row 2: missing coordinates; row 3: ...`` for the first ``most`` rejects."""
    items = [f"row {r['row']}: {r['reason']}" for r in rej.head(most).to_dict("records")]
    more = f"; and {len(rej) - most} more" if len(rej) > most else ""
    return "; ".join(items) + more


def check_used(
    records: Sequence[Mapping[str, Any]], rejects: pd.DataFrame, *, area_run: bool = False
) -> None:
    """Stop when a study's facility file has rows but none of them could be used.

    Parameters
    ----------
    records : sequence of dict
        :attr:`FileRead.record` of each file (``source``, ``rows``, ``facilities``).
    rejects : pandas.DataFrame
        The rejected rows of all files (``source``, ``row``, ``reason``).
    area_run : bool
        The run is one area of a study with ``[[areas]]``: a file whose rows lie in
        other areas (some rejected as ``outside study area``) is not an error there.

    Raises
    ------
    InputDataError
        Naming the first such file, how many rows it has, its commonest reasons (with
        counts) and its first rejected rows.
    """
    for rec in records:
        if not rec.get("rows") or rec.get("facilities", 0) > 0:
            continue
        src = str(rec["source"])
        rej = rejects[rejects["source"].astype(str) == src] if len(rejects) else rejects
        reasons = rej["reason"].astype(str) if len(rej) else pd.Series([], dtype=str)
        if area_run and (reasons == "outside study area").any():
            continue
        counts = ", ".join(f"{n} {why}" for why, n in reasons.value_counts().head(3).items())
        raise InputDataError(
            f"{src}: none of its {rec['rows']} rows can be used ({counts}; "
            f"{reject_reasons(rej)}); fix the file or its [[facilities.files]] entry "
            "(columns, crs, coord_system, category), or remove the entry; nothing was written"
        )


def study_categories(
    profile: Any, wanted: Sequence[str] = ()
) -> tuple[Any, list[str], dict[str, dict[str, str]], list[str]]:
    """The category profile, the categories of the run and their labels.

    Parameters
    ----------
    profile : circles.categories.Profile or str
        The profile, or a built-in profile name or profile TOML file to load.
    wanted : sequence of str
        ``[facilities] categories`` (empty: all of the profile's).

    Returns
    -------
    tuple
        The :class:`circles.categories.Profile`, the category ids in profile order (or
        as listed), ``{id: {"en": ..., "zh": ...}}`` and the ids of the categories for
        the elderly (walked at the elderly speed, weighted by elderly residents).

    Raises
    ------
    ConfigError
        A wanted category is not in the profile.
    """
    if not isinstance(profile, cat_mod.Profile):
        profile = cat_mod.load_profile(profile)
    all_ids = [c.id for c in profile.categories]
    unknown = [c for c in wanted if c not in all_ids]
    if unknown:
        raise ConfigError(f"facilities.categories: unknown {unknown}; profile has {all_ids}")
    categories = list(wanted) if wanted else all_ids
    labels = {c.id: {"en": c.label_en, "zh": c.label_zh} for c in profile.categories}
    elderly = [c.id for c in profile.categories if getattr(c, "elderly", False)]
    return profile, categories, labels, elderly


def profile_keys(profile: Any) -> list[str]:
    """OSM keys a profile's rules look at (plus the usual facility keys)."""
    keys = list(io.DEFAULT_FEATURE_KEYS)
    for cat in profile.categories:
        for rule in cat.rules:
            for k, _ in rule.match:
                if k not in keys and k != "name":
                    keys.append(k)
    return keys


def study_area(network: WalkNetwork) -> Any:
    """Where planner-file facilities are accepted: the network's hull plus 0.01 degrees."""
    return shapely.buffer(
        shapely.convex_hull(shapely.multipoints(np.column_stack([network.lon, network.lat]))),
        0.01,
    )


def study_area_cached(network: Keyed[WalkNetwork], store: Cache) -> Any:
    """:func:`study_area`, kept in the cache (as WKB) for the keyed network."""
    got = store.memo(
        "study_area",
        [network.key],
        lambda: {"wkb": np.frombuffer(shapely.to_wkb(study_area(network.value)), np.uint8)},
        codec=ARRAYS,
    )
    return shapely.from_wkb(np.asarray(got.value["wkb"]).tobytes())


def load_facilities(
    network: WalkNetwork,
    *,
    features: str | None,
    files: Sequence[FacilityFile],
    categories: list[str],
    profile: Any,
    max_snap_m: float = MAX_SNAP_M,
) -> tuple[gpd.GeoDataFrame, pd.DataFrame, dict[str, int]]:
    """OSM facilities (classified by the profile) plus planner files, snapped.

    Parameters
    ----------
    network : WalkNetwork
    features : str, optional
        OSM file (or saved features GeoPackage) to classify; None: planner files only.
    files : sequence of FacilityFile
        Planner files, paths resolved.
    categories : list of str
        Categories of the run (others are left out or rejected).
    profile : circles.categories.Profile
        Rules that classify OSM features.
    max_snap_m : float
        Metres within which a facility joins the network.

    Returns
    -------
    tuple
        Facilities, rejected planner rows, and counts for the summary.
    """
    fac, rej, counts, _ = _load_facilities(
        network,
        features=features,
        files=files,
        categories=categories,
        profile=profile,
        max_snap_m=max_snap_m,
    )
    return fac, rej, counts


def _load_facilities(
    network: WalkNetwork,
    *,
    features: str | None,
    files: Sequence[FacilityFile],
    categories: list[str],
    profile: Any,
    max_snap_m: float = MAX_SNAP_M,
) -> tuple[gpd.GeoDataFrame, pd.DataFrame, dict[str, int], list[dict[str, Any]]]:
    """:func:`load_facilities`, with the record of each planner file read."""
    counts: dict[str, int] = {}
    parts = []
    if features is not None:
        feats = io.read_osm_features(features, keys=profile_keys(profile))
        matches = cat_mod.classify(feats, profile)
        matches = matches[matches["category"].isin(categories)]
        osm = osm_facilities(feats, matches, source=f"osm:{Path(features).name}")
        counts["osm_features_read"] = len(feats)
        counts["osm_facilities"] = len(osm)
        parts.append(osm)
    planner, rejects, records = read_planner_files(
        files, categories=categories, area=study_area(network)
    )
    counts["planner_facilities"] = len(planner)
    counts["planner_rejected"] = len(rejects)
    parts.append(planner)
    fac = pd.concat(parts, ignore_index=True) if parts else empty_facilities()
    fac = gpd.GeoDataFrame(fac, geometry="geometry", crs=WGS84)
    return snap_at_points(network, fac, max_snap_m=max_snap_m), rejects, counts, records


def spec_doc(spec: FacilityFile, sha256: str) -> dict[str, Any]:
    """A facility file's settings and content hash, as cache key material."""
    return {**asdict(spec), "path": str(spec.path), "sha256": sha256}


def study_facilities(
    section: FacilitiesSection,
    network: Keyed[WalkNetwork],
    source: str,
    features: str | None,
    profile: Any,
    categories: list[str],
    walk: WalkSection,
    ctx: RunContext,
    *,
    area_run: bool = False,
) -> Keyed[dict[str, Any]]:
    """The facilities stage: :func:`load_facilities`, cached.

    A planner file none of whose rows can be used stops the run
    (:func:`check_used`), as ``circles update`` stops on it.

    Parameters
    ----------
    section : FacilitiesSection
        ``[facilities]``: OSM facilities or not, planner files.
    network : Keyed
        The walking network and its key.
    source : str
        The network's file.
    features : str, optional
        The file OSM facilities come from (:func:`circles.sources.feature_source`).
    profile, categories
        As for :func:`load_facilities`.
    walk : WalkSection
        ``[walk]`` (its ``max_snap_m``).
    ctx : RunContext
    area_run : bool
        The run is one area of a study with ``[[areas]]`` (a file whose rows all lie in
        other areas is not an error).

    Returns
    -------
    Keyed
        ``{"facilities": ..., "rejects": ..., "counts": {...}, "datum": [...],
        "files": [...]}`` (``files``: how each planner file was read,
        :attr:`FileRead.record`) and its key.
    """
    ctx.stage("facilities")
    ctx.say("reading and snapping facilities")
    max_snap_m = walk.max_snap_m
    feat_sha = None
    if section.osm and features is not None and Path(features).exists():
        if features == source:
            feat_sha = ctx.inputs.sha("network_source", source)
        else:
            feat_sha = ctx.inputs.sha("osm_features", features)
    use = (
        features if section.osm and features and not features.lower().endswith(".graphml") else None
    )
    graphml = source.lower().endswith(".graphml")
    if use is None and section.osm and section.osm_features is None and graphml:
        logger.warning("%s holds no facilities; only planner files are used", source)
    files = [replace(s, path=ctx.resolve(s.path) or s.path) for s in section.files]
    docs = [spec_doc(s, ctx.inputs.sha(f"facility_file:{s.path}", s.path)) for s in files]

    computed = []

    def compute() -> dict[str, Any]:
        computed.append(True)
        fac, rej, counts, records = _load_facilities(
            network.value,
            features=use,
            files=files,
            categories=categories,
            profile=profile,
            max_snap_m=max_snap_m,
        )
        fits = datum_fits(network.value, fac, files) if section.datum_check != "off" else []
        return {
            "facilities": fac,
            "rejects": normalise_rejects(rej),
            "counts": counts,
            "datum": fits,
            "files": records,
        }

    parts = [
        network.key,
        feat_sha,
        features == source,
        digest("profile", repr(profile)),
        categories,
        docs,
        max_snap_m,
        section.osm,
        section.datum_check == "off",
    ]
    got = ctx.store.memo("facilities", parts, compute, codec=FRAMES)
    check_used(got.value.get("files", []), got.value["rejects"], area_run=area_run)
    if not computed:  # read from the cache: say again what reading the files found
        for rec in got.value.get("files", []):
            for skip in rec.get("skipped_sheets", []):
                logger.warning(
                    "%s: sheet %r %s; skipped", rec["source"], skip["sheet"], skip["reason"]
                )
    report_datum(got.value.get("datum", []), mode=section.datum_check)
    return got
