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
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import shapely

from circles import io
from circles._errors import ConfigError, InputDataError
from circles.config import AreaSection, StudyConfig, select_area
from circles.network import WalkNetwork, build_network
from circles.settings import WGS84

logger = logging.getLogger(__name__)


def halo_m(cfg: StudyConfig) -> float:
    """Default halo in metres: largest level x fastest speed used (x Tobler's peak with a DEM).

    Parameters
    ----------
    cfg : StudyConfig
        The study (its walking profiles, levels and DEM setting).
    """
    from circles.terrain import TOBLER_OPTIMUM_GRADE, tobler_factor

    names = {cfg.walk.profile} | ({cfg.walk.elderly_profile} if cfg.walk.elderly_profile else set())
    fastest = max(float(cfg.walk.walk_profile(n).speed_m_s) for n in names)
    factor = float(tobler_factor(TOBLER_OPTIMUM_GRADE)) if cfg.walk.dem is not None else 1.0
    return float(cfg.walk.levels_minutes[-1]) * 60.0 * fastest * factor


def area_boundary(cfg: StudyConfig, area: AreaSection, source: str) -> Any:
    """The area's polygon (EPSG:4326), or None for an area that is its whole source."""
    if area.boundary is None:
        return None
    path = cfg.resolve(area.boundary)
    if path is not None and Path(path).is_file():
        try:
            g = (
                gpd.read_file(path, layer=area.boundary_layer)
                if area.boundary_layer
                else (gpd.read_file(path))
            )
        except Exception as exc:
            raise io.DataFileError(f"{path}: cannot read area boundary ({exc})") from exc
        if g.crs is None:
            raise InputDataError(f"{path}: boundary file has no CRS")
        g = g.to_crs(WGS84)
    else:
        b = io.read_osm_boundaries(source, admin_level=None)
        g = b[b["name"] == area.boundary]
        if g.empty:
            names = sorted(set(b["name"].dropna().astype(str)))[:30]
            raise InputDataError(
                f"area {area.name!r}: no boundary file {area.boundary!r} and no "
                f"administrative boundary of that name in {source}; names found: {names}"
            )
    poly = shapely.make_valid(shapely.union_all(g.geometry.to_numpy()))
    if poly.is_empty or poly.area == 0:
        raise InputDataError(f"area {area.name!r}: the boundary has no area")
    return poly


def clip_network(network: WalkNetwork, polygon: Any, *, halo_m: float) -> WalkNetwork:
    """The network's edges with both ends within ``halo_m`` metres of ``polygon`` (4326).

    The clipped network keeps its largest connected piece; edge lengths are recomputed
    exactly as when the network was built (geodesic, so unchanged).
    """
    from pyproj import Transformer

    tr = Transformer.from_crs(WGS84, network.crs, always_xy=True)
    metric = shapely.transform(
        polygon, lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1]))
    )
    zone = shapely.buffer(metric, halo_m) if halo_m > 0 else metric
    shapely.prepare(zone)
    inside = shapely.contains_xy(zone, network.x, network.y)
    keep = inside[network.u] & inside[network.v]
    if not keep.any():
        raise InputDataError("the area (with its halo) contains no walkable street")
    return build_network(
        network.node_id,
        network.lon,
        network.lat,
        network.node_id[network.u[keep]],
        network.node_id[network.v[keep]],
        highway=network.highway[keep],
        way_id=network.way_id[keep],
        direction=network.direction[keep],
        keep_largest=True,
        source=network.source,
        report={**dict(network.report), "clipped_edges_dropped": int((~keep).sum())},
    )


