"""Reading planner facility files as Chinese offices produce them.

A civil-affairs bureau's list of elderly canteens arrives as a GBK CSV with the headers
编号, 名称, 经度, 纬度, as a workbook with one sheet per street office, or as a Shapefile
without its ``.prj``. This module reads such a file into one table of rows and says how
it read it (:class:`Table`): the encoding, the sheets, and which column plays which role
(:data:`HEADERS`). What cannot be read right is an error naming the file, never a
silently mangled or shortened table:

* text is read as UTF-8 (with or without a BOM; UTF-16 only with its BOM), then GB18030
  (a superset of GBK and GB2312); text that is none of these is a
  :class:`~circles._errors.DataFileError` asking to save the file as UTF-8;
* every sheet of a workbook that has coordinate columns is read (``sheet`` selects one);
  a sheet without them is skipped with a warning naming it;
* a file with a header but no rows, an empty sheet or an empty FeatureCollection is an
  :class:`~circles._errors.InputDataError`, not a table of nothing;
* a spatial file without a CRS (a Shapefile without ``.prj``) whose coordinates are not
  degrees is an error asking for the ``.prj`` or the ``crs`` option.
"""

from __future__ import annotations

import codecs
import logging
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from io import StringIO
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj import CRS

from circles._errors import ConfigError, DataFileError, InputDataError
from circles.config import FacilityFile
from circles.settings import WGS84

logger = logging.getLogger(__name__)

#: Encodings a text file is read in, in this order (UTF-16 is tried first, and only,
#: when the file starts with a UTF-16 byte-order mark).
ENCODINGS = ("utf-8-sig", "gb18030")

#: Headers recognised for each role of a column, compared case-insensitively after
#: stripping whitespace and a byte-order mark; the first one present wins (so a row
#: number 序号 is an id only when there is no 编号/ID/代码/编码).
HEADERS: dict[str, tuple[str, ...]] = {
    "id": ("id", "编号", "代码", "编码", "序号"),
    "name": ("name", "名称", "机构名称", "单位名称", "设施名称", "站点名称"),
    "address": ("address", "地址", "详细地址"),
    "category": ("category", "类别", "类型", "type"),
    "lon": ("lon", "lng", "long", "longitude", "x_wgs84", "经度", "东经", "x"),
    "lat": ("lat", "latitude", "y_wgs84", "纬度", "北纬", "y"),
}

#: The configured column of each role when a file entry names none: a column by this
#: name is used if present, otherwise the headers of :data:`HEADERS`.
DEFAULT_COLUMNS = {"id": "id", "name": "name", "category": "category"}

TEXT_SUFFIXES = {".csv", ".txt", ".tsv"}
BOOK_SUFFIXES = {".xlsx", ".xlsm", ".xls"}
SPATIAL_SUFFIXES = {".geojson", ".json", ".gpkg", ".shp", ".fgb"}


@dataclass
class Table:
    """A facility file's rows and how they were read.

    Attributes
    ----------
    frame : pandas.DataFrame
        The rows as read (text cells; spatial files with their geometry), every sheet
        read one after the other.
    record : dict
        ``file``, ``format`` and, as they apply, ``encoding``, ``sheets`` (name, rows and
        ``columns``, role -> the sheet's own column, of each sheet read),
        ``skipped_sheets`` and ``crs`` (for the run summary).
    sheet : numpy.ndarray, optional
        The sheet of each row (a workbook), else None.
    sheet_row : numpy.ndarray, optional
        Each row's 1-based data row within its sheet (a workbook), else None.
    """

    frame: pd.DataFrame
    record: dict[str, Any] = field(default_factory=dict)
    sheet: np.ndarray | None = None
    sheet_row: np.ndarray | None = None


def header_key(column: Any) -> str:
    """A header as compared with :data:`HEADERS`: no BOM, no surrounding space, lower case."""
    return str(column).replace("\ufeff", "").strip().lower()


def find_column(columns: Sequence[Any], names: Sequence[str]) -> str | None:
    """The first of ``columns`` whose :func:`header_key` is in ``names`` (in their order)."""
    keys: dict[str, Any] = {}
    for c in columns:
        keys.setdefault(header_key(c), c)
    for n in names:
        if n in keys:
            return str(keys[n])
    return None


def _given(df: pd.DataFrame, given: str, what: str, path: str) -> str:
    """``given`` if it is a column of ``df`` (after stripping spaces and a BOM)."""
    if given in df.columns:
        return given
    match = find_column(list(df.columns), (header_key(given),))
    if match is None:
        raise InputDataError(
            f"{path}: no column {given!r} for {what}; columns are {list(df.columns)}"
        )
    return match


