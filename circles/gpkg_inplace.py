"""In-place changes to a GeoPackage written by GDAL: the update path of a run.

A facility update changes a few columns of the ``nodes`` layer and a few rows of the
``service_areas`` layer. Rewriting those layers whole costs more than the rest of the
update, so :func:`circles.pipeline.run` changes them in a *copy* of the GeoPackage with
SQLite (the copy then replaces the old file atomically; a failure leaves the old file
as it was and the caller rewrites the layers instead). The result reads back exactly as a
GeoPackage written from scratch (tests compare every layer).

- :func:`update_columns`: new values of some columns for some rows, by feature id.
  The values are inserted into a temporary table with multi-row ``INSERT`` statements
  (one statement per :data:`ROWS_PER_STATEMENT` rows), then joined into the layer with
  one ``UPDATE``. sqlite3 releases the GIL once per statement step; row-by-row
  ``executemany`` releases it once per row, and a Python thread running beside it then
  makes every row wait for the GIL (a convoy measured at 10-1000x the work itself).
- :func:`replace_rows`: the rows of some categories replaced by new rows, keeping their
  feature ids (so the layer's order stays that of a full write), and the rows of new
  categories added after the last row. The new rows are written
  by GDAL (pyogrio) into a scratch GeoPackage, so their geometry blobs are encoded as
  GDAL encodes them, and copied over row by row; the R-tree is maintained by the
  layer's own triggers, for which the GeoPackage SQL functions they call
  (``ST_IsEmpty``, ``ST_MinX``, ...) are provided here; the layer extent in
  ``gpkg_contents`` is recomputed. It declines (returns False) when a category's row
  count changed or the columns differ.
"""

from __future__ import annotations

import logging
import sqlite3
import struct
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import shapely

logger = logging.getLogger(__name__)

#: Rows per multi-row INSERT (SQLite allows 32766 bound values per statement).
ROWS_PER_STATEMENT = 2000

#: Bytes of the envelope for each envelope indicator of a GeoPackage geometry header.
_ENVELOPE_BYTES = {0: 0, 1: 32, 2: 48, 3: 48, 4: 64}


def is_empty(blob: Any) -> int:
    """``ST_IsEmpty`` of a GeoPackage geometry blob (the empty flag of its header)."""
    if blob is None:
        return 1
    return int((bytes(blob)[3] >> 4) & 1)


def envelope(blob: Any) -> tuple[float, float, float, float] | None:
    """``(min_x, max_x, min_y, max_y)`` of a GeoPackage geometry blob (None: null/empty).

    Read from the header's envelope when it has one, else computed from the WKB.
    """
    if blob is None:
        return None
    b = bytes(blob)
    if b[:2] != b"GP" or len(b) < 8:
        raise ValueError("not a GeoPackage geometry blob")
    flags = b[3]
    if (flags >> 4) & 1:
        return None
    indicator = (flags >> 1) & 7
    if indicator not in _ENVELOPE_BYTES:
        raise ValueError(f"bad envelope indicator {indicator} in a GeoPackage geometry blob")
    if indicator:
        order = "<" if flags & 1 else ">"
        min_x, max_x, min_y, max_y = struct.unpack_from(order + "4d", b, 8)
        return float(min_x), float(max_x), float(min_y), float(max_y)
    geom = shapely.from_wkb(b[8:])
    if geom.is_empty:
        return None
    x0, y0, x1, y1 = shapely.bounds(geom).tolist()
    return x0, x1, y0, y1


def _bound(i: int) -> Any:
    def f(blob: Any) -> float | None:
        env = envelope(blob)
        return None if env is None else env[i]

    return f


