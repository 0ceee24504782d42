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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from circles import categories as cat_mod
from circles import datum, io
from circles._errors import ConfigError, DataFileError, InputDataError
from circles.cache import ARRAYS, FRAMES, Cache, Keyed, digest
from circles.config import FacilitiesSection, FacilityFile, WalkSection
from circles.network import AREA_TAG_KEYS, WalkNetwork, area_enclosure
from circles.result import RunContext, normalise_rejects
from circles.settings import MAX_SNAP_M, WGS84

logger = logging.getLogger(__name__)

#: Column names recognised as longitude / latitude when none are configured.
LON_NAMES = ("lon", "lng", "long", "longitude", "x_wgs84", "经度")
LAT_NAMES = ("lat", "latitude", "y_wgs84", "纬度")

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


def read_table(spec: FacilityFile) -> pd.DataFrame:
    """The rows of a facility file as it is (CSV/XLSX as text; spatial files with geometry).

    Raises
    ------
    DataFileError
        The file is missing or cannot be read.
    """
    path = Path(spec.path)
    if not path.exists():
        raise DataFileError(f"{path}: facility file not found")
    suffix = path.suffix.lower()
    try:
        if suffix in {".csv", ".txt", ".tsv"}:
            sep = "\t" if suffix == ".tsv" else None
            for enc in ("utf-8-sig", "gb18030"):
                try:
                    return pd.read_csv(
                        path,
                        sep=sep,
                        engine="python",
                        encoding=enc,
                        dtype=str,
                        keep_default_na=False,
                        na_values=[""],
                    )
                except UnicodeDecodeError:
                    continue
            raise DataFileError(f"{path}: not UTF-8 or GB18030 text")
        if suffix in {".xlsx", ".xlsm", ".xls"}:
            return pd.read_excel(path, sheet_name=spec.sheet or 0, dtype=str)
        if suffix in {".geojson", ".json", ".gpkg", ".shp", ".fgb"}:
            gdf = gpd.read_file(path, layer=spec.layer) if spec.layer else gpd.read_file(path)
            return gdf
    except DataFileError:
        raise
    except Exception as exc:
        raise DataFileError(
            f"{path}: cannot read facility file ({type(exc).__name__}: {exc})"
        ) from exc
    raise DataFileError(
        f"{path}: unsupported facility file type {suffix!r}; use CSV, XLSX, GeoJSON, "
        "GeoPackage or Shapefile"
    )


def _pick(
    df: pd.DataFrame, given: str | None, names: Sequence[str], what: str, path: str
) -> str | None:
    if given is not None:
        if given not in df.columns:
            raise InputDataError(
                f"{path}: no column {given!r} for {what}; columns are {list(df.columns)}"
            )
        return given
    lower = {str(c).strip().lower(): c for c in df.columns}
    for n in names:
        if n in lower:
            return str(lower[n])
    return None


