"""Where to build next: sites that bring the most residents within a walking threshold.

``circles suggest study.toml --category elderly_canteen --count 5`` (:func:`suggest`):

1. runs the study without writing it (everything upstream reused from the cache);
2. takes the residents not yet within the threshold of the category (the last walking
   level unless ``minutes`` is given) as demand: population where the study has it,
   elderly residents for elderly categories where they are known, otherwise metres of
   street, as coverage itself counts them; existing facilities stay where they are;
3. takes candidate sites: network nodes thinned to one per ``spacing_m`` grid cell
   (the node nearest the cell's centre), or a planner's list (vacant plots, community
   buildings) read like any facility file (CSV, XLSX, GeoJSON, GeoPackage; any datum);
4. solves the maximal covering problem (:mod:`circles.covering`): greedy with lazy
   evaluation by default, or exactly with spopt (``method="exact"``);
5. writes the suggestions as a facility file that ``circles update`` accepts,
   ``<output_dir>/<study>/suggestions/<name>.csv``, the prediction per site
   (:data:`SITE_COLUMNS`), ``<output_dir>/<study>/suggestions/<name>_sites.csv``, and a
   map, ``<maps_dir>/<study>/suggestions/<name>.html``, together (one transaction).

The prediction (newly covered residents, the coverage after each site) is computed
from the file as written, read back and snapped with the very functions ``circles
update`` uses, so applying the file gives exactly the predicted coverage.

With a capacity (a ``capacity`` column in the candidate file, seats or places, or one
``capacity`` for all sites), each suggestion's catchment (the residents within the
threshold whose nearest facility it is, once all suggestions are built) is compared to
it and a warning names the sites whose catchment is larger.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from scipy.spatial import cKDTree

from circles import covering, io
from circles._errors import ConfigError, InputDataError
from circles.access import AccessGraph, nearest_by_group
from circles.config import FacilityFile, StudyConfig, check_study
from circles.coverage import BASIS_STREET_LENGTH, coverage_table
from circles.datum import check_mode
from circles.facilities import (
    STATUS_SNAPPED,
    datum_fits,
    read_facility_file,
    report_datum,
    snap_at_points,
    study_area,
    study_categories,
)
from circles.ledger import read_update
from circles.pipeline import StudyResult, run
from circles.result import level_key
from circles.settings import WGS84
from circles.transaction import Transaction, study_lock

logger = logging.getLogger(__name__)

#: Default spacing of candidate network nodes (metres): one candidate per grid cell.
CANDIDATE_SPACING_M = 100.0

#: Fastest walking relative to the profile's flat speed (Tobler downhill at -5 % is
#: 1.19x): candidates farther than this allows from every demand point are left out.
SPEED_MARGIN = 1.25

#: Column of a candidate file holding each site's capacity (seats, places).
CAPACITY_COLUMN = "capacity"

METHODS = ("greedy", "exact")

#: Columns of ``<name>_sites.csv``, the prediction per suggested site: rank, the site's
#: id (as in the facility file), its location (WGS84 degrees), the community it sits in,
#: residents newly within the threshold, the city-wide share within the threshold after
#: it and the earlier sites, its catchment (residents within the threshold who have it
#: nearest), capacity (seats, places) and whether the catchment exceeds it.
SITE_COLUMNS = (
    "rank",
    "id",
    "lon",
    "lat",
    "community_id",
    "community",
    "newly_covered",
    "share_after",
    "catchment",
    CAPACITY_COLUMN,
    "over_capacity",
)


@dataclass
class Suggestion:
    """What :func:`suggest` found and wrote.

    Attributes
    ----------
    category : str
    minutes : float
        The walking threshold (minutes).
    sites : geopandas.GeoDataFrame
        One row per suggested site, in the order chosen: ``rank``, ``id``, ``name``,
        ``lon``, ``lat``, ``community_id``, ``community`` (the community it sits in),
        ``newly_covered`` (residents newly within the threshold, in the study's
        residents basis), ``share_after`` (city-wide share within the threshold after
        this and the earlier sites, as ``summary.json`` computes it), ``catchment``,
        ``capacity``, ``over_capacity``.
    share_before : float
        City-wide share within the threshold before any suggestion.
    communities : geopandas.GeoDataFrame
        Predicted coverage per community after all suggestions (``<cat>_share_<level>``,
        median, p90 and flag columns, as the run computes them).
    choice : circles.covering.CoverChoice
    n_candidates : int
        Candidate sites considered.
    rejects : pandas.DataFrame
        Candidate-file rows not used, with the reason.
    residents_basis : str
    outputs : dict
        ``facility_file``, ``sites_csv`` (:data:`SITE_COLUMNS`) and ``map_html`` paths.
    """

    category: str
    minutes: float
    sites: gpd.GeoDataFrame
    share_before: float
    communities: gpd.GeoDataFrame
    choice: covering.CoverChoice
    n_candidates: int
    rejects: pd.DataFrame
    residents_basis: str
    outputs: dict[str, str] = field(default_factory=dict)

    @property
    def facility_file(self) -> Path:
        """The suggestion as a facility file for ``circles update``."""
        return Path(self.outputs["facility_file"])


def candidate_nodes(x: np.ndarray, y: np.ndarray, *, spacing_m: float) -> np.ndarray:
    """Positions of nodes thinned to one per ``spacing_m`` square cell (metric x/y): the
    node nearest each occupied cell's centre (the lowest position among equals)."""
    if not (np.isfinite(spacing_m) and spacing_m > 0):
        raise ConfigError(f"spacing_m must be a positive number of metres, got {spacing_m!r}")
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if x.size == 0:
        return np.zeros(0, dtype=np.int64)
    cx = np.floor((x - x.min()) / spacing_m).astype(np.int64)
    cy = np.floor((y - y.min()) / spacing_m).astype(np.int64)
    d = np.hypot(x - (x.min() + (cx + 0.5) * spacing_m), y - (y.min() + (cy + 0.5) * spacing_m))
    order = np.lexsort((np.arange(x.size), d, cy, cx))
    cell = cx[order] * (int(cy.max()) + 1) + cy[order]
    first = np.r_[True, cell[1:] != cell[:-1]]
    return np.sort(order[first])


