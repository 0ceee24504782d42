"""The datum check: does a facility file's datum fit the walking network?

Chinese facility lists arrive in GCJ-02 (Amap/Gaode, Tencent) or BD-09 (Baidu) far more
often than they say so. Read in the wrong datum, every point lies 300-700 m off, on a
street it does not stand on, and coverage is silently wrong. The streets themselves
tell which reading is right: facilities stand near streets, so under the right datum a
file's points sit close to the walking network, and under a wrong one they land at
random distances from it.

:func:`datum_fit` reads a file's points (those inside China: elsewhere all three
datums are the same) under each of WGS84, GCJ-02 and BD-09 and measures, for each
reading, the median distance of the points to the nearest walkable street and the share
of points that sit closer under it than under the declared reading. Another datum
*fits clearly better* when all of these hold (calibrated on the Shenzhen Futian network
with points placed 3-80 m from random streets and converted with ``prcoords``; see
``tests/test_datum.py`` and the README):

- at least :data:`MIN_POINTS` points are in China;
- the declared reading's median is at least :data:`MIN_MEDIAN_M`;
- it is at least :data:`RATIO` times the other reading's median;
- at least :data:`CLOSER_SHARE` of the points sit closer under the other reading.

On 150 random files per size, no correct file was flagged with 8 points or more (two of
300 with 5 points and up to 80 m from the streets); 85-99 % of GCJ-02 files declared
WGS84 with 8-40 points were caught, more in a network less dense than Futian's.

:func:`check` turns the fit into a warning with both figures and the ``coord_system``
line to add, or an :class:`~circles._errors.InputDataError` when
``[facilities] datum_check = "strict"``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from circles import coords
from circles._errors import ConfigError, InputDataError

logger = logging.getLogger(__name__)

#: The datums a file can be read in.
DATUMS = ("wgs84", "gcj02", "bd09")

#: What each datum is, for the messages.
DATUM_WORDS = {
    "wgs84": "WGS84 (GPS, OSM)",
    "gcj02": "GCJ-02 (Amap/Gaode, Tencent)",
    "bd09": "BD-09 (Baidu)",
}

#: ``[facilities] datum_check`` values: warn (default), stop the run, or skip the check.
MODES = ("warn", "strict", "off")

#: Fewest points in China for a verdict (fewer: no check).
MIN_POINTS = 5
#: The declared reading's median distance to the streets must be at least this (m).
MIN_MEDIAN_M = 12.0
#: ... and at least this many times the better reading's median.
RATIO = 2.0
#: ... and at least this share of the points must sit closer under the better reading.
CLOSER_SHARE = 0.7
#: Distances are measured up to this far (m); points farther count as this far.
SEARCH_M = 2000.0

#: A function giving each WGS84 point's distance (m) to the nearest walkable street.
StreetDistance = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class DatumFit:
    """How a file's points sit on the walking network under each datum.

    Attributes
    ----------
    source : str
        The file.
    declared : str
        The datum the file was read in (``coord_system``).
    points : int
        Points inside China that were measured.
    median_m : dict of str to float
        Median distance (m) of the points to the nearest walkable street, per reading.
    closer_share : dict of str to float
        Per reading, the share of points (0-1) that sit closer to a street under it than
        under the declared reading.
    better : str or None
        The datum that fits clearly better than the declared one (see the module), or
        None.
    """

    source: str
    declared: str
    points: int
    median_m: dict[str, float]
    closer_share: dict[str, float]
    better: str | None

    def doc(self) -> dict[str, Any]:
        """The fit as JSON-ready values for the run summary (metres rounded to 0.1 m)."""
        return {
            "source": self.source,
            "declared": self.declared,
            "points": self.points,
            "median_m": {k: round(v, 1) for k, v in self.median_m.items()},
            "closer_share": {k: round(v, 3) for k, v in self.closer_share.items()},
            "better": self.better,
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> DatumFit:
        """The fit back from :meth:`doc` (as the run summary and the cache hold it)."""
        return cls(
            doc["source"],
            doc["declared"],
            doc["points"],
            doc["median_m"],
            doc["closer_share"],
            doc["better"],
        )

    def message(self) -> str:
        """One paragraph naming the file, both medians and the line to add."""
        if self.better is None:
            return f"{self.source}: its points fit the streets as declared ({self.declared})"
        b, d = self.better, self.declared
        return (
            f"{self.source}: its points sit on the walking network as {DATUM_WORDS[b]}, "
            f"not as declared {DATUM_WORDS[d]}: median {self.median_m[b]:.0f} m from the "
            f"nearest street read as {b}, {self.median_m[d]:.0f} m read as {d} "
            f"({self.closer_share[b]:.0%} of {self.points} points closer as {b}). If the "
            f'list was exported from a Chinese map service, add `coord_system = "{b}"` to '
            f"its [[facilities.files]] entry (or pass `--coord-system {b}` to circles "
            'update or circles suggest); set `[facilities] datum_check = "off"` if the '
            "file is right."
        )


def check_mode(mode: object) -> str:
    """``mode`` if it is one of :data:`MODES`.

    Raises
    ------
    ConfigError
        Any other value.
    """
    if mode not in MODES:
        raise ConfigError(
            "facilities.datum_check must be 'warn' (the default), 'strict' (stop when a "
            f"file's points fit another datum clearly better) or 'off'; got {mode!r}"
        )
    return str(mode)


def report(fit: DatumFit | None, *, mode: str) -> None:
    """Warn, or with ``mode="strict"`` stop, when ``fit`` found a clearly better datum.

    Raises
    ------
    InputDataError
        ``mode="strict"`` and another datum fits clearly better.
    """
    if check_mode(mode) == "off" or fit is None or fit.better is None:
        return
    if mode == "strict":
        raise InputDataError(fit.message() + ' (stopped: [facilities] datum_check = "strict")')
    logger.warning("%s", fit.message())


def datum_fit(
    lon: np.ndarray,
    lat: np.ndarray,
    declared: str,
    street_m: StreetDistance,
    *,
    source: str,
) -> DatumFit | None:
    """Measure how points read in ``declared`` would sit under each datum.

    Parameters
    ----------
    lon, lat : numpy.ndarray
        The points in WGS84 degrees *as read* (already converted from ``declared``).
    declared : str
        The ``coord_system`` the file was read in.
    street_m : callable
        ``street_m(lon, lat)``: each WGS84 point's distance (m) to the nearest walkable
        street, capped at :data:`SEARCH_M`.
    source : str
        The file, for the messages.

    Returns
    -------
    DatumFit or None
        None when fewer than :data:`MIN_POINTS` finite points lie in China.
    """
    lon = np.asarray(lon, float)
    lat = np.asarray(lat, float)
    ok = np.isfinite(lon) & np.isfinite(lat)
    ok[ok] = coords.in_china_bbox(lon[ok], lat[ok])
    n = int(ok.sum())
    if n < MIN_POINTS:
        return None
    raw_lon, raw_lat = coords.from_wgs84(lon[ok], lat[ok], declared)
    dist: dict[str, np.ndarray] = {}
    for d in DATUMS:
        x, y = (lon[ok], lat[ok]) if d == declared else coords.to_wgs84(raw_lon, raw_lat, d)
        dist[d] = np.minimum(np.asarray(street_m(x, y), float), SEARCH_M)
    median = {d: float(np.median(v)) for d, v in dist.items()}
    closer = {d: float(np.mean(dist[d] < dist[declared])) for d in DATUMS}
    better = None
    for d in sorted((d for d in DATUMS if d != declared), key=median.__getitem__):
        md = median[declared]
        if md >= MIN_MEDIAN_M and md >= RATIO * median[d] and closer[d] >= CLOSER_SHARE:
            better = d
            break
    return DatumFit(source, declared, n, median, closer, better)


def check(
    lon: np.ndarray,
    lat: np.ndarray,
    declared: str,
    street_m: StreetDistance,
    *,
    source: str,
    mode: str = "warn",
) -> DatumFit | None:
    """The datum check of one file: :func:`datum_fit`, then warn or stop.

    Parameters
    ----------
    lon, lat, declared, street_m, source
        As for :func:`datum_fit`.
    mode : {"warn", "strict", "off"}, default "warn"
        ``warn``: log a warning when another datum fits clearly better; ``strict``:
        raise instead; ``off``: measure nothing.

    Returns
    -------
    DatumFit or None
        The fit (None when ``mode`` is ``off`` or too few points lie in China).

    Raises
    ------
    InputDataError
        ``mode="strict"`` and another datum fits clearly better.
    """
    if check_mode(mode) == "off":
        return None
    fit = datum_fit(lon, lat, declared, street_m, source=source)
    report(fit, mode=mode)
    return fit