def read_facility_file(
    spec: FacilityFile,
    *,
    categories: Iterable[str],
    area: shapely.Geometry | None = None,
    table: pd.DataFrame | None = None,
) -> tuple[gpd.GeoDataFrame, pd.DataFrame]:
    """Read a planner facility file into facilities and rejects.

    Parameters
    ----------
    spec : FacilityFile
        What to read and how.
    categories : iterable of str
        Known category ids; rows with another category are rejected.
    area : shapely geometry, optional
        Study area in EPSG:4326; rows outside it are rejected.
    table : pandas.DataFrame, optional
        The file's rows when already read (as the file readers of this module read
        them), so that the file is not read twice.

    Returns
    -------
    facilities : geopandas.GeoDataFrame
        EPSG:4326 points (or the file's geometries) with ``facility_id``, ``category``,
        ``name``, ``source``.
    rejects : pandas.DataFrame
        ``source``, ``row`` (1-based data row), ``facility_id``, ``reason`` and the
        original columns.
    """
    known = set(categories)
    raw = read_table(spec) if table is None else table
    src = str(spec.path)
    df = pd.DataFrame(raw.drop(columns="geometry", errors="ignore")).reset_index(drop=True)
    reason = np.full(len(df), "", dtype=object)  # the first reason found for each row

    def reject(mask: pd.Series | np.ndarray, why: str | pd.Series) -> None:
        m = np.asarray(mask, bool) & (reason == "")
        if isinstance(why, pd.Series):
            reason[m] = why.to_numpy(dtype=object)[m]
        else:
            reason[m] = why

    # geometry
    if isinstance(raw, gpd.GeoDataFrame) and "geometry" in raw:
        if raw.crs is None:
            raw = raw.set_crs(spec.crs)
        geom = raw.geometry.to_crs(WGS84).reset_index(drop=True)
        reject(geom.isna() | geom.is_empty, "missing geometry")
        lon = pd.Series(np.nan, index=df.index)
        lat = pd.Series(np.nan, index=df.index)
        ok = ~(geom.isna() | geom.is_empty)
        rp = geom[ok].representative_point()
        lon[ok], lat[ok] = rp.x, rp.y
        geoms = geom.to_numpy()
    else:
        if spec.x_column or spec.y_column:
            xc = _pick(df, spec.x_column, (), "x", src)
            yc = _pick(df, spec.y_column, (), "y", src)
            crs = spec.crs
        else:
            xc = _pick(df, spec.lon_column, LON_NAMES, "longitude", src)
            yc = _pick(df, spec.lat_column, LAT_NAMES, "latitude", src)
            crs = WGS84
        if xc is None or yc is None:
            raise InputDataError(
                f"{src}: no coordinate columns found; name them lon/lat (or longitude/"
                "latitude, 经度/纬度) or set lon_column/lat_column or x_column/y_column"
            )
        xs, ys = df[xc].astype("string").str.strip(), df[yc].astype("string").str.strip()
        missing = xs.isna() | ys.isna() | (xs == "") | (ys == "")
        reject(missing, "missing coordinates")
        # plain float64 (NaN, not pd.NA): string columns give nullable Float64 otherwise
        xn = pd.to_numeric(xs, errors="coerce").astype("float64")
        yn = pd.to_numeric(ys, errors="coerce").astype("float64")
        reject(xn.isna() | yn.isna(), "non-numeric coordinates")
        reject(~(np.isfinite(xn) & np.isfinite(yn)), "non-finite coordinates")
        good = np.isfinite(xn) & np.isfinite(yn)
        pts = gpd.GeoSeries(gpd.points_from_xy(xn.where(good, 0), yn.where(good, 0)), crs=crs)
        if crs != WGS84:
            pts = pts.to_crs(WGS84)
        lon, lat = pts.x.where(good), pts.y.where(good)
        reject(good & ((lon.abs() > 180) | (lat.abs() > 90)), "coordinates out of range")
        geoms = np.asarray(pts.to_numpy())
    coord_system = spec.coord_system.lower()
    if coord_system != "wgs84":
        from circles import coords

        geoms = np.asarray(
            coords.geometry_to_wgs84(gpd.GeoSeries(geoms, crs=WGS84), coord_system).to_numpy()
        )

    # category
    if spec.category is not None:
        if spec.category not in known:
            raise ConfigError(
                f"{src}: category {spec.category!r} is not in the profile; known: {sorted(known)}"
            )
        cat = pd.Series(spec.category, index=df.index, dtype=object)
    else:
        if spec.category_column not in df.columns:
            raise InputDataError(
                f"{src}: no {spec.category_column!r} column; add one or set `category` "
                "for the whole file"
            )
        cat = df[spec.category_column].astype("string").str.strip()
        reject(cat.isna() | (cat == ""), "missing category")
        unknown = ~cat.isin(known) & cat.notna()
        reject(unknown, "unknown category " + cat.fillna("").map(repr).astype(object))
        cat = cat.astype(object)

    # ids
    if spec.id_column in df.columns:
        ids = df[spec.id_column].astype("string").str.strip()
        blank = ids.isna() | (ids == "")
        reject(blank, "missing id")
        dup = ids.duplicated(keep="first") & ~blank
        reject(dup, "duplicate id " + ids.fillna("").map(repr).astype(object))
        ids = ids.astype(object)
    else:
        ids = pd.Series([f"{Path(src).stem}:{i + 1}" for i in df.index], dtype=object)
    names = (
        df[spec.name_column].astype(object)
        if spec.name_column in df.columns
        else pd.Series(None, index=df.index, dtype=object)
    )

    if area is not None:
        inside = np.zeros(len(df), bool)
        valid = np.array([g is not None and not shapely.is_empty(g) for g in geoms])
        inside[valid] = shapely.intersects(np.asarray(geoms)[valid], area)
        reject(valid & ~inside & (reason == ""), "outside study area")

    ok = reason == ""
    cols: dict[str, Any] = {
        "facility_id": ids[ok].astype(str).to_numpy(),
        "category": cat[ok].to_numpy(),
        "name": names[ok].to_numpy(),
        "source": src,
    }
    for col in spec.attribute_columns:
        if col in df.columns:
            cols[col] = pd.to_numeric(df.loc[ok, col], errors="coerce").to_numpy(float)
    fac = gpd.GeoDataFrame(cols, geometry=np.asarray(geoms)[ok], crs=WGS84)
    rej = df.loc[~ok].copy()
    rej.insert(0, "reason", reason[~ok])
    rej.insert(0, "facility_id", ids[~ok].to_numpy())
    rej.insert(0, "row", (np.flatnonzero(~ok) + 1))
    rej.insert(0, "source", src)
    if len(rej):
        logger.warning("%s: %d of %d rows rejected", src, len(rej), len(df))
    return fac.reset_index(drop=True), rej.reset_index(drop=True)


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