def area_network(
    cfg: StudyConfig, network: WalkNetwork, net_key: str, source: str, store: Any
) -> tuple[WalkNetwork, str, dict[str, Any]]:
    """The selected area's network (clipped with its halo, cached) and its cache key."""
    from circles.cache import digest

    area = cfg.area_section()
    assert area is not None
    poly = area_boundary(cfg, area, source)
    halo = halo_m(cfg) if area.halo_m is None else float(area.halo_m)
    doc: dict[str, Any] = {
        "name": area.name,
        "boundary": area.boundary,
        "boundary_wkb_sha256": None,
        "halo_m": halo,
        "halo_source": "set in [[areas]]"
        if area.halo_m is not None
        else "largest level x fastest walking speed",
    }
    if poly is None:
        return network, net_key, doc
    import hashlib

    doc["boundary_wkb_sha256"] = hashlib.sha256(shapely.to_wkb(poly)).hexdigest()
    key = digest("area_network", net_key, doc["boundary_wkb_sha256"], halo)
    got = store.load_network("area_network", key)
    if got is not None:
        return got[0], key, doc
    clipped = clip_network(network, poly, halo_m=halo)
    store.save_network("area_network", key, clipped)
    return clipped, key, doc


def communities_in_area(communities: gpd.GeoDataFrame, cfg: StudyConfig) -> gpd.GeoDataFrame:
    """Communities whose representative point lies inside the selected area."""
    area = cfg.area_section()
    if area is None or area.boundary is None:
        return communities
    from circles.pipeline import network_source

    poly = area_boundary(cfg, area, network_source(cfg))
    inside = shapely.within(communities.geometry.representative_point().to_numpy(), poly)
    return communities.loc[inside].reset_index(drop=True)


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
    from circles.isochrones import one_thread
    from circles.pipeline import run

    t0 = time.perf_counter()
    with one_thread():  # the worker processes already share out the cores
        res = run(cfg, area=name)
    return AreaResult(
        area=name,
        outputs=dict(res.outputs),
        summary=json.loads(json.dumps(res.summary, default=str)),
        recomputed=list(res.manifest.get("categories", {}).get("recomputed", [])),
        seconds=round(time.perf_counter() - t0, 3),
    )


def prepare_shared(cfg: StudyConfig) -> None:
    """Parse and cache each distinct OSM source once, before the areas fan out."""
    from circles.cache import Cache, digest, sha256_file
    from circles.pipeline import network_source

    store = Cache(cfg.cache_dir)
    seen = set()
    for a in cfg.areas:
        acfg = select_area(cfg, a.name)
        source = network_source(acfg)
        if source in seen:
            continue
        seen.add(source)
        key = digest("network", sha256_file(source), acfg.network.keep_largest)
        if store.load_network("network", key) is None:
            store.save_network(
                "network", key, io.load_network(source, keep_largest=acfg.network.keep_largest)
            )


def run_batch(
    cfg: StudyConfig,
    *,
    areas: Sequence[str] | None = None,
    client: Any = None,
    scheduler: str | None = None,
    n_workers: int | None = None,
    progress: Callable[[str], None] | None = None,
    on_done: Callable[[AreaResult], None] | None = None,
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
    say = progress or (lambda msg: None)
    started = _utc_now()
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
            client.submit(run_area, cfg, n, key=f"circles-area-{n}", pure=False): n for n in names
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
    manifest = {
        "study": cfg.study.name,
        "started_utc": started,
        "finished_utc": _utc_now(),
        "seconds": round(time.perf_counter() - t0, 3),
        "areas": {
            n: {"outputs": r.outputs, "recomputed": r.recomputed, "seconds": r.seconds}
            for n, r in ordered.items()
        },
    }
    io.write_atomic_text(
        cfg.study_dir / "batch_manifest.json", json.dumps(manifest, ensure_ascii=False, indent=2)
    )
    return ordered


def run_sequential(
    cfg: StudyConfig,
    *,
    areas: Sequence[str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run a study's areas one after another in this process; name -> StudyResult."""
    from circles.pipeline import run

    names = [a.name for a in cfg.areas] if areas is None else list(areas)
    return {n: run(cfg, area=n, progress=progress) for n in names}


def _utc_now() -> str:
    from circles.pipeline import _utc_now as now

    return now()
