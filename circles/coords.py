"""Chinese map coordinate systems: WGS-84, GCJ-02 (Amap/Gaode, Tencent) and BD-09 (Baidu).

OpenStreetMap, GPS receivers and the rest of circles use WGS-84 longitude/latitude
(EPSG:4326). Facility lists and boundaries exported from Chinese web maps are not in
WGS-84: Amap/Gaode and Tencent use **GCJ-02**, an obfuscated datum that shifts every point
by a few hundred metres (at Hongta, Yuxi: 140 m east and 320 m south), and Baidu uses
**BD-09**, a further distortion of GCJ-02. Far too much to ignore in a 15-minute
(about 1 km) walk analysis, so planner files must be converted before they are snapped to
an OSM walk network.

Algorithm (the publicly known reimplementation, as in prcoords, eviltransform and
coordtransform; all functions here are vectorised over NumPy arrays):

WGS-84 -> GCJ-02
    With ``x = lon - 105`` and ``y = lat - 35`` (degrees), two fixed polynomial-plus-sine
    functions give the offset as arc lengths in metres::

        dlat_m = -100 + 2x + 3y + 0.2y^2 + 0.1xy + 0.2 sqrt|x|
                 + (20 sin 6πx + 20 sin 2πx) 2/3 + (20 sin πy + 40 sin πy/3) 2/3
                 + (160 sin πy/12 + 320 sin πy/30) 2/3
        dlon_m =  300 + x + 2y + 0.1x^2 + 0.1xy + 0.1 sqrt|x|
                 + (20 sin 6πx + 20 sin 2πx) 2/3 + (20 sin πx + 40 sin πx/3) 2/3
                 + (150 sin πx/12 + 300 sin πx/30) 2/3

    and they are turned into degrees with the meridian and parallel arc lengths of one
    degree on the **Krasovsky 1940** ellipsoid (``a = 6378245.0`` m,
    ``ee = e² = 0.00669342162296594323``), evaluated at the WGS-84 latitude φ::

        m = 1 - ee sin²φ
        dlat_deg = dlat_m * 180 / (π a (1 - ee) / m^1.5)
        dlon_deg = dlon_m * 180 / (π a cos φ / sqrt(m))

GCJ-02 -> WGS-84
    Has no closed form. :func:`gcj02_to_wgs84` solves ``wgs84_to_gcj02(w) = g`` by
    fixed-point iteration ``w <- w - (wgs84_to_gcj02(w) - g)``, started from the one-step
    estimate ``w0 = g - (wgs84_to_gcj02(g) - g)``. The offset changes by less than 1e-2
    degrees per degree, so each step gains more than two digits: a fixed 4 steps bring
    every point of the China box to within 1e-12 degrees (0.1 µm; measured on 2 million
    random points: largest residual 6e-5, 4e-7, 3e-9, 2e-11, 1e-13 degrees after 0..4
    steps). A fixed count, rather than a tolerance over the batch, makes each point's
    result independent of the other points converted with it. The one-step estimate
    alone (``exact=False``, prcoords' ``gcj_wgs``) is off by up to a few metres.

GCJ-02 -> BD-09
    With ``x_pi = π * 3000 / 180`` and GCJ-02 ``(x, y) = (lon, lat)``::

        r = sqrt(x² + y²) + 2e-5 sin(y x_pi)
        θ = atan2(y, x) + 3e-6 cos(x x_pi)
        bd_lon = r cos θ + 0.0065,  bd_lat = r sin θ + 0.006

BD-09 -> GCJ-02
    The usual closed form subtracts the same terms evaluated at the BD-09 point (accurate
    to about 1e-7 degrees, a decimetre; ``exact=False``, prcoords' ``bd_gcj``); by default
    it is refined by the same fixed-point iteration as GCJ-02 -> WGS-84.

Points outside China are left unchanged, as the convention requires (the obfuscation
is defined for China only). "Outside China" is prcoords' rough bounding box test
(:func:`in_china_bbox`): a point is converted only if ``0.8293 <= lat <= 55.8271`` and
``72.004 <= lon <= 137.8347`` (degrees), tested on the input coordinates of each
conversion. The box is generous: points in neighbouring countries inside it (parts of
Mongolia, Korea, Japan, South-East Asia; Singapore at 1.3N 103.8E) are shifted too, as
prcoords does. Unlike prcoords, the BD-09 conversions also leave points outside the box
unchanged, so every conversion here is the identity outside China and every pair of
conversions round-trips there.

Non-finite coordinates (NaN for missing values) pass through unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

import geopandas as gpd
import numpy as np
import shapely
from numpy.typing import ArrayLike, NDArray

from circles._errors import ConfigError, InputDataError

logger = logging.getLogger(__name__)

__all__ = [
    "COORD_SYSTEMS",
    "bd09_to_gcj02",
    "bd09_to_wgs84",
    "from_wgs84",
    "gcj02_to_bd09",
    "gcj02_to_wgs84",
    "geometry_from_wgs84",
    "geometry_to_wgs84",
    "in_china_bbox",
    "to_wgs84",
    "wgs84_to_bd09",
    "wgs84_to_gcj02",
]

COORD_SYSTEMS = ("wgs84", "gcj02", "bd09")
"""Coordinate system names accepted by :func:`to_wgs84` and :func:`from_wgs84`."""

#: Krasovsky 1940 ellipsoid: semi-major axis (metres) and first eccentricity squared.
KRASOVSKY_A_M = 6378245.0
KRASOVSKY_EE = 0.00669342162296594323
#: BD-09's angular factor: π * 3000 / 180.
BD_X_PI = np.pi * 3000.0 / 180.0
#: BD-09's constant shift (degrees) after the polar distortion.
BD_DLON_DEG = 0.0065
BD_DLAT_DEG = 0.0060

#: prcoords' out-of-China test: a point is converted only inside this box (degrees).
CHINA_BBOX_LON_DEG = (72.004, 137.8347)
CHINA_BBOX_LAT_DEG = (0.8293, 55.8271)

#: Iterative inverses: number of fixed-point steps after the one-step estimate, and the
#: largest residual (degrees, 0.1 mm) tolerated before the last step without a warning.
_ITER_STEPS = 4
_ITER_WARN_DEG = 1e-9

FloatArray = NDArray[np.float64]
_Kernel = Callable[[FloatArray, FloatArray], tuple[FloatArray, FloatArray]]
_GeoT = TypeVar("_GeoT", gpd.GeoSeries, gpd.GeoDataFrame)


# --------------------------------------------------------------------------- kernels
# Kernels work on 1-D float64 arrays of points already known to be inside China and
# finite; the public functions validate, mask and scatter the results back.


def _wgs_gcj(lon: FloatArray, lat: FloatArray) -> tuple[FloatArray, FloatArray]:
    x = lon - 105.0
    y = lat - 35.0
    sqrt_abs_x = np.sqrt(np.abs(x))
    common = 20.0 * np.sin(6.0 * np.pi * x) + 20.0 * np.sin(2.0 * np.pi * x)
    dlat_m = (
        -100.0
        + 2.0 * x
        + 3.0 * y
        + 0.2 * y * y
        + 0.1 * x * y
        + 0.2 * sqrt_abs_x
        + (
            common
            + 20.0 * np.sin(np.pi * y)
            + 40.0 * np.sin(np.pi * y / 3.0)
            + 160.0 * np.sin(np.pi * y / 12.0)
            + 320.0 * np.sin(np.pi * y / 30.0)
        )
        * (2.0 / 3.0)
    )
    dlon_m = (
        300.0
        + x
        + 2.0 * y
        + 0.1 * x * x
        + 0.1 * x * y
        + 0.1 * sqrt_abs_x
        + (
            common
            + 20.0 * np.sin(np.pi * x)
            + 40.0 * np.sin(np.pi * x / 3.0)
            + 150.0 * np.sin(np.pi * x / 12.0)
            + 300.0 * np.sin(np.pi * x / 30.0)
        )
        * (2.0 / 3.0)
    )
    rad_lat = np.radians(lat)
    sin_lat = np.sin(rad_lat)
    magic = 1.0 - KRASOVSKY_EE * sin_lat * sin_lat
    sqrt_magic = np.sqrt(magic)
    lat_deg_m = np.pi * KRASOVSKY_A_M * (1.0 - KRASOVSKY_EE) / (magic * sqrt_magic) / 180.0
    lon_deg_m = np.pi * KRASOVSKY_A_M * np.cos(rad_lat) / sqrt_magic / 180.0
    return lon + dlon_m / lon_deg_m, lat + dlat_m / lat_deg_m


def _gcj_bd(lon: FloatArray, lat: FloatArray) -> tuple[FloatArray, FloatArray]:
    r = np.hypot(lon, lat) + 0.00002 * np.sin(lat * BD_X_PI)
    theta = np.arctan2(lat, lon) + 0.000003 * np.cos(lon * BD_X_PI)
    return r * np.cos(theta) + BD_DLON_DEG, r * np.sin(theta) + BD_DLAT_DEG


def _bd_gcj_rough(lon: FloatArray, lat: FloatArray) -> tuple[FloatArray, FloatArray]:
    x = lon - BD_DLON_DEG
    y = lat - BD_DLAT_DEG
    r = np.hypot(x, y) - 0.00002 * np.sin(y * BD_X_PI)
    theta = np.arctan2(y, x) - 0.000003 * np.cos(x * BD_X_PI)
    return r * np.cos(theta), r * np.sin(theta)


def _gcj_wgs_rough(lon: FloatArray, lat: FloatArray) -> tuple[FloatArray, FloatArray]:
    glon, glat = _wgs_gcj(lon, lat)
    return lon - (glon - lon), lat - (glat - lat)


def _invert(
    forward: _Kernel, start: _Kernel, lon: FloatArray, lat: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Solve ``forward(w) = (lon, lat)`` by fixed-point iteration from ``start``."""
    wlon, wlat = start(lon, lat)
    residual_deg = 0.0
    for _ in range(_ITER_STEPS):
        flon, flat = forward(wlon, wlat)
        dlon = flon - lon
        dlat = flat - lat
        wlon = wlon - dlon
        wlat = wlat - dlat
        if dlon.size:
            residual_deg = max(np.abs(dlon).max(), np.abs(dlat).max())
    if residual_deg > _ITER_WARN_DEG:  # pragma: no cover - a strong contraction in the box
        logger.warning("coordinate inversion did not converge: residual %.2e degrees", residual_deg)
    return wlon, wlat


