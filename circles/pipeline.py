"""A study, run end to end: the chain of stages behind ``circles run``.

:func:`run` checks the whole configuration, takes the study's lock, and calls the
stages in order, each in the module of its subject, each cached by content
(:meth:`circles.cache.Cache.memo`)::

    network       circles.sources      (+ circles.areas for one area of a study)
    communities   circles.communities
    terrain       circles.terrain      (with [walk] dem)
    facilities    circles.facilities   (+ updates: circles.ledger)
    entries       circles.entries      (where area facilities are entered)
    access        circles.access
    residents     circles.population
    isochrones    circles.isochrones   (community isochrones and service areas)
    coverage      circles.coverage
    cycling       circles.cycling      (with [cycling] enabled)
    streets       circles.streets      (minutes along every street segment)
    summary       circles.summary
    outputs       circles.outputs      (one transaction: circles.transaction)

``docs/architecture.md`` describes the modules, what each may import and the data that
flows between the stages. The names users import from here stay here:
:func:`run`, :class:`StudyResult`, :func:`summary_table` and the stage functions of
earlier versions (re-exported; :mod:`circles.compat` accepts their earlier calls, with
the whole ``StudyConfig`` first).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from circles import (
    access,
    areas,
    choice,
    communities,
    coverage,
    cycling,
    entries,
    equity,
    facilities,
    isochrones,
    ledger,
    outputs,
    population,
    robustness,
    sources,
    streets,
    studymap,
    summary,
    terrain,
)
from circles._errors import ConfigError
from circles.access import compute_access
from circles.areas import ACROSS_BORDER
from circles.cache import Cache
from circles.communities import LEFT_OUT, OVERLAPS
from circles.compat import (
    MANIFEST_PACKAGES,
    access_by_profile,
    category_profiles,
    compute_isochrones,
    load_communities,
    load_facilities,
    node_weights,
    prepare_terrain,
    read_centres,
)
from circles.config import StudyConfig, check_study, select_area
from circles.cycling import cycling_access, link_to_network
from circles.facilities import profile_keys
from circles.outputs import coverage_long, package_versions, write_map, write_outputs
from circles.report import ReportRequest
from circles.result import (
    PROGRESS_BAR,
    Progress,
    RunContext,
    StudyResult,
    noop,
    roundtrip,
)
from circles.sources import network_source
from circles.summary import summary_table
from circles.transaction import recover, study_lock

logger = logging.getLogger(__name__)

__all__ = [
    "MANIFEST_PACKAGES",
    "PROGRESS_BAR",
    "Progress",
    "StudyResult",
    "access_by_profile",
    "category_profiles",
    "compute_access",
    "compute_isochrones",
    "coverage_long",
    "cycling_access",
    "link_to_network",
    "load_communities",
    "load_facilities",
    "network_source",
    "node_weights",
    "package_versions",
    "prepare_terrain",
    "profile_keys",
    "read_centres",
    "roundtrip",
    "run",
    "summary_table",
    "write_map",
    "write_outputs",
]


def _summary(result: StudyResult, comm: Any, fac0: Any, *stages: Any) -> dict[str, Any]:
    """:func:`circles.summary.study_summary` with what the communities stage left out
    or found overlapping and how each facility file was read."""
    left_out, overlaps, across = (
        comm.value.attrs.get(k) for k in (LEFT_OUT, OVERLAPS, ACROSS_BORDER)
    )
    files = fac0.value.get("files", [])
    return summary.study_summary(
        result,
        *stages,
        left_out=left_out,
        overlaps=overlaps,
        files=files,
        across_border=across,
    )


def run(
    cfg: StudyConfig,
    *,
    progress: Progress | None = None,
    write: bool = True,
    cache: bool | None = None,
    area: str | None = None,
    report: ReportRequest | None = None,
    wait_s: float = 0.0,
) -> StudyResult:
    """Run a study end to end, reusing cached upstream work.

    Parameters
    ----------
    cfg : StudyConfig
        From :func:`circles.config.load_config` or :func:`circles.config.default_config`.
    progress : callable, optional
        Called with a short message at each stage (the CLI prints them).
    write : bool, default True
        Write the outputs and ``manifest.json``, all together (:mod:`circles.outputs`).
    cache : bool, optional
        Use the cache under ``<output_dir>/<study>/.cache/`` (default: as ``write``).
    area : str, optional
        The area to run, for a study with ``[[areas]]`` (``circles batch`` runs them all).
    report : ReportRequest, optional
        Also write the indicator report into ``report/`` (``circles report``).
    wait_s : float, default 0
        Seconds to wait for another process that holds the study (0: stop at once).

    Returns
    -------
    StudyResult
        ``result.manifest`` says which categories were recomputed and which reused.

    Raises
    ------
    ConfigError, DataFileError
        Invalid configuration or missing input files (found before any work).
    StudyBusyError, OutputError
        Another process holds the study; an output cannot be written (nothing changed).
    """
    cfg = _select_area(cfg, area)
    profile = check_study(cfg)  # the whole configuration and every input file, first
    with _lock(cfg, write=write, wait_s=wait_s):
        store = Cache(cfg.cache_dir if (write if cache is None else cache) else None)
        ctx = RunContext(store, say=progress or noop, base_dir=cfg.base_dir)
        w = cfg.walk
        source, net = sources.study_network(cfg.network, ctx)
        net, area_ = areas.study_area(cfg, net, source, ctx)
        profile, cats, labels, elderly = facilities.study_categories(
            profile, cfg.facilities.categories
        )
        cfg = _computed_only(cfg, cats)
        comm = communities.study_communities(cfg.communities, net, source, w, area_, ctx)
        net, elevation = terrain.study_terrain(net, w, ctx)
        features = sources.feature_source(cfg, source)
        fac0 = facilities.study_facilities(
            cfg.facilities, net, source, features, profile, cats, w, ctx, area_run=area_ is not None
        )
        upd = ledger.update_entries(cfg)
        check = cfg.facilities.datum_check
        fac = ledger.study_updates(fac0, upd, net, cats, w, ctx, datum_check=check)
        fac = entries.study_entries(fac, net, source, features, w.max_snap_m, ctx)
        profiles = access.category_profiles(w, profile, cats)
        acc = access.study_access(net, fac.table, profiles, w, elevation, ctx, fac.entries)
        res = population.study_residents(net, comm, cfg.population, cfg.communities, source, ctx)
        cost = acc.costs[w.profile]
        iso, sa = isochrones.study_isochrones(
            net, comm, fac.table, res.weight, cost, cfg.isochrones, w, ctx, fac.entries
        )
        sa.start()  # service areas missing from the cache are drawn in a thread from here on
        if write:  # and the map's isochrones (simplified, encoded), beside what follows
            studymap.start_isochrone_part(cfg, iso, ctx.store)
        ctx.stage("coverage")
        table = coverage.study_coverage(
            comm.value, acc.minutes, res, elderly, w.levels_minutes, cfg.coverage
        )
        table, bike = cycling.study_cycling(
            cfg.cycling, cfg.network, w, net.value, fac.table, comm.value, table, res, elderly, ctx
        )
        table, node_choice, docs = _beyond_coverage(
            cfg, net.value, fac, acc, res, elderly, table, ctx
        )
        edges = streets.study_streets(net, fac, acc, w, ctx)
        result = StudyResult.from_stages(
            cfg, net.value, labels, fac, acc, res, table, iso, sa, edges
        )
        result.node_choice = node_choice
        ctx.stage("summary")
        result.summary = _summary(result, comm, fac0, fac, res, acc, bike, area_, elevation, ctx)
        result.summary.update(docs)
        outputs.write_study(
            result, net.key, res, acc, iso, sa, fac, ctx, report=report, write=write, edges=edges
        )
        return result


def _beyond_coverage(
    cfg: StudyConfig,
    network: Any,
    fac: Any,
    acc: Any,
    res: Any,
    elderly: list[str],
    table: Any,
    ctx: RunContext,
) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """The optional stages after coverage (issue 15): choice and decay, the walking-speed
    band, equity. Returns the communities table, the extra node columns per category and
    the sections they add to ``summary.json``."""
    w = cfg.walk
    table, nodes = choice.study_choice(
        cfg.choice, network, fac.table, acc, res, elderly, table, w, ctx, entries=fac.entries
    )
    table, band = robustness.study_robustness(
        cfg.robustness, acc, res, elderly, table, w, cfg.coverage, ctx
    )
    table, fair = equity.study_equity(
        cfg.equity, network, fac.table, acc, res, elderly, table, w, ctx, entries=fac.entries
    )
    docs = {k: v for k, v in (("robustness", band), ("equity", fair)) if v is not None}
    return table, nodes, docs


def _computed_only(cfg: StudyConfig, categories: list[str]) -> StudyConfig:
    """``cfg`` reporting only the run's ``categories``: ``[coverage] always_flag`` and
    ``[cycling] categories`` cut to them (:func:`circles.coverage.computed_only`)."""
    bike = tuple(c for c in cfg.cycling.categories if c in set(categories))
    if cfg.cycling.enabled and bike != tuple(cfg.cycling.categories):
        logger.warning(
            "[cycling] categories %s: only %s are among the run's categories %s and are "
            "timed by bicycle",
            list(cfg.cycling.categories),
            list(bike),
            categories,
        )
    return replace(
        cfg,
        coverage=coverage.computed_only(cfg.coverage, categories),
        cycling=replace(cfg.cycling, categories=bike, enabled=cfg.cycling.enabled and bool(bike)),
    )


def _select_area(cfg: StudyConfig, area: str | None) -> StudyConfig:
    """``cfg`` restricted to ``area`` (a study with areas must name one)."""
    if cfg.areas and area is None and cfg.area is None:
        raise ConfigError(
            f"study {cfg.study.name!r} lists {len(cfg.areas)} areas; run one with "
            "run(cfg, area=name) or all of them with `circles batch` "
            "(circles.batch.run_batch)"
        )
    return select_area(cfg, area) if area is not None else cfg


@contextlib.contextmanager
def _lock(cfg: StudyConfig, *, write: bool, wait_s: float) -> Iterator[None]:
    """The study's lock while a writing run lasts; an interrupted commit finished first."""
    if not write:
        yield
        return
    with study_lock(cfg.out_dir, study=cfg.study.name, wait_s=wait_s):
        recover({"data": cfg.out_dir, "maps": cfg.map_dir}, also=[cfg.cache_dir])
        yield