def read_facility_files(
    specs: Sequence[FacilityFile],
    *,
    categories: Iterable[str],
    area: shapely.Geometry | None = None,
) -> tuple[gpd.GeoDataFrame, pd.DataFrame]:
    """Read several planner files; ids must be unique across files too."""
    cats = list(categories)
    facs, rejs = [], []
    for spec in specs:
        f, r = read_facility_file(spec, categories=cats, area=area)
        facs.append(f)
        rejs.append(r)
    fac = pd.concat(facs, ignore_index=True) if facs else empty_facilities()
    fac = gpd.GeoDataFrame(fac, geometry="geometry", crs=WGS84)
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
                "row": np.nan,
                "facility_id": fac.loc[dup, "facility_id"],
                "reason": "duplicate id " + fac.loc[dup, "facility_id"].map(repr) + " across files",
            }
        )
        rej = pd.concat([rej, extra], ignore_index=True)
        fac = fac.loc[~dup].reset_index(drop=True)
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
    if datum.check_mode(mode) == "off":
        return
    for doc in fits:
        if doc.get("better"):
            fit = datum.DatumFit(
                doc["source"],
                doc["declared"],
                doc["points"],
                doc["median_m"],
                doc["closer_share"],
                doc["better"],
            )
            if mode == "strict":
                raise InputDataError(
                    fit.message() + ' (stopped: [facilities] datum_check = "strict")'
                )
            logger.warning("%s", fit.message())


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
    planner, rejects = read_facility_files(files, categories=categories, area=study_area(network))
    counts["planner_facilities"] = len(planner)
    counts["planner_rejected"] = len(rejects)
    parts.append(planner)
    fac = pd.concat(parts, ignore_index=True) if parts else empty_facilities()
    fac = gpd.GeoDataFrame(fac, geometry="geometry", crs=WGS84)
    return snap_at_points(network, fac, max_snap_m=max_snap_m), rejects, counts


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
) -> Keyed[dict[str, Any]]:
    """The facilities stage: :func:`load_facilities`, cached.

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

    Returns
    -------
    Keyed
        ``{"facilities": ..., "rejects": ..., "counts": {...}}`` and its key.
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

    def compute() -> dict[str, Any]:
        fac, rej, counts = load_facilities(
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
    report_datum(got.value.get("datum", []), mode=section.datum_check)
    return got