def resolve_columns(df: pd.DataFrame, spec: FacilityFile, *, spatial: bool) -> dict[str, str]:
    """Which column of ``df`` plays which role (``id``, ``name``, ``address``, ...).

    A column named in the file entry must exist; a role left at its default is found
    among :data:`HEADERS`. ``lon``/``lat`` stand for the coordinate columns (``x_column``
    and ``y_column`` when given); spatial files have none.

    Raises
    ------
    InputDataError
        A configured column is missing, or a table has no coordinate columns.
    """
    path = str(spec.path)
    cols = list(df.columns)
    out: dict[str, str] = {}
    for role in ("id", "name", "category"):
        given = getattr(spec, f"{role}_column")
        if role == "category" and spec.category is not None:
            continue
        if given != DEFAULT_COLUMNS[role]:
            out[role] = _given(df, given, role, path)
            continue
        found = find_column(cols, HEADERS[role])
        if found is not None:
            out[role] = found
    address = find_column(cols, HEADERS["address"])
    if address is not None:
        out["address"] = address
    if spatial:
        return out
    if spec.x_column or spec.y_column:
        if not (spec.x_column and spec.y_column):
            raise ConfigError(f"{path}: set both x_column and y_column")
        out["lon"] = _given(df, spec.x_column, "x", path)
        out["lat"] = _given(df, spec.y_column, "y", path)
        return out
    for role, given, word in (
        ("lon", spec.lon_column, "longitude"),
        ("lat", spec.lat_column, "latitude"),
    ):
        found = _given(df, given, word, path) if given else find_column(cols, HEADERS[role])
        if found is not None:
            out[role] = found
    if "lon" not in out or "lat" not in out:
        raise InputDataError(
            f"{path}: no coordinate columns found among {cols}; name them "
            f"{'/'.join(HEADERS['lon'][:4])}/经度 and {'/'.join(HEADERS['lat'][:3])}/纬度 "
            "or set lon_column/lat_column or x_column/y_column" + title_row_hint(df)
        )
    return out


def title_row_hint(df: pd.DataFrame, *, rows: int = 10) -> str:
    """What to say when most headers of a table are blank (pandas' ``Unnamed: 1``...):
    a title row seems to sit above the headers. Names the spreadsheet row (1-based, the
    header row being 1) of the first of the next ``rows`` rows with both coordinate
    headers, when there is one; "" when most headers are not blank."""
    blank = [str(c).startswith("Unnamed:") for c in df.columns]
    if not blank or sum(blank) * 2 <= len(blank):
        return ""
    where = ""
    for i in range(min(rows, len(df))):
        cells = [v for v in df.iloc[i].tolist() if isinstance(v, str)]
        if find_column(cells, HEADERS["lon"]) and find_column(cells, HEADERS["lat"]):
            where = f" (row {i + 2} looks like the headers)"
            break
    return (
        f"; most headers are blank, so a title row seems to sit above the headers{where}: "
        "delete the rows above the headers so that they are the first row"
    )


def has_coordinates(df: pd.DataFrame, spec: FacilityFile) -> bool:
    """Whether a sheet has the coordinate columns the file entry asks for (or usual ones)."""
    try:
        cols = resolve_columns(df, spec, spatial=False)
    except InputDataError:
        return False
    return "lon" in cols and "lat" in cols


# --------------------------------------------------------------------------- text


def decode(data: bytes, path: str) -> tuple[str, str]:
    """Text of a file and the encoding it was read in (:data:`ENCODINGS`).

    Raises
    ------
    DataFileError
        No encoding decodes the bytes, naming the encodings tried.
    """
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return data.decode("utf-16"), "utf-16"
        except UnicodeDecodeError as exc:
            raise DataFileError(
                f"{path}: starts with a UTF-16 byte-order mark but is not UTF-16 text "
                f"({exc.reason} at byte {exc.start}); save it as UTF-8 (CSV UTF-8)"
            ) from exc
    first: UnicodeDecodeError | None = None
    for enc in ENCODINGS:
        try:
            text = data.decode(enc)
        except UnicodeDecodeError as exc:
            first = first or exc
            continue
        if enc == "utf-8-sig" and data.startswith(codecs.BOM_UTF8):
            return text, "utf-8-sig"
        return text, "utf-8" if enc == "utf-8-sig" else enc
    assert first is not None
    line = data[: first.start].count(b"\n") + 1
    raise DataFileError(
        f"{path}: cannot decode the text as any of {', '.join(ENCODINGS)} (UTF-8 with or "
        f"without BOM, GB18030/GBK/GB2312): byte 0x{data[first.start]:02x} on line {line} "
        "is not valid in UTF-8; save the file as UTF-8 (Excel: 另存为 → CSV UTF-8 "
        "(逗号分隔)) and read it again"
    )