def city_share(table: pd.DataFrame, category: str, level: float) -> float:
    """City-wide share within ``level`` minutes, as ``summary.json`` reports it: the
    communities' shares weighted by their residents."""
    sh = table[f"{category}_share_{level_key(level)}"].to_numpy(float)
    res = table["residents"].to_numpy(float)
    total = float(res.sum())
    ok = np.isfinite(sh)
    return float((sh[ok] * res[ok]).sum() / total) if total > 0 else float("nan")


def _slug(text: str) -> str:
    s = re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._")
    if not s:
        raise ConfigError(f"suggestion name {text!r} has no usable characters (A-Z, 0-9, _ . -)")
    return s


@dataclass(frozen=True)
class _Setting:
    """The category's walking setting in a study result."""

    category: str
    minutes: float
    speed_m_s: float
    graph: AccessGraph
    weight: np.ndarray
    elderly: bool


def _setting(
    result: StudyResult, category: str, minutes: float | None, elderly_ids: list[str]
) -> _Setting:
    cfg = result.config
    acc = result.access
    if acc is None or result.node_community is None:
        raise InputDataError("the study result has no access stage (run the study first)")
    if category not in result.categories:
        raise ConfigError(
            f"category {category!r} is not a category of this study; use one of {result.categories}"
        )
    levels = [float(x) for x in cfg.walk.levels_minutes]
    mins = levels[-1] if minutes is None else float(minutes)
    if mins not in levels:
        raise ConfigError(f"minutes must be one of the study's levels {levels}, got {minutes!r}")
    pname = acc.profiles[category]
    speed = float(cfg.walk.walk_profile(pname).speed_m_s)
    graph = AccessGraph.from_network(result.network, acc.costs[pname])
    res = result.residents
    if res is None:
        raise InputDataError("the study result has no residents stage (run the study first)")
    elderly = category in elderly_ids and res.elderly is not None
    weight = np.asarray(res.weights_for(category, elderly_ids), float)
    return _Setting(category, mins, speed, graph, weight, elderly)


def _demand(result: StudyResult, s: _Setting) -> np.ndarray:
    """Node positions not yet within the threshold, inside a community, with residents."""
    assert result.node_community is not None
    m = result.node_minutes[s.category].to_numpy(float)
    return np.flatnonzero((result.node_community >= 0) & (s.weight > 0) & ~(m <= s.minutes))


