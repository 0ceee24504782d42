"""Yuxi City (玉溪市, Yunnan): counties, townships, villages and urban communities.

The statistical divisions ship with the package (``circles/data/yuxi/``, from the npm
package china-division 2.7.0, WTFPL; provenance in that folder's README):

- :func:`areas`: the 9 counties / districts (区县);
- :func:`streets`: the 76 townships and sub-districts (乡镇/街道), with their county;
- :func:`villages`: the 718 villages (村民委员会) and urban communities (社区居民委员会),
  with township, county and ``kind`` (``"urban"`` or ``"rural"``).

:func:`community_attributes` shapes :func:`villages` into the community attribute table
that :func:`circles.report.write_report` reads (``community_id``, ``name``, ``county``,
``street``, ``kind``).

Coordinates are not part of these lists. The township centre points (OSM) and the GCJ-02
county polygons (Amap) are read from ``../shared/data/yuxi/`` when present
(:func:`township_centres`, :func:`read_boundary`); they are not packaged.
"""

from __future__ import annotations

import logging
import os
from importlib import resources
from pathlib import Path
from typing import Final

import geopandas as gpd
import numpy as np
import pandas as pd

from circles._errors import DataFileError, InputDataError

__all__ = [
    "KIND_RURAL",
    "KIND_UNKNOWN",
    "KIND_URBAN",
    "areas",
    "community_attributes",
    "kind_of",
    "read_boundary",
    "streets",
    "township_centres",
    "villages",
]

logger = logging.getLogger(__name__)

#: ``kind`` of an urban community (社区居民委员会, village-level code 001-199).
KIND_URBAN: Final = "urban"
#: ``kind`` of a village (村民委员会, village-level code 200-399).
KIND_RURAL: Final = "rural"
#: ``kind`` when code and name disagree or neither tells.
KIND_UNKNOWN: Final = "unknown"

#: Chinese names of the kinds.
KIND_ZH: Final = {KIND_URBAN: "社区居民委员会", KIND_RURAL: "村民委员会", KIND_UNKNOWN: "不明"}

_URBAN_SUFFIXES: Final = ("居民委员会", "居委会")
_RURAL_SUFFIXES: Final = ("村民委员会", "村委会")


def _read(name: str) -> pd.DataFrame:
    res = resources.files("circles").joinpath("data").joinpath("yuxi").joinpath(name)
    if not res.is_file():
        raise DataFileError(
            f"packaged file circles/data/yuxi/{name} is missing; reinstall circles "
            "(package data 'data/yuxi/*.csv')"
        )
    with res.open("r", encoding="utf-8") as fh:
        return pd.read_csv(fh, dtype=str, keep_default_na=False)


def areas() -> pd.DataFrame:
    """The 9 counties / districts of Yuxi.

    Returns
    -------
    pandas.DataFrame
        ``county_code`` (6 digits), ``county``.
    """
    a = _read("yuxi_areas.csv")
    return pd.DataFrame({"county_code": a["code"], "county": a["name"]})


def streets() -> pd.DataFrame:
    """The 76 townships and sub-districts (乡镇/街道) of Yuxi with their county.

    Returns
    -------
    pandas.DataFrame
        ``street_code`` (9 digits), ``street``, ``street_type`` (``"sub-district"`` for
        街道, ``"town"`` for 镇, ``"township"`` for 乡 including 民族乡), ``county_code``,
        ``county``.
    """
    s = _read("yuxi_streets.csv")
    out = pd.DataFrame(
        {"street_code": s["code"], "street": s["name"], "county_code": s["areaCode"]}
    )
    name = out["street"]
    out.insert(
        2,
        "street_type",
        np.select(
            [name.str.endswith("街道"), name.str.endswith("镇"), name.str.endswith("乡")],
            ["sub-district", "town", "township"],
            default="unknown",
        ),
    )
    return out.merge(areas(), on="county_code", how="left", validate="many_to_one")


def kind_of(codes: pd.Series | np.ndarray, names: pd.Series | np.ndarray) -> np.ndarray:
    """Tell urban communities from villages by statistical code and by name.

    The village-level part of a 12-digit code (its last three digits) is 001-199 for a
    residents' committee (居民委员会, urban community) and 200-399 for a villagers'
    committee (村民委员会, village). Names end in ``居民委员会``/``居委会`` or
    ``村民委员会``/``村委会``. When code and name agree, that is the kind; when one of them
    is silent, the other decides; when they disagree, the kind is ``"unknown"``.

    Parameters
    ----------
    codes, names : array-like of str
        Same length.

    Returns
    -------
    numpy.ndarray
        ``"urban"``, ``"rural"`` or ``"unknown"`` per row (object dtype).
    """
    c = pd.Series(np.asarray(codes, dtype=object)).astype(str).str.strip()
    n = pd.Series(np.asarray(names, dtype=object)).astype(str).str.strip()
    if len(c) != len(n):
        raise InputDataError(f"kind_of(): {len(c)} codes but {len(n)} names")
    valid = c.str.fullmatch(r"\d{12}")
    part = pd.to_numeric(c.str[-3:].where(valid), errors="coerce")
    by_code = np.select(
        [(part >= 1) & (part <= 199), (part >= 200) & (part <= 399)],
        [KIND_URBAN, KIND_RURAL],
        default="",
    )
    by_name = np.select(
        [n.str.endswith(_RURAL_SUFFIXES), n.str.endswith(_URBAN_SUFFIXES)],
        [KIND_RURAL, KIND_URBAN],
        default="",
    )
    out = np.where(by_code == "", by_name, by_code)
    clash = (by_code != "") & (by_name != "") & (by_code != by_name)
    out = np.where(clash | (out == ""), KIND_UNKNOWN, out).astype(object)
    if clash.any():
        logger.warning("%d rows: code and name disagree on urban/rural", int(clash.sum()))
    return out


