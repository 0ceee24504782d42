"""Many areas: each computed with a halo, run in parallel on dask.distributed.

A study may list ``[[areas]]`` (all counties of a city, every municipality of a
country), each with its own OSM ``source`` or a ``boundary`` clipping the study's shared
source: a polygon file, or the name of an administrative boundary in the OSM source.

Halo
    Each area is computed on the network clipped to its boundary plus a halo, so a
    resident at the area's edge is served by facilities just across it. The default halo
    (:func:`halo_m`) is the distance walked in the largest level (15 minutes) at the
    fastest walking speed the study uses, times Tobler's largest speed-up (1.19, a 5 %
    descent) when walking times are slope-aware: no walk of at most that many minutes
    from a node inside the area can leave the halo, so shares within every level, counts
    and flags are exactly those of an unclipped network. Minutes above the largest level
    (medians and 90th percentiles beyond 15 minutes) can be larger than on the unclipped
    network near the edge; set ``halo_m`` (e.g. ``max_minutes`` x speed) to make them
    exact too. Communities are those whose representative point lies inside the area.

Parallel runs
    :func:`run_batch` prepares what the areas share (the parsed network of each source,
    in the study's cache), then runs one task per area on a dask.distributed cluster: a
    ``LocalCluster`` of worker processes by default, or an existing scheduler
    (``--scheduler tcp://host:8786``) when one machine is not enough. Workers need the
    study's input files and its output folder at the same paths (a shared file system).
    Each area writes its outputs under ``<output_dir>/<study>/<area>/``; the batch writes
    ``<output_dir>/<study>/batch_manifest.json``.

City
    After the areas, their outputs are merged into one city-wide communities layer,
    table and map under ``<output_dir>/<study>/city/`` and ``<maps_dir>/<study>/city/``
    (:mod:`circles.citywide`; each community once, from its own area).

Logging
    dask.distributed's own INFO lines (cluster start, workers, scheduler) are kept out
    of the console unless ``quiet=False`` (``circles batch -v``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from circles import io
from circles._errors import ConfigError
from circles.areas import (
    area_boundary,
    area_network,
    clip_network,
    communities_in_area,
    halo_m,
)
from circles.cache import Cache
from circles.citywide import write_city
from circles.config import StudyConfig, check_study, select_area
from circles.facilities import study_categories
from circles.isochrones import one_thread
from circles.pipeline import run
from circles.result import RunContext, utc_now
from circles.sources import network_source, parsed_network
from circles.transaction import study_lock

__all__ = [
    "AreaResult",
    "area_boundary",
    "area_network",
    "clip_network",
    "communities_in_area",
    "halo_m",
    "prepare_shared",
    "run_area",
    "run_batch",
    "run_sequential",
]

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------- running


@dataclass(frozen=True)
class AreaResult:
    """What a batch task returns (small: the full results stay on disk).

    Attributes
    ----------
    area : str
    outputs : dict
        Output name -> path.
    summary : dict
        The area's ``summary.json`` content.
    recomputed : list of str
        Categories whose minutes were computed (not reused from the cache).
    seconds : float
    """

    area: str
    outputs: dict[str, str]
    summary: dict[str, Any]
    recomputed: list[str]
    seconds: float


def run_area(cfg: StudyConfig, name: str) -> AreaResult:
    """Run one area of a study (the task each dask worker runs)."""
    t0 = time.perf_counter()
    with one_thread():  # the worker processes already share out the cores
        res = run(cfg, area=name)
    return AreaResult(
        area=name,
        outputs=dict(res.outputs),
        summary=json.loads(io.json_text(res.summary, default=str)),
        recomputed=list(res.manifest.get("categories", {}).get("recomputed", [])),
        seconds=round(time.perf_counter() - t0, 3),
    )


@contextlib.contextmanager
def areas_locked(cfg: StudyConfig, names: Sequence[str], *, wait_s: float = 0.0) -> Iterator[None]:
    """Every named area's lock, held while the areas' outputs are merged for the city.

    A ``circles run --area X`` (or ``circles update`` of an area) started meanwhile waits
    or stops with the usual message, so no area commits new outputs while the city's
    layer, table and map are read from them.

    Parameters
    ----------
    cfg : StudyConfig
        The study (no area selected).
    names : sequence of str
        The areas.
    wait_s : float
        Seconds to wait for an area held by another process (0: stop at once).

    Raises
    ------
    StudyBusyError
        An area is in use by another process (after ``wait_s``).
    """
    with contextlib.ExitStack() as held:
        for n in names:
            area_dir = select_area(cfg, n).out_dir
            held.enter_context(
                study_lock(area_dir, study=f"{cfg.study.name} (area {n})", wait_s=wait_s)
            )
        yield


def prepare_shared(cfg: StudyConfig) -> None:
    """Parse and cache each distinct OSM source once, before the areas fan out."""
    ctx = RunContext(Cache(cfg.cache_dir))
    seen = set()
    for a in cfg.areas:
        acfg = select_area(cfg, a.name)
        source = network_source(acfg)
        if source not in seen:
            seen.add(source)
            parsed_network(source, keep_largest=acfg.network.keep_largest, ctx=ctx)


def run_batch(
    cfg: StudyConfig,
    *,
    areas: Sequence[str] | None = None,
    client: Any = None,
    scheduler: str | None = None,
    n_workers: int | None = None,
    progress: Callable[[str], None] | None = None,
    on_done: Callable[[AreaResult], None] | None = None,
    wait_s: float = 0.0,
    quiet: bool = True,
    city: bool = True,
) -> dict[str, AreaResult]:
    """Run a study's areas in parallel on dask.distributed.

    Parameters
    ----------
    cfg : StudyConfig
        A study with ``[[areas]]``.
    areas : sequence of str, optional
        Area names to run (default: all).
    client : distributed.Client, optional
        Use this client (e.g. a test's LocalCluster). Otherwise ``scheduler`` (or
        ``[batch] scheduler``) is connected to, or a ``LocalCluster`` of ``n_workers``
        (``[batch] n_workers``) processes is started and closed afterwards.
    scheduler : str, optional
        Address of an existing scheduler, e.g. ``"tcp://10.0.0.5:8786"``.
    n_workers : int, optional
        Workers of the local cluster.
    progress : callable, optional
        Stage messages.
    on_done : callable, optional
        Called with each :class:`AreaResult` as it completes (the CLI's progress bar).
    wait_s : float, default 0
        Seconds to wait for another process that holds the study (0: stop at once).
    quiet : bool, default True
        Keep dask.distributed's INFO logging (in this process and the workers) quiet.
    city : bool, default True
        Merge the areas into the city's communities layer, table and map
        (:func:`circles.citywide.write_city`) when every area of the study was run.

    Returns
    -------
    dict
        Area name -> :class:`AreaResult`, in the configured order.
    """
    from distributed import Client, LocalCluster, as_completed

    if not cfg.areas:
        raise ConfigError("the study lists no [[areas]]; use `circles run` for a single area")
    names = [a.name for a in cfg.areas] if areas is None else list(areas)
    unknown = [n for n in names if n not in {a.name for a in cfg.areas}]
    if unknown:
        raise ConfigError(f"unknown areas {unknown}; areas are {[a.name for a in cfg.areas]}")
    for n in names:  # the whole configuration of every area, before any work
        profile = check_study(select_area(cfg, n))
    with study_lock(cfg.study_dir, study=cfg.study.name, wait_s=wait_s), _dask_logging(quiet):
        say = progress or (lambda msg: None)
        started = utc_now()
        t0 = time.perf_counter()
        say("preparing shared inputs (parsed networks) in the study cache")
        prepare_shared(cfg)
        own_cluster = None
        own_client = None
        try:
            if client is None:
                address = scheduler or cfg.batch.scheduler
                if address:
                    say(f"connecting to dask scheduler {address}")
                    own_client = Client(address)
                else:
                    workers = int(n_workers or cfg.batch.n_workers)
                    say(f"starting a local dask cluster: {workers} worker processes")
                    own_cluster = LocalCluster(
                        n_workers=workers,
                        threads_per_worker=cfg.batch.threads_per_worker,
                        processes=True,
                        host="127.0.0.1",
                        dashboard_address="127.0.0.1:0",  # HTTP metrics on loopback, any free port
                    )
                    own_client = Client(own_cluster)
                client = own_client
            futures = {
                client.submit(run_area, cfg, n, key=f"circles-area-{n}", pure=False): n
                for n in names
            }
            results: dict[str, AreaResult] = {}
            for fut in as_completed(list(futures)):
                res = fut.result()
                results[res.area] = res
                say(f"area {res.area}: done in {res.seconds:.1f} s")
                if on_done is not None:
                    on_done(res)
        finally:
            if own_client is not None:
                own_client.close()
            if own_cluster is not None:
                own_cluster.close()
        ordered = {n: results[n] for n in names}
        city_outputs: dict[str, str] = {}
        if city and set(names) == {a.name for a in cfg.areas}:
            say("merging the areas into the city's communities layer, table and map")
            _, cats, labels, _ = study_categories(profile, cfg.facilities.categories)
            with areas_locked(cfg, names, wait_s=wait_s):
                city_outputs = write_city(
                    cfg,
                    {n: r.outputs["gpkg"] for n, r in ordered.items() if "gpkg" in r.outputs},
                    {
                        n: r.outputs["coverage_csv"]
                        for n, r in ordered.items()
                        if "coverage_csv" in r.outputs
                    },
                    categories=list(cats),
                    labels=labels,
                    across={
                        n: r.summary.get("area", {}).get("communities_across_border", [])
                        for n, r in ordered.items()
                    },
                )
        manifest = {
            "study": cfg.study.name,
            "started_utc": started,
            "finished_utc": utc_now(),
            "seconds": round(time.perf_counter() - t0, 3),
            "areas": {
                n: {"outputs": r.outputs, "recomputed": r.recomputed, "seconds": r.seconds}
                for n, r in ordered.items()
            },
            "city": city_outputs,
        }
        io.write_atomic_text(
            cfg.study_dir / "batch_manifest.json",
            io.json_text(manifest, ensure_ascii=False, indent=2),
        )
        return ordered


@contextlib.contextmanager
def _dask_logging(quiet: bool) -> Iterator[None]:
    """dask.distributed's loggers at WARNING here and in the workers it starts."""
    if not quiet:
        yield
        return
    import dask

    names = ("distributed", "distributed.scheduler", "distributed.nanny", "distributed.worker")
    before = {n: logging.getLogger(n).level for n in names}
    for n in names:
        logging.getLogger(n).setLevel(logging.WARNING)
    env = os.environ.get("DASK_LOGGING__DISTRIBUTED")
    os.environ["DASK_LOGGING__DISTRIBUTED"] = "warning"  # worker processes read it at start
    try:
        with dask.config.set({"logging.distributed": "warning"}):
            yield
    finally:
        for n, level in before.items():
            logging.getLogger(n).setLevel(level)
        if env is None:
            os.environ.pop("DASK_LOGGING__DISTRIBUTED", None)
        else:
            os.environ["DASK_LOGGING__DISTRIBUTED"] = env


def run_sequential(
    cfg: StudyConfig,
    *,
    areas: Sequence[str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run a study's areas one after another in this process; name -> StudyResult."""
    names = [a.name for a in cfg.areas] if areas is None else list(areas)
    return {n: run(cfg, area=n, progress=progress) for n in names}
