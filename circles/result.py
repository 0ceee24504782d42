"""What the stages of a run share: the result, the run context, frame round-tripping.

This module sits below every stage and imports none of them: :class:`StudyResult`
(what :func:`circles.pipeline.run` returns), :class:`RunContext` (the cache, the input
files read and the progress callback a run hands to its stages), the progress helpers,
and the small table conventions every stage follows (:func:`roundtrip`,
:func:`normalise_rejects`, :func:`finite_or_nan`, :func:`level_key`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd

from circles import io
from circles._hooks import checkpoint
from circles.cache import Cache, Inputs, frame_roundtrip
from circles.config import StudyConfig, resolve_path
from circles.network import WalkNetwork

#: A progress callback: called with a short message at each stage (the CLI prints them).
Progress = Callable[[str], None]

#: The CLI puts a tqdm factory under "factory" to show progress bars; the library itself
#: never prints (empty by default).
PROGRESS_BAR: dict[str, Any] = {}


def noop(msg: str) -> None:
    """A progress callback that says nothing."""
    return None


def progress_iter(items: list[str], what: str, unit: str) -> Any:
    """Items as they are (the CLI wraps long loops in tqdm through :data:`PROGRESS_BAR`)."""
    bar = PROGRESS_BAR.get("factory")
    if bar is None or len(items) < 2:
        return items
    return bar(items, desc=what, unit=unit, leave=False)


@dataclass
class RunContext:
    """What a run hands to every stage besides its inputs.

    Attributes
    ----------
    store : circles.cache.Cache
        The study's cache (a cache that never hits with ``cache=False``).
    inputs : circles.cache.Inputs
        The input files read, with their SHA-256.
    say : callable
        Progress messages.
    base_dir : str
        Folder that relative input paths are resolved against (the study file's).
    started_utc : str
        When the run started (UTC, ISO 8601).
    t0 : float
        ``time.perf_counter()`` when the run started.
    """

    store: Cache
    inputs: Inputs = field(default_factory=Inputs)
    say: Progress = noop
    base_dir: str = "."
    started_utc: str = field(default_factory=lambda: utc_now())
    t0: float = field(default_factory=time.perf_counter)

    timings: dict[str, float] = field(default_factory=dict)

    def resolve(self, path: str | None) -> str | None:
        """``path`` resolved against :attr:`base_dir` (None stays None)."""
        return resolve_path(path, self.base_dir)

    def stage(self, name: str) -> None:
        """Mark the start of a stage: its time is measured from here to the next stage's
        start (:meth:`stage_seconds`); a test can kill the run here
        (:func:`circles._hooks.checkpoint`)."""
        checkpoint(name)
        self.timings[name] = time.perf_counter()

    def stage_seconds(self) -> dict[str, float]:
        """Seconds from each stage's start to the next one's (the last: until now)."""
        marks = sorted(self.timings.items(), key=lambda kv: kv[1])
        ends = [t for _, t in marks[1:]] + [time.perf_counter()]
        return {name: round(end - t, 3) for (name, t), end in zip(marks, ends, strict=True)}


@dataclass(frozen=True)
class Facilities:
    """The facilities of a run, after every update (the facilities stages' result).

    Attributes
    ----------
    table : geopandas.GeoDataFrame
        Every facility, with its snapping columns.
    rejects : pandas.DataFrame
        Planner-file rows not used, with the reason.
    updates : list of dict
        What each update file did (added, replaced, removed, rejected).
    counts : dict
        Facilities read, classified and rejected (for the summary).
    entries : geopandas.GeoDataFrame, optional
        Where area facilities are entered (:func:`circles.entries.area_entries`); None
        before the entries stage.
    datum : list of dict
        The datum check of each planner file with points in China
        (:meth:`circles.datum.DatumFit.doc`).
    """

    table: gpd.GeoDataFrame
    rejects: pd.DataFrame
    updates: list[dict[str, Any]]
    counts: dict[str, int]
    entries: gpd.GeoDataFrame | None = None
    datum: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class StudyAccess:
    """What the access stage found.

    Attributes
    ----------
    minutes : pandas.DataFrame
        Minutes per node (rows) to each category's nearest facility (columns).
    counts : dict
        Category -> ``(n_nodes, n_levels)`` facilities within each level.
    keys : dict
        Category -> cache key of its minutes and counts.
    recomputed : list of str
        Categories computed in this run (the others were read from the cache).
    profiles : dict
        Category -> walking profile name.
    costs : dict
        Walking profile name -> seconds per edge ``(n_edges, 2)``.
    """

    minutes: pd.DataFrame
    counts: dict[str, np.ndarray]
    keys: dict[str, str]
    recomputed: list[str]
    profiles: dict[str, str]
    costs: dict[str, np.ndarray]


@dataclass(frozen=True)
class Residents:
    """Who lives where: what the residents stage (:mod:`circles.population`) found.

    Attributes
    ----------
    node_community : numpy.ndarray
        Community position of each node (-1: none).
    weight : numpy.ndarray
        Residents per node (people, or metres of street as a stand-in).
    elderly : numpy.ndarray, optional
        Residents aged 60+ per node (None: not known).
    basis : str
        What the residents rest on (``residents_basis``).
    info : dict
        Placement counts for the summary.
    key : str
        Cache key.
    """

    node_community: np.ndarray
    weight: np.ndarray
    elderly: np.ndarray | None
    basis: str
    info: dict[str, Any]
    key: str

    def weights_for(self, category: str, elderly_categories: Any) -> np.ndarray:
        """The residents a category's coverage counts: the elderly residents for an
        elderly category where they are known, otherwise all residents."""
        if category in set(elderly_categories) and self.elderly is not None:
            return self.elderly
        return self.weight


@dataclass
class StudyResult:
    """Everything a run computed (also written to disk by :mod:`circles.outputs`).

    Attributes
    ----------
    config : StudyConfig
    network : WalkNetwork
    categories : list of str
        Category ids in profile order.
    labels : dict
        Category id -> {"en": ..., "zh": ...}.
    facilities : geopandas.GeoDataFrame
        All facilities with snapping columns.
    rejects : pandas.DataFrame
        Planner-file rows not used, with reasons.
    node_minutes : pandas.DataFrame
        Minutes per node (rows) and category (columns); inf beyond the cut-off.
    node_counts : dict
        Category -> ``(n_nodes, n_levels)`` counts of facilities within each level.
    communities : geopandas.GeoDataFrame
        Coverage table (see :func:`circles.coverage.coverage_table`).
    isochrones : geopandas.GeoDataFrame, optional
        Community isochrones (EPSG:4326).
    service_areas_source : optional
        Where the :attr:`service_areas` property comes from: the layer, or the run's
        per-category service areas, read or drawn on first use.
    summary : dict
        Counts and notes, also written to ``summary.json``.
    node_weight : numpy.ndarray, optional
        Residents per node.
    outputs : dict
        Output name -> path written (or kept unchanged) by the run.
    node_community : numpy.ndarray, optional
        Community position per node (-1: none).
    manifest : dict
        What ``manifest.json`` records: inputs with SHA-256, parameters, package
        versions, timestamps, facility counts, categories recomputed and reused.
    entries : geopandas.GeoDataFrame, optional
        Where area facilities are entered (:func:`circles.entries.area_entries`).
    edges : geopandas.GeoDataFrame, optional
        Minutes along every street segment, cut at the levels (the ``edges`` layer,
        :mod:`circles.streets`).
    access : StudyAccess, optional
        The access stage (walking profile and edge seconds per category), for analyses
        that rerun the engine (:mod:`circles.siting`, :mod:`circles.robustness`).
    residents : Residents, optional
        The residents stage (elderly residents per node where known).
    node_choice : dict
        Extra per-node columns of the ``nodes`` layer by category (:mod:`circles.choice`).
    """

    config: StudyConfig
    network: WalkNetwork
    categories: list[str]
    labels: dict[str, dict[str, str]]
    facilities: gpd.GeoDataFrame
    rejects: pd.DataFrame
    node_minutes: pd.DataFrame
    node_counts: dict[str, np.ndarray]
    communities: gpd.GeoDataFrame
    isochrones: gpd.GeoDataFrame | None = None
    service_areas_source: Any = None
    summary: dict[str, Any] = field(default_factory=dict)
    node_weight: np.ndarray | None = None
    outputs: dict[str, str] = field(default_factory=dict)
    node_community: np.ndarray | None = None
    manifest: dict[str, Any] = field(default_factory=dict)
    entries: gpd.GeoDataFrame | None = None
    edges: gpd.GeoDataFrame | None = None
    access: StudyAccess | None = None
    residents: Residents | None = None
    node_choice: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)

    @classmethod
    def from_stages(
        cls,
        cfg: StudyConfig,
        network: WalkNetwork,
        labels: dict[str, dict[str, str]],
        facilities: Facilities,
        access: StudyAccess,
        residents: Residents,
        communities: gpd.GeoDataFrame,
        isochrones: Any,
        service_areas: Any,
        edges: Any = None,
    ) -> StudyResult:
        """The result of a run from what its stages returned.

        ``isochrones`` is the isochrones stage's keyed layer (or None); ``service_areas``
        its :class:`circles.isochrones.ServiceAreas`; ``communities`` the coverage table;
        ``edges`` the streets stage's keyed layer (or None).
        """
        return cls(
            cfg,
            network,
            list(access.minutes.columns),
            labels,
            facilities.table,
            facilities.rejects,
            access.minutes,
            access.counts,
            communities,
            isochrones.value if isochrones is not None else None,
            service_areas,
            node_weight=residents.weight,
            node_community=residents.node_community,
            entries=facilities.entries,
            edges=edges.value if edges is not None else None,
            access=access,
            residents=residents,
        )

    @property
    def service_areas(self) -> gpd.GeoDataFrame | None:
        """Service areas (EPSG:4326), or None when not drawn.

        After an update that changed a GeoPackage in place, the categories it did not
        redraw are read from the cache on first use.
        """
        src = self.service_areas_source
        if src is not None and not isinstance(src, gpd.GeoDataFrame):
            src = self.service_areas_source = src.get()
        return src

    @service_areas.setter
    def service_areas(self, value: gpd.GeoDataFrame | None) -> None:
        self.service_areas_source = value


def roundtrip(df: pd.DataFrame) -> Any:
    """``df`` through (Geo)Parquet in memory: the canonical form of every cached table.

    Fresh and cached tables then have the same dtypes and missing-value markers, so a
    run that reuses the cache writes exactly what a run that computes everything writes.
    """
    return frame_roundtrip(df)


def with_columns(table: gpd.GeoDataFrame, cols: dict[str, np.ndarray]) -> gpd.GeoDataFrame:
    """``table`` with ``cols`` added (or replaced) in one step (no fragmented frame)."""
    keep = table.drop(columns=[c for c in cols if c in table.columns])
    extra = pd.DataFrame(cols, index=keep.index)
    return gpd.GeoDataFrame(
        pd.concat([keep, extra], axis=1), geometry=table.geometry.name, crs=table.crs
    )


def normalise_rejects(rej: pd.DataFrame) -> pd.DataFrame:
    """Rejects with every non-numeric column as text (or missing), so they round-trip."""
    out = rej.reset_index(drop=True).copy()
    for c in out.columns:
        s = out[c]
        if s.dtype.kind in "biuf":
            continue
        out[c] = pd.Series(
            [None if (x is None or (isinstance(x, float) and x != x)) else str(x) for x in s],
            dtype=object,
            index=out.index,
        )
    out.columns = [str(c) for c in out.columns]
    return out


def finite_or_nan(a: pd.DataFrame) -> pd.DataFrame:
    """``a`` with infinite values as NaN (missing in every output format).

    Only float columns can hold them; the others (geometry, text) are not scanned, which
    ``DataFrame.replace`` would do object by object (seconds on a county's streets).
    Returns a new frame (sharing the unchanged columns).
    """
    out = a.copy(deep=False)
    for name in a.columns[[dt.kind == "f" for dt in a.dtypes]]:
        v = a[name].to_numpy()
        bad = np.isinf(v)
        if bad.any():
            out[name] = np.where(bad, np.nan, v)
    return out


def level_key(level: float) -> str:
    """A level in minutes as it appears in column names: ``5``, ``7.5``."""
    return str(int(level)) if float(level).is_integer() else str(level)


def utc_now() -> str:
    """The time now in UTC, ISO 8601 to the second."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def json_default(o: Any) -> Any:
    """``json.dumps`` default: numpy numbers and arrays; non-finite floats as null."""
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return None if not np.isfinite(o) else float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def to_json(doc: Any) -> str:
    """``doc`` as indented strict JSON (NaN and infinities as null), the way every JSON
    output is written."""
    return io.json_text(doc, ensure_ascii=False, indent=2, default=json_default)
