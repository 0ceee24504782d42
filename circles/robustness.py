"""How sure a flag is: coverage and flags over a band of walking speeds.

A category's walking seconds are proportional to ``1 / speed``: on the flat each edge
takes ``length / speed``, steps ``steps_factor x`` that, the access walk from the street
``snap_m / speed``, and with a DEM the slope factor multiplies the flat speed
(:func:`circles.terrain.edge_seconds`). So the minutes at speed ``s`` are the run's
minutes times ``s0 / s``, where ``s0`` is the category's walking speed, and node ``i``
is within ``L`` minutes exactly when ``s >= minutes_i * s0 / L``: its *critical speed*.
A community's share within ``L`` at speed ``s`` is the resident weight of its nodes whose
critical speed is at most ``s``, so the slowest speed at which the community reaches the
flag threshold is a weighted quantile of its nodes' critical speeds. No walk is
recomputed; :func:`minutes_at_speed` reruns the engine at another speed (for a check, or
for walking costs that one day are not proportional).

Columns added to the communities table per category ``c`` (``L`` the last level):

- ``c_share_<L>_slow``, ``c_share_<L>_fast``: shares at the band's ends;
- ``c_robust``: the flag is the same at every speed of the band;
- ``c_flip_m_s``: for a fragile flag, the slowest speed (m/s) at which the community is
  no longer flagged (NaN when robust).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import geopandas as gpd
import numpy as np

from circles._errors import ConfigError
from circles.access import compute_access
from circles.config import CoverageSection, RobustnessSection, WalkSection
from circles.coverage import weighted_quantile
from circles.network import WalkNetwork
from circles.result import Residents, RunContext, StudyAccess, level_key, with_columns

logger = logging.getLogger(__name__)


def critical_speeds(minutes: np.ndarray, speed_m_s: float, level_minutes: float) -> np.ndarray:
    """The speed (m/s) at which each node comes within ``level_minutes``: ``m * s0 / L``
    (``inf`` for a node beyond the search cut-off)."""
    m = np.asarray(minutes, dtype=float)
    return m * float(speed_m_s) / float(level_minutes)


def shares_at(
    node_community: np.ndarray,
    weight: np.ndarray,
    minutes: np.ndarray,
    n_communities: int,
    *,
    level_minutes: float,
    scale: float,
) -> np.ndarray:
    """Share of each community's weight within ``level_minutes`` when every walk takes
    ``scale`` times as long (``scale = s0 / s``); NaN for a community without weight."""
    nc = np.asarray(node_community)
    w = np.asarray(weight, dtype=float)
    inside = nc >= 0
    m = np.asarray(minutes, dtype=float) * scale
    total = np.bincount(nc[inside], weights=w[inside], minlength=n_communities)
    within = np.bincount(
        nc[inside], weights=w[inside] * (m[inside] <= level_minutes), minlength=n_communities
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, within / total, np.nan)


def flag_band(
    node_community: np.ndarray,
    weight: np.ndarray,
    minutes: np.ndarray,
    n_communities: int,
    *,
    speed_m_s: float,
    band_m_s: tuple[float, float],
    level_minutes: float,
    flag_threshold: float,
) -> dict[str, np.ndarray]:
    """Flags of one category over a band of walking speeds.

    Parameters
    ----------
    node_community : numpy.ndarray
        Community position per node (-1: none).
    weight : numpy.ndarray
        Residents per node (the category's weights).
    minutes : numpy.ndarray
        Minutes per node to the nearest facility at ``speed_m_s``.
    n_communities : int
    speed_m_s : float
        The speed the minutes were walked at.
    band_m_s : (float, float)
        Slowest and fastest speed of the band (m/s).
    level_minutes : float
        The level flags use.
    flag_threshold : float
        A community is flagged when its share is below this.

    Returns
    -------
    dict
        ``share_slow``, ``share_fast``, ``flag_slow``, ``flag_fast``, ``robust`` and
        ``flip_m_s`` (NaN where robust) per community.
    """
    lo, hi = float(band_m_s[0]), float(band_m_s[1])
    if not 0 < lo <= hi:
        raise ConfigError(f"the speed band must be 0 < slowest <= fastest, got {band_m_s}")
    kw = {"level_minutes": level_minutes}
    s_lo = shares_at(node_community, weight, minutes, n_communities, scale=speed_m_s / lo, **kw)
    s_hi = shares_at(node_community, weight, minutes, n_communities, scale=speed_m_s / hi, **kw)
    f_lo = np.where(np.isnan(s_lo), False, s_lo < flag_threshold)
    f_hi = np.where(np.isnan(s_hi), False, s_hi < flag_threshold)
    robust = f_lo == f_hi
    crit = critical_speeds(minutes, speed_m_s, level_minutes)
    nc = np.asarray(node_community)
    w = np.asarray(weight, dtype=float)
    flip = weighted_quantile(crit, w, nc, n_communities, float(flag_threshold))
    flip = np.where(robust, np.nan, np.clip(flip, lo, hi))
    return {
        "share_slow": s_lo,
        "share_fast": s_hi,
        "flag_slow": f_lo,
        "flag_fast": f_hi,
        "robust": robust,
        "flip_m_s": flip,
    }


def minutes_at_speed(
    network: WalkNetwork,
    facilities: Any,
    category: str,
    walk: WalkSection,
    profile: str,
    speed_m_s: float,
    *,
    elevation_m: np.ndarray | None = None,
) -> np.ndarray:
    """Minutes per node to the category's nearest facility, the engine rerun with the
    walking profile's flat speed set to ``speed_m_s`` (slope-aware with ``elevation_m``).
    """
    from circles import terrain

    prof = replace(walk.walk_profile(profile), speed_m_s=float(speed_m_s))
    cost = terrain.edge_seconds(network, prof, elevation_m=elevation_m)
    m, _ = compute_access(
        network,
        facilities,
        [category],
        speed_m_s=float(speed_m_s),
        max_minutes=walk.max_minutes,
        levels_minutes=walk.levels_minutes,
        edge_seconds=cost,
    )
    return m[category].to_numpy()


def study_robustness(
    section: RobustnessSection,
    access: StudyAccess,
    residents: Residents,
    elderly_categories: Sequence[str],
    table: gpd.GeoDataFrame,
    walk: WalkSection,
    coverage: CoverageSection,
    ctx: RunContext,
) -> tuple[gpd.GeoDataFrame, dict[str, Any] | None]:
    """The robustness stage: flags over the speed band, per community and category.

    Returns the communities table with the robustness columns and the ``robustness``
    section of ``summary.json`` (None when ``[robustness]`` is not enabled).
    """
    if not section.enabled:
        return table, None
    ctx.stage("robustness")
    level = float(walk.levels_minutes[-1])
    lk = level_key(level)
    old = set(elderly_categories)
    out = table
    n = len(out)
    cols: dict[str, np.ndarray] = {}
    doc: dict[str, Any] = {"level_minutes": level, "categories": {}}
    for cat in access.minutes.columns:
        s0 = float(walk.walk_profile(access.profiles[cat]).speed_m_s)
        lo = min(min(section.speeds_m_s), s0)
        hi = max(max(section.speeds_m_s), s0)
        if walk.max_minutes * s0 / hi < level:
            raise ConfigError(
                f"[robustness] up to {hi} m/s reaches beyond the search cut-off for {cat} "
                f"(walked at {s0} m/s): raise [walk] max_minutes to at least "
                f"{level * hi / s0:.1f}"
            )
        weight = residents.weights_for(cat, old)
        got = flag_band(
            residents.node_community,
            weight,
            access.minutes[cat].to_numpy(),
            n,
            speed_m_s=s0,
            band_m_s=(lo, hi),
            level_minutes=level,
            flag_threshold=coverage.flag_threshold,
        )
        cols[f"{cat}_share_{lk}_slow"] = got["share_slow"]
        cols[f"{cat}_share_{lk}_fast"] = got["share_fast"]
        cols[f"{cat}_robust"] = got["robust"]
        cols[f"{cat}_flip_m_s"] = got["flip_m_s"]
        flags = out[f"{cat}_flag"].to_numpy(bool)
        doc["categories"][cat] = {
            "speed_m_s": s0,
            "band_m_s": [lo, hi],
            "fragile": int((~got["robust"]).sum()),
            "robust_flagged": int((got["robust"] & flags).sum()),
            "robust_not_flagged": int((got["robust"] & ~flags).sum()),
        }
    out = with_columns(out, cols)
    fragile = sum(d["fragile"] for d in doc["categories"].values())
    ctx.say(f"speed band: {fragile} community-category flags are fragile")
    return out, doc