def _node_candidates(
    result: StudyResult, s: _Setting, demand: np.ndarray, spacing_m: float
) -> gpd.GeoDataFrame:
    net = result.network
    pos = candidate_nodes(net.x, net.y, spacing_m=spacing_m)
    if demand.size and pos.size:
        reach_m = 60.0 * s.minutes * s.speed_m_s * SPEED_MARGIN + 10.0
        tree = cKDTree(np.column_stack([net.x[demand], net.y[demand]]))
        near = tree.query_ball_point(np.column_stack([net.x[pos], net.y[pos]]), r=reach_m)
        pos = pos[np.array([len(v) > 0 for v in near], dtype=bool)]
    else:
        pos = pos[:0]
    return gpd.GeoDataFrame(
        {
            "candidate": [f"node:{int(i)}" for i in net.node_id[pos]],
            CAPACITY_COLUMN: np.nan,
        },
        geometry=gpd.points_from_xy(net.lon[pos], net.lat[pos]),
        crs=WGS84,
    )


def _file_candidates(
    result: StudyResult,
    spec: FacilityFile,
    category: str,
    base_dir: str,
    *,
    datum_check: str = "warn",
) -> tuple[gpd.GeoDataFrame, pd.DataFrame]:
    """A candidate file's sites (EPSG:4326) and rejected rows.

    Its points get the datum check of the study's facility files
    (:func:`circles.facilities.datum_fits`): ``datum_check`` ``warn`` warns when they sit
    on the network clearly better in another datum than ``spec.coord_system``,
    ``strict`` stops (:class:`~circles._errors.InputDataError`), ``off`` skips it.
    """
    path = spec.path if os.path.isabs(spec.path) else os.path.join(base_dir, spec.path)
    spec = replace(
        spec,
        path=path,
        category=category,
        attribute_columns=(*spec.attribute_columns, CAPACITY_COLUMN),
    )
    fac, rej = read_facility_file(spec, categories=[category], area=study_area(result.network))
    if check_mode(datum_check) != "off" and len(fac):
        points = gpd.GeoDataFrame(
            {"source": fac["source"].to_numpy()},
            geometry=fac.geometry.representative_point().to_numpy(),
            crs=WGS84,
        )
        report_datum(datum_fits(result.network, points, [spec]), mode=datum_check)
    out = gpd.GeoDataFrame(
        {
            "candidate": fac["facility_id"].astype(str).to_numpy(),
            "candidate_name": fac["name"].to_numpy(),
            CAPACITY_COLUMN: (
                fac[CAPACITY_COLUMN].to_numpy(float) if CAPACITY_COLUMN in fac else np.nan
            ),
        },
        geometry=fac.geometry.to_numpy(),
        crs=WGS84,
    )
    return out, rej


def _snapped(result: StudyResult, gdf: gpd.GeoDataFrame) -> tuple[gpd.GeoDataFrame, pd.DataFrame]:
    """Candidates snapped like facilities; the unsnapped ones as rejects."""
    snapped = snap_at_points(result.network, gdf, max_snap_m=result.config.walk.max_snap_m)
    ok = (snapped["status"] == STATUS_SNAPPED).to_numpy()
    rej = pd.DataFrame(
        {
            "source": "candidates",
            "row": np.flatnonzero(~ok) + 1,
            "facility_id": snapped.loc[~ok, "candidate"].to_numpy(),
            "reason": "candidate not on the walking network (" + snapped.loc[~ok, "status"] + ")",
        }
    )
    return snapped.loc[ok].reset_index(drop=True), rej


