"""The communities stage: OSM boundaries, boundary files, hexagons and service zones.

Every community table has ``community_id``, ``name`` and ``derived`` (what the polygons
are: an OSM boundary, a boundary file, hexagons, or service zones derived from centre
points) and valid polygon geometry in EPSG:4326. :func:`study_communities` reads them
once per input and keeps them in the study's cache.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from circles import coords, io, zones
from circles._errors import DataFileError, InputDataError
from circles.areas import ACROSS_BORDER, Area, communities_in_area
from circles.cache import FRAME, Keyed
from circles.config import CommunitiesSection, WalkSection, resolve_path
from circles.coverage import hexagon_communities, smallest_containing
from circles.facilities import LAT_NAMES, LON_NAMES
from circles.facility_files import plain_numbers
from circles.network import WalkNetwork
from circles.result import RunContext
from circles.settings import MAX_SNAP_M, WALK_SPEEDS_M_S, WGS84

logger = logging.getLogger(__name__)

#: Sources of communities that are not files.
BUILT_IN_SOURCES = ("osm", "hexagons", "zones")


def load_communities(
    section: CommunitiesSection,
    network: WalkNetwork,
    source: str,
    *,
    base_dir: str = ".",
    speed_m_s: float = WALK_SPEEDS_M_S["adult"],
    max_snap_m: float = MAX_SNAP_M,
) -> gpd.GeoDataFrame:
    """Community polygons with ``community_id``, ``name``, ``derived`` (EPSG:4326).

    Parameters
    ----------
    section : CommunitiesSection
        ``[communities]``: OSM boundaries, hexagons, a boundary file or service zones.
    network : WalkNetwork
        The walking network (hexagons cover it; zones are drawn on it).
    source : str
        The OSM file (for OSM boundaries).
    base_dir : str
        Folder that relative paths of ``section`` are resolved against.
    speed_m_s, max_snap_m : float
        Walking speed (m/s) and snapping distance (m) of service zones.
    """
    c = section
    if c.source == "hexagons":
        return hexagon_communities(network, width_m=c.hex_width_m)
    if c.source == "zones":
        return zone_communities(
            c, network, base_dir=base_dir, speed_m_s=speed_m_s, max_snap_m=max_snap_m
        )
    left_out: list[dict[str, Any]] = []
    if c.source == "osm":
        b = io.read_osm_boundaries(source, admin_level=c.admin_level)
        left_out += list(b.attrs.get(io.BOUNDARIES_SKIPPED, []))
        if b.empty:
            raise InputDataError(
                f"{source}: no administrative boundaries at admin_level={c.admin_level}; set "
                '[communities] source to a boundary file or to "hexagons"'
            )
        if c.parent is not None:
            allb = io.read_osm_boundaries(source, admin_level=None)
            par = allb[allb["name"] == c.parent]
            if par.empty:
                raise InputDataError(
                    f"{source}: no administrative boundary named {c.parent!r} "
                    "(communities.parent); names found: "
                    f"{sorted(set(allb['name'].dropna().astype(str)))[:30]}"
                )
            inside = shapely.within(
                b.geometry.representative_point().to_numpy(),
                shapely.union_all(par.geometry.to_numpy()),
            )
            dropped = b.loc[~inside, "name"].tolist()
            if dropped:
                logger.warning(
                    "communities outside %r left out: %s", c.parent, ", ".join(map(str, dropped))
                )
            left_out += [
                {"osm_id": int(i), "name": str(n), "reason": f"outside {c.parent}"}
                for i, n in zip(b.loc[~inside, "osm_id"], b.loc[~inside, "name"], strict=True)
            ]
            b = b[inside]
        out = gpd.GeoDataFrame(
            {
                "community_id": "r" + b["osm_id"].astype(str),
                "name": b["name"].astype(str),
                "derived": f"OSM boundary admin_level={c.admin_level}",
            },
            geometry=b.geometry.to_numpy(),
            crs=WGS84,
        )
    else:
        path = resolve_path(c.source, base_dir)
        assert path is not None
        try:
            raw = gpd.read_file(path)
        except Exception as exc:
            raise DataFileError(f"{path}: cannot read communities ({exc})") from exc
        if raw.empty:
            raise InputDataError(
                f"{path}: has no features (communities); give a file (or layer) with "
                'the community polygons, or set [communities] source = "hexagons"'
            )
        if raw.crs is None:
            raise InputDataError(f"{path}: communities file has no CRS")
        check_polygons(raw, path)
        for col in (c.id_column, c.name_column):
            if col not in raw:
                raise InputDataError(
                    f"{path}: no column {col!r}; columns are {list(raw.columns)} (set "
                    "communities.id_column / name_column)"
                )
        ids = raw[c.id_column].astype(str)
        if ids.duplicated().any():
            raise InputDataError(
                f"{path}: duplicate community ids {sorted(set(ids[ids.duplicated()]))[:5]}"
            )
        out = gpd.GeoDataFrame(
            {
                "community_id": ids.to_numpy(),
                "name": raw[c.name_column].astype(str).to_numpy(),
                "derived": "boundary file",
            },
            geometry=raw.geometry.to_numpy(),
            crs=raw.crs,
        ).to_crs(WGS84)
        if c.coord_system != "wgs84":
            out = coords.geometry_to_wgs84(out, c.coord_system)
        for extra in (c.population_column, c.households_column, c.elderly_share_column):
            if extra is not None:
                if extra not in raw:
                    raise InputDataError(f"{path}: no column {extra!r}")
                out[extra] = numeric_column(raw[extra], path)
        for extra in c.attribute_columns:
            if extra not in raw:
                raise InputDataError(
                    f"{path}: no column {extra!r} (communities.attribute_columns); columns "
                    f"are {list(raw.columns)}"
                )
            numeric = extra in NUMERIC_ATTRIBUTES
            out[extra] = numeric_column(raw[extra], path) if numeric else raw[extra].to_numpy()
    if c.exclude:
        gone = out["name"].isin(c.exclude) | out["community_id"].isin(c.exclude)
        left_out += [
            {"community_id": str(i), "name": str(n), "reason": "communities.exclude"}
            for i, n in zip(out.loc[gone, "community_id"], out.loc[gone, "name"], strict=True)
        ]
        out = out[~gone]
    bad = ~out.geometry.is_valid
    if bad.any():
        out.loc[bad, "geometry"] = shapely.make_valid(out.geometry[bad].to_numpy())
    out = out.reset_index(drop=True)
    out.attrs[LEFT_OUT] = left_out
    return out


#: Attribute columns that the plan indicators read as numbers (the numeric part of
#: :data:`circles.report.COMMUNITY_COLUMNS`, which is built from this): read as numbers
#: like ``population_column`` (the others are copied as they are).
NUMERIC_ATTRIBUTES = (
    "households",
    "population",
    "service_area_m2",
    "activity_area_m2",
    "community_workers",
)


def numeric_column(cells: pd.Series, path: str | Path, *, shown: int = 5) -> np.ndarray:
    """A communities file's column of numbers (population, households, shares).

    Thousands separators and full-width digits are read as a spreadsheet writes them
    (:func:`circles.facility_files.plain_numbers`: ``12,345``, ``１２，３４５``); an
    empty cell stays missing (NaN: no residents known there).

    Parameters
    ----------
    cells : pandas.Series
        The column as read.
    path : str or Path
        The file, for the message.
    shown : int
        How many bad cells the message lists.

    Raises
    ------
    InputDataError
        Some cells are neither empty nor numbers: naming the column, how many, and the
        first ``shown`` (1-based row and value).
    """
    if pd.api.types.is_numeric_dtype(cells):
        return pd.to_numeric(cells).to_numpy()
    values, bad = plain_numbers(cells)
    if bad.any():
        rows = np.flatnonzero(bad.to_numpy())
        first = ", ".join(f"row {i + 1}: {cells.iloc[i]!r}" for i in rows[:shown])
        more = f" and {rows.size - shown} more" if rows.size > shown else ""
        raise InputDataError(
            f"{path}: column {cells.name!r} must hold numbers; {rows.size} of {len(cells)} "
            f"cells are not numbers ({first}{more}); fix them or leave them empty (unknown)"
        )
    return values.to_numpy(float)


def check_polygons(frame: gpd.GeoDataFrame, path: str | Path) -> None:
    """Raise unless every row of a communities file is a polygon.

    Points or lines give communities no area: no node would fall in them and every
    share would be NaN. Centre points belong in ``source = "zones"`` (service zones
    drawn on the walking network around each centre, :mod:`circles.zones`).

    Raises
    ------
    InputDataError
        Naming the file, how many rows are not polygons (by geometry type) and, for
        points, how to use them as the centres of service zones.
    """
    kinds = frame.geometry.geom_type.fillna("no geometry").astype(str)
    kinds = kinds.where(~frame.geometry.is_empty.fillna(False).to_numpy(), "empty")
    bad = ~kinds.isin(["Polygon", "MultiPolygon"])
    if not bad.any():
        return
    by_kind = ", ".join(f"{k}: {n}" for k, n in kinds[bad].value_counts().items())
    points = kinds[bad].isin(["Point", "MultiPoint"]).any()
    hint = (
        "; if these are community centres (e.g. the 居委会/村委会 offices), set "
        f'[communities] source = "zones" and centres = "{path}": service zones are then '
        "drawn on the walking network around each centre (every node joins the centre "
        "it reaches soonest on foot)"
        if points
        else '; give community boundary polygons, or set [communities] source = "zones" '
        '(service zones around centre points) or "hexagons"'
    )
    raise InputDataError(
        f"{path}: {int(bad.sum())} of {len(frame)} communities are not polygons "
        f"({by_kind}); communities must be areas{hint}"
    )


#: ``attrs`` key of a communities table: boundaries of the source that are not
#: communities (incomplete in the extract, outside ``parent``, excluded), with a reason.
LEFT_OUT = "communities_left_out"

#: ``attrs`` key of a communities table: its overlapping pairs
#: (:func:`community_overlaps`), set by :func:`study_communities`.
OVERLAPS = "communities_overlaps"

#: Two communities overlap when their intersection is larger than this (m²) ...
OVERLAP_MIN_M2 = 1.0
#: ... and than this share (0-1) of the smaller one (slivers of redrawn borders are not
#: overlaps).
OVERLAP_MIN_SHARE = 0.001

#: How a node inside overlapping communities is assigned (see
#: :func:`circles.coverage.assign_nodes`).
OVERLAP_RULE = "smallest containing polygon wins"


def community_overlaps(
    communities: gpd.GeoDataFrame,
    *,
    crs: str | None = None,
    min_m2: float = OVERLAP_MIN_M2,
    min_share: float = OVERLAP_MIN_SHARE,
) -> list[dict[str, Any]]:
    """Pairs of communities whose polygons overlap (more than borders touching).

    Parameters
    ----------
    communities : geopandas.GeoDataFrame
        With ``community_id``, ``name`` and a CRS.
    crs : str, optional
        Metric CRS the areas are measured in (default: the communities' UTM zone).
    min_m2, min_share : float
        A pair counts when its intersection exceeds ``min_m2`` square metres and
        ``min_share`` of the smaller polygon's area.

    Returns
    -------
    list of dict
        Largest overlap first: ``a`` and ``b`` (community ids), ``a_name``, ``b_name``,
        ``overlap_m2``, ``share_of_smaller`` (0-1) and ``smaller`` (the id of the
        smaller polygon, which gets the nodes in the overlap).
    """
    if len(communities) < 2:
        return []
    if communities.crs is None:
        raise InputDataError("communities have no CRS")
    metric = communities.to_crs(crs if crs is not None else communities.estimate_utm_crs())
    polys = np.asarray(metric.geometry.to_numpy())
    i, j = shapely.STRtree(polys).query(polys, predicate="intersects")
    keep = i < j
    i, j = i[keep], j[keep]
    if i.size == 0:
        return []
    inter = shapely.area(shapely.intersection(polys[i], polys[j]))
    area = shapely.area(polys)
    smaller = np.minimum(area[i], area[j])
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(smaller > 0, inter / smaller, 0.0)
    hit = (inter > min_m2) & (share > min_share)
    ids = communities["community_id"].astype(str).to_numpy()
    names = communities["name"].astype(str).to_numpy()
    out = [
        {
            "a": str(ids[a]),
            "b": str(ids[b]),
            "a_name": str(names[a]),
            "b_name": str(names[b]),
            "overlap_m2": round(float(m2), 1),
            "share_of_smaller": round(float(sh), 4),
            "smaller": str(ids[a] if area[a] <= area[b] else ids[b]),
        }
        for a, b, m2, sh in zip(i[hit], j[hit], inter[hit], share[hit], strict=True)
    ]
    return sorted(out, key=lambda d: -d["overlap_m2"])


def overlap_warning(overlaps: list[dict[str, Any]], *, shown: int = 5) -> str:
    """The warning of :func:`community_overlaps`' pairs: how many, the first ``shown``
    with their overlap in m², and the rule that assigns the nodes in the overlap."""
    pairs = "; ".join(
        f"{d['a_name']} ({d['a']}) / {d['b_name']} ({d['b']}) {d['overlap_m2']:,.0f} m²"
        for d in overlaps[:shown]
    )
    more = f" and {len(overlaps) - shown} more" if len(overlaps) > shown else ""
    return (
        f"{len(overlaps)} pair(s) of community polygons overlap: {pairs}{more}; each node "
        f"is counted in one community only ({OVERLAP_RULE}), so a community drawn inside "
        "another keeps its residents and the larger one counts only the rest"
    )


def network_report(
    network: WalkNetwork, communities: gpd.GeoDataFrame, node_community: np.ndarray
) -> list[dict[str, Any]]:
    """Per community: its nodes and street length, and the street length dropped as
    small disconnected pieces of the network inside it (what no resident there reaches).

    Parameters
    ----------
    network : WalkNetwork
        With ``dropped_segments`` (lon/lat of the ends of the segments left out).
    communities : geopandas.GeoDataFrame
        With ``community_id`` and ``name``.
    node_community : numpy.ndarray
        Community position of each node (-1: outside every community).

    Returns
    -------
    list of dict
        One per community, then one for ``community_id`` None (outside every
        community): ``community_id``, ``name``, ``nodes``, ``street_km`` (kept),
        ``dropped_street_km`` (in small pieces) and ``dropped_share`` (of the two).
    """
    from circles.network import GEOD

    k = len(communities)
    pos = np.where(node_community >= 0, node_community, k)
    nodes = np.bincount(pos, minlength=k + 1)
    kept = np.bincount(pos, weights=network.node_weight_m(), minlength=k + 1) / 1000.0
    dropped = np.zeros(k + 1)
    d = network.dropped_segments
    if len(d) and k:
        _, _, length = GEOD.inv(d[:, 0], d[:, 1], d[:, 2], d[:, 3])
        mid = shapely.points((d[:, 0] + d[:, 2]) / 2.0, (d[:, 1] + d[:, 3]) / 2.0)
        polys = np.asarray(communities.to_crs(WGS84).geometry.to_numpy())
        area = shapely.area(np.asarray(communities.to_crs(network.crs).geometry.to_numpy()))
        where = smallest_containing(mid, polys, area)  # as nodes: the smallest wins
        where[where < 0] = k
        dropped = np.bincount(where, weights=np.abs(length), minlength=k + 1) / 1000.0
    elif len(d):
        _, _, length = GEOD.inv(d[:, 0], d[:, 1], d[:, 2], d[:, 3])
        dropped[k] = float(np.abs(length).sum()) / 1000.0
    ids = [*communities["community_id"].astype(str).tolist(), None]
    names = [*communities["name"].astype(str).tolist(), None]
    out = []
    for i in range(k + 1):
        total = kept[i] + dropped[i]
        out.append(
            {
                "community_id": ids[i],
                "name": names[i],
                "nodes": int(nodes[i]),
                "street_km": round(float(kept[i]), 3),
                "dropped_street_km": round(float(dropped[i]), 3),
                "dropped_share": round(float(dropped[i] / total), 4) if total > 0 else 0.0,
            }
        )
    return out


def read_points(
    path: str, *, id_column: str, name_column: str | None, coord_system: str
) -> gpd.GeoDataFrame:
    """Points with ids and names from a CSV/XLSX (lon/lat columns) or a point file.

    Parameters
    ----------
    path : str
        CSV/XLSX with lon/lat (or 经度/纬度) columns, or a point file with a CRS.
    id_column, name_column : str
        Columns of the ids (unique) and names.
    coord_system : {"wgs84", "gcj02", "bd09"}
        Datum of the coordinates (converted to WGS84).
    """
    p = Path(path)
    if not p.is_file():
        raise DataFileError(f"{p}: file not found")
    if p.suffix.lower() in {".csv", ".txt", ".xlsx", ".xls"}:
        df = (
            pd.read_excel(p, dtype=str)
            if p.suffix.lower().startswith(".xls")
            else pd.read_csv(p, dtype=str, encoding="utf-8-sig")
        )
        if df.empty:
            raise InputDataError(f"{p}: has a header but no rows (community centres)")
        lon = next((col for col in df.columns if str(col).strip().lower() in LON_NAMES), None)
        lat = next((col for col in df.columns if str(col).strip().lower() in LAT_NAMES), None)
        if lon is None or lat is None:
            raise InputDataError(f"{p}: needs lon/lat (or 经度/纬度) columns")
        x = pd.to_numeric(df[lon], errors="coerce")
        y = pd.to_numeric(df[lat], errors="coerce")
        bad = x.isna() | y.isna()
        if bad.any():
            raise InputDataError(
                f"{p}: rows {list(np.flatnonzero(bad.to_numpy()) + 1)[:10]} have missing or "
                "non-numeric coordinates"
            )
        pts = gpd.GeoDataFrame(df, geometry=gpd.points_from_xy(x, y), crs=WGS84)
    else:
        pts = gpd.read_file(p)
        if pts.empty:
            raise InputDataError(f"{p}: has no features (community centres)")
        if pts.crs is None:
            raise InputDataError(f"{p}: point file has no CRS")
        pts = pts.to_crs(WGS84)
    for col in (id_column, name_column):
        if col is not None and col not in pts:
            raise InputDataError(f"{p}: no column {col!r}; columns are {list(pts.columns)}")
    if pts[id_column].astype(str).duplicated().any():
        raise InputDataError(f"{p}: duplicate ids in column {id_column!r}")
    if coord_system != "wgs84":
        pts = coords.geometry_to_wgs84(pts, coord_system)
    return pts


def zone_communities(
    section: CommunitiesSection,
    network: WalkNetwork,
    *,
    base_dir: str,
    speed_m_s: float,
    max_snap_m: float,
) -> gpd.GeoDataFrame:
    """Communities derived as network service zones of centre points.

    Parameters
    ----------
    section : CommunitiesSection
        ``centres`` (and optionally ``boundary``) with their columns and datums.
    network : WalkNetwork
    base_dir : str
        Folder that relative paths are resolved against.
    speed_m_s, max_snap_m : float
        Walking speed in m/s; metres within which a centre joins the network.
    """
    c = section
    centres = read_points(
        resolve_path(c.centres, base_dir) or "",
        id_column=c.id_column,
        name_column=c.name_column,
        coord_system=c.coord_system,
    )
    boundary = None
    if c.boundary is not None:
        b = gpd.read_file(resolve_path(c.boundary, base_dir) or "")
        if b.crs is None:
            raise InputDataError(f"{c.boundary}: boundary file has no CRS")
        b = b.to_crs(WGS84)
        if c.boundary_coord_system != "wgs84":
            b = coords.geometry_to_wgs84(b, c.boundary_coord_system)
        boundary = shapely.union_all(b.geometry.to_numpy())
    got = zones.service_zones(
        network,
        centres,
        id_column=c.id_column,
        name_column=c.name_column,
        boundary=boundary,
        speed_m_s=speed_m_s,
        max_snap_m=max_snap_m,
    )
    out = got.zones
    out = out[~out.geometry.is_empty].reset_index(drop=True)
    for extra in c.attribute_columns:
        if extra not in centres:
            raise InputDataError(f"{c.centres}: no column {extra!r}")
        by_id = dict(zip(centres[c.id_column].astype(str), centres[extra], strict=True))
        out[extra] = out["community_id"].astype(str).map(by_id).to_numpy()
    return out


def read_centres(path: str | None, communities: gpd.GeoDataFrame) -> gpd.GeoSeries | None:
    """Community centre points (a file with ``community_id`` and lon/lat) aligned with
    ``communities`` (None if ``path`` is None)."""
    if path is None:
        return None
    pts = read_points(path, id_column="community_id", name_column=None, coord_system="wgs84")
    by_id = dict(zip(pts["community_id"].astype(str), pts.geometry, strict=True))
    return gpd.GeoSeries([by_id.get(c) for c in communities["community_id"]], crs=WGS84)


def study_communities(
    section: CommunitiesSection,
    network: Keyed[WalkNetwork],
    source: str,
    walk: WalkSection,
    area: Area | None,
    ctx: RunContext,
) -> Keyed[gpd.GeoDataFrame]:
    """The communities stage: :func:`load_communities`, inside the area, cached.

    Parameters
    ----------
    section : CommunitiesSection
        ``[communities]``.
    network : Keyed
        The (area's) walking network and its key.
    source : str
        The network's OSM file (OSM boundaries are read from it).
    walk : WalkSection
        ``[walk]`` (service zones are drawn at its speed and snapping distance).
    area : Area, optional
        The selected area: communities outside its boundary are left out.
    ctx : RunContext
    """
    ctx.stage("communities")
    base_dir = ctx.base_dir
    boundary = area.boundary if area is not None else None
    area_doc = area.doc if area is not None else None
    c = section
    src_sha = ctx.inputs.sha("network_source", source)
    files: str | list[str] | None = None
    if c.source not in BUILT_IN_SOURCES:
        files = ctx.inputs.sha("communities", resolve_path(c.source, base_dir) or c.source)
    elif c.source == "zones":
        files = [
            ctx.inputs.sha(f"communities_{k}", resolve_path(v, base_dir) or v)
            for k, v in (("centres", c.centres), ("boundary", c.boundary))
            if v is not None
        ]
    ctx.say("reading communities")

    # hexagons are laid over the source's whole network: one grid for every area
    whole = area.whole if area is not None else None
    laid = whole if whole is not None and c.source == "hexagons" else network

    def compute() -> gpd.GeoDataFrame:
        out = load_communities(
            c,
            laid.value,
            source,
            base_dir=base_dir,
            speed_m_s=walk.resolved_speed_m_s,
            max_snap_m=walk.max_snap_m,
        )
        return communities_in_area(out, boundary)

    got = ctx.store.memo(
        "communities",
        [
            network.key,
            laid.key,
            src_sha,
            asdict(c),
            files,
            area_doc,
            asdict(walk) if c.source == "zones" else None,  # zones depend on walking
            LEFT_OUT,  # entries cached before attrs[LEFT_OUT] existed lack it
            ACROSS_BORDER,  # ... and attrs[ACROSS_BORDER] (points on a border were left out)
        ],
        compute,
        codec=FRAME,
    )
    comm = got.value
    overlaps = community_overlaps(comm, crs=network.value.crs)
    comm.attrs[OVERLAPS] = overlaps
    if overlaps:
        logger.warning("%s", overlap_warning(overlaps))
    derived = comm["derived"].iloc[0] if len(comm) else "-"
    ctx.say(f"communities: {len(comm)} ({derived})")
    return got
