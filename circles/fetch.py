"""Download OpenStreetMap data once with osmnx and save it for offline reuse.

This is the only module of circles that touches the internet. :func:`fetch_osm` geocodes a
place name through Nominatim (or takes a polygon), downloads the walking network and the
community-facility features from Overpass with osmnx, and saves three files in
``raw_dir``:

- ``<name>.graphml``: the walking network (``ox.save_graphml``), with the extra way tags
  that walking rules need (``foot``, ``access``, ``oneway:foot``, ``sidewalk``, ``area``...);
- ``<name>_features.gpkg``: the facility features (geometry, ``osm_type``, ``osm_id`` and
  one text column per OSM tag);
- ``<name>_boundary.geojson``: the polygon the data was downloaded for.

Every later run is offline and reads these files. The files are written only when every
download succeeded, each one atomically (temporary file in ``raw_dir``, then
:func:`os.replace`).

osmnx keeps its configuration in the process-global ``osmnx.settings`` module; this
module changes it only for the duration of one call (under a lock) and restores it
afterwards, also when the download fails.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import shutil
import socket
import tempfile
import threading
import unicodedata
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from hashlib import sha1
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

import geopandas as gpd
import networkx as nx
import osmnx as ox
import pandas as pd
import pyogrio.errors
import requests
from osmnx._errors import InsufficientResponseError, ResponseStatusCodeError
from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry

from circles._errors import ConfigError, DataFileError, FetchError
from circles.settings import WGS84

__all__ = [
    "DEFAULT_FEATURE_TAGS",
    "WALK_WAY_TAGS",
    "FetchResult",
    "default_raw_name",
    "fetch_osm",
]

logger = logging.getLogger(__name__)

#: OSM tag keys of community facilities downloaded by default (every value of each key).
DEFAULT_FEATURE_TAGS: Final[Mapping[str, bool]] = MappingProxyType(
    {
        "amenity": True,
        "leisure": True,
        "shop": True,
        "healthcare": True,
        "emergency": True,
        "social_facility": True,
        "sport": True,
    }
)

#: Way tags added to osmnx's ``useful_tags_way`` so that walking rules (foot access,
#: one-way footways, sidewalks, pedestrian areas, slopes) can be applied offline later.
WALK_WAY_TAGS: Final = (
    "foot",
    "access",
    "oneway",
    "oneway:foot",
    "sidewalk",
    "area",
    "footway",
    "incline",
    "surface",
)

#: osmnx settings changed (and restored) by :func:`fetch_osm`.
_OX_SETTING_NAMES: Final = (
    "overpass_url",
    "nominatim_url",
    "overpass_rate_limit",
    "use_cache",
    "cache_only_mode",
    "requests_timeout",
    "useful_tags_way",
)

#: Columns of the features GeoPackage that are not OSM tags.
_RESERVED_COLUMNS: Final = ("osm_type", "osm_id", "geometry", "fid")

#: Longest file-name stem produced by :func:`default_raw_name`, in characters.
_MAX_NAME_CHARS: Final = 80

_OFFLINE_HINT: Final = (
    "circles downloads OSM data only once: run the fetch on a machine with internet "
    "access (or pass overpass_url=/nominatim_url= of a reachable server), then point the "
    "study at the saved .graphml, _features.gpkg and _boundary.geojson files, which every "
    "later run reads offline."
)

# osmnx settings are process-global: one fetch at a time per process.
_LOCK = threading.Lock()


@dataclass(frozen=True)
class FetchResult:
    """Files written by :func:`fetch_osm` and what they contain.

    Attributes
    ----------
    graphml_path : Path
        Walking network saved with ``osmnx.save_graphml`` (EPSG:4326, simplified).
    features_path : Path
        GeoPackage of the facility features (EPSG:4326).
    boundary_path : Path
        GeoJSON of the polygon the data was downloaded for (EPSG:4326).
    n_nodes : int
        Number of nodes of the saved graph.
    n_edges : int
        Number of directed edges of the saved graph.
    n_features : int
        Number of saved features (rows of the GeoPackage).
    """

    graphml_path: Path
    features_path: Path
    boundary_path: Path
    n_nodes: int
    n_edges: int
    n_features: int


def default_raw_name(place: str) -> str:
    """Turn a place query into a deterministic file-name stem.

    Unicode letters and digits are kept (Chinese names stay Chinese), ASCII letters are
    lower-cased, hyphens are kept, and every run of other characters (spaces, commas
    including the full-width ``，`` and ``、``, slashes, dots, underscores...) becomes a
    single ``_``. Stems longer than
    80 characters are cut and suffixed with a short hash of the full name, so different
    long names stay different.

    Parameters
    ----------
    place : str
        A place query, e.g. ``"红塔区, 玉溪市, 云南省, 中国"`` or ``"Vaduz, Liechtenstein"``.

    Returns
    -------
    str
        The stem, e.g. ``"红塔区_玉溪市_云南省_中国"`` or ``"vaduz_liechtenstein"``.

    Raises
    ------
    ConfigError
        If ``place`` is not a string or has no letter or digit.

    Notes
    -----
    The text is first normalised to Unicode NFKC, so full-width letters and digits
    become their ASCII forms.

    Examples
    --------
    >>> default_raw_name("Vaduz, Liechtenstein")
    'vaduz_liechtenstein'
    >>> default_raw_name("红塔区, 玉溪市, 云南省, 中国")
    '红塔区_玉溪市_云南省_中国'
    """
    if not isinstance(place, str):
        raise ConfigError(f"place must be a string, got {type(place).__name__}")
    text = unicodedata.normalize("NFKC", place).lower()
    stem = re.sub(r"(?:[^\w-]|_)+", "_", text).strip("_-")
    if not stem:
        raise ConfigError(
            f"place {place!r} has no letter or digit to build a file name from; "
            "pass name= explicitly"
        )
    if len(stem) > _MAX_NAME_CHARS:
        digest = sha1(stem.encode("utf-8")).hexdigest()[:10]  # a name suffix, not security
        stem = f"{stem[: _MAX_NAME_CHARS - 11].rstrip('_')}_{digest}"
    return stem


def fetch_osm(
    *,
    place: str | None = None,
    polygon: Polygon | MultiPolygon | None = None,
    name: str,
    raw_dir: str | os.PathLike[str] = "data/raw",
    tags: Mapping[str, bool | str | list[str]] | None = None,
    overpass_url: str | None = None,
    nominatim_url: str | None = None,
    timeout_s: float = 180,
) -> FetchResult:
    """Download the walking network and facilities of an area and save them for offline use.

    Give exactly one of ``place`` (geocoded to a polygon by Nominatim) or ``polygon``.
    The walking network is ``ox.graph_from_polygon(polygon, network_type="walk",
    simplify=True, retain_all=True)`` with :data:`WALK_WAY_TAGS` added to the kept way
    tags; the features are ``ox.features_from_polygon(polygon, tags=tags)``. Nothing is
    written unless every download succeeds; then ``<name>.graphml``,
    ``<name>_features.gpkg`` and ``<name>_boundary.geojson`` are written atomically in
    ``raw_dir`` (replacing earlier files of the same name).

    osmnx's on-disk HTTP cache is not used. With a custom ``overpass_url``, osmnx's
    Overpass rate limiting (a request to ``<overpass_url>/status`` before each query) is
    turned off, as for a private Overpass instance. osmnx's settings are restored on
    return. osmnx itself retries HTTP 429/504 answers after a pause.

    Parameters
    ----------
    place : str, optional
        Nominatim query, e.g. ``"红塔区, 玉溪市, 云南省, 中国"`` or ``"Vaduz, Liechtenstein"``.
        It must geocode to a (Multi)Polygon.
    polygon : shapely.Polygon or shapely.MultiPolygon, optional
        Area in EPSG:4326 (longitude, latitude).
    name : str
        File-name stem of the saved files (see :func:`default_raw_name`); no path
        separators.
    raw_dir : str or os.PathLike, default "data/raw"
        Folder of the saved files; created if missing.
    tags : mapping, optional
        osmnx feature tags (key -> True, a value or a list of values). Defaults to
        :data:`DEFAULT_FEATURE_TAGS`.
    overpass_url : str, optional
        Base URL of the Overpass API (osmnx appends ``/interpreter``). Defaults to osmnx's
        ``settings.overpass_url``.
    nominatim_url : str, optional
        Base URL of the Nominatim API (osmnx appends ``/search``). Defaults to osmnx's
        ``settings.nominatim_url``.
    timeout_s : float, default 180
        HTTP timeout in seconds of each request, also sent to Overpass as its query
        time limit (rounded up to whole seconds, as Overpass requires).

    Returns
    -------
    FetchResult
        Paths of the three files and the node, edge and feature counts.

    Raises
    ------
    ConfigError
        If not exactly one of ``place``/``polygon`` is given or an argument is invalid.
    FetchError
        If a download fails (no connection, HTTP error, unusable answer, place not found).
    DataFileError
        If the files cannot be written to ``raw_dir``.
    """
    if (place is None) == (polygon is None):
        raise ConfigError(
            "give exactly one of place= (a Nominatim query such as 'Vaduz, Liechtenstein') "
            "or polygon= (a shapely Polygon/MultiPolygon in EPSG:4326)"
        )
    if place is not None and (not isinstance(place, str) or not place.strip()):
        raise ConfigError(f"place must be a non-empty string, got {place!r}")
    if polygon is not None:
        _check_polygon(polygon)
    _check_name(name)
    feature_tags = _check_tags(DEFAULT_FEATURE_TAGS if tags is None else tags)
    overpass_url = _check_url(overpass_url, "overpass_url")
    nominatim_url = _check_url(nominatim_url, "nominatim_url")
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, int | float) or timeout_s <= 0:
        raise ConfigError(f"timeout_s must be a positive number of seconds, got {timeout_s!r}")
    out_dir = Path(raw_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"raw_dir {str(out_dir)!r} exists and is not a folder")

    with _osmnx_settings(
        overpass_url=overpass_url, nominatim_url=nominatim_url, timeout_s=math.ceil(timeout_s)
    ):
        if place is not None:
            area = _geocode(place)
        else:
            assert polygon is not None
            area = polygon
        graph = _download(
            "the walking network",
            lambda: ox.graph_from_polygon(
                area, network_type="walk", simplify=True, retain_all=True
            ),
            url=_overpass_endpoint(),
        )
        features = _download_features(area, feature_tags)

    paths = _save(out_dir, name, graph=graph, features=features, boundary=area, place=place)
    result = FetchResult(
        graphml_path=paths[0],
        features_path=paths[1],
        boundary_path=paths[2],
        n_nodes=graph.number_of_nodes(),
        n_edges=graph.number_of_edges(),
        n_features=len(features),
    )
    logger.info(
        "saved %d nodes, %d edges and %d features to %s",
        result.n_nodes,
        result.n_edges,
        result.n_features,
        out_dir,
    )
    return result


# --------------------------------------------------------------------------- validation


def _check_polygon(polygon: object) -> None:
    if not isinstance(polygon, Polygon | MultiPolygon):
        raise ConfigError(
            f"polygon must be a shapely Polygon or MultiPolygon, got {type(polygon).__name__}"
        )
    if not polygon.is_valid:
        raise ConfigError(
            "polygon is not a valid geometry (self-intersecting?); repair it first, "
            "e.g. with shapely.make_valid"
        )
    if polygon.is_empty or polygon.area <= 0:
        raise ConfigError("polygon is empty or has no area")
    west, south, east, north = polygon.bounds
    if not (-180 <= west <= east <= 180 and -90 <= south <= north <= 90):
        raise ConfigError(
            f"polygon bounds {polygon.bounds} are not longitude/latitude: reproject it to "
            f"{WGS84} first (e.g. GeoSeries.to_crs('{WGS84}'))"
        )


def _check_name(name: object) -> None:
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"name must be a non-empty string, got {name!r}")
    bad = {"/", "\\", "\0", os.sep} | ({os.altsep} if os.altsep else set())
    if any(ch in name for ch in bad) or name.startswith(".") or name != name.strip():
        raise ConfigError(
            f"name {name!r} must be a plain file-name stem (no slashes, no leading dot or "
            "surrounding spaces); use circles.fetch.default_raw_name(place)"
        )


def _check_tags(tags: object) -> dict[str, bool | str | list[str]]:
    if not isinstance(tags, Mapping) or not tags:
        raise ConfigError(
            "tags must be a non-empty mapping of OSM keys to True, a value or a list of "
            f"values, e.g. {{'amenity': True}}; got {tags!r}"
        )
    out: dict[str, bool | str | list[str]] = {}
    for key, value in tags.items():
        ok_value = (
            value is True
            or (isinstance(value, str) and value != "")
            or (
                isinstance(value, list | tuple)
                and len(value) > 0
                and all(isinstance(v, str) and v for v in value)
            )
        )
        if not isinstance(key, str) or not key or not ok_value:
            raise ConfigError(
                f"tags[{key!r}] = {value!r}: keys must be OSM tag keys and values True, a "
                "tag value or a list of tag values"
            )
        out[key] = list(value) if isinstance(value, list | tuple) else value
    return out


def _check_url(url: object, what: str) -> str | None:
    if url is None:
        return None
    if not isinstance(url, str) or not re.match(r"^https?://[^/\s]+", url):
        raise ConfigError(f"{what} must be an http(s) URL such as 'http://host/api', got {url!r}")
    return url


# --------------------------------------------------------------------------- download


@contextlib.contextmanager
def _osmnx_settings(
    *, overpass_url: str | None, nominatim_url: str | None, timeout_s: int
) -> Iterator[None]:
    """Point osmnx at the endpoints for one fetch, then restore its settings."""
    with _LOCK:
        saved = {key: getattr(ox.settings, key) for key in _OX_SETTING_NAMES}
        # osmnx's Overpass client replaces socket.getaddrinfo to pin the server's IP.
        saved_getaddrinfo = socket.getaddrinfo
        try:
            if overpass_url is not None:
                ox.settings.overpass_url = overpass_url
                ox.settings.overpass_rate_limit = False
            if nominatim_url is not None:
                ox.settings.nominatim_url = nominatim_url
            ox.settings.use_cache = False
            ox.settings.cache_only_mode = False
            ox.settings.requests_timeout = timeout_s
            ox.settings.useful_tags_way = list(
                dict.fromkeys([*saved["useful_tags_way"], *WALK_WAY_TAGS])
            )
            yield
        finally:
            for key, value in saved.items():
                setattr(ox.settings, key, value)
            socket.getaddrinfo = saved_getaddrinfo


def _overpass_endpoint() -> str:
    return f"{ox.settings.overpass_url.rstrip('/')}/interpreter"


def _download(what: str, call: Any, *, url: str) -> Any:
    """Run one osmnx download, turning its failures into :class:`FetchError`.

    ``url`` is the endpoint named in the error message when the failure does not carry
    the URL of the failed request.
    """
    try:
        return call()
    except requests.exceptions.RequestException as exc:
        request = getattr(exc, "request", None)
        failed = getattr(request, "url", None) or url
        raise FetchError(
            f"could not download {what} from {_short(failed)}: {exc}. {_OFFLINE_HINT}"
        ) from exc
    except (ResponseStatusCodeError, InsufficientResponseError, KeyError) as exc:
        raise FetchError(
            f"could not download {what} from {url}: unusable answer ({exc}). {_OFFLINE_HINT}"
        ) from exc


def _short(url: str) -> str:
    """Drop the query string (a whole Overpass query) from a URL for messages."""
    return url.split("?", 1)[0]


def _geocode(place: str) -> Polygon | MultiPolygon:
    """Geocode ``place`` with Nominatim to its (Multi)Polygon."""
    url = f"{ox.settings.nominatim_url.rstrip('/')}/search"
    try:
        gdf = _download(f"the boundary of {place!r}", lambda: ox.geocode_to_gdf(place), url=url)
    except TypeError as exc:  # osmnx: no (Multi)Polygon among the results
        raise FetchError(
            f"Nominatim at {url} found no area (polygon) for place {place!r}; use a more "
            "specific query (e.g. '红塔区, 玉溪市, 云南省, 中国') or pass polygon= instead"
        ) from exc
    geom = gdf.geometry.iloc[0]
    if not isinstance(geom, Polygon | MultiPolygon) or geom.is_empty:
        raise FetchError(
            f"Nominatim at {url} returned a {geom.geom_type} for place {place!r}, not an "
            "area; use a more specific query or pass polygon= instead"
        )
    logger.info("geocoded %r to a %s with bounds %s", place, geom.geom_type, geom.bounds)
    return geom


def _download_features(
    area: Polygon | MultiPolygon, tags: dict[str, bool | str | list[str]]
) -> gpd.GeoDataFrame:
    """Download the features; an area without any matching feature gives an empty frame."""
    try:
        gdf = _download(
            "the facility features",
            lambda: ox.features_from_polygon(area, tags),
            url=_overpass_endpoint(),
        )
    except FetchError as exc:
        cause = exc.__cause__
        if isinstance(cause, InsufficientResponseError) and "No matching features" in str(cause):
            logger.warning("no OSM feature with tags %s in the area; saving an empty layer", tags)
            return gpd.GeoDataFrame(
                {"osm_type": pd.Series(dtype=str), "osm_id": pd.Series(dtype="int64")},
                geometry=gpd.GeoSeries([], crs=WGS84),
                crs=WGS84,
            )
        raise
    return _features_table(gdf)


def _features_table(gdf: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Make osmnx features storable in a GeoPackage.

    The (element, id) index becomes ``osm_type``/``osm_id`` columns; tag columns whose
    names clash (case-insensitively, as in SQLite) with another column get a ``tag_``
    prefix; list/dict values become JSON text and every other tag value text.
    """
    tag_cols = [c for c in gdf.columns if c != gdf.geometry.name]
    taken = {c.casefold() for c in _RESERVED_COLUMNS}
    renames: dict[str, str] = {}
    for col in tag_cols:
        new = str(col)
        while new.casefold() in taken:
            new = f"tag_{new}"
        taken.add(new.casefold())
        if new != col:
            renames[col] = new
    table = pd.DataFrame(
        {
            "osm_type": gdf.index.get_level_values(0).astype(str),
            "osm_id": gdf.index.get_level_values(1).astype("int64"),
        }
    )
    for col in tag_cols:
        table[renames.get(col, str(col))] = gdf[col].map(_as_text).to_numpy()
    return gpd.GeoDataFrame(table, geometry=gdf.geometry.to_numpy(), crs=WGS84)