def _arrays(fac: pd.DataFrame, speed_m_s: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (
        fac["edge"].to_numpy(np.int64),
        fac["frac"].to_numpy(float),
        fac["snap_m"].to_numpy(float) / speed_m_s,
    )


def predicted_minutes(result: StudyResult, s: _Setting, sites: pd.DataFrame) -> list[np.ndarray]:
    """Minutes per node to the category's nearest facility after adding the first 1, 2,
    ... of ``sites`` (snapped), the existing facilities kept."""
    cfg = result.config
    limit_s = 60.0 * cfg.walk.max_minutes
    edge, frac, acc = _arrays(sites, s.speed_m_s)
    now = result.node_minutes[s.category].to_numpy(float)
    out = []
    for j in range(len(sites)):
        near = nearest_by_group(
            s.graph,
            edge[j : j + 1],
            frac[j : j + 1],
            acc[j : j + 1],
            np.zeros(1, dtype=np.int64),
            limit_s=limit_s,
            groups=[0],
        )
        now = np.minimum(now, near[0][0] / 60.0)
        out.append(now)
    return out


def _catchments(result: StudyResult, s: _Setting, sites: pd.DataFrame) -> np.ndarray:
    """Residents within the threshold whose nearest facility is each site (all built)."""
    assert result.node_community is not None
    fac = result.facilities
    old = fac[(fac["category"] == s.category) & (fac["status"] == STATUS_SNAPPED)]
    parts = [old[["edge", "frac", "snap_m"]], sites[["edge", "frac", "snap_m"]]]
    both = pd.concat(parts, ignore_index=True)
    edge, frac, acc = _arrays(both, s.speed_m_s)
    near = nearest_by_group(
        s.graph,
        edge,
        frac,
        acc,
        np.zeros(edge.size, dtype=np.int64),
        limit_s=60.0 * result.config.walk.max_minutes,
        groups=[0],
        with_nearest=True,
    )
    sec, who = near[0]
    inside = (result.node_community >= 0) & (sec / 60.0 <= s.minutes)
    k = len(old)
    out = np.zeros(len(sites))
    for j in range(len(sites)):
        out[j] = float(s.weight[inside & (who == k + j)].sum())
    return out


def _community_of(result: StudyResult, points: gpd.GeoSeries) -> tuple[list[Any], list[Any]]:
    comm = result.communities
    polys = np.asarray(comm.to_crs(WGS84).geometry.to_numpy())
    tree = shapely.STRtree(polys)
    pi, ci = tree.query(np.asarray(points.to_numpy()), predicate="intersects")
    first: dict[int, int] = {}
    for p, c in zip(pi.tolist(), ci.tolist(), strict=True):
        first[p] = min(c, first.get(p, c))
    ids = comm["community_id"].to_numpy()
    names = comm["name"].to_numpy()
    cid = [ids[first[i]] if i in first else None for i in range(len(points))]
    cname = [names[first[i]] if i in first else None for i in range(len(points))]
    return cid, cname


def _facility_file(category: str, name: str, chosen: gpd.GeoDataFrame) -> pd.DataFrame:
    """The suggestion as a facility (update) file: one ``add`` row per site."""
    n = len(chosen)
    return pd.DataFrame(
        {
            "id": [f"suggested-{name}-{i + 1}" for i in range(n)],
            "name": [f"Suggested {category} {i + 1} ({name})" for i in range(n)],
            "category": category,
            "action": "add",
            "lon": chosen.geometry.x.to_numpy(),
            "lat": chosen.geometry.y.to_numpy(),
            "rank": np.arange(1, n + 1),
            "candidate": chosen["candidate"].to_numpy(),
            CAPACITY_COLUMN: chosen[CAPACITY_COLUMN].to_numpy(float),
        }
    )


def suggest(
    cfg: StudyConfig,
    *,
    category: str,
    count: int,
    candidates: FacilityFile | str | os.PathLike[str] | None = None,
    spacing_m: float = CANDIDATE_SPACING_M,
    minutes: float | None = None,
    method: str = "greedy",
    capacity: float | None = None,
    name: str | None = None,
    time_limit_s: float | None = None,
    progress: Any = None,
    wait_s: float = 0.0,
) -> Suggestion:
    """Suggest ``count`` new sites for ``category`` and write them as a facility file.

    Parameters
    ----------
    cfg : StudyConfig
        The study (a study with ``[[areas]]`` must be narrowed to one with
        :func:`circles.config.select_area`).
    category : str
        The facility category, e.g. ``"elderly_canteen"``.
    count : int
        Number of sites wanted (fewer are suggested when no candidate covers anyone new).
    candidates : FacilityFile or path, optional
        A planner's candidate sites (any facility file; its ``capacity`` column is read),
        datum-checked as the study's facility files are (``[facilities] datum_check``:
        a warning, or with ``"strict"`` an :class:`~circles._errors.InputDataError`,
        when its points fit the network clearly better in another datum than its
        ``coord_system``). Default: network nodes, one per ``spacing_m`` grid cell.
    spacing_m : float, default 100
        Grid spacing of candidate network nodes, metres.
    minutes : float, optional
        The walking threshold, one of the study's levels (default: the last, 15).
    method : {"greedy", "exact"}
        Greedy with lazy evaluation, or spopt's exact solution
        (``pip install "circles[optimize]"``).
    capacity : float, optional
        Capacity of every suggested site (seats, places), when the candidate file has no
        ``capacity`` column.
    name : str, optional
        Name of the suggestion (file names); default ``<category>_<count>``.
    time_limit_s : float, optional
        Seconds the exact solver may take.
    progress : callable, optional
        Stage messages.
    wait_s : float, default 0
        Seconds to wait for another process that holds the study.

    Returns
    -------
    Suggestion

    Raises
    ------
    ConfigError
        Unknown category, method or level; the exact solver is not installed.
    """
    if method not in METHODS:
        raise ConfigError(f"method must be one of {METHODS}, got {method!r}")
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ConfigError(f"count must be a positive integer, got {count!r}")
    if capacity is not None and not (np.isfinite(capacity) and capacity > 0):
        raise ConfigError(f"capacity must be a positive number, got {capacity!r}")
    if cfg.areas and cfg.area is None:
        raise ConfigError("this study has [[areas]]; suggest sites for one area (select_area)")
    label = _slug(name or f"{category}_{count}")
    say = progress or (lambda msg: None)
    profile = check_study(cfg)
    _, _, _, elderly_ids = study_categories(profile, cfg.facilities.categories)
    with study_lock(cfg.out_dir, study=cfg.study.name, wait_s=wait_s):
        result = run(cfg, write=False, cache=True, progress=progress)
        s = _setting(result, category, minutes, elderly_ids)
        demand = _demand(result, s)
        if candidates is None:
            cand = _node_candidates(result, s, demand, spacing_m)
            rejects = pd.DataFrame(columns=["source", "row", "facility_id", "reason"])
        else:
            spec = (
                candidates
                if isinstance(candidates, FacilityFile)
                else FacilityFile(path=str(candidates))
            )
            cand, rejects = _file_candidates(
                result, spec, category, cfg.base_dir, datum_check=cfg.facilities.datum_check
            )
        cand, unsnapped = _snapped(result, cand)
        rejects = pd.concat([rejects, unsnapped], ignore_index=True)
        say(
            f"{demand.size} demand nodes beyond {s.minutes:g} min of {category}; "
            f"{len(cand)} candidate sites"
        )
        edge, frac, acc = _arrays(cand, s.speed_m_s)
        sets = covering.cover_sets(s.graph, edge, frac, acc, demand, minutes=s.minutes)
        w = s.weight[demand]
        if method == "greedy":
            choice = covering.greedy_cover(sets, w, count)
        else:
            choice = covering.exact_cover(sets, w, count, time_limit_s=time_limit_s)
        if choice.chosen.size < count:
            logger.warning(
                "%s: only %d of %d sites bring anyone new within %g minutes",
                category,
                choice.chosen.size,
                count,
                s.minutes,
            )
        chosen = cand.iloc[choice.chosen].reset_index(drop=True)
        if capacity is not None:
            chosen[CAPACITY_COLUMN] = chosen[CAPACITY_COLUMN].fillna(float(capacity))
        table = _facility_file(category, label, chosen)
        levels = result.config.walk.levels_minutes
        with Transaction({"data": cfg.out_dir, "maps": cfg.map_dir}) as tx:
            rel = f"suggestions/{label}.csv"
            staged = tx.path("data", rel)
            io.write_csv(table, staged)
            # read back and snap exactly as `circles update` will
            rows, _, bad = read_update(
                FacilityFile(path=str(staged)),
                categories=result.categories,
                area=study_area(result.network),
            )
            if len(bad) or len(rows) != len(table):
                raise InputDataError(
                    f"the suggestion file cannot be read back whole ({len(bad)} rows rejected)"
                )
            sites = snap_at_points(result.network, rows, max_snap_m=result.config.walk.max_snap_m)
            steps = predicted_minutes(result, s, sites)
            base = result.communities[["community_id", "name", "geometry"]]
            nc = result.node_community
            assert nc is not None

            def cover(m: np.ndarray) -> gpd.GeoDataFrame:
                return coverage_table(
                    base,
                    nc,
                    s.weight,
                    {category: m},
                    levels_minutes=levels,
                    flag_threshold=cfg.coverage.flag_threshold,
                    residents_basis=str(result.summary.get("residents_basis", "")),
                )

            before_t = cover(result.node_minutes[category].to_numpy(float))
            after_t = [cover(m) for m in steps]
            # the city-wide share weights communities by all residents, as the summary does
            for t in [before_t, *after_t]:
                t["residents"] = result.communities["residents"].to_numpy()
            share_before = city_share(before_t, category, s.minutes)
            cid, cname = _community_of(result, sites.geometry)
            out = gpd.GeoDataFrame(
                {
                    "rank": np.arange(1, len(sites) + 1),
                    "id": sites["facility_id"].to_numpy(),
                    "name": sites["name"].to_numpy(),
                    "category": category,
                    "lon": sites.geometry.x.to_numpy(),
                    "lat": sites.geometry.y.to_numpy(),
                    "community_id": cid,
                    "community": cname,
                    "newly_covered": _newly_covered(result, s, steps),
                    "share_after": [city_share(t, category, s.minutes) for t in after_t],
                    "snap_m": sites["snap_m"].to_numpy(float),
                    CAPACITY_COLUMN: table[CAPACITY_COLUMN].to_numpy(float),
                },
                geometry=sites.geometry.to_numpy(),
                crs=WGS84,
            )
            out["catchment"] = _catchments(result, s, sites) if len(sites) else np.zeros(0)
            basis = str(result.summary.get("residents_basis", ""))
            people = basis != BASIS_STREET_LENGTH
            cap = out[CAPACITY_COLUMN].to_numpy(float)
            over = np.where(np.isfinite(cap), out["catchment"].to_numpy() > cap, False)
            # unknown (None) where residents are not people and a capacity was given
            out["over_capacity"] = (
                over if people else [None if np.isfinite(c) else False for c in cap]
            )
            if np.isfinite(cap).any() and not people:
                logger.warning(
                    "capacity cannot be checked: residents are %s, not people; give the "
                    "study population data ([population])",
                    basis,
                )
            elif over.any() and people:
                for _, r in out[over].iterrows():
                    logger.warning(
                        "suggested site %s: %.0f residents within %g min have it nearest, "
                        "more than its capacity %.0f",
                        r["id"],
                        r["catchment"],
                        s.minutes,
                        r[CAPACITY_COLUMN],
                    )
            sites_rel = f"suggestions/{label}_sites.csv"
            io.write_csv(pd.DataFrame(out[list(SITE_COLUMNS)]), tx.path("data", sites_rel))
            predicted = after_t[-1] if after_t else before_t
            sugg = Suggestion(
                category=category,
                minutes=s.minutes,
                sites=out,
                share_before=share_before,
                communities=predicted,
                choice=choice,
                n_candidates=len(cand),
                rejects=rejects,
                residents_basis=basis,
            )
            if cfg.map.enabled:
                from circles.scenario_maps import suggestion_map

                map_rel = f"suggestions/{label}.html"
                suggestion_map(result, sugg, tx.path("maps", map_rel))
                sugg.outputs["map_html"] = str(tx.final("maps", map_rel))
            tx.commit()
        sugg.outputs["facility_file"] = str(tx.final("data", rel))
        sugg.outputs["sites_csv"] = str(tx.final("data", sites_rel))
        say(
            f"{len(out)} sites: {category} within {s.minutes:g} min "
            f"{100 * share_before:.1f}% -> "
            f"{100 * (out['share_after'].iloc[-1] if len(out) else share_before):.1f}%"
        )
        return sugg


def _newly_covered(result: StudyResult, s: _Setting, steps: list[np.ndarray]) -> np.ndarray:
    """Residents (the category's weights) each site newly brings within the threshold."""
    assert result.node_community is not None
    inside = result.node_community >= 0
    prev = result.node_minutes[s.category].to_numpy(float) <= s.minutes
    out = []
    for m in steps:
        now = m <= s.minutes
        out.append(float(s.weight[inside & now & ~prev].sum()))
        prev = now
    return np.asarray(out, dtype=float)