def _gcj_wgs_exact(lon: FloatArray, lat: FloatArray) -> tuple[FloatArray, FloatArray]:
    return _invert(_wgs_gcj, _gcj_wgs_rough, lon, lat)


def _bd_gcj_exact(lon: FloatArray, lat: FloatArray) -> tuple[FloatArray, FloatArray]:
    return _invert(_gcj_bd, _bd_gcj_rough, lon, lat)


def _chain(*kernels: _Kernel) -> _Kernel:
    def run(lon: FloatArray, lat: FloatArray) -> tuple[FloatArray, FloatArray]:
        for kernel in kernels:
            lon, lat = kernel(lon, lat)
        return lon, lat

    return run


# ----------------------------------------------------------------- public point API


def _as_lonlat(lon: ArrayLike, lat: ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Validate and broadcast longitude/latitude to float64 arrays (copies)."""
    try:
        lon_a = np.array(lon, dtype=np.float64)
        lat_a = np.array(lat, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputDataError(
            f"longitude and latitude must be numbers in degrees; could not read them as "
            f"floats ({exc}). Convert text columns with pandas.to_numeric first."
        ) from exc
    try:
        lon_a, lat_a = np.broadcast_arrays(lon_a, lat_a)
    except ValueError as exc:
        raise InputDataError(
            f"longitude (shape {lon_a.shape}) and latitude (shape {lat_a.shape}) must have "
            "the same shape: pass one value per point in each."
        ) from exc
    with np.errstate(invalid="ignore"):
        bad_lat = np.abs(lat_a) > 90.0
    if bad_lat.any():
        first = float(lat_a[bad_lat].flat[0])
        raise InputDataError(
            f"{int(bad_lat.sum())} latitude value(s) lie outside [-90, 90] degrees "
            f"(e.g. {first}); are longitude and latitude swapped? Pass (lon, lat)."
        )
    return np.array(lon_a, dtype=np.float64), np.array(lat_a, dtype=np.float64)


def in_china_bbox(lon: ArrayLike, lat: ArrayLike) -> NDArray[np.bool_]:
    """Tell which points lie inside the box where Chinese datums apply (prcoords' test).

    Parameters
    ----------
    lon, lat : array_like
        Longitude and latitude in degrees (broadcastable).

    Returns
    -------
    numpy.ndarray of bool
        True where ``0.8293 <= lat <= 55.8271`` and ``72.004 <= lon <= 137.8347``;
        False elsewhere and for non-finite values.
    """
    lon_a, lat_a = _as_lonlat(lon, lat)
    return _bbox_mask(lon_a, lat_a)


def _bbox_mask(lon: FloatArray, lat: FloatArray) -> NDArray[np.bool_]:
    with np.errstate(invalid="ignore"):
        return (
            (lat >= CHINA_BBOX_LAT_DEG[0])
            & (lat <= CHINA_BBOX_LAT_DEG[1])
            & (lon >= CHINA_BBOX_LON_DEG[0])
            & (lon <= CHINA_BBOX_LON_DEG[1])
        )


def _apply(kernel: _Kernel, lon: ArrayLike, lat: ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Run ``kernel`` on the points inside China; leave the others unchanged."""
    lon_a, lat_a = _as_lonlat(lon, lat)
    mask = _bbox_mask(lon_a, lat_a)
    if mask.all():
        out_lon, out_lat = kernel(lon_a.ravel(), lat_a.ravel())
        return out_lon.reshape(lon_a.shape), out_lat.reshape(lat_a.shape)
    if mask.any():
        lon_a[mask], lat_a[mask] = kernel(lon_a[mask], lat_a[mask])
    return lon_a, lat_a


def wgs84_to_gcj02(lon: ArrayLike, lat: ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Convert WGS-84 (OSM, GPS) longitude/latitude to GCJ-02 (Amap/Gaode, Tencent).

    Parameters
    ----------
    lon, lat : array_like
        WGS-84 longitude and latitude in degrees (scalars or broadcastable arrays).

    Returns
    -------
    tuple of numpy.ndarray
        GCJ-02 ``(lon, lat)`` in degrees, float64, of the broadcast shape. Points outside
        China (:func:`in_china_bbox`) and non-finite values are returned unchanged.

    Raises
    ------
    InputDataError
        If the values are not numeric, the shapes do not broadcast, or a latitude lies
        outside [-90, 90] (swapped columns).
    """
    return _apply(_wgs_gcj, lon, lat)


def gcj02_to_wgs84(
    lon: ArrayLike, lat: ArrayLike, *, exact: bool = True
) -> tuple[FloatArray, FloatArray]:
    """Convert GCJ-02 (Amap/Gaode, Tencent) longitude/latitude to WGS-84.

    Parameters
    ----------
    lon, lat : array_like
        GCJ-02 longitude and latitude in degrees.
    exact : bool, default True
        If True, invert :func:`wgs84_to_gcj02` by fixed-point iteration to about 1e-12
        degrees (round trip well under a millimetre). If False, use the one-step
        estimate (prcoords' ``gcj_wgs``), off by up to a few metres.

    Returns
    -------
    tuple of numpy.ndarray
        WGS-84 ``(lon, lat)`` in degrees; points outside China unchanged.

    Raises
    ------
    InputDataError
        As :func:`wgs84_to_gcj02`.
    """
    return _apply(_gcj_wgs_exact if exact else _gcj_wgs_rough, lon, lat)


def gcj02_to_bd09(lon: ArrayLike, lat: ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Convert GCJ-02 longitude/latitude to BD-09 (Baidu).

    Parameters
    ----------
    lon, lat : array_like
        GCJ-02 longitude and latitude in degrees.

    Returns
    -------
    tuple of numpy.ndarray
        BD-09 ``(lon, lat)`` in degrees; points outside China unchanged.

    Raises
    ------
    InputDataError
        As :func:`wgs84_to_gcj02`.
    """
    return _apply(_gcj_bd, lon, lat)


def bd09_to_gcj02(
    lon: ArrayLike, lat: ArrayLike, *, exact: bool = True
) -> tuple[FloatArray, FloatArray]:
    """Convert BD-09 (Baidu) longitude/latitude to GCJ-02.

    Parameters
    ----------
    lon, lat : array_like
        BD-09 longitude and latitude in degrees.
    exact : bool, default True
        If True, invert :func:`gcj02_to_bd09` by fixed-point iteration. If False, use
        the usual closed form (prcoords' ``bd_gcj``), accurate to about 1e-7 degrees.

    Returns
    -------
    tuple of numpy.ndarray
        GCJ-02 ``(lon, lat)`` in degrees; points outside China unchanged.

    Raises
    ------
    InputDataError
        As :func:`wgs84_to_gcj02`.
    """
    return _apply(_bd_gcj_exact if exact else _bd_gcj_rough, lon, lat)


def wgs84_to_bd09(lon: ArrayLike, lat: ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Convert WGS-84 longitude/latitude to BD-09 (Baidu), through GCJ-02.

    Parameters
    ----------
    lon, lat : array_like
        WGS-84 longitude and latitude in degrees.

    Returns
    -------
    tuple of numpy.ndarray
        BD-09 ``(lon, lat)`` in degrees; points outside China unchanged.

    Raises
    ------
    InputDataError
        As :func:`wgs84_to_gcj02`.
    """
    return _apply(_chain(_wgs_gcj, _gcj_bd), lon, lat)


def bd09_to_wgs84(
    lon: ArrayLike, lat: ArrayLike, *, exact: bool = True
) -> tuple[FloatArray, FloatArray]:
    """Convert BD-09 (Baidu) longitude/latitude to WGS-84, through GCJ-02.

    Parameters
    ----------
    lon, lat : array_like
        BD-09 longitude and latitude in degrees.
    exact : bool, default True
        Iterative inverses (True) or the one-step closed forms (False) for both steps;
        see :func:`bd09_to_gcj02` and :func:`gcj02_to_wgs84`.

    Returns
    -------
    tuple of numpy.ndarray
        WGS-84 ``(lon, lat)`` in degrees; points outside China unchanged.

    Raises
    ------
    InputDataError
        As :func:`wgs84_to_gcj02`.
    """
    if exact:
        return _apply(_chain(_bd_gcj_exact, _gcj_wgs_exact), lon, lat)
    return _apply(_chain(_bd_gcj_rough, _gcj_wgs_rough), lon, lat)


# ---------------------------------------------------------------------- dispatchers


def _check_coord_system(coord_system: object) -> str:
    """Normalise a coordinate system name ('GCJ-02' -> 'gcj02') or raise ConfigError."""
    if isinstance(coord_system, str):
        name = coord_system.strip().lower().replace("-", "").replace("_", "").replace(" ", "")
        if name in COORD_SYSTEMS:
            return name
    raise ConfigError(
        f"unknown coordinate system {coord_system!r}; use one of {', '.join(COORD_SYSTEMS)} "
        "(wgs84: GPS/OSM; gcj02: Amap/Gaode, Tencent; bd09: Baidu)"
    )


_TO_WGS84: dict[str, _Kernel] = {
    "gcj02": _gcj_wgs_exact,
    "bd09": _chain(_bd_gcj_exact, _gcj_wgs_exact),
}
_FROM_WGS84: dict[str, _Kernel] = {
    "gcj02": _wgs_gcj,
    "bd09": _chain(_wgs_gcj, _gcj_bd),
}


def _convert(
    lon: ArrayLike, lat: ArrayLike, name: str, table: dict[str, _Kernel]
) -> tuple[FloatArray, FloatArray]:
    if name == "wgs84":
        return _as_lonlat(lon, lat)
    out_lon, out_lat = _apply(table[name], lon, lat)
    return out_lon, out_lat


def to_wgs84(lon: ArrayLike, lat: ArrayLike, coord_system: str) -> tuple[FloatArray, FloatArray]:
    """Convert longitude/latitude from ``coord_system`` to WGS-84 (exact inverses).

    Parameters
    ----------
    lon, lat : array_like
        Longitude and latitude in degrees, in ``coord_system``.
    coord_system : {'wgs84', 'gcj02', 'bd09'}
        The system of the input; case, hyphens and underscores are ignored
        (``'GCJ-02'`` works).

    Returns
    -------
    tuple of numpy.ndarray
        WGS-84 ``(lon, lat)`` in degrees (a float64 copy for ``'wgs84'``).

    Raises
    ------
    ConfigError
        If ``coord_system`` is not one of :data:`COORD_SYSTEMS`.
    InputDataError
        As :func:`wgs84_to_gcj02`.
    """
    name = _check_coord_system(coord_system)
    return _convert(lon, lat, name, _TO_WGS84)


def from_wgs84(lon: ArrayLike, lat: ArrayLike, coord_system: str) -> tuple[FloatArray, FloatArray]:
    """Convert WGS-84 longitude/latitude to ``coord_system``.

    Parameters
    ----------
    lon, lat : array_like
        WGS-84 longitude and latitude in degrees.
    coord_system : {'wgs84', 'gcj02', 'bd09'}
        The target system; case, hyphens and underscores are ignored.

    Returns
    -------
    tuple of numpy.ndarray
        ``(lon, lat)`` in degrees in ``coord_system``.

    Raises
    ------
    ConfigError
        If ``coord_system`` is not one of :data:`COORD_SYSTEMS`.
    InputDataError
        As :func:`wgs84_to_gcj02`.
    """
    name = _check_coord_system(coord_system)
    return _convert(lon, lat, name, _FROM_WGS84)


# --------------------------------------------------------------------- geometries


def _coords_func(kernel: _Kernel) -> Callable[[FloatArray], FloatArray]:
    """Wrap a kernel as a shapely.transform function on (N, 2) or (N, 3) arrays."""

    def func(coords: FloatArray) -> FloatArray:
        out = np.array(coords, dtype=np.float64)
        if out.shape[0]:
            out[:, 0], out[:, 1] = _apply(kernel, coords[:, 0], coords[:, 1])
        return out

    return func


def _transform_geometries(data: Any, kernel: _Kernel | None, what: str) -> Any:
    if isinstance(data, gpd.GeoDataFrame):
        series = data.geometry
    elif isinstance(data, gpd.GeoSeries):
        series = data
    else:
        raise InputDataError(
            f"{what} needs a geopandas GeoSeries or GeoDataFrame, got "
            f"{type(data).__name__}; build one with geopandas.GeoSeries(geoms, crs=4326)."
        )
    if series.crs is None or not series.crs.equals("EPSG:4326"):
        raise InputDataError(
            f"{what} needs longitude/latitude geometries in EPSG:4326, got crs={series.crs}; "
            "set it with .set_crs(4326) if the values are degrees (GCJ-02/BD-09 files are "
            "labelled as EPSG:4326), or reproject with .to_crs(4326)."
        )
    geoms = np.asarray(series.array, dtype=object)
    if kernel is None:
        new = geoms.copy()
    else:
        func = _coords_func(kernel)
        new = np.empty_like(geoms)
        has_z = shapely.has_z(geoms)
        if (~has_z).any():
            new[~has_z] = shapely.transform(geoms[~has_z], func, include_z=False)
        if has_z.any():
            new[has_z] = shapely.transform(geoms[has_z], func, include_z=True)
    new_series = gpd.GeoSeries(new, index=series.index, crs=series.crs, name=series.name)
    if isinstance(data, gpd.GeoSeries):
        return new_series
    out = data.copy()
    out[data.geometry.name] = new_series
    return out


def geometry_to_wgs84(data: _GeoT, coord_system: str) -> _GeoT:
    """Convert geometries from ``coord_system`` to WGS-84, returning a new object.

    Any shapely geometry type (points, lines, polygons, multi-parts, collections, 3-D
    coordinates whose z is kept) is converted vertex by vertex with the exact inverses.

    Parameters
    ----------
    data : geopandas.GeoSeries or geopandas.GeoDataFrame
        Geometries whose longitude/latitude (degrees) are in ``coord_system``; they must
        be labelled EPSG:4326, as files exported from Chinese map services are. For a
        GeoDataFrame only the active geometry column is converted.
    coord_system : {'wgs84', 'gcj02', 'bd09'}
        The system of the input coordinates.

    Returns
    -------
    geopandas.GeoSeries or geopandas.GeoDataFrame
        A new object of the same type, index and columns, with WGS-84 geometries in
        EPSG:4326. The input is not modified.

    Raises
    ------
    ConfigError
        If ``coord_system`` is not one of :data:`COORD_SYSTEMS`.
    InputDataError
        If ``data`` is not a GeoSeries/GeoDataFrame or its CRS is not EPSG:4326.
    """
    name = _check_coord_system(coord_system)
    kernel = None if name == "wgs84" else _TO_WGS84[name]
    return _transform_geometries(data, kernel, "geometry_to_wgs84")


def geometry_from_wgs84(data: _GeoT, coord_system: str) -> _GeoT:
    """Convert WGS-84 geometries to ``coord_system``, returning a new object.

    Parameters
    ----------
    data : geopandas.GeoSeries or geopandas.GeoDataFrame
        WGS-84 geometries in EPSG:4326. For a GeoDataFrame only the active geometry
        column is converted.
    coord_system : {'wgs84', 'gcj02', 'bd09'}
        The target system.

    Returns
    -------
    geopandas.GeoSeries or geopandas.GeoDataFrame
        A new object whose coordinates are in ``coord_system`` (still labelled EPSG:4326,
        the convention for GCJ-02/BD-09 data). The input is not modified.

    Raises
    ------
    ConfigError
        If ``coord_system`` is not one of :data:`COORD_SYSTEMS`.
    InputDataError
        If ``data`` is not a GeoSeries/GeoDataFrame or its CRS is not EPSG:4326.
    """
    name = _check_coord_system(coord_system)
    kernel = None if name == "wgs84" else _FROM_WGS84[name]
    return _transform_geometries(data, kernel, "geometry_from_wgs84")