def _read_text(path: Path, spec: FacilityFile) -> Table:
    data = path.read_bytes()
    if not data.strip():
        raise InputDataError(f"{path}: the facility file is empty (no header, no rows)")
    text, enc = decode(data, str(path))
    if not text.replace("\ufeff", "").strip():
        raise InputDataError(f"{path}: the facility file is empty (no header, no rows)")
    sep = "\t" if path.suffix.lower() == ".tsv" else None
    frame = pd.read_csv(
        StringIO(text.lstrip("\ufeff")),
        sep=sep,
        engine="python",
        dtype=str,
        keep_default_na=False,
        na_values=[""],
    )
    frame.columns = [str(c).replace("\ufeff", "").strip() for c in frame.columns]
    if frame.dropna(how="all").empty:
        raise InputDataError(f"{path}: has a header but no rows ({list(frame.columns)})")
    return Table(frame, {"format": "csv", "encoding": enc})


# --------------------------------------------------------------------------- workbooks


def _pick_sheets(names: Sequence[str], sheet: str | int | None, path: Path) -> list[str]:
    if sheet is None:
        return list(names)
    if isinstance(sheet, int):
        if not 0 <= sheet < len(names):
            raise ConfigError(f"{path}: no sheet number {sheet}; its sheets are {list(names)}")
        return [names[sheet]]
    if sheet not in names:
        raise ConfigError(f"{path}: no sheet {sheet!r}; its sheets are {list(names)}")
    return [sheet]


def _harmonise(
    sheets: list[tuple[str, pd.DataFrame]], spec: FacilityFile
) -> tuple[pd.DataFrame, list[dict[str, str]]]:
    """Sheets stacked, each sheet's role columns renamed to the first sheet's names; and
    the columns each sheet had for each role (:func:`resolve_columns`), before renaming."""
    target: dict[str, str] = {}
    parts = []
    used = []
    for name, df in sheets:
        try:
            cols = resolve_columns(df, spec, spatial=False)
        except InputDataError as exc:
            raise InputDataError(f"{exc} (sheet {name!r})") from exc
        used.append(cols)
        rename = {}
        for role, col in cols.items():
            want = target.setdefault(role, col)
            if want != col and want not in df.columns:
                rename[col] = want
        parts.append(df.rename(columns=rename))
    return pd.concat(parts, ignore_index=True), used


def _open_book(path: Path) -> pd.ExcelFile:
    """The workbook, or an error saying how to save it when it is none pandas reads (an
    old ``.xls``, or a CSV or HTML page named ``.xlsx``)."""
    try:
        return pd.ExcelFile(path)
    except Exception as exc:
        head = path.read_bytes()[:8]
        what = (
            "it is an old Excel 97-2003 .xls workbook"
            if head.startswith(b"\xd0\xcf\x11\xe0")
            else "it is a damaged workbook or another zip file"
            if head.startswith(b"PK")
            else "it is not an Excel workbook; text or a web page?"
        )
        raise DataFileError(
            f"{path}: cannot read facility file as an .xlsx workbook ({what}): save it as .xlsx "
            "(Excel: 另存为 → Excel 工作簿) or CSV (UTF-8)"
        ) from exc


def _read_book(path: Path, spec: FacilityFile) -> Table:
    with _open_book(path) as book:
        names = [str(n) for n in book.sheet_names]
        chosen = _pick_sheets(names, spec.sheet, path)
        frames = {n: pd.read_excel(book, sheet_name=n, dtype=str) for n in chosen}
    kept: list[tuple[str, pd.DataFrame]] = []
    skipped: list[dict[str, str]] = []
    for name, df in frames.items():
        df.columns = [str(c).replace("\ufeff", "").strip() for c in df.columns]
        why = None
        if not len(df.columns):
            why = "is empty"
        elif not has_coordinates(df, spec):
            why = "has no coordinate columns" + title_row_hint(df)
        elif df.dropna(how="all").empty:
            why = "has a header but no rows"
        if why is None:
            kept.append((name, df))
            continue
        if len(chosen) == 1:
            if why.startswith("has no coordinate columns"):
                resolve_columns(df, spec, spatial=False)  # raises, naming the columns
            raise InputDataError(f"{path}: sheet {name!r} {why}")
        skipped.append({"sheet": name, "reason": why})
        logger.warning("%s: sheet %r %s; skipped", path, name, why)
    if not kept:
        raise InputDataError(
            f"{path}: no sheet has coordinate columns and rows ("
            + "; ".join(f"{s['sheet']!r} {s['reason']}" for s in skipped)
            + ")"
        )
    frame, used = _harmonise(kept, spec)
    record: dict[str, Any] = {
        "format": path.suffix.lower().lstrip("."),
        "sheets": [
            {"sheet": n, "rows": len(df), "columns": cols}
            for (n, df), cols in zip(kept, used, strict=True)
        ],
    }
    if skipped:
        record["skipped_sheets"] = skipped
    sheet = np.concatenate([np.full(len(df), n, dtype=object) for n, df in kept])
    sheet_row = np.concatenate([np.arange(1, len(df) + 1) for _, df in kept])
    return Table(frame, record, sheet, sheet_row)