def _as_text(value: object) -> str | None:
    if value is None or (isinstance(value, float) and value != value):  # NaN
        return None
    if isinstance(value, list | tuple | dict | set):
        items = sorted(value) if isinstance(value, set) else value
        return json.dumps(items, ensure_ascii=False, default=str)
    return str(value)


# --------------------------------------------------------------------------- save


def _save(
    out_dir: Path,
    name: str,
    *,
    graph: nx.MultiDiGraph,
    features: gpd.GeoDataFrame,
    boundary: BaseGeometry,
    place: str | None,
) -> tuple[Path, Path, Path]:
    """Write the three files into a temporary folder in ``out_dir``, then move them in."""
    final = (
        out_dir / f"{name}.graphml",
        out_dir / f"{name}_features.gpkg",
        out_dir / f"{name}_boundary.geojson",
    )
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        tmp_dir = Path(tempfile.mkdtemp(prefix=f".{name}.fetch-", dir=out_dir))
    except OSError as exc:
        raise DataFileError(f"cannot create or write to raw_dir {str(out_dir)!r}: {exc}") from exc
    try:
        tmp = [tmp_dir / p.name for p in final]
        ox.save_graphml(graph, filepath=tmp[0])
        features.to_file(tmp[1], driver="GPKG", layer="features")
        gpd.GeoDataFrame(
            {"name": [name], "place": [place]}, geometry=[boundary], crs=WGS84
        ).to_file(tmp[2], driver="GeoJSON")
        # the graph last: its presence means the companions are there too
        for src, dst in zip(tmp[::-1], final[::-1], strict=True):
            os.replace(src, dst)
    except (OSError, pyogrio.errors.DataSourceError) as exc:
        raise DataFileError(f"cannot write the downloaded data to {str(out_dir)!r}: {exc}") from exc
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return final