def connect(path: str | Path) -> sqlite3.Connection:
    """A connection to a GeoPackage with the SQL functions its R-tree triggers call.

    The file is a temporary copy: no journal and no syncing (a crash leaves the copy
    unused).
    """
    con = sqlite3.connect(path)
    con.create_function("ST_IsEmpty", 1, is_empty, deterministic=True)
    for i, name in enumerate(("ST_MinX", "ST_MaxX", "ST_MinY", "ST_MaxY")):
        con.create_function(name, 1, _bound(i), deterministic=True)
    con.execute("PRAGMA journal_mode=OFF")
    con.execute("PRAGMA synchronous=OFF")
    con.execute("PRAGMA temp_store=MEMORY")
    return con


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def update_columns(
    con: sqlite3.Connection,
    layer: str,
    fids: np.ndarray,
    columns: Mapping[str, np.ndarray],
) -> None:
    """Set ``columns`` (name -> values, one per fid) of the rows ``fids`` of ``layer``.

    Non-finite floats are stored as NULL (as GDAL stores NaN). Raises
    :class:`sqlite3.Error` on failure (the caller discards the copy).
    """
    names = list(columns)
    data: list[list[Any]] = [np.asarray(fids, dtype=np.int64).tolist()]
    for n in names:
        v = np.asarray(columns[n])
        if v.dtype.kind == "f":
            data.append([x if np.isfinite(x) else None for x in v.tolist()])
        else:
            data.append(v.tolist())
    rows = list(zip(*data, strict=True))
    tmp_cols = ", ".join(f"c{i}" for i in range(len(names)))
    con.execute("DROP TABLE IF EXISTS temp.circles_upd")
    con.execute(f"CREATE TEMP TABLE circles_upd(fid INTEGER PRIMARY KEY, {tmp_cols})")
    one = "(" + ", ".join("?" * (len(names) + 1)) + ")"
    per = max(1, min(ROWS_PER_STATEMENT, _max_variables(con) // (len(names) + 1)))
    for start in range(0, len(rows), per):
        chunk = rows[start : start + per]
        values = ", ".join([one] * len(chunk))
        flat = [x for row in chunk for x in row]
        con.execute(f"INSERT INTO temp.circles_upd VALUES {values}", flat)
    sets = ", ".join(f"{_quote(n)} = u.c{i}" for i, n in enumerate(names))
    con.execute(
        f"UPDATE {_quote(layer)} SET {sets} FROM temp.circles_upd AS u "
        f"WHERE {_quote(layer)}.fid = u.fid"
    )
    con.execute("DROP TABLE temp.circles_upd")


def _max_variables(con: sqlite3.Connection) -> int:
    """Bound values allowed per statement by this SQLite build."""
    try:
        return int(con.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER))
    except (AttributeError, sqlite3.Error):  # Python < 3.11
        return 999


def replace_rows(
    con: sqlite3.Connection,
    layer: str,
    scratch: Path,
    key_column: str,
    keys: Sequence[str],
    *,
    append: Sequence[str] = (),
) -> bool:
    """Replace the rows of ``layer`` whose ``key_column`` is in ``keys`` by those of the
    same layer in the GeoPackage ``scratch`` (same columns; rows in the same order), and
    add the rows of the keys ``append`` after the last row (in that order).

    Returns False (nothing changed) when the columns differ, a key of ``keys`` has a
    different number of rows in the two files, or a key of ``append`` is already in the
    layer; the caller then rewrites the layer. Raises :class:`sqlite3.Error` on failure.
    """
    con.execute("ATTACH DATABASE ? AS circles_scratch", (str(scratch),))
    try:
        main_cols = con.execute(f"PRAGMA main.table_info({_quote(layer)})").fetchall()
        new_cols = con.execute(f"PRAGMA circles_scratch.table_info({_quote(layer)})").fetchall()
        if [c[1:3] for c in main_cols] != [c[1:3] for c in new_cols]:
            logger.info("%s: columns differ from the new rows; rewriting the layer", layer)
            return False
        pk = [c[1] for c in main_cols if c[5]]
        if pk != ["fid"]:
            return False
        cols = [c[1] for c in main_cols if c[1] != "fid"]

        def fids(schema: str, key: str) -> list[int]:
            """Feature ids of the key's rows in ``main`` or the scratch file, in order."""
            return [
                int(r[0])
                for r in con.execute(
                    f"SELECT fid FROM {schema}.{_quote(layer)} "
                    f"WHERE {_quote(key_column)} = ? ORDER BY fid",
                    (key,),
                )
            ]

        pairs: list[tuple[int, int]] = []
        for key in keys:
            old, new = fids("main", key), fids("circles_scratch", key)
            if len(old) != len(new) or not new:
                logger.info("%s: %r has another number of rows; rewriting the layer", layer, key)
                return False
            pairs.extend(zip(old, new, strict=True))
        (last,) = con.execute(f"SELECT coalesce(max(fid), 0) FROM main.{_quote(layer)}").fetchone()
        added: list[tuple[int, int]] = []
        for key in append:
            if fids("main", key):
                return False
            for fid in fids("circles_scratch", key):
                added.append((int(last) + len(added) + 1, fid))
        col_list = ", ".join(_quote(c) for c in cols)
        con.executemany(
            f"UPDATE main.{_quote(layer)} SET ({col_list}) = "
            f"(SELECT {col_list} FROM circles_scratch.{_quote(layer)} WHERE fid = ?) "
            "WHERE fid = ?",
            [(new, old) for old, new in pairs],
        )
        con.executemany(
            f"INSERT INTO main.{_quote(layer)} (fid, {col_list}) "
            f"SELECT ?, {col_list} FROM circles_scratch.{_quote(layer)} WHERE fid = ?",
            added,
        )
        _refresh_extent(con, layer)
        return True
    finally:
        con.commit()
        con.execute("DETACH DATABASE circles_scratch")


def _refresh_extent(con: sqlite3.Connection, layer: str) -> None:
    """Recompute ``gpkg_contents`` extent and change time of a layer from its rows."""
    (geom,) = con.execute(
        "SELECT column_name FROM gpkg_geometry_columns WHERE table_name = ?", (layer,)
    ).fetchone()
    env = [envelope(r[0]) for r in con.execute(f"SELECT {_quote(geom)} FROM {_quote(layer)}")]
    boxes = np.array([e for e in env if e is not None], dtype=float).reshape(-1, 4)
    if boxes.shape[0]:
        min_x, min_y = boxes[:, 0].min(), boxes[:, 2].min()
        max_x, max_y = boxes[:, 1].max(), boxes[:, 3].max()
        con.execute(
            "UPDATE gpkg_contents SET min_x = ?, min_y = ?, max_x = ?, max_y = ?, "
            "last_change = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE table_name = ?",
            (float(min_x), float(min_y), float(max_x), float(max_y), layer),
        )