def villages(*, county: str | None = None) -> pd.DataFrame:
    """Yuxi's villages and urban communities with township, county and kind.

    Parameters
    ----------
    county : str, optional
        Keep one county / district, by name (``"红塔区"``) or 6-digit code (``"530402"``).

    Returns
    -------
    pandas.DataFrame
        ``code`` (12 digits), ``name``, ``short_name`` (the name without the committee
        suffix, e.g. ``"荷花社区"``, ``"大营村"``), ``kind`` (``"urban"``/``"rural"``),
        ``kind_zh``, ``street_code``, ``street``, ``street_type``, ``county_code``,
        ``county``.

    Raises
    ------
    InputDataError
        If ``county`` names no county of Yuxi.
    """
    v = _read("yuxi_villages.csv")
    out = pd.DataFrame({"code": v["code"], "name": v["name"], "street_code": v["streetCode"]})
    out["kind"] = kind_of(out["code"], out["name"])
    out["kind_zh"] = out["kind"].map(KIND_ZH)
    short = out["name"].str.replace(r"(居民委员会|村民委员会|村委会|居委会)$", "", regex=True)
    plain = ~out["name"].str.endswith("村委会") | short.str.endswith("村")
    short = short.where(plain, short + "村")
    out.insert(2, "short_name", short)
    out = out.merge(streets(), on="street_code", how="left", validate="many_to_one")
    if county is not None:
        a = areas()
        hit = a[(a["county"] == county) | (a["county_code"] == str(county))]
        if hit.empty:
            raise InputDataError(
                f"no county {county!r} in Yuxi; counties are: {', '.join(a['county'])}"
            )
        out = out[out["county_code"] == hit["county_code"].iloc[0]]
    return out.reset_index(drop=True)


def community_attributes(*, county: str | None = None) -> pd.DataFrame:
    """:func:`villages` as a community attribute table for :mod:`circles.report`.

    Returns
    -------
    pandas.DataFrame
        ``community_id`` (the 12-digit code), ``name``, ``county``, ``street``, ``kind``.
        Households, population, facility areas and staff are not in the public lists:
        join them from the bureau's own table (columns documented in
        :mod:`circles.report`).
    """
    v = villages(county=county)
    return pd.DataFrame(
        {
            "community_id": v["code"],
            "name": v["name"],
            "county": v["county"],
            "street": v["street"],
            "kind": v["kind"],
        }
    )


def township_centres(path: str | os.PathLike[str]) -> gpd.GeoDataFrame:
    """Township / sub-district centre points (WGS84, from OSM place nodes).

    Parameters
    ----------
    path : path-like
        ``yuxi_township_centroids_osm.csv`` (e.g. ``../shared/data/yuxi/``): columns
        ``county``, ``township``, ``lon_wgs84``, ``lat_wgs84``.

    Returns
    -------
    geopandas.GeoDataFrame
        EPSG:4326 points with ``centre_id`` (``<county><township>``), ``county``,
        ``street`` and the file's other columns.
    """
    p = Path(path)
    if not p.is_file():
        raise DataFileError(f"{p}: township centre file not found")
    df = pd.read_csv(p, encoding="utf-8")
    need = ("county", "township", "lon_wgs84", "lat_wgs84")
    missing = [c for c in need if c not in df]
    if missing:
        raise InputDataError(f"{p}: missing columns {missing}; expected {list(need)}")
    lon = pd.to_numeric(df["lon_wgs84"], errors="coerce")
    lat = pd.to_numeric(df["lat_wgs84"], errors="coerce")
    bad = lon.isna() | lat.isna()
    if bad.any():
        raise InputDataError(f"{p}: rows {list(df.index[bad])[:5]} have no numeric lon/lat")
    out = df.rename(columns={"township": "street"})
    out.insert(0, "centre_id", out["county"].astype(str) + out["street"].astype(str))
    return gpd.GeoDataFrame(out, geometry=gpd.points_from_xy(lon, lat), crs="EPSG:4326")


def read_boundary(path: str | os.PathLike[str], *, coord_system: str = "gcj02") -> gpd.GeoDataFrame:
    """Read a boundary polygon file and convert it to WGS84.

    Parameters
    ----------
    path : path-like
        A GeoJSON (or any file geopandas reads), e.g. ``hongta_amap_gcj02.geojson``.
    coord_system : {"gcj02", "bd09", "wgs84"}, default "gcj02"
        The datum of the file's longitudes/latitudes (Amap exports are GCJ-02).

    Returns
    -------
    geopandas.GeoDataFrame
        EPSG:4326, WGS84 datum (as OSM).
    """
    from circles import coords

    p = Path(path)
    if not p.is_file():
        raise DataFileError(f"{p}: boundary file not found")
    try:
        gdf = gpd.read_file(p)
    except Exception as exc:  # pyogrio raises several types
        raise DataFileError(f"{p}: cannot read boundary ({exc})") from exc
    if gdf.crs is None:
        gdf = gdf.set_crs("EPSG:4326")
    gdf = gdf.to_crs("EPSG:4326")
    return coords.geometry_to_wgs84(gdf, coord_system) if coord_system != "wgs84" else gdf
