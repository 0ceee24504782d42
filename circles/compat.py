"""The stage functions of earlier versions, with their earlier signatures.

Before the chain of stages (``docs/architecture.md``), :mod:`circles.pipeline` held
every stage, and each took the whole :class:`~circles.config.StudyConfig` first. The
stages now live in the modules of their subjects and take only the sections they read.
The names stay importable from :mod:`circles.pipeline`; each function here accepts the
earlier call (a ``StudyConfig`` first) and the new one (passed on unchanged), so that
notebooks written against either keep working::

    from circles.pipeline import load_communities
    comm = load_communities(cfg, network, source)              # the earlier call
    comm = load_communities(cfg.communities, network, source)  # the stage's own call
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd

from circles import access, communities, facilities, isochrones, population, sources, terrain
from circles.config import StudyConfig
from circles.network import WalkNetwork
from circles.outputs import MANIFEST_PACKAGES

__all__ = [
    "MANIFEST_PACKAGES",
    "access_by_profile",
    "category_profiles",
    "compute_isochrones",
    "load_communities",
    "load_facilities",
    "node_weights",
    "prepare_terrain",
    "read_centres",
]


def load_communities(cfg: Any, network: WalkNetwork, source: str, **kw: Any) -> gpd.GeoDataFrame:
    """:func:`circles.communities.load_communities`; also as ``(cfg, network, source)``."""
    if isinstance(cfg, StudyConfig):
        return communities.load_communities(
            cfg.communities,
            network,
            source,
            base_dir=cfg.base_dir,
            speed_m_s=cfg.walk.resolved_speed_m_s,
            max_snap_m=cfg.walk.max_snap_m,
        )
    return communities.load_communities(cfg, network, source, **kw)


def load_facilities(*args: Any, **kw: Any) -> tuple[gpd.GeoDataFrame, pd.DataFrame, dict[str, int]]:
    """:func:`circles.facilities.load_facilities`; also as
    ``(cfg, network, source, categories, profile)``."""
    if args and isinstance(args[0], StudyConfig):
        cfg, network, source, categories, profile = args
        f = cfg.facilities
        features = sources.feature_source(cfg, source) if f.osm else None
        if features is not None and features.lower().endswith(".graphml"):
            features = None
        files = [replace(s, path=cfg.resolve(s.path) or s.path) for s in f.files]
        return facilities.load_facilities(
            network,
            features=features,
            files=files,
            categories=list(categories),
            profile=profile,
            max_snap_m=cfg.walk.max_snap_m,
        )
    return facilities.load_facilities(*args, **kw)


def prepare_terrain(cfg: Any, network: Any = None, **kw: Any) -> tuple[Any, np.ndarray | None]:
    """:func:`circles.terrain.prepare_terrain`; also as ``(cfg, network)`` (no DEM: the
    network unchanged and None)."""
    if isinstance(cfg, StudyConfig):
        dem = cfg.resolve(cfg.walk.dem)
        if dem is None:
            return network, None
        return terrain.prepare_terrain(network, dem=dem, split_length_m=cfg.walk.split_length_m)
    return terrain.prepare_terrain(cfg, **kw)


def category_profiles(cfg: Any, profile: Any, categories: list[str]) -> dict[str, str]:
    """:func:`circles.access.category_profiles`; also with a ``StudyConfig`` first."""
    walk = cfg.walk if isinstance(cfg, StudyConfig) else cfg
    return access.category_profiles(walk, profile, categories)


def access_by_profile(
    cfg: Any, *args: Any, **kw: Any
) -> tuple[pd.DataFrame, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """:func:`circles.access.access_by_profile`; also with a ``StudyConfig`` first."""
    walk = cfg.walk if isinstance(cfg, StudyConfig) else cfg
    return access.access_by_profile(walk, *args, **kw)


def node_weights(
    cfg: Any, network: WalkNetwork, comm: Any, node_comm: np.ndarray, *args: Any, **kw: Any
) -> tuple[np.ndarray, np.ndarray | None, str, dict[str, Any]]:
    """:func:`circles.population.node_weights`; also as
    ``(cfg, network, communities, node_comm, source)``."""
    if isinstance(cfg, StudyConfig):
        (source,) = args or (kw.pop("source"),)
        return population.node_weights(
            cfg.population,
            network,
            comm,
            node_comm,
            source=source,
            base_dir=cfg.base_dir,
            population_column=cfg.communities.population_column,
            elderly_share_column=cfg.communities.elderly_share_column,
        )
    return population.node_weights(cfg, network, comm, node_comm, *args, **kw)


def read_centres(cfg: Any, comm: gpd.GeoDataFrame) -> gpd.GeoSeries | None:
    """:func:`circles.communities.read_centres`; also as ``(cfg, communities)`` (the
    ``[isochrones] centres`` file)."""
    if isinstance(cfg, StudyConfig):
        return communities.read_centres(cfg.resolve(cfg.isochrones.centres), comm)
    return communities.read_centres(cfg, comm)


def compute_isochrones(
    cfg: StudyConfig,
    network: WalkNetwork,
    comm: gpd.GeoDataFrame,
    fac: gpd.GeoDataFrame,
    weight: np.ndarray,
    *,
    edge_seconds: np.ndarray | None = None,
) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame | None]:
    """The ``isochrones`` and ``service_areas`` layers (EPSG:4326), as earlier versions'
    ``compute_isochrones``: :func:`circles.isochrones.community_isochrones` and
    :func:`circles.isochrones.service_areas` with the study's settings (every facility
    at its snapped point; a run also enters area facilities at all their entries).

    Parameters
    ----------
    cfg : StudyConfig
    network : WalkNetwork
    comm, fac : geopandas.GeoDataFrame
        Communities (with ``community_id``) and snapped facilities.
    weight : numpy.ndarray
        Residents per node.
    edge_seconds : numpy.ndarray, optional
        ``(n_edges, 2)`` walking seconds per edge (default: the flat walking speed).
    """
    speed = cfg.walk.resolved_speed_m_s
    cost = network.edge_seconds(speed) if edge_seconds is None else edge_seconds
    graph = access.AccessGraph.from_network(network, cost)
    sec = cfg.isochrones
    iso = isochrones.community_isochrones(
        graph,
        comm,
        weight,
        levels_minutes=cfg.walk.levels_minutes,
        method=sec.method,  # type: ignore[arg-type]
        centres=read_centres(cfg, comm),
        buffer_m=sec.buffer_m,
    )
    sa = None
    if sec.service_areas:
        sa = isochrones.service_areas(
            graph,
            fac,
            weight,
            levels_minutes=cfg.walk.levels_minutes,
            method=sec.method,  # type: ignore[arg-type]
            speed_m_s=speed,
            per_facility=sec.per_facility,
            buffer_m=sec.buffer_m,
        )
    return iso, sa