# --------------------------------------------------------------------------- spatial


def _read_spatial(path: Path, spec: FacilityFile) -> Table:
    gdf = gpd.read_file(path, layer=spec.layer) if spec.layer else gpd.read_file(path)
    if gdf.empty:
        what = "an empty FeatureCollection" if path.suffix.lower() in {".geojson", ".json"} else ""
        raise InputDataError(
            f"{path}: has no features{' (' + what + ')' if what else ''}; nothing to read"
        )
    return Table(gdf, {"format": path.suffix.lower().lstrip(".")})


def _degrees_like(gdf: gpd.GeoDataFrame) -> bool:
    """Whether most geometries' coordinates lie within longitude/latitude range."""
    g = gdf.geometry
    ok = ~(g.isna() | g.is_empty)
    if not ok.any():
        return True
    b = g[ok].bounds
    inside = (b["minx"] >= -180) & (b["maxx"] <= 180) & (b["miny"] >= -90) & (b["maxy"] <= 90)
    return bool(inside.mean() > 0.5)


def check_swapped(x: Any, y: Any, *, area: shapely.Geometry | None, source: str, fix: str) -> None:
    """Stop on a file whose longitudes and latitudes are swapped throughout.

    They are when fewer than half of the points are usable as read and more than half
    would be read the other way round: usable means longitude within ±180 and latitude
    within ±90, and inside ``area`` (the study area, EPSG:4326) when given.

    Parameters
    ----------
    x, y : array-like
        The points' first and second coordinates as read (degrees).
    area : shapely geometry, optional
        The study area.
    source : str
        The file, for the message.
    fix : str
        How to read the file the right way round.

    Raises
    ------
    InputDataError
        The coordinates are swapped: how many points are unusable as read, how many
        would be usable swapped, and ``fix``.
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if not x.size:
        return

    def usable(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        u = (np.abs(lon) <= 180) & (np.abs(lat) <= 90)
        if area is not None:
            u &= shapely.intersects_xy(area, lon, lat)
        return u

    as_read, swapped = usable(x, y), usable(y, x)
    if not swapped.mean() > 0.5 > as_read.mean():
        return
    where = " inside the study area" if area is not None else ""
    raise InputDataError(
        f"{source}: longitude and latitude look swapped: {int((~as_read).sum())} of {x.size} "
        f"points are not valid longitude/latitude{where} as read, and {int(swapped.sum())} "
        f"would be with the two coordinates swapped; {fix}"
    )


#: How to fix swapped coordinates in a spatial file.
SPATIAL_SWAP_FIX = (
    "the file holds latitude as x and longitude as y: write it again with longitude as x "
    "(GeoJSON and Shapefiles hold longitude first)"
)


def _rep_xy(g: gpd.GeoSeries) -> tuple[np.ndarray, np.ndarray]:
    """x and y of a point on each geometry (NaN for missing or empty ones)."""
    ok = ~(g.isna() | g.is_empty).to_numpy()
    x, y = np.full(len(g), np.nan), np.full(len(g), np.nan)
    rp = g[ok].representative_point()
    x[ok], y[ok] = rp.x.to_numpy(), rp.y.to_numpy()
    return x, y


def _same_crs(a: CRS, b: CRS) -> bool:
    """Whether two CRSs are the same (a .prj's ESRI WKT and its EPSG code are)."""
    if a.equals(b, ignore_axis_order=True):
        return True
    code = a.to_epsg(min_confidence=70)
    return code is not None and code == b.to_epsg(min_confidence=70)


def spatial_crs(
    gdf: gpd.GeoDataFrame, spec: FacilityFile, *, area: shapely.Geometry | None = None
) -> tuple[gpd.GeoDataFrame, str]:
    """A spatial file's rows with their CRS settled, and where the CRS came from.

    The file's own CRS is used; the ``crs`` option stands in for a missing one (a
    Shapefile without ``.prj``) and for the EPSG:4326 that GeoJSON always reports.

    Parameters
    ----------
    gdf : geopandas.GeoDataFrame
        The file's rows as read.
    spec : FacilityFile
        Its entry (``crs``).
    area : shapely geometry, optional
        The study area (EPSG:4326): where swapped coordinates would fall.

    Raises
    ------
    InputDataError
        The file has no CRS and its coordinates are not degrees; or its CRS and the
        ``crs`` option disagree; or its coordinates are not degrees in a geographic CRS;
        or they are degrees with longitude and latitude swapped (:func:`check_swapped`).
    ConfigError
        The ``crs`` option is not a CRS.
    """
    path = str(spec.path)
    try:
        option = CRS.from_user_input(spec.crs)
    except Exception as exc:
        raise ConfigError(f"{path}: crs = {spec.crs!r} is not a CRS ({exc})") from exc
    given = spec.crs != WGS84
    geojson = Path(path).suffix.lower() in {".geojson", ".json"}
    if gdf.crs is None or (given and geojson and gdf.crs == CRS.from_user_input(WGS84)):
        if not given and not _degrees_like(gdf):
            check_swapped(*_rep_xy(gdf.geometry), area=area, source=path, fix=SPATIAL_SWAP_FIX)
            prj = " (no .prj beside it)" if Path(path).suffix.lower() == ".shp" else ""
            raise InputDataError(
                f"{path}: the file has no CRS{prj} and its coordinates are not degrees "
                "(they look projected, e.g. metres); add the .prj file or set "
                'crs = "EPSG:xxxx" in its [[facilities.files]] entry'
            )
        return gdf.set_crs(option, allow_override=True), (
            f"{spec.crs} (crs option)" if given else f"{WGS84} (assumed: the file has none)"
        )
    own = CRS.from_user_input(gdf.crs)
    if given and not _same_crs(own, option):
        raise InputDataError(
            f"{path}: the file's CRS is {own.to_string()} but its entry says crs = "
            f"{spec.crs!r}; remove the crs option or fix the file"
        )
    if own.is_geographic and not _degrees_like(gdf):
        check_swapped(*_rep_xy(gdf.geometry), area=area, source=path, fix=SPATIAL_SWAP_FIX)
        raise InputDataError(
            f"{path}: its CRS {own.to_string()} is in degrees but most coordinates are "
            'not (they look projected); fix the file\'s CRS or set crs = "EPSG:xxxx"'
        )
    return gdf, own.to_string()


# --------------------------------------------------------------------------- any file


def load_table(spec: FacilityFile) -> Table:
    """The rows of a facility file and how they were read (:class:`Table`).

    Raises
    ------
    DataFileError
        The file is missing, of an unsupported type, or cannot be read or decoded.
    InputDataError
        The file has no rows, or no sheet with coordinate columns.
    ConfigError
        The ``sheet`` option names no sheet of the workbook.
    """
    path = Path(spec.path)
    if path.is_dir():
        raise DataFileError(
            f"{path}: is a folder; give the facility file itself (CSV, XLSX, GeoJSON, "
            "GeoPackage or Shapefile), one [[facilities.files]] entry per file"
        )
    if not path.exists():
        raise DataFileError(f"{path}: facility file not found")
    suffix = path.suffix.lower()
    try:
        if suffix in TEXT_SUFFIXES:
            table = _read_text(path, spec)
        elif suffix in BOOK_SUFFIXES:
            table = _read_book(path, spec)
        elif suffix in SPATIAL_SUFFIXES:
            table = _read_spatial(path, spec)
        else:
            raise DataFileError(
                f"{path}: unsupported facility file type {suffix!r}; use CSV, XLSX, "
                "GeoJSON, GeoPackage or Shapefile"
            )
    except (DataFileError, InputDataError, ConfigError):
        raise
    except Exception as exc:
        raise DataFileError(
            f"{path}: cannot read facility file ({type(exc).__name__}: {exc})"
        ) from exc
    table.record = {"file": path.name, "source": str(spec.path), **table.record}
    return table


def as_table(table: pd.DataFrame | Table | None, spec: FacilityFile) -> Table:
    """``table`` as a :class:`Table` (read from ``spec`` when None)."""
    if table is None:
        return load_table(spec)
    if isinstance(table, Table):
        return table
    record: Mapping[str, Any] = {"file": Path(spec.path).name, "source": str(spec.path)}
    return Table(table, dict(record))


# --------------------------------------------------------------------------- rows


def read_table(spec: FacilityFile) -> pd.DataFrame:
    """The rows of a facility file as it is (CSV/XLSX as text; spatial files with geometry).

    Every sheet of a workbook with coordinate columns, one after the other
    (:func:`circles.facility_files.load_table`, which also says how the file was read).

    Raises
    ------
    DataFileError
        The file is missing or cannot be read.
    InputDataError
        The file has no rows.
    """
    return load_table(spec).frame


@dataclass
class FileRead:
    """A planner file read (:func:`read_planner_file`).

    Attributes
    ----------
    facilities : geopandas.GeoDataFrame
        The rows used, as for :func:`read_facility_file`.
    rejects : pandas.DataFrame
        The rows not used, with their reason.
    rows : numpy.ndarray
        The 1-based data row of each facility.
    record : dict
        How the file was read, for the run summary: ``file``, ``source``, ``format``,
        ``encoding`` (text), ``sheets`` (workbooks: each sheet's name, rows and its own
        ``columns``), ``crs``, ``columns`` (role -> column used: ``id``, ``name``,
        ``address``, ``category``, ``lon``, ``lat``; of a workbook, the first sheet's
        names, which the other sheets' columns were renamed to),
        ``rows``, ``facilities`` and ``rejected``.
    """

    facilities: gpd.GeoDataFrame
    rejects: pd.DataFrame
    rows: np.ndarray
    record: dict[str, Any] = field(default_factory=dict)


def plain_text(s: pd.Series) -> pd.Series:
    """Cells as stripped text, full-width digits, signs and commas made plain (NFKC)."""
    t = s.astype("string")
    t = t.map(lambda v: unicodedata.normalize("NFKC", v) if isinstance(v, str) else v)
    return t.astype("string").str.strip()


#: A number written with thousands separators: ``12,345`` or ``1,234,567.5``.
_GROUPED = r"^[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?$"


def plain_numbers(s: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Cells as numbers, as a planner's spreadsheet writes them.

    Full-width digits and commas are made plain (:func:`plain_text`) and thousands
    separators are dropped (``12,345`` and ``１２，３４５`` are 12345); a comma anywhere
    else (``12,34``) is not a number.

    Parameters
    ----------
    s : pandas.Series
        The cells (text or numbers).

    Returns
    -------
    values : pandas.Series
        float64, NaN where a cell is blank or not a number.
    bad : pandas.Series
        bool: the cells that are not blank and not a number.
    """
    t = plain_text(s)
    blank = t.isna() | (t == "")
    grouped = t.str.fullmatch(_GROUPED).fillna(False).astype(bool)
    t = t.where(~grouped, t.str.replace(",", "", regex=False))
    values = pd.to_numeric(t, errors="coerce").astype("float64")
    return values, (values.isna() & ~blank).astype(bool)


def _blank_rows(df: pd.DataFrame) -> np.ndarray:
    if not len(df.columns):
        return np.ones(len(df), bool)
    cells = df.astype("string").apply(lambda s: s.str.strip()).fillna("")
    return np.asarray((cells == "").all(axis=1), bool)


def _out_of_range(lon: pd.Series, lat: pd.Series) -> pd.Series:
    """The reason for each point outside longitude/latitude range ("" when inside)."""
    bad = (lon.abs() > 180) | (lat.abs() > 90)
    swapped = bad & (lat.abs() <= 180) & (lon.abs() <= 90)
    why = pd.Series("", index=lon.index, dtype=object)
    why[bad] = "coordinates out of range"
    why[swapped] = "coordinates out of range (latitude above 90: longitude and latitude swapped?)"
    return why


def _point_geometry(
    df: pd.DataFrame,
    cols: dict[str, str],
    spec: FacilityFile,
    reject: Callable[[Any, Any], None],
    *,
    area: shapely.Geometry | None = None,
) -> tuple[np.ndarray, str]:
    """Points of a table's coordinate columns (EPSG:4326), rejecting unusable rows (a
    file whose columns are swapped throughout is an error: :func:`check_swapped`)."""
    src = str(spec.path)
    try:
        crs = CRS.from_user_input(spec.crs)
    except Exception as exc:
        raise ConfigError(f"{src}: crs = {spec.crs!r} is not a CRS ({exc})") from exc
    xs, ys = plain_text(df[cols["lon"]]), plain_text(df[cols["lat"]])
    missing = xs.isna() | ys.isna() | (xs == "") | (ys == "")
    reject(missing, "missing coordinates")
    # plain float64 (NaN, not pd.NA): string columns give nullable Float64 otherwise
    xn = pd.to_numeric(xs, errors="coerce").astype("float64")
    yn = pd.to_numeric(ys, errors="coerce").astype("float64")
    reject(xn.isna() | yn.isna(), "non-numeric coordinates")
    reject(~(np.isfinite(xn) & np.isfinite(yn)), "non-finite coordinates")
    good = np.isfinite(xn) & np.isfinite(yn)
    if crs.is_geographic and good.sum():
        lon_c, lat_c = cols["lon"], cols["lat"]
        fix = (
            f"set lon_column = {lat_c!r} and lat_column = {lon_c!r} in its "
            "[[facilities.files]] entry, or swap the two columns in the file"
        )
        check_swapped(xn[good], yn[good], area=area, source=src, fix=fix)
        far = ((xn.abs() > 180) | (yn.abs() > 90))[good]
        if far.mean() > 0.5:
            raise InputDataError(
                f"{src}: {int(far.sum())} of {int(good.sum())} coordinates in "
                f"{cols['lon']!r}/{cols['lat']!r} are not degrees (they look projected, "
                'e.g. metres); set x_column, y_column and crs = "EPSG:xxxx" in its '
                "[[facilities.files]] entry"
            )
    pts = gpd.GeoSeries(gpd.points_from_xy(xn.where(good, 0), yn.where(good, 0)), crs=crs)
    if not crs.equals(CRS.from_user_input(WGS84)):
        pts = pts.to_crs(WGS84)
    lon, lat = pts.x.where(good), pts.y.where(good)
    why = _out_of_range(lon, lat)
    reject(good & (why != ""), why)
    return np.asarray(pts.to_numpy()), crs.to_string()


def read_planner_file(
    spec: FacilityFile,
    *,
    categories: Iterable[str],
    area: shapely.Geometry | None = None,
    table: pd.DataFrame | Table | None = None,
) -> FileRead:
    """Read a planner facility file into facilities, rejects and how it was read.

    Parameters
    ----------
    spec : FacilityFile
        What to read and how.
    categories : iterable of str
        Known category ids; rows with another category are rejected.
    area : shapely geometry, optional
        Study area in EPSG:4326; rows outside it are rejected.
    table : pandas.DataFrame or Table, optional
        The file's rows when already read (:func:`read_table`,
        :func:`circles.facility_files.load_table`), so that the file is not read twice.

    Returns
    -------
    FileRead

    Raises
    ------
    InputDataError
        The file has no rows, no coordinate columns, a missing configured column, or
        coordinates that are not what its CRS says.
    ConfigError
        The file's ``category`` is not one of ``categories``, or its ``crs`` is no CRS.
    """
    known = set(categories)
    tab = as_table(table, spec)
    raw = tab.frame
    src = str(spec.path)
    record = dict(tab.record)
    spatial = isinstance(raw, gpd.GeoDataFrame) and "geometry" in raw
    if spatial:
        raw, record["crs"] = spatial_crs(raw, spec, area=area)
    df = pd.DataFrame(raw.drop(columns="geometry", errors="ignore")).reset_index(drop=True)
    if not len(raw):
        raise InputDataError(f"{src}: has a header but no rows")
    try:
        cols = resolve_columns(df, spec, spatial=spatial)
    except InputDataError as exc:
        if record.get("encoding") != "gb18030":
            raise
        raise InputDataError(
            f"{exc} (the file was read as GB18030: if these headers look garbled it is in "
            "another encoding; save it as UTF-8)"
        ) from exc
    reason = np.full(len(df), "", dtype=object)  # the first reason found for each row

    def reject(mask: pd.Series | np.ndarray, why: str | pd.Series) -> None:
        m = np.asarray(mask, bool) & (reason == "")
        if isinstance(why, pd.Series):
            reason[m] = why.to_numpy(dtype=object)[m]
        else:
            reason[m] = why

    # geometry
    if spatial:
        geom = raw.geometry.to_crs(WGS84).reset_index(drop=True)
        reject(geom.isna() | geom.is_empty, "missing geometry")
        ok = ~(geom.isna() | geom.is_empty)
        x, y = _rep_xy(geom)
        lon, lat = pd.Series(x, index=df.index), pd.Series(y, index=df.index)
        check_swapped(x, y, area=area, source=src, fix=SPATIAL_SWAP_FIX)
        why = _out_of_range(lon, lat)
        reject(ok & (why != ""), why)
        geoms = geom.to_numpy()
    else:
        reject(_blank_rows(df), "empty row")
        geoms, record["crs"] = _point_geometry(df, cols, spec, reject, area=area)
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
        if "category" not in cols:
            raise InputDataError(
                f"{src}: no {spec.category_column!r} column (nor "
                f"{'/'.join(HEADERS['category'][1:])}); add one or set `category` "
                "for the whole file"
            )
        cat = df[cols["category"]].astype("string").str.strip()
        reject(cat.isna() | (cat == ""), "missing category")
        unknown = ~cat.isin(known) & cat.notna()
        reject(unknown, "unknown category " + cat.fillna("").map(repr).astype(object))
        cat = cat.astype(object)

    # ids
    if "id" in cols:
        ids = df[cols["id"]].astype("string").str.strip()
        blank = ids.isna() | (ids == "")
        reject(blank, "missing id")
        dup = ids.duplicated(keep="first") & ~blank
        reject(dup, "duplicate id " + ids.fillna("").map(repr).astype(object))
        ids = ids.astype(object)
    else:
        ids = pd.Series([f"{Path(src).stem}:{i + 1}" for i in df.index], dtype=object)
    names = (
        df[cols["name"]].astype(object)
        if "name" in cols
        else pd.Series(None, index=df.index, dtype=object)
    )

    if area is not None:
        inside = np.zeros(len(df), bool)
        valid = np.array([g is not None and not shapely.is_empty(g) for g in geoms])
        inside[valid] = shapely.intersects(np.asarray(geoms)[valid], area)
        reject(valid & ~inside & (reason == ""), "outside study area")

    ok = reason == ""
    out: dict[str, Any] = {
        "facility_id": ids[ok].astype(str).to_numpy(),
        "category": cat[ok].to_numpy(),
        "name": names[ok].to_numpy(),
        "source": src,
    }
    if "address" in cols:
        out["address"] = df.loc[ok, cols["address"]].astype(object).to_numpy()
    for col in spec.attribute_columns:
        if col in df.columns:
            out[col] = pd.to_numeric(df.loc[ok, col], errors="coerce").to_numpy(float)
    fac = gpd.GeoDataFrame(out, geometry=np.asarray(geoms)[ok], crs=WGS84)
    rej = df.loc[~ok].copy()
    rej.insert(0, "reason", reason[~ok])
    rej.insert(0, "facility_id", ids[~ok].to_numpy())
    if tab.sheet is not None and tab.sheet_row is not None and len(tab.sheet) == len(df):
        rej.insert(0, "sheet_row", tab.sheet_row[~ok])
        rej.insert(0, "sheet", tab.sheet[~ok])
    rej.insert(0, "row", (np.flatnonzero(~ok) + 1))
    rej.insert(0, "source", src)
    if len(rej):
        logger.warning("%s: %d of %d rows rejected", src, len(rej), len(df))
    record.update(columns=cols, rows=len(df), facilities=int(ok.sum()), rejected=int((~ok).sum()))
    return FileRead(
        fac.reset_index(drop=True), rej.reset_index(drop=True), np.flatnonzero(ok) + 1, record
    )


def read_facility_file(
    spec: FacilityFile,
    *,
    categories: Iterable[str],
    area: shapely.Geometry | None = None,
    table: pd.DataFrame | Table | None = None,
) -> tuple[gpd.GeoDataFrame, pd.DataFrame]:
    """Read a planner facility file into facilities and rejects.

    Parameters
    ----------
    spec : FacilityFile
        What to read and how: columns are those the entry names, else the usual
        Chinese and English headers (:data:`circles.facility_files.HEADERS`).
    categories : iterable of str
        Known category ids; rows with another category are rejected.
    area : shapely geometry, optional
        Study area in EPSG:4326; rows outside it are rejected.
    table : pandas.DataFrame or Table, optional
        The file's rows when already read (as the file readers of this module read
        them), so that the file is not read twice.

    Returns
    -------
    facilities : geopandas.GeoDataFrame
        EPSG:4326 points (or the file's geometries) with ``facility_id``, ``category``,
        ``name``, ``source`` (and ``address`` when the file has one).
    rejects : pandas.DataFrame
        ``source``, ``row`` (1-based data row; a workbook's rows are counted over its
        sheets in order, with ``sheet`` and ``sheet_row`` besides), ``facility_id``,
        ``reason`` and the original columns.

    See Also
    --------
    read_planner_file : the same, with how the file was read.
    """
    got = read_planner_file(spec, categories=categories, area=area, table=table)
    return got.facilities, got.rejects
